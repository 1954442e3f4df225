import { expect, test } from '@playwright/test';
import { ADMIN, serverMode, signIn } from './helpers';

test('sign in, wrong password shown, sign out', async ({ page }) => {
  await page.goto('/');
  if ((await serverMode(page.request)) === 'local') {
    // Local single-user mode: the UI opens directly as the local admin.
    await expect(page.getByTestId('chat-view')).toBeVisible();
    await expect(page.getByTestId('local-mode')).toBeVisible();
    return;
  }
  await expect(page.getByTestId('login-form')).toBeVisible();
  await page.getByTestId('login-username').fill(ADMIN.username);
  await page.getByTestId('login-password').fill('definitely-wrong');
  await page.getByTestId('login-submit').click();
  await expect(page.getByTestId('login-error')).toBeVisible();

  await signIn(page);
  await expect(page.getByTestId('current-user')).toHaveText(ADMIN.username);
  const me = await (await page.request.get('/api/auth/me')).json();
  expect(me.user.name).toBe(ADMIN.username);
  expect(me.csrf_token).toBeTruthy();

  await page.getByTestId('logout').click();
  await expect(page.getByTestId('login-form')).toBeVisible();
  const after = await (await page.request.get('/api/auth/me')).json();
  expect(after.user).toBeNull();
});
