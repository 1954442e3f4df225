// The HTTP client: same-origin fetch with the session cookie, the CSRF header on every
// non-GET request, and OpenAI-shaped errors turned into ApiError.
import type {
  AdminModel, AdminModels, AdminStatus, AdminUser, AuditRecord, ChatSettings, Conversation, ExportDoc, KeyInfo,
  LeaderRow, Me, ModelInfo, Run, SendResult, Team, UsageRow, UserInfo,
} from './types';
import type { TeamPatch } from './admin';

let csrfToken: string | null = null;

export function setCsrfToken(t: string | null): void {
  csrfToken = t;
}

function cookieCsrf(): string | null {
  if (typeof document === 'undefined') return null;
  const m = /(?:^|;\s*)hearth_csrf=([^;]+)/.exec(document.cookie);
  return m ? decodeURIComponent(m[1]) : null;
}

export function csrf(): string | null {
  return csrfToken ?? cookieCsrf();
}

export class ApiError extends Error {
  constructor(
    message: string,
    public status: number,
    public code: string | null = null,
    public type: string | null = null,
  ) {
    super(message);
  }
}

/** Called when a request is refused for lack of a session (so the app can show the login). */
let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(f: (() => void) | null): void {
  onUnauthorized = f;
}

export function headers(method: string, extra?: HeadersInit): Headers {
  const h = new Headers(extra);
  if (method !== 'GET' && method !== 'HEAD') {
    const t = csrf();
    if (t) h.set('x-csrf-token', t);
  }
  return h;
}

export async function errorOf(res: Response): Promise<ApiError> {
  let message = `${res.status} ${res.statusText}`;
  let code: string | null = null;
  let type: string | null = null;
  try {
    const text = await res.text();
    try {
      const j = JSON.parse(text);
      if (j && j.error) {
        message = j.error.message ?? message;
        code = j.error.code ?? null;
        type = j.error.type ?? null;
      }
    } catch {
      if (text) message = text.slice(0, 300);
    }
  } catch {
    /* body unreadable */
  }
  return new ApiError(message, res.status, code, type);
}

/** Fetch with credentials and CSRF; returns the Response (throws ApiError when not ok). */
export async function raw(path: string, init: RequestInit = {}): Promise<Response> {
  const method = (init.method ?? 'GET').toUpperCase();
  const h = headers(method, init.headers);
  if (init.body !== undefined && typeof init.body === 'string' && !h.has('content-type')) {
    h.set('content-type', 'application/json');
  }
  const res = await fetch(path, { ...init, method, headers: h, credentials: 'same-origin' });
  if (!res.ok) {
    const e = await errorOf(res);
    if (res.status === 401 && onUnauthorized && !path.startsWith('/api/auth/')) onUnauthorized();
    throw e;
  }
  return res;
}

