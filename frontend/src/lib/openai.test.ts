import { describe, expect, it, vi } from 'vitest';

const bodies: unknown[] = [];
vi.mock('./api', () => ({
  raw: vi.fn(async (_path: string, init: RequestInit) => {
    bodies.push(JSON.parse(String(init.body)));
    const chunk = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
    const text =
      chunk({ choices: [{ delta: { role: 'assistant' } }] }) +
      chunk({ choices: [{ delta: { reasoning_content: 'think' } }] }) +
      chunk({ choices: [{ delta: { content: 'Hel' } }] }) +
      chunk({ choices: [{ delta: { content: 'lo' } }] }) +
      chunk({ choices: [], usage: { prompt_tokens: 7, completion_tokens: 3 } }) +
      'data: [DONE]\n\n';
    return new Response(text);
  }),
}));

const { requestBody, streamChat } = await import('./openai');

describe('streamChat', () => {
  it('collects content, reasoning, usage and timing', async () => {
    let t = 0;
    const now = () => (t += 100);
    const updates: string[] = [];
    const a = await streamChat('m', { temperature: 0.5, system: 'sys' }, [{ role: 'user', content: 'q' }], (x) => updates.push(x.content), undefined, now);
    expect(a.content).toBe('Hello');
    expect(a.reasoning).toBe('think');
    expect(a.error).toBeNull();
    expect(a.stats?.prompt_tokens).toBe(7);
    expect(a.stats?.completion_tokens).toBe(3);
    expect(a.stats?.ttft_ms).toBe(100); // t0 = 100, first piece at 200
    expect(a.stats?.tokens_per_s).toBeGreaterThan(0);
    expect(updates.at(-1)).toBe('Hello');
    const sent = bodies[0] as Record<string, unknown>;
    expect(sent.stream).toBe(true);
    expect(sent.stream_options).toEqual({ include_usage: true });
    expect(sent.temperature).toBe(0.5);
    expect((sent.messages as { role: string }[])[0].role).toBe('system');
  });

  it('leaves out unset settings', () => {
    const b = requestBody('m', { temperature: null, top_p: 0.9, reasoning_effort: null }, [{ role: 'user', content: 'x' }]);
    expect('temperature' in b).toBe(false);
    expect(b.top_p).toBe(0.9);
    expect('reasoning_effort' in b).toBe(false);
    expect((b.messages as unknown[]).length).toBe(1);
    const x = requestBody('m', { top_k: 40, seed: 7, min_p: null }, []);
    expect([x.top_k, x.seed, 'min_p' in x]).toEqual([40, 7, false]);
  });
});
