//! `orrery up`: everything in one process on a private database, for a laptop or a single box.
//!
//! Order matters for "nothing touched on bad input": take the data directory's lock, bind the
//! port, and only then start (or create) the database cluster.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use model::{Email, Role, Slug};
use nix::fcntl::{Flock, FlockArg};
use service::Services;
use sqlx::{Connection, PgConnection};
use store::embedded::{Cluster, ClusterSpec};
use store::{NewTenant, NewUser};
use tokio_util::sync::CancellationToken;

use crate::{Config, roles};

const DATABASE: &str = "orrery";

/// Runs `orrery up` to completion. Called on the main thread, outside any runtime: the private
/// PostgreSQL is started from this thread so that it dies with the process, even on kill -9.
pub fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let data_dir = fs::canonicalize(&config.data_dir)?;
    let _lock = lock_data_dir(&data_dir)?;
    let listener = roles::bind(config.listen)?;

    let cluster = match &config.database.url {
        Some(_) => None,
        None => Some(Cluster::start(&ClusterSpec {
            dir: data_dir.clone(),
            bin_dir: config.database.embedded_bin_dir.clone(),
            settings: vec![],
            die_with_parent: true,
            detach: false,
        })?),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(serve(config.clone(), &data_dir, cluster.as_ref(), listener));
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    drop(cluster); // fast shutdown of the private PostgreSQL, after every connection closed
    result
}

/// Holds `<data-dir>/orrery.lock` for the life of the process; a second `orrery up` on the same
/// directory is refused instead of sharing (and corrupting) its database.
fn lock_data_dir(dir: &Path) -> anyhow::Result<Flock<fs::File>> {
    let path = dir.join("orrery.lock");
    let file = fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(file, _)| {
        let holder = fs::read_to_string(&path).unwrap_or_default();
        drop(file);
        anyhow::anyhow!(
            "another orrery (pid {}) is using {}: stop it first, or choose another --data-dir",
            holder.trim().if_empty("unknown"),
            dir.display()
        )
    })?;
    lock.set_len(0)?;
    write!(lock, "{}", std::process::id())?;
    Ok(lock)
}

trait IfEmpty {
    fn if_empty<'a>(&'a self, other: &'a str) -> &'a str;
}

impl IfEmpty for str {
    fn if_empty<'a>(&'a self, other: &'a str) -> &'a str {
        if self.is_empty() { other } else { self }
    }
}

async fn serve(
    config: Arc<Config>,
    data_dir: &Path,
    cluster: Option<&Cluster>,
    listener: std::net::TcpListener,
) -> anyhow::Result<()> {
    let url = match (cluster, &config.database.url) {
        (Some(c), _) => {
            ensure_database(c).await?;
            c.url(DATABASE)
        }
        (None, Some(url)) => url.clone(),
        (None, None) => unreachable!("a cluster is started when no URL is configured"),
    };
    let store = roles::connect(&config, &url).await?;
    store.migrate().await?;
    let (state, sessions) = roles::state(config.clone(), store.clone()).await?;
    let admin = bootstrap(&state.services, &config).await?;
    let token_path = data_dir.join("admin.token");
    ensure_admin_token(&state.services, admin.user, &token_path).await?;

    let shutdown = CancellationToken::new();
    roles::cancel_on_signal(shutdown.clone());
    let mut engine = roles::start_engine(&config, &store, &shutdown, 0);
    if config.workers.local_slots > 0 {
        // One real worker in pool `default`, connected over gRPC like any other.
        let token = state.services.issue_worker_token(admin.user, "orrery up (local worker)").await?;
        let args = crate::cli::WorkerArgs {
            // Over HTTPS when the server serves it, trusting its certificate (it may be self-signed).
            server: if config.tls.enabled() { config.public_url() } else { format!("http://{}", config.listen) },
            ca_cert: config.tls.cert_file.clone(),
            token,
            pool: "default".into(),
            region: String::new(),
            labels: vec![],
            slots: config.workers.local_slots,
            cpu: None,
            memory: None,
            work_dir: data_dir.join("work"),
            kill_grace_secs: 10,
            log_cap: 64 * 1024 * 1024,
            no_cgroups: false,
            // `<data-dir>/plugins`, when someone made it.
            plugin_dir: Some(data_dir.join("plugins")).filter(|d| d.is_dir()),
            run_as: None,
        };
        let mut cfg = roles::worker_config(&args)?;
        cfg.on_shutdown = worker::session::OnShutdown::Stop;
        engine.push(tokio::spawn(worker::session::run(cfg, shutdown.clone())));
    }
    print_welcome(&config, &admin, &token_path);
    roles::serve(state, sessions, listener, shutdown.clone()).await?;
    shutdown.cancel();
    for t in engine {
        let _ = t.await;
    }
    store.close().await;
    Ok(())
}

