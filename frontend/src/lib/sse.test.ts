import { describe, expect, it } from 'vitest';
import { SseParser, readSse } from './sse';
import { followGeneration } from './generation';

describe('SseParser', () => {
  it('parses events split across arbitrary chunks', () => {
    const text = 'id: 0\ndata: {"a":1}\n\nid: 1\ndata: {"b":2}\n\n';
    for (let cut = 1; cut < text.length; cut++) {
      const p = new SseParser();
      const evs = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))];
      expect(evs.map((e) => [e.id, e.data])).toEqual([
        ['0', '{"a":1}'],
        ['1', '{"b":2}'],
      ]);
    }
  });

  it('handles CRLF and CR line endings, even split between \\r and \\n', () => {
    const p = new SseParser();
    const a = p.push('data: x\r');
    const b = p.push('\n\r\ndata: y\r\r: next');
    expect([...a, ...b].map((e) => e.data)).toEqual(['x', 'y']);
  });

  it('joins multi-line data, ignores comments and keeps the last id', () => {
    const p = new SseParser();
    const evs = p.push(': keepalive\nid: 7\nevent: delta\ndata: one\ndata:two\n\ndata: three\n\n');
    expect(evs).toEqual([
      { id: '7', event: 'delta', data: 'one\ntwo' },
      { id: '7', event: 'message', data: 'three' },
    ]);
    expect(p.lastEventId).toBe('7');
  });

  it('drops an unterminated event at the end and events without data', () => {
    const p = new SseParser();
    expect(p.push('id: 3\n\n')).toEqual([]);
    expect(p.push('data: partial')).toEqual([]);
    expect(p.end()).toEqual([]);
  });

  it('reads a Response body', async () => {
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(enc.encode('id: 1\nda'));
        c.enqueue(enc.encode('ta: 你'));
        // a UTF-8 character split between chunks
        const b = enc.encode('好\n\n');
        c.enqueue(b.slice(0, 1));
        c.enqueue(b.slice(1));
        c.close();
      },
    });
    const got: string[] = [];
    await readSse(new Response(body), (e) => void got.push(e.data));
    expect(got).toEqual(['你好']);
  });
});

function sseResponse(parts: string[], fail = false): Response {
  const enc = new TextEncoder();
  let i = 0;
  return new Response(
    new ReadableStream<Uint8Array>({
      pull(c) {
        if (i < parts.length) c.enqueue(enc.encode(parts[i++]));
        else if (fail) c.error(new TypeError('network error'));
        else c.close();
      },
    }),
    { status: 200, headers: { 'content-type': 'text/event-stream' } },
  );
}

const msg = { id: 'm_1', parent_id: null, role: 'assistant', content: 'Hello', reasoning: null, model: 'x', status: 'complete', error: null, stats: null, created: 0 };

describe('followGeneration', () => {
  it('resumes after a dropped connection from the event after the last one seen', async () => {
    const froms: number[] = [];
    let call = 0;
    const deltas: string[] = [];
    const r = await followGeneration('g_1', {
      backoff: 1,
      onDelta: (d) => deltas.push(d.content ?? ''),
      fetchEvents: async (_gid, from) => {
        froms.push(from);
        call++;
        if (call === 1)
          return sseResponse(['id: 0\ndata: {"type":"delta","content":"He"}\n\n', 'id: 1\ndata: {"type":"delta","content":"l"}\n\nid: 2\nda'], true);
        // the server replays from 2 (and a duplicate 1 is ignored)
        return sseResponse([
          'id: 1\ndata: {"type":"delta","content":"l"}\n\n',
          'id: 2\ndata: {"type":"delta","content":"lo"}\n\n',
          `id: 3\ndata: ${JSON.stringify({ type: 'done', message: msg })}\n\n`,
        ]);
      },
    });
    expect(froms).toEqual([0, 2]);
    expect(deltas.join('')).toBe('Hello');
    expect(r).toEqual({ kind: 'done', message: msg });
  });

  it('starts from a given event number and reports a vanished generation', async () => {
    const froms: number[] = [];
    const r = await followGeneration('g_1', {
      from: 5,
      onDelta: () => {},
      fetchEvents: async (_g, from) => {
        froms.push(from);
        return new Response('{"error":{"message":"gone"}}', { status: 404 });
      },
    });
    expect(froms).toEqual([5]);
    expect(r.kind).toBe('gone');
  });

  it('gives up after the retries', async () => {
    await expect(
      followGeneration('g', {
        retries: 2,
        backoff: 1,
        onDelta: () => {},
        fetchEvents: async () => sseResponse([], true),
      }),
    ).rejects.toThrow();
  });
});
