//! The web UI's tables (migration 2): login sessions, passwords, conversations with their
//! message trees, and comparison runs. Every conversation and run belongs to one user name;
//! the methods that read or change one take that name and match on it, so a caller can never
//! reach another user's rows by guessing an id.

use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{found, limits_of, models_of, now, q, KeyOwner, Limits, Result, Role, Store, User};

/// A login session of the web UI (the cookie's token is only stored as its SHA-256).
#[derive(Clone, PartialEq, Eq)]
pub struct UiSession {
    pub token_hash: String,
    pub user: String,
    /// Set when the session was opened with an API key: requests run as that key (checked on
    /// every request, so revoking the key ends the session).
    pub key_id: Option<String>,
    /// The role at login (the role in force is read again on every request).
    pub role: Role,
    pub csrf_token: String,
    pub created: i64,
    pub expires: i64,
}

impl std::fmt::Debug for UiSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the CSRF token or the hash.
        f.debug_struct("UiSession")
            .field("user", &self.user)
            .field("key_id", &self.key_id)
            .field("role", &self.role)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// A conversation (without its messages).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conversation {
    pub id: String,
    pub user: String,
    pub title: String,
    pub model: Option<String>,
    /// The UI's settings object (system prompt, sampling), kept as given.
    pub settings: Value,
    pub created: i64,
    pub updated: i64,
}

/// What `PATCH /api/conversations/{id}` may change (`None`: keep).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConversationPatch {
    pub title: Option<String>,
    /// `Some(None)` clears the model.
    pub model: Option<Option<String>>,
    pub settings: Option<Value>,
}

/// One message of a conversation's tree.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub parent_id: Option<String>,
    pub role: String,
    pub content: String,
    pub reasoning: Option<String>,
    pub model: Option<String>,
    /// `complete`, `generating`, `stopped` or `error`.
    pub status: String,
    pub error: Option<String>,
    pub stats: Option<Value>,
    pub created: i64,
}

/// A comparison run: the UI's JSON document, stored whole.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompareRun {
    pub id: String,
    pub user: String,
    pub title: String,
    pub document: Value,
    pub created: i64,
    pub updated: i64,
}

/// Insertion order of messages (microseconds, strictly increasing in this process), so
/// messages created within one second keep their order.
fn next_seq() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now_us.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

fn json_of(s: Option<String>) -> Option<Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

fn conversation_of(r: &AnyRow) -> Result<Conversation> {
    Ok(Conversation {
        id: r.try_get("id").map_err(q("conversations.id"))?,
        user: r.try_get("user_name").unwrap_or_default(),
        title: r.try_get("title").unwrap_or_default(),
        model: r.try_get("model").ok().flatten(),
        settings: json_of(r.try_get("settings").ok()).unwrap_or(Value::Object(Default::default())),
        created: r.try_get("created").unwrap_or_default(),
        updated: r.try_get("updated").unwrap_or_default(),
    })
}

fn message_of(r: &AnyRow) -> Result<Message> {
    Ok(Message {
        id: r.try_get("id").map_err(q("messages.id"))?,
        conversation_id: r.try_get("conversation_id").unwrap_or_default(),
        parent_id: r.try_get("parent_id").ok().flatten(),
        role: r.try_get("role").unwrap_or_default(),
        content: r.try_get("content").unwrap_or_default(),
        reasoning: r.try_get("reasoning").ok().flatten(),
        model: r.try_get("model").ok().flatten(),
        status: r.try_get("status").unwrap_or_default(),
        error: r.try_get("error").ok().flatten(),
        stats: json_of(r.try_get("stats").ok().flatten()),
        created: r.try_get("created").unwrap_or_default(),
    })
}

fn run_of(r: &AnyRow) -> Result<CompareRun> {
    Ok(CompareRun {
        id: r.try_get("id").map_err(q("compare_runs.id"))?,
        user: r.try_get("user_name").unwrap_or_default(),
        title: r.try_get("title").unwrap_or_default(),
        document: json_of(r.try_get("document").ok()).unwrap_or(Value::Null),
        created: r.try_get("created").unwrap_or_default(),
        updated: r.try_get("updated").unwrap_or_default(),
    })
}

