//! What the console summarizes: each workflow's latest run, and a tenant's runs since a moment
//! (by state, scheduling delay, the workflows that fail most).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use model::TenantId;
use uuid::Uuid;

use crate::{Result, Store};

/// A workflow's most recent run.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LastRun {
    pub workflow_id: Uuid,
    pub id: Uuid,
    pub state: String,
    pub queued_at: DateTime<Utc>,
}

/// An attempt of the tenant's that a worker runs now.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RunningAttempt {
    pub worker_id: String,
    pub run_id: Uuid,
    pub task_id: String,
    pub workflow: String,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
}

/// A tenant's runs whose logical time is at or after a moment: the same runs the run list shows
/// for `since` (so a number on the dashboard and the list it links to agree).
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// The runs, by state.
    pub by_state: Vec<(String, i64)>,
    /// Seconds from a scheduled run's logical time to its first task's start: p50 and p95
    /// (None without such runs).
    pub delay_p50: Option<f64>,
    pub delay_p95: Option<f64>,
    /// Workflows with failed runs among them, most failures first: (id, name, failed runs).
    pub failing: Vec<(Uuid, String, i64)>,
}

impl Store {
    /// Each workflow's latest run (by queue time), for the workflow list.
    pub async fn last_runs(&self, tenant: TenantId) -> Result<HashMap<Uuid, LastRun>> {
        let rows: Vec<LastRun> = sqlx::query_as(
            "SELECT DISTINCT ON (workflow_id) workflow_id, id, state, queued_at FROM runs \
             WHERE tenant_id = $1 ORDER BY workflow_id, queued_at DESC, id DESC",
        )
        .bind(tenant.as_uuid())
        .fetch_all(self.shard(tenant).await?)
        .await?;
        Ok(rows.into_iter().map(|r| (r.workflow_id, r)).collect())
    }

    /// The tenant's attempts running now, on whichever worker, oldest first (at most 1,000).
    pub async fn running_attempts(&self, tenant: TenantId) -> Result<Vec<RunningAttempt>> {
        Ok(sqlx::query_as(
            "SELECT a.worker_id, a.run_id, t.task_id, w.name AS workflow, a.attempt, a.started_at FROM attempts a \
             JOIN task_runs t ON t.tenant_id = a.tenant_id AND t.run_id = a.run_id AND t.task_idx = a.task_idx \
             JOIN runs r ON r.tenant_id = a.tenant_id AND r.id = a.run_id \
             JOIN workflows w ON w.tenant_id = r.tenant_id AND w.id = r.workflow_id \
             WHERE a.tenant_id = $1 AND a.state = 'running' AND a.worker_id IS NOT NULL \
             ORDER BY a.started_at LIMIT 1000",
        )
        .bind(tenant.as_uuid())
        .fetch_all(self.shard(tenant).await?)
        .await?)
    }

    pub async fn run_stats(&self, tenant: TenantId, since: DateTime<Utc>) -> Result<RunStats> {
        let pool = self.shard(tenant).await?;
        let by_state: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM runs WHERE tenant_id = $1 AND logical_time >= $2 GROUP BY state ORDER BY state",
        )
        .bind(tenant.as_uuid())
        .bind(since)
        .fetch_all(pool)
        .await?;
        let (delay_p50, delay_p95): (Option<f64>, Option<f64>) = sqlx::query_as(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d), percentile_cont(0.95) WITHIN GROUP (ORDER BY d) FROM ( \
               SELECT extract(epoch FROM min(a.started_at) - r.logical_time)::float8 AS d \
               FROM runs r JOIN attempts a ON a.tenant_id = r.tenant_id AND a.run_id = r.id \
               WHERE r.tenant_id = $1 AND r.trigger = 'schedule' AND r.logical_time >= $2 AND a.started_at IS NOT NULL \
               GROUP BY r.id, r.logical_time) x",
        )
        .bind(tenant.as_uuid())
        .bind(since)
        .fetch_one(pool)
        .await?;
        let failing: Vec<(Uuid, String, i64)> = sqlx::query_as(
            "SELECT w.id, w.name, count(*) AS n FROM runs r JOIN workflows w ON w.tenant_id = r.tenant_id AND w.id = r.workflow_id \
             WHERE r.tenant_id = $1 AND r.state = 'failed' AND r.logical_time >= $2 \
             GROUP BY w.id, w.name ORDER BY n DESC, w.name LIMIT 10",
        )
        .bind(tenant.as_uuid())
        .bind(since)
        .fetch_all(pool)
        .await?;
        Ok(RunStats { by_state, delay_p50, delay_p95, failing })
    }
}
