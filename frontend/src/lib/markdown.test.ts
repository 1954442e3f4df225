import { describe, expect, it } from 'vitest';
import { hasMath, highlight, renderMarkdown, setKatex } from './markdown';

describe('renderMarkdown', () => {
  it('removes scripts and event handlers', () => {
    const html = renderMarkdown('hi <script>alert(1)</script> <img src=x onerror="alert(2)"> <a href="javascript:alert(3)">x</a>');
    expect(html).not.toContain('<script');
    expect(html).not.toContain('onerror');
    expect(html).not.toContain('javascript:');
  });

  it('highlights fenced code and adds a copy button', () => {
    const html = renderMarkdown('```python\ndef f(x):\n    return x\n```');
    expect(html).toContain('class="hljs language-python"');
    expect(html).toContain('hljs-keyword');
    expect(html).toContain('data-testid="copy-code"');
  });

  it('escapes code in unknown languages', () => {
    const html = renderMarkdown('```nolang\n<b>x</b>\n```');
    expect(html).toContain('&lt;b&gt;x&lt;/b&gt;');
  });

  it('renders GFM tables in a scrolling wrapper', () => {
    const html = renderMarkdown('| a | b |\n|---|:-:|\n| 1 | 2 |');
    expect(html).toContain('<table>');
    expect(html).toContain('table-wrap');
    expect(html).toContain('<td style="text-align:center">2</td>');
  });

  it('opens links in a new tab', () => {
    expect(renderMarkdown('[x](https://example.com)')).toContain('target="_blank"');
  });

  it('detects math and renders it with KaTeX once loaded', () => {
    expect(hasMath('the cost is $5 and $10')).toBe(false);
    expect(hasMath('Euler: $e^{i\\pi}+1=0$')).toBe(true);
    expect(hasMath('$$\\int_0^1 x\\,dx$$')).toBe(true);
    expect(hasMath('\\(a^2\\)')).toBe(true);
    const before = renderMarkdown('see $x^2$ here');
    expect(before).toContain('class="math math-inline"');
    setKatex({ renderToString: (tex, o) => `<span class="katex">${o.displayMode ? 'D' : 'I'}:${tex}</span>` });
    expect(renderMarkdown('see $x^2$ here')).toContain('<span class="katex">I:x^2</span>');
    expect(renderMarkdown('$$\na+b\n$$')).toContain('<span class="katex">D:a+b</span>');
    setKatex(null);
  });

  it('highlight() falls back to escaped text', () => {
    expect(highlight('<x>', '')).toEqual({ html: '&lt;x&gt;', language: null });
    expect(highlight('let x = 1;', 'rust').language).toBe('rust');
    expect(highlight('ls -la', 'sh').language).toBe('sh');
  });
});
