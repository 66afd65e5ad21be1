//! Shared set-up: a tenant, a project, workflows from YAML, and helpers to watch runs.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use model::state::{RunState, Trigger};
use model::workflow::{Overlap, parse_yaml};
use model::{Email, ProjectId, RunId, Slug, TenantId, UserId, WorkflowId};
use store::{Created, NewProject, NewRun, NewTenant, NewUser, Store};

pub struct World {
    pub store: Store,
    pub owner: UserId,
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 10, 0, 0).unwrap()
}

impl World {
    /// Two shards: tenants are spread over both.
    pub async fn new() -> World {
        Self::on(testkit::TestDb::new().await).await
    }

    /// One shard, as `orrery up` runs: a claim reads, allots and takes in one statement there.
    pub async fn one_shard() -> World {
        Self::on(testkit::TestDb::one_shard().await).await
    }

    /// Both layouts, for tests of dispatch, whose code differs between them.
    pub async fn layouts() -> [(&'static str, World); 2] {
        [("two shards", Self::new().await), ("one shard", Self::one_shard().await)]
    }

    pub async fn on(db: testkit::TestDb) -> World {
        let email = Email::parse("owner@example.com").unwrap();
        let owner = db
            .store
            .create_user(
                NewUser { email: &email, display_name: "Owner", password_hash: None, platform_admin: true },
                None,
            )
            .await
            .unwrap()
            .user_id();
        World { store: db.store, owner }
    }

    pub async fn tenant(&self, slug: &str) -> (TenantId, ProjectId) {
        let s = Slug::parse(slug).unwrap();
        let t = self
            .store
            .create_tenant(NewTenant { slug: &s, name: slug, owner: self.owner }, None)
            .await
            .unwrap()
            .tenant_id();
        let p = Slug::parse("main").unwrap();
        let p =
            self.store.create_project(t, NewProject { slug: &p, name: "Main", description: "" }, None).await.unwrap();
        (t, ProjectId(p.id))
    }

    pub async fn workflow(&self, tenant: TenantId, project: ProjectId, yaml: &str, now: DateTime<Utc>) -> WorkflowId {
        let wf = parse_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
        self.store.apply_workflow(tenant, project, &wf, "test", None, now).await.unwrap().0.workflow_id()
    }

    pub async fn trigger(&self, tenant: TenantId, workflow: WorkflowId, now: DateTime<Utc>) -> RunId {
        let new = NewRun {
            workflow,
            trigger: Trigger::Manual,
            logical_time: now,
            run_key: None,
            params: Default::default(),
            priority: 0,
            backfill: None,
            created_by: None,
            overlap: Overlap::Allow,
            parent: None,
        };
        match self.store.create_run(tenant, new, now).await.unwrap() {
            Created::New(id, _) | Created::Existing(id) => id,
            Created::Skipped => panic!("skipped"),
        }
    }

    pub async fn run_state(&self, tenant: TenantId, run: RunId) -> RunState {
        self.store.run(tenant, run).await.unwrap().run_state()
    }

    /// Waits (real time, generously) until the run ends.
    pub async fn wait_end(&self, tenant: TenantId, run: RunId) -> RunState {
        for _ in 0..300 {
            let s = self.run_state(tenant, run).await;
            if s.is_terminal() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {run} did not end in 15 s: {:?}", self.store.task_runs(tenant, run).await.unwrap());
    }
}

pub fn clock(at: DateTime<Utc>) -> (engine::ManualClock, Arc<dyn engine::Clock>) {
    let c = engine::ManualClock::new(at);
    (c.clone(), Arc::new(c))
}
