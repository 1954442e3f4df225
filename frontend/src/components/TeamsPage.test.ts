// The admin Teams section in jsdom, over the real API client (src/lib/api.ts) and a fake
// /admin/v1/teams behind fetch that applies PATCH bodies as the server does
// (crates/server/src/api/admin.rs: an absent field stays, `null` removes it).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import TeamsPage from './admin/TeamsPage.svelte';
import { i18n } from '../lib/i18n.svelte';
import type { Team } from '../lib/types';

interface Call { method: string; path: string; body: unknown }

function fakeServer() {
  const teams: Team[] = [
    { name: 'research', limits: { rpm: 60, tpm: null, max_concurrent: null, monthly_tokens: 1000 }, models: null, created: 1_700_000_000 },
    { name: 'ops', limits: { rpm: null, tpm: null, max_concurrent: null, monthly_tokens: null }, models: ['retired-model'], created: 1_700_000_000 },
  ];
  const calls: Call[] = [];
  const reply = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  const error = (status: number, code: string, message: string) => reply(status, { error: { message, type: 'invalid_request_error', param: null, code } });

  const fetch = vi.fn(async (input: string, init: RequestInit = {}) => {
    const url = new URL(input, 'http://hearth.test');
    const method = init.method ?? 'GET';
    const body = init.body ? JSON.parse(init.body as string) : undefined;
    calls.push({ method, path: url.pathname, body });
    if (url.pathname === '/admin/v1/models') {
      return reply(200, {
        object: 'list',
        data: [{ id: 'smollm2', state: 'ready' }, { id: 'gemma3', state: 'ready' }, { id: 'broken', state: 'failed' }],
        default: 'smollm2',
        management: { enabled: true, models_dir: null },
      });
    }
    if (url.pathname === '/admin/v1/teams' && method === 'GET') return reply(200, { object: 'list', data: teams });
    const m = /^\/admin\/v1\/teams\/([^/]+)$/.exec(url.pathname);
    if (m && method === 'PATCH') {
      const t = teams.find((x) => x.name === decodeURIComponent(m[1]));
      if (!t) return error(404, 'not_found', `no team named '${decodeURIComponent(m[1])}'`);
      const b = body as { limits?: Record<string, number | null>; models?: string[] | null };
      for (const k of Object.keys(b)) if (k !== 'limits' && k !== 'models') return error(400, 'invalid_value', `unknown field \`${k}\``);
      for (const [k, v] of Object.entries(b.limits ?? {})) (t.limits as Record<string, number | null>)[k] = v;
      if ('models' in b) t.models = b.models ?? null;
      return reply(200, t);
    }
    return error(404, 'not_found', `no route ${method} ${url.pathname}`);
  });
  return { fetch, calls, teams };
}

let app: Record<string, unknown> | null = null;
const $ = (s: string) => document.querySelector(s) as HTMLElement | null;
const row = (name: string) => $(`[data-testid="team-row"][data-name="${name}"]`);
const form = () => $('[data-testid="team-edit-form"]') as HTMLFormElement | null;
const box = (id: string) => $(`[data-testid="team-model"][data-id="${id}"] input`) as HTMLInputElement;
function type(el: HTMLElement | null, value: string) {
  const input = el as HTMLInputElement;
  input.value = value;
  input.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
}

beforeEach(() => {
  i18n.set('en');
});
afterEach(() => {
  if (app) unmount(app);
  app = null;
  document.body.innerHTML = '';
  vi.unstubAllGlobals();
});

function start() {
  const srv = fakeServer();
  vi.stubGlobal('fetch', srv.fetch);
  app = mount(TeamsPage, { target: document.body });
  return srv;
}

async function openEditor(name: string) {
  await vi.waitFor(() => expect(row(name)).not.toBeNull());
  (row(name)!.querySelector('[data-testid="team-edit"]') as HTMLElement).click();
  flushSync();
  await vi.waitFor(() => expect(document.querySelectorAll('[data-testid="team-model"]').length).toBeGreaterThan(0));
}

