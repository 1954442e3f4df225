// Short notices at the bottom of the screen.
export interface Toast {
  id: number;
  text: string;
  kind: 'info' | 'error';
}

class Toasts {
  list = $state<Toast[]>([]);
  private n = 0;

  show(text: string, kind: 'info' | 'error' = 'info', ms = 4000): void {
    const id = ++this.n;
    this.list.push({ id, text, kind });
    setTimeout(() => this.dismiss(id), ms);
  }

  error(e: unknown): void {
    this.show(e instanceof Error ? e.message : String(e), 'error', 6000);
  }

  dismiss(id: number): void {
    this.list = this.list.filter((t) => t.id !== id);
  }
}

export const toasts = new Toasts();
