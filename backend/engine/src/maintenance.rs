//! Housekeeping every scheduler does (safe to run in several at once: row locks decide):
//! expired leases become lost attempts, and task timeouts are enforced.

use std::sync::Arc;
use std::time::Duration;

use store::Store;
use tokio_util::sync::CancellationToken;

use crate::Clock;

pub async fn run(store: Store, clock: Arc<dyn Clock>, every: Duration, shutdown: CancellationToken) {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        let now = clock.now();
        match store.reap_expired_leases(now, 500).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(attempts = n, "attempts lost: their workers stopped renewing leases"),
            Err(e) => tracing::warn!("reaping expired leases failed: {e}"),
        }
        if let Err(e) = store.enforce_timeouts(now, 500).await {
            tracing::warn!("enforcing timeouts failed: {e}");
        }
    }
}
