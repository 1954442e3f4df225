// Two languages from dictionary files, chosen from navigator.language, switchable, saved.
import en, { type Dict } from './i18n/en';
import zh from './i18n/zh-CN';

export type Lang = 'en' | 'zh-CN';
export type Key = keyof Dict;
export const dictionaries: Record<Lang, Dict> = { en, 'zh-CN': zh };
export const languages: { id: Lang; name: string }[] = [
  { id: 'en', name: 'English' },
  { id: 'zh-CN', name: '简体中文' },
];
const STORE = 'hearth.lang';

export function pickLang(saved: string | null, nav: readonly string[]): Lang {
  if (saved === 'en' || saved === 'zh-CN') return saved;
  for (const l of nav) {
    const s = l.toLowerCase();
    if (s.startsWith('zh')) return 'zh-CN';
    if (s.startsWith('en')) return 'en';
  }
  return 'en';
}

/** `{name}` placeholders filled from params. */
export function format(s: string, params?: Record<string, string | number>): string {
  if (!params) return s;
  return s.replace(/\{(\w+)\}/g, (m, k: string) => (k in params ? String(params[k]) : m));
}

function initial(): Lang {
  let saved: string | null = null;
  try {
    saved = localStorage.getItem(STORE);
  } catch {
    /* */
  }
  const nav = typeof navigator === 'undefined' ? [] : (navigator.languages ?? [navigator.language]);
  return pickLang(saved, nav);
}

class I18n {
  lang = $state<Lang>(initial());

  constructor() {
    this.applyLang();
  }

  set(l: Lang): void {
    this.lang = l;
    try {
      localStorage.setItem(STORE, l);
    } catch {
      /* */
    }
    this.applyLang();
  }

  t = (key: Key, params?: Record<string, string | number>): string =>
    format(dictionaries[this.lang][key] ?? en[key] ?? key, params);

  private applyLang(): void {
    if (typeof document !== 'undefined') document.documentElement.lang = this.lang;
  }
}

export const i18n = new I18n();
export const t = i18n.t;
