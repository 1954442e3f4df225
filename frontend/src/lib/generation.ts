// Following a server-owned generation: GET /api/generations/{gid}/events?from=N, resumed after
// a dropped connection from the event after the last one seen.
import { errorOf, raw } from './api';
import { readSse } from './sse';
import type { GenerationEvent, Message } from './types';

export interface FollowOptions {
  from?: number;
  signal?: AbortSignal;
  onDelta: (d: { content?: string; reasoning?: string }, id: number) => void;
  /** Tries after a dropped connection before giving up. */
  retries?: number;
  /** ms; doubled per try. */
  backoff?: number;
  /** Injected for tests. */
  fetchEvents?: (gid: string, from: number, signal?: AbortSignal) => Promise<Response>;
}

export type FollowResult =
  | { kind: 'done'; message: Message }
  | { kind: 'gone' } // 404: ended long ago; the message is in the conversation
  | { kind: 'aborted' };

const defaultFetch = (gid: string, from: number, signal?: AbortSignal) =>
  raw(`/api/generations/${encodeURIComponent(gid)}/events?from=${from}`, {
    signal,
    headers: { accept: 'text/event-stream' },
  });

export async function followGeneration(gid: string, o: FollowOptions): Promise<FollowResult> {
  let next = o.from ?? 0;
  let tries = 0;
  const retries = o.retries ?? 8;
  const fetchEvents = o.fetchEvents ?? defaultFetch;
  for (;;) {
    if (o.signal?.aborted) return { kind: 'aborted' };
    let done: Message | null = null;
    try {
      const res = await fetchEvents(gid, next, o.signal);
      if (res.status === 404) return { kind: 'gone' };
      if (!res.ok) throw await errorOf(res);
      await readSse(
        res,
        (ev) => {
          const n = ev.id !== null && /^\d+$/.test(ev.id) ? Number(ev.id) : next;
          if (n < next) return; // a replayed event already applied
          next = n + 1;
          tries = 0;
          let msg: GenerationEvent;
          try {
            msg = JSON.parse(ev.data) as GenerationEvent;
          } catch {
            return;
          }
          if (msg.type === 'delta') o.onDelta(msg, n);
          else if (msg.type === 'done') {
            done = msg.message;
            return 'stop';
          }
          return undefined;
        },
        o.signal,
      );
    } catch (e) {
      if (o.signal?.aborted) return { kind: 'aborted' };
      const status = (e as { status?: number }).status;
      if (status === 404) return { kind: 'gone' };
      if (status && status >= 400 && status < 500 && status !== 408 && status !== 429) throw e;
    }
    if (done) return { kind: 'done', message: done };
    if (o.signal?.aborted) return { kind: 'aborted' };
    if (tries >= retries) throw new Error('The connection to the server was lost.');
    const wait = (o.backoff ?? 500) * 2 ** tries;
    tries++;
    await new Promise((r) => setTimeout(r, Math.min(wait, 8000)));
  }
}
