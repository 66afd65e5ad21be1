//! Exactly once under crashes: `orrery scheduler` processes killed with SIGKILL in the middle of
//! a fire (its transaction open) and right after a fire's commit. Every tick must end up with
//! exactly one run: none lost, none doubled.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_orrery");

/// A scheduler process, killed when dropped: a failing assertion leaves none running.
struct Scheduler(Child);

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scheduler(config: &PathBuf) -> Scheduler {
    Scheduler(
        Command::new(BIN)
            .args(["scheduler", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn kill9(Scheduler(c): &mut Scheduler) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    c.wait().unwrap();
}

async fn ticks(conn: &mut PgConnection) -> BTreeMap<DateTime<Utc>, i64> {
    let rows: Vec<(DateTime<Utc>, i64)> =
        sqlx::query_as("SELECT logical_time, count(*) FROM runs WHERE trigger = 'schedule' GROUP BY logical_time")
            .fetch_all(conn)
            .await
            .unwrap();
    rows.into_iter().collect()
}

#[tokio::test]
async fn killing_schedulers_mid_fire_and_after_commit_loses_and_doubles_nothing() {
    let app = common::spawn_app().await;
    let p = app
        .post("/api/v1/tenants/acme/projects", &app.admin_token, serde_json::json!({ "slug": "data", "name": "Data" }))
        .await;
    assert_eq!(p.status, reqwest::StatusCode::CREATED);
    // Every second, catching up every missed tick.
    let doc = "name: tick\nschedule:\n  cron: \"* * * * * *\"\n  catchup: all\n  max_catchup: 1000\ntasks:\n  - {id: a, kind: noop}\n";
    let a = app
        .post(
            "/api/v1/tenants/acme/workflows",
            &app.admin_token,
            serde_json::json!({ "project": "data", "document": doc }),
        )
        .await;
    assert_eq!(a.status, reqwest::StatusCode::CREATED, "{}", a.body);

    let dir = std::env::temp_dir().join(format!("orrery-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("orrery.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\nshards = [\"{}\"]\n[scheduler]\nlease_ttl_secs = 2\n",
            app.urls.catalog, app.urls.extra_shards[0]
        ),
    )
    .unwrap();
    let tenant = app.store.tenant_by_slug("acme").await.unwrap();
    let shard_url = if tenant.shard_id == 1 { app.urls.catalog.clone() } else { app.urls.extra_shards[0].clone() };
    let mut db = PgConnection::connect(&shard_url).await.unwrap();

    let mut s = scheduler(&config);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!ticks(&mut db).await.is_empty(), "the scheduler fires");

    // 1. Mid-fire: block run inserts so the next fire waits inside its transaction, then kill.
    for _ in 0..3 {
        let mut blocker = PgConnection::connect(&shard_url).await.unwrap();
        let mut tx = blocker.begin().await.unwrap();
        sqlx::query("LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
        // The restarted scheduler fires once the dead one's lease (2 s) is out; that fire then
        // waits inside its transaction.
        let mut stuck = 0i64;
        for _ in 0..100 {
            stuck = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'orrery'",
            )
            .fetch_one(&mut db)
            .await
            .unwrap();
            if stuck >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(stuck >= 1, "a fire is waiting inside its transaction");
        kill9(&mut s);
        tx.rollback().await.unwrap();
        s = scheduler(&config);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 2. Right after a commit: kill as soon as a new tick's run appears.
    for _ in 0..3 {
        let before = ticks(&mut db).await.len();
        while ticks(&mut db).await.len() == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kill9(&mut s);
        s = scheduler(&config);
    }

    // Let the last one catch up on whatever was missed while schedulers were dead.
    tokio::time::sleep(Duration::from_secs(5)).await;
    kill9(&mut s);
    let seen = ticks(&mut db).await;
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "ticks with more than one run: {doubled:?}");
    let first = *seen.keys().next().unwrap();
    let last = *seen.keys().last().unwrap();
    let expected = (last - first).num_seconds() + 1;
    assert_eq!(seen.len() as i64, expected, "every second from {first} to {last} has its run");
    assert!(expected >= 15, "the test covered {expected} ticks");
    let _ = std::fs::remove_dir_all(&dir);
}
