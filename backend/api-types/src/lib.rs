#![doc = include_str!("../README.md")]

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use model::state::{RunState, TaskState};
use model::{DisplayName, Email, ProjectId, Role, RunId, Slug, TenantId, TokenId, UserId, WorkflowId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every error the API returns: a stable machine `code` and a human `message` that says what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable, snake_case, safe to match on (`tenant_not_found`, `forbidden`, `invalid_input`).
    pub code: String,
    /// For people: what went wrong and how to fix it.
    pub message: String,
    /// Each problem of an invalid document, with its line and task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

/// One problem in a submitted document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub line: Option<usize>,
    pub task: Option<String>,
    pub message: String,
}

/// Password login (the console uses a form; the API accepts JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    /// May create tenants and see every tenant's health.
    pub platform_admin: bool,
    pub created_at: DateTime<Utc>,
}

/// A tenant as seen by one of its members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    /// The caller's role in this tenant.
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// Who is calling, and where they may go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub user: User,
    pub tenants: Vec<Tenant>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateTenant {
    pub slug: Slug,
    pub name: DisplayName,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Project {
    pub id: ProjectId,
    pub tenant_id: TenantId,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateProject {
    pub slug: Slug,
    pub name: DisplayName,
    #[serde(default)]
    pub description: String,
}

/// A member of a tenant and their role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
}

/// Invite someone by email. A new user gets an initial password, shown once in the response.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InviteMember {
    pub email: Email,
    pub role: Role,
    /// Used when the user does not exist yet; defaults to the part of the email before `@`.
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invited {
    pub member: Member,
    /// Present only when the invitation created the user: give it to them; it is not stored.
    pub initial_password: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetRole {
    pub role: Role,
}

/// An API token's metadata (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: TokenId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateToken {
    pub name: String,
    /// Days until the token stops working; absent means it never expires.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// The token, with its secret: shown once, stored only as a hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: ApiToken,
    /// `Authorization: Bearer <secret>`. Copy it now: it cannot be shown again.
    pub secret: String,
}

/// The numbers on a tenant's dashboard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dashboard {
    pub tenant: Tenant,
    pub members: i64,
    pub projects: i64,
    /// The shard database that holds this tenant's data answered.
    pub shard_ok: bool,
    pub server_version: String,
    pub server_time: DateTime<Utc>,
    /// What the runs numbers count from: the start of the day (UTC).
    pub since: DateTime<Utc>,
    /// Runs created since `since`, by state.
    pub runs: BTreeMap<String, i64>,
    /// Succeeded ÷ ended runs since `since`; None before any ended.
    pub success_rate: Option<f64>,
    /// Seconds from a scheduled run's logical time to its first task's start, p50 and p95.
    pub schedule_delay_p50: Option<f64>,
    pub schedule_delay_p95: Option<f64>,
    /// Ready attempts waiting, by pool (every tenant's: pools are shared).
    pub queue: Vec<QueueDepth>,
    /// Workflows with failed runs since `since`, most first.
    pub failing: Vec<FailingWorkflow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueDepth {
    pub pool: String,
    pub queued: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailingWorkflow {
    pub id: WorkflowId,
    pub name: String,
    pub failed_runs: i64,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
}

// ------------------------------------------------------------------ workflows

/// Create a workflow, or add a version of it when the document changed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplyWorkflow {
    /// The project (key) the workflow belongs to.
    pub project: String,
    /// The workflow document, YAML or JSON (see /api/v1/schemas/workflow.json).
    pub document: String,
    /// Why this version: shown in the version history.
    #[serde(default)]
    pub message: String,
    /// Where the console placed each task: task id → `{"x": .., "y": ..}`. Kept with the
    /// workflow, not in its versions (positions are not content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Applied {
    pub workflow: Workflow,
    /// False when the document equals the current version (nothing was written).
    pub changed: bool,
    /// What will fail when the workflow runs although the document is valid, such as a `sql`
    /// task naming a connection the tenant does not have (yet). The version is saved regardless.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Workflow {
    pub id: WorkflowId,
    /// Project key.
    pub project: String,
    pub name: String,
    /// The current version.
    pub version: i32,
    pub description: String,
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub task_count: usize,
    pub schedule: Option<Schedule>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The latest run (in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
}

/// A workflow's latest run, as lists show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastRun {
    pub id: RunId,
    pub state: RunState,
    pub queued_at: DateTime<Utc>,
}

/// A workflow with its current document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowDetail {
    pub workflow: Workflow,
    /// The document of the current version, as JSON.
    pub document: Value,
    /// The console's positions of its tasks, when it saved some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    pub cron: String,
    pub dialect: String,
    pub timezone: String,
    /// In words, e.g. "At 02:00".
    pub description: String,
    pub paused: bool,
    pub catchup: String,
    pub overlap: String,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub last_fire_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Version {
    pub version: i32,
    pub message: String,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    /// True for the version runs start with now.
    pub current: bool,
}

/// A version's document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionDocument {
    pub version: Version,
    pub document: Value,
}

/// What changed between two versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diff {
    pub from: i32,
    pub to: i32,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<TaskChange>,
    /// Workflow-level settings that differ (`schedule`, `params`, ...).
    pub settings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskChange {
    pub id: String,
    pub fields: Vec<String>,
}

/// Make a new version equal to an old one.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rollback {
    pub version: i32,
    #[serde(default)]
    pub message: String,
}

