#![doc = include_str!("../README.md")]

pub mod cgroup;
pub mod exec;
mod http;
pub mod launch;
pub mod logs;
pub mod plugin;
pub mod session;
mod sql;

/// The generated protocol (client and server halves).
#[expect(clippy::allow_attributes, reason = "tonic's generated code carries its own #[allow]s")]
pub mod proto {
    tonic::include_proto!("orrery.worker.v1");
}
