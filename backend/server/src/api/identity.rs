//! Sessions, tokens, tenants, members, projects, pools and connections.

use std::net::SocketAddr;

use api_types::{
    ApiToken, Connection, CreateProject, CreateTenant, CreateToken, CreatedToken, Dashboard, ErrorBody, InviteMember,
    Invited, LoginRequest, Me, Member, Page, Pool, PoolStatus, Project, PutConnection, SetRole, Tenant, TenantLimits,
};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use model::{ProjectId, TokenId, UserId};
use serde::Serialize;
use tower_sessions::Session;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Authenticated;
use crate::error::{ApiJson, ApiPath, ApiResult};

#[derive(Serialize, ToSchema)]
pub struct Ok {
    ok: bool,
}

// ------------------------------------------------------------------ auth

/// Signs in with email and password; sets the session cookie.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest, security(()),
    responses((status = 200, description = "OK", body = Me), (status = 401, description = "Not signed in, or wrong credentials", body = ErrorBody), (status = 429, description = "Too many failed sign-ins; wait for Retry-After seconds", body = ErrorBody)))]
pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    session: Session,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<Me>> {
    let caller = state.services.login(&req.email, &req.password, Some(addr.ip())).await?;
    service::session::start(&session, caller.user_id).await?;
    Ok(Json(state.services.me(&caller).await?))
}

/// Ends the console session.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 200, description = "OK", body = Ok)))]
pub(super) async fn logout(session: Session) -> ApiResult<Json<Ok>> {
    service::session::end(&session).await?;
    Ok(Json(Ok { ok: true }))
}

/// Who am I, and which tenants may I enter?
#[utoipa::path(get, path = "/me", tag = "auth", responses((status = 200, description = "OK", body = Me), (status = 401, description = "Not signed in, or wrong credentials", body = ErrorBody)))]
pub(super) async fn me(State(state): State<AppState>, Authenticated(caller): Authenticated) -> ApiResult<Json<Me>> {
    Ok(Json(state.services.me(&caller).await?))
}

/// My API tokens (never their secrets).
#[utoipa::path(get, path = "/tokens", tag = "auth", responses((status = 200, description = "OK", body = Page<ApiToken>)))]
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Page<ApiToken>>> {
    Ok(Json(Page { items: state.services.list_tokens(&caller).await? }))
}

/// Creates an API token. The secret is in this response only.
#[utoipa::path(post, path = "/tokens", tag = "auth", request_body = CreateToken,
    responses((status = 201, description = "Created", body = CreatedToken), (status = 422, description = "The input breaks a rule; the message names it", body = ErrorBody)))]
pub(super) async fn create_token(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_token(&caller, &req).await?)))
}

/// Revokes one of my tokens.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "auth", params(("id" = TokenId, Path)),
    responses((status = 204, description = "Done; no content"), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<TokenId>,
) -> ApiResult<StatusCode> {
    state.services.revoke_token(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ tenants

/// The tenants I am a member of.
#[utoipa::path(get, path = "/tenants", tag = "tenants", responses((status = 200, description = "OK", body = Page<Tenant>)))]
pub(super) async fn list_tenants(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Page<Tenant>>> {
    Ok(Json(Page { items: state.services.me(&caller).await?.tenants }))
}

/// Creates a tenant, with me as its owner (platform admins only).
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, description = "Created", body = Tenant), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 409, description = "Conflicts with the current state; the message says how", body = ErrorBody)))]
pub(super) async fn create_tenant(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_tenant(&caller, &req).await?)))
}

