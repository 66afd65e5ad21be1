//! The pools: one for the catalog, one per shard, and the router from tenant to shard.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use model::workflow::Workflow;
use model::{TenantId, WorkflowId};
use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};

use crate::Result;
use crate::error::{Redacted, StoreError};

/// Shard databases are numbered from 1; shard 1 is the catalog database itself.
pub type ShardId = i32;

pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Where the databases are.
#[derive(Clone, Debug)]
pub struct DatabaseUrls {
    /// The catalog, which is also shard 1.
    pub catalog: String,
    /// Shards 2, 3, ... in order.
    pub extra_shards: Vec<String>,
}

/// Pool tuning, from the configuration.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most connections each pool opens (each database has two: the queue's and the rest).
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// The application_name PostgreSQL shows in pg_stat_activity.
    pub application_name: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout: Duration::from_secs(10), application_name: "orrery".into() }
    }
}

/// The handle every other crate uses. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: PgPool,
    shards: BTreeMap<ShardId, Shard>,
    /// Tenants do not move while a process runs (a move is an offline cut-over), so the map is a cache.
    tenant_shards: RwLock<HashMap<TenantId, ShardId>>,
    /// Checked workflow versions. Versions are immutable, so entries never go stale.
    workflows: Mutex<HashMap<(TenantId, WorkflowId, i32), Arc<Workflow>>>,
}

/// A pooled connection idle at least this long is checked (a round trip) before it is handed out.
const CHECK_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Cached workflow versions before the cache is emptied (a bound on memory, not a tuning knob).
const WORKFLOW_CACHE_ENTRIES: usize = 2_000;

struct Shard {
    pool: PgPool,
    /// The same database's connections for the queue's transactions, planned as the queue needs
    /// ([`QUEUE_SETTINGS`]).
    queue: PgPool,
    target: Redacted,
}

/// How the queue's transactions (claims, reports and the steps they write) plan their
/// statements, set on their own connections when they open: sequential scans, sorts, hash and
/// merge joins as a last resort, and each prepared statement planned once per connection. Why:
/// "How the queue's transactions plan" in queue.rs. Set once per connection rather than with
/// `SET LOCAL` in every transaction: five statements fewer at the start of every step (~3% of a
/// chain's step). Its pool shows in the metrics as `<database>-queue`.
pub(crate) const QUEUE_SETTINGS: [(&str, &str); 5] = [
    ("enable_seqscan", "off"),
    ("enable_sort", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
    ("plan_cache_mode", "force_generic_plan"),
];

/// One database's answer to "are you usable?".
#[derive(Clone, Debug)]
pub struct Readiness {
    pub database: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct PoolStats {
    /// `catalog` or `shard-N` (shard 1 shares the catalog's pool and is reported as `catalog`),
    /// and each one's pool for the queue's transactions, `catalog-queue` or `shard-N-queue`.
    pub pool: String,
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// A database's two pools: one for everything, one for the queue's transactions
/// ([`QUEUE_SETTINGS`]). Each opens up to `max_connections`, when it needs them.
async fn connect_one(url: &str, opts: &StoreOptions) -> Result<(PgPool, PgPool)> {
    let target = Redacted::url(url);
    let connect: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| StoreError::Unreachable {
        target: target.clone(),
        reason: format!("the URL is not valid ({e}); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
    })?;
    // No JIT: every statement here is a short transaction's, and a plan whose estimated cost
    // crosses `jit_above_cost` (a claim planned on thin statistics does) spends ~0.7 s
    // compiling before it runs in 0.1 ms.
    let connect = connect.application_name(&opts.application_name).options([("jit", "off")]);
    // One direct attempt first: a pool retries until its timeout and then reports only "timed
    // out", while this surfaces the real reason (refused, bad password, no such database).
    let probe = tokio::time::timeout(opts.acquire_timeout, PgConnection::connect_with(&connect))
        .await
        .map_err(|_| StoreError::Unreachable {
            target: target.clone(),
            reason: describe_connect_error(&sqlx::Error::PoolTimedOut),
        })?
        .map_err(|e| StoreError::Unreachable { target: target.clone(), reason: describe_connect_error(&e) })?;
    let _ = probe.close().await;
    let queue = pool_of(connect.clone().options(QUEUE_SETTINGS), opts, target.clone()).await?;
    Ok((pool_of(connect, opts, target).await?, queue))
}

async fn pool_of(connect: PgConnectOptions, opts: &StoreOptions, target: Redacted) -> Result<PgPool> {
    // By default sqlx pings every idle connection before handing it out: a round trip added to
    // every transaction and every single statement (it was 0.08 of the 0.14 ms a `SELECT 1`
    // took). Only a connection idle for a while is checked now, the policy of pools like
    // HikariCP. The price: after the server restarts, a connection used within the last second
    // fails its next statement once (and is then dropped) instead of being replaced unseen:
    // reports and claims are retried, an API request that draws it gets an error once.
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .max_connections(opts.max_connections)
        .min_connections(0)
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(|e| StoreError::Unreachable { target, reason: describe_connect_error(&e) })
}

/// A connection failure in words a person can act on.
fn describe_connect_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: is PostgreSQL running and listening there?".into()
        }
        sqlx::Error::Io(io) => format!("{io}: check the host and port"),
        sqlx::Error::PoolTimedOut => "timed out: the host does not answer (firewall, wrong host, or overloaded)".into(),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => format!("{}: check the user name and password", db.message()),
            Some("3D000") => format!("{}: create the database or fix its name in the URL", db.message()),
            _ => db.message().to_owned(),
        },
        sqlx::Error::Tls(t) => format!("TLS failed: {t}"),
        other => other.to_string(),
    }
}

