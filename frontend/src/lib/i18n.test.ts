import { describe, expect, it } from 'vitest';
import en from './i18n/en';
import zh from './i18n/zh-CN';
import { dictionaries, format, pickLang } from './i18n.svelte';

describe('i18n', () => {
  it('has every key in every language, none empty, same placeholders', () => {
    const keys = Object.keys(en).sort();
    for (const [lang, d] of Object.entries(dictionaries)) {
      expect(Object.keys(d).sort(), lang).toEqual(keys);
      for (const k of keys) {
        const v = (d as Record<string, string>)[k];
        expect(v.trim().length, `${lang} ${k}`).toBeGreaterThan(0);
        const ph = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort();
        expect(ph(v), `${lang} ${k}`).toEqual(ph((en as Record<string, string>)[k]));
      }
    }
    expect(zh['nav.chat']).toBe('对话');
  });

  it('picks the language from the saved choice, then the browser', () => {
    expect(pickLang(null, ['zh-TW', 'en'])).toBe('zh-CN');
    expect(pickLang(null, ['fr-FR', 'en-US'])).toBe('en');
    expect(pickLang(null, ['fr'])).toBe('en');
    expect(pickLang('en', ['zh-CN'])).toBe('en');
    expect(pickLang('zh-CN', ['en'])).toBe('zh-CN');
  });

  it('fills placeholders', () => {
    expect(format('{a} / {b} {c}', { a: 1, b: 'x' })).toBe('1 / x {c}');
  });
});