export async function json<T>(path: string, method = 'GET', body?: unknown, signal?: AbortSignal): Promise<T> {
  const res = await raw(path, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  return (text ? JSON.parse(text) : {}) as T;
}

function qs(params: Record<string, string | number | undefined | null>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : '';
}

export const api = {
  me: () => json<Me>('/api/auth/me'),
  login: (body: { username: string; password: string } | { api_key: string }) =>
    json<{ user: UserInfo; csrf_token: string }>('/api/auth/login', 'POST', body),
  logout: () => json<object>('/api/auth/logout', 'POST', {}),

  models: () => json<{ data: ModelInfo[] }>('/v1/models'),

  conversations: (q = '', limit = 100, offset = 0) =>
    json<{ data: Conversation[]; total: number }>(`/api/conversations${qs({ q, limit, offset })}`),
  createConversation: (body: { title?: string; model?: string; settings?: ChatSettings }) =>
    json<Conversation>('/api/conversations', 'POST', body),
  conversation: (id: string) => json<Conversation>(`/api/conversations/${encodeURIComponent(id)}`),
  patchConversation: (id: string, body: { title?: string; model?: string; settings?: ChatSettings }) =>
    json<Conversation>(`/api/conversations/${encodeURIComponent(id)}`, 'PATCH', body),
  deleteConversation: (id: string) => json<{ deleted: boolean }>(`/api/conversations/${encodeURIComponent(id)}`, 'DELETE'),
  send: (id: string, body: { content: string; parent_id?: string | null } | { regenerate: string }) =>
    json<SendResult>(`/api/conversations/${encodeURIComponent(id)}/messages`, 'POST', body),
  exportConversation: async (id: string, format: 'md' | 'json') =>
    (await raw(`/api/conversations/${encodeURIComponent(id)}/export?format=${format}`)).text(),
  importConversation: (doc: ExportDoc) => json<Conversation>('/api/conversations/import', 'POST', doc),

  stopGeneration: (gid: string) => json<{ stopped: boolean }>(`/api/generations/${encodeURIComponent(gid)}/stop`, 'POST', {}),
  generations: () =>
    json<{ data: { id: string; conversation_id: string; message_id: string; model: string; started: number }[] }>(
      '/api/generations',
    ),

  runs: () => json<{ data: Run[] }>('/api/compare/runs'),
  run: (id: string) => json<Run>(`/api/compare/runs/${encodeURIComponent(id)}`),
  createRun: (r: Run) => json<Run>('/api/compare/runs', 'POST', r),
  saveRun: (r: Run) => json<Run>(`/api/compare/runs/${encodeURIComponent(r.id ?? '')}`, 'PUT', r),
  deleteRun: (id: string) => json<{ deleted: boolean }>(`/api/compare/runs/${encodeURIComponent(id)}`, 'DELETE'),
  leaderboard: () => json<{ data: LeaderRow[] }>('/api/compare/leaderboard'),

  status: () => json<AdminStatus>('/api/admin/status'),
  metrics: async () => (await raw('/metrics')).text(),
  keys: () => json<{ data: KeyInfo[] }>('/admin/v1/keys'),
  createKey: (body: Record<string, unknown>) => json<KeyInfo>('/admin/v1/keys', 'POST', body),
  revokeKey: (id: string) => json<object>(`/admin/v1/keys/${encodeURIComponent(id)}`, 'DELETE'),
  users: () => json<{ data: AdminUser[] }>('/admin/v1/users'),
  createUser: (body: { name: string; role: string; team?: string | null; password?: string }) =>
    json<AdminUser>('/admin/v1/users', 'POST', body),
  updateUser: (name: string, body: { role?: string; team?: string | null; password?: string }) =>
    json<AdminUser>(`/admin/v1/users/${encodeURIComponent(name)}`, 'PATCH', body),
  deleteUser: (name: string) => json<object>(`/admin/v1/users/${encodeURIComponent(name)}`, 'DELETE'),
  teams: () => json<{ data: Team[] }>('/admin/v1/teams'),
  createTeam: (body: { name: string; limits?: Record<string, number | null> }) => json<Team>('/admin/v1/teams', 'POST', body),
  updateTeam: (name: string, body: TeamPatch) =>
    json<Team>(`/admin/v1/teams/${encodeURIComponent(name)}`, 'PATCH', body),
  adminModels: () => json<AdminModels>('/admin/v1/models'),
  loadModel: (body: { id: string; path: string; wait?: boolean; default?: boolean }) =>
    json<AdminModel>('/admin/v1/models', 'POST', body),
  unloadModel: (id: string, cancel = false) =>
    json<object>(`/admin/v1/models/${id.split('/').map(encodeURIComponent).join('/')}?cancel=${cancel}`, 'DELETE'),
  setDefaultModel: (id: string) =>
    json<AdminModel>(`/admin/v1/models/${id.split('/').map(encodeURIComponent).join('/')}`, 'PATCH', { default: true }),
  deleteTeam: (name: string) => json<object>(`/admin/v1/teams/${encodeURIComponent(name)}`, 'DELETE'),
  usage: (p: { group_by: string; since?: string; until?: string; user?: string; team?: string; model?: string }) =>
    json<{ data: UsageRow[] }>(`/admin/v1/usage${qs(p)}`),
  audit: (p: Record<string, string | number | undefined>) =>
    json<{ data: AuditRecord[]; next_after: number | null }>(`/admin/v1/audit${qs(p)}`),
};
