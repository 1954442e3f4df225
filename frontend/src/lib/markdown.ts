// Markdown to sanitized HTML: marked (GFM tables), highlight.js core with common languages,
// math rendered by KaTeX once loaded (a separate chunk fetched only when a message has math),
// DOMPurify over the result. Results are memoized so a long conversation renders each message
// once.
import { Marked, type Tokens, type TokenizerAndRendererExtension } from 'marked';
import DOMPurify from 'dompurify';
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import c from 'highlight.js/lib/languages/c';
import cpp from 'highlight.js/lib/languages/cpp';
import css from 'highlight.js/lib/languages/css';
import diff from 'highlight.js/lib/languages/diff';
import go from 'highlight.js/lib/languages/go';
import java from 'highlight.js/lib/languages/java';
import javascript from 'highlight.js/lib/languages/javascript';
import jsonLang from 'highlight.js/lib/languages/json';
import python from 'highlight.js/lib/languages/python';
import rust from 'highlight.js/lib/languages/rust';
import sql from 'highlight.js/lib/languages/sql';
import typescript from 'highlight.js/lib/languages/typescript';
import xml from 'highlight.js/lib/languages/xml';
import yaml from 'highlight.js/lib/languages/yaml';

const languages = { bash, c, cpp, css, diff, go, java, javascript, json: jsonLang, python, rust, sql, typescript, xml, yaml };
for (const [name, def] of Object.entries(languages)) hljs.registerLanguage(name, def);
hljs.registerAliases(['sh', 'shell', 'zsh', 'console'], { languageName: 'bash' });

export interface KatexLike {
  renderToString(tex: string, opts: { displayMode: boolean; throwOnError: boolean; output?: string }): string;
}

let katex: KatexLike | null = null;
let katexLoading: Promise<KatexLike> | null = null;
const katexListeners = new Set<() => void>();

/** Loads KaTeX (its own chunk plus CSS); listeners re-render once it is there. */
export function loadKatex(): Promise<KatexLike> {
  if (!katexLoading) {
    katexLoading = Promise.all([import('katex'), import('katex/dist/katex.min.css')]).then(([m]) => {
      katex = (m as unknown as { default: KatexLike }).default ?? (m as unknown as KatexLike);
      cache.clear();
      for (const f of katexListeners) f();
      return katex;
    });
  }
  return katexLoading;
}

export function onKatexLoaded(f: () => void): () => void {
  katexListeners.add(f);
  return () => katexListeners.delete(f);
}

export function katexReady(): boolean {
  return katex !== null;
}

/** For tests: render math with this implementation. */
export function setKatex(k: KatexLike | null): void {
  katex = k;
  cache.clear();
}

const MATH_RE = /\$\$[\s\S]+?\$\$|\\\[[\s\S]+?\\\]|\\\([\s\S]+?\\\)|(?:^|[^\\$\w])\$[^\s$](?:[^$\n]*[^\s$\\])?\$(?!\d)/;

