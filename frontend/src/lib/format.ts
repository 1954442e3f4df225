// Number and time formatting.

import type { MessageStats } from './types';

export function fmtNum(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  return n.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

export function fmtBytes(n: number | null | undefined): string {
  if (!n && n !== 0) return '–';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function fmtTime(unix: number | null | undefined): string {
  if (!unix) return '–';
  return new Date(unix * 1000).toLocaleString();
}

export function fmtDuration(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return `${m}m ${Math.floor(s % 60)}s`;
}

export function slug(s: string): string {
  return (
    s
      .toLowerCase()
      .replace(/[^\p{L}\p{N}]+/gu, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 60) || 'export'
  );
}

/** The note under a reply for which the server left out earlier messages (context limit):
 *  the i18n key and its count, or null when everything was sent. */
export function droppedNote(stats: MessageStats | null | undefined): { key: 'chat.droppedOne' | 'chat.dropped'; n: number } | null {
  const n = stats?.messages_dropped;
  if (!n || !Number.isFinite(n) || n <= 0) return null;
  return { key: n === 1 ? 'chat.droppedOne' : 'chat.dropped', n };
}
