// A stand-in for `hearth serve` implementing docs/UI-API.md (plus the bits of /v1 and
// /admin/v1 the UI uses) in memory, serving ../dist. For developing the UI and running the
// e2e specs without the Rust server:  node e2e/mock-server.mjs [port]
// MOCK_MODE=auth (default) needs a login: admin/admin-pass (admin), bob/bob-pass (user).
// MOCK_MODE=local opens as the local admin. Tokens stream every MOCK_TOKEN_MS ms (25).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const port = Number(process.argv[2] ?? process.env.PORT ?? 8377);
const MODE = process.env.MOCK_MODE === 'local' ? 'local' : 'auth';
const TOKEN_MS = Number(process.env.MOCK_TOKEN_MS ?? 25);
const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const now = () => Math.floor(Date.now() / 1000);
const id = (p) => `${p}_${crypto.randomBytes(6).toString('hex')}`;
const started = Date.now();

// The files under the mock's models directory (what `POST /admin/v1/models` can load).
const MODELS_DIR = '/models';
const FILES = {
  'SmolLM2-135M-Instruct.Q4_1.gguf': { context_length: 8192, architecture: 'llama', file_size: 96_000_000, quantization: 'Q4_1' },
  'gemma-3-270m-Q4_K_M.gguf': { context_length: 32768, architecture: 'gemma3', file_size: 253_000_000, quantization: 'Q4_K_M' },
};
// Served models, the default first (changed by /admin/v1/models).
const MODELS = [
  { id: 'smollm2', path: `${MODELS_DIR}/SmolLM2-135M-Instruct.Q4_1.gguf`, ...FILES['SmolLM2-135M-Instruct.Q4_1.gguf'] },
  { id: 'gemma3', path: `${MODELS_DIR}/gemma-3-270m-Q4_K_M.gguf`, ...FILES['gemma-3-270m-Q4_K_M.gguf'] },
];
const modelLoads = new Map(); // id -> { path, started, error }
const users = new Map([
  ['admin', { name: 'admin', role: 'admin', team: null, password: 'admin-pass', created: now() }],
  ['bob', { name: 'bob', role: 'user', team: null, password: 'bob-pass', created: now() }],
]);
const teams = new Map();
const keys = new Map(); // id -> info (+ secret)
const sessions = new Map(); // token -> { user, csrf }
const convs = new Map(); // id -> conversation with messages, owner
const gens = new Map();
const runs = new Map();
const audit = [];
const usage = [];
let generatedTotal = 0;
let promptTotal = 0;
let running = 0;
let SEQ = 0;

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json', ...headers });
  res.end(text);
}
const err = (res, status, message, code = null, type = 'invalid_request_error') => send(res, status, { error: { message, type, param: null, code } });
function cookies(req) {
  const out = {};
  for (const p of (req.headers.cookie ?? '').split(';')) {
    const i = p.indexOf('=');
    if (i > 0) out[p.slice(0, i).trim()] = decodeURIComponent(p.slice(i + 1).trim());
  }
  return out;
}
async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const s = Buffer.concat(chunks).toString('utf8');
  if (!s) return {};
  try { return JSON.parse(s); } catch { return undefined; }
}

/** Who is calling: { user, via: 'local'|'key'|'session', session? } or null. */
function caller(req) {
  const auth = req.headers.authorization ?? '';
  const presented = auth.startsWith('Bearer ') ? auth.slice(7) : req.headers['x-api-key'];
  if (presented) {
    const k = [...keys.values()].find((k) => k.secret === presented && !k.revoked && (!k.expires || k.expires > now()));
    if (!k) return { invalid: true };
    const u = (k.user && users.get(k.user)) || { name: k.user ?? `key:${k.name}`, role: k.role, team: k.team };
    return { user: { name: u.name, role: k.role, team: k.team ?? u.team ?? null }, via: 'key', key: k };
  }
  if (MODE === 'local') return { user: { name: 'local', role: 'admin', team: null }, via: 'local' };
  const s = sessions.get(cookies(req).hearth_session);
  if (s) return { user: publicUser(users.get(s.user) ?? { name: s.user, role: 'user', team: null }), via: 'session', session: s };
  return null;
}
const publicUser = (u) => ({ name: u.name, role: u.role, team: u.team ?? null });

