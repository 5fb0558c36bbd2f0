//! The live configuration key-value bucket (`vigil_config`): thresholds, routing rules and
//! switches every service watches.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::topology::Topology;

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigOperation {
    /// A value was written.
    Put,
    /// The key was deleted (history kept).
    Delete,
    /// The key and its history were removed.
    Purge,
}

impl From<kv::Operation> for ConfigOperation {
    fn from(op: kv::Operation) -> Self {
        match op {
            kv::Operation::Put => ConfigOperation::Put,
            kv::Operation::Delete => ConfigOperation::Delete,
            kv::Operation::Purge => ConfigOperation::Purge,
        }
    }
}

/// One revision of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The key, e.g. `thresholds.critical`.
    pub key: String,
    /// The value (empty for deletes and purges).
    pub value: Bytes,
    /// The bucket-wide revision of this change.
    pub revision: u64,
    /// What the change was.
    pub operation: ConfigOperation,
}

impl From<kv::Entry> for ConfigEntry {
    fn from(entry: kv::Entry) -> Self {
        Self {
            key: entry.key,
            value: entry.value,
            revision: entry.revision,
            operation: entry.operation.into(),
        }
    }
}

/// The live configuration bucket.
#[derive(Clone)]
pub struct ConfigBucket {
    store: kv::Store,
    name: String,
}

impl std::fmt::Debug for ConfigBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigBucket")
            .field("name", &self.name)
            .finish()
    }
}

impl ConfigBucket {
    /// Opens the bucket of `topology` (declared by [`Topology::declare`]).
    pub async fn open(js: &jetstream::Context, topology: &Topology) -> Result<Self> {
        let name = topology.config_bucket_name();
        let store = js
            .get_key_value(&name)
            .await
            .map_err(|err| Error::config_bucket(&name, "open", err))?;
        Ok(Self { store, name })
    }

    /// The bucket name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current entry of `key`; `None` when it was never set or is deleted.
    pub async fn get(&self, key: &str) -> Result<Option<ConfigEntry>> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|err| Error::config_bucket(&self.name, format!("get key {key}"), err))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(ConfigEntry::from))
    }

    /// Writes `value` under `key` and returns the new revision.
    pub async fn put(&self, key: &str, value: impl Into<Bytes>) -> Result<u64> {
        self.store
            .put(key, value.into())
            .await
            .map_err(|err| Error::config_bucket(&self.name, format!("put key {key}"), err))
    }

    /// Writes `value` under `key` only when the key is still at revision `expected` (`None`:
    /// when it has no value), and returns the new revision: two operators cannot overwrite each
    /// other unknowingly. A lost race is [`Error::ConfigConflict`].
    pub async fn put_if(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        expected: Option<u64>,
    ) -> Result<u64> {
        let value = value.into();
        let written = match expected {
            None => self
                .store
                .create(key, value)
                .await
                .map_err(|err| match err.kind() {
                    kv::CreateErrorKind::AlreadyExists => None,
                    _ => Some(Error::config_bucket(
                        &self.name,
                        format!("create key {key}"),
                        err,
                    )),
                }),
            Some(revision) => {
                self.store
                    .update(key, value, revision)
                    .await
                    .map_err(|err| match err.kind() {
                        kv::UpdateErrorKind::WrongLastRevision => None,
                        _ => Some(Error::config_bucket(
                            &self.name,
                            format!("update key {key}"),
                            err,
                        )),
                    })
            }
        };
        match written {
            Ok(revision) => Ok(revision),
            Err(Some(error)) => Err(error),
            Err(None) => {
                let current = self.get(key).await.ok().flatten().map(|e| e.revision);
                Err(Error::ConfigConflict {
                    key: key.to_owned(),
                    expected,
                    current,
                })
            }
        }
    }

    /// Deletes `key` (its history stays until it ages out).
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.store
            .delete(key)
            .await
            .map_err(|err| Error::config_bucket(&self.name, format!("delete key {key}"), err))
    }

    /// Every key that currently has a value.
    pub async fn keys(&self) -> Result<Vec<String>> {
        let keys = self
            .store
            .keys()
            .await
            .map_err(|err| Error::config_bucket(&self.name, "list keys", err))?;
        keys.try_collect()
            .await
            .map_err(|err| Error::config_bucket(&self.name, "list keys", err))
    }

    /// Changes to any key from now on.
    pub async fn watch(&self) -> Result<ConfigWatch> {
        let watch = self
            .store
            .watch_all()
            .await
            .map_err(|err| Error::config_bucket(&self.name, "watch", err))?;
        Ok(ConfigWatch::new(self.name.clone(), watch))
    }

    /// The latest entry of every key, then changes from now on: what a service needs at
    /// start-up.
    pub async fn watch_with_current(&self) -> Result<ConfigWatch> {
        let watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|err| Error::config_bucket(&self.name, "watch", err))?;
        Ok(ConfigWatch::new(self.name.clone(), watch))
    }
}

/// A stream of [`ConfigEntry`] changes; it ends only when the connection closes.
pub struct ConfigWatch {
    inner: BoxStream<'static, Result<ConfigEntry>>,
}

impl ConfigWatch {
    fn new(bucket: String, watch: kv::Watch) -> Self {
        let inner = watch
            .map(move |item| {
                item.map(ConfigEntry::from)
                    .map_err(|err| Error::config_bucket(&bucket, "watch", err))
            })
            .boxed();
        Self { inner }
    }
}

impl std::fmt::Debug for ConfigWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigWatch")
    }
}

impl Stream for ConfigWatch {
    type Item = Result<ConfigEntry>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}
