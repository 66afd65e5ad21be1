//! Workflows: apply (versioned), read, diff, roll back, delete; schedules: pause, resume, preview.

use api_types::{
    Applied, ApplyWorkflow, Diff, Preview, Schedule, TaskChange, Version, VersionDocument, Workflow, WorkflowDetail,
};
use chrono::{DateTime, Utc};
use model::cron::{CronExpr, Dialect, parse_zone};
use model::workflow::{self, WorkflowSpec, diff::diff};
use model::{Action, Object, ProjectId, TenantId, WorkflowId};
use store::{ScheduleRecord, StoreError, WorkflowRecord};

use crate::{Caller, Result, ServiceError, Services};

/// Parses a document as JSON when it looks like JSON, else as YAML.
pub fn parse_document(text: &str) -> Result<model::workflow::Workflow> {
    let parsed =
        if text.trim_start().starts_with('{') { workflow::parse_json(text) } else { workflow::parse_yaml(text) };
    parsed.map_err(ServiceError::InvalidWorkflow)
}

fn schedule_view(s: &ScheduleRecord) -> Schedule {
    let dialect = if s.dialect == "quartz" { Dialect::Quartz } else { Dialect::Unix };
    Schedule {
        description: CronExpr::parse(&s.cron, dialect).map(|c| c.describe()).unwrap_or_default(),
        cron: s.cron.clone(),
        dialect: s.dialect.clone(),
        timezone: s.timezone.clone(),
        paused: s.paused,
        catchup: s.catchup.clone(),
        overlap: s.overlap.clone(),
        next_fire_at: s.next_fire_at,
        last_fire_at: s.last_fire_at,
    }
}

impl Services {
    async fn workflow_view(&self, tenant: TenantId, w: &WorkflowRecord) -> Result<Workflow> {
        let spec = self.store.compiled_workflow(tenant, w.workflow_id(), w.version).await?;
        let project = self.store.project(tenant, ProjectId(w.project_id)).await.map(|p| p.slug).unwrap_or_default();
        let schedule = match self.store.schedule(tenant, w.workflow_id()).await {
            Ok(s) => Some(schedule_view(&s)),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Workflow {
            id: w.workflow_id(),
            project,
            name: w.name.clone(),
            version: w.version,
            description: spec.spec.description.clone(),
            tags: spec.spec.tags.clone(),
            owner: spec.spec.owner.clone(),
            task_count: spec.tasks.len(),
            schedule,
            created_at: w.created_at,
            updated_at: w.updated_at,
            last_run: None,
        })
    }

    /// Finds a workflow by id, or by name when the name is unique in the tenant.
    pub(crate) async fn find_workflow(&self, tenant: TenantId, key: &str) -> Result<WorkflowRecord> {
        if let Ok(id) = key.parse::<WorkflowId>() {
            return self.store.workflow(tenant, id).await.map_err(ServiceError::from_store("workflow"));
        }
        let matches: Vec<WorkflowRecord> =
            self.store.workflows(tenant, None).await?.into_iter().filter(|w| w.name == key).collect();
        match matches.len() {
            0 => Err(ServiceError::NotFound { what: "workflow" }),
            1 => Ok(matches.into_iter().next().expect("one")),
            _ => Err(ServiceError::Conflict {
                code: "ambiguous_workflow",
                message: format!("several projects have a workflow named {key:?}: use its id"),
            }),
        }
    }

