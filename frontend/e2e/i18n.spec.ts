import { expect, test } from '@playwright/test';
import { signIn } from './helpers';

test('switch to Chinese and back; the choice is kept', async ({ page }) => {
  await signIn(page);
  await page.getByTestId('lang-select').selectOption('zh-CN');
  await expect(page.getByTestId('nav-chat')).toHaveText('对话');
  await expect(page.getByTestId('send-button')).toHaveText('发送');
  await expect(page.locator('html')).toHaveAttribute('lang', 'zh-CN');
  await page.reload();
  await expect(page.getByTestId('nav-compare')).toHaveText('对比');
  await page.getByTestId('lang-select').selectOption('en');
  await expect(page.getByTestId('nav-chat')).toHaveText('Chat');
});

test('dark theme toggle is kept', async ({ page }) => {
  await signIn(page);
  const before = await page.locator('html').getAttribute('data-theme');
  await page.getByTestId('theme-toggle').click();
  const after = await page.locator('html').getAttribute('data-theme');
  expect(after).not.toBe(before);
  await page.reload();
  await expect(page.locator('html')).toHaveAttribute('data-theme', after!);
});
