//! In-memory views kept from the store, as upstream's informers keep
//! theirs: list, then watch from the list's revision, and list again when
//! the watch breaks. The RBAC cache and the Node authorizer's graph are
//! built on it.

use std::time::Duration;

use futures::StreamExt;
use skiff_store::Event;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// Retry delay after a failed watch.
const RETRY: Duration = Duration::from_secs(1);

/// Until `shutdown`: `reload` (re)builds the view, then every change under
/// `prefix` goes to `apply`; a broken watch reloads. `what` names the view
/// in logs.
pub(crate) async fn follow<Reload, Loaded>(
    registry: &Registry,
    prefix: &str,
    what: &str,
    shutdown: &CancellationToken,
    mut reload: Reload,
    mut apply: impl FnMut(&Event),
) where
    Reload: FnMut() -> Loaded,
    Loaded: std::future::Future<Output = ()>,
{
    loop {
        let revision = registry.store().current_revision().await.unwrap_or(0);
        reload().await;
        let mut changes = match registry.store().watch(prefix, revision).await {
            Ok(changes) => changes,
            Err(error) => {
                tracing::warn!(%error, what, "cannot watch the store");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = changes.next() => event,
            };
            match event {
                Some(Ok(event)) => apply(&event),
                Some(Err(error)) => {
                    tracing::warn!(%error, what, "the store watch broke; reloading");
                    break;
                }
                None => break,
            }
        }
    }
}
