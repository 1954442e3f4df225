// Pure helpers of the admin pages: limit fields as the forms hold them (strings) and as the
// admin API takes them, and the model list's states.
import type { AdminModel, Limits, ModelMemory, Team } from './types';

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

/** The body of `PATCH /admin/v1/teams/{name}`: an absent field stays as it is, `null` removes it. */
export interface TeamPatch {
  limits?: Limits;
  /** `null`: any model. */
  models?: string[] | null;
}

/** The allow-list a set of checked models means: none checked is `null` (every model allowed). */
export function allowListOf(checked: readonly string[]): string[] | null {
  const list = [...new Set(checked.map((m) => m.trim()).filter(Boolean))];
  return list.length ? list : null;
}

/** Whether two allow-lists allow the same models (order does not matter; `null` is any model). */
export function sameAllowList(a: readonly string[] | null | undefined, b: readonly string[] | null | undefined): boolean {
  const x = a?.length ? new Set(a) : null;
  const y = b?.length ? new Set(b) : null;
  if (!x || !y) return x === y;
  return x.size === y.size && [...x].every((m) => y.has(m));
}

/**
 * The PATCH body that turns `team` into what the edit form holds: limits left as they were are
 * omitted, emptied ones are `null`; the allow-list is sent only when it changed (`null` when no
 * model is checked). `{}` when nothing changed; the first invalid limit field otherwise.
 */
export function teamPatchOf(team: Team, f: LimitFields, checked: readonly string[]): { body: TeamPatch } | { invalid: keyof LimitFields } {
  const parsed = limitsOf(f);
  if ('invalid' in parsed) return parsed;
  const body: TeamPatch = {};
  const limits: Limits = {};
  for (const k of ['rpm', 'tpm', 'max_concurrent', 'monthly_tokens'] as const) {
    const now = parsed.limits[k] ?? null;
    if (now !== (team.limits?.[k] ?? null)) limits[k] = now;
  }
  if (Object.keys(limits).length) body.limits = limits;
  const models = allowListOf(checked);
  if (!sameAllowList(models, team.models)) body.models = models;
  return { body };
}

/**
 * The models an allow-list can be picked from: the served ones in their order, then any the
 * team allows that are not served now (so saving does not drop them unseen).
 */
export function modelChoices(served: readonly string[], allowed: readonly string[] | null | undefined): { id: string; served: boolean }[] {
  const out = served.map((id) => ({ id, served: true }));
  for (const id of allowed ?? []) if (!served.includes(id)) out.push({ id, served: false });
  return out;
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

/** What a model takes in memory now: the weights it reads (resident mapped pages, or all
 * mapped bytes where residency is unknown, plus copies made at load) and the KV blocks in use.
 * The KV budget is a ceiling, allocated as blocks are first used, so it is reported apart. */
export function memoryOf(m: ModelMemory): { total: number; weights: number; kvUsed: number; kvBudget: number } {
  const mapped = m.weights_resident_bytes ?? m.weights_mapped_bytes;
  const weights = mapped + m.weights_owned_bytes;
  return { total: weights + m.kv_cache_used_bytes, weights, kvUsed: m.kv_cache_used_bytes, kvBudget: m.kv_cache_bytes };
}
