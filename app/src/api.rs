//! Server functions: the console's calls, each the same use case the REST API runs.

mod runs;
mod workflows;

pub use runs::*;
pub use workflows::*;

use api_types::{ApiToken, CreatedToken, Dashboard, Invited, Me, Member, Project};
use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use model::{Role, UserId};
use serde::{Deserialize, Serialize};

/// A failed console call: the API's stable `code` and a message for the person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConsoleError {}

impl ConsoleError {
    /// The session is gone (expired, signed out elsewhere): the page should go to the login.
    pub fn is_unauthenticated(&self) -> bool {
        self.code == "unauthenticated"
    }

    pub fn is_forbidden(&self) -> bool {
        self.code == "forbidden"
    }
}

impl FromServerFnError for ConsoleError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        let message = match &value {
            ServerFnErrorErr::Request(_) => {
                "the server cannot be reached; check your connection and try again".to_owned()
            }
            other => other.to_string(),
        };
        ConsoleError { code: "transport".into(), message }
    }
}

#[cfg(feature = "ssr")]
mod ssr {
    use leptos::prelude::*;
    use service::{Caller, ServiceError, Services};

    use super::ConsoleError;

    impl From<ServiceError> for ConsoleError {
        fn from(e: ServiceError) -> Self {
            if let ServiceError::Internal(detail) = &e {
                tracing::error!(error = %detail, "internal error in a console call");
                return ConsoleError {
                    code: "internal".into(),
                    message: "the server failed to answer; the details are in its log".into(),
                };
            }
            // The HTTP status of the server-function response, or of the page being rendered.
            if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
                res.set_status(status_of(&e));
            }
            ConsoleError { code: e.code().into(), message: e.to_string() }
        }
    }

    fn status_of(e: &ServiceError) -> http::StatusCode {
        use http::StatusCode as S;
        match e {
            ServiceError::Unauthenticated | ServiceError::BadCredentials => S::UNAUTHORIZED,
            ServiceError::RateLimited { .. } => S::TOO_MANY_REQUESTS,
            ServiceError::NotFound { .. } => S::NOT_FOUND,
            ServiceError::Forbidden { .. } => S::FORBIDDEN,
            ServiceError::Invalid { .. } => S::UNPROCESSABLE_ENTITY,
            ServiceError::Conflict { .. } => S::CONFLICT,
            _ => S::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn services() -> Result<Services, ConsoleError> {
        use_context::<Services>().ok_or_else(|| ServiceError::Internal("services missing from context".into()).into())
    }

    pub async fn session() -> Result<tower_sessions::Session, ConsoleError> {
        leptos_axum::extract::<tower_sessions::Session>()
            .await
            .map_err(|e| ServiceError::Internal(format!("no session layer: {e}")).into())
    }

    /// Sends the preference cookies with this response.
    pub fn set_pref_cookies(prefs: crate::i18n::Prefs) {
        if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
            // Display preferences are not credentials: no `Secure` needed for them to be safe.
            for cookie in prefs.cookies(false) {
                if let Ok(v) = http::HeaderValue::from_str(&cookie) {
                    res.append_header(http::header::SET_COOKIE, v);
                }
            }
        }
    }

    /// The preferences of this request: its cookies, else the browser's languages.
    pub fn request_prefs() -> crate::i18n::Prefs {
        let parts = use_context::<http::request::Parts>();
        let header = |name: http::HeaderName| {
            parts.as_ref().and_then(|p| p.headers.get(name)).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        crate::i18n::Prefs::from_headers(
            header(http::header::COOKIE).as_deref(),
            header(http::header::ACCEPT_LANGUAGE).as_deref(),
        )
    }

    /// The signed-in caller, or `unauthenticated`.
    pub async fn caller() -> Result<(Services, Caller), ConsoleError> {
        let services = services()?;
        let session = session().await?;
        let caller = service::session::caller(&services, &session).await?;
        Ok((services, caller))
    }
}

/// The language and theme of the request being rendered.
#[cfg(feature = "ssr")]
pub(crate) fn request_prefs_for_shell() -> crate::i18n::Prefs {
    ssr::request_prefs()
}

/// Signs in and goes to the first tenant's dashboard (or `next`, when it is a console path).
#[server(endpoint = "login")]
/// Answers the person's saved language and theme, if they chose any: they follow them to this
/// browser (as cookies for the pages the server renders, and for the page already open).
pub async fn login(
    email: String,
    password: String,
    next: Option<String>,
) -> Result<Option<crate::i18n::Prefs>, ConsoleError> {
    use axum_connect::peer;
    let services = ssr::services()?;
    let caller = services.login(&email, &password, peer().await).await?;
    service::session::start(&ssr::session().await?, caller.user_id).await?;
    let prefs = services
        .preferences(&caller)
        .await
        .ok()
        .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()))
        .and_then(|p| serde_json::from_value::<crate::i18n::Prefs>(p).ok());
    if let Some(p) = prefs {
        ssr::set_pref_cookies(p);
    }
    let me = services.me(&caller).await?;
    let target = match next.filter(|n| n.starts_with("/t/") && !n.contains("//")) {
        Some(n) => n,
        None => me.tenants.first().map_or_else(|| "/t/-".to_owned(), |t| format!("/t/{}", t.slug)),
    };
    leptos_axum::redirect(&target);
    Ok(prefs)
}

