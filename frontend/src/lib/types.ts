// Shapes of the server's API (docs/UI-API.md and the admin API).

export type Role = 'admin' | 'user' | 'auditor';

export interface UserInfo {
  name: string;
  role: Role;
  team: string | null;
}

export interface Me {
  mode: 'local' | 'auth';
  user: UserInfo | null;
  csrf_token: string | null;
}

export type ReasoningEffort = 'low' | 'medium' | 'high' | null;

export interface ChatSettings {
  system?: string;
  temperature?: number | null;
  top_p?: number | null;
  max_tokens?: number | null;
  reasoning_effort?: ReasoningEffort;
  top_k?: number | null;
  min_p?: number | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  /** Conversations only: cap on the context a conversation uses (prompt and reply); the
   * server sends the system prompt and the newest messages that fit (docs/UI-API.md). */
  max_context_tokens?: number | null;
}

/** Sampling settings beyond the basic four, sent under their chat-completion names. */
export const EXTRA_SETTINGS = ['top_k', 'min_p', 'seed', 'presence_penalty', 'frequency_penalty', 'repetition_penalty'] as const;

export interface MessageStats {
  ttft_ms?: number | null;
  tokens_per_s?: number | null;
  prompt_tokens?: number | null;
  completion_tokens?: number | null;
  reasoning_ms?: number | null;
  reasoning_tokens?: number | null;
  context_length?: number | null;
  finish_reason?: 'stop' | 'length' | 'content_filter' | null;
  /** Earlier messages of the conversation the server left out to fit the model's context. */
  messages_dropped?: number | null;
}

export type MessageStatus = 'complete' | 'generating' | 'stopped' | 'error';

export interface Message {
  id: string;
  parent_id: string | null;
  role: 'user' | 'assistant' | 'system';
  content: string;
  reasoning: string | null;
  model: string | null;
  status: MessageStatus;
  error: string | null;
  stats: MessageStats | null;
  created: number;
}

export interface Conversation {
  id: string;
  title: string;
  model: string | null;
  created: number;
  updated: number;
  settings: ChatSettings;
  messages?: Message[];
  active_generation: string | null;
}

export interface SendResult {
  user_message: Message | null;
  assistant_message: Message;
  generation_id: string;
}

export type GenerationEvent =
  | { type: 'delta'; content?: string; reasoning?: string }
  | { type: 'done'; message: Message };

export interface ExportDoc {
  hearth_export: 1;
  title: string;
  model: string | null;
  settings: ChatSettings;
  created: number;
  messages: ExportMessage[];
}

export type ExportMessage = Pick<Message, 'id' | 'parent_id' | 'role' | 'content'> &
  Partial<Pick<Message, 'reasoning' | 'model' | 'status' | 'stats' | 'created'>>;

export interface ModelInfo {
  id: string;
  object?: string;
  owned_by?: string;
  context_length?: number;
}

// Comparison runs
export interface AnswerStats {
  ttft_ms?: number | null;
  tokens_per_s?: number | null;
  prompt_tokens?: number | null;
  completion_tokens?: number | null;
  total_ms?: number | null;
}

export interface Answer {
  content: string;
  reasoning: string | null;
  stats: AnswerStats | null;
  error: string | null;
}

export interface CompareColumn {
  model: string;
  settings: ChatSettings;
  label: string;
}

export interface CompareQuestion {
  prompt: string;
  answers: Answer[];
  /** The better column's index, "tie", or null before a vote (-1 is read as a tie too). */
  vote: number | 'tie' | null;
  scores: (number | null)[];
}

export interface Run {
  id?: string;
  title: string;
  created?: number;
  updated?: number;
  blind: boolean;
  columns: CompareColumn[];
  questions: CompareQuestion[];
}

export interface LeaderRow {
  model: string;
  wins: number;
  losses: number;
  ties: number;
  votes: number;
  mean_score: number | null;
}

// Admin
export interface Limits {
  rpm?: number | null;
  tpm?: number | null;
  max_concurrent?: number | null;
  monthly_tokens?: number | null;
}

export interface KeyInfo {
  id: string;
  name: string;
  prefix: string;
  user: string | null;
  team: string | null;
  role: Role;
  models: string[] | null;
  limits: Limits;
  expires: number | null;
  revoked: number | null;
  created: number;
  key?: string;
}

export interface AdminUser {
  name: string;
  role: Role;
  team: string | null;
  created: number;
}

export interface Team {
  name: string;
  limits: Limits;
  /** Models the team may use; null: any. */
  models?: string[] | null;
  created: number;
}

/** A row of `GET /admin/v1/models`. */
export interface AdminModel {
  id: string;
  state: 'ready' | 'loading' | 'failed';
  default?: boolean;
  path?: string | null;
  architecture?: string | null;
  context_length?: number;
  file_size?: number | null;
  quantization?: string | null;
  memory?: ModelMemory | null;
  error?: string | null;
  elapsed_s?: number;
}

/** `memory` of a ready model in `GET /admin/v1/models` (bytes). */
export interface ModelMemory {
  weights_mapped_bytes: number;
  /** Mapped bytes in RAM now; null where the server's OS cannot say. */
  weights_resident_bytes: number | null;
  weights_owned_bytes: number;
  kv_cache_bytes: number;
  kv_cache_used_bytes: number;
}

export interface AdminModels {
  data: AdminModel[];
  default: string | null;
  management: { enabled: boolean; models_dir: string | null };
}

export interface UsageRow {
  group: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
}

export interface AuditRecord {
  seq: number;
  time: number;
  request_id: string;
  key_id: string | null;
  user: string | null;
  team: string | null;
  role: string | null;
  client_addr: string | null;
  route: string;
  model: string | null;
  status: number;
  latency_ms: number;
  prompt_tokens: number;
  completion_tokens: number;
  guardrails: string | null;
  request_body: string | null;
  response_body: string | null;
  prev_hash: string;
  hash: string;
}

export interface AdminStatus {
  models: { id: string; architecture: string; context_length: number; file_size: number; quantization: string }[];
  running: number;
  waiting: number;
  kv_blocks_used: number;
  kv_blocks_total: number;
  generated_tokens_total: number;
  uptime_s: number;
}
