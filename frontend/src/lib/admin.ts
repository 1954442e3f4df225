// Pure helpers of the admin pages: limit fields as the forms hold them (strings) and as the
// admin API takes them, and the model list's states.
import type { AdminModel, Limits } from './types';

/** A form field as a limit: empty is `null` (unlimited); otherwise a whole number ≥ 1. */
export function limitOf(s: string): number | null | 'invalid' {
  const t = s.trim();
  if (!t) return null;
  if (!/^\d+$/.test(t)) return 'invalid';
  const n = Number(t);
  return n >= 1 && Number.isSafeInteger(n) ? n : 'invalid';
}

export interface LimitFields { rpm: string; tpm: string; max_concurrent: string; monthly_tokens: string }

export function fieldsOf(l: Limits | undefined): LimitFields {
  const f = (v: number | null | undefined) => (v == null ? '' : String(v));
  return { rpm: f(l?.rpm), tpm: f(l?.tpm), max_concurrent: f(l?.max_concurrent), monthly_tokens: f(l?.monthly_tokens) };
}

/** The limits object for the API, or the name of the first invalid field. */
export function limitsOf(f: LimitFields): { limits: Limits } | { invalid: keyof LimitFields } {
  const out: Limits = {};
  for (const k of ['rpm', 'tpm', 'max_concurrent', 'monthly_tokens'] as const) {
    const v = limitOf(f[k]);
    if (v === 'invalid') return { invalid: k };
    out[k] = v;
  }
  return { limits: out };
}

/** A comma-separated allow-list: empty is `null` (any model). */
export function modelsOf(s: string): string[] | null {
  const list = s.split(',').map((m) => m.trim()).filter(Boolean);
  return list.length ? [...new Set(list)] : null;
}

/** Whether the list still has a load running (the page polls while it does). */
export function anyLoading(models: AdminModel[]): boolean {
  return models.some((m) => m.state === 'loading');
}

/** Model ids as the server takes them: 1-128 of letters, digits and `-_.:/@+`, not starting with `/`. */
export function validModelId(id: string): boolean {
  return id.length >= 1 && id.length <= 128 && !id.startsWith('/') && /^[A-Za-z0-9\-_.:/@+]+$/.test(id);
}

/**
 * The id a load form suggests for a path: the file's name without `.gguf` (a directory's own
 * name), characters the server refuses turned into `-`; '' when there is no name.
 */
export function idFromPath(path: string): string {
  const last = path.trim().replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? '';
  const stem = last.replace(/\.gguf$/i, '');
  return stem.replace(/[^A-Za-z0-9\-_.:@+]/g, '-').slice(0, 128);
}

/** A path shown relative to the models directory when it lies under it (else unchanged). */
export function underDir(path: string, dir: string | null | undefined): string {
  if (!dir) return path;
  const d = dir.replace(/\/+$/, '');
  return path.startsWith(`${d}/`) ? path.slice(d.length + 1) : path;
}

/** What may be done to a row of the list, given whether management is on. */
export function actionsOf(m: AdminModel, enabled: boolean): { unload: boolean; setDefault: boolean; dismiss: boolean } {
  return {
    unload: enabled && m.state === 'ready',
    setDefault: enabled && m.state === 'ready' && !m.default,
    dismiss: enabled && m.state === 'failed',
  };
}

/** The admin models API's error codes that have their own message in the UI. */
export const MODEL_ERROR_CODES = [
  'model_admin_disabled',
  'model_loading_disabled',
  'path_not_allowed',
  'model_load_failed',
  'model_exists',
  'model_not_found',
  'conflict',
] as const;
export type ModelErrorCode = (typeof MODEL_ERROR_CODES)[number];

export function modelErrorCode(code: string | null | undefined): ModelErrorCode | null {
  return (MODEL_ERROR_CODES as readonly string[]).includes(code ?? '') ? (code as ModelErrorCode) : null;
}
