#![doc = include_str!("../README.md")]

mod audit;
pub mod embedded;
mod error;
mod identity;
mod pools;
mod projects;
mod tenants;

pub use audit::AuditEntry;
pub use error::{StoreError, redact_url as redact};
pub use identity::{MembershipRecord, NewUser, TokenRecord, UserRecord};
pub use pools::{DatabaseUrls, PoolStats, Readiness, ShardId, Store, StoreOptions};
pub use projects::{NewProject, ProjectRecord};
pub use tenants::{NewTenant, TenantRecord};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
