//! The long-running roles: connecting, migrating and serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use leptos::config::{Env, LeptosOptions};
use service::{LoginLimits, Services};
use store::{DatabaseUrls, Store, StoreOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_sessions::ExpiredDeletion;
use tower_sessions_sqlx_store::PostgresStore;

use crate::metrics::Metrics;
use crate::{AppState, COMMIT, Config, VERSION, http};

/// Connects to the configured databases (the catalog URL must be known by now).
pub async fn connect(config: &Config, catalog_url: &str) -> anyhow::Result<Store> {
    let urls = DatabaseUrls { catalog: catalog_url.to_owned(), extra_shards: config.database.shards.clone() };
    let opts = StoreOptions {
        max_connections: config.database.max_connections,
        acquire_timeout: Duration::from_secs(config.database.acquire_timeout_secs),
        application_name: "orrery".into(),
    };
    Ok(Store::connect(&urls, &opts).await?)
}

/// Refuses to serve on a database that is behind this binary's schema.
pub async fn ensure_migrated(store: &Store) -> anyhow::Result<()> {
    let behind: Vec<String> = store
        .readiness()
        .await
        .into_iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{}: {}", r.database, r.detail))
        .collect();
    anyhow::ensure!(
        behind.is_empty(),
        "the database is not ready ({}); run `orrery migrate` first, or start with --migrate",
        behind.join("; ")
    );
    Ok(())
}

/// Binds the listen address, with a clear message when it is taken.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            anyhow::anyhow!(
                "{addr} is already in use by another program: stop it, or choose another address with --listen"
            )
        }
        std::io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!(
                "not allowed to listen on {addr}: ports below 1024 need privileges; choose another with --listen"
            )
        }
        _ => anyhow::Error::new(e).context(format!("listening on {addr}")),
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("orrery")
        .site_root(config.console.site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .env(Env::PROD)
        .build()
}

/// Builds the services and the shared state.
pub async fn state(config: Arc<Config>, store: Store) -> anyhow::Result<(AppState, PostgresStore)> {
    let limits = LoginLimits {
        per_email: config.auth.max_failures_per_email,
        per_address: config.auth.max_failures_per_address,
        window: Duration::from_secs(config.auth.failure_window_secs),
    };
    let services = Services::new(store.clone(), limits, VERSION).await.context("loading the authorization policy")?;
    let sessions = PostgresStore::new(store.catalog_pool());
    sessions.migrate().await.context("creating the session table")?;
    let clock: Arc<dyn engine::Clock> = Arc::new(engine::SystemClock);
    let workers = crate::grpc::WorkerService {
        services: services.clone(),
        clock: clock.clone(),
        wakers: crate::grpc::QueueWakers::default(),
        lease: Duration::from_secs(config.workers.lease_secs),
        shutdown: CancellationToken::new(),
    };
    let state = AppState {
        services,
        clock,
        workers,
        metrics: Arc::new(Metrics::new(VERSION, COMMIT)),
        leptos_options: leptos_options(&config),
        config,
    };
    Ok((state, sessions))
}

/// Serves HTTP until `shutdown` is cancelled, then drains in-flight requests.
pub async fn serve(
    state: AppState,
    sessions: PostgresStore,
    listener: std::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    state.workers.wakers.start(&state.services.store, &shutdown);
    // Worker sessions are long-lived streams: end them when we stop, or the graceful shutdown waits forever.
    let sessions_stop = state.workers.shutdown.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        sessions_stop.cancel();
    });
    let services = state.services.clone();
    let follow = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { services.follow_policy_changes(shutdown).await }
    });
    let reap = tokio::spawn({
        let sessions = sessions.clone();
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                r = sessions.continuously_delete_expired(Duration::from_secs(300)) => {
                    if let Err(e) = r { tracing::warn!("expired session cleanup stopped: {e}"); }
                }
                () = shutdown.cancelled() => {}
            }
        }
    });
    let tls = match (&state.config.tls.cert_file, &state.config.tls.key_file) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    let app = http::router(state, sessions).into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(config) => {
            use axum::serve::ListenerExt as _;
            // `tap_io` only to get axum's ConnectInfo<SocketAddr> for a listener of our own.
            let listener = crate::tls::TlsListener::new(listener, config)?.tap_io(|_| {});
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await
                .context("serving HTTPS")?;
        }
        None => {
            use axum::serve::ListenerExt as _;
            // Small messages both ways on long-lived streams (offers, results, acks): without
            // TCP_NODELAY, Nagle's algorithm meets the peer's delayed ACK and each waits ~40 ms.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await
                .context("serving HTTP")?;
        }
    }
    shutdown.cancel();
    let _ = tokio::join!(follow, reap);
    Ok(())
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
            _ = term.recv() => tracing::info!("terminated; shutting down"),
        }
        token.cancel();
    });
}

