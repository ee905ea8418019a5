//! File-system notifications (inotify) as the agent waits on them: a watch
//! that wakes on the next change of a file or directory.
//!
//! Every watch shares one inotify instance, read by one thread: the kernel
//! allows a user only `fs.inotify.max_user_instances` instances (128 by
//! default), and a node starting hundreds of containers at once, or
//! serving many `logs -f`, needs a watch for each. A watch that cannot be
//! set is logged with what the caller falls back to, and then simply never
//! fires.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use inotify::{Event, EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc;

/// One subscriber to a watched inode.
struct Subscriber {
    id: u64,
    mask: EventMask,
    events: mpsc::UnboundedSender<Event<OsString>>,
}

/// The shared instance: who listens to which watch.
struct Hub {
    watches: Mutex<Watches>,
    subscribers: Mutex<HashMap<WatchDescriptor, Vec<Subscriber>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Hub {
    /// Starts the instance and the thread that reads it.
    fn start() -> std::io::Result<Arc<Self>> {
        let mut inotify = Inotify::init()?;
        let hub = Arc::new(Self {
            watches: Mutex::new(inotify.watches()),
            subscribers: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
        });
        let reader = Arc::downgrade(&hub);
        std::thread::Builder::new()
            .name("inotify".into())
            .spawn(move || {
                let mut buffer = [0u8; 16384];
                loop {
                    let events = match inotify.read_events_blocking(&mut buffer) {
                        Ok(events) => events,
                        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(error) => {
                            tracing::error!(%error, "reading file-system events failed; watches stop firing");
                            return;
                        }
                    };
                    let Some(hub) = reader.upgrade() else { return };
                    for event in events {
                        hub.dispatch(event.to_owned());
                    }
                }
            })?;
        Ok(hub)
    }

    fn dispatch(&self, event: Event<OsString>) {
        let Ok(mut subscribers) = self.subscribers.lock() else { return };
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            // Events were lost: everyone looks again.
            tracing::warn!("the file-system event queue overflowed; every watcher checks again");
            for listening in subscribers.values_mut() {
                listening.retain(|s| s.events.send(event.clone()).is_ok());
            }
            return;
        }
        if event.mask.contains(EventMask::IGNORED) {
            // The watch is gone (its inode removed): so are its streams.
            if let Some(ended) = subscribers.remove(&event.wd) {
                for subscriber in ended {
                    let _ = subscriber.events.send(event.clone());
                }
            }
            return;
        }
        if let Some(listening) = subscribers.get_mut(&event.wd) {
            listening.retain(|s| !s.mask.intersects(event.mask) || s.events.send(event.clone()).is_ok());
        }
    }

    fn subscribe(self: &Arc<Self>, path: &Path, mask: WatchMask) -> std::io::Result<Changes> {
        let poisoned = || std::io::Error::other("the watch list is poisoned");
        // Held while the watch is added, so that the last subscriber of the
        // same inode cannot remove it in between (locks: subscribers, then
        // watches, as in Registration::drop).
        let mut subscribers = self.subscribers.lock().map_err(|_| poisoned())?;
        // MASK_ADD: another subscriber's interest in the same inode stays.
        let wd = self
            .watches
            .lock()
            .map_err(|_| poisoned())?
            .add(path, mask | WatchMask::MASK_ADD)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        subscribers.entry(wd.clone()).or_default().push(Subscriber {
            id,
            mask: EventMask::from_bits_truncate(mask.bits()),
            events: sender,
        });
        drop(subscribers);
        Ok(Changes {
            events: Some(receiver),
            registration: Some(Registration {
                hub: self.clone(),
                wd,
                id,
            }),
        })
    }
}

static HUB: OnceLock<Result<Arc<Hub>, String>> = OnceLock::new();

