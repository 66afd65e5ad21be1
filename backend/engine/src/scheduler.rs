//! The scheduler role: shard leases, the timing wheel, and firing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use model::{TenantId, WorkflowId};
use store::{SCHEDULE_CHANNEL, ShardId, ShardLease, Store, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Clock;
use crate::time_wheel::{Tick, TimeWheel};

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Unique per process (host + pid + random is a good choice).
    pub id: String,
    pub hostname: String,
    /// A shard lease lasts this long unless renewed (renewed every third of it).
    pub lease_ttl: Duration,
    /// How often the wheel is advanced (real time).
    pub tick: Duration,
    /// Fires in flight at once.
    pub parallel_fires: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            id: format!("scheduler-{}", uuid::Uuid::now_v7()),
            hostname: "localhost".into(),
            lease_ttl: Duration::from_secs(10),
            tick: Duration::from_millis(200),
            parallel_fires: 8,
        }
    }
}

type Key = (TenantId, WorkflowId);

/// What a shard's listener tells the scheduler.
enum Change {
    /// A schedule changed.
    Schedule(Key),
    /// The shard is listened to (again): its schedules are read afresh, since changes made
    /// before may not have been heard.
    Listening(ShardId),
}

/// A fire's key, the tick it was for, its shard, and what the store said.
type FireResult = (Key, DateTime<Utc>, ShardId, Result<store::Fired, StoreError>);

/// Ceil to the wheel's one-second resolution: a fire at 12:00:00.3 is due at tick 12:00:01.
fn tick_of(t: DateTime<Utc>) -> Tick {
    let s = t.timestamp();
    if t.timestamp_subsec_nanos() > 0 { s + 1 } else { s }
}

struct State {
    wheel: TimeWheel<Key>,
    /// The exact next fire (the wheel holds whole seconds) and the shard of each key.
    exact: HashMap<Key, (DateTime<Utc>, ShardId)>,
    leases: HashMap<ShardId, ShardLease>,
    listeners: HashMap<ShardId, CancellationToken>,
}

pub struct Scheduler {
    store: Store,
    clock: Arc<dyn Clock>,
    cfg: SchedulerConfig,
}

impl Scheduler {
    pub fn new(store: Store, clock: Arc<dyn Clock>, cfg: SchedulerConfig) -> Self {
        Self { store, clock, cfg }
    }

