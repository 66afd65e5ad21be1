//! Who may do what. Tenants are authorization domains; inside a tenant a user holds one role.
//!
//! The built-in policy below is the single source of the role → permission table: the server
//! writes it into Casbin at start-up and the console uses it to hide what a role may not do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role inside one tenant. Ordered from most to least powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including deleting the tenant and managing owners.
    Owner,
    /// Members, tokens, settings, projects, and everything a developer can do.
    Admin,
    /// Writes workflows and schedules, and operates runs.
    Developer,
    /// Operates runs (trigger, cancel, rerun) and pauses schedules; cannot change definitions.
    Operator,
    /// Reads everything that is not a secret.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Owner, Role::Admin, Role::Developer, Role::Operator, Role::Viewer];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// May a holder of `self` grant or revoke `other`? Nobody hands out more than they hold.
    pub fn may_grant(self, other: Role) -> bool {
        self.allows(Object::Member, Action::Write) && self <= other
    }

    /// The built-in policy, as a function: does this role allow `action` on `object`?
    pub fn allows(self, object: Object, action: Action) -> bool {
        POLICY.iter().any(|(r, o, a)| *r == self && *o == object && *a == action)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role name was not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected one of owner, admin, developer, operator, viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

macro_rules! str_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("unknown {} {s:?}", stringify!($name).to_lowercase()))
            }
        }
    };
}

str_enum!(
    /// What is being accessed.
    Object {
        /// The tenant itself: its name, quotas, deletion.
        Tenant => "tenant",
        /// Memberships: who holds which role.
        Member => "member",
        /// API tokens of the tenant's members.
        Token => "token",
        /// Projects and their settings.
        Project => "project",
        /// Workflow definitions and versions.
        Workflow => "workflow",
        /// Schedules (cron triggers) of workflows.
        Schedule => "schedule",
        /// Runs and task attempts, their logs and outputs.
        Run => "run",
        /// Worker pools and workers.
        Worker => "worker",
        /// Database connections of `sql` tasks (their passwords are never shown).
        Connection => "connection",
        /// The audit log.
        Audit => "audit",
    }
);

str_enum!(
    /// What is being done.
    Action {
        /// Look at it.
        Read => "read",
        /// Create, change or delete it.
        Write => "write",
        /// Make it run: trigger, cancel, rerun, pause, resume, drain.
        Execute => "execute",
    }
);

use Action::{Execute, Read, Write};
use Object::{Audit, Connection, Member, Project, Run, Schedule, Tenant, Token, Worker, Workflow};

/// The built-in role → permission table. `Role::allows` and the Casbin policy both come from it.
pub const POLICY: &[(Role, Object, Action)] = &[
    // viewer
    (Role::Viewer, Tenant, Read),
    (Role::Viewer, Project, Read),
    (Role::Viewer, Workflow, Read),
    (Role::Viewer, Schedule, Read),
    (Role::Viewer, Run, Read),
    (Role::Viewer, Worker, Read),
    // operator = viewer + operate
    (Role::Operator, Tenant, Read),
    (Role::Operator, Project, Read),
    (Role::Operator, Workflow, Read),
    (Role::Operator, Schedule, Read),
    (Role::Operator, Schedule, Execute),
    (Role::Operator, Run, Read),
    (Role::Operator, Run, Execute),
    (Role::Operator, Worker, Read),
    // developer = operator + definitions
    (Role::Developer, Tenant, Read),
    (Role::Developer, Project, Read),
    (Role::Developer, Workflow, Read),
    (Role::Developer, Workflow, Write),
    (Role::Developer, Workflow, Execute),
    (Role::Developer, Schedule, Read),
    (Role::Developer, Schedule, Write),
    (Role::Developer, Schedule, Execute),
    (Role::Developer, Run, Read),
    (Role::Developer, Run, Execute),
    (Role::Developer, Worker, Read),
    (Role::Developer, Connection, Read),
    // admin = developer + members, tokens, projects, workers, audit
    (Role::Admin, Tenant, Read),
    (Role::Admin, Member, Read),
    (Role::Admin, Member, Write),
    (Role::Admin, Token, Read),
    (Role::Admin, Token, Write),
    (Role::Admin, Project, Read),
    (Role::Admin, Project, Write),
    (Role::Admin, Workflow, Read),
    (Role::Admin, Workflow, Write),
    (Role::Admin, Workflow, Execute),
    (Role::Admin, Schedule, Read),
    (Role::Admin, Schedule, Write),
    (Role::Admin, Schedule, Execute),
    (Role::Admin, Run, Read),
    (Role::Admin, Run, Execute),
    (Role::Admin, Worker, Read),
    (Role::Admin, Worker, Execute),
    (Role::Admin, Audit, Read),
    (Role::Admin, Connection, Read),
    (Role::Admin, Connection, Write),
    // owner = admin + the tenant itself
    (Role::Owner, Tenant, Read),
    (Role::Owner, Tenant, Write),
    (Role::Owner, Member, Read),
    (Role::Owner, Member, Write),
    (Role::Owner, Token, Read),
    (Role::Owner, Token, Write),
    (Role::Owner, Project, Read),
    (Role::Owner, Project, Write),
    (Role::Owner, Workflow, Read),
    (Role::Owner, Workflow, Write),
    (Role::Owner, Workflow, Execute),
    (Role::Owner, Schedule, Read),
    (Role::Owner, Schedule, Write),
    (Role::Owner, Schedule, Execute),
    (Role::Owner, Run, Read),
    (Role::Owner, Run, Execute),
    (Role::Owner, Worker, Read),
    (Role::Owner, Worker, Execute),
    (Role::Owner, Audit, Read),
    (Role::Owner, Connection, Read),
    (Role::Owner, Connection, Write),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(role: Role) -> Vec<(Object, Action)> {
        POLICY.iter().filter(|(r, ..)| *r == role).map(|(_, o, a)| (*o, *a)).collect()
    }

    #[test]
    fn each_role_includes_every_permission_of_the_roles_below_it() {
        for pair in Role::ALL.windows(2) {
            let (higher, lower) = (pair[0], pair[1]);
            for (o, a) in perms(lower) {
                assert!(higher.allows(o, a), "{higher} lacks {o}:{a} that {lower} has");
            }
            assert!(perms(higher).len() > perms(lower).len(), "{higher} adds nothing over {lower}");
        }
    }

    #[test]
    fn viewers_only_read() {
        assert!(perms(Role::Viewer).iter().all(|(_, a)| *a == Action::Read));
        assert!(!Role::Viewer.allows(Object::Member, Action::Read));
    }

    #[test]
    fn nobody_grants_a_role_above_their_own() {
        assert!(Role::Owner.may_grant(Role::Owner));
        assert!(Role::Admin.may_grant(Role::Admin));
        assert!(!Role::Admin.may_grant(Role::Owner));
        assert!(Role::Admin.may_grant(Role::Viewer));
        assert!(!Role::Developer.may_grant(Role::Viewer));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().unwrap_err().to_string().contains("owner, admin"));
    }
}
