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
});
