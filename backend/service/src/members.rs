//! Memberships: inviting people and granting roles.

use api_types::{InviteMember, Invited, Member};
use model::{Action, Object, Role, TenantId, UserId};
use store::{MembershipRecord, NewUser};

use crate::auth::{generate_password, hash_password};
use crate::authz::{POLICY_CHANNEL, PolicyChange};
use crate::{Caller, Result, ServiceError, Services};

fn member_view(m: &MembershipRecord) -> Member {
    Member {
        user_id: m.user.user_id(),
        email: m.user.email.clone(),
        display_name: m.user.display_name.clone(),
        role: m.role,
    }
}

impl Services {
    pub async fn members(&self, caller: &Caller, tenant: &str) -> Result<Vec<Member>> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Member, Action::Read).await?;
        Ok(self.store.members(t.tenant_id()).await?.iter().map(member_view).collect())
    }

    /// Invites by email with a role. A person without an account gets one, with an initial
    /// password returned once. Nobody grants a role above their own.
    pub async fn invite_member(&self, caller: &Caller, tenant: &str, req: &InviteMember) -> Result<Invited> {
        let (t, my_role) = self.tenant_for(caller, tenant, Object::Member, Action::Write).await?;
        ensure_may_grant(my_role, req.role)?;
        let existing = self.store.user_by_email(&req.email).await?;
        let (password, hash) = if existing.is_none() {
            let p = generate_password();
            let h = hash_password(&p).await?;
            (Some(p), Some(h))
        } else {
            (None, None)
        };
        let default_name = req.email.as_str().split('@').next().unwrap_or_default().to_owned();
        let display_name =
            req.display_name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(&default_name);
        if let Some(u) = &existing
            && let Some(current) = self.store.role_of(t.tenant_id(), u.user_id()).await?
        {
            ensure_may_grant(my_role, current)?;
        }
        let (m, created) = self
            .store
            .invite_member(
                t.tenant_id(),
                NewUser { email: &req.email, display_name, password_hash: hash.as_deref(), platform_admin: false },
                req.role,
                Some(caller.user_id),
            )
            .await
            .map_err(ServiceError::from_store("member"))?;
        self.policy_changed(t.tenant_id(), m.user.user_id(), Some(m.role)).await?;
        Ok(Invited { member: member_view(&m), initial_password: if created { password } else { None } })
    }

    /// Changes a member's role.
    pub async fn set_role(&self, caller: &Caller, tenant: &str, user: UserId, role: Role) -> Result<Member> {
        let (t, my_role) = self.tenant_for(caller, tenant, Object::Member, Action::Write).await?;
        let current =
            self.store.role_of(t.tenant_id(), user).await?.ok_or(ServiceError::NotFound { what: "member" })?;
        ensure_may_grant(my_role, current)?;
        ensure_may_grant(my_role, role)?;
        let m = self
            .store
            .grant_role(t.tenant_id(), user, role, Some(caller.user_id))
            .await
            .map_err(ServiceError::from_store("member"))?;
        self.policy_changed(t.tenant_id(), user, Some(role)).await?;
        Ok(member_view(&m))
    }

    pub async fn remove_member(&self, caller: &Caller, tenant: &str, user: UserId) -> Result<()> {
        let (t, my_role) = self.tenant_for(caller, tenant, Object::Member, Action::Write).await?;
        let current =
            self.store.role_of(t.tenant_id(), user).await?.ok_or(ServiceError::NotFound { what: "member" })?;
        ensure_may_grant(my_role, current)?;
        self.store
            .revoke_membership(t.tenant_id(), user, Some(caller.user_id))
            .await
            .map_err(ServiceError::from_store("member"))?;
        self.policy_changed(t.tenant_id(), user, None).await
    }

    /// Applies a committed membership change here and tells the other replicas.
    pub(crate) async fn policy_changed(&self, tenant: TenantId, user: UserId, role: Option<Role>) -> Result<()> {
        let change = PolicyChange { tenant, user, role };
        self.authz.apply(&change).await?;
        let payload = serde_json::to_string(&change).map_err(|e| ServiceError::Internal(e.to_string()))?;
        if let Err(e) = self.store.notify(POLICY_CHANNEL, &payload).await {
            // The change is committed; replicas that miss it reload in full when they reconnect.
            tracing::warn!("could not announce a policy change: {e}");
        }
        Ok(())
    }
}

fn ensure_may_grant(mine: Role, theirs: Role) -> Result<()> {
    if mine.may_grant(theirs) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden {
            role: mine.to_string(),
            object: format!("the {theirs} role"),
            action: "grant or revoke".into(),
        })
    }
}