/// `orrery server`: the stateless API + console role.
pub async fn run_server(config: Config, migrate: bool) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let url = config.database.url.clone().context(
        "no database configured: set database.url in orrery.toml, ORRERY_DATABASE_URL, or --database-url (or use `orrery up` for a private one)",
    )?;
    let listener = bind(config.listen)?;
    let store = connect(&config, &url).await?;
    if migrate {
        store.migrate().await?;
    } else {
        ensure_migrated(&store).await?;
    }
    let (state, sessions) = state(config.clone(), store.clone()).await?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    tracing::info!(listen = %config.listen, version = VERSION, "serving");
    serve(state, sessions, listener, shutdown).await?;
    store.close().await;
    Ok(())
}

/// The scheduler role's loops: shard leases + timing wheel, lease reaping and timeouts,
/// backfills; with `local_slots > 0`, also the in-process executor. They stop with `shutdown`.
pub fn start_engine(
    config: &Config,
    store: &Store,
    shutdown: &CancellationToken,
    local_slots: u32,
) -> Vec<tokio::task::JoinHandle<()>> {
    let clock: Arc<dyn engine::Clock> = Arc::new(engine::SystemClock);
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into());
    let cfg = engine::scheduler::SchedulerConfig {
        id: format!("{host}-{}-{}", std::process::id(), &uuid::Uuid::now_v7().simple().to_string()[24..]),
        hostname: host,
        lease_ttl: Duration::from_secs(config.scheduler.lease_ttl_secs),
        ..engine::scheduler::SchedulerConfig::default()
    };
    let mut tasks = vec![
        tokio::spawn(engine::scheduler::Scheduler::new(store.clone(), clock.clone(), cfg).run(shutdown.clone())),
        tokio::spawn(engine::maintenance::run(store.clone(), clock.clone(), Duration::from_secs(1), shutdown.clone())),
        tokio::spawn(engine::backfill::run(store.clone(), clock.clone(), Duration::from_secs(2), shutdown.clone())),
    ];
    // Sub-workflows and dependencies wait on other runs: every scheduler runs them.
    let internal = engine::local::LocalExecutorConfig {
        pool: model::workflow::INTERNAL_POOL.into(),
        worker_id: "scheduler".into(),
        slots: 256,
        ..engine::local::LocalExecutorConfig::default()
    };
    tasks.push(tokio::spawn(engine::local::run(store.clone(), clock.clone(), internal, shutdown.clone())));
    if local_slots > 0 {
        let local =
            engine::local::LocalExecutorConfig { slots: local_slots, ..engine::local::LocalExecutorConfig::default() };
        tasks.push(tokio::spawn(engine::local::run(store.clone(), clock, local, shutdown.clone())));
    }
    tasks
}

/// `orrery scheduler`: fires schedules of the shards it leases, reaps leases, drives backfills.
/// Run any number of them; shards spread across the live ones.
pub async fn run_scheduler(config: Config) -> anyhow::Result<()> {
    let url = config
        .database
        .url
        .clone()
        .context("no database configured: set database.url, ORRERY_DATABASE_URL or --database-url")?;
    let store = connect(&config, &url).await?;
    ensure_migrated(&store).await?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let tasks = start_engine(&config, &store, &shutdown, 0);
    for t in tasks {
        let _ = t.await;
    }
    store.close().await;
    Ok(())
}

/// `orrery migrate`: brings every configured database to this binary's schema.
pub async fn run_migrate(config: Config) -> anyhow::Result<()> {
    let url = config
        .database
        .url
        .clone()
        .context("no database configured: set database.url, ORRERY_DATABASE_URL or --database-url")?;
    let store = connect(&config, &url).await?;
    store.migrate().await?;
    for r in store.readiness().await {
        println!("{}: {}", r.database, r.detail);
    }
    store.close().await;
    Ok(())
}

