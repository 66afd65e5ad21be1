//! Workflows, versions, schedules; the workflow JSON Schema and the cron preview.

use api_types::{
    Applied, ApplyWorkflow, Diff, ErrorBody, Page, Preview, Rollback, Schedule, Version, VersionDocument, Workflow,
    WorkflowDetail,
};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use model::cron::Dialect;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::Authenticated;
use crate::error::{ApiJson, ApiPath, ApiResult};

/// The JSON Schema of workflow documents (YAML or JSON), with each task kind's config schema
/// under `x-task-kinds`.
#[utoipa::path(get, path = "/schemas/workflow.json", tag = "workflows", security(()),
    responses((status = 200, description = "JSON Schema (draft 2020-12)", body = Object)))]
pub(super) async fn workflow_schema() -> Json<serde_json::Value> {
    Json(serde_json::to_value(model::workflow::json_schema()).unwrap_or_default())
}

#[derive(Deserialize, IntoParams)]
pub(super) struct CronQuery {
    /// The expression, e.g. `0 2 * * *` or `0 0 2 ? * MON`.
    expr: String,
    /// `unix` (default) or `quartz`.
    #[serde(default)]
    dialect: Option<Dialect>,
    /// IANA zone. Default: UTC.
    #[serde(default)]
    tz: Option<String>,
    /// Fires after this instant. Default: now.
    #[serde(default)]
    after: Option<chrono::DateTime<chrono::Utc>>,
    /// How many. Default: 10.
    #[serde(default)]
    count: Option<usize>,
}

/// The next fire times of any cron expression (no tenant needed).
#[utoipa::path(get, path = "/cron/next", tag = "workflows", security(()), params(CronQuery),
    responses((status = 200, description = "OK", body = Preview), (status = 422, description = "The expression or zone is not valid; the message says how", body = ErrorBody)))]
pub(super) async fn cron_next(State(state): State<AppState>, Query(q): Query<CronQuery>) -> ApiResult<Json<Preview>> {
    let after = q.after.unwrap_or_else(|| state.clock.now());
    Ok(Json(service::workflows::preview_expression(
        &q.expr,
        q.dialect.unwrap_or_default(),
        q.tz.as_deref().unwrap_or("UTC"),
        after,
        q.count.unwrap_or(10),
    )?))
}

#[derive(Deserialize, IntoParams)]
pub(super) struct ProjectQuery {
    /// Only this project's workflows (its key).
    #[serde(default)]
    project: Option<String>,
}

/// The tenant's workflows.
#[utoipa::path(get, path = "/tenants/{tenant}/workflows", tag = "workflows", params(("tenant" = String, Path), ProjectQuery),
    responses((status = 200, description = "OK", body = Page<Workflow>), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn list_workflows(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
    Query(q): Query<ProjectQuery>,
) -> ApiResult<Json<Page<Workflow>>> {
    Ok(Json(Page { items: state.services.workflows(&caller, &tenant, q.project.as_deref()).await? }))
}

/// Creates a workflow, or adds a version when the document changed (200 when it did not).
/// An invalid document is refused with every problem, its line and its task.
#[utoipa::path(post, path = "/tenants/{tenant}/workflows", tag = "workflows", params(("tenant" = String, Path)), request_body = ApplyWorkflow,
    responses(
        (status = 201, description = "A new workflow or version", body = Applied),
        (status = 200, description = "Unchanged: the document equals the current version", body = Applied),
        (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody),
        (status = 422, description = "The document is not valid; `details` lists each problem", body = ErrorBody)))]
pub(super) async fn apply_workflow(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<ApplyWorkflow>,
) -> ApiResult<(StatusCode, Json<Applied>)> {
    let applied = state.services.apply_workflow(&caller, &tenant, &req, state.clock.now()).await?;
    let status = if applied.changed { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(applied)))
}

/// A workflow (by id, or by name when unique in the tenant) with its current document.
#[utoipa::path(get, path = "/tenants/{tenant}/workflows/{workflow}", tag = "workflows",
    params(("tenant" = String, Path), ("workflow" = String, Path, description = "id or name")),
    responses((status = 200, description = "OK", body = WorkflowDetail), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn get_workflow(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow)): ApiPath<(String, String)>,
) -> ApiResult<Json<WorkflowDetail>> {
    Ok(Json(state.services.workflow(&caller, &tenant, &workflow).await?))
}

