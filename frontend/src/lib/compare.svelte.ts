// A comparison run being edited: 2–4 columns (model + settings), questions answered by every
// column through /v1/chat/completions (columns at once, questions one after another per
// column), votes and scores, saved to /api/compare/runs.
import { api } from './api';
import { streamChat } from './openai';
import type { Answer, CompareColumn, CompareQuestion, Run } from './types';

export const LABELS = ['A', 'B', 'C', 'D'];
export const MIN_COLUMNS = 2;
export const MAX_COLUMNS = 4;

export function emptyAnswer(): Answer {
  return { content: '', reasoning: null, stats: null, error: null };
}

export function newQuestion(prompt: string, columns: number): CompareQuestion {
  return { prompt, answers: Array.from({ length: columns }, emptyAnswer), vote: null, scores: new Array(columns).fill(null) };
}

export function newRun(model: string | null = null, model2: string | null = null): Run {
  return {
    title: '',
    blind: false,
    columns: [
      { model: model ?? '', settings: {}, label: 'A' },
      { model: model2 ?? model ?? '', settings: {}, label: 'B' },
    ],
    questions: [],
  };
}

/** A run's questions resized to its columns (after adding or removing one). */
export function normalize(run: Run): void {
  const n = run.columns.length;
  run.columns.forEach((c, i) => (c.label = LABELS[i]));
  for (const q of run.questions) {
    while (q.answers.length < n) q.answers.push(emptyAnswer());
    q.answers.length = n;
    const scores = q.scores ?? [];
    while (scores.length < n) scores.push(null);
    scores.length = n;
    q.scores = scores;
    if (q.vote === -1) q.vote = 'tie';
    if (typeof q.vote === 'number' && q.vote >= n) q.vote = null;
  }
}

export class CompareController {
  run = $state<Run>(newRun());
  running = $state(false);
  /** `${question}:${column}` of answers streaming now. */
  streaming = $state<Record<string, boolean>>({});
  saving = $state(false);
  error = $state<string | null>(null);
  private abort: AbortController | null = null;
  private saveTimer: ReturnType<typeof setTimeout> | undefined;

  reset(model: string | null, model2: string | null): void {
    this.stop();
    this.run = newRun(model, model2);
  }

  async load(id: string): Promise<void> {
    this.stop();
    const r = await api.run(id);
    normalize(r);
    this.run = r;
  }

  addColumn(): void {
    if (this.run.columns.length >= MAX_COLUMNS) return;
    const last: CompareColumn = this.run.columns[this.run.columns.length - 1];
    this.run.columns.push({ model: last?.model ?? '', settings: { ...(last?.settings ?? {}) }, label: '' });
    normalize(this.run);
  }

  removeColumn(i: number): void {
    if (this.run.columns.length <= MIN_COLUMNS) return;
    this.run.columns.splice(i, 1);
    for (const q of this.run.questions) {
      q.answers.splice(i, 1);
      q.scores.splice(i, 1);
      if (q.vote === i) q.vote = null;
      else if (typeof q.vote === 'number' && q.vote > i) q.vote--;
    }
    normalize(this.run);
  }

  /** One prompt into every column at once (appended as a question). */
  async ask(prompt: string): Promise<void> {
    this.run.questions.push(newQuestion(prompt, this.run.columns.length));
    await this.answerAll([this.run.questions.length - 1]);
  }

  /** A question set: replaces the questions and runs each through each column. */
  async askSet(prompts: string[]): Promise<void> {
    this.run.questions = prompts.map((p) => newQuestion(p, this.run.columns.length));
    await this.answerAll(prompts.map((_, i) => i));
  }

  private async answerAll(indices: number[]): Promise<void> {
    if (!this.run.title.trim()) this.run.title = (this.run.questions[0]?.prompt ?? 'Comparison').replace(/\s+/g, ' ').slice(0, 60);
    this.abort?.abort();
    const ac = new AbortController();
    this.abort = ac;
    this.running = true;
    this.error = null;
    try {
      await Promise.all(
        this.run.columns.map(async (col, ci) => {
          for (const qi of indices) {
            if (ac.signal.aborted) break;
            await this.answer(qi, ci, col, ac.signal);
          }
        }),
      );
    } finally {
      if (this.abort === ac) this.abort = null;
      this.running = false;
    }
    await this.save();
  }

  private async answer(qi: number, ci: number, col: CompareColumn, signal: AbortSignal): Promise<void> {
    const key = `${qi}:${ci}`;
    const q = this.run.questions[qi];
    if (!q) return;
    q.answers[ci] = emptyAnswer();
    this.streaming[key] = true;
    try {
      await streamChat(
        col.model,
        col.settings,
        [{ role: 'user', content: q.prompt }],
        (a) => {
          const target = this.run.questions[qi]?.answers[ci];
          if (!target) return;
          target.content = a.content;
          target.reasoning = a.reasoning;
          target.stats = a.stats ? { ...a.stats } : null;
          target.error = a.error;
        },
        signal,
      );
    } finally {
      delete this.streaming[key];
    }
  }

  stop(): void {
    this.abort?.abort();
    this.abort = null;
  }

  /** Votes column `ci` better (or a tie); voting the same again takes it back. */
  vote(qi: number, ci: number | 'tie'): void {
    const q = this.run.questions[qi];
    q.vote = q.vote === ci ? null : ci;
    this.saveSoon();
  }

  score(qi: number, ci: number, v: number | null): void {
    const q = this.run.questions[qi];
    q.scores[ci] = v === null ? null : Math.max(0, Math.min(10, Math.round(v)));
    this.saveSoon();
  }

  saveSoon(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => void this.save(), 400);
  }

  /** Creates the run on the server the first time, then replaces it. */
  async save(): Promise<string | null> {
    clearTimeout(this.saveTimer);
    if (!this.run.questions.length) return this.run.id ?? null;
    this.saving = true;
    try {
      const body = $state.snapshot(this.run) as Run;
      const saved = body.id ? await api.saveRun(body) : await api.createRun(body);
      if (!this.run.id && saved.id) this.run.id = saved.id;
      this.run.updated = saved.updated;
      this.error = null;
      return this.run.id ?? null;
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
      return null;
    } finally {
      this.saving = false;
    }
  }

  /** Whether a column's model may be shown (blind runs: once its question has a vote). */
  revealed(qi: number | null): boolean {
    if (!this.run.blind) return true;
    if (qi === null) return this.run.questions.length > 0 && this.run.questions.every((q) => q.vote !== null);
    return this.run.questions[qi]?.vote !== null;
  }
}