impl Store {
    /// Connects to the catalog and every shard, failing fast with a readable reason.
    pub async fn connect(urls: &DatabaseUrls, opts: &StoreOptions) -> Result<Store> {
        let (catalog, queue) = connect_one(&urls.catalog, opts).await?;
        let mut shards = BTreeMap::new();
        shards.insert(1, Shard { pool: catalog.clone(), queue, target: Redacted::url(&urls.catalog) });
        for (i, url) in urls.extra_shards.iter().enumerate() {
            let id = ShardId::try_from(i + 2).expect("fewer than 2^31 shards");
            let (pool, queue) = connect_one(url, opts).await?;
            shards.insert(id, Shard { pool, queue, target: Redacted::url(url) });
        }
        Ok(Store {
            inner: Arc::new(Inner { catalog, shards, tenant_shards: RwLock::default(), workflows: Mutex::default() }),
        })
    }

    /// Brings every database to the newest schema and records the configured shards in the catalog.
    /// Safe to run from several processes at once (the migrator takes an advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        for (id, shard) in &self.inner.shards {
            MIGRATOR
                .run(&shard.pool)
                .await
                .map_err(|source| StoreError::Migrate { target: shard.target.clone(), source })?;
            sqlx::query("INSERT INTO shards (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
                .bind(id)
                .execute(&self.inner.catalog)
                .await?;
        }
        Ok(())
    }

    /// Is every database reachable and at this binary's schema version?
    pub async fn readiness(&self) -> Vec<Readiness> {
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let mut out = Vec::new();
        for (id, shard) in &self.inner.shards {
            let database = if *id == 1 { "catalog".to_owned() } else { format!("shard-{id}") };
            let row: std::result::Result<Option<i64>, sqlx::Error> =
                sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&shard.pool)
                    .await;
            let (ok, detail) = match row {
                Ok(Some(v)) if v >= latest => (true, format!("schema version {v}")),
                Ok(v) => (false, format!("schema version {} is behind {latest}: run `orrery migrate`", v.unwrap_or(0))),
                Err(e) => (false, describe_connect_error(&e)),
            };
            out.push(Readiness { database, ok, detail });
        }
        out
    }

    pub fn pool_stats(&self) -> Vec<PoolStats> {
        self.inner
            .shards
            .iter()
            .flat_map(|(id, s)| {
                let name = if *id == 1 { "catalog".to_owned() } else { format!("shard-{id}") };
                [(name.clone(), &s.pool), (format!("{name}-queue"), &s.queue)]
            })
            .map(|(pool, p)| PoolStats {
                pool,
                size: p.size(),
                idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
                max: p.options().get_max_connections(),
            })
            .collect()
    }

    pub fn shard_ids(&self) -> Vec<ShardId> {
        self.inner.shards.keys().copied().collect()
    }

    pub(crate) fn catalog(&self) -> &PgPool {
        &self.inner.catalog
    }

    /// The catalog pool, for libraries that keep their own tables there (the session store).
    pub fn catalog_pool(&self) -> PgPool {
        self.inner.catalog.clone()
    }

    /// The pool of the shard that holds `tenant`'s data. An unknown tenant is `NotFound`.
    pub(crate) async fn shard(&self, tenant: TenantId) -> Result<&PgPool> {
        let id = self.shard_of(tenant).await?;
        self.shard_pool(id)
    }

    /// Which shard holds `tenant`'s data (the scheduler routes notifications by it). An unknown
    /// tenant is `NotFound`.
    pub async fn shard_of(&self, tenant: TenantId) -> Result<ShardId> {
        let cached = self.inner.tenant_shards.read().expect("tenant shard map poisoned").get(&tenant).copied();
        let id = match cached {
            Some(id) => id,
            None => {
                let id: ShardId = sqlx::query_scalar("SELECT shard_id FROM tenants WHERE id = $1")
                    .bind(tenant.as_uuid())
                    .fetch_optional(&self.inner.catalog)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                self.inner.tenant_shards.write().expect("tenant shard map poisoned").insert(tenant, id);
                id
            }
        };
        Ok(id)
    }

    /// The shard a new tenant goes to: the configured shard with the fewest tenants.
    pub(crate) async fn least_loaded_shard(&self) -> Result<ShardId> {
        let counts: Vec<(i32, i64)> = sqlx::query_as("SELECT shard_id, count(*) FROM tenants GROUP BY shard_id")
            .fetch_all(&self.inner.catalog)
            .await?;
        let counts: HashMap<i32, i64> = counts.into_iter().collect();
        Ok(self
            .inner
            .shards
            .keys()
            .copied()
            .min_by_key(|id| (counts.get(id).copied().unwrap_or(0), *id))
            .expect("shard 1 always exists"))
    }

    pub(crate) fn cached_workflow(&self, tenant: TenantId, id: WorkflowId, version: i32) -> Option<Arc<Workflow>> {
        self.inner.workflows.lock().expect("workflow cache poisoned").get(&(tenant, id, version)).cloned()
    }

    pub(crate) fn cache_workflow(&self, tenant: TenantId, id: WorkflowId, version: i32, wf: Arc<Workflow>) {
        let mut cache = self.inner.workflows.lock().expect("workflow cache poisoned");
        if cache.len() >= WORKFLOW_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert((tenant, id, version), wf);
    }

    /// Every shard's pool, with its id (for loops that visit all shards).
    pub(crate) fn shard_pools(&self) -> Vec<(ShardId, PgPool)> {
        self.inner.shards.iter().map(|(id, s)| (*id, s.pool.clone())).collect()
    }

    /// Every shard's pool for the queue's transactions ([`QUEUE_SETTINGS`]).
    pub(crate) fn queue_pools(&self) -> Vec<(ShardId, PgPool)> {
        self.inner.shards.iter().map(|(id, s)| (*id, s.queue.clone())).collect()
    }

    pub(crate) fn queue_pool(&self, id: ShardId) -> Result<&PgPool> {
        self.inner.shards.get(&id).map(|s| &s.queue).ok_or(StoreError::ShardNotConfigured(id))
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    pub(crate) fn shard_pool(&self, id: ShardId) -> Result<&PgPool> {
        self.inner.shards.get(&id).map(|s| &s.pool).ok_or(StoreError::ShardNotConfigured(id))
    }

    pub(crate) fn forget_tenant(&self, tenant: TenantId) {
        self.inner.tenant_shards.write().expect("tenant shard map poisoned").remove(&tenant);
    }

    /// Subscribes to a notification channel on the catalog (cross-replica signals).
    pub async fn listen(&self, channel: &str) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.inner.catalog).await?;
        listener.listen(channel).await?;
        Ok(listener)
    }

    /// Subscribes to a notification channel on one shard (schedule changes, the ready queue).
    pub async fn listen_shard(&self, shard: ShardId, channels: &[&str]) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(self.shard_pool(shard)?).await?;
        listener.listen_all(channels.iter().copied()).await?;
        Ok(listener)
    }

    /// Hands each notification on `channels` of one shard to `on` (`Some(payload)`) until `on`
    /// says stop (false). `on(None)` each time the shard is listened to, the first time included:
    /// what was sent before may have been missed (before the first, or while a lost connection
    /// was reopened, every 2 s until it is), so the caller reads afresh what it follows.
    pub async fn follow_shard(&self, shard: ShardId, channels: &[&str], mut on: impl FnMut(Option<&str>) -> bool) {
        loop {
            let mut listener = match self.listen_shard(shard, channels).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(shard, ?channels, "cannot listen for notifications: {e}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            if !on(None) {
                return;
            }
            loop {
                // `try_recv`, not `recv`: `recv` reopens a lost connection by itself, and what was
                // sent meanwhile would be missed unsaid.
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        if !on(Some(n.payload())) {
                            return;
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(shard, ?channels, "notification connection lost; listening again");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(shard, ?channels, "notification stream broke: {e}");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        break;
                    }
                }
            }
        }
    }

    /// Sends a notification on the catalog.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(&self.inner.catalog).await?;
        Ok(())
    }

    /// Closes every pool (graceful shutdown), the queue's too: a database with a connection left
    /// open can be neither renamed nor dropped.
    pub async fn close(&self) {
        for shard in self.inner.shards.values() {
            shard.pool.close().await;
            shard.queue.close().await;
        }
    }
}
