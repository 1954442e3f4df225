// Hash routing: #/, #/c/:id, #/compare, #/compare/:id, #/leaderboard, #/admin/:page, #/login.

export type Route =
  | { name: 'chat'; id: string | null }
  | { name: 'compare'; id: string | null }
  | { name: 'leaderboard' }
  | { name: 'admin'; page: string }
  | { name: 'login' };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, '').replace(/^\/+/, '');
  const parts = path.split('?')[0].split('/').filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case 'c':
      return { name: 'chat', id: parts[1] ?? null };
    case 'compare':
      return { name: 'compare', id: parts[1] ?? null };
    case 'leaderboard':
      return { name: 'leaderboard' };
    case 'admin':
      return { name: 'admin', page: parts[1] ?? 'status' };
    case 'login':
      return { name: 'login' };
    default:
      return { name: 'chat', id: null };
  }
}

export function hrefOf(r: Route): string {
  switch (r.name) {
    case 'chat':
      return r.id ? `#/c/${encodeURIComponent(r.id)}` : '#/';
    case 'compare':
      return r.id ? `#/compare/${encodeURIComponent(r.id)}` : '#/compare';
    case 'leaderboard':
      return '#/leaderboard';
    case 'admin':
      return `#/admin/${r.page}`;
    case 'login':
      return '#/login';
  }
}

/** A path-style URL (/c/ID, served by the server's SPA fallback) as its hash route. */
export function hashFromPath(pathname: string, hash: string): string | null {
  if (hash && hash !== '#') return null;
  const p = pathname.replace(/\/index\.html$/, '/');
  if (p === '/' || p === '') return null;
  return `#${p}`;
}

function initialHash(): string {
  if (typeof location === 'undefined') return '';
  const h = hashFromPath(location.pathname, location.hash);
  if (h) {
    history.replaceState(null, '', `/${h}`);
    return h;
  }
  return location.hash;
}

class Router {
  route = $state<Route>(parseRoute(initialHash()));

  constructor() {
    if (typeof window !== 'undefined') {
      window.addEventListener('hashchange', () => {
        this.route = parseRoute(location.hash);
      });
    }
  }

  go(r: Route, replace = false): void {
    const h = hrefOf(r);
    if (replace) history.replaceState(null, '', h);
    else if (location.hash !== h) history.pushState(null, '', h);
    this.route = parseRoute(h);
  }
}

export const router = new Router();