/// The next fire times of a schedule (or of any expression).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preview {
    pub expression: String,
    pub timezone: String,
    pub description: String,
    pub next: Vec<DateTime<Utc>>,
}

// ------------------------------------------------------------------ runs

/// Start a run by hand or from a program.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TriggerRun {
    /// Overrides of the workflow's params.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Sending the same key again returns the run it created, instead of a new one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The logical time the run stands for. Default: now.
    #[serde(default)]
    pub logical_time: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    pub id: RunId,
    pub workflow_id: WorkflowId,
    pub workflow: String,
    pub version: i32,
    pub trigger: String,
    pub logical_time: DateTime<Utc>,
    pub state: RunState,
    pub params: Value,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// The answer to a trigger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Triggered {
    pub run: Run,
    /// False when the idempotency key had been used: this is the earlier run.
    pub created: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunDetail {
    pub run: Run,
    pub tasks: Vec<TaskRun>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskRun {
    pub id: String,
    pub kind: String,
    pub state: TaskState,
    pub depends_on: Vec<String>,
    pub reason: Option<String>,
    pub outputs: BTreeMap<String, String>,
    pub attempts: Vec<Attempt>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    pub attempt: i32,
    pub state: String,
    pub pool: String,
    pub worker: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// The process's exit code, for tasks that ran a process and ended (128 + N: killed by
    /// signal N).
    pub exit_code: Option<i32>,
    /// For a queued attempt no live worker can take as things stand (no worker in its pool or
    /// region, none with its labels, none big enough): why. It waits; a fitting worker that
    /// joins takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<String>,
}

/// Run a task again (and optionally everything downstream of it).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClearTask {
    #[serde(default)]
    pub downstream: bool,
}

/// Set a task's state by hand.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarkTask {
    /// `succeeded` or `failed`.
    pub state: String,
}

/// Run a range of past schedule ticks.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateBackfill {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Runs active at once. Default: 1.
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// Newest tick first. Default: oldest first.
    #[serde(default)]
    pub newest_first: bool,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Only list the logical times it would create.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backfill {
    pub id: Option<uuid::Uuid>,
    pub workflow_id: WorkflowId,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub parallelism: i32,
    pub state: String,
    /// Logical times not yet started (all of them, for a dry run).
    pub pending: Vec<DateTime<Utc>>,
}

/// A tenant's share of dispatch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantLimits {
    /// Most attempts running at once; absent = no limit.
    #[serde(default)]
    pub max_running: Option<u32>,
    /// Weight in fair share: weight 2 gets twice the slots of weight 1 under contention. Default: 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// A worker pool's total slots across its workers (per shard).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pool {
    pub name: String,
    /// Absent = bounded only by the workers' own capacity.
    #[serde(default)]
    pub slots: Option<u32>,
}

/// A database `sql` tasks run against. The URL is shown with its password replaced by `***`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connection {
    pub name: String,
    /// `postgres` or `mysql`, from the URL's scheme.
    pub kind: String,
    pub url: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Creates or replaces a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PutConnection {
    /// `postgres://user:password@host:5432/db` or `mysql://user:password@host:3306/db`.
    pub url: String,
    #[serde(default)]
    pub description: String,
}

/// A pool as the platform sees it now: its slot limit, its live workers, what waits for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolStatus {
    pub name: String,
    /// The pool's slot limit, if one is set.
    pub slots: Option<u32>,
    /// Live workers (connected, not draining, heard from in the last minute).
    pub workers: u32,
    /// Slots of those workers.
    pub worker_slots: u32,
    /// Attempts ready to run and waiting for a worker of this pool (every tenant).
    pub queued: u64,
    /// Of those, how many no live worker can take.
    pub unschedulable: u64,
    /// Why, with how many attempts each reason holds back.
    pub waiting: Vec<Waiting>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Waiting {
    pub reason: String,
    pub attempts: u64,
}

/// A piece of an attempt's log: records `<time> <O|E> <text>` one per line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogPage {
    pub attempt: i32,
    /// The attempt's state; once it is final and `text` is empty, the log is complete.
    pub state: String,
    pub text: String,
    /// Pass as `after` to read on.
    pub last_seq: i64,
    /// The attempt has ended and everything it logged was returned.
    pub complete: bool,
}

/// A worker as the registry knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Worker {
    pub id: String,
    pub pool: String,
    pub region: String,
    pub labels: Value,
    pub hostname: String,
    pub version: String,
    /// How the host isolates tasks (cgroup v2, v1, or none, and why).
    pub isolation: String,
    /// `{slots, cpu_millis, memory_bytes, gpus}`.
    pub capacity: Value,
    pub free: Value,
    pub running: i32,
    pub draining: bool,
    pub connected: bool,
    pub connected_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// An attempt of the tenant's that a worker runs now (the workers page lists them under their
/// worker; other tenants' attempts on the same worker are not shown).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunningAttempt {
    pub worker_id: String,
    pub run_id: RunId,
    pub task: String,
    pub workflow: String,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_with_a_bad_email_is_refused_when_parsed() {
        let err = serde_json::from_str::<InviteMember>(r#"{"email":"nope","role":"viewer"}"#).unwrap_err();
        assert!(err.to_string().contains("not an email address"), "{err}");
        let err = serde_json::from_str::<InviteMember>(r#"{"email":"a@b.io","role":"root"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
