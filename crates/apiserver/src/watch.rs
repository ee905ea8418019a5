//! Watches: an optional initial state (synthetic ADDED events), then store
//! changes mapped through the client's selectors (an object that stops
//! matching is DELETED for that watcher, one that starts matching is ADDED),
//! bookmarks, and a deadline. One task per watch feeds a bounded channel;
//! it ends when the client goes away, the deadline passes or the server
//! shuts down.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use skiff_api::Status;
use skiff_store::{EventKind, StoreError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, Result};
use crate::registry::{decode, decode_at, ListParams, Registry};

/// How often bookmarks are sent to clients that allow them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Events buffered per watcher before the watch task waits for the client.
const CHANNEL_DEPTH: usize = 256;

/// One event as sent to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    /// A resourceVersion checkpoint; `true` marks the end of initial events.
    Bookmark(u64, bool),
    Error(Status),
}

impl WatchEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Added(_) => "ADDED",
            Self::Modified(_) => "MODIFIED",
            Self::Deleted(_) => "DELETED",
            Self::Bookmark(..) => "BOOKMARK",
            Self::Error(_) => "ERROR",
        }
    }
}

/// What a client asked to watch.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub params: ListParams,
    /// `None` or `0`: start with the current state.
    pub resource_version: Option<u64>,
    pub send_initial_events: bool,
    pub timeout: Duration,
    pub bookmarks: bool,
}

/// Decides which event, if any, a store change is for a filtered watcher
/// (`old_matches`: the object before an update was in its set).
pub fn classify(
    kind: EventKind,
    old_matches: bool,
    new: Value,
    params: &ListParams,
) -> Option<WatchEvent> {
    match kind {
        EventKind::Create => params.matches(&new).then_some(WatchEvent::Added(new)),
        EventKind::Delete => params.matches(&new).then_some(WatchEvent::Deleted(new)),
        EventKind::Update => match (old_matches, params.matches(&new)) {
            (true, true) => Some(WatchEvent::Modified(new)),
            (false, true) => Some(WatchEvent::Added(new)),
            (true, false) => Some(WatchEvent::Deleted(new)),
            (false, false) => None,
        },
    }
}

/// Starts a watch; the stream ends on deadline, disconnect or shutdown.
pub async fn start(
    registry: &Registry,
    request: WatchRequest,
    shutdown: CancellationToken,
) -> Result<ReceiverStream<WatchEvent>> {
    let namespace = request.namespace.as_deref();
    let mut initial = Initial::default();
    let start_revision = match request
        .resource_version
        .filter(|rv| *rv != 0 && !request.send_initial_events)
    {
        Some(rv) => rv,
        None => {
            let mut params = request.params.clone();
            params.limit = None;
            params.continue_token = None;
            let list = registry.list_stored(request.resource, namespace, &params).await?;
            initial.objects = list.items;
            if request.send_initial_events && request.bookmarks {
                initial.end = Some(list.revision);
            }
            list.revision
        }
    };
    let prefix = request.resource.storage_prefix(namespace);
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let changes = match registry.store().watch(&prefix, start_revision).await {
        Ok(changes) => changes,
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let status = ApiError::Store(StoreError::Compacted {
                requested,
                compacted,
            })
            .status();
            let _ = tx.send(WatchEvent::Error(status)).await;
            return Ok(ReceiverStream::new(rx));
        }
        Err(other) => return Err(other.into()),
    };
    tokio::spawn(run(request, initial, changes, start_revision, tx, shutdown));
    Ok(ReceiverStream::new(rx))
}

/// The state a watch starts with: stored objects, decoded one at a time
/// as they are sent, then the bookmark that ends them (if asked for).
#[derive(Default)]
struct Initial {
    objects: Vec<skiff_store::KeyValue>,
    end: Option<u64>,
}

async fn run(
    request: WatchRequest,
    initial: Initial,
    mut changes: skiff_store::WatchStream,
    mut revision: u64,
    tx: mpsc::Sender<WatchEvent>,
    shutdown: CancellationToken,
) {
    let objects = initial.objects.iter().map(|kv| match decode(kv) {
        Ok(object) => WatchEvent::Added(object),
        Err(error) => {
            tracing::warn!(key = %kv.key, %error, "a stored object cannot be decoded; the watch ends");
            WatchEvent::Error(error.status())
        }
    });
    let end = initial.end.map(|revision| WatchEvent::Bookmark(revision, true));
    for event in objects.chain(end) {
        let failed = matches!(event, WatchEvent::Error(_));
        if tx.send(event).await.is_err() || failed {
            return;
        }
    }
    let deadline = tokio::time::sleep(request.timeout);
    tokio::pin!(deadline);
    let mut bookmarks = tokio::time::interval_at(
        tokio::time::Instant::now() + BOOKMARK_INTERVAL,
        BOOKMARK_INTERVAL,
    );
    loop {
        let event = tokio::select! {
            _ = &mut deadline => return,
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            _ = bookmarks.tick(), if request.bookmarks => Some(WatchEvent::Bookmark(revision, false)),
            change = changes.next() => match change {
                None => return,
                Some(Err(error)) => Some(WatchEvent::Error(ApiError::Store(error).status())),
                Some(Ok(change)) => {
                    revision = change.kv.mod_revision;
                    let new = decode(&change.kv);
                    // The old object only tells whether an update moved the
                    // object into or out of a selector's set: without a
                    // selector it is not decoded at all.
                    let old_matches = match &change.prev_value {
                        None => Ok(false),
                        Some(_) if request.params.selects_all() => Ok(true),
                        Some(old) => decode_at(old, revision).map(|old| request.params.matches(&old)),
                    };
                    match (new, old_matches) {
                        (Ok(new), Ok(old_matches)) => classify(change.kind, old_matches, new, &request.params),
                        (Err(e), _) | (_, Err(e)) => Some(WatchEvent::Error(e.status())),
                    }
                }
            },
        };
        if let Some(event) = event {
            let last = matches!(event, WatchEvent::Error(_));
            if tx.send(event).await.is_err() || last {
                return;
            }
        }
    }
}

/// The object of a bookmark event.
pub fn bookmark_object(resource: &ResourceInfo, revision: u64, initial_events_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": revision.to_string(), "creationTimestamp": null});
    if initial_events_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": resource.kind, "apiVersion": resource.api_version(), "metadata": meta})
}

#[cfg(test)]
mod tests {
    use skiff_api::selector::LabelSelector;

    use super::*;

    #[test]
    fn selector_transitions_become_added_and_deleted() -> std::result::Result<(), String> {
        let params = ListParams {
            labels: LabelSelector::parse("app=web")?,
            ..Default::default()
        };
        let web = json!({"metadata": {"labels": {"app": "web"}}});
        let other = json!({"metadata": {"labels": {"app": "db"}}});
        assert_eq!(
            classify(EventKind::Update, params.matches(&web), other.clone(), &params),
            Some(WatchEvent::Deleted(other.clone()))
        );
        assert_eq!(
            classify(EventKind::Update, params.matches(&other), web.clone(), &params),
            Some(WatchEvent::Added(web.clone()))
        );
        assert_eq!(
            classify(EventKind::Update, params.matches(&other), other.clone(), &params),
            None
        );
        assert_eq!(
            classify(EventKind::Update, params.matches(&web), web.clone(), &params),
            Some(WatchEvent::Modified(web.clone()))
        );
        assert_eq!(
            classify(EventKind::Delete, false, web.clone(), &params),
            Some(WatchEvent::Deleted(web))
        );
        Ok(())
    }
}
