//! What the benchmarks stand on: a private PostgreSQL cluster with its default durability (fsync
//! on, synchronous commit — unlike the tests' cluster), migrated, with one platform admin, one
//! tenant and one project. It stops when dropped.
//!
//! With `ORRERY_BENCH_STATEMENTS=1` the cluster also loads pg_stat_statements (planning tracked),
//! and [`BenchDb::statements`] prints where the database's time went, statement by statement.
//! `ORRERY_BENCH_PG="name=value;name=value"` adds server settings (auto_explain, say) and keeps
//! the cluster's directory, with its log, when the benchmark ends.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use model::state::Trigger;
use model::workflow::{Overlap, parse_yaml};
use model::{Email, ProjectId, RunId, Slug, TenantId, UserId, WorkflowId};
use sqlx::Connection as _;
use store::embedded::{Cluster, ClusterSpec};
use store::{Created, DatabaseUrls, NewProject, NewRun, NewTenant, NewUser, Store, StoreOptions};

pub struct BenchDb {
    pub store: Store,
    pub urls: DatabaseUrls,
    pub owner: UserId,
    pub tenant: TenantId,
    pub project: ProjectId,
    cluster: Option<Cluster>,
    dir: PathBuf,
}

impl BenchDb {
    /// Must be called from the thread that lives as long as the benchmark (the cluster dies with
    /// its parent thread).
    pub async fn start(max_connections: u32) -> BenchDb {
        let dir = std::env::temp_dir().join(format!("orrery-bench-{}", std::process::id()));
        let cluster = Cluster::start(&ClusterSpec {
            dir: dir.clone(),
            bin_dir: None,
            settings: settings(),
            die_with_parent: true,
            detach: false,
        })
        .expect("start the benchmark's PostgreSQL");
        let mut c = sqlx::PgConnection::connect(&cluster.url("postgres")).await.expect("connect to it");
        sqlx::query("CREATE DATABASE bench").execute(&mut c).await.expect("create the database");
        c.close().await.ok();
        let urls = DatabaseUrls { catalog: cluster.url("bench"), extra_shards: vec![] };
        let store = Store::connect(&urls, &StoreOptions { max_connections, ..StoreOptions::default() })
            .await
            .expect("connect the store");
        store.migrate().await.expect("migrate");
        let email = Email::parse("bench@example.com").expect("an email");
        let owner = store
            .create_user(NewUser { email: &email, display_name: "b", password_hash: None, platform_admin: true }, None)
            .await
            .expect("create the owner")
            .user_id();
        let slug = Slug::parse("bench").expect("a slug");
        let tenant = store
            .create_tenant(NewTenant { slug: &slug, name: "Bench", owner }, None)
            .await
            .expect("a tenant")
            .tenant_id();
        let key = Slug::parse("p").expect("a slug");
        let project = ProjectId(
            store
                .create_project(tenant, NewProject { slug: &key, name: "P", description: "" }, None)
                .await
                .expect("a project")
                .id,
        );
        println!(
            "PostgreSQL {} on this machine, default durability; {} CPUs",
            Cluster::find_binaries().and_then(|b| Cluster::binary_version(&b)).unwrap_or_default(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        BenchDb { store, urls, owner, tenant, project, cluster: Some(cluster), dir }
    }

    /// With `ORRERY_BENCH_STATEMENTS=1`: empties the statement statistics, or (`print`) prints
    /// the statements that took the database's time since, with their planning and execution
    /// times a call. Otherwise nothing.
    pub async fn statements(&self, print: Option<&str>) {
        if !profiled() {
            return;
        }
        let pool = self.store.catalog_pool();
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await.expect("the extension");
        let Some(title) = print else {
            sqlx::query("SELECT pg_stat_statements_reset()").execute(&pool).await.expect("reset");
            return;
        };
        let rows: Vec<(i64, f64, f64, String)> = sqlx::query_as(
            "SELECT calls, total_plan_time / calls, mean_exec_time, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements \
             WHERE calls > 10 ORDER BY total_plan_time + total_exec_time DESC LIMIT 12",
        )
        .fetch_all(&pool)
        .await
        .expect("read the statistics");
        println!("statements during {title} (calls, planning ms a call, execution ms a call):");
        for (calls, plan, exec, q) in rows {
            println!("  {calls:>7} {plan:>7.3} {exec:>7.3}  {}", q.chars().take(110).collect::<String>());
        }
    }

    /// Gathers the planner's statistics, as autovacuum does on a database that has run for a
    /// while. Without them the planner guesses that every table is nearly empty, and its plans
    /// fit the guess, not the data.
    pub async fn analyze(&self) {
        sqlx::query("ANALYZE").execute(&self.store.catalog_pool()).await.expect("ANALYZE");
    }

    /// Applies a workflow document to the project.
    pub async fn workflow(&self, yaml: &str) -> WorkflowId {
        let wf = parse_yaml(yaml).expect("a valid workflow");
        self.store
            .apply_workflow(self.tenant, self.project, &wf, "bench", None, Utc::now())
            .await
            .expect("apply")
            .0
            .workflow_id()
    }

    /// A run of `wf`, as an API trigger makes it.
    pub async fn trigger(&self, wf: WorkflowId) -> RunId {
        let new = NewRun {
            workflow: wf,
            trigger: Trigger::Api,
            logical_time: Utc::now(),
            run_key: None,
            params: Default::default(),
            priority: 0,
            backfill: None,
            created_by: None,
            overlap: Overlap::Allow,
            parent: None,
        };
        match self.store.create_run(self.tenant, new, Utc::now()).await.expect("create a run") {
            Created::New(id, _) => id,
            other => panic!("{other:?}"),
        }
    }

    /// Until `run` has ended; its record. Polls every 5 ms: polling harder would load the
    /// database the benchmark measures (two cores here).
    pub async fn wait(&self, run: RunId) -> store::RunRecord {
        loop {
            let r = self.store.run(self.tenant, run).await.expect("read the run");
            if r.run_state().is_terminal() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// One run of a chain or fan-out, timed from the database's own records (so the
    /// benchmark's polling adds nothing).
    pub async fn measure(&self, wf: WorkflowId) -> Measured {
        let run = self.trigger(wf).await;
        let r = self.wait(run).await;
        let wall = r.ended_at.map_or(f64::NAN, |end| (end - r.queued_at).num_microseconds().unwrap_or(0) as f64 / 1e6);
        let attempts = self.store.attempts_of_run(self.tenant, run).await.expect("read the attempts");
        let ms = |d: chrono::Duration| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
        let (mut report_to_claim, mut start_to_start) = (Vec::new(), Vec::new());
        let start_to_report = attempts.iter().filter_map(|a| Some(ms(a.ended_at? - a.started_at?))).collect();
        for pair in attempts.windows(2) {
            if let (Some(end), Some(start)) = (pair[0].ended_at, pair[1].started_at) {
                report_to_claim.push(ms(start - end));
            }
            if let (Some(a), Some(b)) = (pair[0].started_at, pair[1].started_at) {
                start_to_start.push(ms(b - a));
            }
        }
        Measured { wall, report_to_claim, start_to_start, start_to_report }
    }
}

/// What [`BenchDb::measure`] read of one run. In task order; meaningful for chains.
pub struct Measured {
    /// Run created → run ended, in seconds.
    pub wall: f64,
    /// A task's end as stored (stamped when its report is taken) → the next task's start as
    /// stored (stamped by the claim, inside the report's transaction, before its commit), in ms.
    /// Leaves out the commit and the hand-over to whoever runs the task.
    pub report_to_claim: Vec<f64>,
    /// One task's start → the next one's, in ms. For tasks that take no time (`noop`) this is
    /// the whole cost of a step, commit and hand-over included: the honest per-step overhead.
    pub start_to_start: Vec<f64>,
    /// Each task's start as stored → its report taken, in ms: the start's commit, the hand-over,
    /// the task itself, and its report's way back.
    pub start_to_report: Vec<f64>,
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        drop(self.cluster.take());
        if std::env::var_os("ORRERY_BENCH_PG").is_some() {
            println!("the cluster's directory, with its log, is kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The server settings `ORRERY_BENCH_STATEMENTS` and `ORRERY_BENCH_PG` ask for.
fn settings() -> Vec<(String, String)> {
    let mut out = Vec::new();
    if profiled() {
        out.push(("shared_preload_libraries".into(), "pg_stat_statements".into()));
        out.push(("pg_stat_statements.track_planning".into(), "on".into()));
    }
    let extra = std::env::var("ORRERY_BENCH_PG").unwrap_or_default();
    for kv in extra.split(';').filter(|kv| !kv.trim().is_empty()) {
        let (k, v) = kv.split_once('=').expect("ORRERY_BENCH_PG: name=value pairs separated by ';'");
        out.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    out
}

fn profiled() -> bool {
    std::env::var_os("ORRERY_BENCH_STATEMENTS").is_some_and(|v| v == "1")
}

/// The value at quantile `p` of `sorted`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
