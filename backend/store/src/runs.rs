//! Runs: creation (exactly once per key), and the engine's decisions applied in one
//! transaction per event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use model::engine::{self, Effect, Event, RunView, TaskView};
use model::state::{RunState, Trigger};
use model::workflow::{Overlap, Workflow};
use model::{RunId, TenantId, UserId, WorkflowId};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::queue::{Claimed, Fresh, HandOff, TenantCandidate, bind_offer, candidates_sql, plan_hand_off};
use crate::{Result, Store, StoreError};

/// The channel that wakes claimers: payload is the pool name.
pub const QUEUE_CHANNEL: &str = "orrery_queue";

/// Who wakes the claimers of the attempts a step makes ready.
pub(crate) enum Wake<'a, 'r> {
    /// The step's own statement NOTIFYs their pools (delivered at commit).
    Now,
    /// As `Now`, inside one of the queue's transactions (on its pool: `QUEUE_SETTINGS`), as every `Deferred` is:
    /// the step is written by the queue's copy of the statement, whose kept plan is made under
    /// the queue's settings ([`step_write_sql`]).
    NowInQueue,
    /// The caller claims in the same transaction and NOTIFYs only the pools of what it left:
    /// `(pool, attempt id)` of each attempt made ready now. With a hand-off, the step may start
    /// some of them for the claiming worker at once (they never enter the queue).
    Deferred(&'a mut Vec<(String, Uuid)>, Option<&'a mut HandOff<'r>>),
}

impl<'r> Wake<'_, 'r> {
    /// For other runs' events in the same transaction (a child cancelled, a queued run
    /// admitted): they wake claimers themselves, and write with this transaction's statement.
    fn for_others(&self) -> Wake<'static, 'static> {
        match self {
            Wake::Now => Wake::Now,
            Wake::NowInQueue | Wake::Deferred(..) => Wake::NowInQueue,
        }
    }

    fn hand_off(&mut self) -> Option<&mut HandOff<'r>> {
        match self {
            Wake::Deferred(_, h) => h.as_deref_mut(),
            Wake::Now | Wake::NowInQueue => None,
        }
    }
}

/// Whether the caller's transaction already holds the run's row lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locked {
    Yes,
    No,
}

/// A run to create.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub workflow: WorkflowId,
    pub trigger: Trigger,
    pub logical_time: DateTime<Utc>,
    /// Unique per workflow; None gives a fresh one (every call creates a run).
    pub run_key: Option<String>,
    pub params: BTreeMap<String, Value>,
    /// Added to every task's priority (negative for backfills).
    pub priority: i32,
    pub backfill: Option<Uuid>,
    pub created_by: Option<UserId>,
    /// For schedule fires: what to do about runs still active.
    pub overlap: Overlap,
    /// The run and task this is a sub-workflow of.
    pub parent: Option<(RunId, i32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// A new run, in this state.
    New(RunId, RunState),
    /// The key was used before: this is that run, unchanged.
    Existing(RunId),
    /// The overlap policy `skip` dropped the fire.
    Skipped,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RunRecord {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub version: i32,
    pub trigger: String,
    pub logical_time: DateTime<Utc>,
    pub run_key: String,
    pub state: String,
    pub params: Value,
    pub priority: i32,
    pub backfill_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    pub fn run_id(&self) -> RunId {
        RunId(self.id)
    }

    pub fn run_state(&self) -> RunState {
        self.state.parse().unwrap_or(RunState::Failed)
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TaskRunRecord {
    pub task_idx: i32,
    pub task_id: String,
    pub state: String,
    pub attempts: i32,
    pub attempts_at_clear: i32,
    pub outputs: Value,
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AttemptRecord {
    pub id: Uuid,
    pub task_idx: i32,
    pub attempt: i32,
    pub state: String,
    pub pool: String,
    pub worker_id: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
}

/// Filters for listing runs.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub workflow: Option<WorkflowId>,
    pub state: Option<RunState>,
    pub trigger: Option<Trigger>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Runs older than this one (by queue time), for paging.
    pub before: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// Queued runs looked at past the room a run's end frees, for those `queue` holds behind a
/// running scheduled run.
const ADMIT_LOOKAHEAD: usize = 64;

/// A workflow's queued and running runs, oldest first: (id, state, trigger).
async fn active_runs(
    tx: &mut PgConnection,
    tenant: TenantId,
    workflow: WorkflowId,
) -> Result<Vec<(Uuid, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, state, trigger FROM runs WHERE tenant_id = $1 AND workflow_id = $2 AND state IN ('queued', 'running') ORDER BY logical_time",
    )
    .bind(tenant.as_uuid())
    .bind(workflow.as_uuid())
    .fetch_all(&mut *tx)
    .await?)
}

pub(crate) const RUN_COLS: &str = "tenant_id, id, workflow_id, version, trigger, logical_time, run_key, state, params, priority, backfill_id, created_by, queued_at, started_at, ended_at";

/// A run's task rows, column by column, joined to a statement reading `runs`: [`TASK_COLS`] names
/// them. Arrays, not one JSON value built row by row: less for PostgreSQL to build and for us to
/// parse, at every step. The five arrays aggregate the same rows in one pass, so they line up; the
/// rows usually come in task order (the subquery's ORDER BY, met by walking `task_runs_pkey`, is
/// kept from the aggregates by `OFFSET 0`), but an aggregate's input order is not promised (a
/// parallel one would mix it), so each row carries its index and [`task_views`] places it by that.
const TASKS_JOIN: &str = "CROSS JOIN LATERAL (SELECT array_agg(x.task_idx) AS task_idxs, array_agg(x.state) AS task_states, \
       array_agg(x.attempts) AS task_attempts, array_agg(x.attempts_at_clear) AS task_at_clear, array_agg(x.outputs) AS task_outputs \
       FROM (SELECT t.task_idx, t.state, t.attempts, t.attempts_at_clear, t.outputs FROM task_runs t \
         WHERE t.tenant_id = runs.tenant_id AND t.run_id = runs.id ORDER BY t.task_idx OFFSET 0) x) tasks";
const TASK_COLS: &str =
    "tasks.task_idxs, tasks.task_states, tasks.task_attempts, tasks.task_at_clear, tasks.task_outputs";

/// A run and its tasks, by key ([`RunWithTasks`]). The caller's transaction holds the run's lock.
static LOAD_SQL: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {RUN_COLS}, {TASK_COLS} FROM runs {TASKS_JOIN} WHERE runs.tenant_id = $1 AND runs.id = $2")
});
/// [`LOAD_SQL`] with the claim's candidates for a hand-off (the worker's offer in `$3..$9`).
static LOAD_HAND_OFF_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {RUN_COLS}, {TASK_COLS}, (SELECT json_agg(c) FROM ({cands}) c) AS cands \
         FROM runs {TASKS_JOIN} WHERE runs.tenant_id = $1 AND runs.id = $2",
        cands = candidates_sql(3, Some(1))
    )
});
/// Several runs and their tasks, by key (`$1`, `$2`: tenants and ids).
static LOAD_MANY_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT x.* FROM unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, id) \
         CROSS JOIN LATERAL (SELECT {RUN_COLS}, {TASK_COLS} FROM runs {TASKS_JOIN} \
           WHERE runs.tenant_id = k.tenant_id AND runs.id = k.id OFFSET 0) x"
    )
});

