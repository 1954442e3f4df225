import { expect, test, type Page } from '@playwright/test';
import { GEN_TIMEOUT, modelIds, signIn } from './helpers';
import fs from 'node:fs/promises';

async function setupColumns(page: Page) {
  const ids = await modelIds(page.request);
  await page.goto('/#/compare');
  await expect(page.getByTestId('compare-page')).toBeVisible();
  await page.getByTestId('column-model-0').selectOption(ids[0]);
  // Two models when there are two; else one model with two temperatures.
  await page.getByTestId('column-model-1').selectOption(ids[1] ?? ids[0]);
  for (const [i, temp] of [[0, '0.2'], [1, '1.0']] as const) {
    await page.getByTestId(`column-settings-${i}`).click();
    await page.getByTestId(`col${i}-temperature`).fill(temp);
    await page.getByTestId(`col${i}-max-tokens`).fill('48');
  }
  return ids;
}

async function waitAnswered(page: Page, qi: number) {
  const texts: string[] = [];
  for (const ci of [0, 1]) {
    const cell = page.getByTestId(`answer-${qi}-${ci}`);
    await expect(cell).toHaveAttribute('data-streaming', 'false', { timeout: GEN_TIMEOUT });
    texts.push((await page.getByTestId(`answer-text-${qi}-${ci}`).innerText()).trim());
  }
  // A real model may end a reply at once (an empty answer is an answer); at least one of the
  // two columns must have streamed text into the row.
  expect(texts.some((t) => t.length > 0), `question ${qi}: both answers empty`).toBeTruthy();
}

test('compare two columns on one prompt', async ({ page }) => {
  await signIn(page);
  await setupColumns(page);
  await page.getByTestId('compare-prompt').fill('What is the capital of France?');
  await page.getByTestId('compare-run').click();
  // both columns stream at once
  await expect(page.getByTestId('answer-0-0')).toBeVisible();
  await expect(page.getByTestId('answer-0-1')).toBeVisible();
  await waitAnswered(page, 0);
  for (const ci of [0, 1]) {
    const stats = page.getByTestId(`answer-0-${ci}`).getByTestId('message-stats');
    await expect(stats.getByTestId('stat-ttft')).toBeVisible();
    await expect(stats.getByTestId('stat-tokens')).toBeVisible();
  }
  await expect(page).toHaveURL(/#\/compare\/.+/);
});

test('question set: three questions, votes, scores, saved run and reports', async ({ page }) => {
  await signIn(page);
  await setupColumns(page);
  const title = `Set ${Date.now()}`;
  await page.getByTestId('run-title').fill(title);
  await page.getByTestId('mode-set').click();
  await page.getByTestId('question-set-input').fill('What is 2+2?\nName a color.\nSay "hi", <b>politely</b>.');
  await expect(page.getByTestId('question-count')).toContainText('3');
  await page.getByTestId('compare-run').click();
  await expect(page.getByTestId('question-row')).toHaveCount(3);
  for (const qi of [0, 1, 2]) await waitAnswered(page, qi);

  await page.getByTestId('vote-0-0').click();
  await page.getByTestId('vote-1-1').click();
  await page.getByTestId('vote-tie-2').click();
  await page.getByTestId('score-0-0').selectOption('8');
  await page.getByTestId('score-0-1').selectOption('3');
  await page.getByTestId('save-run').click();
  await expect(page).toHaveURL(/#\/compare\/r?.+/);
  const runId = decodeURIComponent(/#\/compare\/([^/?]+)/.exec(page.url())![1]);

  // saved on the server
  await expect
    .poll(async () => {
      const r = await (await page.request.get(`/api/compare/runs/${runId}`)).json();
      return [r.questions.length, r.questions[0].vote, r.questions[1].vote, r.questions[2].vote, r.questions[0].scores[0]];
    })
    .toEqual([3, 0, 1, 'tie', 8]);

  const [html] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-run-html').click()]);
  const text = await fs.readFile((await html.path())!, 'utf8');
  expect(text).toContain('<!doctype html>');
  expect(text).toContain('Say &quot;hi&quot;, &lt;b&gt;politely&lt;/b&gt;.');
  expect(text).not.toMatch(/<script/i);
  const [md] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-run-md').click()]);
  expect(await fs.readFile((await md.path())!, 'utf8')).toContain(`# ${title}`);
  const [csv] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-run-csv').click()]);
  const csvText = await fs.readFile((await csv.path())!, 'utf8');
  expect(csvText.split('\r\n')[0]).toContain('question,prompt,column,model');

  // reopen it from the list
  await page.getByTestId('new-run').click();
  await expect(page.getByTestId('question-row')).toHaveCount(0);
  await page.getByTestId('run-item').filter({ hasText: title }).getByRole('link').click();
  await expect(page.getByTestId('question-row')).toHaveCount(3);
  await expect(page.getByTestId('vote-0-0')).toHaveAttribute('aria-pressed', 'true');

  // the leaderboard counts the votes
  await page.getByTestId('nav-leaderboard').click();
  await expect(page.getByTestId('leaderboard-table')).toBeVisible();
  await expect(page.getByTestId('leaderboard-row').first()).toBeVisible();
});

test('blind mode hides model names until voted', async ({ page }) => {
  await signIn(page);
  const ids = await setupColumns(page);
  await page.getByTestId('blind-toggle').check();
  await page.getByTestId('compare-prompt').fill('Tell me a fact.');
  await page.getByTestId('compare-run').click();
  await waitAnswered(page, 0);
  await expect(page.getByTestId('answer-model-0-0')).not.toHaveText(ids[0]);
  await page.getByTestId('vote-0-1').click();
  await expect(page.getByTestId('answer-model-0-0')).toHaveText(ids[0]);
});