function words(n, seed) {
  const base = `Here is an answer about ${seed}. The quick brown fox jumps over the lazy dog while a careful engineer writes tests, measures latency and keeps the cache warm.`.split(' ');
  const out = [];
  for (let i = 0; i < n; i++) out.push(base[i % base.length] + ' ');
  return out;
}
function reply(prompt, n) {
  const p = prompt.replace(/\s+/g, ' ').slice(0, 40);
  if (/code|python/i.test(prompt)) return ['Sure:\n\n', '```python\n', 'def add(a, b):\n', '    return a + b\n', '```\n\n', '| x | y |\n|---|---|\n| 1 | 2 |\n\n', ...words(Math.max(0, n - 6), p)];
  if (/math|euler/i.test(prompt)) return ['Euler: ', '$e^{i\\pi} + 1 = 0$', '\n\n', '$$\\int_0^1 x\\,dx = \\tfrac12$$\n\n', ...words(Math.max(0, n - 4), p)];
  return words(n, p);
}

function startGeneration(conv, assistant, pathMsgs) {
  const gid = id('g');
  const last = pathMsgs[pathMsgs.length - 1];
  const n = Math.max(1, Math.min(4000, conv.settings.max_tokens ?? 40));
  const think = assistant.model === 'gemma3' ? words(8, 'thinking first') : [];
  const pieces = reply(last?.content ?? '', n);
  // As the server fits a long conversation (docs/UI-API.md): the newest messages, from a user
  // one, whose prompt (4 characters a token here) leaves room for the reply.
  const modelContext = MODELS.find((m) => m.id === assistant.model)?.context_length ?? 8192;
  const context = Math.min(modelContext, conv.settings.max_context_tokens ?? Infinity);
  const reserve = conv.settings.max_tokens ?? Math.min(1024, Math.floor(context / 4));
  const tokens = (m) => Math.ceil(m.content.length / 4);
  const system = Math.ceil((conv.settings.system ?? '').length / 4);
  let prompt = pathMsgs.reduce((s, m) => s + tokens(m), 0) + system;
  let dropped = 0;
  const drop = () => (prompt -= tokens(pathMsgs[dropped++]));
  if (prompt + reserve > context) {
    while (dropped < pathMsgs.length - 1 && prompt + reserve > context) drop();
    while (dropped < pathMsgs.length - 1 && pathMsgs[dropped].role !== 'user') drop();
  }
  if (dropped) assistant.stats = { messages_dropped: dropped };
  const g = { id: gid, conversation_id: conv.id, message_id: assistant.id, model: assistant.model, started: now(), events: [], listeners: new Set(), done: false, timer: null, t0: Date.now(), tFirst: null, n: 0, owner: conv.owner };
  gens.set(gid, g);
  running++;
  let i = 0;
  const emit = (ev) => {
    g.events.push(ev);
    for (const l of g.listeners) l(g.events.length - 1, ev);
  };
  const finish = (status) => {
    clearInterval(g.timer);
    if (g.done) return;
    running--;
    const ms = Date.now() - g.t0;
    assistant.status = status;
    assistant.stats = {
      ttft_ms: g.tFirst ? g.tFirst - g.t0 : null,
      tokens_per_s: g.n > 1 && g.tFirst ? ((g.n - 1) * 1000) / (Date.now() - g.tFirst) : null,
      prompt_tokens: prompt,
      completion_tokens: g.n,
      reasoning_ms: think.length ? think.length * TOKEN_MS : null,
      reasoning_tokens: think.length || null,
      context_length: modelContext,
      messages_dropped: dropped,
    };
    generatedTotal += g.n;
    promptTotal += prompt;
    usage.push({ day: new Date().toISOString().slice(0, 10), user: conv.owner, team: users.get(conv.owner)?.team ?? '', model: assistant.model, key: '', prompt, completion: g.n });
    conv.updated = now();
    g.done = true;
    g.ended = Date.now();
    emit({ type: 'done', message: { ...assistant } });
    void ms;
  };
  g.finish = finish;
  g.timer = setInterval(() => {
    if (i < think.length) {
      assistant.reasoning = (assistant.reasoning ?? '') + think[i];
      emit({ type: 'delta', reasoning: think[i] });
    } else if (i - think.length < pieces.length) {
      const piece = pieces[i - think.length];
      if (g.tFirst === null) g.tFirst = Date.now();
      g.n++;
      assistant.content += piece;
      emit({ type: 'delta', content: piece });
    } else finish('complete');
    i++;
  }, TOKEN_MS);
  return gid;
}

