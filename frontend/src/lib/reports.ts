// Reports of a comparison run, made in the browser: Markdown, CSV and a self-contained HTML
// page (inline CSS, no scripts, every value escaped).
import { toCsv } from './csv';
import { EXTRA_SETTINGS, type Answer, type Run } from './types';

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Text for a Markdown table cell: pipes escaped, newlines as <br>. */
export function mdCell(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>');
}

function colName(run: Run, i: number): string {
  const c = run.columns[i];
  return `${c.label} (${c.model})`;
}

function settingsText(run: Run, i: number): string {
  const s = run.columns[i].settings;
  const parts: string[] = [];
  if (s.temperature != null) parts.push(`temperature ${s.temperature}`);
  if (s.top_p != null) parts.push(`top_p ${s.top_p}`);
  if (s.max_tokens != null) parts.push(`max_tokens ${s.max_tokens}`);
  if (s.reasoning_effort) parts.push(`reasoning ${s.reasoning_effort}`);
  for (const k of EXTRA_SETTINGS) if (s[k] != null) parts.push(`${k} ${s[k]}`);
  if (s.system) parts.push(`system: ${s.system}`);
  return parts.join(', ');
}

function statsText(a: Answer | undefined): string {
  const s = a?.stats;
  if (!s) return '';
  const p: string[] = [];
  if (s.ttft_ms != null) p.push(`TTFT ${Math.round(s.ttft_ms)} ms`);
  if (s.tokens_per_s != null) p.push(`${s.tokens_per_s.toFixed(1)} tok/s`);
  if (s.completion_tokens != null) p.push(`${s.completion_tokens} tokens`);
  return p.join(' · ');
}

/** Whether a question's vote is a tie ("tie", or -1 as older runs may have). */
export function isTie(vote: unknown): boolean {
  return vote === 'tie' || vote === -1;
}

export interface Tally {
  wins: number[];
  ties: number;
  meanScore: (number | null)[];
}

export function tally(run: Run): Tally {
  const n = run.columns.length;
  const wins = new Array<number>(n).fill(0);
  const sum = new Array<number>(n).fill(0);
  const cnt = new Array<number>(n).fill(0);
  let ties = 0;
  for (const q of run.questions) {
    if (isTie(q.vote)) ties++;
    else if (typeof q.vote === 'number' && q.vote >= 0 && q.vote < n) wins[q.vote]++;
    q.scores?.forEach((s, i) => {
      if (s !== null && s !== undefined && i < n) {
        sum[i] += s;
        cnt[i]++;
      }
    });
  }
  return { wins, ties, meanScore: sum.map((s, i) => (cnt[i] ? s / cnt[i] : null)) };
}

