//! Runs: trigger, list, read, operate; tasks: clear, mark; backfills.

use api_types::{
    Backfill, ClearTask, CreateBackfill, ErrorBody, LogPage, MarkTask, Page, Run, RunDetail, TriggerRun, Triggered,
};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use model::RunId;
use model::state::{RunState, Trigger};
use serde::Deserialize;
use service::runs::{LogRange, RunQuery};
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::Authenticated;
use crate::error::{ApiJson, ApiPath, ApiResult};

/// Starts a run. With an `idempotency_key`, repeating the call returns the same run (200).
#[utoipa::path(post, path = "/tenants/{tenant}/workflows/{workflow}/runs", tag = "runs",
    params(("tenant" = String, Path), ("workflow" = String, Path, description = "id or name")), request_body = TriggerRun,
    responses(
        (status = 201, description = "A new run", body = Triggered),
        (status = 200, description = "The run this idempotency key created before", body = Triggered),
        (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody),
        (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody),
        (status = 422, description = "A required parameter is missing, or the input breaks a rule", body = ErrorBody)))]
pub(super) async fn trigger_run(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<TriggerRun>,
) -> ApiResult<(StatusCode, Json<Triggered>)> {
    let api = matches!(caller.via, service::auth::AuthMethod::Token(_));
    let t = state.services.trigger(&caller, &tenant, &workflow, &req, api, state.clock.now()).await?;
    Ok((if t.created { StatusCode::CREATED } else { StatusCode::OK }, Json(t)))
}

#[derive(Deserialize, IntoParams)]
pub(super) struct RunsQuery {
    /// A workflow id or name.
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    state: Option<RunState>,
    #[serde(default)]
    trigger: Option<Trigger>,
    /// Logical time at or after.
    #[serde(default)]
    since: Option<DateTime<Utc>>,
    /// Logical time before.
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    /// Paging: runs queued before this instant (the last `queued_at` of the previous page).
    #[serde(default)]
    before: Option<DateTime<Utc>>,
    /// At most this many (1–500). Default: 50.
    #[serde(default)]
    limit: Option<i64>,
}

/// The tenant's attempts that workers run now, oldest first, each with its worker.
#[utoipa::path(get, path = "/tenants/{tenant}/attempts/running", tag = "runs", params(("tenant" = String, Path)),
    responses((status = 200, description = "OK", body = Page<api_types::RunningAttempt>), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn list_running_attempts(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<Page<api_types::RunningAttempt>>> {
    Ok(Json(Page { items: state.services.running_attempts(&caller, &tenant).await? }))
}

/// Runs, newest first, filtered.
#[utoipa::path(get, path = "/tenants/{tenant}/runs", tag = "runs", params(("tenant" = String, Path), RunsQuery),
    responses((status = 200, description = "OK", body = Page<Run>), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn list_runs(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Json<Page<Run>>> {
    let query = RunQuery {
        workflow: q.workflow,
        state: q.state,
        trigger: q.trigger,
        since: q.since,
        until: q.until,
        before: q.before,
        limit: q.limit,
    };
    Ok(Json(Page { items: state.services.runs(&caller, &tenant, &query).await? }))
}

/// A run with its tasks' states and attempts.
#[utoipa::path(get, path = "/tenants/{tenant}/runs/{run}", tag = "runs", params(("tenant" = String, Path), ("run" = RunId, Path)),
    responses((status = 200, description = "OK", body = RunDetail), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn get_run(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, run)): ApiPath<(String, RunId)>,
) -> ApiResult<Json<RunDetail>> {
    Ok(Json(state.services.run_detail(&caller, &tenant, run).await?))
}

/// Cancels a run: running attempts are killed, the rest cancelled.
#[utoipa::path(post, path = "/tenants/{tenant}/runs/{run}/cancel", tag = "runs", params(("tenant" = String, Path), ("run" = RunId, Path)),
    responses((status = 200, description = "OK", body = RunDetail), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn cancel_run(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, run)): ApiPath<(String, RunId)>,
) -> ApiResult<Json<RunDetail>> {
    Ok(Json(state.services.cancel_run(&caller, &tenant, run, state.clock.now()).await?))
}

/// Runs every task of the run again.
#[utoipa::path(post, path = "/tenants/{tenant}/runs/{run}/rerun", tag = "runs", params(("tenant" = String, Path), ("run" = RunId, Path)),
    responses((status = 200, description = "OK", body = RunDetail), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn rerun(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, run)): ApiPath<(String, RunId)>,
) -> ApiResult<Json<RunDetail>> {
    Ok(Json(state.services.rerun(&caller, &tenant, run, state.clock.now()).await?))
}

/// Runs again only the tasks that failed, were cancelled, or never ran because of a failure.
#[utoipa::path(post, path = "/tenants/{tenant}/runs/{run}/rerun-failed", tag = "runs", params(("tenant" = String, Path), ("run" = RunId, Path)),
    responses((status = 200, description = "OK", body = RunDetail), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn rerun_failed(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, run)): ApiPath<(String, RunId)>,
) -> ApiResult<Json<RunDetail>> {
    Ok(Json(state.services.rerun_failed(&caller, &tenant, run, state.clock.now()).await?))
}

