//! Firing schedules: one transaction per fire, fenced by the shard lease's token.

use chrono::{DateTime, Utc};
use model::cron::{CronExpr, Dialect, parse_zone};
use model::state::Trigger;
use model::workflow::{Catchup, Overlap};
use model::{TenantId, WorkflowId};
use uuid::Uuid;

use crate::runs::{Created, NewRun};
use crate::workflows::{SCHEDULE_COLS, ScheduleRecord};
use crate::{Result, ShardId, Store, StoreError};

/// A fire this late is still "on time" for `catchup: skip`.
pub const ON_TIME_GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// One schedule's next fire, as the scheduler's timing wheel holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueSchedule {
    pub tenant: TenantId,
    pub workflow: WorkflowId,
    pub next_fire_at: DateTime<Utc>,
}

/// What a fire did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    /// The runs created (or found, on a replayed tick), one per tick fired.
    pub runs: Vec<Created>,
    /// The next tick, for the wheel (None: paused, ended, or gone).
    pub next: Option<DateTime<Utc>>,
}

impl ScheduleRecord {
    fn expr(&self) -> Result<(CronExpr, chrono_tz::Tz)> {
        let dialect = if self.dialect == "quartz" { Dialect::Quartz } else { Dialect::Unix };
        let cron = CronExpr::parse(&self.cron, dialect).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let zone = parse_zone(&self.timezone).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok((cron, zone))
    }
}

fn parse_enum<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).unwrap_or_default()
}

impl Store {
    /// Every active schedule of a shard, for loading a timing wheel.
    pub async fn due_schedules(&self, shard: ShardId) -> Result<Vec<DueSchedule>> {
        let rows: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT tenant_id, workflow_id, next_fire_at FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL",
        )
        .fetch_all(self.shard_pool(shard)?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(t, w, n)| DueSchedule { tenant: TenantId(t), workflow: WorkflowId(w), next_fire_at: n })
            .collect())
    }

    /// One schedule's next fire (after a change notification); None when paused or gone.
    pub async fn schedule_next(&self, tenant: TenantId, workflow: WorkflowId) -> Result<Option<DateTime<Utc>>> {
        let next: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            "SELECT next_fire_at FROM schedules WHERE tenant_id = $1 AND workflow_id = $2 AND NOT paused",
        )
        .bind(tenant.as_uuid())
        .bind(workflow.as_uuid())
        .fetch_optional(self.shard(tenant).await?)
        .await?;
        Ok(next.flatten())
    }

    /// Fires the tick `expected` of a schedule (and, by its catch-up policy, ticks missed since),
    /// in ONE transaction: the runs (unique per tick, so a replay creates nothing), their root
    /// tasks enqueued, and the schedule advanced. `fence` is the shard lease token; a holder whose
    /// lease was taken over is refused with `Stale`.
    pub async fn fire_schedule(
        &self,
        tenant: TenantId,
        workflow: WorkflowId,
        expected: DateTime<Utc>,
        fence: i64,
        now: DateTime<Utc>,
    ) -> Result<Fired> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let seen: i64 = sqlx::query_scalar(
            "INSERT INTO shard_fence (only_row, token) VALUES (true, $1) \
             ON CONFLICT (only_row) DO UPDATE SET token = GREATEST(shard_fence.token, EXCLUDED.token) RETURNING token",
        )
        .bind(fence)
        .fetch_one(&mut *tx)
        .await?;
        if seen > fence {
            return Err(StoreError::Stale);
        }
        let s: Option<ScheduleRecord> = sqlx::query_as(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE tenant_id = $1 AND workflow_id = $2 FOR UPDATE"
        ))
        .bind(tenant.as_uuid())
        .bind(workflow.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(s) = s else { return Ok(Fired { runs: vec![], next: None }) };
        if s.paused || s.next_fire_at != Some(expected) {
            // Already fired (a replay), or changed meanwhile: nothing to do but report the truth.
            return Ok(Fired { runs: vec![], next: if s.paused { None } else { s.next_fire_at } });
        }
        let (cron, zone) = s.expr()?;
        let catchup: Catchup = parse_enum(&s.catchup);
        let overlap: Overlap = parse_enum(&s.overlap);
        // Every tick due by now, oldest first, bounded.
        let mut due = std::collections::VecDeque::from([expected]);
        let bound = usize::try_from(s.max_catchup).unwrap_or(100).max(1) + 1;
        while let Some(t) = cron.next_after(zone, *due.back().expect("not empty")) {
            if t > now || s.end_at.is_some_and(|e| t > e) {
                break;
            }
            due.push_back(t);
            if due.len() > bound {
                due.pop_front();
            }
        }
        let latest = *due.back().expect("not empty");
        let fire: Vec<DateTime<Utc>> = match catchup {
            Catchup::All => due.iter().rev().take(bound - 1).rev().copied().collect(),
            Catchup::Latest => vec![latest],
            Catchup::Skip if now - latest <= ON_TIME_GRACE => vec![latest],
            Catchup::Skip => vec![],
        };
        let mut runs = Vec::new();
        for tick in &fire {
            let new = NewRun {
                workflow,
                trigger: Trigger::Schedule,
                logical_time: *tick,
                run_key: Some(format!("schedule:{}", tick.to_rfc3339())),
                params: Default::default(),
                priority: 0,
                backfill: None,
                created_by: None,
                overlap,
                parent: None,
            };
            runs.push(self.create_run_in(&mut tx, tenant, new, now).await?);
        }
        let next = cron.next_after(zone, latest.max(now)).filter(|t| s.end_at.is_none_or(|e| *t <= e));
        sqlx::query("UPDATE schedules SET next_fire_at = $3, last_fire_at = COALESCE($4, last_fire_at), updated_at = $5 WHERE tenant_id = $1 AND workflow_id = $2")
            .bind(tenant.as_uuid())
            .bind(workflow.as_uuid())
            .bind(next)
            .bind(fire.last())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Fired { runs, next })
    }
}