fn hub() -> Result<&'static Arc<Hub>, String> {
    HUB.get_or_init(|| Hub::start().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// Takes a subscriber off its watch when its [`Changes`] goes; the last
/// one removes the watch.
struct Registration {
    hub: Arc<Hub>,
    wd: WatchDescriptor,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Ok(mut subscribers) = self.hub.subscribers.lock() else { return };
        let Some(listening) = subscribers.get_mut(&self.wd) else { return };
        listening.retain(|s| s.id != self.id);
        if listening.is_empty() {
            subscribers.remove(&self.wd);
            if let Ok(mut watches) = self.hub.watches.lock() {
                // Already gone when its inode was removed.
                let _ = watches.remove(self.wd.clone());
            }
        }
    }
}

/// Changes to one watched path.
pub struct Changes {
    events: Option<mpsc::UnboundedReceiver<Event<OsString>>>,
    registration: Option<Registration>,
}

impl Changes {
    /// Watches `path` for `mask`; on failure logs `fallback` (what happens
    /// instead) and returns a watch that never fires.
    pub fn watch(path: &Path, mask: WatchMask, fallback: &str) -> Self {
        match hub().and_then(|hub| hub.subscribe(path, mask).map_err(|e| e.to_string())) {
            Ok(changes) => changes,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot watch for changes; {fallback}");
                Changes { events: None, registration: None }
            }
        }
    }

    /// The next event; `None` when nothing is watched or the watch ended.
    pub async fn next_event(&mut self) -> Option<Event<OsString>> {
        let event = self.events.as_mut()?.recv().await;
        if event.is_none() {
            self.events = None;
            self.registration = None;
        }
        event
    }

    /// Resolves at the next change; never, when nothing is watched.
    pub async fn next(&mut self) {
        if self.next_event().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn many_watches_share_one_instance_and_each_sees_its_own_changes() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        // More watches than the kernel's default instance limit (128).
        let mut watches = Vec::new();
        for i in 0..300 {
            let sub = dir.path().join(format!("d{i}"));
            std::fs::create_dir(&sub)?;
            watches.push((sub.clone(), Changes::watch(&sub, WatchMask::CLOSE_WRITE, "test")));
        }
        assert!(watches.iter().all(|(_, c)| c.events.is_some()), "every watch was set");
        std::fs::write(watches[7].0.join("started.json"), b"{}")?;
        let event = tokio::time::timeout(Duration::from_secs(10), watches[7].1.next_event()).await?;
        assert_eq!(event.and_then(|e| e.name), Some(OsString::from("started.json")));
        assert!(watches[8].1.events.as_mut().is_some_and(|r| r.try_recv().is_err()), "only the changed one fires");

        // Two watches of one directory with different interests.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared)?;
        let mut writes = Changes::watch(&shared, WatchMask::CLOSE_WRITE, "test");
        let mut moves = Changes::watch(&shared, WatchMask::MOVED_TO, "test");
        std::fs::write(shared.join("tmp"), b"x")?;
        std::fs::rename(shared.join("tmp"), shared.join("exit.json"))?;
        let written = tokio::time::timeout(Duration::from_secs(10), writes.next_event()).await?;
        assert_eq!(written.map(|e| e.mask.contains(EventMask::CLOSE_WRITE)), Some(true));
        let moved = tokio::time::timeout(Duration::from_secs(10), moves.next_event()).await?;
        assert_eq!(moved.and_then(|e| e.name), Some(OsString::from("exit.json")));
        drop(writes);
        // The other's watch outlives the dropped one.
        std::fs::write(shared.join("tmp2"), b"y")?;
        std::fs::rename(shared.join("tmp2"), shared.join("again"))?;
        let again = tokio::time::timeout(Duration::from_secs(10), moves.next_event()).await?;
        assert_eq!(again.and_then(|e| e.name), Some(OsString::from("again")));

        // A removed directory ends its watch.
        let (gone, mut changes) = watches.remove(0);
        std::fs::remove_dir(&gone)?;
        let mut last = None;
        while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(10), changes.next_event()).await {
            last = Some(event.mask);
        }
        assert!(last.is_some_and(|m| m.contains(EventMask::IGNORED)), "{last:?}");
        Ok(())
    }
}
