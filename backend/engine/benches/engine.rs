//! The scheduling core's benchmarks (`cargo bench -p orrery-engine`; numbers in
//! docs/BENCHMARKS.md). PostgreSQL runs on this machine with its default durability (fsync on,
//! synchronous commit), in a private cluster this harness starts and stops.
//!
//! Set ORRERY_BENCH_QUICK=1 for a short smoke run, ORRERY_BENCH_CHAINS=N to run the chain of 40
//! N times instead of 10 (a window long enough to profile a step in).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use engine::SystemClock;
use engine::local::{self, LocalExecutorConfig};
use engine::time_wheel::TimeWheel;
use store::ClaimRequest;
use testkit::bench::{BenchDb, percentile};
use tokio_util::sync::CancellationToken;

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn wheel_bench(n: usize) {
    let before = rss_mib();
    let now: i64 = 1_800_000_000;
    let mut wheel: TimeWheel<(u128, u128)> = TimeWheel::new(now);
    let t = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Deadlines spread over one day, like a day's worth of cron schedules.
        wheel.insert((i as u128, i as u128), now + 1 + (x % 86_400) as i64);
    }
    let insert = t.elapsed();
    let after = rss_mib();
    let mut costs = Vec::new();
    let mut due = 0;
    for s in 1..=3_600 {
        let t = Instant::now();
        due += wheel.advance(now + s).len();
        costs.push(t.elapsed().as_secs_f64() * 1e6);
    }
    costs.sort_by(f64::total_cmp);
    println!(
        "time wheel, {n} schedules: insert {:.2} s, memory {:.0} MiB; one hour of 1 s ticks fired {due}: tick p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        insert.as_secs_f64(),
        after - before,
        percentile(&costs, 0.5),
        percentile(&costs, 0.99),
        costs.last().unwrap()
    );
}