describe('TeamsPage', () => {
  it('lists teams with their limits and allow-lists', async () => {
    start();
    await vi.waitFor(() => expect(row('research')).not.toBeNull());
    expect(row('research')!.querySelector('[data-testid="team-limits"]')!.textContent).toBe('60 rpm, 1,000 / month');
    expect(row('research')!.querySelector('[data-testid="team-models"]')!.textContent).toBe('all models');
    expect(row('ops')!.querySelector('[data-testid="team-models"]')!.textContent).toBe('retired-model');
  });

  it('edits limits and restricts the models with one PATCH, then shows the saved team', async () => {
    const srv = start();
    await openEditor('research');
    // The served models are offered (not the failed one); none checked means all allowed.
    const ids = [...document.querySelectorAll('[data-testid="team-model"]')].map((e) => (e as HTMLElement).dataset.id);
    expect(ids).toEqual(['smollm2', 'gemma3']);
    expect(box('smollm2').checked).toBe(false);
    expect($('[data-testid="team-models-hint"]')!.textContent).toContain('every model is allowed');
    expect(($('[data-testid="team-edit-rpm"]') as HTMLInputElement).value).toBe('60');

    type($('[data-testid="team-edit-rpm"]'), '30');
    type($('[data-testid="team-edit-monthly_tokens"]'), '');
    type($('[data-testid="team-edit-max_concurrent"]'), '2');
    box('gemma3').click();
    flushSync();
    form()!.requestSubmit();
    await vi.waitFor(() => expect(form()).toBeNull());
    expect(srv.calls.filter((c) => c.method === 'PATCH')).toEqual([
      { method: 'PATCH', path: '/admin/v1/teams/research', body: { limits: { rpm: 30, max_concurrent: 2, monthly_tokens: null }, models: ['gemma3'] } },
    ]);
    await vi.waitFor(() => expect(row('research')!.querySelector('[data-testid="team-models"]')!.textContent).toBe('gemma3'));
    expect(row('research')!.querySelector('[data-testid="team-limits"]')!.textContent).toBe('30 rpm, 2 concurrent');
    expect($('[data-testid="teams-error"]')).toBeNull();
  });

  it('keeps allowed models that are not served, and unchecking all allows every model', async () => {
    const srv = start();
    await openEditor('ops');
    expect(box('retired-model').checked).toBe(true);
    expect($('[data-testid="team-model"][data-id="retired-model"]')!.textContent).toContain('not served now');
    box('retired-model').click();
    flushSync();
    form()!.requestSubmit();
    await vi.waitFor(() => expect(srv.calls.some((c) => c.method === 'PATCH')).toBe(true));
    expect(srv.calls.find((c) => c.method === 'PATCH')!.body).toEqual({ models: null });
    await vi.waitFor(() => expect(row('ops')!.querySelector('[data-testid="team-models"]')!.textContent).toBe('all models'));
  });

  it('sends nothing when nothing changed, and refuses a bad limit before sending', async () => {
    const srv = start();
    await openEditor('research');
    type($('[data-testid="team-edit-tpm"]'), '0');
    // The browser's own validation (min="1") stops this submit; the page checks again anyway.
    expect(form()!.checkValidity()).toBe(false);
    form()!.dispatchEvent(new Event('submit', { bubbles: true, cancelable: true }));
    flushSync();
    expect($('[data-testid="teams-error"]')!.textContent).toContain('Tokens / min: enter a whole number of at least 1');
    type($('[data-testid="team-edit-tpm"]'), '');
    form()!.requestSubmit();
    await vi.waitFor(() => expect(form()).toBeNull());
    expect(srv.calls.some((c) => c.method === 'PATCH')).toBe(false);
  });

  it("shows the server's error message and refreshes the list", async () => {
    const srv = start();
    await openEditor('research');
    i18n.set('zh-CN');
    flushSync();
    // Deleted by someone else meanwhile: the server answers 404.
    srv.teams.splice(0, 1);
    const listsBefore = srv.calls.filter((c) => c.method === 'GET' && c.path === '/admin/v1/teams').length;
    type($('[data-testid="team-edit-rpm"]'), '10');
    form()!.requestSubmit();
    await vi.waitFor(() => expect($('[data-testid="teams-error"]')).not.toBeNull());
    expect($('[data-testid="teams-error"]')!.textContent).toContain('无法保存团队 research');
    expect($('[data-testid="teams-error"]')!.textContent).toContain("no team named 'research'");
    await vi.waitFor(() => expect(row('research')).toBeNull());
    expect(srv.calls.filter((c) => c.method === 'GET' && c.path === '/admin/v1/teams').length).toBe(listsBefore + 1);
  });
});