/// Deletes a workflow, its versions, schedule and runs.
#[utoipa::path(delete, path = "/tenants/{tenant}/workflows/{workflow}", tag = "workflows",
    params(("tenant" = String, Path), ("workflow" = String, Path)),
    responses((status = 204, description = "Done; no content"), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn delete_workflow(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.services.delete_workflow(&caller, &tenant, &workflow).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The version history, newest first.
#[utoipa::path(get, path = "/tenants/{tenant}/workflows/{workflow}/versions", tag = "workflows",
    params(("tenant" = String, Path), ("workflow" = String, Path)),
    responses((status = 200, description = "OK", body = Page<Version>), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn list_versions(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow)): ApiPath<(String, String)>,
) -> ApiResult<Json<Page<Version>>> {
    Ok(Json(Page { items: state.services.versions(&caller, &tenant, &workflow).await? }))
}

/// One version's document.
#[utoipa::path(get, path = "/tenants/{tenant}/workflows/{workflow}/versions/{version}", tag = "workflows",
    params(("tenant" = String, Path), ("workflow" = String, Path), ("version" = i32, Path)),
    responses((status = 200, description = "OK", body = VersionDocument), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn get_version(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow, version)): ApiPath<(String, String, i32)>,
) -> ApiResult<Json<VersionDocument>> {
    Ok(Json(state.services.workflow_version(&caller, &tenant, &workflow, version).await?))
}

#[derive(Deserialize, IntoParams)]
pub(super) struct DiffQuery {
    /// The older version.
    from: i32,
    /// The newer version. Default: the current one.
    #[serde(default)]
    to: Option<i32>,
}

/// What changed between two versions: tasks added, removed and changed (with their fields).
#[utoipa::path(get, path = "/tenants/{tenant}/workflows/{workflow}/diff", tag = "workflows",
    params(("tenant" = String, Path), ("workflow" = String, Path), DiffQuery),
    responses((status = 200, description = "OK", body = Diff), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn diff_versions(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow)): ApiPath<(String, String)>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<Diff>> {
    Ok(Json(state.services.diff(&caller, &tenant, &workflow, q.from, q.to).await?))
}

/// Makes a new version equal to an old one.
#[utoipa::path(post, path = "/tenants/{tenant}/workflows/{workflow}/rollback", tag = "workflows",
    params(("tenant" = String, Path), ("workflow" = String, Path)), request_body = Rollback,
    responses((status = 201, description = "Created", body = Applied), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn rollback(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<Rollback>,
) -> ApiResult<(StatusCode, Json<Applied>)> {
    let applied =
        state.services.rollback(&caller, &tenant, &workflow, req.version, &req.message, state.clock.now()).await?;
    Ok((if applied.changed { StatusCode::CREATED } else { StatusCode::OK }, Json(applied)))
}

/// Pauses the schedule: no fires until resumed.
#[utoipa::path(post, path = "/tenants/{tenant}/workflows/{workflow}/schedule/pause", tag = "workflows",
    params(("tenant" = String, Path), ("workflow" = String, Path)),
    responses((status = 200, description = "OK", body = Schedule), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn pause_schedule(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow)): ApiPath<(String, String)>,
) -> ApiResult<Json<Schedule>> {
    Ok(Json(state.services.set_paused(&caller, &tenant, &workflow, true).await?))
}

/// Resumes the schedule; ticks missed while paused follow its catch-up policy.
#[utoipa::path(post, path = "/tenants/{tenant}/workflows/{workflow}/schedule/resume", tag = "workflows",
    params(("tenant" = String, Path), ("workflow" = String, Path)),
    responses((status = 200, description = "OK", body = Schedule), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn resume_schedule(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow)): ApiPath<(String, String)>,
) -> ApiResult<Json<Schedule>> {
    Ok(Json(state.services.set_paused(&caller, &tenant, &workflow, false).await?))
}

#[derive(Deserialize, IntoParams)]
pub(super) struct CountQuery {
    /// How many. Default: 10.
    #[serde(default)]
    count: Option<usize>,
}

/// The schedule's next fire times, in its time zone's rules.
#[utoipa::path(get, path = "/tenants/{tenant}/workflows/{workflow}/schedule/preview", tag = "workflows",
    params(("tenant" = String, Path), ("workflow" = String, Path), CountQuery),
    responses((status = 200, description = "OK", body = Preview), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn preview_schedule(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, workflow)): ApiPath<(String, String)>,
    Query(q): Query<CountQuery>,
) -> ApiResult<Json<Preview>> {
    Ok(Json(
        state.services.preview_schedule(&caller, &tenant, &workflow, q.count.unwrap_or(10), state.clock.now()).await?,
    ))
}