/** Whether the text seems to contain TeX math ($…$, $$…$$, \(…\), \[…\]). */
export function hasMath(src: string): boolean {
  return MATH_RE.test(src);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

function renderMath(tex: string, display: boolean): string {
  if (katex) {
    try {
      return katex.renderToString(tex, { displayMode: display, throwOnError: false, output: 'htmlAndMathml' });
    } catch {
      /* fall through to the raw TeX */
    }
  }
  const cls = display ? 'math math-display' : 'math math-inline';
  return `<span class="${cls}">${escapeHtml(display ? `$$${tex}$$` : `$${tex}$`)}</span>`;
}

interface MathToken extends Tokens.Generic {
  text: string;
  display: boolean;
}

const blockMath: TokenizerAndRendererExtension = {
  name: 'blockMath',
  level: 'block',
  start: (src: string) => src.match(/\$\$|\\\[/)?.index,
  tokenizer(src: string) {
    const m = /^(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\])[ \t]*(?:\n|$)/.exec(src);
    if (m) return { type: 'blockMath', raw: m[0], text: (m[1] ?? m[2]).trim(), display: true } as MathToken;
    return undefined;
  },
  renderer: (t) => `<div class="math-block">${renderMath((t as MathToken).text, true)}</div>\n`,
};

const inlineMath: TokenizerAndRendererExtension = {
  name: 'inlineMath',
  level: 'inline',
  start: (src: string) => src.match(/\$|\\\(|\\\[/)?.index,
  tokenizer(src: string) {
    let m = /^\$\$([\s\S]+?)\$\$/.exec(src) ?? /^\\\[([\s\S]+?)\\\]/.exec(src);
    if (m) return { type: 'inlineMath', raw: m[0], text: m[1].trim(), display: true } as MathToken;
    m = /^\\\(([\s\S]+?)\\\)/.exec(src) ?? /^\$([^\s$](?:[^$\n]*[^\s$\\])?)\$(?!\d)/.exec(src);
    if (m) return { type: 'inlineMath', raw: m[0], text: m[1], display: false } as MathToken;
    return undefined;
  },
  renderer: (t) => renderMath((t as MathToken).text, (t as MathToken).display),
};

export function highlight(code: string, lang: string): { html: string; language: string | null } {
  const l = lang.trim().toLowerCase().split(/\s+/)[0] ?? '';
  if (l && hljs.getLanguage(l)) {
    try {
      return { html: hljs.highlight(code, { language: l, ignoreIllegals: true }).value, language: l };
    } catch {
      /* plain below */
    }
  }
  return { html: escapeHtml(code), language: l || null };
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  extensions: [blockMath, inlineMath],
  renderer: {
    code({ text, lang }: Tokens.Code): string {
      const { html, language } = highlight(text, lang ?? '');
      const label = escapeHtml(language ?? 'text');
      return (
        `<div class="code-block"><div class="code-head"><span class="code-lang">${label}</span>` +
        `<button type="button" class="copy-code" data-testid="copy-code" aria-label="Copy code" title="Copy"><svg width="14" height="14" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M9 9h11v11H9zM5 15H4V4h11v1"/></svg></button></div>` +
        `<pre><code class="hljs${language ? ` language-${label}` : ''}">${html}</code></pre></div>\n`
      );
    },
    table(token: Tokens.Table): string {
      // The default table wrapped so wide tables scroll instead of widening the page.
      const head = token.header.map((c) => cell(this.parser.parseInline(c.tokens), c.align, 'th')).join('');
      const body = token.rows
        .map((r) => `<tr>${r.map((c) => cell(this.parser.parseInline(c.tokens), c.align, 'td')).join('')}</tr>`)
        .join('\n');
      return `<div class="table-wrap"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>\n`;
    },
  },
});

function cell(html: string, align: 'center' | 'left' | 'right' | null, tag: 'th' | 'td'): string {
  return align ? `<${tag} style="text-align:${align}">${html}</${tag}>` : `<${tag}>${html}</${tag}>`;
}

let hooked = false;
function purify(html: string): string {
  if (!hooked) {
    DOMPurify.addHook('afterSanitizeAttributes', (node) => {
      if (node.tagName === 'A' && node.getAttribute('href')) {
        node.setAttribute('target', '_blank');
        node.setAttribute('rel', 'noopener noreferrer');
      }
    });
    hooked = true;
  }
  return DOMPurify.sanitize(html, { ADD_ATTR: ['target'], FORBID_TAGS: ['style', 'form', 'input'] });
}

const cache = new Map<string, string>();
const CACHE_MAX = 2000;

/** Markdown source to safe HTML. `memo`: keep the result (false while a message streams). */
export function renderMarkdown(src: string, memo = true): string {
  const hit = cache.get(src);
  if (hit !== undefined) return hit;
  let html: string;
  try {
    html = purify(marked.parse(src, { async: false }) as string);
  } catch {
    html = `<pre>${escapeHtml(src)}</pre>`;
  }
  if (memo) {
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
    cache.set(src, html);
  }
  return html;
}
