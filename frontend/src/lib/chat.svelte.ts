// One open conversation: its messages (a tree), the branch shown, sending, regenerating,
// editing, following and stopping the server-owned generation.
import { api } from './api';
import { followGeneration } from './generation';
import { buildTree, leafOf, switchBranch, visiblePath } from './tree';
import { conversations } from './conversations.svelte';
import type { ChatSettings, Conversation, Message } from './types';

export interface Live {
  started: number;
  firstAt: number | null;
  pieces: number;
}

export class ChatController {
  conv = $state<Conversation | null>(null);
  messages = $state<Message[]>([]);
  leaf = $state<string | null>(null);
  loading = $state(false);
  notFound = $state(false);
  error = $state<string | null>(null);
  generation = $state<{ gid: string; messageId: string } | null>(null);
  live = $state<Live | null>(null);
  connectionLost = $state(false);

  tree = $derived(buildTree(this.messages));
  path = $derived(visiblePath(this.tree, this.leaf));

  private abort: AbortController | null = null;
  private openSeq = 0;

  get busy(): boolean {
    return this.generation !== null;
  }

  /** Opens a conversation (null: a new, unsaved chat). */
  async open(id: string | null): Promise<void> {
    if (id !== null && this.conv?.id === id) return;
    const seq = ++this.openSeq;
    this.detach();
    this.notFound = false;
    this.error = null;
    this.connectionLost = false;
    if (id === null) {
      this.conv = null;
      this.messages = [];
      this.leaf = null;
      return;
    }
    this.loading = true;
    try {
      const c = await api.conversation(id);
      if (seq !== this.openSeq) return;
      this.setConversation(c);
      if (c.active_generation) await this.resume(c.active_generation);
    } catch (e) {
      if (seq !== this.openSeq) return;
      const status = (e as { status?: number }).status;
      if (status === 404) this.notFound = true;
      else this.error = e instanceof Error ? e.message : String(e);
      this.conv = null;
      this.messages = [];
    } finally {
      if (seq === this.openSeq) this.loading = false;
    }
  }

  private setConversation(c: Conversation): void {
    const { messages, ...rest } = c;
    this.conv = rest as Conversation;
    this.messages = messages ?? [];
    this.leaf = null;
  }

  /** Re-reads the conversation (after a generation vanished, or to check the server's copy). */
  async reload(): Promise<void> {
    if (!this.conv) return;
    const keep = this.leaf;
    const c = await api.conversation(this.conv.id);
    this.setConversation(c);
    this.leaf = keep;
  }

  /** After a lost connection: re-reads the conversation and follows its reply again. */
  async retry(): Promise<void> {
    if (!this.conv) return;
    this.connectionLost = false;
    const c = await api.conversation(this.conv.id);
    const keep = this.leaf;
    this.setConversation(c);
    this.leaf = keep;
    if (c.active_generation) await this.resume(c.active_generation);
  }

  /** Stops listening (the generation itself goes on, on the server). */
  detach(): void {
    this.abort?.abort();
    this.abort = null;
    this.generation = null;
    this.live = null;
  }

  private async resume(gid: string): Promise<void> {
    let messageId: string | null = null;
    try {
      const g = await api.generations();
      messageId = g.data.find((x) => x.id === gid)?.message_id ?? null;
    } catch {
      /* fall back to the message still generating */
    }
    const msg =
      (messageId && this.messages.find((m) => m.id === messageId)) ||
      [...this.messages].reverse().find((m) => m.status === 'generating');
    if (!msg) return;
    this.leaf = msg.id;
    // The events replay from the first one: start the text over.
    msg.content = '';
    msg.reasoning = null;
    void this.follow(gid, msg.id, 0);
  }

  private proxied(id: string): Message | undefined {
    return this.messages.find((m) => m.id === id);
  }

