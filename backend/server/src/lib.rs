//! The `orrery` binary's library: configuration, the HTTP surface, the roles and the CLI.
//! This is the only crate that wires things together.

pub mod api;
pub mod auth;
pub mod cli;
mod client;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod roles;
pub mod telemetry;
pub mod tls;
pub mod up;

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use service::Services;

pub use config::Config;

/// The version of this build, and the commit when the build knew it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = match option_env!("ORRERY_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    /// Where handlers get "now" (a manual clock in tests).
    pub clock: Arc<dyn engine::Clock>,
    pub metrics: Arc<metrics::Metrics>,
    pub leptos_options: LeptosOptions,
    pub config: Arc<Config>,
    /// The worker protocol's service (its queue wakers shared by every session).
    pub workers: grpc::WorkerService,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
