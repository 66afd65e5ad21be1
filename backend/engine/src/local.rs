//! The in-process executor: runs `noop` and `sleep` attempts of one pool inside the scheduler's
//! process, through the same claim / lease / report path a remote worker uses. It lets
//! `orrery up` and the engine's tests run workflows end to end; remote workers run every kind.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use model::TenantId;
use model::engine::Outcome;
use serde_json::Value;
use store::{ClaimRequest, Claimed, QUEUE_CHANNEL, Renewal, Store, StoreError};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Clock;

#[derive(Clone, Debug)]
pub struct LocalExecutorConfig {
    pub pool: String,
    pub worker_id: String,
    /// Attempts run at once.
    pub slots: u32,
    pub lease: Duration,
}

impl Default for LocalExecutorConfig {
    fn default() -> Self {
        Self { pool: "default".into(), worker_id: "local".into(), slots: 16, lease: Duration::from_secs(30) }
    }
}

struct Running {
    tenant: TenantId,
    token: i64,
    task: JoinHandle<()>,
}

/// What the executor can run, from an attempt's rendered task.
enum Work {
    Noop,
    Sleep(Duration),
    Unsupported(String),
}

fn work_of(rendered: &Value) -> Work {
    match rendered["kind"]["kind"].as_str() {
        Some("noop") => Work::Noop,
        Some("sleep") => {
            let secs = rendered["kind"]["config"]["seconds"].as_f64().unwrap_or(0.0).clamp(0.0, 365.0 * 86_400.0);
            Work::Sleep(Duration::from_secs_f64(secs))
        }
        other => Work::Unsupported(other.unwrap_or("unknown").to_owned()),
    }
}

pub async fn run(store: Store, clock: Arc<dyn Clock>, cfg: LocalExecutorConfig, shutdown: CancellationToken) {
    let wake = Arc::new(Notify::new());
    for (shard, _) in store.shard_ids().into_iter().map(|s| (s, ())) {
        let (store, wake, stop) = (store.clone(), wake.clone(), shutdown.clone());
        tokio::spawn(async move { listen_queue(store, shard, wake, stop).await });
    }
    let (done_tx, mut done) = mpsc::unbounded_channel::<Uuid>();
    let mut running: HashMap<Uuid, Running> = HashMap::new();
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    let mut heartbeat = tokio::time::interval(cfg.lease / 3);
    tracing::info!(pool = %cfg.pool, slots = cfg.slots, "in-process executor started");
    loop {
        let free = cfg.slots.saturating_sub(u32::try_from(running.len()).unwrap_or(u32::MAX));
        if free > 0 {
            let req = ClaimRequest {
                pool: &cfg.pool,
                worker_id: &cfg.worker_id,
                limit: free,
                cpu_millis: u32::MAX,
                memory_bytes: u64::MAX,
                gpu: u32::MAX,
                lease: cfg.lease,
            };
            match store.claim(&req, clock.now()).await {
                Ok(claimed) if !claimed.is_empty() => {
                    let single = claimed.len() == 1;
                    for c in claimed {
                        if single && matches!(work_of(&c.rendered), Work::Noop) {
                            // A lone no-op (a chain's next step): report at once, in this loop, and
                            // claim again without a round through the task scheduler. Several are
                            // reported in parallel below.
                            report(&store, &clock, &c, Outcome::Succeeded { outputs: Default::default() }).await;
                            continue;
                        }
                        let id = c.attempt_id;
                        let (tenant, token) = (c.tenant_id, c.lease_token);
                        let task = tokio::spawn(execute(store.clone(), clock.clone(), c, done_tx.clone()));
                        running.insert(id, Running { tenant, token, task });
                    }
                    continue; // there may be more
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("claiming work failed: {e}"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = wake.notified() => {}
            Some(id) = done.recv() => { running.remove(&id); }
            _ = poll.tick() => {}
            _ = heartbeat.tick() => renew(&store, &clock, &cfg, &mut running).await,
        }
    }
    // Leases of unfinished attempts expire; the reaper turns them into lost attempts and retries.
    for (_, r) in running {
        r.task.abort();
    }
}

async fn renew(store: &Store, clock: &Arc<dyn Clock>, cfg: &LocalExecutorConfig, running: &mut HashMap<Uuid, Running>) {
    if running.is_empty() {
        return;
    }
    let held: Vec<(TenantId, Uuid, i64)> = running.iter().map(|(id, r)| (r.tenant, *id, r.token)).collect();
    match store.renew_leases(&held, cfg.lease, clock.now()).await {
        Ok(answers) => {
            for (id, answer) in answers {
                if answer != Renewal::Held
                    && let Some(r) = running.remove(&id)
                {
                    // Killed (cancel, clear) or lease gone: stop it; never report it.
                    r.task.abort();
                    if answer == Renewal::Kill {
                        let _ = store.complete_attempt(r.tenant, id, r.token, Outcome::Cancelled, clock.now()).await;
                    }
                }
            }
        }
        Err(e) => tracing::warn!("renewing leases failed: {e}"),
    }
}

async fn execute(store: Store, clock: Arc<dyn Clock>, c: Claimed, done: mpsc::UnboundedSender<Uuid>) {
    let outcome = match work_of(&c.rendered) {
        Work::Noop => Outcome::Succeeded { outputs: Default::default() },
        Work::Sleep(d) => {
            tokio::time::sleep(d).await;
            Outcome::Succeeded { outputs: Default::default() }
        }
        Work::Unsupported(kind) => Outcome::Failed {
            reason: format!(
                "the in-process executor runs noop and sleep tasks; `{kind}` tasks need a worker in this pool"
            ),
        },
    };
    report(&store, &clock, &c, outcome).await;
    let _ = done.send(c.attempt_id);
}

async fn report(store: &Store, clock: &Arc<dyn Clock>, c: &Claimed, outcome: Outcome) {
    match store.complete_attempt(c.tenant_id, c.attempt_id, c.lease_token, outcome, clock.now()).await {
        Ok(()) | Err(StoreError::Stale) => {}
        Err(e) => tracing::warn!(attempt.id = %c.attempt_id, "reporting an attempt failed: {e}"),
    }
}

async fn listen_queue(store: Store, shard: store::ShardId, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        let mut listener = match store.listen_shard(shard, &[QUEUE_CHANNEL]).await {
            Ok(l) => l,
            Err(_) => {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                n = listener.recv() => match n {
                    Ok(_) => wake.notify_one(),
                    Err(_) => break,
                },
            }
        }
    }
}
