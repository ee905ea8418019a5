//! File-system notifications (inotify) as the agent waits on them: a watch
//! that wakes on the next change of a file or directory. A watch that
//! cannot be set is logged with what the caller falls back to, and then
//! simply never fires.

use std::ffi::OsString;
use std::path::Path;

use futures::StreamExt;
use inotify::{Event, EventStream, Inotify, WatchMask};

/// Changes to one watched path.
pub struct Changes(Option<EventStream<[u8; 4096]>>);

impl Changes {
    /// Watches `path` for `mask`; on failure logs `fallback` (what happens
    /// instead) and returns a watch that never fires.
    pub fn watch(path: &Path, mask: WatchMask, fallback: &str) -> Self {
        let events = Inotify::init().and_then(|inotify| {
            inotify.watches().add(path, mask)?;
            inotify.into_event_stream([0u8; 4096])
        });
        match events {
            Ok(events) => Changes(Some(events)),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot watch for changes; {fallback}");
                Changes(None)
            }
        }
    }

    /// The next event; `None` when nothing is watched or the watch ended
    /// (an error ending it is logged).
    pub async fn next_event(&mut self) -> Option<Event<OsString>> {
        match self.0.as_mut()?.next().await {
            Some(Ok(event)) => Some(event),
            Some(Err(error)) => {
                tracing::warn!(%error, "a file-system watch failed");
                self.0 = None;
                None
            }
            None => {
                self.0 = None;
                None
            }
        }
    }

    /// Resolves at the next change; never, when nothing is watched.
    pub async fn next(&mut self) {
        if self.next_event().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}
