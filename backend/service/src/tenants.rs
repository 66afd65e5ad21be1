//! Tenants: who may see which, creating one, and the dashboard.

use api_types::{CreateTenant, Dashboard, Me, Tenant, User};
use chrono::Utc;
use model::{Action, Object, Role, TenantId, WorkflowId};
use store::{NewTenant, TenantRecord, UserRecord};

use crate::{Caller, Result, ServiceError, Services};

fn worker_view(w: store::WorkerRecord) -> api_types::Worker {
    api_types::Worker {
        id: w.id,
        pool: w.pool,
        region: w.region,
        labels: w.labels,
        hostname: w.hostname,
        version: w.version,
        isolation: w.isolation,
        capacity: w.capacity,
        free: w.free,
        running: w.running,
        draining: w.draining,
        connected: w.connected,
        connected_at: w.connected_at,
        last_seen_at: w.last_seen_at,
    }
}

fn require_platform_admin(caller: &Caller, what: &str) -> Result<()> {
    if caller.platform_admin {
        Ok(())
    } else {
        Err(ServiceError::Forbidden { role: "member".into(), object: "the platform".into(), action: what.into() })
    }
}

pub(crate) fn tenant_view(t: &TenantRecord, role: Role) -> Tenant {
    Tenant { id: t.tenant_id(), slug: t.slug.clone(), name: t.name.clone(), role, created_at: t.created_at }
}

pub(crate) fn user_view(u: &UserRecord) -> User {
    User {
        id: u.user_id(),
        email: u.email.clone(),
        display_name: u.display_name.clone(),
        platform_admin: u.platform_admin,
        created_at: u.created_at,
    }
}

impl Services {
    /// The caller and their tenants.
    pub async fn me(&self, caller: &Caller) -> Result<Me> {
        let user = self.store.user(caller.user_id).await.map_err(ServiceError::from_store("user"))?;
        let tenants = self.store.tenants_of_user(caller.user_id).await?;
        Ok(Me { user: user_view(&user), tenants: tenants.iter().map(|(t, r)| tenant_view(t, *r)).collect() })
    }

    /// The caller's display preferences (the console's language and theme), `{}` until chosen.
    pub async fn preferences(&self, caller: &Caller) -> Result<serde_json::Value> {
        self.store.user_preferences(caller.user_id).await.map_err(ServiceError::from_store("user"))
    }

    /// Keeps the caller's display preferences: a small object of short strings.
    pub async fn set_preferences(&self, caller: &Caller, prefs: &serde_json::Value) -> Result<()> {
        let ok = prefs.as_object().is_some_and(|o| {
            o.len() <= 16 && o.iter().all(|(k, v)| k.len() <= 32 && v.as_str().is_some_and(|s| s.len() <= 32))
        });
        if !ok {
            return Err(ServiceError::invalid("preferences are an object of at most 16 short text values"));
        }
        self.store.set_user_preferences(caller.user_id, prefs).await.map_err(ServiceError::from_store("user"))
    }

    /// Resolves a tenant slug the caller may see, and authorizes `action` on `object` in it.
    /// A tenant the caller is not a member of is `NotFound`, like a tenant that does not exist.
    pub async fn tenant_for(
        &self,
        caller: &Caller,
        slug: &str,
        object: Object,
        action: Action,
    ) -> Result<(TenantRecord, Role)> {
        let tenant = self.store.tenant_by_slug(slug).await.map_err(ServiceError::from_store("tenant"))?;
        let role = self.authz.authorize(caller, tenant.tenant_id(), object, action).await?;
        Ok((tenant, role))
    }

