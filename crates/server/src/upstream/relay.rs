//! The streamed half of upstream routing: an upstream's SSE answer relayed to the client event
//! by event, through the output guardrails (with their hold-back), in the shape of the API it
//! came from (chat / completions chunks, or Responses events), and billed from the upstream's
//! usage when it ends.

use super::*;

/// The end of the first SSE event in `buf`: (where its text ends, where the next begins).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The `data:` of one SSE event (lines joined by `\n`, as the SSE spec says).
fn event_data(ev: &str) -> Option<String> {
    let lines: Vec<&str> = ev
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// What the relay of one streamed answer does with each upstream event, by API shape.
pub(super) trait Relay: Send {
    /// The SSE events to send for one upstream event's `data`, pushed onto `out`; true when
    /// the answer ends there (an output rule blocked it: the rest is not read).
    fn event(&mut self, data: &str, out: &mut Vec<String>) -> bool;
    /// The upstream's (prompt, completion) counts, once it sent them.
    fn usage(&self) -> (Option<u64>, Option<u64>);
    /// Text pieces relayed: the completion's size when no usage came.
    fn deltas(&self) -> u64;
    /// An error event in this stream's shape.
    fn error(&mut self, e: &ApiError) -> String;
}

/// Relays a streamed answer event by event through `relay` (which sets `model` to the route
/// id and runs the output guardrails, with their hold-back), and bills the meter the
/// upstream's usage when the stream ends. A client that leaves drops the upstream
/// connection (which cancels the upstream's generation).
pub(super) fn stream_response(
    id: &str,
    r: reqwest::Response,
    meter: Option<Arc<crate::gateway::Meter>>,
    mut relay: Box<dyn Relay>,
    estimate: u64,
    timeout: Duration,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let id = id.to_string();
    let task = async move {
        let mut upstream = r.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut out: Vec<String> = Vec::new();
        'read: loop {
            let chunk = match tokio::time::timeout(timeout, upstream.next()).await {
                Ok(Some(Ok(c))) => c,
                Ok(None) => break,
                Ok(Some(Err(_))) | Err(_) => {
                    let e = upstream_error(
                        StatusCode::BAD_GATEWAY,
                        format!("The upstream of model '{id}' stopped sending."),
                    );
                    let _ = tx.send(Ok(Bytes::from(relay.error(&e)))).await;
                    break;
                }
            };
            buf.extend_from_slice(&chunk);
            while let Some((end, next)) = event_end(&buf) {
                let ev = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..next);
                let Some(data) = event_data(&ev) else {
                    continue;
                };
                let stop = relay.event(&data, &mut out);
                for s in out.drain(..) {
                    if tx.send(Ok(Bytes::from(s))).await.is_err() {
                        break 'read;
                    }
                }
                if stop {
                    break 'read;
                }
            }
        }
        if let Some(m) = &meter {
            let (prompt, completion) = relay.usage();
            m.set_prompt_tokens(prompt.unwrap_or(estimate));
            // Without usage (the client left, a rule ended the answer, or the upstream sends
            // none), each streamed text piece counts as one token.
            m.add_completion(completion.unwrap_or(relay.deltas()));
        }
    };
    tokio::spawn(crate::gateway::carry(task));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// What the chat / completions relay keeps per choice.
struct ChoiceFilter {
    filter: OutputFilter,
    done: bool,
}

/// Chat and completions chunks: each choice's text through its own filter, the usage chunk
/// kept for billing and passed on only when the client asked for it.
pub(super) struct ChatRelay {
    state: SharedState,
    endpoint: Endpoint,
    id: String,
    client_usage: bool,
    n: u64,
    enforcing: bool,
    choices: HashMap<u64, ChoiceFilter>,
    usage: (Option<u64>, Option<u64>),
    deltas: u64,
    blocked_any: bool,
}

impl ChatRelay {
    pub(super) fn new(
        state: &SharedState,
        endpoint: Endpoint,
        id: &str,
        client_usage: bool,
        n: u64,
    ) -> Self {
        ChatRelay {
            state: state.clone(),
            endpoint,
            id: id.to_string(),
            client_usage,
            n,
            enforcing: crate::guard::output_filter(state).1,
            choices: HashMap::new(),
            usage: (None, None),
            deltas: 0,
            blocked_any: false,
        }
    }

    /// One choice of a chunk through its filter; false drops it (its answer ended already).
    fn choice(&mut self, c: &mut Value) -> bool {
        let ptr = text_pointer(self.endpoint, true);
        let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0);
        let state = &self.state;
        let cf = self.choices.entry(idx).or_insert_with(|| ChoiceFilter {
            filter: crate::guard::output_filter(state).0,
            done: false,
        });
        if cf.done {
            return false;
        }
        let text = c
            .pointer(ptr)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !text.is_empty() {
            self.deltas += 1;
        }
        let mut e = cf.filter.push(&text);
        let ending = c.get("finish_reason").is_some_and(|f| !f.is_null());
        if ending && e.blocked.is_none() {
            let rest = cf.filter.finish();
            e.text_to_send.push_str(&rest.text_to_send);
            e.fired.extend(rest.fired);
            e.blocked = rest.blocked;
        }
        crate::guard::record(state, "output", &e.fired);
        if !self.enforcing {
            cf.done = ending;
            return true;
        }
        if let Some(hit) = e.blocked {
            crate::guard::record(state, "output", std::slice::from_ref(&hit));
            c["finish_reason"] = Value::from("content_filter");
            cf.done = true;
            self.blocked_any = true;
        } else {
            cf.done = ending;
        }
        if let Some(slot) = c.pointer_mut(ptr) {
            *slot = Value::String(e.text_to_send);
        } else if cf.done && self.endpoint == Endpoint::Chat && !e.text_to_send.is_empty() {
            c["delta"]["content"] = Value::String(e.text_to_send);
        }
        true
    }
}

