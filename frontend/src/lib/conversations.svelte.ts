// The sidebar's conversation list (GET /api/conversations), searchable.
import { api } from './api';
import type { Conversation } from './types';

class Conversations {
  list = $state<Conversation[]>([]);
  total = $state(0);
  query = $state('');
  loading = $state(false);
  error = $state<string | null>(null);
  private seq = 0;

  async refresh(): Promise<void> {
    const n = ++this.seq;
    this.loading = true;
    try {
      const r = await api.conversations(this.query, 200, 0);
      if (n !== this.seq) return;
      this.list = r.data ?? [];
      this.total = r.total ?? this.list.length;
      this.error = null;
    } catch (e) {
      if (n === this.seq) this.error = e instanceof Error ? e.message : String(e);
    } finally {
      if (n === this.seq) this.loading = false;
    }
  }

  /** Puts a changed conversation at the top without a round trip. */
  upsert(c: Conversation): void {
    const { messages: _m, ...rest } = c;
    void _m;
    const i = this.list.findIndex((x) => x.id === c.id);
    if (i >= 0) this.list.splice(i, 1);
    this.list.unshift(rest);
  }

  remove(id: string): void {
    this.list = this.list.filter((c) => c.id !== id);
  }
}

export const conversations = new Conversations();