/// Runs a task again, optionally with everything downstream of it.
#[utoipa::path(post, path = "/tenants/{tenant}/runs/{run}/tasks/{task}/clear", tag = "runs",
    params(("tenant" = String, Path), ("run" = RunId, Path), ("task" = String, Path)), request_body = ClearTask,
    responses((status = 200, description = "OK", body = RunDetail), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn clear_task(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, run, task)): ApiPath<(String, RunId, String)>,
    ApiJson(req): ApiJson<ClearTask>,
) -> ApiResult<Json<RunDetail>> {
    Ok(Json(state.services.clear_task(&caller, &tenant, run, &task, req.downstream, state.clock.now()).await?))
}

/// Sets a task's state by hand (`succeeded` or `failed`); its downstream follows.
#[utoipa::path(post, path = "/tenants/{tenant}/runs/{run}/tasks/{task}/mark", tag = "runs",
    params(("tenant" = String, Path), ("run" = RunId, Path), ("task" = String, Path)), request_body = MarkTask,
    responses((status = 200, description = "OK", body = RunDetail), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody), (status = 422, description = "The input breaks a rule; the message names it", body = ErrorBody)))]
pub(super) async fn mark_task(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, run, task)): ApiPath<(String, RunId, String)>,
    ApiJson(req): ApiJson<MarkTask>,
) -> ApiResult<Json<RunDetail>> {
    Ok(Json(state.services.mark_task(&caller, &tenant, run, &task, &req.state, state.clock.now()).await?))
}

/// Runs the workflow's schedule ticks in a range, a few at a time, below fresh work in priority.
/// With `dry_run`, only lists the logical times it would create.
#[utoipa::path(post, path = "/tenants/{tenant}/workflows/{workflow}/backfills", tag = "runs",
    params(("tenant" = String, Path), ("workflow" = String, Path)), request_body = CreateBackfill,
    responses((status = 201, description = "Created", body = Backfill), (status = 200, description = "The preview of a dry run", body = Backfill),
        (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 422, description = "The input breaks a rule; the message names it", body = ErrorBody)))]
pub(super) async fn create_backfill(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CreateBackfill>,
) -> ApiResult<(StatusCode, Json<Backfill>)> {
    let b = state.services.backfill(&caller, &tenant, &workflow, &req, state.clock.now()).await?;
    Ok((if req.dry_run { StatusCode::OK } else { StatusCode::CREATED }, Json(b)))
}