/** The fence for a block of text: longer than any backtick run inside it. */
function fence(s: string): string {
  const runs = s.match(/`{3,}/g) ?? [];
  const longest = runs.reduce((m, r) => Math.max(m, r.length), 0);
  return '`'.repeat(Math.max(3, longest + 1));
}

export function runToMarkdown(run: Run): string {
  const t = tally(run);
  const out: string[] = [];
  out.push(`# ${run.title || 'Comparison'}`, '');
  out.push('| Column | Model | Settings | Wins | Mean score |', '|---|---|---|---|---|');
  run.columns.forEach((c, i) => {
    const ms = t.meanScore[i];
    out.push(
      `| ${mdCell(c.label)} | ${mdCell(c.model)} | ${mdCell(settingsText(run, i))} | ${t.wins[i]} | ${ms === null ? '' : ms.toFixed(2)} |`,
    );
  });
  out.push('');
  run.questions.forEach((q, qi) => {
    out.push(`## ${qi + 1}. ${q.prompt.split('\n')[0].slice(0, 120)}${isTie(q.vote) ? ' (tie)' : ''}`, '');
    if (q.prompt.includes('\n') || q.prompt.length > 120) {
      const f = fence(q.prompt);
      out.push(f, q.prompt, f, '');
    }
    run.columns.forEach((_, ci) => {
      const a = q.answers[ci];
      const score = q.scores?.[ci];
      const badges = [q.vote === ci ? '**winner**' : '', score != null ? `score ${score}/10` : '', statsText(a)]
        .filter(Boolean)
        .join(' · ');
      out.push(`### ${colName(run, ci)}${badges ? ` — ${badges}` : ''}`, '');
      if (a?.error) out.push(`> error: ${a.error.replace(/\n/g, ' ')}`, '');
      out.push(a?.content ? a.content : '_(no answer)_', '');
    });
  });
  return out.join('\n');
}

export function runToCsv(run: Run): string {
  const rows: unknown[][] = [
    ['question', 'prompt', 'column', 'model', 'answer', 'error', 'ttft_ms', 'tokens_per_s', 'prompt_tokens', 'completion_tokens', 'score', 'winner'],
  ];
  run.questions.forEach((q, qi) => {
    run.columns.forEach((c, ci) => {
      const a = q.answers[ci];
      const s = a?.stats;
      rows.push([
        qi + 1,
        q.prompt,
        c.label,
        c.model,
        a?.content ?? '',
        a?.error ?? '',
        s?.ttft_ms ?? '',
        s?.tokens_per_s != null ? Number(s.tokens_per_s.toFixed(2)) : '',
        s?.prompt_tokens ?? '',
        s?.completion_tokens ?? '',
        q.scores?.[ci] ?? '',
        q.vote === null || q.vote === undefined ? '' : isTie(q.vote) ? 'tie' : q.vote === ci ? 1 : 0,
      ]);
    });
  });
  return toCsv(rows);
}

const REPORT_CSS = `
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"PingFang SC","Microsoft YaHei",sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#1d1d1f;background:#fff}
h1{font-size:1.6rem}h2{font-size:1.15rem;margin-top:2rem;border-top:1px solid #ddd;padding-top:1rem}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ddd;padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:#f5f5f7}.answers{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:1rem}
.answer{border:1px solid #ddd;border-radius:8px;padding:.8rem}.answer.win{border-color:#1a7f37;box-shadow:0 0 0 2px #1a7f3733}
.answer h3{margin:0 0 .4rem;font-size:1rem}.meta{color:#666;font-size:.85rem}.text{white-space:pre-wrap;word-break:break-word}
.prompt{white-space:pre-wrap;background:#f5f5f7;padding:.6rem;border-radius:6px}.err{color:#b42318}
@media (prefers-color-scheme:dark){body{background:#111;color:#eee}th,.prompt{background:#222}th,td,.answer{border-color:#333}.meta{color:#aaa}}
`;

export function runToHtml(run: Run, generated = new Date()): string {
  const e = escapeHtml;
  const t = tally(run);
  const head = run.columns
    .map((c, i) => {
      const ms = t.meanScore[i];
      return `<tr><td>${e(c.label)}</td><td>${e(c.model)}</td><td>${e(settingsText(run, i))}</td><td>${t.wins[i]}</td><td>${ms === null ? '' : ms.toFixed(2)}</td></tr>`;
    })
    .join('');
  const qs = run.questions
    .map((q, qi) => {
      const answers = run.columns
        .map((_, ci) => {
          const a = q.answers[ci];
          const score = q.scores?.[ci];
          const meta = [statsText(a), score != null ? `score ${score}/10` : '', q.vote === ci ? 'winner' : '']
            .filter(Boolean)
            .join(' · ');
          return (
            `<div class="answer${q.vote === ci ? ' win' : ''}"><h3>${e(colName(run, ci))}</h3>` +
            `<div class="meta">${e(meta)}</div>` +
            (a?.error ? `<div class="err">${e(a.error)}</div>` : '') +
            `<div class="text">${e(a?.content ?? '')}</div></div>`
          );
        })
        .join('');
      return `<h2>${qi + 1}.</h2><div class="prompt">${e(q.prompt)}</div><div class="answers">${answers}</div>`;
    })
    .join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${e(run.title || 'Comparison')}</title><style>${REPORT_CSS}</style></head>
<body><h1>${e(run.title || 'Comparison')}</h1>
<p class="meta">Hearth comparison report · ${e(generated.toISOString())} · ${run.questions.length} question(s), ${run.columns.length} column(s)</p>
<table><thead><tr><th>Column</th><th>Model</th><th>Settings</th><th>Wins</th><th>Mean score</th></tr></thead><tbody>${head}</tbody></table>
${qs}
</body></html>
`;
}
