//! The backend contract check, run on the fake (which must pass) and on a
//! deliberately broken backend (which must be caught).

use std::sync::Arc;
use std::time::Duration;

use hearth_server::backend::*;
use hearth_server::conformance;
use hearth_server::fake::{FakeBackend, FakeConfig};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_backend_passes() {
    let fake = FakeBackend::new(FakeConfig {
        token_delay: Duration::from_millis(1),
        capacity: 8,
        ..FakeConfig::default()
    });
    let report = conformance::check(Arc::new(fake), "fake-model").await;
    assert!(report.is_ok(), "{report:#?}");
    assert!(report.notes.is_empty(), "{report:#?}");
}

/// Forwards the fake's events but swallows `Done`.
struct NoDone(FakeBackend);

impl Backend for NoDone {
    fn models(&self) -> Vec<ModelCard> {
        self.0.models()
    }
    fn tokenize(&self, m: &str, t: &str, s: bool) -> Result<Vec<u32>, BackendError> {
        self.0.tokenize(m, t, s)
    }
    fn detokenize(&self, m: &str, ids: &[u32]) -> Result<String, BackendError> {
        self.0.detokenize(m, ids)
    }
    fn apply_chat_template(
        &self,
        m: &str,
        msgs: &[serde_json::Value],
        tools: Option<&serde_json::Value>,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, BackendError> {
        self.0.apply_chat_template(m, msgs, tools, extra)
    }
    fn generate(
        &self,
        req: GenerateRequest,
    ) -> Result<mpsc::UnboundedReceiver<GenerateEvent>, BackendError> {
        let mut inner = self.0.generate(req)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(ev) = inner.recv().await {
                if !matches!(ev, GenerateEvent::Done { .. }) {
                    let _ = tx.send(ev);
                }
            }
        });
        Ok(rx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_sends_done_is_caught() {
    let report = conformance::check(
        Arc::new(NoDone(FakeBackend::new(FakeConfig::default()))),
        "fake-model",
    )
    .await;
    assert!(!report.is_ok());
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.contains("closed without a Done")),
        "{report:#?}"
    );
}
