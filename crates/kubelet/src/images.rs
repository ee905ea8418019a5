//! Watches the image store for unpacked layers that disappear under
//! running containers (someone cleaned the data dir by hand, a disk
//! error): each removal is broadcast by digest, and the pod workers whose
//! containers use that layer say so and restart them on a verified image.

use std::path::PathBuf;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::notify::Changes;

/// Broadcasts `sha256:<hex>` for every layer directory removed from or
/// moved out of `dir`, until `shutdown`.
pub async fn watch_layers(dir: PathBuf, removed: broadcast::Sender<String>, shutdown: CancellationToken) {
    use inotify::{EventMask, WatchMask};
    let mut events = Changes::watch(
        &dir,
        WatchMask::DELETE | WatchMask::MOVED_FROM,
        "removed layers are only noticed when a container starts",
    );
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next_event() => event,
        };
        let Some(event) = event else {
            return;
        };
        if !event.mask.contains(EventMask::ISDIR) {
            continue;
        }
        let Some(name) = event.name.and_then(|n| n.to_str().map(str::to_string)) else {
            continue;
        };
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            tracing::warn!(layer = %name, "an unpacked image layer was removed");
            // No worker listening is fine: no container uses it.
            let _ = removed.send(format!("sha256:{name}"));
        }
    }
}