impl Relay for ChatRelay {
    fn event(&mut self, data: &str, out: &mut Vec<String>) -> bool {
        if data.trim() == "[DONE]" {
            out.push("data: [DONE]\n\n".into());
            return false;
        }
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            out.push(format!("data: {data}\n\n"));
            return false;
        };
        let (p, c) = usage_of(self.endpoint, &v);
        self.usage = (p.or(self.usage.0), c.or(self.usage.1));
        if v.get("model").is_some() {
            v["model"] = Value::String(self.id.clone());
        }
        let had_choices = v
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        if let Some(list) = v.get_mut("choices").and_then(Value::as_array_mut) {
            list.retain_mut(|c| self.choice(c));
        }
        let empty = v
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if !self.client_usage {
            if let Some(o) = v.as_object_mut() {
                o.remove("usage");
            }
            if empty && !had_choices {
                // The usage chunk the client did not ask for.
                return false;
            }
        }
        if empty && had_choices {
            return false;
        }
        out.push(format!("data: {v}\n\n"));
        let finished = self.choices.values().filter(|c| c.done).count() as u64;
        if self.blocked_any && finished >= self.n {
            // An output rule ended the answer early: the upstream's remaining chunks are not
            // read (dropping the connection cancels its generation).
            out.push("data: [DONE]\n\n".into());
            return true;
        }
        false
    }

    fn usage(&self) -> (Option<u64>, Option<u64>) {
        self.usage
    }

    fn deltas(&self) -> u64 {
        self.deltas
    }

    fn error(&mut self, e: &ApiError) -> String {
        format!("data: {}\n\n", e.body())
    }
}

/// What the Responses relay keeps per output text part (`output_index`, `content_index`).
struct PartFilter {
    filter: OutputFilter,
    item_id: Value,
    /// The text sent so far: what the closing events carry instead of the upstream's text.
    sent: String,
    done: bool,
}

/// Responses events (`response.output_text.delta`, ..., `response.completed`): the deltas
/// through a filter per text part, the closing events' whole texts replaced by what was sent,
/// `response.model` set to the route id, events renumbered (the relay may add some), the
/// usage taken from the final `response`. A blocked answer ends with `response.incomplete`
/// (`incomplete_details.reason: "content_filter"`).
pub(super) struct ResponsesRelay {
    state: SharedState,
    id: String,
    enforcing: bool,
    parts: std::collections::BTreeMap<(u64, u64), PartFilter>,
    /// Output items done so far, by output index (with their texts as sent).
    items: std::collections::BTreeMap<u64, Value>,
    /// The latest `response` object (the base of the end this relay writes when blocked).
    response: Value,
    seq: u64,
    usage: (Option<u64>, Option<u64>),
    deltas: u64,
}

impl ResponsesRelay {
    pub(super) fn new(state: &SharedState, id: &str) -> Self {
        ResponsesRelay {
            state: state.clone(),
            id: id.to_string(),
            enforcing: crate::guard::output_filter(state).1,
            parts: Default::default(),
            items: Default::default(),
            response: serde_json::json!({"object": "response"}),
            seq: 0,
            usage: (None, None),
            deltas: 0,
        }
    }

    fn push(&mut self, out: &mut Vec<String>, mut v: Value) {
        v["sequence_number"] = Value::from(self.seq);
        self.seq += 1;
        match v.get("type").and_then(Value::as_str) {
            Some(kind) => out.push(format!("event: {kind}\ndata: {v}\n\n")),
            None => out.push(format!("data: {v}\n\n")),
        }
    }

    fn key(v: &Value) -> (u64, u64) {
        let at = |k| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        (at("output_index"), at("content_index"))
    }

    /// Text of one part through its filter (`None`: the part's end): what to send, and
    /// whether a rule blocked it.
    fn filter(&mut self, key: (u64, u64), item_id: &Value, text: Option<&str>) -> (String, bool) {
        let state = &self.state;
        let pf = self.parts.entry(key).or_insert_with(|| PartFilter {
            filter: crate::guard::output_filter(state).0,
            item_id: item_id.clone(),
            sent: String::new(),
            done: false,
        });
        if pf.done {
            return (String::new(), false);
        }
        let e = match text {
            Some(t) => pf.filter.push(t),
            None => pf.filter.finish(),
        };
        crate::guard::record(state, "output", &e.fired);
        let blocked = e.blocked.is_some();
        if let Some(hit) = &e.blocked {
            if self.enforcing {
                crate::guard::record(state, "output", std::slice::from_ref(hit));
            }
        }
        pf.sent.push_str(&e.text_to_send);
        pf.done = text.is_none() || blocked;
        (e.text_to_send, blocked && self.enforcing)
    }

