#![doc = include_str!("../README.md")]

mod audit;
mod backfills;
mod connections;
pub mod embedded;
mod error;
mod identity;
mod leases;
mod placement;
mod pools;
mod projects;
mod queue;
mod runs;
mod schedules;
mod stats;
mod tenants;
mod workers;
mod workflows;

pub use audit::AuditEntry;
pub use backfills::{BACKFILL_PRIORITY, BackfillRecord, MAX_BACKFILL_RUNS, NewBackfill, backfill_range};
pub use connections::ConnectionRecord;
pub use error::{StoreError, redact_url as redact};
pub use identity::{MembershipRecord, NewUser, TokenRecord, UserRecord};
pub use leases::ShardLease;
pub use placement::{Demand, LIVE_WITHIN, Offer, Placement, why_unschedulable};
pub use pools::{DatabaseUrls, PoolStats, Readiness, ShardId, Store, StoreOptions};
pub use projects::{NewProject, ProjectRecord};
pub use queue::{ClaimRequest, Claimed, Completion, Renewal};
pub use runs::{AttemptRecord, Created, NewRun, QUEUE_CHANNEL, RunFilter, RunRecord, TaskRunRecord};
pub use schedules::{DueSchedule, Fired, ON_TIME_GRACE};
pub use stats::{LastRun, RunStats};
pub use tenants::{NewTenant, TenantRecord};
pub use workers::{LogChunk, NewLogChunk, WorkerRecord};
pub use workflows::{Applied, SCHEDULE_CHANNEL, ScheduleRecord, VersionRecord, WorkflowRecord, first_fire};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