function pathTo(conv, leafId) {
  const by = new Map(conv.messages.map((m) => [m.id, m]));
  const out = [];
  let cur = by.get(leafId);
  while (cur) {
    out.push(cur);
    cur = cur.parent_id ? by.get(cur.parent_id) : undefined;
  }
  return out.reverse();
}
function latestLeaf(conv) {
  const parents = new Set(conv.messages.map((m) => m.parent_id));
  const leaves = conv.messages.filter((m) => !parents.has(m.id));
  leaves.sort((a, b) => a.seq - b.seq);
  return leaves[leaves.length - 1]?.id ?? null;
}
const convOut = (c, withMessages) => {
  const { owner, messages, seq: _seq, ...rest } = c;
  const active = [...gens.values()].find((g) => g.conversation_id === c.id && !g.done);
  const out = { ...rest, active_generation: active?.id ?? null };
  if (withMessages) out.messages = messages.map(({ seq, ...m }) => m);
  return out;
};
function mkMessage(role, content, parent, model = null, status = 'complete') {
  return { id: id('m'), parent_id: parent, role, content, reasoning: null, model, status, error: null, stats: null, created: now(), seq: ++SEQ };
}
function toMarkdown(c) {
  const leaf = latestLeaf(c);
  const lines = [`# ${c.title}`, ''];
  for (const m of pathTo(c, leaf)) lines.push(`## ${m.role === 'user' ? 'User' : `Assistant (${m.model ?? ''})`}`, '', m.content, '');
  return lines.join('\n');
}

function auditRec(req, who, status, route, model = null) {
  audit.push({ seq: audit.length + 1, time: now(), request_id: id('req'), key_id: who?.key?.id ?? null, user: who?.user?.name ?? null, team: who?.user?.team ?? null, role: who?.user?.role ?? null, client_addr: req.socket.remoteAddress, route, model, status, latency_ms: 3 + (audit.length % 17), prompt_tokens: 0, completion_tokens: 0, guardrails: null, request_body: null, response_body: null, prev_hash: '0'.repeat(8), hash: crypto.randomBytes(8).toString('hex') });
}