fn main() {
    // `ORRERY_BENCH_RUNTIME=current_thread`: the same on tokio's single-threaded runtime, to see
    // what a step spends on wake-ups across the multi-threaded runtime's threads.
    let mut rt = match std::env::var("ORRERY_BENCH_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all().build().expect("a tokio runtime").block_on(run());
}

async fn run() {
    let quick = std::env::var_os("ORRERY_BENCH_QUICK").is_some();
    // Started from the main thread (which `#[tokio::main]` blocks on), so it dies with us.
    let db = BenchDb::start(32).await;
    let store = db.store.clone();
    let b = &db;

    // 0. The floor: one round trip, and one durable commit, from this process.
    {
        let pool = store.catalog_pool();
        let t = Instant::now();
        for _ in 0..2000 {
            sqlx::query("SELECT 1").execute(&pool).await.unwrap();
        }
        let rt = t.elapsed().as_secs_f64() / 2000.0 * 1e3;
        sqlx::query("CREATE TABLE bench_commit (v int)").execute(&pool).await.unwrap();
        let t = Instant::now();
        for i in 0..1000 {
            sqlx::query("INSERT INTO bench_commit VALUES ($1)").bind(i).execute(&pool).await.unwrap();
        }
        let commit = t.elapsed().as_secs_f64() / 1000.0 * 1e3;
        println!("floor: a round trip {rt:.3} ms; an insert with its durable commit {commit:.3} ms");
    }

    // 0b. Where a step's time goes: claim and report by hand, timing each call.
    {
        let mut doc = String::from("name: probe\ntasks:\n  - {id: t0, kind: noop}\n");
        for i in 1..40 {
            doc.push_str(&format!("  - {{id: t{i}, kind: noop, depends_on: [t{}]}}\n", i - 1));
        }
        let wf = b.workflow(&doc).await;
        let req = ClaimRequest {
            pool: "default",
            region: None,
            labels: &serde_json::json!({}),
            worker_id: "probe",
            limit: 1,
            cpu_millis: u32::MAX,
            memory_bytes: u64::MAX,
            gpu: u32::MAX,
            lease: Duration::from_secs(60),
        };
        let (mut claims, mut completes) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            b.trigger(wf).await;
            loop {
                let t = Instant::now();
                let got = store.claim(&req, Utc::now()).await.unwrap();
                claims.push(t.elapsed().as_secs_f64() * 1e3);
                let Some(c) = got.into_iter().next() else { break };
                let t = Instant::now();
                store
                    .complete_attempt(
                        c.tenant_id,
                        c.attempt_id,
                        c.lease_token,
                        model::engine::Outcome::Succeeded { outputs: Default::default() },
                        Utc::now(),
                    )
                    .await
                    .unwrap();
                completes.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        // The same chain, each report carrying the claim of the next step (what the executor and
        // the worker sessions do): one transaction and one durable commit per step.
        let mut fused = Vec::new();
        let now = Utc::now;
        for _ in 0..3 {
            b.trigger(wf).await;
            let mut next = store.claim(&req, Utc::now()).await.unwrap();
            while let Some(c) = next.pop() {
                let report = store::Completion {
                    tenant: c.tenant_id,
                    attempt_id: c.attempt_id,
                    lease_token: c.lease_token,
                    outcome: model::engine::Outcome::Succeeded { outputs: Default::default() },
                    exit_code: None,
                };
                let t = Instant::now();
                let (answers, claimed) = store.complete_and_claim(vec![report], Some(&req), &now).await;
                fused.push(t.elapsed().as_secs_f64() * 1e3);
                answers[0].as_ref().unwrap();
                next = claimed.unwrap();
            }
        }
        fused.sort_by(f64::total_cmp);
        let mut empty = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            store.claim(&req, Utc::now()).await.unwrap();
            empty.push(t.elapsed().as_secs_f64() * 1e3);
        }
        empty.sort_by(f64::total_cmp);
        println!("a claim that finds nothing: p50 {:.2} ms", percentile(&empty, 0.5));
        claims.sort_by(f64::total_cmp);
        completes.sort_by(f64::total_cmp);
        println!(
            "one step by hand: claim p50 {:.2} ms, report + advance p50 {:.2} ms; fused (report + advance + next claim, one commit) p50 {:.2} ms",
            percentile(&claims, 0.5),
            percentile(&completes, 0.5),
            percentile(&fused, 0.5)
        );
    }

    // 1. Chain of 40 and fan-out of 100 no-ops on the in-process executor.
    let stop = CancellationToken::new();
    let exec = tokio::spawn(local::run(
        store.clone(),
        Arc::new(SystemClock),
        LocalExecutorConfig { slots: 16, ..LocalExecutorConfig::default() },
        stop.clone(),
    ));
    let mut chain = String::from("name: chain40\ntasks:\n  - {id: t0, kind: noop}\n");
    for i in 1..40 {
        chain.push_str(&format!("  - {{id: t{i}, kind: noop, depends_on: [t{}]}}\n", i - 1));
    }
    let chain = b.workflow(&chain).await;
    let mut fan = String::from("name: fan100\ntasks:\n  - {id: root, kind: noop}\n");
    for i in 0..100 {
        fan.push_str(&format!("  - {{id: t{i}, kind: noop, depends_on: [root]}}\n"));
    }
    let fan = b.workflow(&fan).await;
    let reps = match std::env::var("ORRERY_BENCH_CHAINS").ok().and_then(|n| n.parse().ok()) {
        Some(n) => n,
        None if quick => 2,
        None => 10,
    };
    b.measure(chain).await; // warm-up
    b.analyze().await;
    b.statements(None).await;
    let mut walls = Vec::new();
    let (mut steps, mut stamps) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let m = b.measure(chain).await;
        walls.push(m.wall);
        steps.extend(m.start_to_start);
        stamps.extend(m.report_to_claim);
    }
    b.statements(Some("the chains")).await;
    walls.sort_by(f64::total_cmp);
    steps.sort_by(f64::total_cmp);
    stamps.sort_by(f64::total_cmp);
    println!(
        "chain of 40 no-ops: trigger → end p50 {:.3} s (min {:.3}, max {:.3}) over {reps} runs, {:.2} ms a step; \
         per-step overhead (start of a no-op → start of the next, commit included) p50 {:.2} ms, p99 {:.2} ms ({} steps); \
         of which report taken → next start stamped (before the commit; 0 where the step started it) p50 {:.2} ms",
        percentile(&walls, 0.5),
        walls[0],
        walls.last().unwrap(),
        percentile(&walls, 0.5) / 40.0 * 1e3,
        percentile(&steps, 0.5),
        percentile(&steps, 0.99),
        steps.len(),
        percentile(&stamps, 0.5),
    );
    let mut fan_walls = Vec::new();
    for _ in 0..reps {
        fan_walls.push(b.measure(fan).await.wall);
    }
    fan_walls.sort_by(f64::total_cmp);
    println!(
        "fan-out of 100 no-ops (+1 root): trigger → end p50 {:.3} s (min {:.3}, max {:.3})",
        percentile(&fan_walls, 0.5),
        fan_walls[0],
        fan_walls.last().unwrap()
    );
    stop.cancel();
    let _ = exec.await;

    // 2. Claims per second, 8 concurrent claimers taking one attempt per claim.
    let total = if quick { 2_000 } else { 10_000 };
    let mut wide = String::from("name: wide\nmax_active_runs: 100\ntasks:\n");
    for i in 0..1000 {
        wide.push_str(&format!("  - {{id: t{i}, kind: noop}}\n"));
    }
    let wide = b.workflow(&wide).await;
    for _ in 0..total / 1000 {
        b.trigger(wide).await;
    }
    for batch in [1u32, 16] {
        if batch == 16 {
            for _ in 0..total / 1000 {
                b.trigger(wide).await;
            }
        }
        let t = Instant::now();
        let mut handles = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let id = format!("bench-{w}");
                let req = ClaimRequest {
                    pool: "default",
                    region: None,
                    labels: &serde_json::json!({}),
                    worker_id: &id,
                    limit: batch,
                    cpu_millis: u32::MAX,
                    memory_bytes: u64::MAX,
                    gpu: u32::MAX,
                    lease: Duration::from_secs(60),
                };
                let mut n = 0;
                loop {
                    let got = store.claim(&req, Utc::now()).await.unwrap().len();
                    if got == 0 {
                        return n;
                    }
                    n += got;
                }
            }));
        }
        let mut claimed = 0;
        for h in handles {
            claimed += h.await.unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "claims, 8 concurrent claimers, {batch} per claim: {claimed} attempts in {secs:.2} s = {:.0} attempts/s",
            claimed as f64 / secs
        );
    }

    // 3. The timing wheel.
    wheel_bench(if quick { 100_000 } else { 1_000_000 });

    store.close().await;
    drop(db);
}