/// `%text%` for LIKE with `\` escaping the wildcards, lower-cased.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Store {
    // ---- passwords ----

    /// Store a user's password hash (an argon2id PHC string; see `crate::password`).
    pub async fn set_password_hash(&self, user: &str, hash: &str) -> Result<()> {
        let n = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(q("set password"))?
            .rows_affected();
        found(n, "user", user)
    }

    /// A user and their password hash (`None` when there is no such user).
    pub async fn user_password_hash(&self, name: &str) -> Result<Option<(User, Option<String>)>> {
        let r = sqlx::query(
            "SELECT name, role, team, created, password_hash FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("get password"))?;
        let Some(r) = r else { return Ok(None) };
        let user = User {
            name: r.try_get("name").map_err(q("users.name"))?,
            role: Role::parse(&r.try_get::<String, _>("role").map_err(q("users.role"))?)?,
            team: r.try_get("team").ok().flatten(),
            created: r.try_get("created").unwrap_or_default(),
        };
        Ok(Some((user, r.try_get("password_hash").ok().flatten())))
    }

    /// The principal of a user who logged in with a password: the user's role and team (with
    /// the team's limits), no key of its own (`key_id` is `user:NAME`).
    pub async fn user_principal(&self, name: &str) -> Result<Option<KeyOwner>> {
        let r = sqlx::query(
            "SELECT u.name, u.role, u.team, t.rpm, t.tpm, t.max_concurrent, t.monthly_tokens,
                    t.models
             FROM users u LEFT JOIN teams t ON t.name = u.team WHERE u.name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("user principal"))?;
        let Some(r) = r else { return Ok(None) };
        let name: String = r.try_get("name").map_err(q("users.name"))?;
        Ok(Some(KeyOwner {
            key_id: format!("user:{name}"),
            key_name: "web session".into(),
            user: Some(name),
            team: r.try_get("team").ok().flatten(),
            role: Role::parse(&r.try_get::<String, _>("role").unwrap_or_default())?,
            models: models_of(r.try_get("models").ok().flatten()),
            key_limits: Limits::default(),
            team_limits: limits_of(&r),
        }))
    }

    /// The principal of a key by its id (not its secret); `None` when unknown, expired or
    /// revoked. For sessions opened with a key.
    pub async fn key_principal(&self, key_id: &str) -> Result<Option<KeyOwner>> {
        let row = sqlx::query(
            "SELECT k.*, t.rpm AS t_rpm, t.tpm AS t_tpm, t.max_concurrent AS t_max_concurrent,
                    t.monthly_tokens AS t_monthly_tokens, t.models AS t_models
             FROM api_keys k LEFT JOIN teams t ON t.name = k.team WHERE k.id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("key principal"))?;
        match row {
            Some(r) => super::owner_of_key_row(&r),
            None => Ok(None),
        }
    }

    // ---- sessions ----

    pub async fn create_session(&self, s: &UiSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO ui_sessions (token_hash, user_name, key_id, role, csrf_token, created,
               expires) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.token_hash)
        .bind(&s.user)
        .bind(s.key_id.clone())
        .bind(s.role.as_str())
        .bind(&s.csrf_token)
        .bind(s.created)
        .bind(s.expires)
        .execute(&self.pool)
        .await
        .map_err(q("create session"))?;
        Ok(())
    }

    /// The session of a token hash, unless it has expired.
    pub async fn session(&self, token_hash: &str) -> Result<Option<UiSession>> {
        let r = sqlx::query("SELECT * FROM ui_sessions WHERE token_hash = $1 AND expires > $2")
            .bind(token_hash)
            .bind(now())
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get session"))?;
        let Some(r) = r else { return Ok(None) };
        let stored: String = r
            .try_get("token_hash")
            .map_err(q("ui_sessions.token_hash"))?;
        if !super::constant_time_eq(stored.as_bytes(), token_hash.as_bytes()) {
            return Ok(None);
        }
        Ok(Some(UiSession {
            token_hash: stored,
            user: r.try_get("user_name").unwrap_or_default(),
            key_id: r.try_get("key_id").ok().flatten(),
            role: Role::parse(&r.try_get::<String, _>("role").unwrap_or_default())?,
            csrf_token: r.try_get("csrf_token").unwrap_or_default(),
            created: r.try_get("created").unwrap_or_default(),
            expires: r.try_get("expires").unwrap_or_default(),
        }))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM ui_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(q("delete session"))?;
        Ok(())
    }

    /// Remove expired sessions; returns how many.
    pub async fn purge_sessions(&self) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM ui_sessions WHERE expires <= $1")
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(q("purge sessions"))?
            .rows_affected())
    }

    /// End every session of a user (after a password change).
    pub async fn delete_user_sessions(&self, user: &str) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM ui_sessions WHERE user_name = $1 AND key_id IS NULL")
                .bind(user)
                .execute(&self.pool)
                .await
                .map_err(q("delete sessions"))?
                .rows_affected(),
        )
    }

    // ---- conversations ----

    pub async fn create_conversation(&self, c: &Conversation) -> Result<()> {
        sqlx::query(
            "INSERT INTO conversations (id, user_name, title, model, settings, created, updated)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.id)
        .bind(&c.user)
        .bind(&c.title)
        .bind(c.model.clone())
        .bind(c.settings.to_string())
        .bind(c.created)
        .bind(c.updated)
        .execute(&self.pool)
        .await
        .map_err(q("create conversation"))?;
        Ok(())
    }

    /// One of `user`'s conversations.
    pub async fn conversation(&self, user: &str, id: &str) -> Result<Option<Conversation>> {
        let r = sqlx::query("SELECT * FROM conversations WHERE id = $1 AND user_name = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get conversation"))?;
        r.as_ref().map(conversation_of).transpose()
    }

    /// `user`'s conversations, newest `updated` first, with the total count; `search` matches
    /// titles and message text (case-insensitive substring).
    pub async fn list_conversations(
        &self,
        user: &str,
        search: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Conversation>, u64)> {
        let search = search.map(str::trim).filter(|s| !s.is_empty());
        let cond = "user_name = $1 AND (LOWER(title) LIKE $2 ESCAPE '\\' OR id IN
            (SELECT conversation_id FROM messages WHERE LOWER(content) LIKE $3 ESCAPE '\\'))";
        let pattern = like_pattern(search.unwrap_or(""));
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM conversations WHERE {cond}"
        )))
        .bind(user)
        .bind(&pattern)
        .bind(&pattern)
        .fetch_one(&self.pool)
        .await
        .map_err(q("count conversations"))?
        .try_get("n")
        .unwrap_or(0);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM conversations WHERE {cond} ORDER BY updated DESC, created DESC, id
             LIMIT $4 OFFSET $5"
        )))
        .bind(user)
        .bind(&pattern)
        .bind(&pattern)
        .bind(limit.max(0))
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list conversations"))?;
        let list = rows
            .iter()
            .map(conversation_of)
            .collect::<Result<Vec<_>>>()?;
        Ok((list, total.max(0) as u64))
    }

    /// Change a conversation's title, model or settings (and its `updated` time).
    pub async fn update_conversation(
        &self,
        user: &str,
        id: &str,
        patch: &ConversationPatch,
    ) -> Result<Option<Conversation>> {
        let Some(mut c) = self.conversation(user, id).await? else {
            return Ok(None);
        };
        if let Some(t) = &patch.title {
            c.title = t.clone();
        }
        if let Some(m) = &patch.model {
            c.model = m.clone();
        }
        if let Some(s) = &patch.settings {
            c.settings = s.clone();
        }
        c.updated = now();
        sqlx::query(
            "UPDATE conversations SET title = $1, model = $2, settings = $3, updated = $4
             WHERE id = $5 AND user_name = $6",
        )
        .bind(&c.title)
        .bind(c.model.clone())
        .bind(c.settings.to_string())
        .bind(c.updated)
        .bind(id)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(q("update conversation"))?;
        Ok(Some(c))
    }

    /// Delete a conversation and its messages; `false` when `user` has none with this id.
    pub async fn delete_conversation(&self, user: &str, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(q("begin delete"))?;
        let n = sqlx::query("DELETE FROM conversations WHERE id = $1 AND user_name = $2")
            .bind(id)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(q("delete conversation"))?
            .rows_affected();
        if n > 0 {
            sqlx::query("DELETE FROM messages WHERE conversation_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(q("delete messages"))?;
        }
        tx.commit().await.map_err(q("commit delete"))?;
        Ok(n > 0)
    }

    /// Add a message (after the conversation's others) and bump the conversation's `updated`.
    pub async fn insert_message(&self, m: &Message) -> Result<()> {
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, seq, parent_id, role, content, reasoning,
               model, status, error, stats, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&m.id)
        .bind(&m.conversation_id)
        .bind(next_seq())
        .bind(m.parent_id.clone())
        .bind(&m.role)
        .bind(&m.content)
        .bind(m.reasoning.clone())
        .bind(m.model.clone())
        .bind(&m.status)
        .bind(m.error.clone())
        .bind(m.stats.as_ref().map(Value::to_string))
        .bind(m.created)
        .execute(&self.pool)
        .await
        .map_err(q("insert message"))?;
        self.touch_conversation(&m.conversation_id).await
    }

    /// Save a message's content, reasoning, status, error and stats (a generation's end).
    pub async fn update_message(&self, m: &Message) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE messages SET content = $1, reasoning = $2, status = $3, error = $4,
               stats = $5 WHERE id = $6 AND conversation_id = $7",
        )
        .bind(&m.content)
        .bind(m.reasoning.clone())
        .bind(&m.status)
        .bind(m.error.clone())
        .bind(m.stats.as_ref().map(Value::to_string))
        .bind(&m.id)
        .bind(&m.conversation_id)
        .execute(&self.pool)
        .await
        .map_err(q("update message"))?
        .rows_affected();
        if n > 0 {
            self.touch_conversation(&m.conversation_id).await?;
        }
        Ok(n > 0)
    }

    async fn touch_conversation(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE conversations SET updated = $1 WHERE id = $2")
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("touch conversation"))?;
        Ok(())
    }

    /// A conversation's messages in the order they were added (all branches).
    pub async fn messages(&self, conversation_id: &str) -> Result<Vec<Message>> {
        let rows = sqlx::query("SELECT * FROM messages WHERE conversation_id = $1 ORDER BY seq")
            .bind(conversation_id)
            .fetch_all(&self.pool)
            .await
            .map_err(q("list messages"))?;
        rows.iter().map(message_of).collect()
    }

    /// Messages a server stopped writing (it exited mid-generation) become `stopped`.
    pub async fn mark_interrupted_messages(&self) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET status = 'stopped', error = 'the server stopped during the generation'
             WHERE status = 'generating'",
        )
        .execute(&self.pool)
        .await
        .map_err(q("mark interrupted"))?
        .rows_affected())
    }

    // ---- comparison runs ----

    pub async fn create_compare_run(&self, r: &CompareRun) -> Result<()> {
        sqlx::query(
            "INSERT INTO compare_runs (id, user_name, title, document, created, updated)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.id)
        .bind(&r.user)
        .bind(&r.title)
        .bind(r.document.to_string())
        .bind(r.created)
        .bind(r.updated)
        .execute(&self.pool)
        .await
        .map_err(q("create run"))?;
        Ok(())
    }

    pub async fn compare_run(&self, user: &str, id: &str) -> Result<Option<CompareRun>> {
        let r = sqlx::query("SELECT * FROM compare_runs WHERE id = $1 AND user_name = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get run"))?;
        r.as_ref().map(run_of).transpose()
    }

    /// `user`'s runs, newest `updated` first.
    pub async fn list_compare_runs(&self, user: &str) -> Result<Vec<CompareRun>> {
        let rows = sqlx::query(
            "SELECT * FROM compare_runs WHERE user_name = $1 ORDER BY updated DESC, created DESC, id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list runs"))?;
        rows.iter().map(run_of).collect()
    }

    /// Replace a run's title and document; `false` when `user` has no run with this id.
    pub async fn update_compare_run(&self, r: &CompareRun) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE compare_runs SET title = $1, document = $2, updated = $3
             WHERE id = $4 AND user_name = $5",
        )
        .bind(&r.title)
        .bind(r.document.to_string())
        .bind(r.updated)
        .bind(&r.id)
        .bind(&r.user)
        .execute(&self.pool)
        .await
        .map_err(q("update run"))?
        .rows_affected();
        Ok(n > 0)
    }

    pub async fn delete_compare_run(&self, user: &str, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM compare_runs WHERE id = $1 AND user_name = $2")
            .bind(id)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(q("delete run"))?
            .rows_affected();
        Ok(n > 0)
    }

    /// Every stored run's document, all users (the leaderboard counts every vote).
    pub async fn all_compare_documents(&self) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT document FROM compare_runs ORDER BY created, id")
            .fetch_all(&self.pool)
            .await
            .map_err(q("all runs"))?;
        Ok(rows
            .iter()
            .filter_map(|r| json_of(r.try_get("document").ok()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escapes_wildcards() {
        assert_eq!(like_pattern("A_b%"), "%a\\_b\\%%");
    }

    #[test]
    fn seq_increases() {
        let a = next_seq();
        let b = next_seq();
        assert!(b > a);
    }
}
