//! The audit log: every change, written in the same transaction as the change itself.
//!
//! An entry lives in the database of the data it records: catalog changes (tenants, users,
//! memberships, tokens) in the catalog, tenant data (projects, workflows, runs) in the tenant's shard.

use chrono::{DateTime, Utc};
use model::{TenantId, UserId};
use sqlx::PgConnection;

use crate::{Result, Store};

/// One recorded change.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub tenant_id: Option<uuid::Uuid>,
    pub actor_user_id: Option<uuid::Uuid>,
    pub action: String,
    pub object: String,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

pub(crate) struct Audit<'a> {
    pub tenant: Option<TenantId>,
    pub actor: Option<UserId>,
    pub action: &'a str,
    pub object: String,
    pub detail: serde_json::Value,
}

impl Audit<'_> {
    pub(crate) async fn write(self, conn: &mut PgConnection) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, actor_user_id, action, object, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(self.tenant.map(|t| t.as_uuid()))
        .bind(self.actor.map(|u| u.as_uuid()))
        .bind(self.action)
        .bind(self.object)
        .bind(self.detail)
        .execute(conn)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Records an operation that has no other transaction of its own to ride in (run operations
    /// commit through the engine first; this entry follows).
    pub async fn audit(
        &self,
        tenant: TenantId,
        actor: Option<UserId>,
        action: &str,
        object: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let mut conn = self.shard(tenant).await?.acquire().await?;
        Audit { tenant: Some(tenant), actor, action, object: object.to_owned(), detail }.write(&mut conn).await
    }

    /// A tenant's audit log, newest first: the catalog's entries and its shard's, merged.
    pub async fn audit_log(&self, tenant: TenantId, limit: i64) -> Result<Vec<AuditEntry>> {
        const Q: &str = "SELECT id, tenant_id, actor_user_id, action, object, detail, at FROM audit_log \
                         WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT $2";
        let mut entries: Vec<AuditEntry> =
            sqlx::query_as(Q).bind(tenant.as_uuid()).bind(limit).fetch_all(self.catalog()).await?;
        let shard = self.shard(tenant).await?;
        if !shard_is_catalog(shard, self.catalog()) {
            entries
                .extend(sqlx::query_as::<_, AuditEntry>(Q).bind(tenant.as_uuid()).bind(limit).fetch_all(shard).await?);
            entries.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
            entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Ok(entries)
    }
}

fn shard_is_catalog(shard: &sqlx::PgPool, catalog: &sqlx::PgPool) -> bool {
    // Shard 1 is a clone of the catalog pool: same connect options, same database.
    shard.connect_options().get_database() == catalog.connect_options().get_database()
        && shard.connect_options().get_host() == catalog.connect_options().get_host()
        && shard.connect_options().get_port() == catalog.connect_options().get_port()
}
