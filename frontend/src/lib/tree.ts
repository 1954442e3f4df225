// The conversation's message tree: messages link to their parent, edits and regenerations
// are siblings. The UI shows one path from the root; at each fork it follows the chosen
// child, by default the one leading to the most recent leaf.
import type { Message } from './types';

export interface Tree {
  byId: Map<string, Message>;
  children: Map<string | null, Message[]>;
  /** Position in the server's list (creation order; `created` has only second resolution). */
  order: Map<string, number>;
}

export function buildTree(messages: Message[]): Tree {
  const byId = new Map<string, Message>();
  const children = new Map<string | null, Message[]>();
  const pos = new Map<string, number>();
  messages.forEach((m, i) => {
    byId.set(m.id, m);
    pos.set(m.id, i);
  });
  for (const m of messages) {
    const p = m.parent_id && byId.has(m.parent_id) ? m.parent_id : null;
    let list = children.get(p);
    if (!list) children.set(p, (list = []));
    list.push(m);
  }
  const t: Tree = { byId, children, order: pos };
  for (const list of children.values()) list.sort((a, b) => compare(t, a, b));
  return t;
}

/** Older first: by `created`, then by position in the list. */
function compare(t: Tree, a: Message, b: Message): number {
  return a.created - b.created || (t.order.get(a.id) ?? 0) - (t.order.get(b.id) ?? 0);
}

/** The newest leaf under `id` (null: the whole tree); `id` itself when it has no children. */
export function newestLeaf(t: Tree, id: string | null): Message | null {
  const self = id ? (t.byId.get(id) ?? null) : null;
  const stack = [...(t.children.get(id) ?? [])];
  let best: Message | null = null;
  while (stack.length) {
    const m = stack.pop()!;
    const kids = t.children.get(m.id);
    if (kids && kids.length) stack.push(...kids);
    else if (!best || compare(t, m, best) > 0) best = m;
  }
  return best ?? self;
}

/** Messages from the root to `leafId`. */
export function pathTo(t: Tree, leafId: string | null): Message[] {
  const out: Message[] = [];
  let cur = leafId ? t.byId.get(leafId) : undefined;
  const seen = new Set<string>();
  while (cur && !seen.has(cur.id)) {
    seen.add(cur.id);
    out.push(cur);
    cur = cur.parent_id ? t.byId.get(cur.parent_id) : undefined;
  }
  return out.reverse();
}

/** The path shown: the newest leaf overall, or the leaf the user picked. */
export function visiblePath(t: Tree, leafId?: string | null): Message[] {
  const leaf = leafId && t.byId.has(leafId) ? leafId : (newestLeaf(t, null)?.id ?? null);
  return pathTo(t, leaf);
}

/** A message's siblings (itself included, in order) and its index among them. */
export function siblings(t: Tree, m: Message): { list: Message[]; index: number } {
  const p = m.parent_id && t.byId.has(m.parent_id) ? m.parent_id : null;
  const list = t.children.get(p) ?? [m];
  return { list, index: Math.max(0, list.findIndex((x) => x.id === m.id)) };
}

/** The leaf to show after switching from `m` to its sibling `delta` steps away. */
export function switchBranch(t: Tree, m: Message, delta: number): string | null {
  const { list, index } = siblings(t, m);
  const j = index + delta;
  if (j < 0 || j >= list.length) return null;
  return newestLeaf(t, list[j].id)?.id ?? list[j].id;
}

/** The leaf of the visible path (where a new message is appended). */
export function leafOf(path: Message[]): Message | null {
  return path.length ? path[path.length - 1] : null;
}
