//! The worker registry (catalog) and attempt logs (shards).

use chrono::{DateTime, Utc};
use model::TenantId;
use serde_json::Value;
use uuid::Uuid;

use crate::{Result, Store, StoreError};

/// A worker as the registry knows it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WorkerRecord {
    pub id: String,
    pub pool: String,
    pub region: String,
    pub labels: Value,
    pub hostname: String,
    pub version: String,
    pub isolation: String,
    pub capacity: Value,
    pub free: Value,
    pub running: i32,
    pub draining: bool,
    pub connected: bool,
    pub connected_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

const COLS: &str = "id, pool, region, labels, hostname, version, isolation, capacity, free, running, draining, connected, connected_at, last_seen_at";

/// A chunk of an attempt's log as its worker sends it.
#[derive(Clone, Copy, Debug)]
pub struct NewLogChunk<'a> {
    pub attempt: Uuid,
    pub lease_token: i64,
    pub seq: i64,
    pub data: &'a [u8],
}

/// One chunk of an attempt's log.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LogChunk {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub data: Vec<u8>,
}

impl Store {
    /// A worker (re)connected: its registration replaces what was known, but for a drain asked
    /// before (through the API, while it was away): that stands. Returns whether it drains.
    pub async fn register_worker(&self, w: &WorkerRecord) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "INSERT INTO workers (id, pool, region, labels, hostname, version, isolation, capacity, free, running, draining, connected, connected_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, true, $12, $12) \
             ON CONFLICT (id) DO UPDATE SET pool = EXCLUDED.pool, region = EXCLUDED.region, labels = EXCLUDED.labels, \
               hostname = EXCLUDED.hostname, version = EXCLUDED.version, isolation = EXCLUDED.isolation, capacity = EXCLUDED.capacity, \
               free = EXCLUDED.free, running = EXCLUDED.running, draining = workers.draining OR EXCLUDED.draining, connected = true, \
               connected_at = EXCLUDED.connected_at, last_seen_at = EXCLUDED.last_seen_at \
             RETURNING draining",
        )
        .bind(&w.id)
        .bind(&w.pool)
        .bind(&w.region)
        .bind(&w.labels)
        .bind(&w.hostname)
        .bind(&w.version)
        .bind(&w.isolation)
        .bind(&w.capacity)
        .bind(&w.free)
        .bind(w.running)
        .bind(w.draining)
        .bind(w.connected_at)
        .fetch_one(self.catalog())
        .await?)
    }

    /// A heartbeat: free capacity, running attempts, and whether the worker drains of its own
    /// accord (SIGTERM). Returns whether the worker is draining (the API may have asked it to).
    pub async fn worker_seen(
        &self,
        id: &str,
        free: &Value,
        running: i32,
        draining: bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let draining: Option<bool> = sqlx::query_scalar(
            "UPDATE workers SET free = $2, running = $3, last_seen_at = $4, connected = true, \
             draining = draining OR $5 WHERE id = $1 RETURNING draining",
        )
        .bind(id)
        .bind(free)
        .bind(running)
        .bind(now)
        .bind(draining)
        .fetch_optional(self.catalog())
        .await?;
        draining.ok_or(StoreError::NotFound)
    }

    pub async fn worker_disconnected(&self, id: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE workers SET connected = false, last_seen_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(self.catalog())
            .await?;
        Ok(())
    }

    /// Asks a worker to finish what it runs and take nothing new.
    pub async fn drain_worker(&self, id: &str) -> Result<WorkerRecord> {
        sqlx::query_as(&format!("UPDATE workers SET draining = true WHERE id = $1 RETURNING {COLS}"))
            .bind(id)
            .fetch_optional(self.catalog())
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLS} FROM workers ORDER BY pool, region, id"))
            .fetch_all(self.catalog())
            .await?)
    }

    /// Stores a tenant's log chunks, each once (a chunk re-sent after a reconnect is ignored), in
    /// one statement: a flood of output costs a commit per burst, not per chunk. A chunk for an
    /// attempt of another lease token is refused.
    pub async fn append_logs(&self, tenant: TenantId, chunks: &[NewLogChunk<'_>], now: DateTime<Utc>) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let attempts: Vec<Uuid> = chunks.iter().map(|c| c.attempt).collect();
        let tokens: Vec<i64> = chunks.iter().map(|c| c.lease_token).collect();
        let seqs: Vec<i64> = chunks.iter().map(|c| c.seq).collect();
        let data: Vec<&[u8]> = chunks.iter().map(|c| c.data).collect();
        // Attempts are read, not locked: storing a log never waits for a run's step, nor makes
        // one wait. (`attempts.log_bytes` is no longer kept: nothing read it, and keeping it
        // locked the attempt's row for every chunk. Servers of earlier builds still add to it
        // while they run beside this one, so the column goes in a later migration.)
        sqlx::query(
            "INSERT INTO log_chunks (tenant_id, attempt_id, seq, at, data) \
             SELECT $1, c.attempt_id, c.seq, $6, c.data \
             FROM unnest($2::uuid[], $3::int8[], $4::int8[], $5::bytea[]) AS c(attempt_id, lease_token, seq, data) \
             JOIN attempts a ON a.tenant_id = $1 AND a.id = c.attempt_id AND a.lease_token = c.lease_token \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_uuid())
        .bind(&attempts)
        .bind(&tokens)
        .bind(&seqs)
        .bind(&data)
        .bind(now)
        .execute(self.shard(tenant).await?)
        .await?;
        Ok(())
    }

    /// Chunks of an attempt's log from `after_seq` (exclusive; -1 for the start), at most `limit`.
    pub async fn log_chunks(
        &self,
        tenant: TenantId,
        attempt: Uuid,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<LogChunk>> {
        Ok(sqlx::query_as(
            "SELECT seq, at, data FROM log_chunks WHERE tenant_id = $1 AND attempt_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(tenant.as_uuid())
        .bind(attempt)
        .bind(after_seq)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(self.shard(tenant).await?)
        .await?)
    }

    /// The id and state of attempt number `attempt` (or the latest) of a task of a run.
    pub async fn attempt_of(
        &self,
        tenant: TenantId,
        run: model::RunId,
        task_idx: i32,
        attempt: Option<i32>,
    ) -> Result<(Uuid, i32, String)> {
        sqlx::query_as(
            "SELECT id, attempt, state FROM attempts WHERE tenant_id = $1 AND run_id = $2 AND task_idx = $3 \
               AND ($4::int IS NULL OR attempt = $4) ORDER BY attempt DESC LIMIT 1",
        )
        .bind(tenant.as_uuid())
        .bind(run.as_uuid())
        .bind(task_idx)
        .bind(attempt)
        .fetch_optional(self.shard(tenant).await?)
        .await?
        .ok_or(StoreError::NotFound)
    }
}
