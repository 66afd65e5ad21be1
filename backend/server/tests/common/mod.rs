//! A real server on port 0 over a fresh catalog + shard, and helpers to act as its users.
#![allow(dead_code, reason = "each test binary uses a different part of the helpers")]

use std::sync::Arc;

pub mod proxy;

use model::{Email, Role, UserId};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use server::config::Config;
use server::roles;
use service::Services;
use store::{NewTenant, NewUser, Store};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;

pub const ADMIN_PASSWORD: &str = "admin-password-1";

pub struct TestApp {
    pub base: String,
    pub store: Store,
    pub services: Services,
    pub admin: UserId,
    pub admin_token: String,
    pub urls: store::DatabaseUrls,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A server with one platform admin (admin@example.com) who owns tenant `acme`.
pub async fn spawn_app() -> TestApp {
    // The server's own log, shown by the test runner when a test fails.
    server::telemetry::init(server::config::LogFormat::Text, "warn,server=info");
    let db = TestDb::new().await;
    let mut app = serve_on(db.store.clone(), db.urls.clone()).await;
    let hash = service::auth::hash_password(ADMIN_PASSWORD).await.unwrap();
    let email = Email::parse("admin@example.com").unwrap();
    let admin = app
        .store
        .create_user(
            NewUser { email: &email, display_name: "Admin", password_hash: Some(&hash), platform_admin: true },
            None,
        )
        .await
        .unwrap()
        .user_id();
    let slug = model::Slug::parse("acme").unwrap();
    app.store.create_tenant(NewTenant { slug: &slug, name: "Acme", owner: admin }, None).await.unwrap();
    app.services.authz.reload(&app.store).await.unwrap();
    app.admin_token = app.services.issue_token_for(admin, "test").await.unwrap();
    app.admin = admin;
    app
}

/// Another replica serving the same databases.
pub async fn spawn_replica(of: &TestApp) -> TestApp {
    let store = Store::connect(&of.urls, &store::StoreOptions::default()).await.unwrap();
    let mut app = serve_on(store, of.urls.clone()).await;
    app.admin = of.admin;
    app.admin_token = of.admin_token.clone();
    app
}

async fn serve_on(store: Store, urls: store::DatabaseUrls) -> TestApp {
    let mut config = Config::default();
    config.console.site_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/site");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    config.listen = listener.local_addr().unwrap();
    // Short leases: a worker heartbeats every 2 s, a silent one loses its attempts after 6 s.
    config.workers.lease_secs = 6;
    let (state, sessions) = roles::state(Arc::new(config.clone()), store.clone()).await.unwrap();
    let services = state.services.clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(roles::serve(state, sessions, listener, shutdown.clone()));
    TestApp {
        base: format!("http://{}", config.listen),
        store,
        services,
        admin: UserId(uuid::Uuid::nil()),
        admin_token: String::new(),
        urls,
        shutdown,
    }
}

/// An answer: status and JSON body (Null when empty).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

impl TestApp {
    /// Starts the scheduler loops and the in-process executor (noop and sleep) on this app's databases.
    pub fn start_engine(&self) {
        self.engine(8);
    }

    /// Starts the scheduler loops only: tasks of the default pool wait for a real worker.
    pub fn start_scheduler(&self) {
        self.engine(0);
    }

    fn engine(&self, local_slots: u32) {
        let mut config = Config::default();
        config.scheduler.lease_ttl_secs = 3;
        config.workers.lease_secs = 6;
        roles::start_engine(&config, &self.store, &self.shutdown, local_slots);
    }

    /// A worker token made by the platform admin.
    pub async fn worker_token(&self) -> String {
        self.services.issue_worker_token(self.admin, "test worker").await.unwrap()
    }

    /// A worker running in this test process, connected over gRPC; stops when the app does.
    pub async fn start_worker(&self, pool: &str, slots: u32) -> String {
        self.start_worker_sized(pool, slots, "4Gi").await
    }

