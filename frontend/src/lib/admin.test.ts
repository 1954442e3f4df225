import { describe, expect, it } from 'vitest';
import en from './i18n/en';
import {
  MODEL_ERROR_CODES, actionsOf, allowListOf, anyLoading, fieldsOf, idFromPath, limitOf, limitsOf, modelChoices, modelErrorCode, modelsOf,
  memoryOf, sameAllowList, teamPatchOf, underDir, validModelId,
} from './admin';
import type { Team } from './types';

describe('admin form helpers', () => {
  it('reads limits: empty is unlimited, whole numbers from 1', () => {
    expect(limitOf('')).toBeNull();
    expect(limitOf('  60 ')).toBe(60);
    for (const bad of ['0', '-1', '1.5', 'ten', '1e3']) expect(limitOf(bad)).toBe('invalid');
  });

  it('round-trips limits and names the first bad field', () => {
    const f = fieldsOf({ rpm: 60, tpm: null, monthly_tokens: 1000 });
    expect(f).toEqual({ rpm: '60', tpm: '', max_concurrent: '', monthly_tokens: '1000' });
    expect(limitsOf(f)).toEqual({ limits: { rpm: 60, tpm: null, max_concurrent: null, monthly_tokens: 1000 } });
    expect(limitsOf({ ...f, max_concurrent: 'x' })).toEqual({ invalid: 'max_concurrent' });
  });

  it('reads model allow-lists', () => {
    expect(modelsOf(' ')).toBeNull();
    expect(modelsOf('smollm2, gemma3,,smollm2')).toEqual(['smollm2', 'gemma3']);
  });

  it('knows when a load is running', () => {
    expect(anyLoading([{ id: 'a', state: 'ready' }])).toBe(false);
    expect(anyLoading([{ id: 'a', state: 'ready' }, { id: 'b', state: 'loading' }])).toBe(true);
  });

  it('checks model ids as the server does', () => {
    for (const ok of ['smollm2', 'org/name-7b', 'qwen3:8b', 'a.b_c+d@e', 'x'.repeat(128)]) expect(validModelId(ok), ok).toBe(true);
    for (const bad of ['', '/abs', 'has space', 'ünï', 'x'.repeat(129), 'semi;colon']) expect(validModelId(bad), bad).toBe(false);
  });

  it('suggests an id from a path', () => {
    expect(idFromPath('SmolLM2-135M-Instruct.Q4_1.gguf')).toBe('SmolLM2-135M-Instruct.Q4_1');
    expect(idFromPath(' sub/dir/Model.GGUF ')).toBe('Model');
    expect(idFromPath('/srv/models/gpt-oss-20b/')).toBe('gpt-oss-20b');
    expect(idFromPath('my model (v2).gguf')).toBe('my-model--v2-');
    expect(idFromPath('')).toBe('');
    expect(validModelId(idFromPath('odd name?.gguf'))).toBe(true);
  });

  it('shows paths relative to the models directory', () => {
    expect(underDir('/srv/models/a/b.gguf', '/srv/models')).toBe('a/b.gguf');
    expect(underDir('/srv/models/a/b.gguf', '/srv/models/')).toBe('a/b.gguf');
    expect(underDir('/srv/models-old/b.gguf', '/srv/models')).toBe('/srv/models-old/b.gguf');
    expect(underDir('/srv/models/b.gguf', null)).toBe('/srv/models/b.gguf');
  });

  it('offers the actions each state allows', () => {
    expect(actionsOf({ id: 'a', state: 'ready', default: true }, true)).toEqual({ unload: true, setDefault: false, dismiss: false });
    expect(actionsOf({ id: 'a', state: 'ready', default: false }, true)).toEqual({ unload: true, setDefault: true, dismiss: false });
    expect(actionsOf({ id: 'a', state: 'loading' }, true)).toEqual({ unload: false, setDefault: false, dismiss: false });
    expect(actionsOf({ id: 'a', state: 'failed' }, true)).toEqual({ unload: false, setDefault: false, dismiss: true });
    expect(actionsOf({ id: 'a', state: 'ready' }, false)).toEqual({ unload: false, setDefault: false, dismiss: false });
  });

  it('knows the model API error codes', () => {
    expect(modelErrorCode('path_not_allowed')).toBe('path_not_allowed');
    expect(modelErrorCode('invalid_value')).toBeNull();
    expect(modelErrorCode(null)).toBeNull();
    for (const c of MODEL_ERROR_CODES) expect(Object.keys(en), c).toContain(`models.err.${c}`);
  });
});