/// The engine's view of a run, from its row and its tasks.
fn run_view<'w>(wf: &'w Workflow, rec: &RunRecord, tasks: Vec<TaskView>) -> RunView<'w> {
    RunView {
        workflow: wf,
        run_id: rec.id.to_string(),
        state: rec.run_state(),
        logical_time: rec.logical_time,
        zone: wf.schedule.as_ref().map_or(chrono_tz::Tz::UTC, |s| s.zone),
        params: serde_json::from_value(rec.params.clone()).unwrap_or_default(),
        tasks,
    }
}

fn as_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl Store {
    /// Creates a run, exactly once per `(workflow, run_key)`, and starts it when the workflow's
    /// `max_active_runs` (and the overlap policy) allow — all in one transaction.
    pub async fn create_run(&self, tenant: TenantId, new: NewRun, now: DateTime<Utc>) -> Result<Created> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let created = self.create_run_in(&mut tx, tenant, new, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub(crate) async fn create_run_in(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        new: NewRun,
        now: DateTime<Utc>,
    ) -> Result<Created> {
        // Locking the workflow row serialises run creation per workflow (admission counts stay true).
        let version: i32 =
            sqlx::query_scalar("SELECT version FROM workflows WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
                .bind(tenant.as_uuid())
                .bind(new.workflow.as_uuid())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
        let wf = self.compiled_workflow(tenant, new.workflow, version).await?;
        if let Some(key) = &new.run_key {
            let existing: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM runs WHERE tenant_id = $1 AND workflow_id = $2 AND run_key = $3")
                    .bind(tenant.as_uuid())
                    .bind(new.workflow.as_uuid())
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(id) = existing {
                return Ok(Created::Existing(RunId(id)));
            }
        }
        let params = wf.resolve_params(&new.params).map_err(StoreError::Invalid)?;
        let mut active = active_runs(&mut *tx, tenant, new.workflow).await?;
        // The overlap policy is about the schedule's own earlier runs: a backfill's or a manual
        // run neither skips a fire nor is cancelled by one (max_active_runs still counts them).
        let scheduled = Trigger::Schedule.as_str();
        let previous = active.iter().any(|(_, _, trigger)| trigger == scheduled);
        match new.overlap {
            Overlap::Skip if previous => return Ok(Created::Skipped),
            Overlap::CancelPrevious if previous => {
                for (id, ..) in active.iter().filter(|(_, _, trigger)| trigger == scheduled) {
                    self.run_event_in(&mut *tx, tenant, RunId(*id), &Event::Cancel, now, Locked::No).await?;
                }
                // Those ended (and their ends admitted nothing: this run did not exist yet).
                active = active_runs(&mut *tx, tenant, new.workflow).await?;
            }
            _ => {}
        }
        let id = RunId(Uuid::now_v7());
        let key = new.run_key.clone().unwrap_or_else(|| format!("{}:{}", new.trigger, id));
        let inserted = sqlx::query(
            "INSERT INTO runs (tenant_id, id, workflow_id, version, trigger, logical_time, run_key, state, params, priority, backfill_id, created_by, queued_at, parent_run_id, parent_task) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (tenant_id, workflow_id, run_key) DO NOTHING",
        )
        .bind(tenant.as_uuid())
        .bind(id.as_uuid())
        .bind(new.workflow.as_uuid())
        .bind(version)
        .bind(new.trigger.as_str())
        .bind(new.logical_time)
        .bind(&key)
        .bind(serde_json::to_value(&params).expect("params serialize"))
        .bind(new.priority)
        .bind(new.backfill)
        .bind(new.created_by.map(|u| u.as_uuid()))
        .bind(now)
        .bind(new.parent.map(|(r, _)| r.as_uuid()))
        .bind(new.parent.map(|(_, t)| t))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // Lost a race on the same key (the row lock above makes this rare).
            let existing: Uuid =
                sqlx::query_scalar("SELECT id FROM runs WHERE tenant_id = $1 AND workflow_id = $2 AND run_key = $3")
                    .bind(tenant.as_uuid())
                    .bind(new.workflow.as_uuid())
                    .bind(&key)
                    .fetch_one(&mut *tx)
                    .await?;
            return Ok(Created::Existing(RunId(existing)));
        }
        let idx: Vec<i32> = (0..wf.tasks.len()).map(|i| i32::try_from(i).expect("MAX_TASKS fits i32")).collect();
        let ids: Vec<&str> = wf.tasks.iter().map(|t| t.id.as_str()).collect();
        sqlx::query(
            "INSERT INTO task_runs (tenant_id, run_id, task_idx, task_id, state, updated_at) \
             SELECT $1, $2, i, t, 'pending', $5 FROM unnest($3::int[], $4::text[]) AS u(i, t)",
        )
        .bind(tenant.as_uuid())
        .bind(id.as_uuid())
        .bind(&idx)
        .bind(&ids)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let running = active.iter().filter(|(_, s, _)| s == "running").count();
        let waiting = active.iter().any(|(_, s, _)| s == "queued");
        let slot = running < wf.max_active_runs as usize && !(new.overlap == Overlap::Queue && previous);
        let mut state = RunState::Queued;
        if slot && !waiting {
            // Inserted by this transaction: nobody else can see it yet.
            self.run_event_in(&mut *tx, tenant, id, &Event::Start, now, Locked::Yes).await?;
            state = RunState::Running;
        }
        Ok(Created::New(id, state))
    }

    /// Applies one event to a run: decide, then apply the effects, in one transaction.
    pub async fn run_event(
        &self,
        tenant: TenantId,
        run: RunId,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Vec<Effect>> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let effects = self.run_event_in(&mut tx, tenant, run, event, now, Locked::No).await?;
        tx.commit().await?;
        Ok(effects)
    }

    /// Loads the run (locking its row), decides, applies. When the run ends, the next queued run
    /// of the workflow is started in the same transaction.
    pub(crate) async fn run_event_in(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        run: RunId,
        event: &Event,
        now: DateTime<Utc>,
        locked: Locked,
    ) -> Result<Vec<Effect>> {
        self.run_event_waking(tx, tenant, run, event, now, locked, &mut Wake::Now).await
    }

    /// [`Self::run_event_in`], with the caller choosing who wakes claimers of the new attempts.
    #[expect(clippy::too_many_arguments, reason = "the transaction's context, each part distinct")]
    pub(crate) async fn run_event_waking(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        run: RunId,
        event: &Event,
        now: DateTime<Utc>,
        locked: Locked,
        wake: &mut Wake<'_, '_>,
    ) -> Result<Vec<Effect>> {
        if locked == Locked::No {
            // Lock first, in its own statement: the load below then reads the task rows as they
            // are after whoever held the lock committed (a statement's snapshot is taken when it
            // starts, before any lock wait).
            sqlx::query("SELECT 1 FROM runs WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
                .bind(tenant.as_uuid())
                .bind(run.as_uuid())
                .execute(&mut *tx)
                .await?;
        }
        // The run and its tasks in one round trip (the run row is locked by now). With a
        // hand-off, the claim's candidates ride along (read before this step writes anything).
        let row: Option<RunWithTasks> = match wake.hand_off() {
            None => {
                sqlx::query_as(&LOAD_SQL).bind(tenant.as_uuid()).bind(run.as_uuid()).fetch_optional(&mut *tx).await?
            }
            Some(h) => {
                let load = sqlx::query_as(&LOAD_HAND_OFF_SQL).bind(tenant.as_uuid()).bind(run.as_uuid());
                let free = (h.req.cpu_millis, h.req.memory_bytes, h.req.gpu);
                bind_offer(load, &h.req, free, now).fetch_optional(&mut *tx).await?
            }
        };
        let RunWithTasks { run: rec, tasks, cands } = row.ok_or(StoreError::NotFound)?;
        let wf = self.compiled_workflow(tenant, WorkflowId(rec.workflow_id), rec.version).await?;
        let tasks = task_views(run, tasks, wf.tasks.len())?;
        let view = run_view(&wf, &rec, tasks);
        let effects = engine::decide(&view, event, now);
        if effects.is_empty() {
            return Ok(effects);
        }
        if let Some(h) = wake.hand_off() {
            let mut cands: Vec<TenantCandidate> = serde_json::from_value(cands.unwrap_or(Value::Array(vec![])))
                .map_err(|e| StoreError::Corrupt(format!("claim candidates: {e}")))?;
            cands.iter_mut().for_each(|c| c.shard = h.shard);
            if !effects.iter().any(|e| matches!(e, Effect::Enqueue { .. } | Effect::Run { .. } | Effect::Kill { .. })) {
                // Nothing to hand over, and the candidates stay true through this step's writes.
                h.keep_read(cands);
            } else {
                let fresh: Vec<Fresh> = effects
                    .iter()
                    .filter_map(|e| match e {
                        Effect::Enqueue { task, attempt, not_before, .. }
                            if *not_before <= now && h.places(&wf.tasks[*task]) =>
                        {
                            let spec = &wf.tasks[*task];
                            Some(Fresh {
                                task: *task,
                                attempt: *attempt,
                                priority: spec.priority.saturating_add(rec.priority),
                                cpu_millis: spec.resources.cpu_millis,
                                memory_bytes: spec.resources.memory_bytes,
                                gpu: spec.resources.gpu,
                            })
                        }
                        _ => None,
                    })
                    .collect();
                (h.take, h.claim_after) = plan_hand_off(cands, tenant.as_uuid(), &fresh, h);
            }
        }
        self.apply_step(&mut *tx, tenant, &rec, &wf, view, &effects, now, wake).await?;
        Ok(effects)
    }

    /// Writes a step's effects, then what follows from them in other runs: a killed
    /// sub-workflow task cancels its child runs, and a run that ended admits the next queued
    /// run of its workflow. Returns whether other runs were touched that way (children).
    #[expect(clippy::too_many_arguments, reason = "the transaction's context, each part distinct")]
    async fn apply_step(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        rec: &RunRecord,
        wf: &Arc<Workflow>,
        view: RunView<'_>,
        effects: &[Effect],
        now: DateTime<Utc>,
        wake: &mut Wake<'_, '_>,
    ) -> Result<bool> {
        let others = wake.for_others();
        let ended = apply_effects(&mut *tx, tenant, rec, wf, view, effects, now, wake).await?;
        // A killed sub-workflow task takes its child run down with it.
        let mut children_touched = false;
        for e in effects {
            if let Effect::Kill { task, .. } = e
                && matches!(wf.tasks[*task].kind, model::workflow::TaskKind::SubWorkflow(_))
            {
                children_touched = true;
                let children: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM runs WHERE tenant_id = $1 AND parent_run_id = $2 AND parent_task = $3 AND state IN ('queued', 'running')",
                )
                .bind(tenant.as_uuid())
                .bind(rec.id)
                .bind(as_i32(*task as u32))
                .fetch_all(&mut *tx)
                .await?;
                for child in children {
                    let mut wake = others.for_others();
                    Box::pin(self.run_event_waking(
                        &mut *tx,
                        tenant,
                        RunId(child),
                        &Event::Cancel,
                        now,
                        Locked::No,
                        &mut wake,
                    ))
                    .await?;
                }
            }
        }
        if ended {
            self.admit_next(&mut *tx, tenant, WorkflowId(rec.workflow_id), wf, now, 1, &others).await?;
        }
        Ok(children_touched)
    }

    /// Attempt ends of several runs, whose rows the caller's transaction has locked and whose
    /// attempts it has ended, in that lock order (a run's events in the order they came): all
    /// the runs are read in one statement, and their steps (tasks moved, attempts queued, runs
    /// ended, people told) are written together in one statement at the end; then the
    /// workflows whose runs ended start what they had queued. A step that kills attempts is
    /// written at once, after what is pending, as a lone report's would be; its run, and any run
    /// it may have touched beyond its own (a cancelled child), is read again for the events
    /// that follow.
    pub(crate) async fn attempt_ends_in(
        &self,
        tx: &mut PgConnection,
        events: Vec<(TenantId, RunId, Event)>,
        now: DateTime<Utc>,
        mut ready: Option<&mut Vec<(String, Uuid)>>,
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<(Uuid, Uuid)> = events.iter().map(|(t, r, _)| (t.as_uuid(), r.as_uuid())).collect();
        keys.dedup();
        let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
        let rows: Vec<RunWithTasks> =
            sqlx::query_as(&LOAD_MANY_SQL).bind(&tenants).bind(&ids).fetch_all(&mut *tx).await?;
        let mut loaded: HashMap<Uuid, (RunRecord, Arc<Workflow>, Vec<TaskView>)> = HashMap::with_capacity(rows.len());
        for RunWithTasks { run: rec, tasks, .. } in rows {
            let wf = self.compiled_workflow(TenantId(rec.tenant_id), WorkflowId(rec.workflow_id), rec.version).await?;
            let tasks = task_views(rec.run_id(), tasks, wf.tasks.len())?;
            loaded.insert(rec.id, (rec, wf, tasks));
        }
        let mut batch = StepBatch::default();
        // Runs whose rows a step wrote at once, or may have: their next event reads them again.
        let mut reread: HashSet<Uuid> = HashSet::new();
        let mut reread_all = false;
        // Workflows with runs that ended in the batch, and how many: their queued runs may start.
        let mut freed: Vec<(TenantId, WorkflowId, Arc<Workflow>, usize)> = Vec::new();
        for (tenant, run, event) in events {
            let mut wake = match ready.as_deref_mut() {
                Some(r) => Wake::Deferred(r, None),
                None => Wake::NowInQueue,
            };
            if reread_all || reread.contains(&run.as_uuid()) {
                batch.flush_as(&mut *tx, now, true).await?;
                let effects = self.run_event_waking(&mut *tx, tenant, run, &event, now, Locked::Yes, &mut wake).await?;
                // Its kills may have cancelled child runs (read here before).
                reread_all |= effects.iter().any(|e| matches!(e, Effect::Kill { .. }));
                continue;
            }
            let (rec, wf, tasks) = loaded.get_mut(&run.as_uuid()).ok_or(StoreError::NotFound)?;
            let mut view = run_view(wf, rec, std::mem::take(tasks));
            let effects = engine::decide(&view, &event, now);
            if !effects.iter().any(|e| matches!(e, Effect::Kill { .. })) {
                let before = view.tasks.clone();
                engine::apply(&mut view, &effects);
                let changed = TaskChanges::between(&before, &view.tasks, &effects);
                batch.add(tenant, rec, wf, &effects, &changed, now, &mut wake);
                if effects.iter().any(|e| matches!(e, Effect::Run { state } if state.is_terminal())) {
                    match freed.iter_mut().find(|(t, w, ..)| *t == tenant && w.as_uuid() == rec.workflow_id) {
                        Some((.., n)) => *n += 1,
                        None => freed.push((tenant, WorkflowId(rec.workflow_id), wf.clone(), 1)),
                    }
                }
                rec.state = view.state.as_str().to_owned();
                *tasks = view.tasks;
            } else {
                batch.flush_as(&mut *tx, now, true).await?;
                reread_all |= self.apply_step(&mut *tx, tenant, rec, wf, view, &effects, now, &mut wake).await?;
                reread.insert(run.as_uuid());
            }
        }
        batch.flush_as(&mut *tx, now, true).await?;
        for (tenant, workflow, wf, n) in freed {
            self.admit_next(&mut *tx, tenant, workflow, &wf, now, n, &Wake::NowInQueue).await?;
        }
        Ok(())
    }

    /// Starts the oldest queued runs of the workflow, as many as slots are free, at most
    /// `freed` (the runs that just ended). One statement finds them; it counts the running
    /// runs only when some are queued, and only as far as `max_active_runs`. `wake`: the
    /// transaction's, for their steps ([`Wake::for_others`]).
    #[expect(clippy::too_many_arguments, reason = "the transaction's context, each part distinct")]
    /// Starts the workflow's queued runs that now have room under `max_active_runs`, oldest
    /// first by priority; a scheduled run of a schedule whose overlap is `queue` only once no
    /// other scheduled run is running.
    async fn admit_next(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        workflow: WorkflowId,
        wf: &Workflow,
        now: DateTime<Utc>,
        freed: usize,
        wake: &Wake<'_, '_>,
    ) -> Result<()> {
        // The queued runs in order, with the room left and whether a scheduled run is running;
        // a few more than the room, to look past scheduled runs that `queue` holds.
        let next: Vec<(Uuid, String, i64, bool)> = sqlx::query_as(
            "SELECT id, trigger, \
               $3 - (SELECT count(*) FROM (SELECT FROM runs WHERE tenant_id = $1 AND workflow_id = $2 AND state = 'running' LIMIT $3) r), \
               EXISTS (SELECT FROM runs WHERE tenant_id = $1 AND workflow_id = $2 AND state = 'running' AND trigger = 'schedule') \
             FROM runs WHERE tenant_id = $1 AND workflow_id = $2 AND state = 'queued' \
             ORDER BY priority DESC, logical_time, queued_at LIMIT $4",
        )
        .bind(tenant.as_uuid())
        .bind(workflow.as_uuid())
        .bind(i64::from(wf.max_active_runs))
        .bind(i64::try_from(freed.saturating_add(ADMIT_LOOKAHEAD)).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        let queue = wf.schedule.as_ref().is_some_and(|s| s.overlap == Overlap::Queue);
        let room = next.first().map_or(0, |(_, _, room, _)| usize::try_from(*room).unwrap_or(0)).min(freed);
        let mut scheduled_running = next.first().is_some_and(|(.., r)| *r);
        let mut started = 0;
        for (id, trigger, ..) in next {
            if started == room {
                break;
            }
            if queue && trigger == Trigger::Schedule.as_str() {
                // One scheduled run at a time; the next waits for this one's end.
                if scheduled_running {
                    continue;
                }
                scheduled_running = true;
            }
            started += 1;
            let mut wake = wake.for_others();
            Box::pin(self.run_event_waking(&mut *tx, tenant, RunId(id), &Event::Start, now, Locked::No, &mut wake))
                .await?;
        }
        Ok(())
    }

    pub async fn run(&self, tenant: TenantId, run: RunId) -> Result<RunRecord> {
        sqlx::query_as(&format!("SELECT {RUN_COLS} FROM runs WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_uuid())
            .bind(run.as_uuid())
            .fetch_optional(self.shard(tenant).await?)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn runs(&self, tenant: TenantId, f: &RunFilter) -> Result<Vec<RunRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RUN_COLS} FROM runs WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR workflow_id = $2) AND ($3::text IS NULL OR state = $3) \
               AND ($4::text IS NULL OR trigger = $4) AND ($5::timestamptz IS NULL OR logical_time >= $5) \
               AND ($6::timestamptz IS NULL OR logical_time < $6) AND ($7::timestamptz IS NULL OR queued_at < $7) \
             ORDER BY queued_at DESC, id DESC LIMIT $8"
        ))
        .bind(tenant.as_uuid())
        .bind(f.workflow.map(|w| w.as_uuid()))
        .bind(f.state.map(RunState::as_str))
        .bind(f.trigger.map(Trigger::as_str))
        .bind(f.since)
        .bind(f.until)
        .bind(f.before)
        .bind(f.limit.clamp(1, 500))
        .fetch_all(self.shard(tenant).await?)
        .await?)
    }

    /// Runs of a workflow for one logical time (a dependency task's question).
    pub async fn runs_at(
        &self,
        tenant: TenantId,
        workflow: WorkflowId,
        logical_time: DateTime<Utc>,
    ) -> Result<Vec<RunRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RUN_COLS} FROM runs WHERE tenant_id = $1 AND workflow_id = $2 AND logical_time = $3 ORDER BY queued_at DESC"
        ))
        .bind(tenant.as_uuid())
        .bind(workflow.as_uuid())
        .bind(logical_time)
        .fetch_all(self.shard(tenant).await?)
        .await?)
    }

    pub async fn task_runs(&self, tenant: TenantId, run: RunId) -> Result<Vec<TaskRunRecord>> {
        Ok(sqlx::query_as(
            "SELECT task_idx, task_id, state, attempts, attempts_at_clear, outputs, reason, updated_at FROM task_runs \
             WHERE tenant_id = $1 AND run_id = $2 ORDER BY task_idx",
        )
        .bind(tenant.as_uuid())
        .bind(run.as_uuid())
        .fetch_all(self.shard(tenant).await?)
        .await?)
    }

    pub async fn attempts_of_run(&self, tenant: TenantId, run: RunId) -> Result<Vec<AttemptRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, task_idx, attempt, state, pool, worker_id, queued_at, not_before, started_at, ended_at, error, exit_code FROM attempts \
             WHERE tenant_id = $1 AND run_id = $2 ORDER BY task_idx, attempt",
        )
        .bind(tenant.as_uuid())
        .bind(run.as_uuid())
        .fetch_all(self.shard(tenant).await?)
        .await?)
    }
}

