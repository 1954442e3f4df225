// Light / dark: follows prefers-color-scheme until the user picks one (saved).
export type Theme = 'light' | 'dark';
const KEY = 'hearth.theme';

function initial(): Theme {
  try {
    const s = localStorage.getItem(KEY);
    if (s === 'light' || s === 'dark') return s;
  } catch {
    /* storage off */
  }
  return typeof matchMedia !== 'undefined' && matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

class ThemeStore {
  current = $state<Theme>(initial());

  constructor() {
    this.apply();
    if (typeof matchMedia !== 'undefined') {
      matchMedia('(prefers-color-scheme: dark)').addEventListener?.('change', (e) => {
        let saved: string | null = null;
        try {
          saved = localStorage.getItem(KEY);
        } catch {
          /* */
        }
        if (!saved) {
          this.current = e.matches ? 'dark' : 'light';
          this.apply();
        }
      });
    }
  }

  set(t: Theme): void {
    this.current = t;
    try {
      localStorage.setItem(KEY, t);
    } catch {
      /* */
    }
    this.apply();
  }

  toggle(): void {
    this.set(this.current === 'dark' ? 'light' : 'dark');
  }

  private apply(): void {
    if (typeof document !== 'undefined') document.documentElement.dataset.theme = this.current;
  }
}

export const theme = new ThemeStore();
