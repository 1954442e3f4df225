// The web UI's numbers for docs/BENCHMARKS.md (issue 8): the first load's compiled size
// (gzipped, as served), time to first render of the chat page (first contentful paint and
// the chat view visible), and the time to render a 1,000-message conversation, in Debian's
// Chromium against a live `hearth serve` in local mode (HEARTH_UI_URL). Run by bench/ui.sh.
import { chromium } from '@playwright/test';
import { readFileSync, readdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';

const url = process.env.HEARTH_UI_URL;
if (!url) throw new Error('HEARTH_UI_URL is not set');
const reps = Number(process.env.REPS ?? 5);

// What index.html loads at once (its script and style tags), gzipped like the server does.
const dist = new URL('../dist/', import.meta.url).pathname;
const html = readFileSync(join(dist, 'index.html'), 'utf8');
const first = [...html.matchAll(/(?:src|href)="\/?(assets\/[^"]+)"/g)].map((m) => m[1]);
const gz = (p) => gzipSync(readFileSync(join(dist, p)), { level: 9 }).length;
const firstLoad = gz('index.html') + first.reduce((n, p) => n + gz(p), 0);
const all = readdirSync(join(dist, 'assets')).reduce((n, f) => n + gz(join('assets', f)), 0);

function bigExport(n) {
  const messages = [];
  let parent = null;
  for (let i = 0; i < n; i++) {
    const user = i % 2 === 0;
    const content = user
      ? `Question ${i}: how do I write a loop?`
      : `Answer ${i}. Here is **bold** text and code:\n\n\`\`\`python\nfor x in range(${i}):\n    print(x)\n\`\`\`\n\n| a | b |\n|---|---|\n| ${i} | ${i * 2} |\n`;
    messages.push({ id: `m${i}`, parent_id: parent, role: user ? 'user' : 'assistant', content, status: 'complete', created: 1_700_000_000 + i });
    parent = `m${i}`;
  }
  return { hearth_export: 1, title: 'bench 1000', settings: {}, created: 1_700_000_000, messages };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const fcp = [], ready = [], long = [];
const imp = await fetch(`${url}/api/conversations/import`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(bigExport(1000)) });
if (imp.status !== 201) throw new Error(`import: ${imp.status} ${await imp.text()} (bench/ui.sh runs the server in local mode)`);
const conv = await imp.json();
for (let i = 0; i < reps; i++) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const t0 = Date.now();
  await page.goto(url);
  await page.getByTestId('chat-view').waitFor();
  ready.push(Date.now() - t0);
  fcp.push(await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN));
  const t1 = Date.now();
  await page.goto(`${url}/#/c/${conv.id}`);
  await page.locator('[data-testid="message"]').last().filter({ hasText: 'Answer 999' }).waitFor();
  long.push(Date.now() - t1);
  await ctx.close();
}
await browser.close();
await fetch(`${url}/api/conversations/${conv.id}`, { method: 'DELETE' });
console.log(JSON.stringify({
  first_load_gzip_kb: +(firstLoad / 1024).toFixed(1),
  all_assets_gzip_kb: +(all / 1024).toFixed(1),
  first_contentful_paint_ms: Math.round(median(fcp)),
  chat_view_ready_ms: Math.round(median(ready)),
  open_1000_messages_ms: Math.round(median(long)),
  reps,
}));
