//! Workers end to end (`cargo bench -p orrery-server --bench workers`; numbers in
//! docs/BENCHMARKS.md): a real server on a port, its scheduler, and one real `orrery worker`
//! process connected over gRPC, on a PostgreSQL with its default durability. Every task is a
//! durable attempt claimed by the worker and reported back; nothing runs in the server.
//!
//! Set ORRERY_BENCH_QUICK=1 for a short smoke run, ORRERY_BENCH_STATEMENTS=1 to see what each
//! statement cost the database during the throughput run.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use server::config::Config;
use server::roles;
use testkit::bench::{BenchDb, percentile};
use tokio_util::sync::CancellationToken;

/// A worker process and its work directory; both go when dropped.
struct Worker(Child, std::path::PathBuf);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
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
        dir,
    )
}

fn chain(name: &str, n: usize, task: &str) -> String {
    let mut doc = format!("name: {name}\ntasks:\n  - {{id: t0, {task}}}\n");
    for i in 1..n {
        doc.push_str(&format!("  - {{id: t{i}, {task}, depends_on: [t{}]}}\n", i - 1));
    }
    doc
}

/// p50 and p99 of `xs` (sorted in place), for a line of the report.
fn p50_p99(xs: &mut [f64]) -> String {
    xs.sort_by(f64::total_cmp);
    format!("p50 {:.2} ms, p99 {:.2} ms", percentile(xs, 0.5), percentile(xs, 0.99))
}

/// The chain's fib(10) as a bare `python3 script.py`, found on the same PATH and with the same
/// clean environment the worker gives a task, minus everything else the worker does (process
/// group, cgroup, logs, outputs, the report): what a step of the fib chain costs before Orrery
/// adds anything. Times in ms.
fn bare_python(script: &str, n: usize) -> Vec<f64> {
    let dir = std::env::temp_dir().join(format!("orrery-bench-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    std::fs::write(dir.join("script.py"), script).expect("the script");
    let times = (0..n)
        .map(|_| {
            let t = Instant::now();
            let ok = Command::new("python3")
                .arg("script.py")
                .current_dir(&dir)
                .env_clear()
                .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
                .env("LANG", "C.UTF-8")
                .stdout(Stdio::null())
                .status()
                .expect("python3");
            assert!(ok.success());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    times
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
    let fib_script = "def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)\nfib(10)";
    let fib = format!("kind: python, config: {{script: {:?}}}", fib_script);
    let fib40 = db.workflow(&chain("fib40", 40, &fib)).await;
    let mut fan = String::from("name: fan100\ntasks:\n  - {id: root, kind: noop}\n");
    for i in 0..100 {
        fan.push_str(&format!("  - {{id: t{i}, kind: noop, depends_on: [root]}}\n"));
    }
    let fan = db.workflow(&fan).await;
    db.measure(noop40).await; // warm-up: the worker is connected and idle after it
    db.analyze().await;
    for (what, wf) in
        [("chain of 40 noop", noop40), ("chain of 40 python fib(10)", fib40), ("fan-out of 100 noop (+1 root)", fan)]
    {
        let (mut walls, mut steps, mut stamps, mut held) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // The bare process is timed between the chain's runs, not once before them: how fast this
        // machine starts a process drifts by milliseconds within minutes.
        let mut bare = Vec::new();
        for _ in 0..reps {
            if wf == fib40 {
                bare.extend(bare_python(fib_script, if quick { 3 } else { 8 }));
            }
            let m = db.measure(wf).await;
            walls.push(m.wall);
            steps.extend(m.start_to_start);
            stamps.extend(m.report_to_claim);
            held.extend(m.start_to_report);
        }
        bare.sort_by(f64::total_cmp);
        let bare_p50 = percentile(&bare, 0.5);
        walls.sort_by(f64::total_cmp);
        print!(
            "{what}: trigger → end p50 {:.3} s (min {:.3}, max {:.3}) over {} runs",
            percentile(&walls, 0.5),
            walls[0],
            walls[walls.len() - 1],
            walls.len()
        );
        if wf == noop40 {
            // A noop takes no time: from one start to the next is all overhead.
            print!("; per-step overhead (start → next start) {}", p50_p99(&mut steps));
        } else if wf == fib40 {
            // Start to start is the task's own process plus what Orrery adds.
            let mut added: Vec<f64> = steps.iter().map(|s| s - bare_p50).collect();
            let mut worker_side: Vec<f64> = held.iter().map(|s| s - bare_p50).collect();
            print!(
                "; start → next start {}; the bare python3 process p50 {bare_p50:.2} ms ({} runs between the chains); \
                 per-step overhead (the rest) {}; of which from the start to the report taken, beyond the bare \
                 process (the commit, the offer, the task, its report) {}",
                p50_p99(&mut steps),
                bare.len(),
                p50_p99(&mut added),
                p50_p99(&mut worker_side)
            );
        }
        if wf != fan {
            print!(
                "; report taken → next start stamped (before its commit; 0 where the step started it) {}",
                p50_p99(&mut stamps)
            );
        }
        println!();
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
    db.analyze().await;
    db.statements(None).await;
    let t = Instant::now();
    let w = worker(&base, &token, 16);
    for run in &runs {
        let _ = db.wait(*run).await;
    }
    let wall = t.elapsed().as_secs_f64();
    drop(w);
    db.statements(Some("the throughput run")).await;
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