    /// Runs until `shutdown`, then releases its leases so another scheduler takes over at once.
    pub async fn run(self, shutdown: CancellationToken) {
        let now = self.clock.now();
        let mut st = State {
            wheel: TimeWheel::new(now.timestamp()),
            exact: HashMap::new(),
            leases: HashMap::new(),
            listeners: HashMap::new(),
        };
        let (changes_tx, mut changes) = mpsc::unbounded_channel::<Change>();
        let mut lease_timer = tokio::time::interval(self.cfg.lease_ttl / 3);
        let mut tick = tokio::time::interval(self.cfg.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tracing::info!(scheduler.id = %self.cfg.id, "scheduler started");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = lease_timer.tick() => self.balance(&mut st, &changes_tx).await,
                Some(change) = changes.recv() => match change {
                    Change::Schedule((tenant, workflow)) => self.reload(&mut st, tenant, workflow).await,
                    Change::Listening(shard) => self.load_schedules(&mut st, shard).await,
                },
                _ = tick.tick() => self.fire_due(&mut st).await,
            }
        }
        for (_, stop) in st.listeners.drain() {
            stop.cancel();
        }
        if let Err(e) = self.store.release_shard_leases(&self.cfg.id).await {
            tracing::warn!("could not release shard leases: {e}");
        }
        tracing::info!(scheduler.id = %self.cfg.id, "scheduler stopped");
    }

    async fn balance(&self, st: &mut State, changes: &mpsc::UnboundedSender<Change>) {
        let now = self.clock.now();
        if let Err(e) = self.store.scheduler_heartbeat(&self.cfg.id, &self.cfg.hostname, now).await {
            tracing::warn!("scheduler heartbeat failed: {e}");
            return;
        }
        let held = match self.store.balance_shard_leases(&self.cfg.id, self.cfg.lease_ttl, now).await {
            Ok(h) => h,
            Err(e) => {
                // Without a renewal our leases run out; stop driving them before someone else does.
                tracing::warn!("shard lease renewal failed: {e}");
                let expired: Vec<ShardId> =
                    st.leases.values().filter(|l| l.expires_at <= now).map(|l| l.shard).collect();
                for shard in expired {
                    self.drop_shard(st, shard);
                }
                return;
            }
        };
        let held_ids: HashSet<ShardId> = held.iter().map(|l| l.shard).collect();
        let lost: Vec<ShardId> = st.leases.keys().copied().filter(|s| !held_ids.contains(s)).collect();
        for shard in lost {
            self.drop_shard(st, shard);
        }
        for lease in held {
            let gained = st.leases.insert(lease.shard, lease).is_none_or(|old| old.token != lease.token);
            if gained {
                self.load_shard(st, lease.shard, changes).await;
            }
        }
    }

    fn drop_shard(&self, st: &mut State, shard: ShardId) {
        tracing::info!(shard, "no longer driving shard");
        st.leases.remove(&shard);
        if let Some(stop) = st.listeners.remove(&shard) {
            stop.cancel();
        }
        let keys: Vec<Key> = st.exact.iter().filter(|(_, (_, s))| *s == shard).map(|(k, _)| *k).collect();
        for k in keys {
            st.exact.remove(&k);
            st.wheel.remove(&k);
        }
    }

    /// Starts following a shard gained: its schedules are read at once, and again once its
    /// listener listens ([`Change::Listening`]), so no change between the first read and the
    /// listening is missed (and a listener that cannot connect leaves the shard driven all the
    /// same, changes heard at the fires).
    async fn load_shard(&self, st: &mut State, shard: ShardId, changes: &mpsc::UnboundedSender<Change>) {
        if let Some(old) = st.listeners.remove(&shard) {
            old.cancel();
        }
        let stop = CancellationToken::new();
        st.listeners.insert(shard, stop.clone());
        let store = self.store.clone();
        let tx = changes.clone();
        tokio::spawn(async move { forward_changes(store, shard, tx, stop).await });
        self.load_schedules(st, shard).await;
    }

    /// Reads a shard's schedules afresh: the wheel then holds exactly them.
    async fn load_schedules(&self, st: &mut State, shard: ShardId) {
        if !st.leases.contains_key(&shard) {
            return;
        }
        match self.store.due_schedules(shard).await {
            Ok(due) => {
                tracing::info!(shard, schedules = due.len(), "driving shard");
                let keys: Vec<Key> = st.exact.iter().filter(|(_, (_, s))| *s == shard).map(|(k, _)| *k).collect();
                for k in keys {
                    st.exact.remove(&k);
                    st.wheel.remove(&k);
                }
                for d in due {
                    let key = (d.tenant, d.workflow);
                    st.exact.insert(key, (d.next_fire_at, shard));
                    st.wheel.insert(key, tick_of(d.next_fire_at));
                }
            }
            Err(e) => {
                // Gained again at the next lease round, and read then.
                tracing::warn!(shard, "loading schedules failed: {e}; retrying at the next lease round");
                self.drop_shard(st, shard);
            }
        }
    }

    async fn reload(&self, st: &mut State, tenant: TenantId, workflow: WorkflowId) {
        let key = (tenant, workflow);
        let shard = match self.store.shard_of(tenant).await {
            Ok(s) if st.leases.contains_key(&s) => s,
            _ => return,
        };
        match self.store.schedule_next(tenant, workflow).await {
            Ok(Some(next)) => {
                st.exact.insert(key, (next, shard));
                st.wheel.insert(key, tick_of(next));
            }
            Ok(None) | Err(StoreError::NotFound) => {
                st.exact.remove(&key);
                st.wheel.remove(&key);
            }
            Err(e) => tracing::warn!(tenant.id = %tenant, workflow.id = %workflow, "reloading a schedule failed: {e}"),
        }
    }

    async fn fire_due(&self, st: &mut State) {
        let now = self.clock.now();
        let due = st.wheel.advance(now.timestamp());
        if due.is_empty() {
            return;
        }
        let jobs: Vec<(Key, DateTime<Utc>, ShardId, i64)> = due
            .into_iter()
            .filter_map(|(key, _)| {
                let (exact, shard) = *st.exact.get(&key)?;
                let token = st.leases.get(&shard)?.token;
                Some((key, exact, shard, token))
            })
            .collect();
        let results: Vec<FireResult> = futures::stream::iter(jobs)
            .map(|(key, expected, shard, token)| {
                let store = self.store.clone();
                async move {
                    let r = store.fire_schedule(key.0, key.1, expected, token, now).await;
                    (key, expected, shard, r)
                }
            })
            .buffer_unordered(self.cfg.parallel_fires.max(1))
            .collect()
            .await;
        for (key, expected, shard, r) in results {
            match r {
                Ok(fired) => {
                    if !fired.runs.is_empty() {
                        tracing::info!(tenant.id = %key.0, workflow.id = %key.1, tick = %expected, runs = fired.runs.len(), "fired");
                    }
                    match fired.next {
                        Some(next) => {
                            st.exact.insert(key, (next, shard));
                            st.wheel.insert(key, tick_of(next));
                        }
                        None => {
                            st.exact.remove(&key);
                        }
                    }
                }
                Err(StoreError::Stale) => {
                    tracing::warn!(shard, "another scheduler holds the shard now; letting it go");
                    self.drop_shard(st, shard);
                }
                Err(e) => {
                    // Nothing was committed; try the same tick again shortly.
                    tracing::warn!(tenant.id = %key.0, workflow.id = %key.1, "firing failed: {e}; retrying in 5 s");
                    st.wheel.insert(key, now.timestamp() + 5);
                }
            }
        }
    }
}

/// Forwards schedule-change notifications of one shard until `stop`, reconnecting on errors.
async fn forward_changes(store: Store, shard: ShardId, tx: mpsc::UnboundedSender<Change>, stop: CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = store.follow_shard(shard, &[SCHEDULE_CHANNEL], |payload| {
            let change = match payload {
                None => Some(Change::Listening(shard)),
                Some(p) => p.split_once('/').and_then(|(t, w)| Some(Change::Schedule((t.parse().ok()?, w.parse().ok()?)))),
            };
            // A closed receiver: the scheduler is gone, and so is the reason to listen.
            change.is_none_or(|c| tx.send(c).is_ok())
        }) => {}
    }
}
