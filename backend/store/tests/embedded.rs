//! The private PostgreSQL cluster, with real initdb and postgres processes.

use std::path::PathBuf;

use sqlx::{Connection, PgConnection};
use store::embedded::{Cluster, ClusterSpec};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("orrery-embedded-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn spec(dir: &std::path::Path, detach: bool) -> ClusterSpec {
    ClusterSpec {
        dir: dir.to_owned(),
        bin_dir: None,
        settings: vec![("fsync".into(), "off".into())],
        die_with_parent: false,
        detach,
    }
}

async fn answers(url: &str) -> bool {
    match PgConnection::connect(url).await {
        Ok(mut c) => sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut c).await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_cluster_is_created_once_and_its_data_kept_across_restarts() {
    let dir = scratch("restart");
    let mut first = Cluster::start(&spec(&dir, false)).unwrap();
    let url = first.url("postgres");
    let mut c = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)").execute(&mut c).await.unwrap();
    c.close().await.unwrap();
    first.stop();
    assert!(!answers(&url).await, "stopped");

    let second = Cluster::start(&spec(&dir, false)).unwrap();
    let mut c = PgConnection::connect(&second.url("postgres")).await.unwrap();
    let v: i32 = sqlx::query_scalar("SELECT v FROM kept").fetch_one(&mut c).await.unwrap();
    assert_eq!(v, 42);
    drop(c);
    drop(second);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_postgres_orphaned_by_a_killed_owner_is_stopped_and_replaced() {
    let dir = scratch("orphan");
    // A detached cluster keeps running after its handle is gone: the orphan of a killed process.
    let orphan = Cluster::start(&spec(&dir, true)).unwrap();
    let orphan_url = orphan.url("postgres");
    drop(orphan);
    assert!(answers(&orphan_url).await, "the orphan is still serving");

    let fresh = Cluster::start(&spec(&dir, false)).unwrap();
    assert!(answers(&fresh.url("postgres")).await);
    assert_ne!(fresh.url("postgres"), orphan_url, "a new port was chosen");
    assert!(!answers(&orphan_url).await, "the orphan was stopped");
    drop(fresh);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_password_file_is_private() {
    let dir = scratch("password");
    let cluster = Cluster::start(&spec(&dir, false)).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("postgres.password")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(!dir.join(".initdb-password").exists(), "initdb's password file is removed");
    drop(cluster);
    std::fs::remove_dir_all(&dir).unwrap();
}
