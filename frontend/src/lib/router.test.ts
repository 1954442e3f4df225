import { describe, expect, it } from 'vitest';
import { hashFromPath, hrefOf, parseRoute } from './router.svelte';

describe('routes', () => {
  it('parses and prints', () => {
    expect(parseRoute('')).toEqual({ name: 'chat', id: null });
    expect(parseRoute('#/c/c_1')).toEqual({ name: 'chat', id: 'c_1' });
    expect(parseRoute('#/compare/r_9')).toEqual({ name: 'compare', id: 'r_9' });
    expect(parseRoute('#/admin')).toEqual({ name: 'admin', page: 'status' });
    expect(parseRoute('#/admin/keys')).toEqual({ name: 'admin', page: 'keys' });
    expect(parseRoute('#/login')).toEqual({ name: 'login' });
    for (const h of ['#/', '#/c/a%20b', '#/compare', '#/leaderboard', '#/admin/users', '#/login'])
      expect(hrefOf(parseRoute(h))).toBe(h);
  });

  it('maps path-style URLs to hash routes', () => {
    expect(hashFromPath('/c/c_1', '')).toBe('#/c/c_1');
    expect(hashFromPath('/admin/keys', '')).toBe('#/admin/keys');
    expect(hashFromPath('/', '')).toBeNull();
    expect(hashFromPath('/index.html', '')).toBeNull();
    expect(hashFromPath('/c/x', '#/compare')).toBeNull();
  });
});