    /// A part's held-back text, as one more delta event (before the part's closing events).
    fn flush(&mut self, out: &mut Vec<String>, key: (u64, u64), item_id: &Value) -> bool {
        let (rest, blocked) = self.filter(key, item_id, None);
        if self.enforcing && !rest.is_empty() {
            let item_id = self.parts[&key].item_id.clone();
            let ev = serde_json::json!({"type": "response.output_text.delta", "item_id": item_id,
                "output_index": key.0, "content_index": key.1, "delta": rest, "logprobs": []});
            self.push(out, ev);
        }
        blocked
    }

    /// An output item's texts as they were sent.
    fn patch_item(&self, index: u64, item: &mut Value) {
        for (j, part) in output_texts(item) {
            if let Some(p) = self.parts.get(&(index, j as u64)) {
                part["text"] = Value::String(p.sent.clone());
            }
        }
    }

    /// After a blocked delta: the answer ends as `response.incomplete`, its output the items
    /// done so far and the open parts' text as sent.
    fn end_blocked(&mut self, out: &mut Vec<String>) {
        let mut items = self.items.clone();
        for (&(i, _), p) in &self.parts {
            if items.contains_key(&i) {
                continue;
            }
            let content: Vec<Value> = self
                .parts
                .range((i, 0)..=(i, u64::MAX))
                .map(|(_, p)| serde_json::json!({"type": "output_text", "text": p.sent, "annotations": []}))
                .collect();
            items.insert(
                i,
                serde_json::json!({"id": p.item_id, "type": "message", "role": "assistant",
                    "status": "incomplete", "content": content}),
            );
        }
        let mut r = self.response.clone();
        r["model"] = Value::String(self.id.clone());
        r["status"] = Value::from("incomplete");
        r["incomplete_details"] = serde_json::json!({"reason": "content_filter"});
        r["output"] = Value::Array(items.into_values().collect());
        self.push(
            out,
            serde_json::json!({"type": "response.incomplete", "response": r}),
        );
    }
}

impl Relay for ResponsesRelay {
    fn event(&mut self, data: &str, out: &mut Vec<String>) -> bool {
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            out.push(format!("data: {data}\n\n"));
            return false;
        };
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let key = Self::key(&v);
        let item_id = v.get("item_id").cloned().unwrap_or(Value::Null);
        match kind.as_str() {
            "response.output_text.delta" => {
                let text = v["delta"].as_str().unwrap_or("").to_string();
                if !text.is_empty() {
                    self.deltas += 1;
                }
                let (send, blocked) = self.filter(key, &item_id, Some(&text));
                if self.enforcing {
                    if send.is_empty() && !text.is_empty() {
                        // Held back (or blocked) for now.
                        if blocked {
                            self.end_blocked(out);
                        }
                        return blocked;
                    }
                    v["delta"] = Value::String(send);
                }
                self.push(out, v);
                if blocked {
                    self.end_blocked(out);
                }
                return blocked;
            }
            "response.output_text.done" => {
                if self.flush(out, key, &item_id) {
                    self.end_blocked(out);
                    return true;
                }
                if self.enforcing {
                    v["text"] = Value::String(self.parts[&key].sent.clone());
                }
            }
            "response.content_part.done" if self.enforcing => {
                if let Some(p) = self.parts.get(&key) {
                    if v.pointer("/part/type").and_then(Value::as_str) == Some("output_text") {
                        v["part"]["text"] = Value::String(p.sent.clone());
                    }
                }
            }
            "response.output_item.done" => {
                if let Some(item) = v.get_mut("item") {
                    if self.enforcing {
                        self.patch_item(key.0, item);
                    }
                    self.items.insert(key.0, item.clone());
                }
            }
            _ => {}
        }
        if let Some(r) = v.get_mut("response").filter(|r| r.is_object()) {
            if r.get("model").is_some() {
                r["model"] = Value::String(self.id.clone());
            }
            let (p, c) = usage_of(Endpoint::Responses, r);
            self.usage = (p.or(self.usage.0), c.or(self.usage.1));
            if self.enforcing {
                for (i, item) in r
                    .get_mut("output")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    self.patch_item(i as u64, item);
                }
            }
            self.response = r.clone();
        }
        self.push(out, v);
        false
    }

    fn usage(&self) -> (Option<u64>, Option<u64>) {
        self.usage
    }

    fn deltas(&self) -> u64 {
        self.deltas
    }

    fn error(&mut self, e: &ApiError) -> String {
        let b = e.body();
        let mut out = Vec::new();
        self.push(
            &mut out,
            serde_json::json!({"type": "error", "code": b["error"]["code"],
                "message": b["error"]["message"], "param": b["error"]["param"]}),
        );
        out.concat()
    }
}
