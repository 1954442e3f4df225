// Streaming /v1/chat/completions from the browser (comparison columns), measuring TTFT and
// tokens per second.
import { raw } from './api';
import { readSse } from './sse';
import { EXTRA_SETTINGS, type Answer, type ChatSettings } from './types';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export function requestBody(model: string, settings: ChatSettings, messages: ChatMessage[]): Record<string, unknown> {
  const msgs: ChatMessage[] = [];
  if (settings.system && settings.system.trim()) msgs.push({ role: 'system', content: settings.system });
  msgs.push(...messages);
  const body: Record<string, unknown> = {
    model,
    messages: msgs,
    stream: true,
    stream_options: { include_usage: true },
  };
  if (settings.temperature != null) body.temperature = settings.temperature;
  if (settings.top_p != null) body.top_p = settings.top_p;
  if (settings.max_tokens != null) body.max_tokens = settings.max_tokens;
  if (settings.reasoning_effort) body.reasoning_effort = settings.reasoning_effort;
  for (const k of EXTRA_SETTINGS) if (settings[k] != null) body[k] = settings[k];
  return body;
}

export async function streamChat(
  model: string,
  settings: ChatSettings,
  messages: ChatMessage[],
  onUpdate: (a: Answer) => void,
  signal?: AbortSignal,
  now: () => number = () => performance.now(),
): Promise<Answer> {
  const a: Answer = { content: '', reasoning: null, stats: null, error: null };
  const t0 = now();
  let tFirst: number | null = null;
  let chunks = 0;
  try {
    const res = await raw('/v1/chat/completions', {
      method: 'POST',
      body: JSON.stringify(requestBody(model, settings, messages)),
      signal,
      headers: { accept: 'text/event-stream' },
    });
    await readSse(
      res,
      (ev) => {
        if (ev.data === '[DONE]') return 'stop';
        let j: {
          choices?: { delta?: { content?: string | null; reasoning_content?: string | null; reasoning?: string | null } }[];
          usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
          error?: { message?: string };
        };
        try {
          j = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (j.error) {
          a.error = j.error.message ?? 'error';
          return;
        }
        const d = j.choices?.[0]?.delta;
        const piece = d?.content ?? '';
        const think = d?.reasoning_content ?? d?.reasoning ?? '';
        if (piece || think) {
          if (tFirst === null) tFirst = now();
          chunks++;
          if (piece) a.content += piece;
          if (think) a.reasoning = (a.reasoning ?? '') + think;
        }
        if (j.usage) {
          a.stats = { ...(a.stats ?? {}), prompt_tokens: j.usage.prompt_tokens ?? null, completion_tokens: j.usage.completion_tokens ?? null };
        }
        onUpdate(a);
        return undefined;
      },
      signal,
    );
  } catch (e) {
    if (signal?.aborted) a.error = 'stopped';
    else a.error = e instanceof Error ? e.message : String(e);
  }
  const t1 = now();
  const completion = a.stats?.completion_tokens ?? chunks;
  const genMs = tFirst === null ? 0 : t1 - tFirst;
  a.stats = {
    ...(a.stats ?? {}),
    completion_tokens: completion,
    ttft_ms: tFirst === null ? null : Math.round(tFirst - t0),
    total_ms: Math.round(t1 - t0),
    tokens_per_s: genMs > 0 && completion > 1 ? ((completion - 1) * 1000) / genMs : null,
  };
  onUpdate(a);
  return a;
}
