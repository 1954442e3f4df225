// Screenshots of the main pages for docs/screenshots/ (run by hand: npm run screenshots).
import { expect, test, type Page } from '@playwright/test';
import path from 'node:path';
import fs from 'node:fs';
import { GEN_TIMEOUT, lastAssistant, modelIds, sendMessage, setSettings, signIn } from './helpers';

const OUT = path.resolve(process.cwd(), '..', 'docs', 'screenshots');
const themes = ['light', 'dark'] as const;
const langs = ['en', 'zh-CN'] as const;

test.describe.configure({ mode: 'serial' });
test.use({ viewport: { width: 1360, height: 860 } });

let convUrl = '';
let runUrl = '';

async function prefs(page: Page, theme: string, lang: string) {
  await page.addInitScript(([t, l]) => {
    localStorage.setItem('hearth.theme', t);
    localStorage.setItem('hearth.lang', l);
  }, [theme, lang]);
}

test('prepare data @screenshots', async ({ page }) => {
  fs.mkdirSync(OUT, { recursive: true });
  await signIn(page);
  await page.getByTestId('new-chat').click();
  await setSettings(page, { maxTokens: '100' });
  await sendMessage(page, 'Show me some python code and a table');
  await expect(lastAssistant(page)).toHaveAttribute('data-status', 'complete', { timeout: GEN_TIMEOUT });
  await sendMessage(page, 'And some math, like Euler');
  await expect(lastAssistant(page)).toHaveAttribute('data-status', 'complete', { timeout: GEN_TIMEOUT });
  convUrl = page.url();

  const ids = await modelIds(page.request);
  await page.goto('/#/compare');
  await page.getByTestId('column-model-0').selectOption(ids[0]);
  await page.getByTestId('column-model-1').selectOption(ids[1] ?? ids[0]);
  // Short answers: a live model on a CPU would otherwise write for minutes.
  for (const i of [0, 1]) {
    await page.getByTestId(`column-settings-${i}`).click();
    await page.getByTestId(`col${i}-max-tokens`).fill('80');
  }
  await page.getByTestId('run-title').fill('Capitals');
  await page.getByTestId('mode-set').click();
  await page.getByTestId('question-set-input').fill('What is the capital of France?\nWrite python code to add two numbers.');
  await page.getByTestId('compare-run').click();
  for (const cell of ['answer-0-0', 'answer-0-1', 'answer-1-0', 'answer-1-1'])
    await expect(page.getByTestId(cell)).toHaveAttribute('data-streaming', 'false', { timeout: GEN_TIMEOUT });
  await page.getByTestId('vote-0-0').click();
  await page.getByTestId('score-0-0').selectOption('8');
  await page.getByTestId('save-run').click();
  await expect(page).toHaveURL(/#\/compare\/.+/);
  runUrl = page.url();
});

for (const theme of themes)
  for (const lang of langs) {
    test(`pages ${theme} ${lang} @screenshots`, async ({ page }) => {
      await prefs(page, theme, lang);
      await signIn(page);
      await page.goto(convUrl);
      await expect(lastAssistant(page)).toHaveAttribute('data-status', 'complete');
      await page.waitForTimeout(400);
      await page.screenshot({ path: path.join(OUT, `chat-${theme}-${lang}.png`) });
      await page.goto(runUrl);
      await expect(page.getByTestId('question-row').first()).toBeVisible();
      await page.waitForTimeout(300);
      await page.screenshot({ path: path.join(OUT, `compare-${theme}-${lang}.png`) });
      await page.goto('/#/admin/status');
      await expect(page.getByTestId('status-running')).toBeVisible();
      await page.waitForTimeout(500);
      await page.screenshot({ path: path.join(OUT, `admin-${theme}-${lang}.png`) });
    });
  }

test('phone @screenshots', async ({ browser }) => {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 800 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const page = await ctx.newPage();
  await prefs(page, 'light', 'en');
  await signIn(page);
  await page.goto(convUrl);
  await expect(lastAssistant(page)).toHaveAttribute('data-status', 'complete');
  await page.screenshot({ path: path.join(OUT, 'chat-phone.png') });
  await page.getByTestId('menu-toggle').click();
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(OUT, 'chat-phone-sidebar.png') });
  await ctx.close();
});