/// The private cluster's `orrery` database, created on first start.
async fn ensure_database(cluster: &Cluster) -> anyhow::Result<()> {
    let mut conn =
        PgConnection::connect(&cluster.url("postgres")).await.context("connecting to the private PostgreSQL")?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(DATABASE)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {DATABASE}")).execute(&mut conn).await?;
    }
    Ok(())
}

pub struct Admin {
    pub user: model::UserId,
    pub email: String,
    /// Set when this start created the admin with a generated password: printed once.
    pub new_password: Option<String>,
}

/// On an empty database: the first admin (a platform admin) and the first tenant, owned by them.
/// On later starts: nothing, except that a configured admin password is applied.
async fn bootstrap(services: &Services, config: &Config) -> anyhow::Result<Admin> {
    let email = Email::parse(&config.admin.email)?;
    if let Some(user) = services.store.user_by_email(&email).await? {
        if let Some(p) = &config.admin.password
            && services.login(email.as_str(), p, None).await.is_err()
        {
            services.store.set_password(user.user_id(), &service::auth::hash_password(p).await?, None).await?;
            tracing::info!("the admin password was set from the configuration");
        }
        return Ok(Admin { user: user.user_id(), email: user.email, new_password: None });
    }
    let (password, generated) = match &config.admin.password {
        Some(p) => (p.clone(), false),
        None => (service::auth::generate_password(), true),
    };
    let hash = service::auth::hash_password(&password).await?;
    let user = services
        .store
        .create_user(
            NewUser { email: &email, display_name: "Administrator", password_hash: Some(&hash), platform_admin: true },
            None,
        )
        .await?;
    let slug = Slug::parse_named(&config.admin.tenant, "admin.tenant")?;
    let tenant = match services.store.tenant_by_slug(slug.as_str()).await {
        Ok(t) => {
            services.store.grant_role(t.tenant_id(), user.user_id(), Role::Owner, None).await?;
            t
        }
        Err(_) => {
            services
                .store
                .create_tenant(NewTenant { slug: &slug, name: "Default", owner: user.user_id() }, None)
                .await?
        }
    };
    services.authz.reload(&services.store).await?;
    tracing::info!(user.id = %user.id, tenant.id = %tenant.id, "created the first admin and tenant");
    Ok(Admin { user: user.user_id(), email: user.email, new_password: generated.then_some(password) })
}

/// `<data-dir>/admin.token` (mode 0600) holds a working admin API token for the CLI on this machine.
async fn ensure_admin_token(services: &Services, admin: model::UserId, path: &Path) -> anyhow::Result<()> {
    if let Ok(existing) = fs::read_to_string(path)
        && services.token_caller(existing.trim()).await.is_ok_and(|c| c.user_id == admin)
    {
        return Ok(());
    }
    let token = services.issue_token_for(admin, "orrery up (local CLI)").await?;
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

fn print_welcome(config: &Config, admin: &Admin, token_path: &Path) {
    let url = config.public_url();
    println!();
    println!("  Orrery is running at {url}");
    match &admin.new_password {
        Some(p) => println!(
            "  Sign in as {} with password {p}\n  (shown this once; set ORRERY_ADMIN_PASSWORD to choose it)",
            admin.email
        ),
        None => {
            println!("  Sign in as {} (password as printed on the first start, or ORRERY_ADMIN_PASSWORD)", admin.email)
        }
    }
    println!("  The CLI on this machine uses the admin token in {}", token_path.display());
    println!("  Health: {url}/readyz   Metrics: {url}/metrics   API docs: {url}/api/docs");
    println!("  Press Ctrl-C to stop.");
    println!();
}
