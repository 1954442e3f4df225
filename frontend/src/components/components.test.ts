// Component tests: mounted in jsdom with Svelte's own mount().
import { afterEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import Composer from './chat/Composer.svelte';
import BranchNav from './chat/BranchNav.svelte';
import Markdown from './chat/Markdown.svelte';
import MessageItem from './chat/MessageItem.svelte';
import SettingsForm from './chat/SettingsForm.svelte';
import type { ChatSettings } from '../lib/types';
import type { Message } from '../lib/types';
import { reactive } from './test-state.svelte';

let app: Record<string, unknown> | null = null;
afterEach(() => {
  if (app) unmount(app);
  app = null;
  document.body.innerHTML = '';
});

function key(el: Element, k: string, opts: KeyboardEventInit = {}) {
  el.dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true, cancelable: true, ...opts }));
}

describe('Composer', () => {
  it('Enter sends, Shift+Enter does not, Esc stops while busy', async () => {
    const onSend = vi.fn(async () => true);
    const onStop = vi.fn();
    const props = reactive({ busy: false });
    app = mount(Composer, { target: document.body, props: { get busy() { return props.busy; }, placeholder: 'Message', onSend, onStop } });
    const ta = document.querySelector('textarea')!;
    ta.value = 'hello';
    ta.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();
    key(ta, 'Enter', { shiftKey: true });
    expect(onSend).not.toHaveBeenCalled();
    key(ta, 'Enter');
    expect(onSend).toHaveBeenCalledWith('hello');
    flushSync();
    expect(ta.value).toBe('');
    // an IME composition's Enter is not a send
    ta.value = '你好';
    ta.dispatchEvent(new Event('input', { bubbles: true }));
    key(ta, 'Enter', { isComposing: true });
    expect(onSend).toHaveBeenCalledTimes(1);
    props.busy = true;
    flushSync();
    key(ta, 'Escape');
    expect(onStop).toHaveBeenCalled();
    expect(document.querySelector('[data-testid="stop-button"]')).not.toBeNull();
  });
});


describe('BranchNav', () => {
  it('shows the position and disables the ends', () => {
    const onPrev = vi.fn();
    const onNext = vi.fn();
    app = mount(BranchNav, { target: document.body, props: { index: 0, count: 2, onPrev, onNext } });
    expect(document.querySelector('[data-testid="branch-pos"]')!.textContent).toBe('1/2');
    expect((document.querySelector('[data-testid="branch-prev"]') as HTMLButtonElement).disabled).toBe(true);
    (document.querySelector('[data-testid="branch-next"]') as HTMLButtonElement).click();
    expect(onNext).toHaveBeenCalled();
  });

  it('is hidden without siblings', () => {
    app = mount(BranchNav, { target: document.body, props: { index: 0, count: 1, onPrev: () => {}, onNext: () => {} } });
    expect(document.querySelector('[data-testid="branch-nav"]')).toBeNull();
  });
});

describe('Markdown component', () => {
  it('renders sanitized, highlighted HTML', () => {
    app = mount(Markdown, { target: document.body, props: { source: '# Hi\n<script>window.x=1</script>\n\n```js\nconst a = 1;\n```' } });
    flushSync();
    const root = document.querySelector('[data-testid="markdown"]')!;
    expect(root.querySelector('h1')!.textContent).toBe('Hi');
    expect(root.querySelector('script')).toBeNull();
    expect(root.querySelector('code.language-js .hljs-keyword')!.textContent).toBe('const');
  });
});

describe('MessageItem', () => {
  const msg = (over: Partial<Message>): Message => ({ id: 'm1', parent_id: null, role: 'assistant', content: 'Done **well**', reasoning: 'I thought', model: 'smollm2', status: 'stopped', error: null, stats: { ttft_ms: 120, tokens_per_s: 42.5, completion_tokens: 17, reasoning_ms: 900, reasoning_tokens: 5 }, created: 1, ...over });

  it('marks a stopped answer, shows reasoning and stats', () => {
    app = mount(MessageItem, { target: document.body, props: { message: msg({}), branchIndex: 1, branchCount: 3, busy: false, onBranch: () => {}, onRegenerate: () => {}, onEdit: () => {} } });
    flushSync();
    expect(document.querySelector('[data-testid="stopped-badge"]')).not.toBeNull();
    expect(document.querySelector('[data-testid="reasoning"]')!.textContent).toContain('5');
    expect(document.querySelector('[data-testid="stat-tokens"]')!.textContent).toContain('17');
    expect(document.querySelector('[data-testid="branch-pos"]')!.textContent).toBe('2/3');
    expect(document.querySelector('[data-testid="message-content"] strong')!.textContent).toBe('well');
  });

  it('notes the earlier messages that were not sent, and none when all were', () => {
    app = mount(MessageItem, { target: document.body, props: { message: msg({ status: 'complete', stats: { completion_tokens: 3, messages_dropped: 958 } }), branchIndex: 0, branchCount: 1, busy: false, onBranch: () => {}, onRegenerate: () => {}, onEdit: () => {} } });
    flushSync();
    expect(document.querySelector('[data-testid="dropped-note"]')!.textContent).toMatch(/958 earlier messages were not sent/);
    unmount(app);
    app = mount(MessageItem, { target: document.body, props: { message: msg({ status: 'complete', stats: { completion_tokens: 3, messages_dropped: 0 } }), branchIndex: 0, branchCount: 1, busy: false, onBranch: () => {}, onRegenerate: () => {}, onEdit: () => {} } });
    flushSync();
    expect(document.querySelector('[data-testid="dropped-note"]')).toBeNull();
  });

  it('edits a user message and resends it', () => {
    const onEdit = vi.fn();
    app = mount(MessageItem, { target: document.body, props: { message: msg({ role: 'user', content: 'old', reasoning: null, status: 'complete', stats: null }), branchIndex: 0, branchCount: 1, busy: false, onBranch: () => {}, onRegenerate: () => {}, onEdit } });
    (document.querySelector('[data-testid="edit-message"]') as HTMLButtonElement).click();
    flushSync();
    const ta = document.querySelector('[data-testid="edit-input"]') as HTMLTextAreaElement;
    ta.value = 'new text';
    ta.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();
    (document.querySelector('[data-testid="edit-save"]') as HTMLButtonElement).click();
    expect(onEdit).toHaveBeenCalledWith('new text');
  });
});

describe('SettingsForm', () => {
  it('has the context limit only for conversations, and sets or clears it', () => {
    const props = reactive({ settings: { max_tokens: 64 } as ChatSettings });
    app = mount(SettingsForm, { target: document.body, props: { get settings() { return props.settings; }, set settings(v: ChatSettings) { props.settings = v; }, contextLimit: true } });
    flushSync();
    const input = document.querySelector('[data-testid="settings-max-context"]') as HTMLInputElement;
    expect(input).not.toBeNull();
    input.value = '2048';
    input.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();
    expect(props.settings.max_context_tokens).toBe(2048);
    input.value = '';
    input.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();
    expect(props.settings.max_context_tokens).toBeNull();
    unmount(app);
    // The compare columns' form (no contextLimit) has no such field.
    app = mount(SettingsForm, { target: document.body, props: { settings: {}, prefix: 'col0' } });
    flushSync();
    expect(document.querySelector('[data-testid="col0-max-context"]')).toBeNull();
  });
});
