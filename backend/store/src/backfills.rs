//! Backfills: a range of logical times run as schedule ticks would have been, a few at a time,
//! below fresh work in priority.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use model::state::Trigger;
use model::workflow::Overlap;
use model::{TenantId, UserId, WorkflowId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::Audit;
use crate::runs::{Created, NewRun};
use crate::{Result, ShardId, Store, StoreError};

/// Backfill runs are this much below fresh runs in priority.
pub const BACKFILL_PRIORITY: i32 = -100;
/// The most logical times one backfill may create.
pub const MAX_BACKFILL_RUNS: usize = 10_000;

pub struct NewBackfill {
    pub workflow: WorkflowId,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub parallelism: u32,
    pub newest_first: bool,
    pub params: BTreeMap<String, Value>,
    pub created_by: Option<UserId>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct BackfillRecord {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub pending: Vec<DateTime<Utc>>,
    pub parallelism: i32,
    pub newest_first: bool,
    pub state: String,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct BackfillStep {
    workflow_id: Uuid,
    pending: Vec<DateTime<Utc>>,
    parallelism: i32,
    params: Value,
    created_by: Option<Uuid>,
}

const COLS: &str =
    "tenant_id, id, workflow_id, start_at, end_at, pending, parallelism, newest_first, state, created_at";

/// Why a backfill cannot cover `[start, end]` at `now`, if it cannot.
pub fn backfill_range(start: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> std::result::Result<(), String> {
    if end < start {
        return Err("the backfill's end is before its start".into());
    }
    // A run of a tick to come would take the schedule's own run of it (one run per logical
    // time), and run it early.
    if end > now {
        return Err(format!(
            "the backfill's end {} is in the future: a backfill covers ticks that have passed (the schedule fires \
             the ones to come); end it at {} or earlier",
            end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    Ok(())
}

impl Store {
    /// Plans a backfill over the workflow's schedule ticks in `[start, end]`.
    pub async fn create_backfill(
        &self,
        tenant: TenantId,
        new: NewBackfill,
        now: DateTime<Utc>,
    ) -> Result<BackfillRecord> {
        let wf_row = self.workflow(tenant, new.workflow).await?;
        let wf = self.compiled_workflow(tenant, new.workflow, wf_row.version).await?;
        let schedule = wf.schedule.as_ref().ok_or_else(|| {
            StoreError::Invalid(
                "this workflow has no schedule, so it has no logical times to backfill: add a `schedule` first".into(),
            )
        })?;
        backfill_range(new.start, new.end, now).map_err(StoreError::Invalid)?;
        wf.resolve_params(&new.params).map_err(StoreError::Invalid)?;
        let mut ticks = schedule.ticks_between(new.start, new.end, MAX_BACKFILL_RUNS + 1);
        if ticks.is_empty() {
            return Err(StoreError::Invalid(format!(
                "the schedule `{}` has no tick between {} and {}",
                schedule.cron.as_str(),
                new.start,
                new.end
            )));
        }
        if ticks.len() > MAX_BACKFILL_RUNS {
            return Err(StoreError::Invalid(format!(
                "more than {MAX_BACKFILL_RUNS} runs: backfill a shorter range at a time"
            )));
        }
        if !new.newest_first {
            ticks.reverse(); // `pending` is consumed from its end
        }
        let mut tx = self.shard(tenant).await?.begin().await?;
        let rec: BackfillRecord = sqlx::query_as(&format!(
            "INSERT INTO backfills (tenant_id, id, workflow_id, start_at, end_at, pending, parallelism, newest_first, params, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLS}"
        ))
        .bind(tenant.as_uuid())
        .bind(Uuid::now_v7())
        .bind(new.workflow.as_uuid())
        .bind(new.start)
        .bind(new.end)
        .bind(&ticks)
        .bind(i32::try_from(new.parallelism.clamp(1, 1000)).unwrap_or(1))
        .bind(new.newest_first)
        .bind(serde_json::to_value(&new.params).expect("params serialize"))
        .bind(new.created_by.map(|u| u.as_uuid()))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        Audit {
            tenant: Some(tenant),
            actor: new.created_by,
            action: "backfill.create",
            object: format!("backfill:{}", rec.id),
            detail: json!({ "workflow": new.workflow, "runs": ticks.len(), "start": new.start, "end": new.end }),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(rec)
    }

    pub async fn backfills(&self, tenant: TenantId, workflow: Option<WorkflowId>) -> Result<Vec<BackfillRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLS} FROM backfills WHERE tenant_id = $1 AND ($2::uuid IS NULL OR workflow_id = $2) ORDER BY created_at DESC"
        ))
        .bind(tenant.as_uuid())
        .bind(workflow.map(|w| w.as_uuid()))
        .fetch_all(self.shard(tenant).await?)
        .await?)
    }

    /// Stops creating runs (runs already created go on).
    pub async fn cancel_backfill(&self, tenant: TenantId, id: Uuid, actor: Option<UserId>) -> Result<()> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let done = sqlx::query("UPDATE backfills SET state = 'cancelled', pending = '{}' WHERE tenant_id = $1 AND id = $2 AND state = 'running'")
            .bind(tenant.as_uuid())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Audit {
            tenant: Some(tenant),
            actor,
            action: "backfill.cancel",
            object: format!("backfill:{id}"),
            detail: json!({}),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Advances every running backfill of a shard: creates runs up to each one's parallelism.
    /// Returns the number of runs created.
    pub async fn step_backfills(&self, shard: ShardId, now: DateTime<Utc>) -> Result<usize> {
        let ids: Vec<(Uuid, Uuid)> = sqlx::query_as("SELECT tenant_id, id FROM backfills WHERE state = 'running'")
            .fetch_all(self.shard_pool(shard)?)
            .await?;
        let mut created = 0;
        for (tenant, id) in ids {
            let tenant = TenantId(tenant);
            let mut tx = self.shard_pool(shard)?.begin().await?;
            let row: Option<BackfillStep> = sqlx::query_as(
                "SELECT workflow_id, pending, parallelism, params, created_by FROM backfills \
                 WHERE tenant_id = $1 AND id = $2 AND state = 'running' FOR UPDATE SKIP LOCKED",
            )
            .bind(tenant.as_uuid())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(BackfillStep { workflow_id: workflow, mut pending, parallelism, params, created_by }) = row else {
                continue;
            };
            let active: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM runs WHERE tenant_id = $1 AND backfill_id = $2 AND state IN ('queued', 'running')",
            )
            .bind(tenant.as_uuid())
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let mut room = i64::from(parallelism) - active;
            while room > 0 {
                let Some(tick) = pending.pop() else { break };
                let new = NewRun {
                    workflow: WorkflowId(workflow),
                    trigger: Trigger::Backfill,
                    logical_time: tick,
                    // The same key as the schedule's tick: a backfill never doubles a scheduled run.
                    run_key: Some(format!("schedule:{}", tick.to_rfc3339())),
                    params: serde_json::from_value(params.clone()).unwrap_or_default(),
                    priority: BACKFILL_PRIORITY,
                    backfill: Some(id),
                    created_by: created_by.map(UserId),
                    overlap: Overlap::Allow,
                    parent: None,
                };
                if let Created::New(..) = self.create_run_in(&mut tx, tenant, new, now).await? {
                    created += 1;
                    room -= 1;
                }
            }
            let finished = pending.is_empty() && active == 0 && room == i64::from(parallelism);
            sqlx::query("UPDATE backfills SET pending = $3, state = CASE WHEN $4 THEN 'succeeded' ELSE state END WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(id)
                .bind(&pending)
                .bind(finished)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(created)
    }
}
