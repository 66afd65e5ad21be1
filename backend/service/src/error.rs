use std::time::Duration;

use store::StoreError;

/// What a use case can answer besides success. Each variant maps to one HTTP status and a stable
/// code in the server; the message is written for the person who sent the request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// No valid session or token.
    #[error("sign in first: this needs a session or an API token (Authorization: Bearer orr_...)")]
    Unauthenticated,
    /// Email or password wrong (deliberately not saying which).
    #[error("the email or password is not right")]
    BadCredentials,
    #[error("too many failed sign-ins; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    /// The thing does not exist, or the caller may not know it exists. `what` is a noun: "tenant".
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// The caller is a member but their role does not allow this.
    #[error("your role ({role}) may not {action} {object} here; ask an admin of the tenant for a role that may")]
    Forbidden { role: String, object: String, action: String },
    /// Input that parses but breaks a rule. `code` is stable (`invalid_input`, `last_owner`).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A unique name is taken, or the state forbids it.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A workflow document that does not validate; every problem, with its line and task.
    #[error("the workflow document has {} problem(s):\n{}", .0.0.len(), .0)]
    InvalidWorkflow(model::workflow::SpecErrors),
    /// A fault of ours (database down, bug). Details are logged, never sent to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// The stable machine-readable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Unauthenticated => "unauthenticated",
            ServiceError::BadCredentials => "bad_credentials",
            ServiceError::RateLimited { .. } => "rate_limited",
            ServiceError::NotFound { what } => match *what {
                "tenant" => "tenant_not_found",
                "project" => "project_not_found",
                "member" => "member_not_found",
                "token" => "token_not_found",
                "workflow" => "workflow_not_found",
                "run" => "run_not_found",
                "version" => "version_not_found",
                "task" => "task_not_found",
                "schedule" => "schedule_not_found",
                "backfill" => "backfill_not_found",
                "attempt" => "attempt_not_found",
                "worker" => "worker_not_found",
                "user" => "user_not_found",
                _ => "not_found",
            },
            ServiceError::Forbidden { .. } => "forbidden",
            ServiceError::Invalid { code, .. } | ServiceError::Conflict { code, .. } => code,
            ServiceError::InvalidWorkflow(_) => "invalid_workflow",
            ServiceError::Internal(_) => "internal",
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::Invalid { code: "invalid_input", message: message.into() }
    }

    /// Converts a store error for a use case about `what`; unexpected ones become `Internal`.
    pub fn from_store(what: &'static str) -> impl FnOnce(StoreError) -> ServiceError {
        move |e| match e {
            StoreError::NotFound => ServiceError::NotFound { what },
            StoreError::Conflict(c) if c == "last_owner" => ServiceError::Conflict {
                code: "last_owner",
                message: "a tenant needs at least one owner: make someone else owner first".into(),
            },
            StoreError::Conflict(c) => {
                ServiceError::Conflict { code: "already_exists", message: format!("that {what} already exists ({c})") }
            }
            StoreError::Invalid(message) => ServiceError::Invalid { code: "invalid_input", message },
            StoreError::Stale => ServiceError::Conflict {
                code: "stale",
                message: "this report is about an attempt whose lease is no longer held; it was ignored".into(),
            },
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::from_store("resource")(e)
    }
}
