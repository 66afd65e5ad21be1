//! Connections a tenant's `sql` tasks run against. The URL holds the credentials: callers show
//! it only through [`crate::redact`].

use chrono::{DateTime, Utc};
use model::{TenantId, UserId};
use serde_json::json;

use crate::audit::Audit;
use crate::{Result, Store, StoreError};

#[derive(Clone, sqlx::FromRow)]
pub struct ConnectionRecord {
    pub name: String,
    /// `postgres` or `mysql`.
    pub kind: String,
    pub url: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Never prints the URL's password.
impl std::fmt::Debug for ConnectionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRecord")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &crate::redact(&self.url))
            .finish_non_exhaustive()
    }
}

const COLS: &str = "name, kind, url, description, created_at, updated_at";

impl Store {
    /// Creates or replaces the connection `name`.
    pub async fn put_connection(
        &self,
        tenant: TenantId,
        name: &str,
        kind: &str,
        url: &str,
        description: &str,
        actor: Option<UserId>,
    ) -> Result<ConnectionRecord> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let rec: ConnectionRecord = sqlx::query_as(&format!(
            "INSERT INTO connections (tenant_id, name, kind, url, description) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET kind = EXCLUDED.kind, url = EXCLUDED.url, \
               description = EXCLUDED.description, updated_at = now() \
             RETURNING {COLS}"
        ))
        .bind(tenant.as_uuid())
        .bind(name)
        .bind(kind)
        .bind(url)
        .bind(description)
        .fetch_one(&mut *tx)
        .await?;
        Audit {
            tenant: Some(tenant),
            actor,
            action: "connection.put",
            object: format!("connection:{name}"),
            detail: json!({ "kind": kind, "url": crate::redact(url) }),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(rec)
    }

    pub async fn connections(&self, tenant: TenantId) -> Result<Vec<ConnectionRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLS} FROM connections WHERE tenant_id = $1 ORDER BY name"))
            .bind(tenant.as_uuid())
            .fetch_all(self.shard(tenant).await?)
            .await?)
    }

    pub async fn connection(&self, tenant: TenantId, name: &str) -> Result<ConnectionRecord> {
        sqlx::query_as(&format!("SELECT {COLS} FROM connections WHERE tenant_id = $1 AND name = $2"))
            .bind(tenant.as_uuid())
            .bind(name)
            .fetch_optional(self.shard(tenant).await?)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn delete_connection(&self, tenant: TenantId, name: &str, actor: Option<UserId>) -> Result<()> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let gone = sqlx::query("DELETE FROM connections WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.as_uuid())
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(StoreError::NotFound);
        }
        Audit {
            tenant: Some(tenant),
            actor,
            action: "connection.delete",
            object: format!("connection:{name}"),
            detail: json!({}),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
