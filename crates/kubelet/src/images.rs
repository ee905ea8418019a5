//! Watches the image store for unpacked layers that disappear under
//! running containers (someone cleaned the data dir by hand, a disk
//! error): each removal is broadcast by digest, and the pod workers whose
//! containers use that layer say so and restart them on a verified image.

use std::path::PathBuf;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Broadcasts `sha256:<hex>` for every layer directory removed from or
/// moved out of `dir`, until `shutdown`.
pub async fn watch_layers(dir: PathBuf, removed: broadcast::Sender<String>, shutdown: CancellationToken) {
    use inotify::{EventMask, Inotify, WatchMask};
    let events = Inotify::init().and_then(|inotify| {
        inotify
            .watches()
            .add(&dir, WatchMask::DELETE | WatchMask::MOVED_FROM)?;
        inotify.into_event_stream([0u8; 4096])
    });
    let mut events = match events {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot watch the image store; removed layers will only be noticed when a container starts");
            return;
        }
    };
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            Some(Ok(event)) if event.mask.contains(EventMask::ISDIR) => {
                let Some(name) = event.name.and_then(|n| n.to_str().map(str::to_string)) else {
                    continue;
                };
                if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    tracing::warn!(layer = %name, "an unpacked image layer was removed");
                    // No worker listening is fine: no container uses it.
                    let _ = removed.send(format!("sha256:{name}"));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tracing::warn!(dir = %dir.display(), %error, "image store watch failed");
                return;
            }
            None => return,
        }
    }
}
