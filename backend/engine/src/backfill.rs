//! Drives backfills: every few seconds, each running backfill of every shard (row locks keep two
//! schedulers from stepping the same one)
//! creates runs up to its parallelism. Backfill runs sit below fresh runs in priority, so they fill
//! idle capacity without starving scheduled work.

use std::sync::Arc;
use std::time::Duration;

use store::{ShardId, Store};
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
        let shards: Vec<ShardId> = store.shard_ids();
        for shard in shards {
            match store.step_backfills(shard, clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(shard, runs = n, "backfill runs created"),
                Err(e) => tracing::warn!(shard, "advancing backfills failed: {e}"),
            }
        }
    }
}
