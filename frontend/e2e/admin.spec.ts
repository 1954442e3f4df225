import { expect, test } from '@playwright/test';
import { GEN_TIMEOUT, csrfHeaders, lastAssistant, modelIds, newChat, sendMessage, serverMode, signIn } from './helpers';

test('as admin, create a key and use it from outside the browser', async ({ page, baseURL }) => {
  await signIn(page);
  await page.getByTestId('nav-admin').click();
  await expect(page.getByTestId('admin-nav')).toBeVisible();
  await page.getByTestId('admin-tab-keys').click();
  const name = `e2e-${Date.now()}`;
  await page.getByTestId('key-name').fill(name);
  await page.getByTestId('key-rpm').fill('100');
  await page.getByTestId('key-create').click();
  const secretEl = page.getByTestId('key-secret');
  await expect(secretEl).toBeVisible();
  const secret = (await secretEl.innerText()).trim();
  expect(secret.length).toBeGreaterThan(10);
  await expect(page.locator(`[data-testid="key-row"][data-name="${name}"]`)).toBeVisible();

  // a plain fetch from the test (Node), no cookies
  const res = await fetch(`${baseURL}/v1/models`, { headers: { authorization: `Bearer ${secret}` } });
  expect(res.status).toBe(200);
  const body = await res.json();
  expect(Array.isArray(body.data)).toBeTruthy();
  expect(body.data.length).toBeGreaterThan(0);

  // revoked, it stops working (a local-mode server runs every request as the local admin)
  page.once('dialog', (d) => void d.accept());
  await page.locator(`[data-testid="key-row"][data-name="${name}"]`).getByTestId('key-revoke').click();
  await expect(page.locator(`[data-testid="key-row"][data-name="${name}"]`)).toHaveAttribute('data-state', 'revoked');
  if ((await serverMode(page.request)) === 'auth') {
    const after = await fetch(`${baseURL}/v1/models`, { headers: { authorization: `Bearer ${secret}` } });
    expect(after.status).toBe(401);
  }
});

test('admin pages: status, users, usage and audit render', async ({ page }) => {
  await signIn(page);
  await page.goto('/#/admin/status');
  await expect(page.getByTestId('status-running')).toBeVisible();
  await expect(page.getByTestId('status-models').locator('tbody tr').first()).toBeVisible();
  await page.getByTestId('admin-tab-users').click();
  await expect(page.getByTestId('users-table')).toBeVisible();
  const name = `ui-user-${Date.now()}`;
  await page.getByTestId('user-name').fill(name);
  await page.getByTestId('user-password').fill('a-good-password');
  await page.getByTestId('user-role').selectOption('auditor');
  await page.getByTestId('user-create').click();
  const row = page.locator(`[data-testid="user-row"][data-name="${name}"]`);
  await expect(row.getByTestId('user-role-edit')).toHaveValue('auditor');
  await row.getByTestId('user-role-edit').selectOption('user');
  await expect
    .poll(async () => ((await (await page.request.get('/admin/v1/users')).json()).data as { name: string; role: string }[]).find((u) => u.name === name)?.role)
    .toBe('user');
  await page.getByTestId('admin-tab-usage').click();
  await expect(page.getByTestId('usage-table')).toBeVisible();
  await page.getByTestId('admin-tab-audit').click();
  await expect(page.getByTestId('audit-table')).toBeVisible();
  await expect(page.getByTestId('audit-row').first()).toBeVisible();
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId('audit-export-jsonl').click()]);
  expect(dl.suggestedFilename()).toMatch(/\.jsonl$/);
});

