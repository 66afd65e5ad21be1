//! Schedules fired by real schedulers over real PostgreSQL, with time driven by a manual clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{World, clock, t0};
use engine::scheduler::{Scheduler, SchedulerConfig};
use model::state::RunState;
use model::{TenantId, WorkflowId};
use store::{Created, RunFilter, RunRecord, StoreError};
use tokio_util::sync::CancellationToken;

fn every_minute(catchup: &str, overlap: &str) -> String {
    format!(
        "name: tick\nschedule:\n  cron: \"* * * * *\"\n  catchup: {catchup}\n  overlap: {overlap}\ntasks:\n  - {{id: a, kind: noop}}\n"
    )
}

fn config(id: &str) -> SchedulerConfig {
    SchedulerConfig {
        id: id.into(),
        hostname: "test".into(),
        lease_ttl: Duration::from_secs(3),
        tick: Duration::from_millis(20),
        parallel_fires: 4,
    }
}

fn start(w: &World, id: &str, c: Arc<dyn engine::Clock>) -> CancellationToken {
    start_handle(w, id, c).0
}

fn start_handle(w: &World, id: &str, c: Arc<dyn engine::Clock>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let h = tokio::spawn(Scheduler::new(w.store.clone(), c, config(id)).run(stop.clone()));
    (stop, h)
}

async fn runs(w: &World, t: TenantId, wf: WorkflowId) -> Vec<RunRecord> {
    let mut r = w.store.runs(t, &RunFilter { workflow: Some(wf), limit: 500, ..RunFilter::default() }).await.unwrap();
    r.sort_by_key(|r| r.logical_time);
    r
}

async fn wait_runs(w: &World, t: TenantId, wf: WorkflowId, n: usize) -> Vec<RunRecord> {
    for _ in 0..200 {
        let r = runs(w, t, wf).await;
        if r.len() >= n {
            // Give a doubled fire (if there were one) the chance to show up.
            tokio::time::sleep(Duration::from_millis(150)).await;
            return runs(w, t, wf).await;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("expected {n} runs, have {:?}", runs(w, t, wf).await.iter().map(|r| r.logical_time).collect::<Vec<_>>());
}

fn minute(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::minutes(n)
}

#[tokio::test]
async fn each_tick_fires_once_on_time() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, &every_minute("latest", "allow"), t0()).await;
    let (c, dc) = clock(t0());
    let stop = start(&w, "s1", dc);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(runs(&w, t, wf).await.is_empty(), "nothing before the first tick");
    c.set(minute(1));
    let r = wait_runs(&w, t, wf, 1).await;
    assert_eq!(r.iter().map(|r| r.logical_time).collect::<Vec<_>>(), [minute(1)]);
    assert_eq!(r[0].trigger, "schedule");
    assert_eq!(r[0].run_state(), RunState::Running, "started, its root task queued");
    c.set(minute(2) + chrono::Duration::seconds(1));
    let r = wait_runs(&w, t, wf, 2).await;
    assert_eq!(r.iter().map(|r| r.logical_time).collect::<Vec<_>>(), [minute(1), minute(2)]);
    stop.cancel();
}

#[tokio::test]
async fn two_schedulers_never_double_a_fire() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, &every_minute("all", "allow"), t0()).await;
    let (c, dc) = clock(t0());
    let a = start(&w, "a", dc.clone());
    let b = start(&w, "b", dc);
    for m in 1..=5 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        c.set(minute(m));
    }
    let r = wait_runs(&w, t, wf, 5).await;
    assert_eq!(r.iter().map(|r| r.logical_time).collect::<Vec<_>>(), (1..=5).map(minute).collect::<Vec<_>>());
    a.cancel();
    b.cancel();
}

#[tokio::test]
async fn a_replayed_or_stale_fire_creates_nothing() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, &every_minute("latest", "allow"), t0()).await;
    // Two holders race on one tick; the unique run key and the schedule row lock let one win.
    let (x, y) = tokio::join!(
        w.store.fire_schedule(t, wf, minute(1), 7, minute(1)),
        w.store.fire_schedule(t, wf, minute(1), 7, minute(1)),
    );
    let made = [x.unwrap(), y.unwrap()]
        .iter()
        .map(|f| f.runs.iter().filter(|r| matches!(r, Created::New(..))).count())
        .sum::<usize>();
    assert_eq!(made, 1);
    // A holder whose lease was taken over (a newer token has written) is refused.
    let stale = w.store.fire_schedule(t, wf, minute(2), 6, minute(2)).await;
    assert!(matches!(stale, Err(StoreError::Stale)), "{stale:?}");
    assert_eq!(runs(&w, t, wf).await.len(), 1);
}