    /// An in-process worker offering `memory` (2 CPUs).
    pub async fn start_worker_sized(&self, pool: &str, slots: u32, memory: &str) -> String {
        self.start_worker_with(pool, slots, memory, None).await
    }

    /// An in-process worker offering `memory`, with exec plugins from `plugin_dir`.
    pub async fn start_worker_with(
        &self,
        pool: &str,
        slots: u32,
        memory: &str,
        plugin_dir: Option<std::path::PathBuf>,
    ) -> String {
        self.start_worker_as(pool, slots, memory, plugin_dir, None).await
    }

    /// The same, its tasks run as the OS user `run_as`.
    pub async fn start_worker_as(
        &self,
        pool: &str,
        slots: u32,
        memory: &str,
        plugin_dir: Option<std::path::PathBuf>,
        run_as: Option<&str>,
    ) -> String {
        let args = server::cli::WorkerArgs {
            memory: Some(memory.into()),
            plugin_dir,
            run_as: run_as.map(str::to_owned),
            ..self.worker_args(pool, slots).await
        };
        self.start_worker_from(&args)
    }

    /// An in-process worker that gives its tasks no cgroups (`--no-cgroups`): each starts cold,
    /// under its supervisor.
    pub async fn start_worker_without_cgroups(&self, pool: &str, slots: u32) -> String {
        let args = server::cli::WorkerArgs { no_cgroups: true, ..self.worker_args(pool, slots).await };
        self.start_worker_from(&args)
    }

    /// What every in-process worker of the tests starts with: 2 CPUs, 4 GiB, a fresh work
    /// directory, cgroups where the host gives them.
    async fn worker_args(&self, pool: &str, slots: u32) -> server::cli::WorkerArgs {
        server::cli::WorkerArgs {
            server: self.base.clone(),
            ca_cert: None,
            token: self.worker_token().await,
            pool: pool.into(),
            region: String::new(),
            labels: vec![],
            slots,
            cpu: Some(2.0),
            memory: Some("4Gi".into()),
            work_dir: std::env::temp_dir().join(format!("orrery-test-work-{}", uuid::Uuid::now_v7())),
            kill_grace_secs: 1,
            log_cap: 1024 * 1024,
            no_cgroups: false,
            plugin_dir: None,
            run_as: None,
        }
    }

    /// An in-process worker with `gpus` GPUs, as `nvidia-smi` reports them on a host that has
    /// them (this one has none).
    pub async fn start_worker_with_gpus(&self, pool: &str, slots: u32, gpus: u32) -> String {
        let mut cfg = server::roles::worker_config(&self.worker_args(pool, slots).await).unwrap();
        cfg.capacity.gpus = gpus;
        self.start_worker_configured(cfg)
    }

    fn start_worker_from(&self, args: &server::cli::WorkerArgs) -> String {
        self.start_worker_configured(server::roles::worker_config(args).unwrap())
    }

    fn start_worker_configured(&self, cfg: worker::session::WorkerConfig) -> String {
        let id = cfg.worker_id.clone();
        tokio::spawn(worker::session::run(cfg, self.shutdown.clone()));
        id
    }

    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        let mut req = Client::new().request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// A new user with `role` in `tenant` (invited by the admin through the API), and a token of theirs.
    pub async fn member(&self, tenant: &str, email: &str, role: Role) -> (UserId, String) {
        let a = self
            .post(
                &format!("/api/v1/tenants/{tenant}/members"),
                &self.admin_token,
                json!({ "email": email, "role": role }),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let user: UserId = serde_json::from_value(a.body["member"]["user_id"].clone()).unwrap();
        (user, self.services.issue_token_for(user, "test").await.unwrap())
    }

    /// A client with a cookie jar, signed in through the login endpoint.
    pub async fn signed_in(&self, email: &str, password: &str) -> Client {
        let client = Client::builder().cookie_store(true).build().unwrap();
        let res = client
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
        client
    }
}

pub async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Answer { status, body, headers }
}