    /// Creates a tenant with the caller as owner. Platform admins only.
    pub async fn create_tenant(&self, caller: &Caller, req: &CreateTenant) -> Result<Tenant> {
        require_platform_admin(caller, "create tenants")?;
        let rec = self
            .store
            .create_tenant(
                NewTenant { slug: &req.slug, name: req.name.as_str(), owner: caller.user_id },
                Some(caller.user_id),
            )
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(_) => ServiceError::Conflict {
                    code: "tenant_exists",
                    message: format!(
                        "a tenant with the slug {:?} already exists: choose another slug",
                        req.slug.as_str()
                    ),
                },
                other => other.into(),
            })?;
        self.policy_changed(rec.tenant_id(), caller.user_id, Some(Role::Owner)).await?;
        Ok(tenant_view(&rec, Role::Owner))
    }

    pub async fn tenant_limits(&self, caller: &Caller, slug: &str) -> Result<api_types::TenantLimits> {
        let (t, _) = self.tenant_for(caller, slug, Object::Tenant, Action::Read).await?;
        let (max_running, weight) = self.store.tenant_limits(t.tenant_id()).await?;
        Ok(api_types::TenantLimits { max_running, weight })
    }

    /// Quotas are the platform's to give: platform admins only.
    pub async fn set_tenant_limits(
        &self,
        caller: &Caller,
        slug: &str,
        limits: &api_types::TenantLimits,
    ) -> Result<api_types::TenantLimits> {
        require_platform_admin(caller, "set tenant quotas")?;
        let t = self.store.tenant_by_slug(slug).await.map_err(ServiceError::from_store("tenant"))?;
        if limits.weight == 0 || limits.weight > 1000 {
            return Err(ServiceError::invalid("weight must be between 1 and 1000"));
        }
        self.store.set_tenant_limits(t.tenant_id(), limits.max_running, limits.weight).await?;
        self.store
            .audit(
                t.tenant_id(),
                Some(caller.user_id),
                "tenant.limits",
                &format!("tenant:{}", t.id),
                serde_json::to_value(limits).unwrap_or_default(),
            )
            .await?;
        Ok(limits.clone())
    }

    /// Every pool that has a slot limit, live workers or queued attempts, with what waits in it and
    /// why (any signed-in user may look: workers serve all tenants, and these are counts).
    pub async fn pools(&self, _caller: &Caller) -> Result<Vec<api_types::PoolStatus>> {
        self.pool_status(Utc::now()).await
    }

    pub async fn pool_status(&self, now: chrono::DateTime<Utc>) -> Result<Vec<api_types::PoolStatus>> {
        let (limits, workers, demand) =
            tokio::try_join!(self.store.pools(), self.store.workers(), self.store.queue_demand(now))?;
        let live = store::Offer::live(&workers, now);
        let mut out: std::collections::BTreeMap<String, api_types::PoolStatus> = std::collections::BTreeMap::new();
        let entry = |out: &mut std::collections::BTreeMap<String, api_types::PoolStatus>, name: &str| {
            out.entry(name.to_owned()).or_insert_with(|| api_types::PoolStatus {
                name: name.to_owned(),
                slots: None,
                workers: 0,
                worker_slots: 0,
                queued: 0,
                unschedulable: 0,
                waiting: Vec::new(),
            });
        };
        for (name, slots) in limits {
            entry(&mut out, &name);
            out.get_mut(&name).expect("just added").slots = slots;
        }
        for o in &live {
            entry(&mut out, &o.pool);
            let p = out.get_mut(&o.pool).expect("just added");
            p.workers += 1;
            p.worker_slots += o.slots;
        }
        for d in demand {
            let name = d.placement.pool.clone();
            entry(&mut out, &name);
            let p = out.get_mut(&name).expect("just added");
            p.queued += d.attempts;
            if let Some(reason) = store::why_unschedulable(&d.placement, &live) {
                p.unschedulable += d.attempts;
                match p.waiting.iter_mut().find(|w| w.reason == reason) {
                    Some(w) => w.attempts += d.attempts,
                    None => p.waiting.push(api_types::Waiting { reason, attempts: d.attempts }),
                }
            }
        }
        Ok(out.into_values().collect())
    }

    pub async fn set_pool(&self, caller: &Caller, pool: &api_types::Pool) -> Result<api_types::Pool> {
        require_platform_admin(caller, "set pool slots")?;
        if pool.name.is_empty()
            || pool.name.len() > 100
            || !pool.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ServiceError::invalid("a pool name uses letters, digits, '-' and '_' (at most 100)"));
        }
        self.store.set_pool_slots(&pool.name, pool.slots).await?;
        Ok(pool.clone())
    }

    /// Every worker the platform has seen (workers serve all tenants; any signed-in user may look).
    pub async fn workers(&self, _caller: &Caller) -> Result<Vec<api_types::Worker>> {
        Ok(self.store.workers().await?.into_iter().map(worker_view).collect())
    }

    /// The tenant's attempts that workers run now, each with its worker.
    pub async fn running_attempts(&self, caller: &Caller, slug: &str) -> Result<Vec<api_types::RunningAttempt>> {
        let (tenant, _) = self.tenant_for(caller, slug, Object::Run, Action::Read).await?;
        Ok(self
            .store
            .running_attempts(tenant.tenant_id())
            .await?
            .into_iter()
            .map(|a| api_types::RunningAttempt {
                worker_id: a.worker_id,
                run_id: model::RunId(a.run_id),
                task: a.task_id,
                workflow: a.workflow,
                attempt: a.attempt,
                started_at: a.started_at,
            })
            .collect())
    }

    /// Asks a worker to finish what it runs and take nothing new (platform admins).
    pub async fn drain_worker(&self, caller: &Caller, id: &str) -> Result<api_types::Worker> {
        require_platform_admin(caller, "drain workers")?;
        self.store.drain_worker(id).await.map(worker_view).map_err(ServiceError::from_store("worker"))
    }

    pub async fn dashboard(&self, caller: &Caller, slug: &str) -> Result<Dashboard> {
        let (tenant, role) = self.tenant_for(caller, slug, Object::Tenant, Action::Read).await?;
        let id: TenantId = tenant.tenant_id();
        let now = Utc::now();
        let since = now.date_naive().and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        let (members, projects, shard) =
            tokio::join!(self.store.count_members(id), self.store.count_projects(id), self.store.ping_shard(id));
        // A tenant whose database does not answer still gets its dashboard, saying so.
        let (stats, queue) = if shard.is_ok() {
            (self.store.run_stats(id, since).await?, self.store.queue_depth().await?)
        } else {
            Default::default()
        };
        let runs: std::collections::BTreeMap<String, i64> = stats.by_state.into_iter().collect();
        let ended: i64 = ["succeeded", "failed", "cancelled"].iter().filter_map(|s| runs.get(*s)).sum();
        Ok(Dashboard {
            tenant: tenant_view(&tenant, role),
            members: members?,
            projects: projects?,
            shard_ok: shard.is_ok(),
            server_version: self.version().to_owned(),
            server_time: now,
            since,
            success_rate: (ended > 0).then(|| runs.get("succeeded").copied().unwrap_or(0) as f64 / ended as f64),
            runs,
            schedule_delay_p50: stats.delay_p50,
            schedule_delay_p95: stats.delay_p95,
            queue: queue.into_iter().map(|(pool, queued)| api_types::QueueDepth { pool, queued }).collect(),
            failing: stats
                .failing
                .into_iter()
                .map(|(wid, name, n)| api_types::FailingWorkflow { id: WorkflowId(wid), name, failed_runs: n })
                .collect(),
        })
    }
}