#[tokio::test]
async fn catch_up_policies_after_downtime() {
    let hour = |n: i64| t0() + chrono::Duration::hours(n);
    for (policy, want) in [("all", vec![1, 2, 3, 4, 5]), ("latest", vec![5]), ("skip", vec![])] {
        let w = World::new().await;
        let (t, p) = w.tenant("acme").await;
        let doc = format!(
            "name: hourly\nschedule:\n  cron: \"0 * * * *\"\n  catchup: {policy}\ntasks:\n  - {{id: a, kind: noop}}\n"
        );
        let wf = w.workflow(t, p, &doc, t0()).await;
        // The scheduler comes back ten minutes after the fifth missed tick.
        let (c, dc) = clock(hour(5) + chrono::Duration::minutes(10));
        let stop = start(&w, "late", dc);
        let got = if want.is_empty() {
            tokio::time::sleep(Duration::from_millis(400)).await;
            runs(&w, t, wf).await
        } else {
            wait_runs(&w, t, wf, want.len()).await
        };
        assert_eq!(
            got.iter().map(|r| r.logical_time).collect::<Vec<_>>(),
            want.iter().map(|h| hour(*h)).collect::<Vec<_>>(),
            "catchup: {policy}"
        );
        // Then it goes on with the next tick, on time.
        c.set(hour(6));
        let after = wait_runs(&w, t, wf, want.len() + 1).await;
        assert_eq!(after.last().unwrap().logical_time, hour(6), "catchup: {policy}");
        stop.cancel();
    }
}

#[tokio::test]
async fn a_dead_schedulers_shards_are_taken_over_within_the_lease_ttl() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, &every_minute("all", "allow"), t0()).await;
    let (c, dc) = clock(t0());
    let (_first, handle) = start_handle(&w, "first", dc.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // It dies without releasing anything, like kill -9: its task just stops.
    handle.abort();
    let second = start(&w, "second", dc);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(runs(&w, t, wf).await.is_empty());
    // Before the dead one's lease expires nobody fires; after the TTL the survivor does.
    c.set(minute(1));
    let r = wait_runs(&w, t, wf, 1).await;
    assert_eq!(r[0].logical_time, minute(1));
    second.cancel();
}

#[tokio::test]
async fn overlap_policies_skip_queue_or_cancel_the_active_run() {
    for (policy, states) in [
        ("skip", vec!["running"]),
        ("queue", vec!["running", "queued"]),
        ("cancel_previous", vec!["cancelled", "running"]),
    ] {
        let w = World::new().await;
        let (t, p) = w.tenant("acme").await;
        let wf = w.workflow(t, p, &every_minute("all", policy), t0()).await;
        // Nobody executes tasks, so the first run stays active.
        w.store.fire_schedule(t, wf, minute(1), 1, minute(1)).await.unwrap();
        let second = w.store.fire_schedule(t, wf, minute(2), 1, minute(2)).await.unwrap();
        let got: Vec<String> = runs(&w, t, wf).await.into_iter().map(|r| r.state).collect();
        assert_eq!(got, states, "overlap: {policy}");
        if policy == "skip" {
            assert_eq!(second.runs, vec![Created::Skipped]);
        }
        assert_eq!(second.next, Some(minute(3)), "the schedule moves on either way");
    }
}

/// With one run allowed at a time, `cancel_previous` cancels the running run and starts the new
/// one, fire after fire (the new run was judged against the runs before the cancel, so it
/// queued, and every later fire cancelled a queued run and queued again).
#[tokio::test]
async fn cancel_previous_with_one_active_run_starts_each_new_run() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let yaml = every_minute("all", "cancel_previous").replace("tasks:", "max_active_runs: 1\ntasks:");
    let wf = w.workflow(t, p, &yaml, t0()).await;
    for m in 1..=3 {
        w.store.fire_schedule(t, wf, minute(m), 1, minute(m)).await.unwrap();
    }
    let got: Vec<String> = runs(&w, t, wf).await.into_iter().map(|r| r.state).collect();
    assert_eq!(got, ["cancelled", "cancelled", "running"]);
}

/// The overlap policy is about the schedule's own earlier run: a manual run (or a backfill's)
/// still going neither skips a fire nor is cancelled by one, and `queue` holds a scheduled run
/// only behind another scheduled run, also when runs end.
#[tokio::test]
async fn overlap_policies_look_only_at_the_schedules_own_runs() {
    for policy in ["skip", "cancel_previous", "queue"] {
        let w = World::new().await;
        let (t, p) = w.tenant("acme").await;
        let wf = w.workflow(t, p, &every_minute("all", policy), t0()).await;
        // Nobody executes tasks: the manual run stays running.
        let manual = w.trigger(t, wf, minute(0)).await;
        let fired = w.store.fire_schedule(t, wf, minute(1), 1, minute(1)).await.unwrap();
        assert!(matches!(fired.runs[..], [Created::New(_, RunState::Running)]), "{policy}: {:?}", fired.runs);
        assert_eq!(w.run_state(t, manual).await, RunState::Running, "{policy}");
    }
    // `queue`: a second fire waits for the first, and a third for the second, although
    // max_active_runs would allow more; a manual run ending frees a slot, which the queued
    // scheduled runs may not take while the first runs; the first ending starts the second.
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, &every_minute("all", "queue"), t0()).await;
    let manual = w.trigger(t, wf, minute(0)).await;
    for m in 1..=3 {
        w.store.fire_schedule(t, wf, minute(m), 1, minute(m)).await.unwrap();
    }
    let states = |r: Vec<RunRecord>| r.into_iter().map(|r| r.state).collect::<Vec<String>>();
    assert_eq!(states(runs(&w, t, wf).await), ["running", "running", "queued", "queued"]);
    // A manual run queued behind the held scheduled ones (runs queue while any run waits) takes
    // the slot the first manual run frees: the held ones do not block it.
    let later = w.trigger(t, wf, minute(4)).await;
    assert_eq!(w.run_state(t, later).await, RunState::Queued);
    let first = model::RunId(runs(&w, t, wf).await[1].id);
    w.store.run_event(t, manual, &model::engine::Event::Cancel, minute(4)).await.unwrap();
    assert_eq!(states(runs(&w, t, wf).await), ["cancelled", "running", "queued", "queued", "running"]);
    w.store.run_event(t, first, &model::engine::Event::Cancel, minute(4)).await.unwrap();
    assert_eq!(states(runs(&w, t, wf).await), ["cancelled", "cancelled", "running", "queued", "running"]);
}