#[derive(sqlx::FromRow)]
struct RunWithTasks {
    #[sqlx(flatten)]
    run: RunRecord,
    #[sqlx(flatten)]
    tasks: TaskColumns,
    /// The claim's candidates, when a hand-off is possible.
    #[sqlx(default)]
    cands: Option<Value>,
}

/// A run's task rows, column by column ([`TASKS_JOIN`]); None when it has none.
#[derive(sqlx::FromRow)]
struct TaskColumns {
    task_idxs: Option<Vec<i32>>,
    task_states: Option<Vec<String>>,
    task_attempts: Option<Vec<i32>>,
    task_at_clear: Option<Vec<i32>>,
    task_outputs: Option<Vec<sqlx::types::Json<BTreeMap<String, String>>>>,
}

/// The task rows as the engine sees them: one a task of the workflow, or the run is corrupt.
fn task_views(run: RunId, tasks: TaskColumns, n: usize) -> Result<Vec<TaskView>> {
    let TaskColumns { task_idxs, task_states, task_attempts, task_at_clear, task_outputs } = tasks;
    let (idxs, states) = (task_idxs.unwrap_or_default(), task_states.unwrap_or_default());
    let (attempts, at_clear) = (task_attempts.unwrap_or_default(), task_at_clear.unwrap_or_default());
    let outputs = task_outputs.unwrap_or_default();
    let corrupt = || StoreError::Corrupt(format!("run {run} has {} task rows for {n} tasks", idxs.len()));
    if [states.len(), attempts.len(), at_clear.len(), outputs.len()].iter().any(|&l| l != idxs.len()) || idxs.len() != n
    {
        return Err(corrupt());
    }
    let mut views: Vec<Option<TaskView>> = (0..n).map(|_| None).collect();
    let rows = idxs.iter().zip(states).zip(attempts).zip(at_clear).zip(outputs);
    for ((((&idx, state), attempts), at_clear), outputs) in rows {
        // Each index once, within the workflow's tasks.
        let slot =
            usize::try_from(idx).ok().and_then(|i| views.get_mut(i)).filter(|v| v.is_none()).ok_or_else(corrupt)?;
        *slot = Some(TaskView {
            state: state.parse().map_err(StoreError::Corrupt)?,
            attempts: u32::try_from(attempts).unwrap_or(0),
            attempts_at_clear: u32::try_from(at_clear).unwrap_or(0),
            outputs: outputs.0,
        });
    }
    // n rows, each index once: every slot is filled.
    Ok(views.into_iter().flatten().collect())
}

