import { describe, expect, it } from 'vitest';
import { buildTree, newestLeaf, pathTo, siblings, switchBranch, visiblePath } from './tree';
import type { Message } from './types';

function m(id: string, parent: string | null, created: number, role: Message['role'] = 'user'): Message {
  return { id, parent_id: parent, role, content: id, reasoning: null, model: null, status: 'complete', error: null, stats: null, created };
}

// u1 -> a1 -> u2 -> a2
//            \-> u2b -> a2b  (edit of u2, newer)
//   \-> a1r (regeneration of a1, older than u2b)
const msgs = [m('u1', null, 1), m('a1', 'u1', 2, 'assistant'), m('u2', 'a1', 3), m('a2', 'u2', 4, 'assistant'), m('a1r', 'u1', 5, 'assistant'), m('u2b', 'a1', 6), m('a2b', 'u2b', 7, 'assistant')];

describe('conversation tree', () => {
  const t = buildTree(msgs);

  it('shows the path to the newest leaf by default', () => {
    expect(visiblePath(t).map((x) => x.id)).toEqual(['u1', 'a1', 'u2b', 'a2b']);
  });

  it('lists siblings in creation order', () => {
    const s = siblings(t, t.byId.get('u2b')!);
    expect(s.list.map((x) => x.id)).toEqual(['u2', 'u2b']);
    expect(s.index).toBe(1);
    expect(siblings(t, t.byId.get('a1')!).list.map((x) => x.id)).toEqual(['a1', 'a1r']);
  });

  it('switches branches to the newest leaf under the sibling', () => {
    expect(switchBranch(t, t.byId.get('u2b')!, -1)).toBe('a2');
    expect(switchBranch(t, t.byId.get('a1')!, 1)).toBe('a1r');
    expect(switchBranch(t, t.byId.get('a1')!, -1)).toBeNull();
    expect(pathTo(t, 'a2').map((x) => x.id)).toEqual(['u1', 'a1', 'u2', 'a2']);
  });

  it('keeps a picked leaf and falls back when it is unknown', () => {
    expect(visiblePath(t, 'a1r').map((x) => x.id)).toEqual(['u1', 'a1r']);
    expect(visiblePath(t, 'nope').map((x) => x.id)).toEqual(['u1', 'a1', 'u2b', 'a2b']);
  });

  it('handles an empty tree, orphans and a leaf itself', () => {
    expect(visiblePath(buildTree([]))).toEqual([]);
    const o = buildTree([m('x', 'missing', 1)]);
    expect(visiblePath(o).map((x) => x.id)).toEqual(['x']);
    expect(newestLeaf(t, 'a2')!.id).toBe('a2');
  });

  it('orders siblings made in the same second by their position in the list', () => {
    const same = buildTree([m('u', null, 5), m('zz', 'u', 5, 'assistant'), m('aa', 'u', 5, 'assistant')]);
    expect(siblings(same, same.byId.get('aa')!).list.map((x) => x.id)).toEqual(['zz', 'aa']);
    expect(visiblePath(same).map((x) => x.id)).toEqual(['u', 'aa']);
  });

  it('treats roots as siblings (several first messages)', () => {
    const r = buildTree([m('r1', null, 1), m('r2', null, 2)]);
    expect(siblings(r, r.byId.get('r1')!).list.length).toBe(2);
    expect(visiblePath(r).map((x) => x.id)).toEqual(['r2']);
  });
});
