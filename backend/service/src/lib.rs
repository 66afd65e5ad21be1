#![doc = include_str!("../README.md")]

pub mod auth;
pub mod authz;
pub mod connections;
mod error;
pub mod members;
pub mod projects;
pub mod runs;
pub mod session;
pub mod tenants;
pub mod workflows;

use std::sync::Arc;

pub use auth::{Caller, LoginLimits};
pub use authz::Authz;
pub use error::ServiceError;
use store::Store;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Everything a use case needs, built once by the binary and shared (cheap to clone).
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub authz: Authz,
    limiter: Arc<auth::LoginLimiter>,
    version: &'static str,
}

impl Services {
    /// Loads the authorization policy from the store.
    pub async fn new(store: Store, limits: LoginLimits, version: &'static str) -> Result<Services> {
        let authz = Authz::load(&store).await?;
        Ok(Services { store, authz, limiter: Arc::new(auth::LoginLimiter::new(limits)), version })
    }

    pub fn version(&self) -> &'static str {
        self.version
    }
}
