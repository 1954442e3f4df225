// A server-sent events parser (the WHATWG event-stream format) fed with text chunks as they
// arrive from fetch, so a stream can be read with headers and resumed with `from=N`.

export interface SseEvent {
  /** The event's `id:` field, or the last id seen before it (as EventSource's lastEventId). */
  id: string | null;
  event: string;
  data: string;
  retry?: number;
}

export class SseParser {
  private buf = '';
  private data: string[] = [];
  private event = '';
  private sawData = false;
  private retry: number | undefined;
  lastEventId: string | null = null;

  /** Feeds a chunk; returns the events it completed. */
  push(chunk: string): SseEvent[] {
    this.buf += chunk;
    const out: SseEvent[] = [];
    let start = 0;
    for (;;) {
      let i = start;
      const n = this.buf.length;
      while (i < n && this.buf[i] !== '\n' && this.buf[i] !== '\r') i++;
      if (i >= n) break;
      // A lone '\r' at the end might be the first half of "\r\n": wait for more.
      if (this.buf[i] === '\r' && i + 1 >= n) break;
      const line = this.buf.slice(start, i);
      start = this.buf[i] === '\r' && this.buf[i + 1] === '\n' ? i + 2 : i + 1;
      const ev = this.line(line);
      if (ev) out.push(ev);
    }
    this.buf = this.buf.slice(start);
    return out;
  }

  /** The stream ended: a final event without its blank line is discarded, per the spec. */
  end(): SseEvent[] {
    const rest = this.buf;
    this.buf = '';
    if (rest.length) this.line(rest);
    this.data = [];
    this.sawData = false;
    this.event = '';
    return [];
  }

  private line(line: string): SseEvent | null {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return null;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? '' : line.slice(c + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        this.sawData = true;
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
    }
    return null;
  }

  private dispatch(): SseEvent | null {
    if (!this.sawData) {
      this.event = '';
      return null;
    }
    const ev: SseEvent = {
      id: this.lastEventId,
      event: this.event || 'message',
      data: this.data.join('\n'),
    };
    if (this.retry !== undefined) ev.retry = this.retry;
    this.data = [];
    this.sawData = false;
    this.event = '';
    return ev;
  }
}

/** Reads a fetch Response body as SSE, calling `onEvent` for each event. */
export async function readSse(
  res: Response,
  onEvent: (e: SseEvent) => void | 'stop',
  signal?: AbortSignal,
): Promise<void> {
  if (!res.body) throw new Error('response without a body');
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  const parser = new SseParser();
  const abort = () => void reader.cancel().catch(() => {});
  signal?.addEventListener('abort', abort);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const ev of parser.push(dec.decode(value, { stream: true }))) {
        if (onEvent(ev) === 'stop') {
          await reader.cancel().catch(() => {});
          return;
        }
      }
    }
    parser.push(dec.decode());
    parser.end();
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}
