//! Users, memberships (the RBAC grouping policy) and API tokens: all in the catalog.

use chrono::{DateTime, Utc};
use model::{Email, Role, TenantId, TokenId, UserId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::Audit;
use crate::tenants::parse_role;
use crate::{Result, Store, StoreError};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserRecord {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub platform_admin: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl UserRecord {
    pub fn user_id(&self) -> UserId {
        UserId(self.id)
    }
}

pub struct NewUser<'a> {
    pub email: &'a Email,
    pub display_name: &'a str,
    /// An argon2 PHC string, or None for a user who signs in only through SSO.
    pub password_hash: Option<&'a str>,
    pub platform_admin: bool,
}

#[derive(Clone, Debug)]
pub struct MembershipRecord {
    pub tenant_id: TenantId,
    pub user: UserRecord,
    pub role: Role,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TokenRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub secret_sha256: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `user` (acts as its user) or `worker` (authenticates a worker process).
    pub kind: String,
}

const USER_COLS: &str = "id, email, display_name, password_hash, platform_admin, disabled_at, created_at";
const USER_COLS_U: &str =
    "u.id, u.email, u.display_name, u.password_hash, u.platform_admin, u.disabled_at, u.created_at";
const TOKEN_COLS: &str = "id, user_id, name, secret_sha256, created_at, expires_at, last_used_at, revoked_at, kind";

impl Store {
    /// Creates a user; an email already taken is `Conflict("users_email_key")`.
    pub async fn create_user(&self, new: NewUser<'_>, actor: Option<UserId>) -> Result<UserRecord> {
        let mut tx = self.catalog().begin().await?;
        let rec: UserRecord = sqlx::query_as(&format!(
            "INSERT INTO users (id, email, display_name, password_hash, platform_admin) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLS}"
        ))
        .bind(Uuid::now_v7())
        .bind(new.email.as_str())
        .bind(new.display_name)
        .bind(new.password_hash)
        .bind(new.platform_admin)
        .fetch_one(&mut *tx)
        .await?;
        Audit {
            tenant: None,
            actor,
            action: "user.create",
            object: format!("user:{}", rec.id),
            detail: json!({ "email": rec.email, "platform_admin": rec.platform_admin }),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(rec)
    }

    pub async fn user(&self, id: UserId) -> Result<UserRecord> {
        sqlx::query_as(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(self.catalog())
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The user's display preferences (a JSON object; `{}` until they choose).
    pub async fn user_preferences(&self, id: UserId) -> Result<Value> {
        sqlx::query_scalar("SELECT preferences FROM users WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(self.catalog())
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn set_user_preferences(&self, id: UserId, prefs: &Value) -> Result<()> {
        let done = sqlx::query("UPDATE users SET preferences = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(prefs)
            .execute(self.catalog())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {USER_COLS} FROM users WHERE email = $1"))
            .bind(email.as_str())
            .fetch_optional(self.catalog())
            .await?)
    }

    pub async fn set_password(&self, user: UserId, password_hash: &str, actor: Option<UserId>) -> Result<()> {
        let mut tx = self.catalog().begin().await?;
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user.as_uuid())
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Audit { tenant: None, actor, action: "user.set_password", object: format!("user:{user}"), detail: json!({}) }
            .write(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user's role in the tenant, or None when they are not a member.
    pub async fn role_of(&self, tenant: TenantId, user: UserId) -> Result<Option<Role>> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant.as_uuid())
                .bind(user.as_uuid())
                .fetch_optional(self.catalog())
                .await?;
        Ok(role.as_deref().map(parse_role))
    }

    pub async fn members(&self, tenant: TenantId) -> Result<Vec<MembershipRecord>> {
        let rows: Vec<(String, UserRecord)> = sqlx::query_as::<_, MemberRow>(&format!(
            "SELECT m.role, {USER_COLS_U} FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.tenant_id = $1 ORDER BY u.email"
        ))
        .bind(tenant.as_uuid())
        .fetch_all(self.catalog())
        .await?
        .into_iter()
        .map(|r| (r.role, r.user))
        .collect();
        Ok(rows
            .into_iter()
            .map(|(role, user)| MembershipRecord { tenant_id: tenant, user, role: parse_role(&role) })
            .collect())
    }

    pub async fn count_members(&self, tenant: TenantId) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM memberships WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_one(self.catalog())
            .await?)
    }

    /// Adds `user` to the tenant with `role`, or changes their role. Refuses to demote the last owner.
    pub async fn grant_role(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
        actor: Option<UserId>,
    ) -> Result<MembershipRecord> {
        let mut tx = self.catalog().begin().await?;
        lock_memberships(&mut tx, tenant).await?;
        let previous = upsert_membership(&mut tx, tenant, user, role).await?;
        Audit {
            tenant: Some(tenant),
            actor,
            action: "member.grant",
            object: format!("user:{user}"),
            detail: json!({ "role": role, "previous": previous }),
        }
        .write(&mut tx)
        .await?;
        let rec: UserRecord = sqlx::query_as(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(user.as_uuid())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MembershipRecord { tenant_id: tenant, user: rec, role })
    }

    /// Invites by email in one transaction: creates the user when absent (with `new_user`), then
    /// grants the role. Returns whether the user was created.
    pub async fn invite_member(
        &self,
        tenant: TenantId,
        new_user: NewUser<'_>,
        role: Role,
        actor: Option<UserId>,
    ) -> Result<(MembershipRecord, bool)> {
        let mut tx = self.catalog().begin().await?;
        lock_memberships(&mut tx, tenant).await?;
        let created: Option<UserRecord> = sqlx::query_as(&format!(
            "INSERT INTO users (id, email, display_name, password_hash, platform_admin) VALUES ($1, $2, $3, $4, false) \
             ON CONFLICT (email) DO NOTHING RETURNING {USER_COLS}"
        ))
        .bind(Uuid::now_v7())
        .bind(new_user.email.as_str())
        .bind(new_user.display_name)
        .bind(new_user.password_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let was_created = created.is_some();
        let user = match created {
            Some(u) => u,
            None => {
                sqlx::query_as(&format!("SELECT {USER_COLS} FROM users WHERE email = $1"))
                    .bind(new_user.email.as_str())
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        let previous = upsert_membership(&mut tx, tenant, user.user_id(), role).await?;
        Audit {
            tenant: Some(tenant),
            actor,
            action: "member.invite",
            object: format!("user:{}", user.id),
            detail: json!({ "email": user.email, "role": role, "previous": previous, "created_user": was_created }),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok((MembershipRecord { tenant_id: tenant, user, role }, was_created))
    }

    /// Removes a member. The last owner cannot be removed.
    pub async fn revoke_membership(&self, tenant: TenantId, user: UserId, actor: Option<UserId>) -> Result<()> {
        let mut tx = self.catalog().begin().await?;
        lock_memberships(&mut tx, tenant).await?;
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant.as_uuid())
                .bind(user.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
        let role = role.ok_or(StoreError::NotFound)?;
        if role == Role::Owner.as_str() {
            ensure_another_owner(&mut tx, tenant, user).await?;
        }
        sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_uuid())
            .bind(user.as_uuid())
            .execute(&mut *tx)
            .await?;
        Audit {
            tenant: Some(tenant),
            actor,
            action: "member.revoke",
            object: format!("user:{user}"),
            detail: json!({ "role": role }),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every membership: the grouping policy Casbin loads at start and after a missed notification.
    pub async fn all_memberships(&self) -> Result<Vec<(TenantId, UserId, Role)>> {
        let rows: Vec<(Uuid, Uuid, String)> =
            sqlx::query_as("SELECT tenant_id, user_id, role FROM memberships").fetch_all(self.catalog()).await?;
        Ok(rows.into_iter().map(|(t, u, r)| (TenantId(t), UserId(u), parse_role(&r))).collect())
    }

    // ------------------------------------------------------------------ API tokens

    pub async fn create_token(
        &self,
        user: UserId,
        id: TokenId,
        name: &str,
        secret_sha256: &[u8],
        expires_at: Option<DateTime<Utc>>,
        kind: &str,
    ) -> Result<TokenRecord> {
        let mut tx = self.catalog().begin().await?;
        let rec: TokenRecord = sqlx::query_as(&format!(
            "INSERT INTO api_tokens (id, user_id, name, secret_sha256, expires_at, kind) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLS}"
        ))
        .bind(id.as_uuid())
        .bind(user.as_uuid())
        .bind(name)
        .bind(secret_sha256)
        .bind(expires_at)
        .bind(kind)
        .fetch_one(&mut *tx)
        .await?;
        Audit {
            tenant: None,
            actor: Some(user),
            action: "token.create",
            object: format!("token:{}", rec.id),
            detail: json!({ "name": name }),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// A token by id, for authentication. The caller checks the secret, expiry and revocation.
    pub async fn token(&self, id: TokenId) -> Result<TokenRecord> {
        sqlx::query_as(&format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(self.catalog())
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Records a use, at most once a minute per token (a busy token must not write on every request).
    pub async fn touch_token(&self, id: TokenId) -> Result<()> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = now() \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        )
        .bind(id.as_uuid())
        .execute(self.catalog())
        .await?;
        Ok(())
    }

    pub async fn tokens_of_user(&self, user: UserId) -> Result<Vec<TokenRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC"
        ))
        .bind(user.as_uuid())
        .fetch_all(self.catalog())
        .await?)
    }

    /// Revokes one of the user's own tokens; another user's token is `NotFound`.
    pub async fn revoke_token(&self, user: UserId, id: TokenId) -> Result<()> {
        let mut tx = self.catalog().begin().await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(id.as_uuid())
        .bind(user.as_uuid())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Audit {
            tenant: None,
            actor: Some(user),
            action: "token.revoke",
            object: format!("token:{id}"),
            detail: json!({}),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    role: String,
    #[sqlx(flatten)]
    user: UserRecord,
}

/// Serialises membership changes of one tenant, so two admins cannot each demote "the other" last owner.
async fn lock_memberships(tx: &mut sqlx::PgConnection, tenant: TenantId) -> Result<()> {
    let locked: Option<Uuid> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(tenant.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
    locked.map(|_| ()).ok_or(StoreError::NotFound)
}

/// Sets the member's role (adding them if needed) and returns the role they had before.
async fn upsert_membership(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    user: UserId,
    role: Role,
) -> Result<Option<String>> {
    let previous: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_uuid())
            .bind(user.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
    if previous.as_deref() == Some(Role::Owner.as_str()) && role != Role::Owner {
        ensure_another_owner(tx, tenant, user).await?;
    }
    sqlx::query(
        "INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role, updated_at = now()",
    )
    .bind(tenant.as_uuid())
    .bind(user.as_uuid())
    .bind(role.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(previous)
}

async fn ensure_another_owner(tx: &mut sqlx::PgConnection, tenant: TenantId, user: UserId) -> Result<()> {
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memberships WHERE tenant_id = $1 AND role = 'owner' AND user_id <> $2",
    )
    .bind(tenant.as_uuid())
    .bind(user.as_uuid())
    .fetch_one(&mut *tx)
    .await?;
    if others == 0 {
        return Err(StoreError::Conflict("last_owner".into()));
    }
    Ok(())
}
