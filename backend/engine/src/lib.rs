#![doc = include_str!("../README.md")]

pub mod backfill;
pub mod clock;
pub mod local;
pub mod maintenance;
pub mod scheduler;
pub mod time_wheel;

pub use clock::{Clock, ManualClock, SystemClock};
