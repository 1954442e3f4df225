// Audit log exports, built in the browser from /admin/v1/audit records.
import { toCsv } from './csv';
import type { AuditRecord } from './types';

export const AUDIT_COLUMNS: (keyof AuditRecord)[] = [
  'seq', 'time', 'request_id', 'key_id', 'user', 'team', 'role', 'client_addr', 'route', 'model', 'status',
  'latency_ms', 'prompt_tokens', 'completion_tokens', 'guardrails', 'request_body', 'response_body', 'prev_hash', 'hash',
];

export function auditToCsv(recs: AuditRecord[]): string {
  return toCsv([AUDIT_COLUMNS, ...recs.map((r) => AUDIT_COLUMNS.map((c) => r[c] ?? ''))]);
}

export function auditToJsonl(recs: AuditRecord[]): string {
  return recs.map((r) => JSON.stringify(r)).join('\n') + (recs.length ? '\n' : '');
}
