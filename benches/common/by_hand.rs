//! What a tokio user writes by hand for a tracked task that a shutdown cancels: a
//! `TaskTracker` to wait for it, a `CancellationToken` to stop it.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Spawns an empty task on `tracker` that `token` cancels.
pub fn spawn(tracker: &TaskTracker, token: &CancellationToken) -> JoinHandle<Option<()>> {
    let token = token.clone();
    tracker.spawn(async move {
        tokio::select! {
            biased;
            _ = token.cancelled() => None,
            value = async {} => Some(value),
        }
    })
}
