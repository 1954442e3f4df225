import { describe, expect, it } from 'vitest';
import { metric, parsePrometheus, summarize } from './prometheus';

const text = `# HELP hearth_requests_running Requests running.
# TYPE hearth_requests_running gauge
hearth_requests_running 2
hearth_requests_waiting 1
hearth_kv_cache_usage_ratio 0.25
hearth_requests_total{endpoint="chat",model="smollm2",status="200"} 10
hearth_requests_total{endpoint="chat",model="a\\"b,c",status="500"} 3
hearth_generation_tokens_total{model="smollm2"} 1234
hearth_generation_tokens_total{model="gemma"} 6
hearth_time_to_first_token_seconds_bucket{model="x",le="+Inf"} 3 1700000000
weird_nan NaN
`;

describe('prometheus', () => {
  const s = parsePrometheus(text);

  it('parses names, labels (escaped) and values', () => {
    expect(s.find((x) => x.labels.model === 'a"b,c')?.value).toBe(3);
    expect(s.find((x) => x.labels.le === '+Inf')?.value).toBe(3);
    expect(Number.isNaN(s.find((x) => x.name === 'weird_nan')!.value)).toBe(true);
  });

  it('sums with label filters', () => {
    expect(metric(s, 'hearth_requests_total')).toBe(13);
    expect(metric(s, 'hearth_requests_total', { status: '200' })).toBe(10);
    expect(metric(s, 'nope')).toBeNull();
  });

  it('summarizes the status numbers', () => {
    expect(summarize(s)).toEqual({ running: 2, waiting: 1, promptTokens: null, generationTokens: 1240, kvUsage: 0.25, requests: 13 });
  });
});