    /// Validates and stores a document; a new version only when the content changed.
    pub async fn apply_workflow(
        &self,
        caller: &Caller,
        tenant: &str,
        req: &ApplyWorkflow,
        now: DateTime<Utc>,
    ) -> Result<Applied> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Workflow, Action::Write).await?;
        let tid = t.tenant_id();
        let project = self.store.projects(tid).await?.into_iter().find(|p| p.slug == req.project).ok_or_else(|| {
            ServiceError::Invalid {
                code: "project_not_found",
                message: format!("no project {:?} in this tenant: create it first", req.project),
            }
        })?;
        let wf = parse_document(&req.document)?;
        let layout = req.layout.as_ref().map(|l| checked_layout(l, &wf)).transpose()?;
        let (record, applied) = self
            .store
            .apply_workflow(tid, ProjectId(project.id), &wf, req.message.trim(), Some(caller.user_id), now)
            .await
            .map_err(ServiceError::from_store("workflow"))?;
        if let Some(layout) = layout {
            self.store.set_workflow_layout(tid, record.workflow_id(), &layout).await?;
        }
        Ok(Applied {
            workflow: self.workflow_view(tid, &record).await?,
            changed: applied != store::Applied::Unchanged,
            warnings: self.run_time_warnings(tid, &wf).await?,
        })
    }

    /// What the document cannot know by itself: `sql` tasks naming connections this tenant does
    /// not have. A warning, not an error: the connection may be created after the workflow.
    async fn run_time_warnings(&self, tenant: TenantId, wf: &workflow::Workflow) -> Result<Vec<String>> {
        let wanted: Vec<(&str, &str)> = wf
            .tasks
            .iter()
            .filter_map(|t| match &t.kind {
                workflow::TaskKind::Sql(c) if !model::template::is_template(&c.connection) => {
                    Some((t.id.as_str(), c.connection.as_str()))
                }
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let have: Vec<String> = self.store.connections(tenant).await?.into_iter().map(|c| c.name).collect();
        Ok(wanted
            .into_iter()
            .filter(|(_, name)| !have.iter().any(|h| h == name))
            .map(|(task, name)| {
                format!(
                    "task `{task}`: this tenant has no connection `{name}` yet; the task fails until it exists \
                     (orrery connection put {name} --url postgres://... or mysql://...)"
                )
            })
            .collect())
    }

    pub async fn workflows(&self, caller: &Caller, tenant: &str, project: Option<&str>) -> Result<Vec<Workflow>> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Workflow, Action::Read).await?;
        let tid = t.tenant_id();
        let project = match project {
            Some(key) => Some(ProjectId(
                self.store
                    .projects(tid)
                    .await?
                    .into_iter()
                    .find(|p| p.slug == key)
                    .ok_or(ServiceError::NotFound { what: "project" })?
                    .id,
            )),
            None => None,
        };
        let mut last = self.store.last_runs(tid).await?;
        let mut out = Vec::new();
        for w in self.store.workflows(tid, project).await? {
            let mut view = self.workflow_view(tid, &w).await?;
            view.last_run = last.remove(&w.id).map(|r| api_types::LastRun {
                id: model::RunId(r.id),
                state: r.state.parse().unwrap_or(model::state::RunState::Failed),
                queued_at: r.queued_at,
            });
            out.push(view);
        }
        Ok(out)
    }

    pub async fn workflow(&self, caller: &Caller, tenant: &str, key: &str) -> Result<WorkflowDetail> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Workflow, Action::Read).await?;
        let w = self.find_workflow(t.tenant_id(), key).await?;
        let spec = self.store.workflow_spec(t.tenant_id(), w.workflow_id(), w.version).await?;
        Ok(WorkflowDetail {
            workflow: self.workflow_view(t.tenant_id(), &w).await?,
            document: serde_json::to_value(spec).unwrap_or_default(),
            layout: self.store.workflow_layout(t.tenant_id(), w.workflow_id()).await?,
        })
    }

    pub async fn versions(&self, caller: &Caller, tenant: &str, key: &str) -> Result<Vec<Version>> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Workflow, Action::Read).await?;
        let w = self.find_workflow(t.tenant_id(), key).await?;
        Ok(self
            .store
            .workflow_versions(t.tenant_id(), w.workflow_id())
            .await?
            .into_iter()
            .map(|v| Version {
                current: v.version == w.version,
                version: v.version,
                message: v.message,
                created_by: v.created_by.map(model::UserId),
                created_at: v.created_at,
            })
            .collect())
    }

    pub async fn workflow_version(
        &self,
        caller: &Caller,
        tenant: &str,
        key: &str,
        version: i32,
    ) -> Result<VersionDocument> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Workflow, Action::Read).await?;
        let w = self.find_workflow(t.tenant_id(), key).await?;
        let v = self
            .store
            .workflow_versions(t.tenant_id(), w.workflow_id())
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or(ServiceError::NotFound { what: "version" })?;
        let spec = self.store.workflow_spec(t.tenant_id(), w.workflow_id(), version).await?;
        Ok(VersionDocument {
            version: Version {
                current: v.version == w.version,
                version: v.version,
                message: v.message,
                created_by: v.created_by.map(model::UserId),
                created_at: v.created_at,
            },
            document: serde_json::to_value(spec).unwrap_or_default(),
        })
    }

    async fn spec_of(&self, tenant: TenantId, id: WorkflowId, version: i32) -> Result<WorkflowSpec> {
        self.store.workflow_spec(tenant, id, version).await.map_err(ServiceError::from_store("version"))
    }

    /// What changed from version `from` to version `to` (default: the current one).
    pub async fn diff(&self, caller: &Caller, tenant: &str, key: &str, from: i32, to: Option<i32>) -> Result<Diff> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Workflow, Action::Read).await?;
        let w = self.find_workflow(t.tenant_id(), key).await?;
        let to = to.unwrap_or(w.version);
        let (a, b) = (
            self.spec_of(t.tenant_id(), w.workflow_id(), from).await?,
            self.spec_of(t.tenant_id(), w.workflow_id(), to).await?,
        );
        let d = diff(&a, &b);
        Ok(Diff {
            from,
            to,
            added: d.added,
            removed: d.removed,
            changed: d.changed.into_iter().map(|c| TaskChange { id: c.id, fields: c.fields }).collect(),
            settings: d.settings,
        })
    }

    /// A new version whose content is that of `version`.
    pub async fn rollback(
        &self,
        caller: &Caller,
        tenant: &str,
        key: &str,
        version: i32,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Applied> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Workflow, Action::Write).await?;
        let w = self.find_workflow(t.tenant_id(), key).await?;
        let spec = self.spec_of(t.tenant_id(), w.workflow_id(), version).await?;
        let wf = workflow::validate(spec).map_err(ServiceError::InvalidWorkflow)?;
        let message = if message.trim().is_empty() {
            format!("rollback to version {version}")
        } else {
            message.trim().to_owned()
        };
        let (record, applied) = self
            .store
            .apply_workflow(t.tenant_id(), ProjectId(w.project_id), &wf, &message, Some(caller.user_id), now)
            .await
            .map_err(ServiceError::from_store("workflow"))?;
        Ok(Applied {
            workflow: self.workflow_view(t.tenant_id(), &record).await?,
            changed: applied != store::Applied::Unchanged,
            warnings: self.run_time_warnings(t.tenant_id(), &wf).await?,
        })
    }

    pub async fn delete_workflow(&self, caller: &Caller, tenant: &str, key: &str) -> Result<()> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Workflow, Action::Write).await?;
        let w = self.find_workflow(t.tenant_id(), key).await?;
        self.store
            .delete_workflow(t.tenant_id(), w.workflow_id(), Some(caller.user_id))
            .await
            .map_err(ServiceError::from_store("workflow"))
    }

    pub async fn set_paused(&self, caller: &Caller, tenant: &str, key: &str, paused: bool) -> Result<Schedule> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Schedule, Action::Execute).await?;
        let w = self.find_workflow(t.tenant_id(), key).await?;
        let s = self
            .store
            .set_schedule_paused(t.tenant_id(), w.workflow_id(), paused, Some(caller.user_id))
            .await
            .map_err(ServiceError::from_store("schedule"))?;
        Ok(schedule_view(&s))
    }

    /// The schedule's next fires, computed by the same code the scheduler runs.
    pub async fn preview_schedule(
        &self,
        caller: &Caller,
        tenant: &str,
        key: &str,
        count: usize,
        now: DateTime<Utc>,
    ) -> Result<Preview> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Schedule, Action::Read).await?;
        let w = self.find_workflow(t.tenant_id(), key).await?;
        let wf = self.store.compiled_workflow(t.tenant_id(), w.workflow_id(), w.version).await?;
        let s = wf.schedule.as_ref().ok_or(ServiceError::NotFound { what: "schedule" })?;
        let from = s.start.map_or(now, |st| st.max(now));
        let next = s
            .cron
            .next_fires(s.zone, from, count.clamp(1, 100))
            .into_iter()
            .filter(|t| s.end.is_none_or(|e| *t <= e))
            .collect();
        Ok(Preview {
            expression: s.cron.as_str().to_owned(),
            timezone: s.zone.name().to_owned(),
            description: s.cron.describe(),
            next,
        })
    }
}

