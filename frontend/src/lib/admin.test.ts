import { describe, expect, it } from 'vitest';
import en from './i18n/en';
import { MODEL_ERROR_CODES, actionsOf, anyLoading, fieldsOf, idFromPath, limitOf, limitsOf, modelErrorCode, modelsOf, underDir, validModelId } from './admin';

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