/// Memory in bytes from "8Gi", "512Mi", "1G" or a number of bytes.
pub fn parse_memory(s: &str) -> anyhow::Result<u64> {
    model::units::parse_memory(s).map_err(|e| anyhow::anyhow!("--memory: {e}"))
}

fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The worker's configuration from its flags.
pub fn worker_config(args: &crate::cli::WorkerArgs) -> anyhow::Result<worker::session::WorkerConfig> {
    let mut labels = std::collections::BTreeMap::new();
    for kv in &args.labels {
        let (k, v) = kv.split_once('=').with_context(|| format!("--label {kv:?} must look like key=value"))?;
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let plugin_dir = match &args.plugin_dir {
        Some(dir) => {
            let dir = std::fs::canonicalize(dir)
                .with_context(|| format!("--plugin-dir {}: no such directory", dir.display()))?;
            let plugins = worker::plugin::installed(&dir)
                .with_context(|| format!("--plugin-dir {}: cannot list it", dir.display()))?;
            for name in &plugins {
                labels.insert(model::workflow::plugin_label(name), "true".to_owned());
            }
            tracing::info!(dir = %dir.display(), plugins = ?plugins, "exec plugins");
            Some(dir)
        }
        None => None,
    };
    anyhow::ensure!(!args.pool.is_empty(), "--pool must not be empty");
    anyhow::ensure!(args.slots > 0, "--slots must be at least 1");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into());
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating the work directory {}", args.work_dir.display()))?;
    let worker_id = format!("{host}-{}-{}", std::process::id(), &uuid::Uuid::now_v7().simple().to_string()[24..]);
    let ca_cert = match &args.ca_cert {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("--ca-cert {}", path.display()))?;
            anyhow::ensure!(
                String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----"),
                "--ca-cert {}: not a PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                path.display()
            );
            Some(pem)
        }
        None => None,
    };
    anyhow::ensure!(
        args.server.starts_with("http://") || args.server.starts_with("https://"),
        "--server {:?} must start with http:// or https://",
        args.server
    );
    let work_root = std::fs::canonicalize(&args.work_dir)?;
    let run_as = match &args.run_as {
        Some(name) => {
            let user = worker::exec::RunAs::resolve(name).map_err(anyhow::Error::msg)?;
            user.check_reaches(&work_root).map_err(anyhow::Error::msg)?;
            Some(user)
        }
        None => None,
    };
    Ok(worker::session::WorkerConfig {
        server: args.server.trim_end_matches('/').to_owned(),
        ca_cert,
        token: args.token.clone(),
        worker_id: worker_id.clone(),
        pool: args.pool.clone(),
        region: args.region.clone(),
        labels,
        capacity: worker::proto::Capacity {
            slots: args.slots,
            cpu_millis: (args.cpu.unwrap_or(cpus) * 1000.0) as u32,
            memory_bytes: match &args.memory {
                Some(m) => parse_memory(m)?,
                None => machine_memory(),
            },
            gpus: worker::session::detect_gpus(),
        },
        exec: worker::exec::ExecConfig {
            work_root,
            log_cap: args.log_cap,
            kill_grace: Duration::from_secs(args.kill_grace_secs),
            cgroups: if args.no_cgroups {
                worker::cgroup::Hierarchy::None { why: "turned off with --no-cgroups".into() }
            } else {
                worker::cgroup::detect()
            },
            worker_id: worker_id.clone(),
            plugin_dir,
            run_as,
            warden: None,
            cleanup: tokio_util::task::TaskTracker::new(),
            launchers: None,
        },
        version: VERSION.to_owned(),
        hostname: host,
        on_shutdown: worker::session::OnShutdown::Drain,
    })
}

/// `orrery worker`: runs until SIGTERM/Ctrl-C, then drains (finishes running attempts).
pub async fn run_worker(cfg: worker::session::WorkerConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    tracing::info!(worker.id = %cfg.worker_id, pool = %cfg.pool, server = %cfg.server, isolation = %cfg.exec.cgroups.describe(), "worker starting");
    if cfg.exec.cgroups.usable() && !worker::cgroup::moves_are_favoured() {
        tracing::info!(
            "no cgroup hierarchy is mounted with favordynmods: moving a task into its cgroup may now and then wait \
             10-20 ms for the kernel (an RCU grace period); on hosts that run many short tasks, mount cgroup2 with \
             `-o favordynmods` (Linux >= 6.1; see README, Workers)"
        );
    }
    worker::session::run(cfg, shutdown).await;
    Ok(())
}
