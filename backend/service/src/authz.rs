//! The authorization gate. See the crate README for the model.

use std::sync::Arc;

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi, RbacApi};
use model::access::POLICY;
use model::{Action, Object, Role, TenantId, UserId};
use serde::{Deserialize, Serialize};
use store::Store;
use tokio::sync::RwLock;

use crate::{Caller, Result, ServiceError};

/// RBAC with domains. `p` rules with domain `*` hold in every tenant (the built-in policy); a
/// tenant-specific rule may name its own domain.
const MODEL: &str = r#"
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && (p.dom == "*" || r.dom == p.dom) && r.obj == p.obj && r.act == p.act
"#;

/// The notification channel that carries membership changes between replicas.
pub const POLICY_CHANNEL: &str = "orrery_policy";

fn subject(user: UserId) -> String {
    format!("user:{user}")
}

fn domain(tenant: TenantId) -> String {
    format!("tenant:{tenant}")
}

fn role_name(role: Role) -> String {
    format!("role:{role}")
}

/// One membership change, as announced to other replicas.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyChange {
    pub tenant: TenantId,
    pub user: UserId,
    /// The new role, or None when the membership was removed.
    pub role: Option<Role>,
}

#[derive(Clone)]
pub struct Authz {
    enforcer: Arc<RwLock<Enforcer>>,
}

impl Authz {
    /// Builds the enforcer from the built-in policy and every membership in the catalog.
    pub async fn load(store: &Store) -> Result<Authz> {
        let model = DefaultModel::from_str(MODEL).await.map_err(internal)?;
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default()).await.map_err(internal)?;
        fill(&mut enforcer, store).await?;
        Ok(Authz { enforcer: Arc::new(RwLock::new(enforcer)) })
    }

    /// Reloads everything (after a lost notification connection).
    pub async fn reload(&self, store: &Store) -> Result<()> {
        let mut e = self.enforcer.write().await;
        e.clear_policy().await.map_err(internal)?;
        fill(&mut e, store).await
    }

    /// Applies one membership change to this replica's enforcer.
    pub async fn apply(&self, change: &PolicyChange) -> Result<()> {
        let mut e = self.enforcer.write().await;
        let (sub, dom) = (subject(change.user), domain(change.tenant));
        e.remove_filtered_grouping_policy(0, vec![sub.clone(), String::new(), dom.clone()]).await.map_err(internal)?;
        if let Some(role) = change.role {
            e.add_grouping_policy(vec![sub, role_name(role), dom]).await.map_err(internal)?;
        }
        Ok(())
    }

    /// The caller's role in the tenant, if they are a member.
    pub async fn role(&self, user: UserId, tenant: TenantId) -> Option<Role> {
        let e = self.enforcer.read().await;
        e.get_roles_for_user(&subject(user), Some(&domain(tenant)))
            .iter()
            .filter_map(|r| r.strip_prefix("role:")?.parse::<Role>().ok())
            .min()
    }

    /// THE gate: may `caller` do `action` on `object` in `tenant`?
    ///
    /// A non-member gets `NotFound { what: "tenant" }` (the tenant's existence is not disclosed);
    /// a member whose role does not allow it gets `Forbidden`. Returns the caller's role.
    pub async fn authorize(&self, caller: &Caller, tenant: TenantId, object: Object, action: Action) -> Result<Role> {
        let e = self.enforcer.read().await;
        let (sub, dom) = (subject(caller.user_id), domain(tenant));
        let allowed = e.enforce((sub.as_str(), dom.as_str(), object.as_str(), action.as_str())).map_err(internal)?;
        let role = e
            .get_roles_for_user(&sub, Some(&dom))
            .iter()
            .filter_map(|r| r.strip_prefix("role:")?.parse::<Role>().ok())
            .min();
        drop(e);
        match (allowed, role) {
            (true, Some(role)) => Ok(role),
            (_, None) => Err(ServiceError::NotFound { what: "tenant" }),
            (false, Some(role)) => Err(ServiceError::Forbidden {
                role: role.to_string(),
                object: object.to_string(),
                action: action.to_string(),
            }),
        }
    }
}

async fn fill(e: &mut Enforcer, store: &Store) -> Result<()> {
    let rules: Vec<Vec<String>> =
        POLICY.iter().map(|(r, o, a)| vec![role_name(*r), "*".into(), o.to_string(), a.to_string()]).collect();
    e.add_policies(rules).await.map_err(internal)?;
    let links: Vec<Vec<String>> = store
        .all_memberships()
        .await
        .map_err(ServiceError::from)?
        .into_iter()
        .map(|(t, u, r)| vec![subject(u), role_name(r), domain(t)])
        .collect();
    if !links.is_empty() {
        e.add_grouping_policies(links).await.map_err(internal)?;
    }
    Ok(())
}

fn internal(e: casbin::Error) -> ServiceError {
    ServiceError::Internal(format!("authorization policy: {e}"))
}

impl crate::Services {
    /// Keeps this replica's enforcer in step with the others until `shutdown`: applies each
    /// announced membership change, and reloads everything after a lost connection (changes made
    /// meanwhile were not heard).
    pub async fn follow_policy_changes(&self, shutdown: tokio_util::sync::CancellationToken) {
        let mut reload = false;
        loop {
            let mut listener = match self.store.listen(POLICY_CHANNEL).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("cannot listen for policy changes: {e}; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(2)) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
            if std::mem::take(&mut reload)
                && let Err(e) = self.authz.reload(&self.store).await
            {
                tracing::error!("reloading the authorization policy failed: {e}");
            }
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    n = listener.try_recv() => match n {
                        Ok(Some(n)) => match serde_json::from_str::<PolicyChange>(n.payload()) {
                            Ok(change) => {
                                if let Err(e) = self.authz.apply(&change).await {
                                    tracing::error!("applying a policy change failed: {e}");
                                }
                            }
                            Err(e) => tracing::warn!("ignoring a malformed policy change: {e}"),
                        },
                        Ok(None) | Err(_) => {
                            tracing::warn!("lost the policy change stream; reloading the policy when it is back");
                            reload = true;
                            break;
                        }
                    }
                }
            }
        }
    }
}
