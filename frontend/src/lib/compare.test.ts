import { describe, expect, it } from 'vitest';
import { CompareController, newQuestion, normalize } from './compare.svelte';

describe('CompareController', () => {
  it('keeps answers, scores and votes aligned when columns change', () => {
    const c = new CompareController();
    c.reset('a', 'b');
    c.addColumn();
    expect(c.run.columns.map((x) => x.label)).toEqual(['A', 'B', 'C']);
    expect(c.run.columns[2].model).toBe('b');
    c.run.questions = [newQuestion('q', 3)];
    c.run.questions[0].vote = 2;
    c.run.questions[0].scores = [1, 2, 3];
    c.removeColumn(0);
    expect(c.run.columns.map((x) => x.label)).toEqual(['A', 'B']);
    expect(c.run.questions[0].vote).toBe(1);
    expect(c.run.questions[0].scores).toEqual([2, 3]);
    expect(c.run.questions[0].answers.length).toBe(2);
    c.removeColumn(0); // at least two columns
    expect(c.run.columns.length).toBe(2);
    for (let i = 0; i < 5; i++) c.addColumn();
    expect(c.run.columns.length).toBe(4);
  });

  it('votes toggle, ties, scores clamp, blind reveal', () => {
    const c = new CompareController();
    c.reset('a', 'b');
    c.run.blind = true;
    c.run.questions = [newQuestion('q1', 2), newQuestion('q2', 2)];
    expect(c.revealed(0)).toBe(false);
    c.vote(0, 1);
    expect(c.run.questions[0].vote).toBe(1);
    expect(c.revealed(0)).toBe(true);
    expect(c.revealed(null)).toBe(false);
    c.vote(1, 'tie');
    expect(c.revealed(null)).toBe(true);
    c.vote(0, 1);
    expect(c.run.questions[0].vote).toBeNull();
    c.score(0, 0, 14);
    c.score(0, 1, -3);
    expect(c.run.questions[0].scores).toEqual([10, 0]);
  });

  it('normalizes a loaded run (-1 ties, short arrays)', () => {
    const run = { title: '', blind: false, columns: [{ model: 'a', settings: {}, label: 'x' }, { model: 'b', settings: {}, label: 'y' }], questions: [{ prompt: 'p', answers: [], vote: -1 as number | 'tie' | null, scores: [] as (number | null)[] }] };
    normalize(run);
    expect(run.columns.map((c) => c.label)).toEqual(['A', 'B']);
    expect(run.questions[0].vote).toBe('tie');
    expect(run.questions[0].answers.length).toBe(2);
    expect(run.questions[0].scores).toEqual([null, null]);
  });
});
