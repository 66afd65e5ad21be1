//! Workflows and their immutable versions, and the schedule each current version defines.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use model::workflow::{Workflow, WorkflowSpec};
use model::{ProjectId, TenantId, UserId, WorkflowId};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::audit::Audit;
use crate::{Result, Store, StoreError};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WorkflowRecord {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WorkflowRecord {
    pub fn workflow_id(&self) -> WorkflowId {
        WorkflowId(self.id)
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct VersionRecord {
    pub version: i32,
    pub message: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub spec_sha256: Vec<u8>,
}

/// What `apply_workflow` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    NewVersion {
        previous: i32,
    },
    /// The content equals the current version: nothing was written.
    Unchanged,
}

/// A workflow's schedule as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ScheduleRecord {
    pub tenant_id: Uuid,
    pub workflow_id: Uuid,
    pub cron: String,
    pub dialect: String,
    pub timezone: String,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub catchup: String,
    pub max_catchup: i32,
    pub overlap: String,
    pub paused: bool,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub last_fire_at: Option<DateTime<Utc>>,
}

const WF_COLS: &str = "tenant_id, id, project_id, name, version, created_at, updated_at";
pub(crate) const SCHEDULE_COLS: &str = "tenant_id, workflow_id, cron, dialect, timezone, start_at, end_at, catchup, max_catchup, overlap, paused, next_fire_at, last_fire_at";

/// The notification channel that tells the scheduler a schedule changed: payload `tenant/workflow`.
pub const SCHEDULE_CHANNEL: &str = "orrery_schedules";

/// Tells the schedulers a schedule changed, in the transaction that changes it: delivered when it
/// commits, and only then (a notification sent after the commit could fail alone, and the
/// change go unheard until the shard's lease moved).
async fn notify_schedule_change(tx: &mut sqlx::PgConnection, tenant: TenantId, workflow: WorkflowId) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(SCHEDULE_CHANNEL)
        .bind(format!("{tenant}/{workflow}"))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

fn spec_hash(spec: &WorkflowSpec) -> Vec<u8> {
    Sha256::digest(serde_json::to_vec(spec).expect("a spec serializes")).to_vec()
}

fn str_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The first fire of a schedule at or after `now` (and its start), or None past its end.
pub fn first_fire(s: &model::workflow::Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let from = match s.start {
        Some(start) if start > now => start - chrono::Duration::seconds(1),
        _ => now,
    };
    s.cron.next_after(s.zone, from).filter(|t| s.end.is_none_or(|end| *t <= end))
}

