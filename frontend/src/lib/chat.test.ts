import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Conversation, Message } from './types';

// The API mocked; generations stream from scripted responses.
const calls: { path: string; from?: number }[] = [];
let events: Record<string, string[]> = {};
const conv: Conversation = { id: 'c1', title: 't', model: 'm', created: 0, updated: 0, settings: {}, active_generation: null, messages: [] };
const msg = (id: string, parent: string | null, role: Message['role'], content: string, status: Message['status'] = 'complete', created = 1): Message =>
  ({ id, parent_id: parent, role, content, reasoning: null, model: role === 'assistant' ? 'm' : null, status, error: null, stats: null, created });

vi.mock('./api', () => {
  const api = {
    conversation: vi.fn(async () => structuredClone(conv)),
    generations: vi.fn(async () => ({ data: [{ id: 'g1', conversation_id: 'c1', message_id: 'a1', model: 'm', started: 0 }] })),
    createConversation: vi.fn(async (b: { title: string }) => ({ ...structuredClone(conv), id: 'c2', title: b.title, messages: [] })),
    send: vi.fn(async (_id: string, body: { content?: string; parent_id?: string | null; regenerate?: string }) => ({
      user_message: body.content ? msg('u9', body.parent_id ?? null, 'user', body.content, 'complete', 9) : null,
      assistant_message: msg('a9', body.content ? 'u9' : 'u1', 'assistant', '', 'generating', 9),
      generation_id: 'g9',
    })),
    stopGeneration: vi.fn(async () => ({ stopped: true })),
    patchConversation: vi.fn(),
  };
  const raw = vi.fn(async (path: string) => {
    const m = /generations\/(\w+)\/events\?from=(\d+)/.exec(path)!;
    calls.push({ path, from: Number(m[2]) });
    const evs = events[m[1]] ?? [];
    const body = evs.slice(Number(m[2])).map((d, i) => `id: ${Number(m[2]) + i}\ndata: ${d}\n\n`).join('');
    return new Response(body, { status: 200 });
  });
  return { api, raw, errorOf: vi.fn(), setCsrfToken: vi.fn() };
});

const { ChatController } = await import('./chat.svelte');

async function settle() {
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
}

beforeEach(() => {
  calls.length = 0;
  events = {};
  conv.messages = [];
  conv.active_generation = null;
});

describe('ChatController', () => {
  it('resumes an active generation from the first event, replacing the partial text', async () => {
    conv.messages = [msg('u1', null, 'user', 'hi'), msg('a1', 'u1', 'assistant', 'Hel', 'generating', 2)];
    conv.active_generation = 'g1';
    const done = { ...msg('a1', 'u1', 'assistant', 'Hello', 'complete', 2), stats: { completion_tokens: 2 } };
    events.g1 = ['{"type":"delta","content":"Hel"}', '{"type":"delta","content":"lo"}', JSON.stringify({ type: 'done', message: done })];
    const c = new ChatController();
    await c.open('c1');
    await settle();
    expect(calls[0].from).toBe(0);
    const a = c.path[c.path.length - 1];
    expect(a.content).toBe('Hello');
    expect(a.status).toBe('complete');
    expect(c.busy).toBe(false);
  });

  it('sends into a new conversation under the visible leaf and follows the reply', async () => {
    events.g9 = ['{"type":"delta","reasoning":"hmm"}', '{"type":"delta","content":"Yes"}', JSON.stringify({ type: 'done', message: { ...msg('a9', 'u9', 'assistant', 'Yes', 'complete', 9), reasoning: 'hmm' } })];
    const c = new ChatController();
    await c.open(null);
    const created = await c.send('Question?', { model: 'm' });
    expect(created).toBe('c2');
    await settle();
    expect(c.path.map((m) => m.id)).toEqual(['u9', 'a9']);
    expect(c.path[1].content).toBe('Yes');
    expect(c.path[1].reasoning).toBe('hmm');
  });

  it('regenerates as a sibling and switches branches', async () => {
    conv.messages = [msg('u1', null, 'user', 'hi'), msg('a1', 'u1', 'assistant', 'one', 'complete', 2)];
    events.g9 = [JSON.stringify({ type: 'done', message: msg('a9', 'u1', 'assistant', 'two', 'complete', 9) })];
    const c = new ChatController();
    await c.open('c1');
    await c.regenerate(c.path[1]);
    await settle();
    expect(c.path.map((m) => m.content)).toEqual(['hi', 'two']);
    c.branch(c.path[1], -1);
    expect(c.path.map((m) => m.content)).toEqual(['hi', 'one']);
  });

  it('reports the context used by the last answer', async () => {
    conv.messages = [msg('u1', null, 'user', 'hi'), { ...msg('a1', 'u1', 'assistant', 'x', 'complete', 2), stats: { prompt_tokens: 10, completion_tokens: 5, context_length: 100 } }];
    const c = new ChatController();
    await c.open('c1');
    expect(c.context).toEqual({ used: 15, limit: 100 });
  });
});