/// A layout keeps only positions of the workflow's own tasks, as finite numbers.
fn checked_layout(layout: &serde_json::Value, wf: &workflow::Workflow) -> Result<serde_json::Value> {
    let bad = || ServiceError::invalid("layout must map task ids to {\"x\": number, \"y\": number}");
    let map = layout.as_object().ok_or_else(bad)?;
    let mut out = serde_json::Map::new();
    for (id, p) in map {
        let (x, y) = (p["x"].as_f64().ok_or_else(bad)?, p["y"].as_f64().ok_or_else(bad)?);
        if !x.is_finite() || !y.is_finite() {
            return Err(bad());
        }
        if wf.task_index(id).is_some() {
            out.insert(id.clone(), serde_json::json!({ "x": x, "y": y }));
        }
    }
    Ok(serde_json::Value::Object(out))
}

/// Next fires of any expression (no tenant, no database): the console's and the CLI's preview.
pub fn preview_expression(
    expr: &str,
    dialect: Dialect,
    zone: &str,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Preview> {
    let cron = CronExpr::parse(expr, dialect).map_err(|e| ServiceError::invalid(e.to_string()))?;
    let tz = parse_zone(zone).map_err(|e| ServiceError::invalid(e.to_string()))?;
    Ok(Preview {
        expression: cron.as_str().to_owned(),
        timezone: tz.name().to_owned(),
        description: cron.describe(),
        next: cron.next_fires(tz, after, count.clamp(1, 1000)),
    })
}
