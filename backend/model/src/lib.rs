#![doc = include_str!("../README.md")]

pub mod access;
pub mod ids;
pub mod names;

pub use access::{Action, Object, Role};
pub use ids::{ProjectId, TenantId, TokenId, UserId};
pub use names::{DisplayName, Email, NameError, Slug};