  private async follow(gid: string, messageId: string, from: number): Promise<void> {
    this.abort?.abort();
    const ac = new AbortController();
    this.abort = ac;
    this.generation = { gid, messageId };
    this.connectionLost = false;
    const live: Live = { started: performance.now(), firstAt: null, pieces: 0 };
    this.live = live;
    try {
      const r = await followGeneration(gid, {
        from,
        signal: ac.signal,
        onDelta: (d) => {
          const m = this.proxied(messageId);
          if (!m) return;
          if (d.reasoning) m.reasoning = (m.reasoning ?? '') + d.reasoning;
          if (d.content) m.content += d.content;
          if (this.live) {
            if (this.live.firstAt === null) this.live.firstAt = performance.now();
            this.live.pieces++;
          }
        },
      });
      if (ac.signal.aborted) return;
      if (r.kind === 'done') {
        const m = this.proxied(messageId);
        if (m) Object.assign(m, r.message);
      } else if (r.kind === 'gone') {
        await this.reload();
      }
      this.touch();
    } catch {
      if (!ac.signal.aborted) this.connectionLost = true;
    } finally {
      if (this.abort === ac) {
        this.abort = null;
        this.generation = null;
        this.live = null;
      }
    }
  }

  private touch(): void {
    if (!this.conv) return;
    this.conv.updated = Math.floor(Date.now() / 1000);
    conversations.upsert(this.conv);
  }

  /** Sends a user message under `parentId` (undefined: the leaf shown; null: a new root). */
  async send(content: string, opts: { model?: string | null; settings?: ChatSettings; parentId?: string | null } = {}): Promise<string | null> {
    let created: string | null = null;
    if (!this.conv) {
      const title = content.replace(/\s+/g, ' ').trim().slice(0, 60);
      const c = await api.createConversation({ title, model: opts.model ?? undefined, settings: opts.settings });
      this.setConversation(c);
      created = c.id;
      conversations.upsert(c);
    }
    const conv = this.conv!;
    const parent = opts.parentId !== undefined ? opts.parentId : (leafOf(this.path)?.id ?? null);
    const r = await api.send(conv.id, { content, parent_id: parent });
    if (r.user_message) this.messages.push(r.user_message);
    this.messages.push(r.assistant_message);
    this.leaf = r.assistant_message.id;
    void this.follow(r.generation_id, r.assistant_message.id, 0);
    return created;
  }

  /** Answers the parent of an assistant message again (a sibling answer). */
  async regenerate(m: Message): Promise<void> {
    if (!this.conv) return;
    const r = await api.send(this.conv.id, { regenerate: m.id });
    if (r.user_message) this.messages.push(r.user_message);
    this.messages.push(r.assistant_message);
    this.leaf = r.assistant_message.id;
    void this.follow(r.generation_id, r.assistant_message.id, 0);
  }

  /** Edit and resend: a new user message beside the old one (same parent). */
  async edit(m: Message, content: string): Promise<void> {
    await this.send(content, { parentId: m.parent_id });
  }

  async stop(): Promise<void> {
    const g = this.generation;
    if (!g) return;
    try {
      await api.stopGeneration(g.gid);
    } catch (e) {
      // Already over: the done event or a reload settles it.
      if ((e as { status?: number }).status !== 404) throw e;
    }
  }

  branch(m: Message, delta: number): void {
    const leaf = switchBranch(this.tree, m, delta);
    if (leaf) this.leaf = leaf;
  }

  async patch(body: { title?: string; model?: string; settings?: ChatSettings }): Promise<void> {
    if (!this.conv) return;
    const c = await api.patchConversation(this.conv.id, body);
    const { messages: _m, ...rest } = c;
    void _m;
    this.conv = { ...this.conv, ...rest };
    conversations.upsert(this.conv);
  }

  /** Tokens in the context after the last answer shown, and the model's limit. */
  get context(): { used: number; limit: number | null } | null {
    for (let i = this.path.length - 1; i >= 0; i--) {
      const s = this.path[i].stats;
      if (this.path[i].role === 'assistant' && s && (s.prompt_tokens || s.completion_tokens)) {
        return { used: (s.prompt_tokens ?? 0) + (s.completion_tokens ?? 0), limit: s.context_length ?? null };
      }
    }
    return null;
  }
}