describe('team edits', () => {
  const team: Team = { name: 'research', limits: { rpm: 60, tpm: null, max_concurrent: 4, monthly_tokens: 1000 }, models: ['smollm2'], created: 1 };
  const form = () => fieldsOf(team.limits);

  it('sends nothing when nothing changed', () => {
    expect(teamPatchOf(team, form(), ['smollm2'])).toEqual({ body: {} });
    // The limits may come back without the unset fields at all.
    expect(teamPatchOf({ ...team, limits: { rpm: 60, max_concurrent: 4, monthly_tokens: 1000 } }, form(), ['smollm2'])).toEqual({ body: {} });
    expect(teamPatchOf({ ...team, models: null }, form(), [])).toEqual({ body: {} });
  });

  it('omits unchanged limits, sends changed ones and null for cleared ones', () => {
    const f = { ...form(), rpm: ' 30 ', max_concurrent: '', tpm: '5000' };
    expect(teamPatchOf(team, f, ['smollm2'])).toEqual({ body: { limits: { rpm: 30, tpm: 5000, max_concurrent: null } } });
  });

  it('sends the allow-list only when it changed, null when no model is checked', () => {
    expect(teamPatchOf(team, form(), ['gemma3'])).toEqual({ body: { models: ['gemma3'] } });
    expect(teamPatchOf(team, form(), [])).toEqual({ body: { models: null } });
    expect(teamPatchOf({ ...team, models: null }, form(), ['smollm2', 'gemma3'])).toEqual({ body: { models: ['smollm2', 'gemma3'] } });
    expect(teamPatchOf({ ...team, models: ['a', 'b'] }, form(), ['b', 'a'])).toEqual({ body: {} });
    expect(teamPatchOf(team, { ...form(), rpm: '' }, [])).toEqual({ body: { limits: { rpm: null }, models: null } });
  });

  it('names the first invalid limit and sends nothing', () => {
    expect(teamPatchOf(team, { ...form(), tpm: '0' }, [])).toEqual({ invalid: 'tpm' });
    expect(teamPatchOf(team, { ...form(), monthly_tokens: '1.5' }, [])).toEqual({ invalid: 'monthly_tokens' });
  });

  it('compares and reads allow-lists', () => {
    expect(allowListOf([])).toBeNull();
    expect(allowListOf(['a', ' a ', 'b', ''])).toEqual(['a', 'b']);
    expect(sameAllowList(null, [])).toBe(true);
    expect(sameAllowList(undefined, null)).toBe(true);
    expect(sameAllowList(['a'], null)).toBe(false);
    expect(sameAllowList(['a', 'b'], ['b', 'a'])).toBe(true);
    expect(sameAllowList(['a', 'b'], ['a', 'c'])).toBe(false);
    expect(sameAllowList(['a'], ['a', 'b'])).toBe(false);
  });

  it('offers the served models, then allowed ones that are not served', () => {
    expect(modelChoices(['smollm2', 'gemma3'], null)).toEqual([{ id: 'smollm2', served: true }, { id: 'gemma3', served: true }]);
    expect(modelChoices(['smollm2'], ['gone', 'smollm2'])).toEqual([{ id: 'smollm2', served: true }, { id: 'gone', served: false }]);
  });
});

describe('model memory', () => {
  const mem = { weights_mapped_bytes: 1000, weights_resident_bytes: 600, weights_owned_bytes: 50, kv_cache_bytes: 4096, kv_cache_used_bytes: 256 };
  it('counts resident weights, load-time copies and KV blocks in use, not the KV budget', () => {
    expect(memoryOf(mem)).toEqual({ total: 906, weights: 650, kvUsed: 256, kvBudget: 4096 });
  });
  it('takes every mapped byte when residency is unknown', () => {
    expect(memoryOf({ ...mem, weights_resident_bytes: null }).weights).toBe(1050);
  });
});
