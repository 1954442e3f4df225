//! An in-memory [`GatewayStore`]: keys and an audit log in memory, for gateway tests over
//! HTTP (the SQL store has its own tests in hearth-gateway).

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use hearth_gateway::limits::{Limits, MonthIndex, Scope};
use hearth_server::gateway::{AuditEntry, GatewayStore, Principal, Role};

#[derive(Default)]
pub struct MemStore {
    pub keys: Mutex<HashMap<String, Principal>>,
    pub audit: Mutex<Vec<AuditEntry>>,
    pub month_used: u64,
}

impl GatewayStore for MemStore {
    fn authenticate<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, String>> {
        Box::pin(async move { Ok(self.keys.lock().unwrap().get(key).cloned()) })
    }
    fn monthly_tokens_used<'a>(
        &'a self,
        _scope: &'a Scope,
        _month: MonthIndex,
    ) -> BoxFuture<'a, Result<u64, String>> {
        Box::pin(async move { Ok(self.month_used) })
    }
    fn audit(&self, entry: AuditEntry) {
        self.audit.lock().unwrap().push(entry);
    }
}

pub fn principal(id: &str, role: Role) -> Principal {
    Principal {
        key_id: id.into(),
        key_name: id.into(),
        user: Some(format!("{id}-user")),
        team: None,
        role,
        models: None,
        key_limits: Limits::default(),
        team_limits: Limits::default(),
    }
}
