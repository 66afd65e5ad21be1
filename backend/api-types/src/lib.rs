#![doc = include_str!("../README.md")]

use chrono::{DateTime, Utc};
use model::{DisplayName, Email, ProjectId, Role, Slug, TenantId, TokenId, UserId};
use serde::{Deserialize, Serialize};

/// Every error the API returns: a stable machine `code` and a human `message` that says what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable, snake_case, safe to match on (`tenant_not_found`, `forbidden`, `invalid_input`).
    pub code: String,
    /// For people: what went wrong and how to fix it.
    pub message: String,
}

/// Password login (the console uses a form; the API accepts JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    /// May create tenants and see every tenant's health.
    pub platform_admin: bool,
    pub created_at: DateTime<Utc>,
}

/// A tenant as seen by one of its members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    /// The caller's role in this tenant.
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// Who is calling, and where they may go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub user: User,
    pub tenants: Vec<Tenant>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateTenant {
    pub slug: Slug,
    pub name: DisplayName,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Project {
    pub id: ProjectId,
    pub tenant_id: TenantId,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateProject {
    pub slug: Slug,
    pub name: DisplayName,
    #[serde(default)]
    pub description: String,
}

/// A member of a tenant and their role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
}

/// Invite someone by email. A new user gets an initial password, shown once in the response.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InviteMember {
    pub email: Email,
    pub role: Role,
    /// Used when the user does not exist yet; defaults to the part of the email before `@`.
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invited {
    pub member: Member,
    /// Present only when the invitation created the user: give it to them; it is not stored.
    pub initial_password: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetRole {
    pub role: Role,
}

/// An API token's metadata (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: TokenId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateToken {
    pub name: String,
    /// Days until the token stops working; absent means it never expires.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// The token, with its secret: shown once, stored only as a hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: ApiToken,
    /// `Authorization: Bearer <secret>`. Copy it now: it cannot be shown again.
    pub secret: String,
}

/// The numbers on a tenant's dashboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dashboard {
    pub tenant: Tenant,
    pub members: i64,
    pub projects: i64,
    /// The shard database that holds this tenant's data answered.
    pub shard_ok: bool,
    pub server_version: String,
    pub server_time: DateTime<Utc>,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_with_a_bad_email_is_refused_when_parsed() {
        let err = serde_json::from_str::<InviteMember>(r#"{"email":"nope","role":"viewer"}"#).unwrap_err();
        assert!(err.to_string().contains("not an email address"), "{err}");
        let err = serde_json::from_str::<InviteMember>(r#"{"email":"a@b.io","role":"root"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
