//! The live configuration of one process: the start-up [`Config`] with the `vigil_config`
//! bucket's entries layered over it, swapped atomically when an entry changes.
//!
//! One task per process watches the bucket ([`LiveConfig::watch`]); components read
//! [`LiveConfig::get`] each time they use a live value (it costs an atomic load), or wait on
//! [`LiveConfig::changed`] when a change must wake them (the trainer's schedule).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use tokio::sync::{OnceCell, watch};
use tokio_util::sync::CancellationToken;
use vigil_bus::{Bus, ConfigBucket, ConfigOperation, ConfigWatch};
use vigil_config::Config;

/// The effective configuration of a running process, kept current from the bucket.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// What the process started with (defaults, file, environment, flags).
    base: Arc<Config>,
    current: ArcSwap<Config>,
    /// The bucket revision last applied (0: none yet).
    revision: watch::Sender<u64>,
    /// Set once this process's watch task runs.
    watching: OnceCell<()>,
}

impl LiveConfig {
    /// The start-up configuration, with no bucket entries applied yet.
    pub fn new(base: Arc<Config>) -> Self {
        let (revision, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                current: ArcSwap::new(base.clone()),
                base,
                revision,
                watching: OnceCell::new(),
            }),
        }
    }

    /// The configuration in force now.
    pub fn get(&self) -> Arc<Config> {
        self.inner.current.load_full()
    }

    /// The bucket revision in force (0 before the first entry is applied).
    pub fn revision(&self) -> u64 {
        *self.inner.revision.borrow()
    }

    /// A receiver that wakes on every applied change; its value is the bucket revision.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }

    /// Recomputes the configuration from the start-up one and the bucket's current `entries`
    /// (key -> TOML value), validated together. When they do not validate together (an entry
    /// written past `vigil config set`, or checked against another start-up configuration),
    /// they are applied one by one and each that does not validate is skipped with a warning.
    pub fn apply(&self, entries: &BTreeMap<String, String>, revision: u64) {
        let all: Vec<(&String, &String)> = entries.iter().collect();
        let config = self.inner.base.with_live(&all).unwrap_or_else(|error| {
            tracing::warn!(%error, "the live configuration entries do not validate together");
            let mut config = (*self.inner.base).clone();
            for (key, value) in entries {
                match config.with_live(&[(key, value)]) {
                    Ok(next) => config = next,
                    Err(error) => {
                        tracing::warn!(%key, %value, %error, "ignoring an invalid live configuration entry");
                    }
                }
            }
            config
        });
        self.inner.current.store(Arc::new(config));
        self.inner.revision.send_replace(revision);
    }

    /// Starts the one task of this process that follows the bucket, unless one runs already;
    /// returns once the bucket's current entries are applied (callers that come while the
    /// first is still reading them wait for it). The task ends with `token`.
    pub async fn watch(&self, bus: &Bus, token: &CancellationToken) -> vigil_bus::Result<()> {
        self.inner
            .watching
            .get_or_try_init(|| async {
                let bucket = bus.config_bucket().await?;
                let (watch, entries) = self.snapshot(&bucket).await?;
                let live = self.clone();
                let token = token.clone();
                tokio::spawn(async move { live.follow(bucket, watch, entries, token).await });
                Ok::<(), vigil_bus::Error>(())
            })
            .await
            .map(|_| ())
    }

    /// Opens a watch of changes from now, then reads and applies every current entry (a
    /// change made between the two arrives on the watch, and is applied again if newer).
    async fn snapshot(
        &self,
        bucket: &ConfigBucket,
    ) -> vigil_bus::Result<(ConfigWatch, BTreeMap<String, (u64, String)>)> {
        let watch = bucket.watch().await?;
        let mut entries = BTreeMap::new();
        for key in bucket.keys().await? {
            if let Some(entry) = bucket.get(&key).await? {
                let value = String::from_utf8_lossy(&entry.value).into_owned();
                entries.insert(key, (entry.revision, value));
            }
        }
        let revision = entries.values().map(|(r, _)| *r).max().unwrap_or(0);
        self.apply_entries(&entries, revision);
        if !entries.is_empty() {
            tracing::info!(keys = entries.len(), revision, "live configuration applied");
        }
        Ok((watch, entries))
    }

    fn apply_entries(&self, entries: &BTreeMap<String, (u64, String)>, revision: u64) {
        let values = entries
            .iter()
            .map(|(key, (_, value))| (key.clone(), value.clone()))
            .collect();
        self.apply(&values, revision);
    }

    /// Applies every change; after the watch ends (a reconnect), reads the bucket afresh.
    async fn follow(
        &self,
        bucket: ConfigBucket,
        mut watch: ConfigWatch,
        mut entries: BTreeMap<String, (u64, String)>,
        token: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            loop {
                let change = tokio::select! {
                    () = token.cancelled() => return,
                    change = watch.next() => change,
                };
                let entry = match change {
                    Some(Ok(entry)) => entry,
                    Some(Err(error)) => {
                        tracing::warn!(%error, "live configuration watch failed");
                        break;
                    }
                    None => break,
                };
                if entries
                    .get(&entry.key)
                    .is_some_and(|(known, _)| *known >= entry.revision)
                {
                    continue;
                }
                match entry.operation {
                    ConfigOperation::Put => {
                        let value = String::from_utf8_lossy(&entry.value).into_owned();
                        tracing::info!(key = %entry.key, %value, revision = entry.revision,
                                       "live configuration changed");
                        entries.insert(entry.key, (entry.revision, value));
                    }
                    ConfigOperation::Delete | ConfigOperation::Purge => {
                        tracing::info!(key = %entry.key, revision = entry.revision,
                                       "live configuration key reset to its start-up value");
                        entries.remove(&entry.key);
                    }
                }
                self.apply_entries(&entries, entry.revision);
            }
            // The watch ended (a reconnect, a server restart): read everything again.
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                match self.snapshot(&bucket).await {
                    Ok((next, current)) => {
                        (watch, entries) = (next, current);
                        backoff = Duration::from_millis(100);
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the live configuration; retrying");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }
}
