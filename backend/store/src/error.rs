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

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; query-string passwords too.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let auth_end = out[rest_start..].find(['/', '?']).map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..auth_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{base}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(redact_url("postgres://u:s3cret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=x&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
    }
}
