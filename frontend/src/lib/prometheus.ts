// The Prometheus text exposition format (0.0.4), enough for /metrics: samples with labels.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function num(s: string): number {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  return Number(s);
}

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (!line || line.startsWith('#')) continue;
    let i = 0;
    while (i < line.length && /[A-Za-z0-9_:]/.test(line[i])) i++;
    const name = line.slice(0, i);
    if (!name) continue;
    const labels: Record<string, string> = {};
    if (line[i] === '{') {
      i++;
      for (;;) {
        while (line[i] === ' ' || line[i] === ',') i++;
        if (line[i] === '}') {
          i++;
          break;
        }
        if (i >= line.length) break;
        const eq = line.indexOf('=', i);
        if (eq < 0) break;
        const key = line.slice(i, eq).trim();
        i = eq + 1;
        if (line[i] !== '"') break;
        i++;
        let v = '';
        while (i < line.length && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < line.length) {
            const n = line[i + 1];
            v += n === 'n' ? '\n' : n;
            i += 2;
          } else v += line[i++];
        }
        i++; // closing quote
        labels[key] = v;
      }
    }
    const rest = line.slice(i).trim().split(/\s+/);
    if (!rest[0]) continue;
    const value = num(rest[0]);
    if (Number.isNaN(value) && rest[0] !== 'NaN') continue;
    out.push({ name, labels, value });
  }
  return out;
}

/** The sum of a metric's samples whose labels match `where`; null when there is none. */
export function metric(samples: Sample[], name: string, where: Record<string, string> = {}): number | null {
  let found = false;
  let total = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (!Object.entries(where).every(([k, v]) => s.labels[k] === v)) continue;
    found = true;
    total += s.value;
  }
  return found ? total : null;
}

/** The headline numbers for the status page. */
export function summarize(samples: Sample[]): {
  running: number | null;
  waiting: number | null;
  promptTokens: number | null;
  generationTokens: number | null;
  kvUsage: number | null;
  requests: number | null;
} {
  return {
    running: metric(samples, 'hearth_requests_running'),
    waiting: metric(samples, 'hearth_requests_waiting'),
    promptTokens: metric(samples, 'hearth_prompt_tokens_total'),
    generationTokens: metric(samples, 'hearth_generation_tokens_total'),
    kvUsage: metric(samples, 'hearth_kv_cache_usage_ratio'),
    requests: metric(samples, 'hearth_requests_total'),
  };
}