function serveStatic(req, res, pathname) {
  let file = path.join(dist, pathname === '/' ? 'index.html' : pathname);
  if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(dist, 'index.html');
  if (!fs.existsSync(file)) return send(res, 404, 'build the UI first (npm run build)');
  const ext = path.extname(file);
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.woff2': 'font/woff2', '.woff': 'font/woff', '.ttf': 'font/ttf', '.png': 'image/png' };
  res.writeHead(200, { 'content-type': types[ext] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  const method = req.method;
  if (!/^\/(api|v1|admin|metrics)/.test(p)) return serveStatic(req, res, p);

  if (p === '/api/auth/me' && method === 'GET') {
    const who = caller(req);
    if (MODE === 'local') return send(res, 200, { mode: 'local', user: who.user, csrf_token: null });
    return send(res, 200, { mode: 'auth', user: who?.user ?? null, csrf_token: who?.session?.csrf ?? null });
  }
  if (p === '/api/auth/login' && method === 'POST') {
    const b = (await body(req)) ?? {};
    let user = null;
    if (b.api_key) {
      const k = [...keys.values()].find((k) => k.secret === b.api_key && !k.revoked);
      if (k) user = k.user ?? `key:${k.name}`;
      if (k && !users.has(user)) users.set(user, { name: user, role: k.role, team: k.team, created: now() });
    } else {
      const u = users.get(b.username);
      if (u && u.password && u.password === b.password) user = u.name;
    }
    if (!user) return err(res, 401, 'Invalid user name, password or key.', 'invalid_credentials', 'authentication_error');
    const token = crypto.randomBytes(16).toString('hex');
    const csrf = crypto.randomBytes(16).toString('hex');
    sessions.set(token, { user, csrf });
    res.setHeader('set-cookie', [`hearth_session=${token}; HttpOnly; SameSite=Strict; Path=/`, `hearth_csrf=${csrf}; SameSite=Strict; Path=/`]);
    return send(res, 200, { user: publicUser(users.get(user)), csrf_token: csrf });
  }

  const who = caller(req);
  if (!who || who.invalid) return err(res, 401, 'Authentication required.', 'invalid_api_key', 'authentication_error');
  if (who.via === 'session' && !['GET', 'HEAD', 'OPTIONS'].includes(method) && req.headers['x-csrf-token'] !== who.session.csrf)
    return err(res, 403, 'Missing or wrong x-csrf-token.', 'csrf_failed', 'permission_error');
  const me = who.user.name;
  const isAdmin = who.user.role === 'admin';

  if (p === '/api/auth/logout' && method === 'POST') {
    sessions.delete(cookies(req).hearth_session);
    res.setHeader('set-cookie', ['hearth_session=; Max-Age=0; Path=/', 'hearth_csrf=; Max-Age=0; Path=/']);
    return send(res, 200, {});
  }
  if (p === '/v1/models' && method === 'GET') {
    auditRec(req, who, 200, '/v1/models');
    const allowed = who.key?.models;
    return send(res, 200, { object: 'list', data: MODELS.filter((m) => !allowed || allowed.includes(m.id)).map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: 'hearth', context_length: m.context_length })) });
  }
  if (p === '/v1/chat/completions' && method === 'POST') {
    const b = (await body(req)) ?? {};
    const model = MODELS.find((m) => m.id === b.model);
    if (!model) return err(res, 404, `The model '${b.model}' does not exist.`, 'model_not_found');
    // The key's and its team's allow-lists, as gateway::admit checks them.
    const teamModels = who.user.team ? teams.get(who.user.team)?.models ?? null : null;
    for (const allowed of [who.key?.models, who.key ? teamModels : null]) {
      if (allowed && !allowed.includes(model.id)) return err(res, 403, `This key may not use model '${model.id}'.`, 'model_not_allowed');
    }
    const last = [...(b.messages ?? [])].reverse().find((m) => m.role === 'user')?.content ?? '';
    const pieces = reply(String(last), Math.min(b.max_tokens ?? 30, 2000));
    const cid = id('chatcmpl');
    auditRec(req, who, 200, '/v1/chat/completions', model.id);
    if (!b.stream) return send(res, 200, { id: cid, object: 'chat.completion', model: model.id, choices: [{ index: 0, message: { role: 'assistant', content: pieces.join('') }, finish_reason: 'stop' }], usage: { prompt_tokens: 10, completion_tokens: pieces.length, total_tokens: 10 + pieces.length } });
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    running++;
    let i = 0;
    let closed = false;
    req.on('close', () => (closed = true));
    const timer = setInterval(() => {
      if (closed) { clearInterval(timer); running--; return; }
      if (i < pieces.length) {
        res.write(`data: ${JSON.stringify({ id: cid, object: 'chat.completion.chunk', model: model.id, choices: [{ index: 0, delta: { content: pieces[i] }, finish_reason: null }] })}\n\n`);
        i++;
      } else {
        clearInterval(timer);
        running--;
        generatedTotal += pieces.length;
        res.write(`data: ${JSON.stringify({ id: cid, object: 'chat.completion.chunk', model: model.id, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
        if (b.stream_options?.include_usage) res.write(`data: ${JSON.stringify({ id: cid, object: 'chat.completion.chunk', model: model.id, choices: [], usage: { prompt_tokens: 10, completion_tokens: pieces.length, total_tokens: 10 + pieces.length } })}\n\n`);
        res.end('data: [DONE]\n\n');
      }
    }, TOKEN_MS);
    return;
  }

  // Conversations
  let m;
  if (p === '/api/conversations' && method === 'GET') {
    const q = (url.searchParams.get('q') ?? '').toLowerCase();
    const list = [...convs.values()].filter((c) => c.owner === me && (!q || c.title.toLowerCase().includes(q) || c.messages.some((x) => x.content.toLowerCase().includes(q))));
    list.sort((a, b) => b.updated - a.updated || b.seq - a.seq);
    const off = Number(url.searchParams.get('offset') ?? 0), lim = Number(url.searchParams.get('limit') ?? 50);
    return send(res, 200, { data: list.slice(off, off + lim).map((c) => convOut(c, false)), total: list.length });
  }
  if (p === '/api/conversations' && method === 'POST') {
    const b = (await body(req)) ?? {};
    const c = { id: id('c'), title: b.title || 'New conversation', model: b.model ?? MODELS[0].id, created: now(), updated: now(), settings: { system: '', temperature: null, top_p: null, max_tokens: null, reasoning_effort: null, ...(b.settings ?? {}) }, messages: [], owner: me, seq: ++SEQ };
    convs.set(c.id, c);
    return send(res, 201, convOut(c, true));
  }
  if (p === '/api/conversations/import' && method === 'POST') {
    const b = await body(req);
    if (!b || b.hearth_export !== 1 || !Array.isArray(b.messages)) return err(res, 400, 'Not a Hearth export document.');
    const map = new Map();
    const c = { id: id('c'), title: b.title ?? 'Imported', model: b.model ?? MODELS[0].id, created: now(), updated: now(), settings: b.settings ?? {}, messages: [], owner: me, seq: ++SEQ };
    for (const x of b.messages) {
      const nm = { ...mkMessage(x.role, x.content, x.parent_id ? map.get(x.parent_id) ?? null : null, x.model ?? null, x.status ?? 'complete'), reasoning: x.reasoning ?? null, stats: x.stats ?? null };
      map.set(x.id, nm.id);
      c.messages.push(nm);
    }
    convs.set(c.id, c);
    return send(res, 201, convOut(c, true));
  }
  if ((m = /^\/api\/conversations\/([^/]+)(\/messages|\/export)?$/.exec(p))) {
    const c = convs.get(decodeURIComponent(m[1]));
    if (!c || c.owner !== me) return err(res, 404, 'No such conversation.', 'not_found');
    if (!m[2] && method === 'GET') return send(res, 200, convOut(c, true));
    if (!m[2] && method === 'PATCH') {
      const b = (await body(req)) ?? {};
      if (b.title !== undefined) c.title = b.title;
      if (b.model !== undefined) c.model = b.model;
      if (b.settings !== undefined) c.settings = { ...c.settings, ...b.settings };
      c.updated = now();
      return send(res, 200, convOut(c, false));
    }
    if (!m[2] && method === 'DELETE') {
      for (const g of gens.values()) if (g.conversation_id === c.id && !g.done) g.finish('stopped');
      convs.delete(c.id);
      return send(res, 200, { deleted: true });
    }
    if (m[2] === '/export' && method === 'GET') {
      if (url.searchParams.get('format') === 'md') return send(res, 200, toMarkdown(c), { 'content-type': 'text/markdown; charset=utf-8' });
      return send(res, 200, { hearth_export: 1, title: c.title, model: c.model, settings: c.settings, created: c.created, messages: c.messages.map(({ seq, error, ...x }) => x) });
    }
    if (m[2] === '/messages' && method === 'POST') {
      const b = (await body(req)) ?? {};
      let user = null;
      let parentOfAnswer;
      if (b.regenerate) {
        const old = c.messages.find((x) => x.id === b.regenerate);
        if (!old) return err(res, 404, 'No such message.');
        parentOfAnswer = old.parent_id;
      } else {
        if (typeof b.content !== 'string' || !b.content.trim()) return err(res, 400, '`content` is required.', null);
        // As the real server: a missing parent_id means the latest message, null a new root.
        const parent = 'parent_id' in b ? b.parent_id : latestLeaf(c);
        user = mkMessage('user', b.content, parent ?? null);
        c.messages.push(user);
        parentOfAnswer = user.id;
      }
      const a = mkMessage('assistant', '', parentOfAnswer, c.model, 'generating');
      c.messages.push(a);
      c.updated = now();
      const gid = startGeneration(c, a, pathTo(c, parentOfAnswer));
      const clean = ({ seq, ...x }) => x;
      return send(res, 201, { user_message: user && clean(user), assistant_message: clean(a), generation_id: gid });
    }
  }
  if (p === '/api/generations' && method === 'GET')
    return send(res, 200, { data: [...gens.values()].filter((g) => !g.done && g.owner === me).map((g) => ({ id: g.id, conversation_id: g.conversation_id, message_id: g.message_id, model: g.model, started: g.started })) });
  if ((m = /^\/api\/generations\/([^/]+)\/(events|stop)$/.exec(p))) {
    const g = gens.get(m[1]);
    if (!g || g.owner !== me || (g.done && Date.now() - g.ended > 600_000)) return err(res, 404, 'No such generation.', 'not_found');
    if (m[2] === 'stop' && method === 'POST') {
      g.finish('stopped');
      return send(res, 200, { stopped: true });
    }
    const from = Number(url.searchParams.get('from') ?? (req.headers['last-event-id'] !== undefined ? Number(req.headers['last-event-id']) + 1 : 0));
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const write = (n, ev) => {
      res.write(`id: ${n}\ndata: ${JSON.stringify(ev)}\n\n`);
      if (ev.type === 'done') { g.listeners.delete(write); res.end(); }
    };
    for (let i = from; i < g.events.length; i++) write(i, g.events[i]);
    if (!g.done) {
      g.listeners.add(write);
      req.on('close', () => g.listeners.delete(write));
    } else res.end();
    return;
  }

  // Comparison runs
  if (p === '/api/compare/runs' && method === 'GET')
    return send(res, 200, { data: [...runs.values()].filter((r) => r.owner === me).sort((a, b) => b.updated - a.updated).map(({ owner, questions, ...r }) => r) });
  if (p === '/api/compare/runs' && method === 'POST') {
    const b = (await body(req)) ?? {};
    const r = { ...b, id: id('r'), created: now(), updated: now(), owner: me };
    runs.set(r.id, r);
    const { owner, ...out } = r;
    return send(res, 201, out);
  }
  if ((m = /^\/api\/compare\/runs\/([^/]+)$/.exec(p))) {
    const r = runs.get(m[1]);
    if (!r || r.owner !== me) return err(res, 404, 'No such run.', 'not_found');
    if (method === 'GET') { const { owner, ...out } = r; return send(res, 200, out); }
    if (method === 'PUT') {
      const b = (await body(req)) ?? {};
      const nr = { ...b, id: r.id, created: r.created, updated: now(), owner: me };
      runs.set(r.id, nr);
      const { owner, ...out } = nr;
      return send(res, 200, out);
    }
    if (method === 'DELETE') { runs.delete(r.id); return send(res, 200, { deleted: true }); }
  }
  if (p === '/api/compare/leaderboard' && method === 'GET') {
    const t = new Map();
    const row = (model) => t.get(model) ?? (t.set(model, { model, wins: 0, losses: 0, ties: 0, votes: 0, sum: 0, n: 0 }), t.get(model));
    for (const r of runs.values())
      for (const q of r.questions ?? []) {
        q.scores?.forEach((s, i) => { if (s != null && r.columns[i]) { const x = row(r.columns[i].model); x.sum += s; x.n++; } });
        if (q.vote == null) continue;
        r.columns.forEach((c, i) => { const x = row(c.model); x.votes++; if (q.vote === -1 || q.vote === 'tie') x.ties++; else if (i === q.vote) x.wins++; else x.losses++; });
      }
    return send(res, 200, { data: [...t.values()].map(({ sum, n, ...x }) => ({ ...x, mean_score: n ? sum / n : null })) });
  }

  // Admin
  if (p.startsWith('/admin/') || p === '/api/admin/status' || p === '/metrics') {
    const reading = method === 'GET' && (p === '/admin/v1/usage' || p.startsWith('/admin/v1/audit') || p === '/api/admin/status' || p === '/metrics');
    if (!(isAdmin || (reading && who.user.role === 'auditor'))) return err(res, 403, 'This needs the admin role.', 'forbidden', 'permission_error');
  }
  if (p === '/api/admin/status') {
    return send(res, 200, { models: MODELS.map(({ id, architecture, context_length, file_size, quantization }) => ({ id, architecture, context_length, file_size, quantization })), running, waiting: 0, kv_blocks_used: running * 12, kv_blocks_total: 1024, generated_tokens_total: generatedTotal, uptime_s: Math.floor((Date.now() - started) / 1000) });
  }
  if (p === '/metrics') {
    return send(res, 200, [
      '# TYPE hearth_requests_running gauge', `hearth_requests_running ${running}`, `hearth_requests_waiting 0`, `hearth_kv_cache_usage_ratio ${(running * 12) / 1024}`,
      `hearth_prompt_tokens_total{model="smollm2"} ${promptTotal}`, `hearth_generation_tokens_total{model="smollm2"} ${generatedTotal}`,
      `hearth_requests_total{endpoint="chat",model="smollm2",status="200"} ${audit.length}`, '',
    ].join('\n'), { 'content-type': 'text/plain; version=0.0.4' });
  }
  const list = (data) => send(res, 200, { object: 'list', data });
  if (p === '/admin/v1/users' && method === 'GET') return list([...users.values()].map(({ password, ...u }) => u));
  if (p === '/admin/v1/users' && method === 'POST') {
    const b = (await body(req)) ?? {};
    if (!b.name || users.has(b.name)) return err(res, 400, `user '${b.name}' exists or has no name`);
    if (!['admin', 'user', 'auditor'].includes(b.role)) return err(res, 400, 'role must be admin, user or auditor');
    const u = { name: b.name, role: b.role, team: b.team ?? null, password: b.password ?? null, created: now() };
    users.set(u.name, u);
    const { password, ...out } = u;
    return send(res, 201, out);
  }
  if (p === '/admin/v1/models' && method === 'GET') {
    const rows = MODELS.map((x, i) => ({ object: 'model', state: 'ready', default: i === 0, created: 0, ...x }));
    for (const [mid, j] of modelLoads) rows.push({ id: mid, object: 'model', state: j.error ? 'failed' : 'loading', path: j.path, started: j.started, elapsed_s: now() - j.started, error: j.error });
    return send(res, 200, { object: 'list', data: rows, default: MODELS[0]?.id ?? null, management: { enabled: true, models_dir: MODELS_DIR } });
  }
  if (p === '/admin/v1/models' && method === 'POST') {
    const b = (await body(req)) ?? {};
    if (!b.id || !/^[A-Za-z0-9\-_.:/@+]{1,128}$/.test(b.id) || b.id.startsWith('/')) return err(res, 400, `Invalid model id ${JSON.stringify(b.id)}.`, 'invalid_value');
    const full = String(b.path ?? '').startsWith('/') ? String(b.path) : `${MODELS_DIR}/${b.path ?? ''}`;
    const file = full.startsWith(`${MODELS_DIR}/`) ? full.slice(MODELS_DIR.length + 1) : null;
    if (file === null) return err(res, 403, `\`${b.path}\` is outside the models directory ${MODELS_DIR}: only models under it can be loaded.`, 'path_not_allowed', 'permission_error');
    if (!FILES[file]) return err(res, 400, `Cannot open the model path \`${b.path}\`: No such file or directory.`, 'model_load_failed');
    if (MODELS.some((x) => x.id === b.id)) return err(res, 409, `A model with the id \`${b.id}\` is served already.`, 'model_exists');
    if (modelLoads.get(b.id) && !modelLoads.get(b.id).error) return err(res, 409, `The model \`${b.id}\` is being loaded already.`, 'conflict');
    modelLoads.set(b.id, { path: full, started: now(), error: null });
    const loaded = new Promise((resolve) => setTimeout(() => {
      modelLoads.delete(b.id);
      MODELS.push({ id: b.id, path: full, ...FILES[file] });
      if (b.default) MODELS.unshift(...MODELS.splice(MODELS.length - 1, 1));
      resolve();
    }, 300));
    if (b.wait === false) return send(res, 202, { id: b.id, object: 'model', state: 'loading', path: full });
    await loaded;
    return send(res, 201, { id: b.id, object: 'model', state: 'ready', default: MODELS[0].id === b.id, path: full, ...FILES[file] });
  }
  if ((m = /^\/admin\/v1\/models\/(.+)$/.exec(p)) && ['GET', 'PATCH', 'DELETE'].includes(method)) {
    const mid = m[1].split('/').map(decodeURIComponent).join('/');
    if (method === 'DELETE' && modelLoads.get(mid)?.error) { modelLoads.delete(mid); return send(res, 200, { id: mid, deleted: true }); }
    const i = MODELS.findIndex((x) => x.id === mid);
    if (i < 0) return err(res, 404, `The model \`${mid}\` does not exist.`, 'model_not_found');
    if (method === 'DELETE') { MODELS.splice(i, 1); return send(res, 200, { id: mid, unloaded: true, cancelled: url.searchParams.get('cancel') === 'true' }); }
    if (method === 'PATCH') {
      const b = (await body(req)) ?? {};
      if (b.default === true) MODELS.unshift(...MODELS.splice(i, 1));
    }
    const x = MODELS.find((y) => y.id === mid);
    return send(res, 200, { object: 'model', state: 'ready', default: MODELS[0] === x, ...x });
  }
  if ((m = /^\/admin\/v1\/users\/([^/]+)$/.exec(p)) && method === 'PATCH') {
    const u = users.get(decodeURIComponent(m[1]));
    if (!u) return err(res, 404, 'no such user');
    const b = (await body(req)) ?? {};
    if (b.role) u.role = b.role;
    if ('team' in b) u.team = b.team;
    if (b.password) u.password = b.password;
    const { password, ...out } = u;
    return send(res, 200, out);
  }
  if ((m = /^\/admin\/v1\/users\/([^/]+)$/.exec(p)) && method === 'DELETE') { users.delete(decodeURIComponent(m[1])); return send(res, 200, { name: m[1], deleted: true }); }
  if (p === '/admin/v1/teams' && method === 'GET') return list([...teams.values()]);
  if (p === '/admin/v1/teams' && method === 'POST') {
    const b = (await body(req)) ?? {};
    const tm = { name: b.name, limits: b.limits ?? {}, models: b.models ?? null, created: now() };
    teams.set(tm.name, tm);
    return send(res, 201, tm);
  }
  if ((m = /^\/admin\/v1\/teams\/([^/]+)$/.exec(p)) && method === 'PATCH') {
    const tm = teams.get(decodeURIComponent(m[1]));
    if (!tm) return err(res, 404, `no team named '${decodeURIComponent(m[1])}'`, 'not_found');
    const b = (await body(req)) ?? {};
    Object.assign(tm.limits, b.limits ?? {});
    if ('models' in b) tm.models = b.models;
    return send(res, 200, tm);
  }
  if ((m = /^\/admin\/v1\/teams\/([^/]+)$/.exec(p)) && method === 'DELETE') { teams.delete(decodeURIComponent(m[1])); return send(res, 200, { name: m[1], deleted: true }); }
  if (p === '/admin/v1/keys' && method === 'GET') return list([...keys.values()].map(({ secret, ...k }) => k));
  if (p === '/admin/v1/keys' && method === 'POST') {
    const b = (await body(req)) ?? {};
    if (!b.name) return err(res, 400, '`name` is required');
    const secret = `hk-${crypto.randomBytes(20).toString('hex')}`;
    const k = { id: id('key'), name: b.name, prefix: secret.slice(0, 10), user: b.user ?? null, team: b.team ?? users.get(b.user)?.team ?? null, role: b.role ?? 'user', models: b.models ?? null, limits: { rpm: b.rpm ?? null, tpm: b.tpm ?? null, max_concurrent: b.max_concurrent ?? null, monthly_tokens: b.monthly_tokens ?? null }, expires: b.expires ?? null, revoked: null, created: now(), secret };
    keys.set(k.id, k);
    const { secret: _s, ...out } = k;
    return send(res, 201, { ...out, key: secret });
  }
  if ((m = /^\/admin\/v1\/keys\/([^/]+)$/.exec(p)) && method === 'DELETE') {
    const k = keys.get(m[1]);
    if (!k) return err(res, 404, 'no such key');
    k.revoked = now();
    return send(res, 200, { id: k.id, revoked: true });
  }
  if (p === '/admin/v1/usage') {
    const g = url.searchParams.get('group_by') ?? 'key';
    const t = new Map();
    for (const u of usage) {
      const k = u[g] ?? '';
      const x = t.get(k) ?? { group: k, requests: 0, prompt_tokens: 0, completion_tokens: 0 };
      x.requests++; x.prompt_tokens += u.prompt; x.completion_tokens += u.completion;
      t.set(k, x);
    }
    return list([...t.values()]);
  }
  if (p === '/admin/v1/audit/verify') return send(res, 200, { ok: true, records: audit.length });
  if (p === '/admin/v1/audit') {
    const after = Number(url.searchParams.get('after') ?? 0);
    const limit = Math.min(1000, Number(url.searchParams.get('limit') ?? 100));
    const f = (k) => url.searchParams.get(k);
    const page = audit.filter((r) => r.seq > after && (!f('user') || r.user === f('user')) && (!f('model') || r.model === f('model')) && (!f('status') || r.status === Number(f('status')))).slice(0, limit);
    return send(res, 200, { object: 'list', data: page, next_after: page.length ? page[page.length - 1].seq : null });
  }
  return err(res, 404, `No route ${method} ${p}`, 'not_found');
});

server.listen(port, '127.0.0.1', () => console.log(`mock hearth (${MODE}) on http://127.0.0.1:${port}`));
