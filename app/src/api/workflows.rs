//! Workflows, versions, schedules, triggers and backfills: the editor's and the lists' calls.

use api_types::{
    Applied, Backfill, Diff, Preview, Schedule, Triggered, Version, VersionDocument, Workflow, WorkflowDetail,
};
use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use serde_json::Value;
use std::collections::BTreeMap;

use super::ConsoleError;
#[cfg(feature = "ssr")]
use super::ssr;

#[server(endpoint = "workflows", input = Json)]
pub async fn list_workflows(tenant: String) -> Result<Vec<Workflow>, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.workflows(&caller, &tenant, None).await?)
}

#[server(endpoint = "workflow", input = Json)]
pub async fn get_workflow(tenant: String, id: String) -> Result<WorkflowDetail, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.workflow(&caller, &tenant, &id).await?)
}

/// Saves a document (a new version when its content changed) and the canvas positions.
#[server(endpoint = "save_workflow", input = Json)]
pub async fn save_workflow(
    tenant: String,
    project: String,
    document: String,
    message: String,
    layout: Option<Value>,
) -> Result<Applied, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    let req = api_types::ApplyWorkflow { project, document, message, layout };
    Ok(services.apply_workflow(&caller, &tenant, &req, chrono::Utc::now()).await?)
}

#[server(endpoint = "delete_workflow", input = Json)]
pub async fn delete_workflow(tenant: String, id: String) -> Result<(), ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.delete_workflow(&caller, &tenant, &id).await?)
}

#[server(endpoint = "versions", input = Json)]
pub async fn list_versions(tenant: String, id: String) -> Result<Vec<Version>, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.versions(&caller, &tenant, &id).await?)
}

#[server(endpoint = "version", input = Json)]
pub async fn get_version(tenant: String, id: String, version: i32) -> Result<VersionDocument, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.workflow_version(&caller, &tenant, &id, version).await?)
}

#[server(endpoint = "diff", input = Json)]
pub async fn diff_versions(tenant: String, id: String, from: i32, to: i32) -> Result<Diff, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.diff(&caller, &tenant, &id, from, Some(to)).await?)
}

#[server(endpoint = "rollback", input = Json)]
pub async fn rollback(tenant: String, id: String, version: i32, message: String) -> Result<Applied, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.rollback(&caller, &tenant, &id, version, &message, chrono::Utc::now()).await?)
}

#[server(endpoint = "set_paused", input = Json)]
pub async fn set_paused(tenant: String, id: String, paused: bool) -> Result<Schedule, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.set_paused(&caller, &tenant, &id, paused).await?)
}

/// The next fires of the saved schedule, computed by the server (the editor computes a draft's
/// itself, with the same code).
#[server(endpoint = "schedule_preview", input = Json)]
pub async fn schedule_preview(tenant: String, id: String, count: usize) -> Result<Preview, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.preview_schedule(&caller, &tenant, &id, count, chrono::Utc::now()).await?)
}

#[server(endpoint = "trigger", input = Json)]
pub async fn trigger_run(
    tenant: String,
    id: String,
    params: BTreeMap<String, Value>,
    logical_time: Option<chrono::DateTime<chrono::Utc>>,
    idempotency_key: Option<String>,
) -> Result<Triggered, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    let req = api_types::TriggerRun { params, idempotency_key, logical_time };
    Ok(services.trigger(&caller, &tenant, &id, &req, false, chrono::Utc::now()).await?)
}

/// A backfill; with `dry_run`, only the logical times it would create.
#[server(endpoint = "backfill", input = Json)]
pub async fn create_backfill(
    tenant: String,
    id: String,
    req: api_types::CreateBackfill,
) -> Result<Backfill, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.backfill(&caller, &tenant, &id, &req, chrono::Utc::now()).await?)
}
