use std::fmt;

/// What went wrong in the store, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row does not exist, or belongs to another tenant (the two are indistinguishable).
    #[error("not found")]
    NotFound,
    /// A unique key is taken; the string names the constraint.
    #[error("conflict on {0}")]
    Conflict(String),
    /// A serialization failure or deadlock: the whole transaction may be retried.
    #[error("transaction must be retried")]
    Retry,
    /// A database the deployment is configured with cannot be reached.
    #[error("cannot connect to {target}: {reason}")]
    Unreachable { target: Redacted, reason: String },
    /// A tenant lives on a shard this process was not configured with.
    #[error("tenant lives on shard {0}, which is not configured: add its URL to database.shards")]
    ShardNotConfigured(i32),
    #[error("migrating {target}: {source}")]
    Migrate {
        target: Redacted,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// Stored data that no longer makes sense (a version that fails validation, ...).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A report from a worker whose lease is gone, or about an attempt that already ended.
    #[error("stale report: the attempt's lease is no longer held")]
    Stale,
    /// The input does not fit the stored state (a required parameter missing, ...).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("23505") => StoreError::Conflict(db.constraint().unwrap_or("unique key").to_owned()),
                Some("23503") => StoreError::NotFound,
                Some("40001" | "40P01") => StoreError::Retry,
                _ => StoreError::Database(e),
            },
            _ => StoreError::Database(e),
        }
    }
}

/// A database URL with its password replaced, safe to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redacted(pub String);

impl Redacted {
    pub fn url(url: &str) -> Self {
        Self(redact_url(url))
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub use model::redact::redact_url;
