//! [`EffectReceiver`]: an HTTP endpoint on loopback standing in for an API that does something
//! (a firewall that blocks, a pager that pages), which counts effects where they land.
//!
//! Like a real idempotent API, it applies each idempotency key once: a call repeating a key is
//! counted as a repeat, not as a second effect. A second effect for one event and target
//! under a *different* key is what no receiver can deduplicate, and what
//! [`duplicates`](EffectReceiver::duplicates) counts. Calls can be held (never answered), as
//! when a process is killed while it waits for the answer: the effect either happened or did
//! not, and the caller cannot tell.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

/// One call an [`EffectReceiver`] got.
#[derive(Debug, Clone)]
pub struct EffectCall {
    pub path: String,
    /// The value of the receiver's key header (empty when the call had none).
    pub key: String,
    pub body: serde_json::Value,
    /// Whether the receiver applied it (a call held before applying was not).
    pub applied: bool,
}

/// What the next calls meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Applied, then never answered: the effect happened but its answer is lost.
    AfterApplying,
    /// Never answered and not applied: the effect did not happen.
    BeforeApplying,
}

#[derive(Debug, Default)]
struct Inner {
    calls: Vec<EffectCall>,
    /// Calls still to be held, and how.
    hold: Vec<Hold>,
    /// Hold every call (after those in `hold`) until [`EffectReceiver::stop_holding`].
    hold_all: Option<Hold>,
    /// Calls held so far.
    held: usize,
    /// Answer to the calls not held (202 unless set).
    answer: Option<StatusCode>,
}

/// A loopback endpoint (any path) counting effects by the idempotency key in `key_header`.
#[derive(Debug, Clone)]
pub struct EffectReceiver {
    base: String,
    key_header: &'static str,
    inner: Arc<Mutex<Inner>>,
}

impl EffectReceiver {
    /// Binds `127.0.0.1:0`; `key_header` names the header holding each call's idempotency key
    /// (`Idempotency-Key` for remediation webhooks, `X-Vigil-Alert-Id` for alert webhooks).
    pub async fn start(key_header: &'static str) -> Self {
        let receiver = Self {
            base: String::new(),
            key_header,
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let app = Router::new().fallback(call).with_state(receiver.clone());
        Self {
            base: crate::receiver::serve(app, "effect receiver").await,
            ..receiver
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The URL of `path` (which starts with `/`) on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Holds the next calls, one per entry, in order.
    pub fn hold_next(&self, holds: &[Hold]) {
        self.lock().hold.extend_from_slice(holds);
    }

    /// Holds every call from now on, until [`stop_holding`](Self::stop_holding).
    pub fn hold_all(&self, hold: Hold) {
        self.lock().hold_all = Some(hold);
    }

    /// Holds no more calls (those held stay unanswered).
    pub fn stop_holding(&self) {
        let mut inner = self.lock();
        inner.hold.clear();
        inner.hold_all = None;
    }

    /// Answers the calls that are not held with `status` from now on.
    pub fn answer(&self, status: StatusCode) {
        self.lock().answer = Some(status);
    }

    /// How many calls have been held so far.
    pub fn held(&self) -> usize {
        self.lock().held
    }

    /// Waits until at least `n` calls have been held; panics after `within`.
    pub async fn wait_held(&self, n: usize, within: std::time::Duration) {
        crate::eventually(
            within,
            &format!("{n} calls held at {}", self.base),
            || async {
                let held = self.held();
                if held >= n { Ok(()) } else { Err(held) }
            },
        )
        .await;
    }

    /// A remediation API (a firewall, an EDR): effects keyed by `Idempotency-Key`.
    pub async fn remediation_api() -> Self {
        Self::start("idempotency-key").await
    }

    /// An alert webhook (a pager): effects keyed by `X-Vigil-Alert-Id`.
    pub async fn alert_webhook() -> Self {
        Self::start("x-vigil-alert-id").await
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<EffectCall> {
        self.lock().calls.clone()
    }

    /// The keys applied at least once: the effects that happened.
    pub fn applied_keys(&self) -> BTreeSet<String> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.applied)
            .map(|c| c.key.clone())
            .collect()
    }

    /// Applied calls that repeated a key already applied (absorbed by the key).
    pub fn repeats(&self) -> usize {
        let inner = self.lock();
        let applied: Vec<&String> = inner
            .calls
            .iter()
            .filter(|c| c.applied)
            .map(|c| &c.key)
            .collect();
        applied.len() - applied.iter().collect::<BTreeSet<_>>().len()
    }

    /// Effects applied more than once for one thing under different keys: for each value of
    /// `identity(call)` (event and target, say), the distinct applied keys beyond the first.
    pub fn duplicates(&self, identity: impl Fn(&EffectCall) -> String) -> usize {
        let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for call in self.lock().calls.iter().filter(|c| c.applied) {
            keys.entry(identity(call))
                .or_default()
                .insert(call.key.clone());
        }
        keys.values().map(|k| k.len().saturating_sub(1)).sum()
    }
}

async fn call(
    State(receiver): State<EffectReceiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let key = headers
        .get(receiver.key_header)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
    let (hold, answer) = {
        let mut inner = receiver.lock();
        let hold = if inner.hold.is_empty() {
            inner.hold_all
        } else {
            Some(inner.hold.remove(0))
        };
        if hold.is_some() {
            inner.held += 1;
        }
        inner.calls.push(EffectCall {
            path: uri.path().to_owned(),
            key,
            body,
            applied: hold != Some(Hold::BeforeApplying),
        });
        (hold, inner.answer.unwrap_or(StatusCode::ACCEPTED))
    };
    if hold.is_some() {
        // Never answered: the caller gives up, times out or dies waiting.
        std::future::pending::<()>().await;
    }
    answer
}