/// Writes the effects: the kills first, one by one (queue and attempt rows, as a claim takes
/// them), then the step in one statement ([`StepBatch`]). Returns whether the run ended.
#[expect(clippy::too_many_arguments, reason = "the transaction's context, each part distinct")]
async fn apply_effects(
    tx: &mut PgConnection,
    tenant: TenantId,
    run: &RunRecord,
    wf: &Arc<Workflow>,
    mut view: RunView<'_>,
    effects: &[Effect],
    now: DateTime<Utc>,
    wake: &mut Wake<'_, '_>,
) -> Result<bool> {
    let in_queue = match wake {
        Wake::Now => false,
        Wake::NowInQueue | Wake::Deferred(..) => true,
    };
    let t = tenant.as_uuid();
    for e in effects {
        if let Effect::Kill { task, attempt } = e {
            let id: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM attempts WHERE tenant_id = $1 AND run_id = $2 AND task_idx = $3 AND attempt = $4",
            )
            .bind(t)
            .bind(run.id)
            .bind(as_i32(*task as u32))
            .bind(as_i32(*attempt))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = id {
                sqlx::query("DELETE FROM queue WHERE tenant_id = $1 AND attempt_id = $2")
                    .bind(t)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // A queued attempt is simply cancelled; a running one is told to stop (its worker
                // sees kill_requested at its next heartbeat) and ends as cancelled when it reports.
                sqlx::query(
                    "UPDATE attempts SET state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, \
                       ended_at = CASE WHEN state = 'queued' THEN $3 ELSE ended_at END, \
                       kill_requested = (state = 'running') \
                     WHERE tenant_id = $1 AND id = $2 AND state IN ('queued', 'running')",
                )
                .bind(t)
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    let before: Vec<TaskView> = view.tasks.clone();
    engine::apply(&mut view, effects);
    if let Some(h) = wake.hand_off() {
        // Handed over: each starts now, as a claim would start it.
        let planned = h.take.len();
        h.take.retain(|&(task, attempt)| {
            let started = engine::decide(&view, &engine::Event::AttemptStarted { task, attempt }, now);
            engine::apply(&mut view, &started);
            !started.is_empty()
        });
        h.claim_after |= h.take.len() < planned;
    }
    let changed = TaskChanges::between(&before, &view.tasks, effects);
    let mut step = StepBatch::default();
    step.add(tenant, run, wf, effects, &changed, now, wake);
    step.flush_as(&mut *tx, now, in_queue).await?;
    Ok(effects.iter().any(|e| matches!(e, Effect::Run { state } if state.is_terminal())))
}

/// Task rows to update, column by column (for `unnest`).
#[derive(Default)]
struct TaskChanges {
    idx: Vec<i32>,
    states: Vec<&'static str>,
    attempts: Vec<i32>,
    at_clear: Vec<i32>,
    outputs: Vec<Value>,
    reason_set: Vec<bool>,
    reasons: Vec<Option<String>>,
}

impl TaskChanges {
    /// The tasks whose view differs after a step, with the reason the step's effects gave.
    fn between(before: &[TaskView], after: &[TaskView], effects: &[Effect]) -> TaskChanges {
        let mut reasons: BTreeMap<usize, Option<String>> = BTreeMap::new();
        for e in effects {
            if let Effect::Task { task, reason, .. } = e {
                reasons.insert(*task, reason.clone());
            }
        }
        let mut changed = TaskChanges::default();
        for (i, (old, new)) in before.iter().zip(after).enumerate() {
            if old != new {
                changed.idx.push(as_i32(i as u32));
                changed.states.push(new.state.as_str());
                changed.attempts.push(as_i32(new.attempts));
                changed.at_clear.push(as_i32(new.attempts_at_clear));
                changed.outputs.push(serde_json::to_value(&new.outputs).expect("outputs serialize"));
                changed.reason_set.push(reasons.contains_key(&i));
                changed.reasons.push(reasons.get(&i).cloned().flatten());
            }
        }
        changed
    }
}

/// The parts of a step's write ([`step_write_sql`]), one bit each: a batch's statement has only the
/// parts it has rows for.
pub(crate) mod part {
    /// New attempts (queued, or running when handed over).
    pub(crate) const ATTEMPTS: u8 = 1;
    /// Queue rows of the queued ones.
    pub(crate) const QUEUE: u8 = 2;
    /// Runs stepped: new states.
    pub(crate) const RUNS: u8 = 4;
    /// What people are to be told (the outbox).
    pub(crate) const NOTES: u8 = 8;
    /// Pools to wake (NOTIFY, delivered at commit).
    pub(crate) const WAKE: u8 = 16;
    /// Tasks' new states.
    pub(crate) const TASKS: u8 = 32;
    pub(crate) const ALL: u8 = 63;
}

/// The statement that writes a batch of steps ([`StepBatch::flush_as`]) with the parts in `parts`
/// (a [`part`] set): new attempts (queued, or running when handed over), their queue rows, runs'
/// new states, notifications into the outbox, wake-ups, and the tasks' new states. Every variant
/// takes the same 38 parameters, whether it reads them or not. PostgreSQL starts every part of a
/// statement each time it runs it, rows or not (opening each table with its indexes and foreign
/// keys); a chain's step has new attempts and tasks only.
///
/// The rows to update are found by key where the plan is made in the queue's transactions, which
/// rule out hash and merge joins (`QUEUE_SETTINGS`): the plan PostgreSQL keeps for the statement (its
/// generic plan, made without the arrays' sizes) otherwise joined the runs to update against every
/// run of the tenant. With `in_queue`, the text is the queue's own copy, for every step written
/// inside the queue's transactions (a report's, alone or in a burst): its own text makes it a
/// prepared statement of its own, whose kept plan is always made there. PostgreSQL keeps one plan
/// per prepared statement and connection, made under the settings of the transaction that made
/// it; the shared copy serves run events outside them (a run created, cancelled, a lease reaped),
/// so the plan it keeps may be one made there (seen: a hash join over a sequential scan of the
/// runs).
pub(crate) fn step_write_sql(parts: u8, in_queue: bool) -> &'static str {
    static TEXTS: [std::sync::OnceLock<String>; 128] = [const { std::sync::OnceLock::new() }; 128];
    let parts = parts & part::ALL;
    TEXTS[usize::from(parts) | if in_queue { 64 } else { 0 }].get_or_init(|| step_write_text(parts, in_queue))
}

fn step_write_text(parts: u8, in_queue: bool) -> String {
    let has = |p: u8| parts & p != 0;
    let mut ctes = Vec::new();
    if has(part::ATTEMPTS) {
        ctes.push(
            "attempt_rows AS ( \
       INSERT INTO attempts (tenant_id, id, run_id, task_idx, attempt, state, pool, rendered, timeout_secs, queued_at, not_before, \
         worker_id, started_at, lease_expires_at, lease_token) \
       SELECT u.tenant, u.id, u.run, u.idx, u.att, u.state, u.pool, u.rendered, u.timeout, $1, u.nb, \
         CASE WHEN u.state = 'running' THEN $2 END, CASE WHEN u.state = 'running' THEN $1::timestamptz END, \
         CASE WHEN u.state = 'running' THEN $3::timestamptz END, u.token \
       FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::int[], $8::int[], $9::text[], $10::jsonb[], $11::float8[], \
         $12::timestamptz[], $13::text[], $14::bigint[]) \
         AS u(tenant, run, id, idx, att, pool, rendered, timeout, nb, state, token))",
        );
    }
    if has(part::QUEUE) {
        ctes.push(
            "queue_rows AS ( \
       INSERT INTO queue (tenant_id, attempt_id, pool, priority, not_before, cpu_millis, memory_bytes, gpu, region, labels) \
       SELECT u.tenant, u.id, u.pool, u.prio, u.nb, u.cpu, u.mem, u.gpu, u.region, u.labels \
       FROM unnest($4::uuid[], $6::uuid[], $9::text[], $15::int[], $12::timestamptz[], $16::int[], $17::bigint[], $18::int[], \
         $19::text[], $20::jsonb[], $13::text[]) \
         AS u(tenant, id, pool, prio, nb, cpu, mem, gpu, region, labels, state) \
       WHERE u.state = 'queued')",
        );
    }
    if has(part::RUNS) {
        ctes.push(
            "run_rows AS ( \
       UPDATE runs r SET state = u.state, \
         started_at = CASE WHEN u.state = 'running' THEN COALESCE(r.started_at, $1) ELSE r.started_at END, \
         ended_at = CASE WHEN u.state IN ('succeeded', 'failed', 'cancelled') THEN $1 ELSE NULL END \
       FROM unnest($32::uuid[], $33::uuid[], $34::text[]) AS u(tenant, id, state) \
       WHERE r.tenant_id = u.tenant AND r.id = u.id)",
        );
    }
    if has(part::NOTES) {
        ctes.push(
            "notes AS ( \
       INSERT INTO outbox (tenant_id, run_id, kind, payload, created_at) \
       SELECT u.tenant, u.run, u.kind, u.payload, $1 FROM unnest($35::uuid[], $36::uuid[], $37::text[], $38::jsonb[]) \
         AS u(tenant, run, kind, payload))",
        );
    }
    // Not a data-modifying part: it runs only when the statement reads it.
    if has(part::WAKE) {
        ctes.push("woken AS (SELECT count(pg_notify($21, p)) AS n FROM unnest($22::text[]) AS p)");
    }
    let main = if has(part::TASKS) {
        format!(
            "UPDATE task_runs t SET state = u.state, attempts = u.attempts, attempts_at_clear = u.at_clear, outputs = u.outputs, \
       reason = CASE WHEN u.reason_set THEN u.reason ELSE t.reason END, updated_at = $1 \
     FROM unnest($23::uuid[], $24::uuid[], $25::int[], $26::text[], $27::int[], $28::int[], $29::jsonb[], $30::bool[], $31::text[]) \
       AS u(tenant, run, task_idx, state, attempts, at_clear, outputs, reason_set, reason) {} \
     WHERE t.tenant_id = u.tenant AND t.run_id = u.run AND t.task_idx = u.task_idx",
            if has(part::WAKE) { "CROSS JOIN woken" } else { "" }
        )
    } else if has(part::WAKE) {
        "SELECT n FROM woken".to_owned()
    } else {
        "SELECT 1".to_owned()
    };
    let with = if ctes.is_empty() { String::new() } else { format!("WITH {} ", ctes.join(", ")) };
    format!("{}{with}{main}", if in_queue { "/* queue */ " } else { "" })
}

/// The common part of steps, of one run or several, gathered for ONE statement ([`Self::flush_as`]):
/// the new attempts and their queue rows, a NOTIFY of each pool with work ready now (delivered
/// at commit, waking its claimers), the changed task rows, the runs' new states, and what
/// people are to be told (the outbox).
#[derive(Default)]
struct StepBatch {
    /// Attempt rows, column by column; the queued ones get a queue row too.
    a_tenant: Vec<Uuid>,
    a_run: Vec<Uuid>,
    ids: Vec<Uuid>,
    idxs: Vec<i32>,
    atts: Vec<i32>,
    pools: Vec<String>,
    rendered: Vec<Value>,
    timeouts: Vec<Option<f64>>,
    not_before: Vec<DateTime<Utc>>,
    prios: Vec<i32>,
    cpus: Vec<i32>,
    mems: Vec<i64>,
    gpus: Vec<i32>,
    regions: Vec<Option<String>>,
    labels: Vec<Value>,
    states: Vec<&'static str>,
    tokens: Vec<Option<i64>>,
    /// The handed-over attempts' worker and lease (a hand-off is one step's).
    worker: Option<String>,
    lease_until: Option<DateTime<Utc>>,
    notify: Vec<String>,
    /// Task rows, column by column, with their run.
    t_tenant: Vec<Uuid>,
    t_run: Vec<Uuid>,
    tasks: TaskChanges,
    /// Runs that change state (one entry a run: its last), and what people are told.
    r_tenant: Vec<Uuid>,
    r_id: Vec<Uuid>,
    r_state: Vec<&'static str>,
    n_tenant: Vec<Uuid>,
    n_run: Vec<Uuid>,
    n_kind: Vec<String>,
    n_payload: Vec<Value>,
}

impl StepBatch {
    /// Adds one run's step: the attempts its effects enqueue (those a hand-off takes start
    /// running for its worker at once) and its changed task rows.
    #[expect(clippy::too_many_arguments, reason = "the step's context, each part distinct")]
    fn add(
        &mut self,
        tenant: TenantId,
        run: &RunRecord,
        wf: &Workflow,
        effects: &[Effect],
        changed: &TaskChanges,
        now: DateTime<Utc>,
        wake: &mut Wake<'_, '_>,
    ) {
        let (mut ready, mut handed) = match wake {
            Wake::Now | Wake::NowInQueue => (None, None),
            Wake::Deferred(ready, h) => (Some(&mut **ready), h.as_deref_mut()),
        };
        if let Some(h) = &handed {
            self.worker = Some(h.req.worker_id.to_owned());
            self.lease_until =
                Some(now + chrono::Duration::from_std(h.req.lease).unwrap_or(chrono::Duration::seconds(30)));
        }
        for e in effects {
            if let Effect::Enqueue { task, attempt, not_before: nb, rendered: r } = e {
                let spec = &wf.tasks[*task];
                let id = Uuid::now_v7();
                let r = serde_json::to_value(r).expect("rendered task serializes");
                if let Some(h) = handed.as_deref_mut()
                    && h.take.contains(&(*task, *attempt))
                {
                    // A random fencing token, as a claim draws it (53 bits: exact in JSON).
                    let token = i64::try_from(rand::random::<u64>() >> 11).unwrap_or(0);
                    let res = &spec.resources;
                    h.req.limit = h.req.limit.saturating_sub(1);
                    h.req.cpu_millis = h.req.cpu_millis.saturating_sub(res.cpu_millis);
                    h.req.memory_bytes = h.req.memory_bytes.saturating_sub(res.memory_bytes);
                    h.req.gpu = h.req.gpu.saturating_sub(res.gpu);
                    self.states.push("running");
                    self.tokens.push(Some(token));
                    h.started.push(Claimed {
                        tenant_id: tenant,
                        attempt_id: id,
                        run_id: RunId(run.id),
                        task_idx: *task,
                        attempt: *attempt,
                        lease_token: token,
                        lease_expires_at: self.lease_until.unwrap_or(now),
                        rendered: r.clone(),
                        timeout_secs: spec.timeout.map(|t| t.after.as_secs_f64()),
                        task_id: spec.id.clone(),
                        logical_time: run.logical_time,
                        workflow: wf.spec.name.clone(),
                        cpu_millis: spec.resources.cpu_millis,
                        memory_bytes: spec.resources.memory_bytes,
                        gpu: spec.resources.gpu,
                    });
                } else {
                    self.states.push("queued");
                    self.tokens.push(None);
                    if *nb <= now {
                        match ready.as_deref_mut() {
                            None if !self.notify.contains(&spec.pool) => self.notify.push(spec.pool.clone()),
                            None => {}
                            Some(ready) => ready.push((spec.pool.clone(), id)),
                        }
                    }
                }
                self.a_tenant.push(tenant.as_uuid());
                self.a_run.push(run.id);
                self.ids.push(id);
                self.idxs.push(as_i32(*task as u32));
                self.atts.push(as_i32(*attempt));
                self.pools.push(spec.pool.clone());
                self.rendered.push(r);
                self.timeouts.push(spec.timeout.map(|t| t.after.as_secs_f64()));
                self.not_before.push(*nb);
                self.prios.push(spec.priority.saturating_add(run.priority));
                self.cpus.push(as_i32(spec.resources.cpu_millis));
                self.mems.push(i64::try_from(spec.resources.memory_bytes).unwrap_or(i64::MAX));
                self.gpus.push(as_i32(spec.resources.gpu));
                self.regions.push(spec.region.clone());
                self.labels.push(serde_json::to_value(&spec.labels).expect("labels serialize"));
            }
        }
        for e in effects {
            match e {
                Effect::Run { state } => match self.r_id.iter().position(|r| *r == run.id) {
                    Some(k) => self.r_state[k] = state.as_str(),
                    None => {
                        self.r_tenant.push(tenant.as_uuid());
                        self.r_id.push(run.id);
                        self.r_state.push(state.as_str());
                    }
                },
                Effect::Notify { kind, task, message } => {
                    self.n_tenant.push(tenant.as_uuid());
                    self.n_run.push(run.id);
                    self.n_kind.push(
                        serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                    );
                    self.n_payload.push(json!({
                        "run_id": run.id,
                        "workflow_id": run.workflow_id,
                        "task": task.map(|i| wf.tasks[i].id.clone()),
                        "message": message,
                        "at": now,
                    }));
                }
                _ => {}
            }
        }
        let t = &mut self.tasks;
        for k in 0..changed.idx.len() {
            self.t_tenant.push(tenant.as_uuid());
            self.t_run.push(run.id);
            t.idx.push(changed.idx[k]);
            t.states.push(changed.states[k]);
            t.attempts.push(changed.attempts[k]);
            t.at_clear.push(changed.at_clear[k]);
            t.outputs.push(changed.outputs[k].clone());
            t.reason_set.push(changed.reason_set[k]);
            t.reasons.push(changed.reasons[k].clone());
        }
    }

    /// Writes what was added, in ONE statement ([`step_write_sql`]: the parts with rows, the
    /// queue's copy with `in_queue`), and empties the batch. Nothing to write, no statement.
    async fn flush_as(&mut self, tx: &mut PgConnection, now: DateTime<Utc>, in_queue: bool) -> Result<()> {
        let parts = [
            (part::ATTEMPTS, !self.ids.is_empty()),
            (part::QUEUE, self.states.contains(&"queued")),
            (part::RUNS, !self.r_id.is_empty()),
            (part::NOTES, !self.n_run.is_empty()),
            (part::WAKE, !self.notify.is_empty()),
            (part::TASKS, !self.t_run.is_empty()),
        ]
        .into_iter()
        .filter(|(_, has)| *has)
        .fold(0, |parts, (p, _)| parts | p);
        if parts == 0 {
            return Ok(());
        }
        let b = std::mem::take(self);
        let t = &b.tasks;
        sqlx::query(step_write_sql(parts, in_queue))
            .bind(now)
            .bind(&b.worker)
            .bind(b.lease_until)
            .bind(&b.a_tenant)
            .bind(&b.a_run)
            .bind(&b.ids)
            .bind(&b.idxs)
            .bind(&b.atts)
            .bind(&b.pools)
            .bind(&b.rendered)
            .bind(&b.timeouts)
            .bind(&b.not_before)
            .bind(&b.states)
            .bind(&b.tokens)
            .bind(&b.prios)
            .bind(&b.cpus)
            .bind(&b.mems)
            .bind(&b.gpus)
            .bind(&b.regions)
            .bind(&b.labels)
            .bind(QUEUE_CHANNEL)
            .bind(&b.notify)
            .bind(&b.t_tenant)
            .bind(&b.t_run)
            .bind(&t.idx)
            .bind(&t.states)
            .bind(&t.attempts)
            .bind(&t.at_clear)
            .bind(&t.outputs)
            .bind(&t.reason_set)
            .bind(&t.reasons)
            .bind(&b.r_tenant)
            .bind(&b.r_id)
            .bind(&b.r_state)
            .bind(&b.n_tenant)
            .bind(&b.n_run)
            .bind(&b.n_kind)
            .bind(&b.n_payload)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::state::TaskState;

    fn columns(idxs: &[i32], states: &[&str]) -> TaskColumns {
        TaskColumns {
            task_idxs: Some(idxs.to_vec()),
            task_states: Some(states.iter().map(|s| (*s).to_owned()).collect()),
            task_attempts: Some(idxs.iter().map(|i| i + 1).collect()),
            task_at_clear: Some(vec![0; idxs.len()]),
            task_outputs: Some(idxs.iter().map(|_| sqlx::types::Json(BTreeMap::new())).collect()),
        }
    }

    #[test]
    fn task_rows_are_placed_by_their_index_whatever_order_they_come_in() {
        let run = RunId(uuid::Uuid::nil());
        let views = task_views(run, columns(&[2, 0, 1], &["running", "succeeded", "pending"]), 3).unwrap();
        let got: Vec<(TaskState, u32)> = views.iter().map(|v| (v.state, v.attempts)).collect();
        assert_eq!(got, [(TaskState::Succeeded, 1), (TaskState::Pending, 2), (TaskState::Running, 3)]);
        for (idxs, n) in [(&[0, 0][..], 2), (&[0, 2], 2), (&[0, -1], 2), (&[0], 2)] {
            let states = vec!["pending"; idxs.len()];
            let e = task_views(run, columns(idxs, &states), n).unwrap_err();
            assert!(matches!(e, StoreError::Corrupt(_)), "{idxs:?}: {e}");
        }
    }
}