/// A tenant's dashboard numbers.
#[utoipa::path(get, path = "/tenants/{tenant}/dashboard", tag = "tenants", params(("tenant" = String, Path, description = "tenant slug")),
    responses((status = 200, description = "OK", body = Dashboard), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn dashboard(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<Dashboard>> {
    Ok(Json(state.services.dashboard(&caller, &tenant).await?))
}

/// The tenant's members and their roles (admins).
#[utoipa::path(get, path = "/tenants/{tenant}/members", tag = "tenants", params(("tenant" = String, Path)),
    responses((status = 200, description = "OK", body = Page<Member>), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn list_members(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<Page<Member>>> {
    Ok(Json(Page { items: state.services.members(&caller, &tenant).await? }))
}

/// Invites a person by email and grants a role (admins). A new account's password is returned once.
#[utoipa::path(post, path = "/tenants/{tenant}/members", tag = "tenants", params(("tenant" = String, Path)), request_body = InviteMember,
    responses((status = 201, description = "Created", body = Invited), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn invite_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<InviteMember>,
) -> ApiResult<(StatusCode, Json<Invited>)> {
    Ok((StatusCode::CREATED, Json(state.services.invite_member(&caller, &tenant, &req).await?)))
}

/// Changes a member's role (admins; nobody grants above their own role).
#[utoipa::path(put, path = "/tenants/{tenant}/members/{user}", tag = "tenants",
    params(("tenant" = String, Path), ("user" = UserId, Path)), request_body = SetRole,
    responses((status = 200, description = "OK", body = Member), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody), (status = 409, description = "Conflicts with the current state; the message says how", body = ErrorBody)))]
pub(super) async fn set_member_role(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, user)): ApiPath<(String, UserId)>,
    ApiJson(req): ApiJson<SetRole>,
) -> ApiResult<Json<Member>> {
    Ok(Json(state.services.set_role(&caller, &tenant, user, req.role).await?))
}

/// Removes a member (admins). The last owner cannot be removed.
#[utoipa::path(delete, path = "/tenants/{tenant}/members/{user}", tag = "tenants",
    params(("tenant" = String, Path), ("user" = UserId, Path)),
    responses((status = 204, description = "Done; no content"), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody), (status = 409, description = "Conflicts with the current state; the message says how", body = ErrorBody)))]
pub(super) async fn remove_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, user)): ApiPath<(String, UserId)>,
) -> ApiResult<StatusCode> {
    state.services.remove_member(&caller, &tenant, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ projects

/// The tenant's projects.
#[utoipa::path(get, path = "/tenants/{tenant}/projects", tag = "projects", params(("tenant" = String, Path)),
    responses((status = 200, description = "OK", body = Page<Project>), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn list_projects(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<Page<Project>>> {
    Ok(Json(Page { items: state.services.projects(&caller, &tenant).await? }))
}

/// Creates a project (admins).
#[utoipa::path(post, path = "/tenants/{tenant}/projects", tag = "projects", params(("tenant" = String, Path)), request_body = CreateProject,
    responses((status = 201, description = "Created", body = Project), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 409, description = "Conflicts with the current state; the message says how", body = ErrorBody)))]
pub(super) async fn create_project(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<CreateProject>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_project(&caller, &tenant, &req).await?)))
}

/// One project. Another tenant's project is 404.
#[utoipa::path(get, path = "/tenants/{tenant}/projects/{id}", tag = "projects",
    params(("tenant" = String, Path), ("id" = ProjectId, Path)),
    responses((status = 200, description = "OK", body = Project), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn get_project(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, id)): ApiPath<(String, ProjectId)>,
) -> ApiResult<Json<Project>> {
    Ok(Json(state.services.project(&caller, &tenant, id).await?))
}

/// Deletes a project (admins).
#[utoipa::path(delete, path = "/tenants/{tenant}/projects/{id}", tag = "projects",
    params(("tenant" = String, Path), ("id" = ProjectId, Path)),
    responses((status = 204, description = "Done; no content"), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn delete_project(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, id)): ApiPath<(String, ProjectId)>,
) -> ApiResult<StatusCode> {
    state.services.delete_project(&caller, &tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ quotas

/// The tenant's dispatch limits (max running attempts, fair-share weight).
#[utoipa::path(get, path = "/tenants/{tenant}/limits", tag = "tenants", params(("tenant" = String, Path)),
    responses((status = 200, description = "OK", body = TenantLimits), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn get_limits(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<TenantLimits>> {
    Ok(Json(state.services.tenant_limits(&caller, &tenant).await?))
}

/// Sets the tenant's dispatch limits (platform admins).
#[utoipa::path(put, path = "/tenants/{tenant}/limits", tag = "tenants", params(("tenant" = String, Path)), request_body = TenantLimits,
    responses((status = 200, description = "OK", body = TenantLimits), (status = 403, description = "Only platform admins set quotas", body = ErrorBody), (status = 422, description = "The input breaks a rule; the message names it", body = ErrorBody)))]
pub(super) async fn set_limits(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<TenantLimits>,
) -> ApiResult<Json<TenantLimits>> {
    Ok(Json(state.services.set_tenant_limits(&caller, &tenant, &req).await?))
}

/// Worker pools: slot limits, live workers, and what waits in each — with the reasons attempts
/// no live worker can take are held back (unschedulable).
#[utoipa::path(get, path = "/pools", tag = "tenants",
    responses((status = 200, description = "OK", body = Page<PoolStatus>)))]
