//! The in-process executor: runs attempts inside the scheduler's process, through the same claim /
//! lease / report path a remote worker uses.
//!
//! - In the `orrery-internal` pool (every scheduler runs one): `sub_workflow` tasks (start a child
//!   run, end with it) and `dependency` tasks (wait for another workflow's run of the same logical
//!   time), which wait on other runs rather than compute.
//! - In the `default` pool of `orrery up`: `noop` and `sleep`, so the engine runs end to end without
//!   a remote worker; remote workers run every kind.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use model::TenantId;
use model::engine::Outcome;
use serde_json::Value;
use store::{ClaimRequest, Claimed, Completion, QUEUE_CHANNEL, Renewal, Store, StoreError};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Clock;

#[derive(Clone, Debug)]
pub struct LocalExecutorConfig {
    pub pool: String,
    pub worker_id: String,
    /// Attempts run at once.
    pub slots: u32,
    pub lease: Duration,
}

impl Default for LocalExecutorConfig {
    fn default() -> Self {
        Self { pool: "default".into(), worker_id: "local".into(), slots: 16, lease: Duration::from_secs(30) }
    }
}

struct Running {
    tenant: TenantId,
    token: i64,
    task: JoinHandle<()>,
}

/// How often a waiting task looks at the runs it waits on.
const POLL: Duration = Duration::from_secs(1);

/// What the executor can run, from an attempt's rendered task.
enum Work {
    Noop,
    Sleep(Duration),
    SubWorkflow { workflow: String, params: std::collections::BTreeMap<String, Value> },
    Dependency { workflow: String, task: Option<String> },
    Unsupported(String),
}

fn work_of(rendered: &Value) -> Work {
    let config = &rendered["kind"]["config"];
    match rendered["kind"]["kind"].as_str() {
        Some("noop") => Work::Noop,
        Some("sleep") => {
            let secs = config["seconds"].as_f64().unwrap_or(0.0).clamp(0.0, 365.0 * 86_400.0);
            Work::Sleep(Duration::from_secs_f64(secs))
        }
        Some("sub_workflow") => Work::SubWorkflow {
            workflow: config["workflow"].as_str().unwrap_or_default().to_owned(),
            params: serde_json::from_value(config["params"].clone()).unwrap_or_default(),
        },
        Some("dependency") => Work::Dependency {
            workflow: config["workflow"].as_str().unwrap_or_default().to_owned(),
            task: config["task"].as_str().map(str::to_owned),
        },
        other => Work::Unsupported(other.unwrap_or("unknown").to_owned()),
    }
}

/// The workflow named `name` in the same project as the attempt's own workflow, and the
/// attempt's run (for its logical time).
async fn sibling(store: &Store, c: &Claimed, name: &str) -> Result<(model::WorkflowId, store::RunRecord), String> {
    let run = store.run(c.tenant_id, c.run_id).await.map_err(|e| e.to_string())?;
    let own = store.workflow(c.tenant_id, model::WorkflowId(run.workflow_id)).await.map_err(|e| e.to_string())?;
    let other = store
        .workflow_by_name(c.tenant_id, model::ProjectId(own.project_id), name)
        .await
        .map_err(|_| format!("there is no workflow `{name}` in this project"))?;
    Ok((other.workflow_id(), run))
}

