//! Typed identifiers. Each wraps a UUID (v7 when created by the server, so ids sort by creation).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_type!(
    /// A tenant: the unit of isolation, quota and authorization domain.
    TenantId
);
id_type!(
    /// A person (or a service account) who can log in or hold API tokens.
    UserId
);
id_type!(
    /// A project groups workflows inside a tenant.
    ProjectId
);
id_type!(
    /// An API token's public identifier (the secret part is never stored).
    TokenId
);
id_type!(
    /// A workflow (all of its versions).
    WorkflowId
);
id_type!(
    /// One run of a workflow.
    RunId
);
