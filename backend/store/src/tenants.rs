use chrono::{DateTime, Utc};
use model::{Role, Slug, TenantId, UserId};
use serde_json::json;
use uuid::Uuid;

use crate::audit::Audit;
use crate::{Result, ShardId, Store, StoreError};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TenantRecord {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub shard_id: ShardId,
    pub created_at: DateTime<Utc>,
}

impl TenantRecord {
    pub fn tenant_id(&self) -> TenantId {
        TenantId(self.id)
    }
}

pub struct NewTenant<'a> {
    pub slug: &'a Slug,
    pub name: &'a str,
    /// Becomes the tenant's first owner.
    pub owner: UserId,
}

const COLS: &str = "id, slug, name, shard_id, created_at";

impl Store {
    /// Creates a tenant on the least loaded shard and makes `owner` its owner, in one transaction.
    pub async fn create_tenant(&self, new: NewTenant<'_>, actor: Option<UserId>) -> Result<TenantRecord> {
        let shard = self.least_loaded_shard().await?;
        let mut tx = self.catalog().begin().await?;
        let rec: TenantRecord = sqlx::query_as(&format!(
            "INSERT INTO tenants (id, slug, name, shard_id) VALUES ($1, $2, $3, $4) RETURNING {COLS}"
        ))
        .bind(Uuid::now_v7())
        .bind(new.slug.as_str())
        .bind(new.name)
        .bind(shard)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(rec.id)
            .bind(new.owner.as_uuid())
            .bind(Role::Owner.as_str())
            .execute(&mut *tx)
            .await?;
        Audit {
            tenant: Some(rec.tenant_id()),
            actor,
            action: "tenant.create",
            object: format!("tenant:{}", rec.id),
            detail: json!({ "slug": rec.slug, "shard": shard, "owner": new.owner }),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(rec)
    }

    pub async fn tenant(&self, id: TenantId) -> Result<TenantRecord> {
        sqlx::query_as(&format!("SELECT {COLS} FROM tenants WHERE id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(self.catalog())
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn tenant_by_slug(&self, slug: &str) -> Result<TenantRecord> {
        sqlx::query_as(&format!("SELECT {COLS} FROM tenants WHERE slug = $1"))
            .bind(slug)
            .fetch_optional(self.catalog())
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The tenants a user belongs to, with their role in each, by slug.
    pub async fn tenants_of_user(&self, user: UserId) -> Result<Vec<(TenantRecord, Role)>> {
        let rows: Vec<(Uuid, String, String, ShardId, DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT t.id, t.slug, t.name, t.shard_id, t.created_at, m.role \
             FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
             WHERE m.user_id = $1 ORDER BY t.slug",
        )
        .bind(user.as_uuid())
        .fetch_all(self.catalog())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, slug, name, shard_id, created_at, role)| {
                (TenantRecord { id, slug, name, shard_id, created_at }, parse_role(&role))
            })
            .collect())
    }

    /// Deletes a tenant's catalog rows (memberships cascade). Its shard data is removed by the caller's
    /// purge job; the tenant is invisible from the moment this commits.
    pub async fn delete_tenant(&self, tenant: TenantId, actor: Option<UserId>) -> Result<()> {
        let mut tx = self.catalog().begin().await?;
        let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1").bind(tenant.as_uuid()).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Audit {
            tenant: Some(tenant),
            actor,
            action: "tenant.delete",
            object: format!("tenant:{tenant}"),
            detail: json!({}),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        self.forget_tenant(tenant);
        Ok(())
    }
}

/// Roles are constrained by a CHECK in the schema, so an unknown one means a hand-edited database:
/// it is logged and treated as the least privileged role rather than failing every request.
pub(crate) fn parse_role(s: &str) -> Role {
    s.parse().unwrap_or_else(|e| {
        tracing::error!(role = s, "memberships.role is not a known role ({e}); treating it as viewer");
        Role::Viewer
    })
}
