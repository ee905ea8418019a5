//! Revisioned key-value storage for Skiff, shaped like etcd and kine.
//!
//! Owns: the [`Store`] trait (get, list with a predicate and paging, create,
//! compare-and-swap update, delete with preconditions, watch from a revision,
//! compaction) and its backends: embedded SQLite by default ([`SqliteStore`]),
//! and etcd v3 ([`EtcdStore`]) for servers that share a datastore.
//! Every write gets the next global revision, which the API server exposes as
//! `resourceVersion`. Values are opaque bytes.
//!
//! Must not know: Kubernetes types (the etcd backend speaks JSON over HTTP
//! to etcd, about opaque keys and values). Selectors arrive as an opaque
//! [`Predicate`] over raw values.
//!
//! `testing` holds the backend conformance suite every backend must pass.

mod error;
mod etcd;
mod sqlite;
pub mod testing;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use error::{Result, StoreError};
pub use etcd::{EtcdStore, EtcdTls};
pub use sqlite::SqliteStore;

/// A global, monotonically increasing write counter. `0` means "no revision".
pub type Revision = u64;

/// One stored key with its value and revisions.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key (becomes `resourceVersion`).
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What a write did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Create,
    Update,
    Delete,
}

/// One change, as seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Delete`, the value the key had when it was deleted; `mod_revision`
    /// is the revision of the delete itself.
    pub kv: KeyValue,
    /// The value before this write (none for `Create`).
    pub prev_value: Option<Bytes>,
}

/// A filter applied to stored values before paging, so that `limit` counts
/// only matching items (the apiserver's selection predicate).
pub type Predicate = Arc<dyn Fn(&KeyValue) -> bool + Send + Sync>;

/// Options for [`Store::list`].
#[derive(Clone, Default)]
pub struct ListOptions {
    /// Return keys strictly greater than this one (the continue token's key).
    pub start_after: Option<String>,
    /// At most this many items; `None` or `0` means all.
    pub limit: Option<usize>,
    pub predicate: Option<Predicate>,
}

impl fmt::Debug for ListOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListOptions")
            .field("start_after", &self.start_after)
            .field("limit", &self.limit)
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

/// The answer to [`Store::list`].
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store's revision when the list was read.
    pub revision: Revision,
    /// More matching items exist after the last one returned.
    pub more: bool,
}

/// A stream of changes; ends with an error if the watcher falls behind compaction.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// The storage interface the API server is written against.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Current values under `prefix`, in key order.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult>;
    /// Fails with [`StoreError::AlreadyExists`] if the key exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;
    /// Compare-and-swap: fails with [`StoreError::Conflict`] unless the key's
    /// `mod_revision` equals `expected`.
    async fn update(&self, key: &str, expected: Revision, value: Bytes) -> Result<KeyValue>;
    /// Deletes the key, if `expected` is given only at that revision. Returns the
    /// last value, with `mod_revision` set to the delete's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;
    /// Changes under `prefix` with a revision greater than `after`.
    /// Fails with [`StoreError::Compacted`] if `after` is older than the
    /// compacted history.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;
    async fn current_revision(&self) -> Result<Revision>;
    /// Forget history up to and including `revision`; watches from before it fail.
    async fn compact(&self, revision: Revision) -> Result<()>;
    /// The oldest revision a watch can still start after.
    async fn compacted_revision(&self) -> Result<Revision>;
    /// Bytes used on disk (for metrics).
    async fn size_bytes(&self) -> Result<u64>;
}

/// Read-modify-write with retries on conflict, like the apiserver's
/// `GuaranteedUpdate`. `update` receives the current value and returns the new
/// one, or `Ok(None)` to leave the key unchanged.
pub async fn guaranteed_update<S, F, E>(
    store: &S,
    key: &str,
    mut update: F,
) -> std::result::Result<KeyValue, E>
where
    S: Store + ?Sized,
    F: FnMut(&KeyValue) -> std::result::Result<Option<Bytes>, E>,
    E: From<StoreError>,
{
    loop {
        let current = store.get(key).await?.ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        let Some(value) = update(&current)? else {
            return Ok(current);
        };
        match store.update(key, current.mod_revision, value).await {
            Err(StoreError::Conflict { .. }) => continue,
            other => return Ok(other?),
        }
    }
}

/// The first key after every key with this prefix (exclusive range end).
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_string();
    end.push(char::MAX);
    end
}
