// The admin Models section in jsdom, over the real API client (src/lib/api.ts) and a fake
// /admin/v1/models behind fetch that behaves like the server's (crates/server/src/api/admin_models.rs).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import ModelsPage from './admin/ModelsPage.svelte';
import { i18n } from '../lib/i18n.svelte';
import type { AdminModel } from '../lib/types';

const DIR = '/srv/models';
const FILES: Record<string, Partial<AdminModel>> = {
  'smol.gguf': { architecture: 'llama', quantization: 'Q4_1', context_length: 8192, file_size: 100 * 1024 * 1024 },
  'broken.gguf': {},
};

interface Call { method: string; path: string; body: unknown }

/** A fake server: `calls` records every request; a load is `loading` for one list request. */
function fakeServer(opts: { enabled?: boolean; dir?: string | null } = {}) {
  const enabled = opts.enabled ?? true;
  const dir = opts.dir === undefined ? DIR : opts.dir;
  const models: AdminModel[] = [
    { id: 'smollm2', state: 'ready', path: `${DIR}/smol.gguf`, ...FILES['smol.gguf'] },
    { id: 'org/gemma', state: 'ready', path: '/elsewhere/gemma.gguf', architecture: 'gemma3', file_size: 2048 },
  ];
  const loading = new Map<string, { path: string; polls: number }>();
  const failed = new Map<string, { path: string; error: string }>();
  const calls: Call[] = [];
  const reply = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  const error = (status: number, code: string, message: string) => reply(status, { error: { message, type: 'invalid_request_error', code } });
  const listed = () => models.map((m, i) => ({ ...m, default: i === 0 }));

  const fetch = vi.fn(async (input: string, init: RequestInit = {}) => {
    const url = new URL(input, 'http://hearth.test');
    const method = init.method ?? 'GET';
    const body = init.body ? JSON.parse(init.body as string) : undefined;
    calls.push({ method, path: url.pathname + url.search, body });
    if (url.pathname === '/v1/models') return reply(200, { data: models.map((m) => ({ id: m.id })) });
    if (url.pathname === '/admin/v1/models' && method === 'GET') {
      const rows: AdminModel[] = listed();
      for (const [id, f] of failed) rows.push({ id, state: 'failed', path: f.path, error: f.error });
      for (const [id, j] of loading) {
        if (j.polls++ < 1) rows.push({ id, state: 'loading', path: j.path, elapsed_s: 0.4 });
        else {
          loading.delete(id);
          const file = j.path.slice(DIR.length + 1);
          if (file === 'broken.gguf') {
            failed.set(id, { path: j.path, error: 'not a GGUF file (bad magic)' });
            rows.push({ id, state: 'failed', path: j.path, error: 'not a GGUF file (bad magic)' });
            continue;
          }
          models.push({ id, state: 'ready', path: j.path, ...FILES[file] });
          rows.push({ ...models[models.length - 1], default: false });
        }
      }
      return reply(200, { object: 'list', data: rows, default: models[0]?.id ?? null, management: { enabled, models_dir: enabled ? dir : null } });
    }
    if (!enabled) return error(403, 'model_admin_disabled', 'Model management is turned off on this server (--no-model-admin).');
    if (url.pathname === '/admin/v1/models' && method === 'POST') {
      const b = body as { id: string; path: string };
      if (!dir) return error(403, 'model_loading_disabled', 'Loading models needs a models directory.');
      const full = b.path.startsWith('/') ? b.path : `${DIR}/${b.path}`;
      if (!full.startsWith(`${DIR}/`)) return error(403, 'path_not_allowed', `\`${b.path}\` is outside the models directory ${DIR}.`);
      if (!(full.slice(DIR.length + 1) in FILES)) return error(400, 'model_load_failed', `Cannot open the model path \`${b.path}\`.`);
      if (models.some((m) => m.id === b.id)) return error(409, 'model_exists', `A model with the id \`${b.id}\` is served already.`);
      loading.set(b.id, { path: full, polls: 0 });
      return reply(202, { id: b.id, state: 'loading', path: full });
    }
    const m = /^\/admin\/v1\/models\/(.+)$/.exec(url.pathname);
    const id = m ? m[1].split('/').map(decodeURIComponent).join('/') : '';
    if (m && method === 'DELETE' && failed.delete(id)) return reply(200, { id, deleted: true });
    const i = models.findIndex((x) => x.id === id);
    if (m && i < 0) return error(404, 'model_not_found', `The model \`${id}\` does not exist.`);
    if (m && method === 'DELETE') {
      models.splice(i, 1);
      return reply(200, { id, unloaded: true, cancelled: url.searchParams.get('cancel') === 'true' });
    }
    if (m && method === 'PATCH') {
      models.unshift(...models.splice(i, 1));
      return reply(200, { ...models[0], default: true });
    }
    return error(404, 'not_found', `no route ${method} ${url.pathname}`);
  });
  return { fetch, calls, models };
}

