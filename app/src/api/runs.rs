//! Runs and what operators do to them; workers and pools; the signed-in person's preferences.

use api_types::{LogPage, PoolStatus, Run, RunDetail, RunningAttempt, Worker};
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use model::RunId;
use serde::{Deserialize, Serialize};

use super::ConsoleError;
#[cfg(feature = "ssr")]
use super::ssr;
use crate::i18n::Prefs;

/// The runs list's filters (all optional), and its page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub state: Option<String>,
    pub trigger: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Runs queued before this instant (the previous page's last).
    pub before: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
}

#[server(endpoint = "runs", input = Json)]
pub async fn list_runs(tenant: String, filter: RunFilter) -> Result<Vec<Run>, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    let invalid = |e: String| ConsoleError { code: "invalid_input".into(), message: e };
    let q = service::runs::RunQuery {
        workflow: filter.workflow.filter(|w| !w.is_empty()),
        state: filter.state.filter(|s| !s.is_empty()).map(|s| s.parse()).transpose().map_err(invalid)?,
        trigger: filter.trigger.filter(|s| !s.is_empty()).map(|s| s.parse()).transpose().map_err(invalid)?,
        since: filter.since,
        until: filter.until,
        before: filter.before,
        limit: filter.limit,
    };
    Ok(services.runs(&caller, &tenant, &q).await?)
}

#[server(endpoint = "run", input = Json)]
pub async fn get_run(tenant: String, run: RunId) -> Result<RunDetail, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.run_detail(&caller, &tenant, run).await?)
}

/// What an operator does to a run or one of its tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOp {
    Cancel,
    Rerun,
    RerunFailed,
    /// Clear a task (and, with `downstream`, everything after it) so it runs again.
    Clear {
        task: String,
        downstream: bool,
    },
    /// Set a task's state by hand: `succeeded` or `failed`.
    Mark {
        task: String,
        state: String,
    },
}

#[server(endpoint = "operate", input = Json)]
pub async fn operate_run(tenant: String, run: RunId, op: RunOp) -> Result<RunDetail, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    let now = Utc::now();
    Ok(match op {
        RunOp::Cancel => services.cancel_run(&caller, &tenant, run, now).await?,
        RunOp::Rerun => services.rerun(&caller, &tenant, run, now).await?,
        RunOp::RerunFailed => services.rerun_failed(&caller, &tenant, run, now).await?,
        RunOp::Clear { task, downstream } => services.clear_task(&caller, &tenant, run, &task, downstream, now).await?,
        RunOp::Mark { task, state } => services.mark_task(&caller, &tenant, run, &task, &state, now).await?,
    })
}

#[server(endpoint = "task_log", input = Json)]
pub async fn task_log(
    tenant: String,
    run: RunId,
    task: String,
    attempt: Option<i32>,
    after: i64,
) -> Result<LogPage, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    let range = service::runs::LogRange { attempt, after, limit: 200 };
    Ok(services.task_log(&caller, &tenant, run, &task, range).await?)
}

/// Every worker, every pool, and what of this tenant's the workers run now.
#[server(endpoint = "workers", input = Json)]
pub async fn list_workers(tenant: String) -> Result<(Vec<Worker>, Vec<PoolStatus>, Vec<RunningAttempt>), ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok((
        services.workers(&caller).await?,
        services.pools(&caller).await?,
        services.running_attempts(&caller, &tenant).await?,
    ))
}

#[server(endpoint = "drain", input = Json)]
pub async fn drain_worker(id: String) -> Result<Worker, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.drain_worker(&caller, &id).await?)
}

/// Keeps the person's language and theme (in their account, and in cookies for the next page).
#[server(endpoint = "set_prefs", input = Json)]
pub async fn set_prefs(prefs: Prefs) -> Result<(), ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    let value = serde_json::to_value(prefs).unwrap_or_default();
    services.set_preferences(&caller, &value).await?;
    ssr::set_pref_cookies(prefs);
    Ok(())
}
