import { expect, test } from '@playwright/test';
import { GEN_TIMEOUT, csrfHeaders, lastAssistant, signIn } from './helpers';

function bigExport(n: number) {
  const messages = [];
  let parent: string | null = null;
  for (let i = 0; i < n; i++) {
    const id = `m${i}`;
    const user = i % 2 === 0;
    const content = user
      ? `Question ${i}: how do I write a loop?`
      : `Answer ${i}. Here is **bold** text and code:\n\n\`\`\`python\nfor x in range(${i}):\n    print(x)\n\`\`\`\n\n| a | b |\n|---|---|\n| ${i} | ${i * 2} |\n`;
    messages.push({ id, parent_id: parent, role: user ? 'user' : 'assistant', content, reasoning: null, model: user ? null : 'smollm2', status: 'complete', stats: null, created: 1_700_000_000 + i });
    parent = id;
  }
  return { hearth_export: 1, title: `Long ${Date.now()}`, model: null, settings: {}, created: 1_700_000_000, messages };
}

test('a 1,000-message conversation opens windowed, scrolls and streams', async ({ page }) => {
  await signIn(page);
  const r = await page.request.post('/api/conversations/import', { data: bigExport(1000), headers: await csrfHeaders(page.request) });
  expect(r.status()).toBe(201);
  const conv = await r.json();
  const model = (await (await page.request.get('/v1/models')).json()).data[0].id;
  await page.request.patch(`/api/conversations/${conv.id}`, { data: { model, settings: { max_tokens: 64 } }, headers: await csrfHeaders(page.request) });

  await page.evaluate(() => {
    const w = window as unknown as { __long: number[] };
    w.__long = [];
    new PerformanceObserver((l) => l.getEntries().forEach((e) => w.__long.push(e.duration))).observe({ type: 'longtask', buffered: false });
  });
  const t0 = Date.now();
  await page.goto(`/#/c/${conv.id}`);
  await expect(page.locator('[data-testid="message"]').last()).toContainText('Answer 999');
  // Timings are printed, not asserted (bench/ui.sh records them): no timed assertions in tests.
  const openMs = Date.now() - t0;
  // only a window of the messages is in the DOM
  const inDom = await page.locator('[data-testid="message"]').count();
  expect(inDom).toBeLessThanOrEqual(130);

  // scrolling up brings earlier ones in
  const list = page.getByTestId('message-list');
  for (let i = 0; i < 3; i++) {
    await list.evaluate((el) => (el.scrollTop = 0));
    await page.waitForTimeout(300);
  }
  expect(await page.locator('[data-testid="message"]').count()).toBeGreaterThan(inDom);

  // streaming into it: no main-thread stall. A real model may refuse the whole path as too
  // long for its context (then the server's error shows and there is nothing to stream).
  await page.evaluate(() => ((window as unknown as { __long: number[] }).__long = []));
  const before = await page.locator('[data-testid="message"]').count();
  await page.getByTestId('composer-input').fill('One more, a long one please.');
  await page.getByTestId('composer-input').press('Enter');
  const outcome = await expect
    .poll(async () => {
      if ((await page.locator('[data-testid="message"]').count()) >= before + 2) return 'sent';
      if (await page.getByTestId('toast').filter({ hasText: /context|too long|tokens/i }).count()) return 'refused';
      return 'waiting';
    }, { timeout: 30_000 })
    .not.toBe('waiting')
    .then(async () => ((await page.locator('[data-testid="message"]').count()) >= before + 2 ? 'sent' : 'refused'));
  if (outcome === 'refused') {
    test.info().annotations.push({ type: 'note', description: 'the server refused the 1,000-message context; streaming part skipped' });
    console.log(`open ${openMs} ms, ${inDom} messages in the DOM; the model's context is too small to answer this path`);
    return;
  }
  await expect(lastAssistant(page)).toHaveAttribute('data-status', 'complete', { timeout: GEN_TIMEOUT });
  const long = await page.evaluate(() => (window as unknown as { __long: number[] }).__long);
  const worst = Math.max(0, ...long);
  console.log(`open ${openMs} ms, ${inDom} messages in the DOM, worst long task while streaming ${Math.round(worst)} ms`);
});