impl Store {
    /// Creates the workflow, or adds a version when the content changed. The schedule follows
    /// the new current version in the same transaction.
    pub async fn apply_workflow(
        &self,
        tenant: TenantId,
        project: ProjectId,
        workflow: &Workflow,
        message: &str,
        actor: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<(WorkflowRecord, Applied)> {
        let hash = spec_hash(&workflow.spec);
        let spec_json = serde_json::to_value(&workflow.spec).expect("a spec serializes");
        let mut tx = self.shard(tenant).await?.begin().await?;
        let project_exists: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM projects WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(project.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
        if project_exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let existing: Option<WorkflowRecord> = sqlx::query_as(&format!(
            "SELECT {WF_COLS} FROM workflows WHERE tenant_id = $1 AND project_id = $2 AND name = $3 FOR UPDATE"
        ))
        .bind(tenant.as_uuid())
        .bind(project.as_uuid())
        .bind(workflow.name())
        .fetch_optional(&mut *tx)
        .await?;
        let (record, applied) = match existing {
            Some(w) => {
                let current: Vec<u8> = sqlx::query_scalar(
                    "SELECT spec_sha256 FROM workflow_versions WHERE tenant_id = $1 AND workflow_id = $2 AND version = $3",
                )
                .bind(tenant.as_uuid())
                .bind(w.id)
                .bind(w.version)
                .fetch_one(&mut *tx)
                .await?;
                if current == hash {
                    return Ok((w, Applied::Unchanged));
                }
                let rec: WorkflowRecord = sqlx::query_as(&format!(
                    "UPDATE workflows SET version = version + 1, updated_at = $3 WHERE tenant_id = $1 AND id = $2 RETURNING {WF_COLS}"
                ))
                .bind(tenant.as_uuid())
                .bind(w.id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                (rec, Applied::NewVersion { previous: w.version })
            }
            None => {
                let rec: WorkflowRecord = sqlx::query_as(&format!(
                    "INSERT INTO workflows (tenant_id, id, project_id, name, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 1, $5, $5) RETURNING {WF_COLS}"
                ))
                .bind(tenant.as_uuid())
                .bind(Uuid::now_v7())
                .bind(project.as_uuid())
                .bind(workflow.name())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                (rec, Applied::Created)
            }
        };
        sqlx::query(
            "INSERT INTO workflow_versions (tenant_id, workflow_id, version, spec, spec_sha256, message, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(tenant.as_uuid())
        .bind(record.id)
        .bind(record.version)
        .bind(&spec_json)
        .bind(&hash)
        .bind(message)
        .bind(actor.map(|a| a.as_uuid()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.write_schedule(&mut tx, tenant, record.workflow_id(), workflow, now).await?;
        Audit {
            tenant: Some(tenant),
            actor,
            action: "workflow.apply",
            object: format!("workflow:{}", record.id),
            detail: json!({ "name": record.name, "version": record.version, "message": message }),
        }
        .write(&mut tx)
        .await?;
        notify_schedule_change(&mut tx, tenant, record.workflow_id()).await?;
        tx.commit().await?;
        Ok((record, applied))
    }

    /// Upserts (or removes) the schedule for the current version. An unchanged definition keeps
    /// its next fire; a changed one restarts from `now`. Pausing is kept across versions unless
    /// the document itself says `paused: true`.
    async fn write_schedule(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: TenantId,
        workflow: WorkflowId,
        wf: &Workflow,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let Some(s) = &wf.schedule else {
            sqlx::query("DELETE FROM schedules WHERE tenant_id = $1 AND workflow_id = $2")
                .bind(tenant.as_uuid())
                .bind(workflow.as_uuid())
                .execute(&mut *tx)
                .await?;
            return Ok(());
        };
        let old: Option<ScheduleRecord> =
            sqlx::query_as(&format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE tenant_id = $1 AND workflow_id = $2"))
                .bind(tenant.as_uuid())
                .bind(workflow.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
        let same_timing = old.as_ref().is_some_and(|o| {
            o.cron == s.cron.as_str()
                && o.dialect == s.cron.dialect().to_string()
                && o.timezone == s.zone.name()
                && o.start_at == s.start
                && o.end_at == s.end
        });
        let next = match &old {
            Some(o) if same_timing => o.next_fire_at,
            _ => first_fire(s, now),
        };
        let paused = s.paused || old.as_ref().is_some_and(|o| o.paused);
        sqlx::query(
            "INSERT INTO schedules (tenant_id, workflow_id, cron, dialect, timezone, start_at, end_at, catchup, max_catchup, overlap, paused, next_fire_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (tenant_id, workflow_id) DO UPDATE SET cron = EXCLUDED.cron, dialect = EXCLUDED.dialect, \
               timezone = EXCLUDED.timezone, start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at, catchup = EXCLUDED.catchup, \
               max_catchup = EXCLUDED.max_catchup, overlap = EXCLUDED.overlap, paused = EXCLUDED.paused, \
               next_fire_at = EXCLUDED.next_fire_at, updated_at = EXCLUDED.updated_at",
        )
        .bind(tenant.as_uuid())
        .bind(workflow.as_uuid())
        .bind(s.cron.as_str())
        .bind(s.cron.dialect().to_string())
        .bind(s.zone.name())
        .bind(s.start)
        .bind(s.end)
        .bind(str_of(&s.catchup))
        .bind(i32::try_from(s.max_catchup).unwrap_or(i32::MAX))
        .bind(str_of(&s.overlap))
        .bind(paused)
        .bind(next)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    pub async fn workflows(&self, tenant: TenantId, project: Option<ProjectId>) -> Result<Vec<WorkflowRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {WF_COLS} FROM workflows WHERE tenant_id = $1 AND ($2::uuid IS NULL OR project_id = $2) ORDER BY name"
        ))
        .bind(tenant.as_uuid())
        .bind(project.map(|p| p.as_uuid()))
        .fetch_all(self.shard(tenant).await?)
        .await?)
    }

    pub async fn workflow(&self, tenant: TenantId, id: WorkflowId) -> Result<WorkflowRecord> {
        sqlx::query_as(&format!("SELECT {WF_COLS} FROM workflows WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(self.shard(tenant).await?)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Where the console placed each task (task id → `{x, y}`), if it ever saved a layout.
    pub async fn workflow_layout(&self, tenant: TenantId, id: WorkflowId) -> Result<Option<serde_json::Value>> {
        sqlx::query_scalar("SELECT layout FROM workflows WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(self.shard(tenant).await?)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Keeps the console's layout of a workflow (not a new version: positions are not content).
    pub async fn set_workflow_layout(
        &self,
        tenant: TenantId,
        id: WorkflowId,
        layout: &serde_json::Value,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE workflows SET layout = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .bind(layout)
            .execute(self.shard(tenant).await?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn workflow_by_name(&self, tenant: TenantId, project: ProjectId, name: &str) -> Result<WorkflowRecord> {
        sqlx::query_as(&format!(
            "SELECT {WF_COLS} FROM workflows WHERE tenant_id = $1 AND project_id = $2 AND name = $3"
        ))
        .bind(tenant.as_uuid())
        .bind(project.as_uuid())
        .bind(name)
        .fetch_optional(self.shard(tenant).await?)
        .await?
        .ok_or(StoreError::NotFound)
    }

    pub async fn workflow_versions(&self, tenant: TenantId, id: WorkflowId) -> Result<Vec<VersionRecord>> {
        let rows: Vec<VersionRecord> = sqlx::query_as(
            "SELECT version, message, created_by, created_at, spec_sha256 FROM workflow_versions \
             WHERE tenant_id = $1 AND workflow_id = $2 ORDER BY version DESC",
        )
        .bind(tenant.as_uuid())
        .bind(id.as_uuid())
        .fetch_all(self.shard(tenant).await?)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound);
        }
        Ok(rows)
    }

    /// A version's document.
    pub async fn workflow_spec(&self, tenant: TenantId, id: WorkflowId, version: i32) -> Result<WorkflowSpec> {
        let spec: serde_json::Value = sqlx::query_scalar(
            "SELECT spec FROM workflow_versions WHERE tenant_id = $1 AND workflow_id = $2 AND version = $3",
        )
        .bind(tenant.as_uuid())
        .bind(id.as_uuid())
        .bind(version)
        .fetch_optional(self.shard(tenant).await?)
        .await?
        .ok_or(StoreError::NotFound)?;
        serde_json::from_value(spec).map_err(|e| StoreError::Corrupt(format!("workflow {id} version {version}: {e}")))
    }

    /// A version, checked and cached (versions never change, so the cache never goes stale).
    pub async fn compiled_workflow(&self, tenant: TenantId, id: WorkflowId, version: i32) -> Result<Arc<Workflow>> {
        if let Some(w) = self.cached_workflow(tenant, id, version) {
            return Ok(w);
        }
        let spec = self.workflow_spec(tenant, id, version).await?;
        let wf =
            Arc::new(model::workflow::validate(spec).map_err(|e| {
                StoreError::Corrupt(format!("workflow {id} version {version} no longer validates: {e}"))
            })?);
        self.cache_workflow(tenant, id, version, wf.clone());
        Ok(wf)
    }

    pub async fn delete_workflow(&self, tenant: TenantId, id: WorkflowId, actor: Option<UserId>) -> Result<()> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let done = sqlx::query("DELETE FROM workflows WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Audit {
            tenant: Some(tenant),
            actor,
            action: "workflow.delete",
            object: format!("workflow:{id}"),
            detail: json!({}),
        }
        .write(&mut tx)
        .await?;
        notify_schedule_change(&mut tx, tenant, id).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn schedule(&self, tenant: TenantId, workflow: WorkflowId) -> Result<ScheduleRecord> {
        sqlx::query_as(&format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE tenant_id = $1 AND workflow_id = $2"))
            .bind(tenant.as_uuid())
            .bind(workflow.as_uuid())
            .fetch_optional(self.shard(tenant).await?)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Pauses or resumes a schedule. Resuming starts from the next tick after `now`, subject to
    /// the schedule's catch-up policy for the ticks missed while paused.
    pub async fn set_schedule_paused(
        &self,
        tenant: TenantId,
        workflow: WorkflowId,
        paused: bool,
        actor: Option<UserId>,
    ) -> Result<ScheduleRecord> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let rec: ScheduleRecord = sqlx::query_as(&format!(
            "UPDATE schedules SET paused = $3, updated_at = now() WHERE tenant_id = $1 AND workflow_id = $2 RETURNING {SCHEDULE_COLS}"
        ))
        .bind(tenant.as_uuid())
        .bind(workflow.as_uuid())
        .bind(paused)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        Audit {
            tenant: Some(tenant),
            actor,
            action: if paused { "schedule.pause" } else { "schedule.resume" },
            object: format!("workflow:{workflow}"),
            detail: json!({}),
        }
        .write(&mut tx)
        .await?;
        notify_schedule_change(&mut tx, tenant, workflow).await?;
        tx.commit().await?;
        Ok(rec)
    }
}