#[tokio::test]
async fn a_paused_schedule_does_not_fire_and_resumes_at_the_next_tick() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, &every_minute("skip", "allow"), t0()).await;
    w.store.set_schedule_paused(t, wf, true, None).await.unwrap();
    let (c, dc) = clock(t0());
    let stop = start(&w, "s", dc);
    c.set(minute(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(runs(&w, t, wf).await.is_empty());
    c.set(minute(3) + chrono::Duration::seconds(30));
    w.store.set_schedule_paused(t, wf, false, None).await.unwrap();
    c.set(minute(4));
    let r = wait_runs(&w, t, wf, 1).await;
    assert_eq!(
        r.iter().map(|r| r.logical_time).collect::<Vec<_>>(),
        [minute(4)],
        "missed ticks skipped, the next one fires"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_backfill_creates_its_runs_a_few_at_a_time_below_fresh_work() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let wf =
        w.workflow(t, p, "name: daily\nschedule: {cron: \"0 2 * * *\"}\ntasks:\n  - {id: a, kind: noop}\n", t0()).await;
    let start_at: DateTime<Utc> = "2026-04-01T00:00:00Z".parse().unwrap();
    let end_at: DateTime<Utc> = "2026-04-10T23:59:59Z".parse().unwrap();
    let bf = w
        .store
        .create_backfill(
            t,
            store::NewBackfill {
                workflow: wf,
                start: start_at,
                end: end_at,
                parallelism: 2,
                newest_first: false,
                params: Default::default(),
                created_by: None,
            },
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(bf.pending.len(), 10);
    let shard = w.store.shard_of(t).await.unwrap();
    assert_eq!(w.store.step_backfills(shard, t0()).await.unwrap(), 2);
    assert_eq!(w.store.step_backfills(shard, t0()).await.unwrap(), 0, "parallelism 2 holds");
    let r = runs(&w, t, wf).await;
    assert_eq!(
        r.iter().map(|r| r.logical_time.to_rfc3339()).collect::<Vec<_>>(),
        ["2026-04-01T02:00:00+00:00", "2026-04-02T02:00:00+00:00"],
        "oldest first"
    );
    assert!(r.iter().all(|r| r.priority < 0 && r.trigger == "backfill"));
    // A fresh manual run outranks the backfill in the queue.
    w.trigger(t, wf, t0()).await;
    let req = store::ClaimRequest {
        pool: "default",
        region: None,
        labels: &serde_json::json!({}),
        worker_id: "w",
        limit: 1,
        cpu_millis: u32::MAX,
        memory_bytes: u64::MAX,
        gpu: u32::MAX,
        lease: Duration::from_secs(30),
    };
    let first = w.store.claim(&req, t0()).await.unwrap().remove(0);
    let fresh = w.store.run(t, first.run_id).await.unwrap();
    assert_eq!(fresh.trigger, "manual");
    let _ = (shard, Created::Skipped);
}

#[tokio::test]
async fn shard_leases_spread_across_live_schedulers() {
    let w = World::new().await;
    let ttl = Duration::from_secs(10);
    // Two shards, two live schedulers: one each. The first takes what it can before the second appears.
    w.store.scheduler_heartbeat("a", "h", t0()).await.unwrap();
    let a = w.store.balance_shard_leases("a", ttl, t0()).await.unwrap();
    assert_eq!(a.len(), 2, "alone, it drives both shards");
    w.store.scheduler_heartbeat("b", "h", t0()).await.unwrap();
    let a = w.store.balance_shard_leases("a", ttl, t0() + chrono::Duration::seconds(1)).await.unwrap();
    assert_eq!(a.len(), 1, "with a second scheduler alive, it gives one back");
    let b = w.store.balance_shard_leases("b", ttl, t0() + chrono::Duration::seconds(1)).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_ne!(a[0].shard, b[0].shard);
    assert!(b[0].token > 0, "a taken lease carries a fencing token");
}