/// The tenant's backfills.
#[utoipa::path(get, path = "/tenants/{tenant}/backfills", tag = "runs", params(("tenant" = String, Path)),
    responses((status = 200, description = "OK", body = Page<Backfill>), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn list_backfills(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<Page<Backfill>>> {
    Ok(Json(Page { items: state.services.backfills(&caller, &tenant).await? }))
}

/// Stops a backfill from creating more runs (those created go on).
#[utoipa::path(post, path = "/tenants/{tenant}/backfills/{id}/cancel", tag = "runs", params(("tenant" = String, Path), ("id" = uuid::Uuid, Path)),
    responses((status = 204, description = "Done; no content"), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn cancel_backfill(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, id)): ApiPath<(String, uuid::Uuid)>,
) -> ApiResult<StatusCode> {
    state.services.cancel_backfill(&caller, &tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
pub(super) struct LogQuery {
    /// Attempt number. Default: the latest.
    #[serde(default)]
    attempt: Option<i32>,
    /// Continue after this chunk (`last_seq` of the previous page). Default: from the start.
    #[serde(default)]
    after: Option<i64>,
    /// Chunks at most (a chunk holds up to 64 KiB). Default: 100.
    #[serde(default)]
    limit: Option<i64>,
}

/// A task's log, a page at a time. Follow it by calling again with `after = last_seq` until
/// `complete`, or use the `/stream` variant (server-sent events).
#[utoipa::path(get, path = "/tenants/{tenant}/runs/{run}/tasks/{task}/logs", tag = "runs",
    params(("tenant" = String, Path), ("run" = RunId, Path), ("task" = String, Path), LogQuery),
    responses((status = 200, description = "OK", body = LogPage), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn task_log(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, run, task)): ApiPath<(String, RunId, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<LogPage>> {
    let range = LogRange { attempt: q.attempt, after: q.after.unwrap_or(-1), limit: q.limit.unwrap_or(100) };
    Ok(Json(state.services.task_log(&caller, &tenant, run, &task, range).await?))
}

/// A task's log as server-sent events: each event's data is new log text (its id the chunk's
/// seq); an `end` event closes the stream when the attempt has ended and all of it was sent.
#[utoipa::path(get, path = "/tenants/{tenant}/runs/{run}/tasks/{task}/logs/stream", tag = "runs",
    params(("tenant" = String, Path), ("run" = RunId, Path), ("task" = String, Path), LogQuery),
    responses((status = 200, description = "text/event-stream"), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn task_log_stream(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, run, task)): ApiPath<(String, RunId, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<
    axum::response::sse::Sse<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    // The first page answers now, so a wrong task or run is a 404 rather than an empty stream.
    let first = state
        .services
        .task_log(
            &caller,
            &tenant,
            run,
            &task,
            LogRange { attempt: q.attempt, after: q.after.unwrap_or(-1), limit: 100 },
        )
        .await?;
    let attempt = Some(first.attempt);
    let stream = futures::stream::unfold(Some(first), move |page| {
        let (state, caller, tenant, task) = (state.clone(), caller.clone(), tenant.clone(), task.clone());
        async move {
            let page = page?;
            if page.text.is_empty() && page.complete {
                return Some((Ok(Event::default().event("end").data(page.state.clone())), None));
            }
            let event =
                (!page.text.is_empty()).then(|| Event::default().id(page.last_seq.to_string()).data(page.text.clone()));
            if page.text.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            let next = state
                .services
                .task_log(&caller, &tenant, run, &task, LogRange { attempt, after: page.last_seq, limit: 100 })
                .await
                .ok();
            Some((Ok(event.unwrap_or_else(|| Event::default().comment("waiting"))), next))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A run as server-sent events: a `run` event with the whole run (as `GET /runs/{run}` answers)
/// now and whenever it changes, and an `end` event (its data: the final state) once it has ended
/// and that was sent.
#[utoipa::path(get, path = "/tenants/{tenant}/runs/{run}/events", tag = "runs",
    params(("tenant" = String, Path), ("run" = RunId, Path)),
    responses((status = 200, description = "text/event-stream of `run` events (RunDetail as JSON), then `end`"),
        (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn run_events(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, run)): ApiPath<(String, RunId)>,
) -> ApiResult<
    axum::response::sse::Sse<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    /// How often a followed run is read again.
    const EVERY: std::time::Duration = std::time::Duration::from_millis(300);
    // The first state answers now, so a wrong run is a 404 rather than an empty stream.
    let first = state.services.run_detail(&caller, &tenant, run).await?;
    enum Next {
        Send(Box<RunDetail>),
        Poll(Box<RunDetail>),
        End(&'static str),
        Done,
    }
    let stream = futures::stream::unfold(Next::Send(Box::new(first)), move |next| {
        let (state, caller, tenant) = (state.clone(), caller.clone(), tenant.clone());
        async move {
            let last = match next {
                Next::Done => return None,
                Next::End(state) => return Some((Ok(Event::default().event("end").data(state)), Next::Done)),
                Next::Send(d) => {
                    let event = Event::default().event("run").json_data(&*d).unwrap_or_default();
                    let then = if d.run.state.is_terminal() { Next::End(d.run.state.as_str()) } else { Next::Poll(d) };
                    return Some((Ok(event), then));
                }
                Next::Poll(last) => last,
            };
            loop {
                tokio::time::sleep(EVERY).await;
                match state.services.run_detail(&caller, &tenant, run).await {
                    Ok(now) if now != *last => {
                        let event = Event::default().event("run").json_data(&now).unwrap_or_default();
                        let then = if now.run.state.is_terminal() {
                            Next::End(now.run.state.as_str())
                        } else {
                            Next::Poll(Box::new(now))
                        };
                        return Some((Ok(event), then));
                    }
                    Ok(_) => {}
                    // Gone (deleted) or refused now: the stream ends.
                    Err(_) => return Some((Ok(Event::default().event("end").data("gone")), Next::Done)),
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
