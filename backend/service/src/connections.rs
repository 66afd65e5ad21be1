//! Connections: the databases a tenant's `sql` tasks run against.

use api_types::{Connection, PutConnection};
use model::{Action, Object};
use store::ConnectionRecord;

use crate::{Caller, Result, ServiceError, Services};

fn connection_view(c: &ConnectionRecord) -> Connection {
    Connection {
        name: c.name.clone(),
        kind: c.kind.clone(),
        url: store::redact(&c.url),
        description: c.description.clone(),
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

/// The kind a URL's scheme names, or what to write instead.
pub fn connection_kind(url: &str) -> Result<&'static str> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
    let kind = match scheme.as_str() {
        "postgres" | "postgresql" => "postgres",
        "mysql" | "mariadb" => "mysql",
        _ => {
            return Err(ServiceError::invalid(
                "a connection URL starts with postgres:// or mysql:// \
                 (e.g. postgres://user:password@db.example.com:5432/warehouse)",
            ));
        }
    };
    let rest = &url[scheme.len() + 3..];
    if rest.is_empty() || rest.starts_with('/') {
        return Err(ServiceError::invalid(format!(
            "the {kind} URL names no host: write {scheme}://user:password@host/db"
        )));
    }
    Ok(kind)
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "connection name {name:?}: use lower-case letters, digits, '-' and '_', starting with a letter (at most 63)"
        )))
    }
}

impl Services {
    pub async fn connections(&self, caller: &Caller, tenant: &str) -> Result<Vec<Connection>> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Connection, Action::Read).await?;
        Ok(self.store.connections(t.tenant_id()).await?.iter().map(connection_view).collect())
    }

    pub async fn connection(&self, caller: &Caller, tenant: &str, name: &str) -> Result<Connection> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Connection, Action::Read).await?;
        self.store
            .connection(t.tenant_id(), name)
            .await
            .map(|c| connection_view(&c))
            .map_err(ServiceError::from_store("connection"))
    }

    pub async fn put_connection(
        &self,
        caller: &Caller,
        tenant: &str,
        name: &str,
        req: &PutConnection,
    ) -> Result<Connection> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Connection, Action::Write).await?;
        check_name(name)?;
        let url = req.url.trim();
        let kind = connection_kind(url)?;
        if req.description.chars().count() > 2000 {
            return Err(ServiceError::invalid("the description is longer than 2000 characters"));
        }
        let rec = self
            .store
            .put_connection(t.tenant_id(), name, kind, url, req.description.trim(), Some(caller.user_id))
            .await?;
        Ok(connection_view(&rec))
    }

    pub async fn delete_connection(&self, caller: &Caller, tenant: &str, name: &str) -> Result<()> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Connection, Action::Write).await?;
        self.store
            .delete_connection(t.tenant_id(), name, Some(caller.user_id))
            .await
            .map_err(ServiceError::from_store("connection"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_names_the_kind() {
        assert_eq!(connection_kind("postgresql://u:p@h/db").ok(), Some("postgres"));
        assert_eq!(connection_kind("mariadb://u:p@h:3306/db").ok(), Some("mysql"));
        assert!(connection_kind("oracle://h/db").is_err());
        assert!(connection_kind("postgres:///db").is_err());
        assert!(check_name("warehouse_1").is_ok());
        assert!(check_name("Warehouse").is_err());
    }
}
