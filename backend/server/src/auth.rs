//! Who is calling an HTTP endpoint: a bearer token or a console session. And the CSRF guard.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use service::{Caller, ServiceError};
use tower_sessions::Session;

use crate::AppState;
use crate::error::ApiError;

/// The authenticated caller of a REST handler. Rejects with 401 `unauthenticated`.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .ok_or_else(|| ApiError::from(ServiceError::Unauthenticated))?;
            return Ok(Authenticated(state.services.token_caller(token).await?));
        }
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::from(ServiceError::Internal("the session layer is missing".into())))?;
        Ok(Authenticated(service::session::caller(&state.services, &session).await?))
    }
}

/// Refuses state-changing requests that a browser sent from another site.
///
/// Cookies are `SameSite=Lax`, which already keeps them off cross-site POSTs; this checks the
/// browser's own `Sec-Fetch-Site` / `Origin` headers as a second line (OWASP's "verifying origin
/// with standard headers"). Requests with a bearer token carry no ambient authority and pass.
pub async fn csrf_guard(req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || req.headers().contains_key(header::AUTHORIZATION) {
        return next.run(req).await;
    }
    let h = req.headers();
    let cross_site = match h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "cross-site",
        None => match (
            h.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
            h.get(header::HOST).and_then(|v| v.to_str().ok()),
        ) {
            (Some(origin), Some(host)) => origin != "null" && origin.split("://").nth(1) != Some(host),
            (Some("null"), None) => true,
            _ => false,
        },
    };
    if cross_site {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "this request came from another site and was refused; use the console or an API token",
        )
        .into_response();
    }
    next.run(req).await
}