test('a user role cannot open admin pages or call admin APIs', async ({ page, browser }) => {
  await signIn(page);
  test.skip((await serverMode(page.request)) === 'local', 'local mode: every request is the local admin');
  const name = `e2e-user-${Date.now()}`;
  const password = 'e2e-user-password-1';
  const created = await page.request.post('/admin/v1/users', {
    data: { name, role: 'user', password },
    headers: await csrfHeaders(page.request),
  });
  expect(created.status()).toBe(201);

  const ctx = await browser.newContext();
  const p2 = await ctx.newPage();
  await signIn(p2, { username: name, password });
  await expect(p2.getByTestId('nav-admin')).toHaveCount(0);
  for (const pg of ['status', 'keys', 'users', 'audit']) {
    await p2.goto(`/#/admin/${pg}`);
    await expect(p2.getByTestId('not-allowed')).toBeVisible();
  }
  for (const path of ['/admin/v1/keys', '/admin/v1/users', '/admin/v1/audit', '/api/admin/status']) {
    const r = await p2.request.get(path);
    expect(r.status(), path).toBe(403);
  }
  const post = await p2.request.post('/admin/v1/keys', { data: { name: 'nope' }, headers: await csrfHeaders(p2.request) });
  expect(post.status()).toBe(403);
  await ctx.close();
});

