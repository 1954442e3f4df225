// The chat's print view (Export → Print: the page under `@media print`) turned into a PDF by
// headless Chromium, checked with poppler's pdftotext and pdffonts (Debian's poppler-utils,
// installed by scripts/e2e.sh): the Chinese text must be in the PDF as text, drawn with an
// embedded CJK font (Noto Sans CJK from fonts-noto-cjk), not as missing glyphs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from '@playwright/test';
import { csrfHeaders, modelIds, signIn } from './helpers';

const TITLE = '打印测试：长城';
const QUESTION = '请用一句话介绍长城。';
const ANSWER = '长城是中国古代的军事防御工程，全长两万多公里。';

function tool(name: string, args: string[]): string {
  try {
    return execFileSync(name, args, { encoding: 'utf8' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`${name} is missing: install poppler-utils (scripts/e2e.sh does)`);
    }
    throw e;
  }
}

interface PdfFont { name: string; type: string; embedded: boolean; unicode: boolean; object: number }

/** pdffonts' table as rows. */
function fontsOf(pdf: string): PdfFont[] {
  const out: PdfFont[] = [];
  for (const line of tool('pdffonts', [pdf]).split('\n').slice(2)) {
    const m = /^(\S+)\s+(.+?)\s+(\S+)\s+(yes|no)\s+(yes|no)\s+(yes|no)\s+(\d+)\s+\d+\s*$/.exec(line);
    if (m) out.push({ name: m[1], type: m[2], embedded: m[4] === 'yes', unicode: m[6] === 'yes', object: Number(m[7]) });
  }
  return out;
}

/**
 * The font name in a font's descriptor (`/FontDescriptor N 0 R` → `/FontName /...`), read from
 * the PDF's uncompressed object dictionaries. pdffonts prints Type 3 fonts as `[none]`: Chromium
 * (Skia) embeds CFF-outline OpenType fonts such as Noto Sans CJK as Type 3 glyph procedures,
 * and only their descriptor names the font they were drawn from.
 */
function descriptorName(bytes: string, object: number): string | null {
  const dict = (n: number) => {
    const at = new RegExp(`(?:^|\\s)${n} 0 obj`).exec(bytes);
    if (!at) return '';
    const rest = bytes.slice(at.index);
    const end = rest.search(/\bstream\b|\bendobj\b/);
    return end < 0 ? rest : rest.slice(0, end);
  };
  const d = /\/FontDescriptor\s+(\d+)\s+0\s+R/.exec(dict(object));
  const name = d ? /\/FontName\s*\/([^\s/<>[\]()]+)/.exec(dict(Number(d[1]))) : null;
  return name ? name[1] : null;
}

test('print a conversation with Chinese text to PDF: the text is there, in an embedded CJK font', async ({ page }) => {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-print-'));
  try {
    // window.print() would open the print dialog; record the call instead.
    await page.addInitScript(() => {
      (window as unknown as { printed: number }).printed = 0;
      window.print = () => {
        (window as unknown as { printed: number }).printed++;
      };
    });
    await signIn(page);
    const [model] = await modelIds(page.request);
    const created = Math.floor(Date.now() / 1000);
    const doc = {
      hearth_export: 1,
      title: TITLE,
      model,
      settings: {},
      created,
      messages: [
        { id: 'm1', parent_id: null, role: 'user', content: QUESTION, reasoning: null, model: null, status: 'complete', stats: null, created },
        { id: 'm2', parent_id: 'm1', role: 'assistant', content: ANSWER, reasoning: null, model, status: 'complete', stats: null, created },
      ],
    };
    const res = await page.request.post('/api/conversations/import', { data: doc, headers: await csrfHeaders(page.request) });
    expect(res.status()).toBe(201);
    const conv = await res.json();

    await page.goto(`/#/c/${encodeURIComponent(conv.id)}`);
    await expect(page.locator('[data-testid="message"][data-role="assistant"]').getByTestId('message-content')).toHaveText(ANSWER);
    await page.getByTestId('export-menu').click();
    await page.getByTestId('print').click();
    await expect.poll(() => page.evaluate(() => (window as unknown as { printed: number }).printed)).toBe(1);

    // The print view: the title is shown, the controls are not.
    await page.emulateMedia({ media: 'print' });
    await expect(page.locator('h1.print-only')).toHaveText(TITLE);
    await expect(page.getByTestId('composer-input')).toBeHidden();
    await expect(page.getByTestId('export-menu')).toBeHidden();
    await page.evaluate(() => document.fonts.ready);

    const pdf = join(dir, 'conversation.pdf');
    await page.pdf({ path: pdf, format: 'A4', printBackground: true });

    // pdftotext may break lines or put spaces between glyphs: compare without whitespace.
    const text = tool('pdftotext', ['-enc', 'UTF-8', pdf, '-']).replace(/\s+/g, '');
    for (const s of [TITLE, QUESTION, ANSWER]) expect(text, s).toContain(s);

    // The CJK glyphs come from an embedded Noto Sans CJK (a real font name, or the Type 3
    // fonts Chromium makes of it), with a Unicode map (which is how pdftotext read them).
    const bytes = readFileSync(pdf, 'latin1');
    const fonts = fontsOf(pdf).map((f) => ({ ...f, from: f.name === '[none]' ? descriptorName(bytes, f.object) : f.name }));
    const cjk = fonts.filter((f) => /NotoSansCJK|NotoSerifCJK/i.test(f.from ?? ''));
    expect(cjk.length, `fonts in the PDF: ${JSON.stringify(fonts)}`).toBeGreaterThan(0);
    expect(cjk.every((f) => f.embedded && f.unicode), JSON.stringify(cjk)).toBe(true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
