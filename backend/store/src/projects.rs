//! Projects: the first tenant-owned rows, living in the tenant's shard.

use chrono::{DateTime, Utc};
use model::{ProjectId, Slug, TenantId, UserId};
use serde_json::json;
use uuid::Uuid;

use crate::audit::Audit;
use crate::{Result, Store, StoreError};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ProjectRecord {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

pub struct NewProject<'a> {
    pub slug: &'a Slug,
    pub name: &'a str,
    pub description: &'a str,
}

const COLS: &str = "tenant_id, id, slug, name, description, created_at";

impl Store {
    /// A slug already used in this tenant is `Conflict("projects_tenant_id_slug_key")`.
    pub async fn create_project(
        &self,
        tenant: TenantId,
        new: NewProject<'_>,
        actor: Option<UserId>,
    ) -> Result<ProjectRecord> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let rec: ProjectRecord = sqlx::query_as(&format!(
            "INSERT INTO projects (tenant_id, id, slug, name, description) VALUES ($1, $2, $3, $4, $5) RETURNING {COLS}"
        ))
        .bind(tenant.as_uuid())
        .bind(Uuid::now_v7())
        .bind(new.slug.as_str())
        .bind(new.name)
        .bind(new.description)
        .fetch_one(&mut *tx)
        .await?;
        Audit {
            tenant: Some(tenant),
            actor,
            action: "project.create",
            object: format!("project:{}", rec.id),
            detail: json!({ "slug": rec.slug }),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(rec)
    }

    pub async fn projects(&self, tenant: TenantId) -> Result<Vec<ProjectRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLS} FROM projects WHERE tenant_id = $1 ORDER BY slug"))
            .bind(tenant.as_uuid())
            .fetch_all(self.shard(tenant).await?)
            .await?)
    }

    pub async fn project(&self, tenant: TenantId, id: ProjectId) -> Result<ProjectRecord> {
        sqlx::query_as(&format!("SELECT {COLS} FROM projects WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(self.shard(tenant).await?)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn count_projects(&self, tenant: TenantId) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM projects WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_one(self.shard(tenant).await?)
            .await?)
    }

    pub async fn delete_project(&self, tenant: TenantId, id: ProjectId, actor: Option<UserId>) -> Result<()> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let done = sqlx::query("DELETE FROM projects WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Audit {
            tenant: Some(tenant),
            actor,
            action: "project.delete",
            object: format!("project:{id}"),
            detail: json!({}),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Answers whether the tenant's shard responds (the dashboard's health light).
    pub async fn ping_shard(&self, tenant: TenantId) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.shard(tenant).await?).await?;
        Ok(())
    }
}
