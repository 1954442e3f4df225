// A question set: prompts pasted one per line, or a JSONL file ({"prompt": ...}), or a CSV file
// (a `prompt` or `question` column, else the first column).
import { parseCsv } from './csv';

export type QuestionFormat = 'lines' | 'jsonl' | 'csv';

export function detectFormat(text: string, filename = ''): QuestionFormat {
  const f = filename.toLowerCase();
  if (f.endsWith('.jsonl') || f.endsWith('.ndjson') || f.endsWith('.json')) return 'jsonl';
  if (f.endsWith('.csv')) return 'csv';
  const first = text.split(/\r?\n/).find((l) => l.trim() !== '')?.trim() ?? '';
  if (first.startsWith('{')) return 'jsonl';
  return 'lines';
}

export function parseQuestions(text: string, format: QuestionFormat = detectFormat(text)): string[] {
  switch (format) {
    case 'lines':
      return text
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter(Boolean);
    case 'jsonl': {
      const out: string[] = [];
      text.split(/\r?\n/).forEach((l, i) => {
        const s = l.trim();
        if (!s) return;
        let j: unknown;
        try {
          j = JSON.parse(s);
        } catch {
          throw new Error(`line ${i + 1}: not JSON`);
        }
        const o = j as Record<string, unknown>;
        const p = typeof j === 'string' ? j : (o.prompt ?? o.question ?? o.input);
        if (typeof p !== 'string' || !p.trim()) throw new Error(`line ${i + 1}: no "prompt"`);
        out.push(p);
      });
      return out;
    }
    case 'csv': {
      const rows = parseCsv(text).filter((r) => r.some((c) => c.trim() !== ''));
      if (!rows.length) return [];
      const head = rows[0].map((h) => h.trim().toLowerCase());
      let col = head.findIndex((h) => h === 'prompt' || h === 'question');
      let body = rows.slice(1);
      if (col < 0) {
        col = 0;
        body = rows; // no header row
      }
      return body.map((r) => (r[col] ?? '').trim()).filter(Boolean);
    }
  }
}
