//! Console sessions (tower-sessions, stored in the catalog): the same for REST and server functions.

use model::UserId;
use tower_sessions::Session;

use crate::auth::SESSION_USER_KEY;
use crate::{Caller, Result, ServiceError, Services};

fn internal(e: tower_sessions::session::Error) -> ServiceError {
    ServiceError::Internal(format!("session store: {e}"))
}

/// Signs the session in: a fresh id (no fixation), holding the user's id.
pub async fn start(session: &Session, user: UserId) -> Result<()> {
    session.cycle_id().await.map_err(internal)?;
    session.insert(SESSION_USER_KEY, user).await.map_err(internal)
}

/// Signs the session out and deletes it from the store.
pub async fn end(session: &Session) -> Result<()> {
    session.flush().await.map_err(internal)
}

/// The caller behind a session, or `Unauthenticated` (no session, expired, or user gone).
pub async fn caller(services: &Services, session: &Session) -> Result<Caller> {
    let user: Option<UserId> = session.get(SESSION_USER_KEY).await.map_err(internal)?;
    services.session_caller(user.ok_or(ServiceError::Unauthenticated)?).await
}
