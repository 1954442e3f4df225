// The models the caller may use (/v1/models), loaded once.
import { api } from './api';
import type { ModelInfo } from './types';

class Models {
  list = $state<ModelInfo[]>([]);
  loaded = $state(false);
  error = $state<string | null>(null);
  private pending: Promise<void> | null = null;

  load(force = false): Promise<void> {
    if (this.pending && !force) return this.pending;
    this.pending = api
      .models()
      .then((r) => {
        this.list = r.data ?? [];
        this.error = null;
      })
      .catch((e: unknown) => {
        this.error = e instanceof Error ? e.message : String(e);
      })
      .finally(() => {
        this.loaded = true;
      });
    return this.pending;
  }

  contextOf(id: string | null | undefined): number | null {
    return this.list.find((m) => m.id === id)?.context_length ?? null;
  }

  get first(): string | null {
    return this.list[0]?.id ?? null;
  }
}

export const models = new Models();
