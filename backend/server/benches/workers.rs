//! Workers end to end (`cargo bench -p orrery-server --bench workers`; numbers in
//! docs/BENCHMARKS.md): a real server on a port, its scheduler, and one real `orrery worker`
//! process connected over gRPC, on a PostgreSQL with its default durability. Every task is a
//! durable attempt claimed by the worker and reported back; nothing runs in the server.
//!
//! Set ORRERY_BENCH_QUICK=1 for a short smoke run.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use server::config::Config;
use server::roles;
use testkit::bench::{BenchDb, percentile};
use tokio_util::sync::CancellationToken;

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn worker(base: &str, token: &str, slots: u32) -> Worker {
    let dir = std::env::temp_dir().join(format!("orrery-bench-work-{}", std::process::id()));
    Worker(
        Command::new(env!("CARGO_BIN_EXE_orrery"))
            .args(["worker", "--server", base, "--slots", &slots.to_string(), "--work-dir"])
            .arg(&dir)
            .env("ORRERY_WORKER_TOKEN", token)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start orrery worker"),
    )
}

fn chain(name: &str, n: usize, task: &str) -> String {
    let mut doc = format!("name: {name}\ntasks:\n  - {{id: t0, {task}}}\n");
    for i in 1..n {
        doc.push_str(&format!("  - {{id: t{i}, {task}, depends_on: [t{}]}}\n", i - 1));
    }
    doc
}

fn report(what: &str, walls: &mut [f64], steps: &mut [f64]) {
    walls.sort_by(f64::total_cmp);
    steps.sort_by(f64::total_cmp);
    print!(
        "{what}: trigger → end p50 {:.3} s (min {:.3}, max {:.3}) over {} runs",
        percentile(walls, 0.5),
        walls[0],
        walls[walls.len() - 1],
        walls.len()
    );
    if steps.is_empty() {
        println!();
    } else {
        println!(
            "; per-step overhead p50 {:.2} ms, p99 {:.2} ms ({} steps)",
            percentile(steps, 0.5),
            percentile(steps, 0.99),
            steps.len()
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = std::env::var_os("ORRERY_BENCH_QUICK").is_some();
    let db = BenchDb::start(32).await;
    let mut config = Config::default();
    let listener = roles::bind("127.0.0.1:0".parse().expect("an address")).expect("a port");
    config.listen = listener.local_addr().expect("its address");
    let config = Arc::new(config);
    let (state, sessions) = roles::state(config.clone(), db.store.clone()).await.expect("the server's state");
    let services = state.services.clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(roles::serve(state, sessions, listener, shutdown.clone()));
    // The scheduler's loops; no in-process executor: every task goes to the worker.
    let _engine = roles::start_engine(&config, &db.store, &shutdown, 0);
    let base = format!("http://{}", config.listen);
    let token = services.issue_worker_token(db.owner, "bench").await.expect("a worker token");
    let reps = if quick { 2 } else { 10 };

    // 1. Chains and fan-out with one worker of 16 slots.
    let w = worker(&base, &token, 16);
    let noop40 = db.workflow(&chain("chain40", 40, "kind: noop")).await;
    let fib =
        "kind: python, config: {script: \"def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)\\nfib(10)\"}";
    let fib40 = db.workflow(&chain("fib40", 40, fib)).await;
    let mut fan = String::from("name: fan100\ntasks:\n  - {id: root, kind: noop}\n");
    for i in 0..100 {
        fan.push_str(&format!("  - {{id: t{i}, kind: noop, depends_on: [root]}}\n"));
    }
    let fan = db.workflow(&fan).await;
    db.measure(noop40).await; // warm-up: the worker is connected and idle after it
    sqlx::query("ANALYZE").execute(&db.store.catalog_pool()).await.expect("analyze");
    for (what, wf) in
        [("chain of 40 noop", noop40), ("chain of 40 python fib(10)", fib40), ("fan-out of 100 noop (+1 root)", fan)]
    {
        let (mut walls, mut steps) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let (wall, s) = db.measure(wf).await;
            walls.push(wall);
            if wf != fan {
                steps.extend(s);
            }
        }
        report(what, &mut walls, &mut steps);
    }
    drop(w);

    // 2. Throughput: runs of 10 independent no-ops queued with no worker connected, then one
    //    worker of 16 slots drains them. Rate = tasks / (last end − first start).
    let total_runs = if quick { 50 } else { 300 };
    let mut wide = String::from("name: wide\nmax_active_runs: 10000\ntasks:\n");
    for i in 0..10 {
        wide.push_str(&format!("  - {{id: t{i}, kind: noop}}\n"));
    }
    let wide = db.workflow(&wide).await;
    let mut runs = Vec::new();
    for _ in 0..total_runs {
        runs.push(db.trigger(wide).await);
    }
    // Fresh statistics, as autovacuum keeps them on a database in use: with none for tables that
    // just grew by thousands of rows, the planner picks index scans that filter every row.
    sqlx::query("ANALYZE").execute(&db.store.catalog_pool()).await.expect("analyze");
    let t = Instant::now();
    let w = worker(&base, &token, 16);
    for run in &runs {
        let _ = db.wait(*run).await;
    }
    let wall = t.elapsed().as_secs_f64();
    drop(w);
    let (mut first, mut last) = (None, None);
    let mut tasks = 0;
    for run in &runs {
        for a in db.store.attempts_of_run(db.tenant, *run).await.expect("attempts") {
            tasks += 1;
            if let Some(s) = a.started_at {
                first = Some(first.map_or(s, |f: chrono::DateTime<chrono::Utc>| f.min(s)));
            }
            last = last.max(a.ended_at);
        }
    }
    let span = (last.expect("an end") - first.expect("a start")).num_microseconds().unwrap_or(1) as f64 / 1e6;
    println!(
        "throughput, one worker with 16 slots: {tasks} no-op tasks in {span:.2} s (first start → last end) = {:.0} tasks/s; {wall:.2} s including the worker's start",
        tasks as f64 / span
    );

    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    db.store.close().await;
}