test("as admin, edit a team's limits and models; its users' keys get only the allowed model", async ({ page, baseURL }) => {
  await signIn(page);
  test.skip((await serverMode(page.request)) === 'local', 'local mode: every request is the local admin');
  const models = await modelIds(page.request);
  test.skip(models.length < 2, 'needs two served models (scripts/e2e.sh serves smollm2 and gemma3)');
  // scripts/e2e.sh: allow gemma3, refuse smollm2.
  const allowed = models.includes('gemma3') ? 'gemma3' : models[1];
  const refusedModel = models.find((m) => m !== allowed)!;
  const team = `e2e-team-${Date.now()}`;

  // The team, made on the page; then a user in it and a key of that user (through the API).
  await page.getByTestId('nav-admin').click();
  await page.getByTestId('admin-tab-teams').click();
  await page.getByTestId('team-name').fill(team);
  await page.getByTestId('team-tpm').fill('100000');
  await page.getByTestId('team-create').click();
  const row = page.locator(`[data-testid="team-row"][data-name="${team}"]`);
  await expect(row.getByTestId('team-models')).toHaveText('all models');
  await expect(row.getByTestId('team-limits')).toHaveText('100,000 tpm');
  const user = `${team}-user`;
  const headers = await csrfHeaders(page.request);
  expect((await page.request.post('/admin/v1/users', { data: { name: user, role: 'user', team }, headers })).status()).toBe(201);
  const made = await page.request.post('/admin/v1/keys', { data: { name: `${user}-key`, user }, headers });
  expect(made.status()).toBe(201);
  const key = await made.json();
  expect(key.team).toBe(team);

  // Edit: 7 requests a minute, and only the allowed model.
  await row.getByTestId('team-edit').click();
  const form = page.locator(`[data-testid="team-edit-form"][data-name="${team}"]`);
  await expect(form.getByTestId('team-models-hint')).toContainText('every model is allowed');
  await expect(form.getByTestId('team-edit-tpm')).toHaveValue('100000');
  await form.getByTestId('team-edit-rpm').fill('7');
  await form.locator(`[data-testid="team-model"][data-id="${allowed}"] input`).check();
  await expect(form.locator(`[data-testid="team-model"][data-id="${refusedModel}"] input`)).not.toBeChecked();
  await form.getByTestId('team-save').click();
  await expect(form).toHaveCount(0);
  await expect(page.getByTestId('teams-error')).toHaveCount(0);
  await expect(row.getByTestId('team-models')).toHaveText(allowed);
  await expect(row.getByTestId('team-limits')).toHaveText('7 rpm, 100,000 tpm');

  // The admin API has the new limit and allow-list (the unchanged tpm kept).
  const teams = (await (await page.request.get('/admin/v1/teams')).json()).data as { name: string; limits: Record<string, number | null>; models: string[] | null }[];
  const saved = teams.find((x) => x.name === team)!;
  expect(saved.limits.rpm).toBe(7);
  expect(saved.limits.tpm).toBe(100000);
  expect(saved.models).toEqual([allowed]);

  // The user's key: the other model is refused (403 model_not_allowed), the allowed one answers.
  const chat = (model: string) =>
    fetch(`${baseURL}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 }),
    });
  const refused = await chat(refusedModel);
  expect(refused.status).toBe(403);
  const e = await refused.json();
  expect(e.error.code).toBe('model_not_allowed');
  expect(e.error.message).toBe(`This key may not use model '${refusedModel}'.`);
  const ok = await chat(allowed);
  expect(ok.status).toBe(200);
  expect((await ok.json()).model).toBe(allowed);
});

// Needs the server started with --models-dir holding the SmolLM2 file (scripts/e2e.sh does).
test('as admin, unload the SmolLM2 model and load it again from its file; chat still works', async ({ page }) => {
  await signIn(page);
  await page.getByTestId('nav-admin').click();
  await page.getByTestId('admin-tab-models').click();
  const row = page.locator('[data-testid="model-row"][data-id="smollm2"]');
  await expect(row).toHaveAttribute('data-state', 'ready');
  const file = await row.locator('td.path').getAttribute('title');
  expect(file).toMatch(/SmolLM2-135M-Instruct\.Q4_1\.gguf$/);
  const wasDefault = (await row.getAttribute('data-default')) === 'true';
  await expect(page.getByTestId('model-load-form')).toBeVisible();

  // Unload (letting replies finish): gone from the page and from /v1/models.
  page.once('dialog', (d) => void d.accept());
  await row.getByTestId('model-unload').click();
  await expect(row).toHaveCount(0);
  expect(await modelIds(page.request)).not.toContain('smollm2');

  // Load the same file again under the same id (and as the default if it was).
  await page.getByTestId('model-path').fill(file!);
  await page.getByTestId('model-id').fill('smollm2');
  if (wasDefault) await page.getByTestId('model-make-default').check();
  await page.getByTestId('model-load').click();
  await expect(row).toHaveAttribute('data-state', 'ready', { timeout: GEN_TIMEOUT });
  await expect(row).toHaveAttribute('data-default', wasDefault ? 'true' : 'false');
  await expect(page.getByTestId('models-error')).toHaveCount(0);
  await expect.poll(() => modelIds(page.request)).toContain('smollm2');

  // A path outside the models directory is refused, and the page says so.
  await page.getByTestId('model-path').fill('/etc/hostname');
  await page.getByTestId('model-id').fill('not-a-model');
  await page.getByTestId('model-load').click();
  await expect(page.getByTestId('models-error')).toContainText('/etc/hostname');
  await expect(page.locator('[data-testid="model-row"][data-id="not-a-model"]')).toHaveCount(0);

  // The reloaded model answers in a chat.
  await page.getByTestId('nav-chat').click();
  await newChat(page, 16);
  await page.getByTestId('model-select').selectOption('smollm2');
  await sendMessage(page, 'Say hello.');
  const a = lastAssistant(page);
  await expect(a).toHaveAttribute('data-status', 'complete', { timeout: GEN_TIMEOUT });
  await expect(a.getByTestId('message-content')).not.toBeEmpty();

  // Its memory, as the server measures it: the whole file mapped, and after answering its
  // weights are in RAM (mincore); a KV budget with some blocks in use or cached.
  const list = await (await page.request.get('/admin/v1/models')).json();
  const m = list.data.find((x: { id: string }) => x.id === 'smollm2');
  expect(m.memory.weights_mapped_bytes).toBe(m.file_size);
  expect(m.memory.weights_resident_bytes).toBeGreaterThan(m.file_size / 2);
  expect(m.memory.weights_resident_bytes).toBeLessThanOrEqual(m.file_size + 4096);
  expect(m.memory.kv_cache_bytes).toBeGreaterThan(0);
  expect(m.memory.kv_cache_used_bytes).toBeGreaterThan(0);
  expect(m.memory.kv_cache_used_bytes).toBeLessThanOrEqual(m.memory.kv_cache_bytes);
  await page.getByTestId('nav-admin').click();
  await page.getByTestId('admin-tab-models').click();
  await expect(row.getByTestId('model-memory')).toContainText('KV cache');
});
