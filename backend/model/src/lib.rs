#![doc = include_str!("../README.md")]

pub mod access;
pub mod cron;
pub mod engine;
pub mod ids;
pub mod names;
pub mod redact;
pub mod state;
pub mod template;
pub mod units;
pub mod workflow;

pub use access::{Action, Object, Role};
pub use ids::{ProjectId, RunId, TenantId, TokenId, UserId, WorkflowId};
pub use names::{DisplayName, Email, NameError, Slug};
