//! Runs: trigger, read, and operate (cancel, rerun, clear, mark); backfills.

use api_types::{Attempt, Backfill, CreateBackfill, Run, RunDetail, TaskRun, TriggerRun, Triggered};
use chrono::{DateTime, Utc};
use model::engine::{Event, MarkAs};
use model::state::{RunState, Trigger};
use model::workflow::Overlap;
use model::{Action, Object, RunId, TenantId, WorkflowId};
use store::{Created, NewBackfill, NewRun, RunFilter, RunRecord, StoreError};

use crate::{Caller, Result, ServiceError, Services};

/// Which part of which attempt's log.
#[derive(Clone, Copy, Debug)]
pub struct LogRange {
    /// Attempt number; None: the latest.
    pub attempt: Option<i32>,
    /// After this chunk (-1: from the start).
    pub after: i64,
    /// Chunks at most.
    pub limit: i64,
}

/// Filters a caller may give when listing runs.
#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    pub workflow: Option<String>,
    pub state: Option<RunState>,
    pub trigger: Option<Trigger>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
}

impl Services {
    async fn run_view(&self, tenant: TenantId, r: &RunRecord) -> Result<Run> {
        let name = self.store.workflow(tenant, WorkflowId(r.workflow_id)).await.map(|w| w.name).unwrap_or_default();
        Ok(Run {
            id: r.run_id(),
            workflow_id: WorkflowId(r.workflow_id),
            workflow: name,
            version: r.version,
            trigger: r.trigger.clone(),
            logical_time: r.logical_time,
            state: r.run_state(),
            params: r.params.clone(),
            queued_at: r.queued_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
        })
    }

