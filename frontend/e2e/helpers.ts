import { expect, type APIRequestContext, type Page } from '@playwright/test';

export const ADMIN = {
  username: process.env.HEARTH_UI_ADMIN_USER ?? 'admin',
  password: process.env.HEARTH_UI_ADMIN_PASSWORD ?? 'admin-pass',
};

export async function serverMode(request: APIRequestContext): Promise<'local' | 'auth'> {
  const me = await (await request.get('/api/auth/me')).json();
  return me.mode;
}

/** Opens the UI signed in (as the admin unless told otherwise); a local server opens directly. */
export async function signIn(page: Page, creds: { username: string; password: string } = ADMIN): Promise<void> {
  await page.goto('/');
  if ((await serverMode(page.request)) === 'auth') {
    const form = page.getByTestId('login-form');
    await expect(form.or(page.getByTestId('chat-view'))).toBeVisible();
    if (await form.isVisible()) {
      await page.getByTestId('login-username').fill(creds.username);
      await page.getByTestId('login-password').fill(creds.password);
      await page.getByTestId('login-submit').click();
    }
  }
  await expect(page.getByTestId('chat-view')).toBeVisible();
}

/** Headers for a state-changing request made with the page's session cookie. */
export async function csrfHeaders(request: APIRequestContext): Promise<Record<string, string>> {
  const me = await (await request.get('/api/auth/me')).json();
  return me.csrf_token ? { 'x-csrf-token': me.csrf_token } : {};
}

export async function modelIds(request: APIRequestContext): Promise<string[]> {
  const r = await request.get('/v1/models');
  expect(r.ok()).toBeTruthy();
  return ((await r.json()).data as { id: string }[]).map((m) => m.id);
}

/** The conversation id from the URL (#/c/ID). */
export function convIdOf(page: Page): string {
  const m = /#\/c\/([^/?]+)/.exec(page.url());
  if (!m) throw new Error(`not a conversation URL: ${page.url()}`);
  return decodeURIComponent(m[1]);
}

/** Sets draft settings for the next new chat through the settings panel. */
export async function setSettings(page: Page, s: { system?: string; temperature?: string; maxTokens?: string }): Promise<void> {
  await page.getByTestId('settings-button').click();
  if (s.system !== undefined) await page.getByTestId('settings-system').fill(s.system);
  if (s.temperature !== undefined) await page.getByTestId('settings-temperature').fill(s.temperature);
  if (s.maxTokens !== undefined) await page.getByTestId('settings-max-tokens').fill(s.maxTokens);
  await page.getByTestId('settings-save').click();
  await expect(page.getByTestId('settings-panel')).toBeHidden();
}

/** Sends a message and waits until it and its (new) reply are on the page. */
export async function sendMessage(page: Page, text: string): Promise<void> {
  const messages = page.locator('[data-testid="message"]');
  const before = await messages.count();
  const box = page.getByTestId('composer-input');
  await box.fill(text);
  await box.press('Enter');
  await expect(messages).toHaveCount(before + 2);
  await expect(page.locator('[data-testid="message"][data-role="user"]').last().getByTestId('message-content')).toHaveText(text);
}

export const lastAssistant = (page: Page) => page.locator('[data-testid="message"][data-role="assistant"]').last();

/** How long a reply may take (a small model on a busy CPU can be slow). */
export const GEN_TIMEOUT = Number(process.env.HEARTH_UI_GEN_TIMEOUT ?? 120_000);

/** A new chat whose replies are at most `maxTokens` long (keeps the specs quick on a CPU). */
export async function newChat(page: Page, maxTokens = 48): Promise<void> {
  await page.getByTestId('new-chat').click();
  await setSettings(page, { maxTokens: String(maxTokens) });
}

export const LONG_PROMPT = 'Write a very long, detailed story about a lighthouse keeper, with many chapters.';
