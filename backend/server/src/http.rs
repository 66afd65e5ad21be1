//! The HTTP surface: health, metrics, REST + OpenAPI, and the console, behind one set of layers.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use leptos::prelude::provide_context;
use leptos_axum::LeptosRoutes;
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::PostgresStore;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::{AppState, api, auth, metrics};

/// The cookie that carries the console session id.
pub const SESSION_COOKIE: &str = "orrery_session";

/// Everything the server answers. Tests call this without a socket.
pub fn router(state: AppState, sessions: PostgresStore) -> Router {
    let (rest, openapi) = api::routes();
    let leptos_options = state.leptos_options.clone();
    let console_routes = leptos_axum::generate_route_list(app::App);
    let services = state.services.clone();
    let session_layer = SessionManagerLayer::new(sessions)
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.secure_cookies())
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(i64::from(state.config.auth.session_idle_minutes))));
    let x_request_id = header::HeaderName::from_static("x-request-id");

    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/", get(home))
        .merge(rest)
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi))
        .route("/api/v1/{*rest}", any(api_not_found))
        .leptos_routes_with_context(&state, console_routes, move || provide_context(services.clone()), {
            let options = leptos_options.clone();
            move || app::shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(app::shell))
        .route_layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(from_fn_with_state(state.clone(), console_guard))
        .layer(session_layer)
        .layer(from_fn(auth::csrf_guard))
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
                .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("http", http.method = %req.method(), http.path = %req.uri().path(), request.id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed to answer; the details are in its log")
                        .into_response()
                }))
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(60)))
                // gzip for pages, the console's wasm and JSON; never for event streams or gRPC
                // (tower-http's default predicate leaves those, and small bodies, alone).
                .layer(CompressionLayer::new()),
        )
        .with_state(state.clone())
        // Worker sessions: long-lived gRPC streams on the same listener (HTTP/2), outside the
        // request timeout, sessions and CSRF layers above.
        .route_service(crate::grpc::PATH, state.workers.clone().into_server())
}

/// Alive: the process answers. Says nothing about the database.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

/// Ready: every database answers and is at this binary's schema version.
async fn readyz(State(state): State<AppState>) -> Response {
    let checks = state.services.store.readiness().await;
    let ready = checks.iter().all(|c| c.ok);
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "databases": checks.iter().map(|c| json!({ "name": c.database, "ok": c.ok, "detail": c.detail })).collect::<Vec<_>>(),
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    // Read at scrape time; a database that does not answer leaves the last values.
    match state.services.pool_status(chrono::Utc::now()).await {
        Ok(pools) => state.metrics.set_pools(&pools),
        Err(e) => tracing::warn!("reading pools for /metrics: {e}"),
    }
    let text = state.metrics.render(&state.services.store.pool_stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn api_not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_endpoint",
        format!("{} {} is not an API endpoint; see /api/docs for the list", req.method(), req.uri().path()),
    )
}

/// `/`: the first tenant's dashboard when signed in, else the login page.
async fn home(State(state): State<AppState>, session: tower_sessions::Session) -> Redirect {
    match service::session::caller(&state.services, &session).await {
        Ok(caller) => match state.services.me(&caller).await {
            Ok(me) if !me.tenants.is_empty() => Redirect::to(&format!("/t/{}", me.tenants[0].slug)),
            _ => Redirect::to("/t/-"),
        },
        Err(_) => Redirect::to("/login"),
    }
}

/// Console pages need a session: a page load without one goes to the login, and comes back after.
async fn console_guard(
    State(state): State<AppState>,
    session: tower_sessions::Session,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if !path.starts_with("/t/") || req.method() != axum::http::Method::GET {
        return next.run(req).await;
    }
    if service::session::caller(&state.services, &session).await.is_ok() {
        return next.run(req).await;
    }
    let next_path = app::urlencode_path(path);
    Redirect::to(&format!("/login?next={next_path}")).into_response()
}