let app: Record<string, unknown> | null = null;
const $ = (s: string) => document.querySelector(s) as HTMLElement | null;
const row = (id: string) => $(`[data-testid="model-row"][data-id="${id}"]`);
const rows = () => [...document.querySelectorAll('[data-testid="model-row"]')].map((r) => (r as HTMLElement).dataset.id);
function type(el: HTMLElement | null, value: string) {
  const input = el as HTMLInputElement;
  input.value = value;
  input.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
}
const submit = () => ($('[data-testid="model-load-form"]') as HTMLFormElement).requestSubmit();

beforeEach(() => {
  i18n.set('en');
  vi.stubGlobal('confirm', vi.fn(() => true));
});
afterEach(() => {
  if (app) unmount(app);
  app = null;
  document.body.innerHTML = '';
  vi.unstubAllGlobals();
});

function start(opts?: Parameters<typeof fakeServer>[0]) {
  const srv = fakeServer(opts);
  vi.stubGlobal('fetch', srv.fetch);
  app = mount(ModelsPage, { target: document.body });
  return srv;
}

describe('ModelsPage', () => {
  it('lists the served models with state, default, size and the path under the models directory', async () => {
    start();
    await vi.waitFor(() => expect(rows()).toEqual(['smollm2', 'org/gemma']));
    const smol = row('smollm2')!;
    expect(smol.dataset.state).toBe('ready');
    expect(smol.dataset.default).toBe('true');
    expect(smol.querySelector('[data-testid="model-default"]')).not.toBeNull();
    expect(smol.textContent).toContain('100.0 MB');
    expect(smol.textContent).toContain('smol.gguf');
    expect(smol.textContent).not.toContain(DIR);
    // A path outside the directory is shown whole; the default cannot be "made default".
    expect(row('org/gemma')!.textContent).toContain('/elsewhere/gemma.gguf');
    expect(smol.querySelector('[data-testid="model-set-default"]')).toBeNull();
    expect(row('org/gemma')!.querySelector('[data-testid="model-set-default"]')).not.toBeNull();
    expect($('[data-testid="model-path"]')!.closest('label')!.textContent).toContain(DIR);
  });

  it('loads a file by its path, suggesting the id, and follows the load until it is ready', async () => {
    const srv = start();
    await vi.waitFor(() => expect(rows().length).toBe(2));
    type($('[data-testid="model-path"]'), 'smol.gguf');
    expect(($('[data-testid="model-id"]') as HTMLInputElement).value).toBe('smol');
    type($('[data-testid="model-id"]'), 'smol-2');
    ($('[data-testid="model-make-default"]') as HTMLInputElement).click();
    submit();
    await vi.waitFor(() => expect(srv.calls.some((c) => c.method === 'POST')).toBe(true));
    expect(srv.calls.find((c) => c.method === 'POST')).toEqual({
      method: 'POST',
      path: '/admin/v1/models',
      body: { id: 'smol-2', path: 'smol.gguf', wait: false, default: true },
    });
    await vi.waitFor(() => expect(row('smol-2')?.dataset.state).toBe('loading'));
    await vi.waitFor(() => expect(row('smol-2')?.dataset.state).toBe('ready'), { timeout: 4000 });
    // The form is cleared and no error is shown.
    expect(($('[data-testid="model-path"]') as HTMLInputElement).value).toBe('');
    expect($('[data-testid="models-error"]')).toBeNull();
  });

  it('shows the server refusing a path, translated, with its message', async () => {
    start();
    await vi.waitFor(() => expect(rows().length).toBe(2));
    type($('[data-testid="model-path"]'), '/etc/passwd');
    submit();
    await vi.waitFor(() => expect($('[data-testid="models-error"]')).not.toBeNull());
    expect($('[data-testid="models-error"]')!.textContent).toContain('Only models under the models directory can be loaded.');
    expect($('[data-testid="models-error"]')!.textContent).toContain('/etc/passwd');
    expect(rows()).toEqual(['smollm2', 'org/gemma']);

    i18n.set('zh-CN');
    type($('[data-testid="model-path"]'), 'smol.gguf');
    type($('[data-testid="model-id"]'), 'smollm2');
    submit();
    await vi.waitFor(() => expect($('[data-testid="models-error"]')!.textContent).toContain('已有同 ID 的模型在服务。'));
    // An id the server would refuse is caught before sending.
    type($('[data-testid="model-id"]'), 'bad id');
    submit();
    await vi.waitFor(() => expect($('[data-testid="models-error"]')!.textContent).toContain('模型 ID 无效'));
  });

  it('reports a load that fails after it started', async () => {
    start();
    await vi.waitFor(() => expect(rows().length).toBe(2));
    type($('[data-testid="model-path"]'), 'broken.gguf');
    submit();
    await vi.waitFor(() => expect(row('broken')?.dataset.state).toBe('loading'));
    await vi.waitFor(() => expect(row('broken')?.dataset.state).toBe('failed'), { timeout: 4000 });
    expect(row('broken')!.querySelector('[data-testid="model-error"]')!.textContent).toContain('bad magic');
    expect($('[data-testid="models-error"]')!.textContent).toContain('The model could not be loaded.');
    expect(row('broken')!.querySelector('[data-testid="model-unload"]')).toBeNull();
    (row('broken')!.querySelector('[data-testid="model-dismiss"]') as HTMLElement).click();
    await vi.waitFor(() => expect(row('broken')).toBeNull());
  });

  it('unloads (draining or cancelling) and sets the default, with ids that hold a slash', async () => {
    const srv = start();
    await vi.waitFor(() => expect(rows().length).toBe(2));
    (row('org/gemma')!.querySelector('[data-testid="model-set-default"]') as HTMLElement).click();
    await vi.waitFor(() => expect(rows()).toEqual(['org/gemma', 'smollm2']));
    expect(srv.calls.find((c) => c.method === 'PATCH')).toEqual({ method: 'PATCH', path: '/admin/v1/models/org/gemma', body: { default: true } });
    expect(row('org/gemma')!.dataset.default).toBe('true');

    (row('smollm2')!.querySelector('[data-testid="model-unload"]') as HTMLElement).click();
    await vi.waitFor(() => expect(rows()).toEqual(['org/gemma']));
    (row('org/gemma')!.querySelector('[data-testid="model-unload-now"]') as HTMLElement).click();
    await vi.waitFor(() => expect(rows()).toEqual([]));
    expect($('[data-testid="models-error"]')).toBeNull();
    expect(srv.calls.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual([
      '/admin/v1/models/smollm2?cancel=false',
      '/admin/v1/models/org/gemma?cancel=true',
    ]);
  });

  it('asks before unloading and does nothing when declined', async () => {
    const srv = start();
    await vi.waitFor(() => expect(rows().length).toBe(2));
    vi.stubGlobal('confirm', vi.fn(() => false));
    (row('smollm2')!.querySelector('[data-testid="model-unload"]') as HTMLElement).click();
    await new Promise((r) => setTimeout(r, 50));
    expect(srv.calls.some((c) => c.method === 'DELETE')).toBe(false);
    expect(rows()).toEqual(['smollm2', 'org/gemma']);
  });

  it('is read-only when management is off, and has no load form without a models directory', async () => {
    start({ enabled: false });
    await vi.waitFor(() => expect(rows().length).toBe(2));
    expect($('[data-testid="models-readonly"]')).not.toBeNull();
    expect($('[data-testid="model-load-form"]')).toBeNull();
    expect(document.querySelectorAll('[data-testid="model-unload"], [data-testid="model-set-default"]').length).toBe(0);
    unmount(app!);
    document.body.innerHTML = '';

    start({ dir: null });
    await vi.waitFor(() => expect(rows().length).toBe(2));
    expect($('[data-testid="models-no-dir"]')).not.toBeNull();
    expect($('[data-testid="model-load-form"]')).toBeNull();
    expect(row('smollm2')!.querySelector('[data-testid="model-unload"]')).not.toBeNull();
  });
});
