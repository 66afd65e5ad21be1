//! Projects: the first tenant-owned resource, stored in the tenant's shard.

use api_types::{CreateProject, Project};
use model::{Action, Object, ProjectId, TenantId};
use store::{NewProject, ProjectRecord};

use crate::{Caller, Result, ServiceError, Services};

fn project_view(p: &ProjectRecord) -> Project {
    Project {
        id: ProjectId(p.id),
        tenant_id: TenantId(p.tenant_id),
        slug: p.slug.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        created_at: p.created_at,
    }
}

impl Services {
    pub async fn projects(&self, caller: &Caller, tenant: &str) -> Result<Vec<Project>> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Project, Action::Read).await?;
        Ok(self.store.projects(t.tenant_id()).await?.iter().map(project_view).collect())
    }

    pub async fn project(&self, caller: &Caller, tenant: &str, id: ProjectId) -> Result<Project> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Project, Action::Read).await?;
        self.store
            .project(t.tenant_id(), id)
            .await
            .map(|p| project_view(&p))
            .map_err(ServiceError::from_store("project"))
    }

    pub async fn create_project(&self, caller: &Caller, tenant: &str, req: &CreateProject) -> Result<Project> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Project, Action::Write).await?;
        if req.description.chars().count() > 2000 {
            return Err(ServiceError::invalid("the description is longer than 2000 characters"));
        }
        let new = NewProject { slug: &req.slug, name: req.name.as_str(), description: req.description.trim() };
        self.store.create_project(t.tenant_id(), new, Some(caller.user_id)).await.map(|p| project_view(&p)).map_err(
            |e| match e {
                store::StoreError::Conflict(_) => ServiceError::Conflict {
                    code: "project_exists",
                    message: format!("this tenant already has a project {:?}: choose another slug", req.slug.as_str()),
                },
                other => ServiceError::from_store("project")(other),
            },
        )
    }

    pub async fn delete_project(&self, caller: &Caller, tenant: &str, id: ProjectId) -> Result<()> {
        let (t, _) = self.tenant_for(caller, tenant, Object::Project, Action::Write).await?;
        self.store
            .delete_project(t.tenant_id(), id, Some(caller.user_id))
            .await
            .map_err(ServiceError::from_store("project"))
    }
}