pub(super) async fn list_pools(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Page<PoolStatus>>> {
    Ok(Json(Page { items: state.services.pools(&caller).await? }))
}

/// Sets a pool's total slots (platform admins).
#[utoipa::path(put, path = "/pools", tag = "tenants", request_body = Pool,
    responses((status = 200, description = "OK", body = Pool), (status = 403, description = "Only platform admins set pool slots", body = ErrorBody)))]
pub(super) async fn set_pool(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(req): ApiJson<Pool>,
) -> ApiResult<Json<Pool>> {
    Ok(Json(state.services.set_pool(&caller, &req).await?))
}

/// Creates a worker token (platform admins). The secret is in this response only.
#[utoipa::path(post, path = "/worker-tokens", tag = "auth", request_body = CreateToken,
    responses((status = 201, description = "Created", body = CreatedToken), (status = 403, description = "Only platform admins create worker tokens", body = ErrorBody)))]
pub(super) async fn create_worker_token(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_worker_token(&caller, &req.name).await?)))
}

/// Every worker the platform has seen: pool, region, capacity, load, health.
#[utoipa::path(get, path = "/workers", tag = "tenants", responses((status = 200, description = "OK", body = Page<api_types::Worker>)))]
pub(super) async fn list_workers(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Page<api_types::Worker>>> {
    Ok(Json(Page { items: state.services.workers(&caller).await? }))
}

/// Drains a worker: it finishes what it runs and takes nothing new (platform admins).
#[utoipa::path(post, path = "/workers/{id}/drain", tag = "tenants", params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = api_types::Worker), (status = 403, description = "Only platform admins drain workers", body = ErrorBody), (status = 404, description = "No such worker", body = ErrorBody)))]
pub(super) async fn drain_worker(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<api_types::Worker>> {
    Ok(Json(state.services.drain_worker(&caller, &id).await?))
}

// ------------------------------------------------------------------ connections

/// The tenant's database connections (developers and up; passwords shown as `***`).
#[utoipa::path(get, path = "/tenants/{tenant}/connections", tag = "connections", params(("tenant" = String, Path)),
    responses((status = 200, description = "OK", body = Page<Connection>), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody)))]
pub(super) async fn list_connections(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<Page<Connection>>> {
    Ok(Json(Page { items: state.services.connections(&caller, &tenant).await? }))
}

/// One connection (password shown as `***`).
#[utoipa::path(get, path = "/tenants/{tenant}/connections/{name}", tag = "connections",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "OK", body = Connection), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn get_connection(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
) -> ApiResult<Json<Connection>> {
    Ok(Json(state.services.connection(&caller, &tenant, &name).await?))
}

/// Creates or replaces a connection (admins). `sql` tasks name it in `config.connection`.
#[utoipa::path(put, path = "/tenants/{tenant}/connections/{name}", tag = "connections",
    params(("tenant" = String, Path), ("name" = String, Path)), request_body = PutConnection,
    responses((status = 200, description = "OK", body = Connection), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 422, description = "The URL or the name is not valid; the message says how", body = ErrorBody)))]
pub(super) async fn put_connection(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<PutConnection>,
) -> ApiResult<Json<Connection>> {
    Ok(Json(state.services.put_connection(&caller, &tenant, &name, &req).await?))
}

/// Deletes a connection (admins). Tasks that name it fail until it exists again.
#[utoipa::path(delete, path = "/tenants/{tenant}/connections/{name}", tag = "connections",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 204, description = "Done; no content"), (status = 403, description = "Your role in this tenant does not allow it", body = ErrorBody), (status = 404, description = "Not found, or in a tenant you are not a member of", body = ErrorBody)))]
pub(super) async fn delete_connection(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.services.delete_connection(&caller, &tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
