//! REST under `/api/v1`: handlers extract, call one use case, and map the result.

mod identity;
mod runs;
mod workflows;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orrery API",
        description = "Multi-tenant workflow scheduling. Authenticate with `Authorization: Bearer orr_...` \
                       (create a token with POST /api/v1/tokens) or a console session cookie. \
                       Errors are JSON `{code, message}`; `code` is stable.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    // Enums used only in query parameters are not collected from handlers; list them here.
    components(schemas(model::cron::Dialect, model::state::RunState, model::state::Trigger, model::state::TaskState)),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "auth", description = "Sessions and API tokens"),
        (name = "tenants", description = "Tenants and their members"),
        (name = "projects", description = "Projects inside a tenant"),
        (name = "connections", description = "Databases `sql` tasks run against"),
        (name = "workflows", description = "Workflow documents, versions and schedules"),
        (name = "runs", description = "Runs, their tasks and attempts; backfills"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("orr_<id><secret>").build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::new("orrery_session"),
            )),
        );
    }
}

/// The REST routes and their OpenAPI document.
pub fn routes() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    use identity::*;
    use runs::*;
    use workflows::*;
    let v1 = OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(create_worker_token))
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(dashboard))
        .routes(routes!(list_members, invite_member))
        .routes(routes!(set_member_role, remove_member))
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, delete_project))
        .routes(routes!(list_connections))
        .routes(routes!(get_connection, put_connection, delete_connection))
        .routes(routes!(get_limits, set_limits))
        .routes(routes!(list_pools, set_pool))
        .routes(routes!(list_workers))
        .routes(routes!(drain_worker))
        .routes(routes!(workflow_schema))
        .routes(routes!(cron_next))
        .routes(routes!(list_workflows, apply_workflow))
        .routes(routes!(get_workflow, delete_workflow))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(diff_versions))
        .routes(routes!(rollback))
        .routes(routes!(pause_schedule))
        .routes(routes!(resume_schedule))
        .routes(routes!(preview_schedule))
        .routes(routes!(trigger_run))
        .routes(routes!(list_runs))
        .routes(routes!(list_running_attempts))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
        .routes(routes!(rerun))
        .routes(routes!(rerun_failed))
        .routes(routes!(clear_task))
        .routes(routes!(mark_task))
        .routes(routes!(task_log))
        .routes(routes!(task_log_stream))
        .routes(routes!(run_events))
        .routes(routes!(create_backfill))
        .routes(routes!(list_backfills))
        .routes(routes!(cancel_backfill));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", v1).split_for_parts()
}