    /// Starts a run now (or finds the one an idempotency key already made).
    pub async fn trigger(
        &self,
        caller: &Caller,
        tenant: &str,
        key: &str,
        req: &TriggerRun,
        api: bool,
        now: DateTime<Utc>,
    ) -> Result<Triggered> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Run, Action::Execute).await?;
        let tid = t.tenant_id();
        let w = self.find_workflow(tid, key).await?;
        if let Some(k) = &req.idempotency_key
            && (k.is_empty() || k.len() > 200)
        {
            return Err(ServiceError::invalid("idempotency_key must have 1 to 200 characters"));
        }
        let new = NewRun {
            workflow: w.workflow_id(),
            trigger: if api { Trigger::Api } else { Trigger::Manual },
            logical_time: req.logical_time.unwrap_or(now),
            run_key: req.idempotency_key.as_ref().map(|k| format!("key:{k}")),
            params: req.params.clone(),
            priority: 0,
            backfill: None,
            created_by: Some(caller.user_id),
            overlap: Overlap::Allow,
            parent: None,
        };
        let (id, created) =
            match self.store.create_run(tid, new, now).await.map_err(ServiceError::from_store("workflow"))? {
                Created::New(id, _) => (id, true),
                Created::Existing(id) => (id, false),
                Created::Skipped => unreachable!("manual triggers use the allow policy"),
            };
        let rec = self.store.run(tid, id).await?;
        Ok(Triggered { run: self.run_view(tid, &rec).await?, created })
    }

    pub async fn runs(&self, caller: &Caller, tenant: &str, q: &RunQuery) -> Result<Vec<Run>> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Run, Action::Read).await?;
        let tid = t.tenant_id();
        let workflow = match &q.workflow {
            Some(k) => Some(self.find_workflow(tid, k).await?.workflow_id()),
            None => None,
        };
        let filter = RunFilter {
            workflow,
            state: q.state,
            trigger: q.trigger,
            since: q.since,
            until: q.until,
            before: q.before,
            limit: q.limit.unwrap_or(50),
        };
        let mut out = Vec::new();
        for r in self.store.runs(tid, &filter).await? {
            out.push(self.run_view(tid, &r).await?);
        }
        Ok(out)
    }

    pub async fn run_detail(&self, caller: &Caller, tenant: &str, run: RunId) -> Result<RunDetail> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Run, Action::Read).await?;
        let tid = t.tenant_id();
        let r = self.store.run(tid, run).await.map_err(ServiceError::from_store("run"))?;
        let wf = self.store.compiled_workflow(tid, WorkflowId(r.workflow_id), r.version).await?;
        let tasks = self.store.task_runs(tid, run).await?;
        let attempts = self.store.attempts_of_run(tid, run).await?;
        let waiting = self.unschedulable(tid, &attempts).await?;
        let tasks = tasks
            .into_iter()
            .map(|tr| {
                let idx = usize::try_from(tr.task_idx).unwrap_or(0);
                let spec = &wf.tasks[idx];
                TaskRun {
                    id: tr.task_id.clone(),
                    kind: spec.kind.name().to_owned(),
                    state: tr.state.parse().unwrap_or(model::state::TaskState::Failed),
                    depends_on: wf.dag.upstream[idx].iter().map(|u| wf.tasks[*u].id.clone()).collect(),
                    reason: tr.reason,
                    outputs: serde_json::from_value(tr.outputs).unwrap_or_default(),
                    attempts: attempts
                        .iter()
                        .filter(|a| a.task_idx == tr.task_idx)
                        .map(|a| Attempt {
                            attempt: a.attempt,
                            state: a.state.clone(),
                            pool: a.pool.clone(),
                            worker: a.worker_id.clone(),
                            queued_at: a.queued_at,
                            started_at: a.started_at,
                            ended_at: a.ended_at,
                            error: a.error.clone(),
                            exit_code: a.exit_code,
                            unschedulable: waiting.get(&a.id).cloned(),
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(RunDetail { run: self.run_view(tid, &r).await?, tasks })
    }

    /// Why each of these queued attempts cannot be taken by any live worker (absent: it can).
    async fn unschedulable(
        &self,
        tenant: TenantId,
        attempts: &[store::AttemptRecord],
    ) -> Result<std::collections::BTreeMap<uuid::Uuid, String>> {
        let queued: Vec<uuid::Uuid> = attempts.iter().filter(|a| a.state == "queued").map(|a| a.id).collect();
        if queued.is_empty() {
            return Ok(std::collections::BTreeMap::new());
        }
        let (placements, workers) = tokio::try_join!(self.store.placements(tenant, &queued), self.store.workers())?;
        let live = store::Offer::live(&workers, Utc::now());
        Ok(placements.into_iter().filter_map(|(id, p)| Some((id, store::why_unschedulable(&p, &live)?))).collect())
    }

    async fn operate(
        &self,
        caller: &Caller,
        tenant: &str,
        run: RunId,
        event: Event,
        now: DateTime<Utc>,
    ) -> Result<RunDetail> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Run, Action::Execute).await?;
        self.store.run_event(t.tenant_id(), run, &event, now).await.map_err(ServiceError::from_store("run"))?;
        self.store
            .audit(
                t.tenant_id(),
                Some(caller.user_id),
                "run.operate",
                &format!("run:{run}"),
                serde_json::to_value(&event).unwrap_or_default(),
            )
            .await?;
        self.run_detail(caller, tenant, run).await
    }

    pub async fn cancel_run(&self, caller: &Caller, tenant: &str, run: RunId, now: DateTime<Utc>) -> Result<RunDetail> {
        self.operate(caller, tenant, run, Event::Cancel, now).await
    }

    /// Runs every task of the run again (same run, attempt numbers go on).
    pub async fn rerun(&self, caller: &Caller, tenant: &str, run: RunId, now: DateTime<Utc>) -> Result<RunDetail> {
        let tasks = self.task_count(caller, tenant, run).await?;
        self.operate(caller, tenant, run, Event::Clear { tasks: (0..tasks).collect(), downstream: false }, now).await
    }

    pub async fn rerun_failed(
        &self,
        caller: &Caller,
        tenant: &str,
        run: RunId,
        now: DateTime<Utc>,
    ) -> Result<RunDetail> {
        self.operate(caller, tenant, run, Event::RerunFailed, now).await
    }

    pub async fn clear_task(
        &self,
        caller: &Caller,
        tenant: &str,
        run: RunId,
        task: &str,
        downstream: bool,
        now: DateTime<Utc>,
    ) -> Result<RunDetail> {
        let idx = self.task_index(caller, tenant, run, task).await?;
        self.operate(caller, tenant, run, Event::Clear { tasks: vec![idx], downstream }, now).await
    }

    pub async fn mark_task(
        &self,
        caller: &Caller,
        tenant: &str,
        run: RunId,
        task: &str,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<RunDetail> {
        let to = match state {
            "succeeded" => MarkAs::Succeeded,
            "failed" => MarkAs::Failed,
            other => {
                return Err(ServiceError::invalid(format!(
                    "a task can be marked `succeeded` or `failed`, not {other:?}"
                )));
            }
        };
        let idx = self.task_index(caller, tenant, run, task).await?;
        self.operate(caller, tenant, run, Event::Mark { task: idx, state: to }, now).await
    }

    async fn task_count(&self, caller: &Caller, tenant: &str, run: RunId) -> Result<usize> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Run, Action::Read).await?;
        let r = self.store.run(t.tenant_id(), run).await.map_err(ServiceError::from_store("run"))?;
        Ok(self.store.compiled_workflow(t.tenant_id(), WorkflowId(r.workflow_id), r.version).await?.tasks.len())
    }

    async fn task_index(&self, caller: &Caller, tenant: &str, run: RunId, task: &str) -> Result<usize> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Run, Action::Read).await?;
        let r = self.store.run(t.tenant_id(), run).await.map_err(ServiceError::from_store("run"))?;
        let wf = self.store.compiled_workflow(t.tenant_id(), WorkflowId(r.workflow_id), r.version).await?;
        wf.task_index(task).ok_or(ServiceError::NotFound { what: "task" })
    }

    /// A page of a task attempt's log (the latest attempt unless `attempt` is given).
    pub async fn task_log(
        &self,
        caller: &Caller,
        tenant: &str,
        run: RunId,
        task: &str,
        range: LogRange,
    ) -> Result<api_types::LogPage> {
        let LogRange { attempt, after, limit } = range;
        let (t, _) = self.tenant_for(caller, tenant, Object::Run, Action::Read).await?;
        let idx = self.task_index(caller, tenant, run, task).await?;
        let (id, number, state) = self
            .store
            .attempt_of(t.tenant_id(), run, i32::try_from(idx).unwrap_or(0), attempt)
            .await
            .map_err(|_| ServiceError::NotFound { what: "attempt" })?;
        let chunks = self.store.log_chunks(t.tenant_id(), id, after, limit).await?;
        let last_seq = chunks.last().map_or(after, |c| c.seq);
        let text: String = chunks.iter().map(|c| String::from_utf8_lossy(&c.data)).collect();
        let finished = !matches!(state.as_str(), "queued" | "running");
        Ok(api_types::LogPage {
            attempt: number,
            complete: finished && chunks.len() < usize::try_from(limit.max(1)).unwrap_or(1),
            state,
            text,
            last_seq,
        })
    }

    /// Plans (or, with `dry_run`, previews) a backfill of the workflow's schedule ticks.
    pub async fn backfill(
        &self,
        caller: &Caller,
        tenant: &str,
        key: &str,
        req: &CreateBackfill,
        now: DateTime<Utc>,
    ) -> Result<Backfill> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Run, Action::Execute).await?;
        let tid = t.tenant_id();
        let w = self.find_workflow(tid, key).await?;
        let parallelism = req.parallelism.unwrap_or(1).max(1);
        if req.dry_run {
            store::backfill_range(req.start, req.end, now).map_err(ServiceError::invalid)?;
            let wf = self.store.compiled_workflow(tid, w.workflow_id(), w.version).await?;
            let s = wf.schedule.as_ref().ok_or_else(|| {
                ServiceError::invalid("this workflow has no schedule, so it has no logical times to backfill")
            })?;
            let mut pending = s.ticks_between(req.start, req.end, store::MAX_BACKFILL_RUNS);
            if req.newest_first {
                pending.reverse();
            }
            return Ok(Backfill {
                id: None,
                workflow_id: w.workflow_id(),
                start: req.start,
                end: req.end,
                parallelism: i32::try_from(parallelism).unwrap_or(1),
                state: "preview".into(),
                pending,
            });
        }
        let new = NewBackfill {
            workflow: w.workflow_id(),
            start: req.start,
            end: req.end,
            parallelism,
            newest_first: req.newest_first,
            params: req.params.clone(),
            created_by: Some(caller.user_id),
        };
        let b = self.store.create_backfill(tid, new, now).await.map_err(ServiceError::from_store("workflow"))?;
        Ok(backfill_view(&b))
    }

    pub async fn backfills(&self, caller: &Caller, tenant: &str) -> Result<Vec<Backfill>> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Run, Action::Read).await?;
        Ok(self.store.backfills(t.tenant_id(), None).await?.iter().map(backfill_view).collect())
    }

    pub async fn cancel_backfill(&self, caller: &Caller, tenant: &str, id: uuid::Uuid) -> Result<()> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Run, Action::Execute).await?;
        self.store.cancel_backfill(t.tenant_id(), id, Some(caller.user_id)).await.map_err(|e| match e {
            StoreError::NotFound => ServiceError::NotFound { what: "backfill" },
            other => other.into(),
        })
    }
}

fn backfill_view(b: &store::BackfillRecord) -> Backfill {
    let mut pending = b.pending.clone();
    pending.reverse(); // stored to be consumed from the end; show in the order they will run
    Backfill {
        id: Some(b.id),
        workflow_id: WorkflowId(b.workflow_id),
        start: b.start_at,
        end: b.end_at,
        parallelism: b.parallelism,
        state: b.state.clone(),
        pending,
    }
}
