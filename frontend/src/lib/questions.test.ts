import { describe, expect, it } from 'vitest';
import { detectFormat, parseQuestions } from './questions';
import { csvField, parseCsv, toCsv } from './csv';

describe('question sets', () => {
  it('reads one prompt per line', () => {
    expect(parseQuestions('What is 2+2?\n\n  Name a color.  \r\nWhy?\n')).toEqual(['What is 2+2?', 'Name a color.', 'Why?']);
  });

  it('reads JSONL', () => {
    const text = '{"prompt": "one"}\n\n{"prompt": "two\\nlines", "id": 2}\n{"question": "three"}\n';
    expect(detectFormat(text)).toBe('jsonl');
    expect(parseQuestions(text)).toEqual(['one', 'two\nlines', 'three']);
    expect(() => parseQuestions('{"prompt": "ok"}\n{bad', 'jsonl')).toThrow(/line 2/);
    expect(() => parseQuestions('{"x": 1}', 'jsonl')).toThrow(/prompt/);
  });

  it('reads CSV with a header, quotes, commas and newlines', () => {
    const text = 'id,prompt\r\n1,"Hello, world"\r\n2,"He said ""hi""\nthen left"\n3,plain\n';
    expect(detectFormat(text, 'set.csv')).toBe('csv');
    expect(parseQuestions(text, 'csv')).toEqual(['Hello, world', 'He said "hi"\nthen left', 'plain']);
  });

  it('reads CSV without a header from the first column', () => {
    expect(parseQuestions('a,x\nb,y', 'csv')).toEqual(['a', 'b']);
  });
});

describe('csv', () => {
  it('round-trips', () => {
    const rows = [['a', 'b,c', 'd"e', 'f\ng', '']];
    expect(parseCsv(toCsv(rows).trimEnd())).toEqual(rows);
    expect(csvField(1.5)).toBe('1.5');
    expect(csvField(null)).toBe('');
    expect(csvField('+1')).toBe("'+1");
    expect(parseCsv('\ufeffa,b\n1,2')).toEqual([['a', 'b'], ['1', '2']]);
  });
});
