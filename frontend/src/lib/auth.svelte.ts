// Who is signed in (GET /api/auth/me), login and logout.
import { api, setCsrfToken } from './api';
import type { Me, UserInfo } from './types';

class Auth {
  me = $state<Me | null>(null);
  loaded = $state(false);
  error = $state<string | null>(null);

  get user(): UserInfo | null {
    return this.me?.user ?? null;
  }
  get signedIn(): boolean {
    return !!this.me?.user;
  }
  get isAdmin(): boolean {
    return this.me?.user?.role === 'admin';
  }
  get canAudit(): boolean {
    const r = this.me?.user?.role;
    return r === 'admin' || r === 'auditor';
  }
  get local(): boolean {
    return this.me?.mode === 'local';
  }

  async refresh(): Promise<void> {
    try {
      const me = await api.me();
      this.me = me;
      setCsrfToken(me.csrf_token);
      this.error = null;
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
      this.me = this.me ?? { mode: 'auth', user: null, csrf_token: null };
    } finally {
      this.loaded = true;
    }
  }

  async login(body: { username: string; password: string } | { api_key: string }): Promise<void> {
    const r = await api.login(body);
    setCsrfToken(r.csrf_token);
    this.me = { mode: 'auth', user: r.user, csrf_token: r.csrf_token };
  }

  async logout(): Promise<void> {
    try {
      await api.logout();
    } finally {
      setCsrfToken(null);
      this.me = { mode: this.me?.mode ?? 'auth', user: null, csrf_token: null };
    }
  }

  /** A request came back 401: the session ended. */
  expired(): void {
    if (this.me && this.me.mode !== 'local') this.me = { ...this.me, user: null, csrf_token: null };
  }
}

export const auth = new Auth();
