import { describe, expect, it } from 'vitest';
import { mdCell, runToCsv, runToHtml, runToMarkdown, tally } from './reports';
import { parseCsv } from './csv';
import type { Run } from './types';

const run: Run = {
  id: 'r_1',
  title: 'Smoke <test> & "quotes"',
  blind: false,
  columns: [
    { model: 'smollm2', settings: { temperature: 0.2 }, label: 'A' },
    { model: 'gemma|3', settings: { temperature: 1 }, label: 'B' },
  ],
  questions: [
    {
      prompt: 'Say "hi", then <b>bye</b>\nsecond line',
      answers: [
        { content: 'hi, "there"\nbye', reasoning: null, stats: { ttft_ms: 12, tokens_per_s: 55.556, completion_tokens: 5 }, error: null },
        { content: '=SUM(A1)', reasoning: null, stats: null, error: 'boom <x>' },
      ],
      vote: 0,
      scores: [8, 3],
    },
    { prompt: 'q2', answers: [], vote: null, scores: [null, 6] },
    { prompt: 'q3', answers: [], vote: 'tie', scores: [null, null] },
  ],
};

describe('reports', () => {
  it('tallies wins and mean scores', () => {
    expect(tally(run)).toEqual({ wins: [1, 0], ties: 1, meanScore: [8, 4.5] });
  });

  it('Markdown escapes table cells and keeps answers', () => {
    const md = runToMarkdown(run);
    expect(md).toContain('# Smoke <test> & "quotes"');
    expect(md).toContain('| B | gemma\\|3 |');
    expect(md).toContain('**winner**');
    expect(md).toContain('## 3. q3 (tie)');
    expect(md).toContain('score 8/10');
    expect(md).toContain('> error: boom <x>');
    expect(mdCell('a|b\nc')).toBe('a\\|b<br>c');
  });

  it('CSV quotes fields and defuses formulas; it parses back', () => {
    const csv = runToCsv(run);
    const rows = parseCsv(csv.trimEnd());
    expect(rows[0][0]).toBe('question');
    expect(rows.length).toBe(1 + 3 * 2);
    expect(rows[5][11]).toBe('tie');
    expect(rows[1][1]).toBe('Say "hi", then <b>bye</b>\nsecond line');
    expect(rows[1][4]).toBe('hi, "there"\nbye');
    expect(rows[1][7]).toBe('55.56');
    expect(rows[1][11]).toBe('1');
    expect(rows[2][4]).toBe("'=SUM(A1)");
    expect(rows[3][11]).toBe('');
    expect(csv).toContain('"Say ""hi"", then');
  });

  it('HTML is self-contained and escapes everything', () => {
    const html = runToHtml(run, new Date(0));
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).not.toMatch(/<script|<link|src=/i);
    expect(html).toContain('Smoke &lt;test&gt; &amp; &quot;quotes&quot;');
    expect(html).toContain('&lt;b&gt;bye&lt;/b&gt;');
    expect(html).toContain('boom &lt;x&gt;');
    expect(html).toContain('class="answer win"');
    expect(html).not.toContain('<b>bye</b>');
  });
});

import { auditToCsv, auditToJsonl } from './audit';
import type { AuditRecord } from './types';

describe('audit exports', () => {
  const rec = { seq: 1, time: 10, request_id: 'r1', key_id: null, user: 'ann, "x"', team: null, role: 'user', client_addr: '127.0.0.1', route: '/v1/chat/completions', model: 'm', status: 200, latency_ms: 5, prompt_tokens: 3, completion_tokens: 4, guardrails: null, request_body: '{"a":\n1}', response_body: null, prev_hash: '00', hash: 'ab' } as AuditRecord;
  it('CSV has a header and quoted fields', () => {
    const rows = parseCsv(auditToCsv([rec]).trimEnd());
    expect(rows[0][0]).toBe('seq');
    expect(rows[1][4]).toBe('ann, "x"');
    expect(rows[1][15]).toBe('{"a":\n1}');
  });
  it('JSONL is one record per line', () => {
    const text = auditToJsonl([rec, { ...rec, seq: 2 }]);
    expect(text.trimEnd().split('\n').map((l) => JSON.parse(l).seq)).toEqual([1, 2]);
    expect(auditToJsonl([])).toBe('');
  });
});
