//! The store's connection pools against a real PostgreSQL.

use std::time::Duration;

use model::Email;
use sqlx::Connection;
use testkit::TestDb;

/// Kills every connection the store holds to the test database, from outside: what a
/// PostgreSQL restart or a failover does to a running process. Returns how many.
async fn kill_store_connections(url: &str) -> i64 {
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
           WHERE datname = current_database() AND application_name = 'orrery' AND pid <> pg_backend_pid()) k",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

/// `n` lookups at once (so the pool holds several connections), each answered.
async fn at_once(db: &TestDb, n: usize) {
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let store = db.store.clone();
        calls.spawn(async move { store.user_by_email(&Email::parse("nobody@example.com").unwrap()).await });
    }
    while let Some(r) = calls.join_next().await {
        assert!(r.unwrap().unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_died_while_idle_is_replaced_before_it_is_used() {
    let db = TestDb::one_shard().await;
    let email = Email::parse("nobody@example.com").unwrap();
    // Several connections in the pool, each used and then left idle.
    at_once(&db, 6).await;
    assert!(kill_store_connections(&db.urls.catalog).await >= 1, "the store held connections");
    // Idle past the check window: each dead connection is found before it is handed out and
    // replaced, so no call sees the failure.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    for _ in 0..12 {
        assert!(db.store.user_by_email(&email).await.unwrap().is_none());
    }
    at_once(&db, 6).await;
}
