#![doc = include_str!("../README.md")]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor, PgConnection};
use store::embedded::{Cluster, ClusterSpec};
use store::{DatabaseUrls, Store, StoreOptions};

/// A test's own databases: a catalog (shard 1) and shard 2, or the catalog alone.
pub struct TestDb {
    pub store: Store,
    pub urls: DatabaseUrls,
}

struct Shared {
    admin_url: String,
    template: String,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn cluster_dir() -> PathBuf {
    std::env::var_os("ORRERY_TEST_PG_DIR").map_or_else(|| workspace_root().join("target/testkit"), PathBuf::from)
}

/// Starts or attaches to the shared cluster, and makes sure the template for the current
/// migrations exists. Runs once per test process.
fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        // Blocking work (process spawn, file lock) on a plain thread, away from any runtime.
        std::thread::spawn(|| {
            let dir = cluster_dir();
            fs::create_dir_all(&dir).expect("create the test cluster directory");
            let lock_file = fs::File::create(dir.join("lock")).expect("create the test cluster lock");
            let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).expect("lock the test cluster");
            let cluster = match Cluster::attach(&dir) {
                Some(c) => c,
                None => Cluster::start(&ClusterSpec {
                    dir: dir.clone(),
                    bin_dir: None,
                    settings: [
                        ("fsync", "off"),
                        ("synchronous_commit", "off"),
                        ("full_page_writes", "off"),
                        ("max_connections", "500"),
                        ("shared_buffers", "128MB"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                    die_with_parent: false,
                    detach: true,
                })
                .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL cluster: {e}")),
            };
            let admin_url = cluster.url("postgres");
            let template = format!("tmpl_{}", migrations_hash());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(ensure_template(&cluster, &template));
            // A detached cluster is not stopped when `cluster` drops.
            Shared { admin_url, template }
        })
        .join()
        .expect("test cluster setup panicked")
    })
}

fn migrations_hash() -> String {
    let dir = workspace_root().join("migrations");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir).expect("read migrations/").flatten().map(|e| e.path()).collect();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.file_name().unwrap().as_encoded_bytes());
        h.update(fs::read(&f).expect("read a migration"));
    }
    h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

async fn ensure_template(cluster: &Cluster, template: &str) {
    let mut admin = PgConnection::connect(&cluster.url("postgres")).await.expect("connect to the test cluster");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(template)
        .fetch_one(&mut admin)
        .await
        .expect("query pg_database");
    if exists {
        return;
    }
    let building = format!("{template}_building");
    admin
        .execute(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)").as_str())
        .await
        .expect("drop a half-built template");
    admin.execute(format!("CREATE DATABASE {building}").as_str()).await.expect("create the template");
    let store = Store::connect(
        &DatabaseUrls { catalog: cluster.url(&building), extra_shards: vec![] },
        &StoreOptions::default(),
    )
    .await
    .expect("connect to the template");
    store.migrate().await.unwrap_or_else(|e| panic!("migrations failed: {e}"));
    store.close().await;
    admin
        .execute(format!("ALTER DATABASE {building} RENAME TO {template}").as_str())
        .await
        .expect("publish the template");
}

impl TestDb {
    /// A fresh, migrated catalog + shard 2, connected.
    pub async fn new() -> TestDb {
        Self::with_shards(2).await
    }

    /// A fresh, migrated catalog that is also the only shard, connected (as `orrery up` runs).
    /// Claims take another path with one shard (`store::queue`): dispatch tests run on both.
    pub async fn one_shard() -> TestDb {
        Self::with_shards(1).await
    }

    async fn with_shards(shards: usize) -> TestDb {
        let urls = Self::urls_with_shards(shards).await;
        let store = Store::connect(&urls, &StoreOptions { max_connections: 8, ..StoreOptions::default() })
            .await
            .expect("connect to the test databases");
        store.migrate().await.expect("register the shards");
        TestDb { store, urls }
    }

    /// Fresh databases without connecting (for tests that start a server on them).
    pub async fn new_urls() -> DatabaseUrls {
        Self::urls_with_shards(2).await
    }

    async fn urls_with_shards(shards: usize) -> DatabaseUrls {
        let shared = shared();
        let mut admin = PgConnection::connect(&shared.admin_url).await.expect("connect to the test cluster");
        drop_old_databases(&mut admin).await;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
        let tag: u64 = rand::random();
        let mut names = Vec::new();
        for part in ["cat", "s2"].into_iter().take(shards.clamp(1, 2)) {
            let name = format!("t_{now}_{tag:016x}_{part}");
            create_from_template(&mut admin, &name, &shared.template).await;
            names.push(name);
        }
        let url = |db: &str| {
            shared.admin_url.rsplit_once('/').map(|(base, _)| format!("{base}/{db}")).expect("url has a database")
        };
        DatabaseUrls { catalog: url(&names[0]), extra_shards: names[1..].iter().map(|n| url(n)).collect() }
    }
}

/// An empty database on the shared test cluster (the target of `sql` tasks in tests); its URL
/// carries the cluster's password.
pub async fn scratch_postgres() -> String {
    let shared = shared();
    let mut admin = PgConnection::connect(&shared.admin_url).await.expect("connect to the test cluster");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let tag: u64 = rand::random();
    let name = format!("t_{now}_{tag:016x}_scratch");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create a scratch database");
    let (base, _) = shared.admin_url.rsplit_once('/').expect("url has a database");
    format!("{base}/{name}")
}

pub mod bench;
mod mariadb;
pub use mariadb::scratch_mysql;

async fn create_from_template(admin: &mut PgConnection, name: &str, template: &str) {
    // Concurrent copies of one template are allowed, but a copy fails while a session is
    // connected to the template; retry briefly.
    for attempt in 0.. {
        match admin.execute(format!("CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY").as_str()).await {
            Ok(_) => return,
            Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("create test database {name}: {e}"),
        }
    }
}

async fn drop_old_databases(admin: &mut PgConnection) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'")
        .fetch_all(&mut *admin)
        .await
        .unwrap_or_default();
    for name in names {
        let created = name.split('_').nth(1).and_then(|s| s.parse::<u64>().ok()).unwrap_or(now);
        if now.saturating_sub(created) > 3600 {
            let _ = admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
        }
    }
}