/// Starts (or, after a restart, finds) the child run and waits for it to end.
async fn run_sub_workflow(
    store: &Store,
    clock: &Arc<dyn Clock>,
    c: &Claimed,
    name: &str,
    params: std::collections::BTreeMap<String, Value>,
) -> Outcome {
    let (workflow, parent) = match sibling(store, c, name).await {
        Ok(x) => x,
        Err(reason) => return Outcome::Failed { reason },
    };
    let new = store::NewRun {
        workflow,
        trigger: model::state::Trigger::SubWorkflow,
        logical_time: parent.logical_time,
        run_key: Some(format!("parent:{}:{}:{}", c.run_id, c.task_idx, c.attempt)),
        params,
        priority: parent.priority,
        backfill: None,
        created_by: parent.created_by.map(model::UserId),
        overlap: model::workflow::Overlap::Allow,
        parent: Some((c.run_id, i32::try_from(c.task_idx).unwrap_or(0))),
    };
    let child = match store.create_run(c.tenant_id, new, clock.now()).await {
        Ok(store::Created::New(id, _) | store::Created::Existing(id)) => id,
        Ok(store::Created::Skipped) => return Outcome::Failed { reason: "the child run was not created".into() },
        Err(e) => return Outcome::Failed { reason: format!("starting `{name}`: {e}") },
    };
    loop {
        match store.run(c.tenant_id, child).await.map(|r| r.run_state()) {
            Ok(model::state::RunState::Succeeded) => {
                return Outcome::Succeeded { outputs: [("run_id".to_owned(), child.to_string())].into() };
            }
            Ok(s) if s.is_terminal() => {
                return Outcome::Failed { reason: format!("sub-workflow `{name}` run {child} ended {s}") };
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(run.id = %child, "reading a child run failed: {e}"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the other workflow's run of the same logical time succeeded (or, with `task`,
/// that task of it). A run of it that failed fails this task; no run yet means wait.
async fn wait_dependency(store: &Store, c: &Claimed, name: &str, task: Option<&str>) -> Outcome {
    let (workflow, own) = match sibling(store, c, name).await {
        Ok(x) => x,
        Err(reason) => return Outcome::Failed { reason },
    };
    loop {
        let runs = store.runs_at(c.tenant_id, workflow, own.logical_time).await.unwrap_or_default();
        if let Some(latest) = runs.first() {
            let state = latest.run_state();
            let done = match task {
                None => (state == model::state::RunState::Succeeded, state.is_terminal()),
                Some(t) => {
                    let tasks = store.task_runs(c.tenant_id, latest.run_id()).await.unwrap_or_default();
                    match tasks.iter().find(|x| x.task_id == t) {
                        Some(x) => (
                            x.state == "succeeded",
                            x.state != "pending" && x.state != "queued" && x.state != "running",
                        ),
                        None => return Outcome::Failed { reason: format!("workflow `{name}` has no task `{t}`") },
                    }
                }
            };
            match done {
                (true, _) => {
                    return Outcome::Succeeded { outputs: [("run_id".to_owned(), latest.id.to_string())].into() };
                }
                (false, true) => {
                    return Outcome::Failed {
                        reason: format!("the run of `{name}` for {} ended without success", own.logical_time),
                    };
                }
                _ => {}
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn run(store: Store, clock: Arc<dyn Clock>, cfg: LocalExecutorConfig, shutdown: CancellationToken) {
    let wake = Arc::new(Notify::new());
    for (shard, _) in store.shard_ids().into_iter().map(|s| (s, ())) {
        let (store, wake, stop) = (store.clone(), wake.clone(), shutdown.clone());
        tokio::spawn(async move { listen_queue(store, shard, wake, stop).await });
    }
    let (done_tx, mut done) = mpsc::unbounded_channel::<(Claimed, Outcome)>();
    let mut running: HashMap<Uuid, Running> = HashMap::new();
    // Attempts that ended and are not stored yet: reported together, with the claim for the
    // slots they free, in one transaction.
    let mut ended: Vec<(Claimed, Outcome)> = Vec::new();
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    let mut heartbeat = tokio::time::interval(cfg.lease / 3);
    let no_labels = serde_json::json!({});
    let now = || clock.now();
    tracing::info!(pool = %cfg.pool, slots = cfg.slots, "in-process executor started");
    loop {
        while let Ok(d) = done.try_recv() {
            ended.push(d);
        }
        for (c, _) in &ended {
            running.remove(&c.attempt_id);
        }
        let free = cfg.slots.saturating_sub(u32::try_from(running.len()).unwrap_or(u32::MAX));
        let req = ClaimRequest {
            pool: &cfg.pool,
            region: None,
            labels: &no_labels,
            worker_id: &cfg.worker_id,
            limit: free,
            cpu_millis: u32::MAX,
            memory_bytes: u64::MAX,
            gpu: u32::MAX,
            lease: cfg.lease,
        };
        let reports: Vec<Completion> = ended
            .iter()
            .map(|(c, outcome)| Completion {
                tenant: c.tenant_id,
                attempt_id: c.attempt_id,
                lease_token: c.lease_token,
                outcome: outcome.clone(),
                exit_code: None,
            })
            .collect();
        let (answers, claimed) = store.complete_and_claim(reports, (free > 0).then_some(&req), &now).await;
        let mut unsent = Vec::new();
        for ((c, outcome), answer) in std::mem::take(&mut ended).into_iter().zip(answers) {
            match answer {
                Ok(()) | Err(StoreError::Stale | StoreError::NotFound) => {}
                // Not stored: sent again with the next claim.
                Err(StoreError::Retry) => unsent.push((c, outcome)),
                Err(e) => tracing::warn!(attempt.id = %c.attempt_id, "reporting an attempt failed: {e}"),
            }
        }
        ended = unsent;
        match claimed {
            Ok(claimed) if !claimed.is_empty() => {
                for c in claimed {
                    if matches!(work_of(&c.rendered), Work::Noop) {
                        // Nothing to run: reported with the next claim, without a round through
                        // the task scheduler.
                        ended.push((c, Outcome::Succeeded { outputs: Default::default() }));
                        continue;
                    }
                    let id = c.attempt_id;
                    let (tenant, token) = (c.tenant_id, c.lease_token);
                    let task = tokio::spawn(execute(store.clone(), clock.clone(), c, done_tx.clone()));
                    running.insert(id, Running { tenant, token, task });
                }
                continue; // there may be more
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("claiming work failed: {e}"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = wake.notified() => {}
            Some(d) = done.recv() => ended.push(d),
            _ = poll.tick() => {}
            _ = heartbeat.tick() => renew(&store, &clock, &cfg, &mut running).await,
        }
    }
    // Leases of unfinished attempts expire; the reaper turns them into lost attempts and retries.
    for (_, r) in running {
        r.task.abort();
    }
}

async fn renew(store: &Store, clock: &Arc<dyn Clock>, cfg: &LocalExecutorConfig, running: &mut HashMap<Uuid, Running>) {
    if running.is_empty() {
        return;
    }
    let held: Vec<(TenantId, Uuid, i64)> = running.iter().map(|(id, r)| (r.tenant, *id, r.token)).collect();
    match store.renew_leases(&held, cfg.lease, clock.now()).await {
        Ok(answers) => {
            for (id, answer) in answers {
                if answer != Renewal::Held
                    && let Some(r) = running.remove(&id)
                {
                    // Killed (cancel, clear) or lease gone: stop it; never report it.
                    r.task.abort();
                    if answer == Renewal::Kill {
                        let _ = store.complete_attempt(r.tenant, id, r.token, Outcome::Cancelled, clock.now()).await;
                    }
                }
            }
        }
        Err(e) => tracing::warn!("renewing leases failed: {e}"),
    }
}

async fn execute(store: Store, clock: Arc<dyn Clock>, c: Claimed, done: mpsc::UnboundedSender<(Claimed, Outcome)>) {
    let outcome = match work_of(&c.rendered) {
        Work::Noop => Outcome::Succeeded { outputs: Default::default() },
        Work::Sleep(d) => {
            tokio::time::sleep(d).await;
            Outcome::Succeeded { outputs: Default::default() }
        }
        Work::SubWorkflow { workflow, params } => run_sub_workflow(&store, &clock, &c, &workflow, params).await,
        Work::Dependency { workflow, task } => wait_dependency(&store, &c, &workflow, task.as_deref()).await,
        Work::Unsupported(kind) => Outcome::Failed {
            reason: format!(
                "the in-process executor runs noop and sleep tasks; `{kind}` tasks need a worker in this pool"
            ),
        },
    };
    let _ = done.send((c, outcome));
}

async fn listen_queue(store: Store, shard: store::ShardId, wake: Arc<Notify>, stop: CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        // Woken by every note, and on (re)listening: work announced meanwhile is looked for.
        () = store.follow_shard(shard, &[QUEUE_CHANNEL], |_| {
            wake.notify_one();
            true
        }) => {}
    }
}