#[cfg(feature = "ssr")]
mod axum_connect {
    use std::net::{IpAddr, SocketAddr};

    /// The client's address, when the server was started with connect info.
    pub async fn peer() -> Option<IpAddr> {
        leptos_axum::extract::<axum::extract::ConnectInfo<SocketAddr>>().await.ok().map(|c| c.0.ip())
    }
}

#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), ConsoleError> {
    service::session::end(&ssr::session().await?).await?;
    leptos_axum::redirect("/login");
    Ok(())
}

/// The caller and their tenants.
#[server(endpoint = "me")]
pub async fn get_me() -> Result<Me, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.me(&caller).await?)
}

#[server(endpoint = "dashboard")]
pub async fn get_dashboard(tenant: String) -> Result<Dashboard, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.dashboard(&caller, &tenant).await?)
}

#[server(endpoint = "members")]
pub async fn list_members(tenant: String) -> Result<Vec<Member>, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.members(&caller, &tenant).await?)
}

#[server(endpoint = "invite")]
pub async fn invite_member(tenant: String, email: String, role: Role) -> Result<Invited, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    let email = model::Email::parse(&email)
        .map_err(|e| ConsoleError { code: "invalid_input".into(), message: e.to_string() })?;
    let req = api_types::InviteMember { email, role, display_name: None };
    Ok(services.invite_member(&caller, &tenant, &req).await?)
}

#[server(endpoint = "set_role")]
pub async fn set_member_role(tenant: String, user: UserId, role: Role) -> Result<Member, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.set_role(&caller, &tenant, user, role).await?)
}

#[server(endpoint = "remove_member")]
pub async fn remove_member(tenant: String, user: UserId) -> Result<(), ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.remove_member(&caller, &tenant, user).await?)
}

#[server(endpoint = "projects")]
pub async fn list_projects(tenant: String) -> Result<Vec<Project>, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.projects(&caller, &tenant).await?)
}

#[server(endpoint = "create_project")]
pub async fn create_project(
    tenant: String,
    slug: String,
    name: String,
    description: String,
) -> Result<Project, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    let invalid = |e: model::NameError| ConsoleError { code: "invalid_input".into(), message: e.to_string() };
    let req = api_types::CreateProject {
        slug: model::Slug::parse_named(&slug, "project key").map_err(invalid)?,
        name: model::DisplayName::parse_named(&name, "project name").map_err(invalid)?,
        description,
    };
    Ok(services.create_project(&caller, &tenant, &req).await?)
}

#[server(endpoint = "tokens")]
pub async fn list_tokens() -> Result<Vec<ApiToken>, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.list_tokens(&caller).await?)
}

#[server(endpoint = "create_token")]
pub async fn create_token(name: String, expires_in_days: Option<u32>) -> Result<CreatedToken, ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.create_token(&caller, &api_types::CreateToken { name, expires_in_days }).await?)
}

#[server(endpoint = "revoke_token")]
pub async fn revoke_token(id: model::TokenId) -> Result<(), ConsoleError> {
    let (services, caller) = ssr::caller().await?;
    Ok(services.revoke_token(&caller, id).await?)
}
