//! Workers over real gRPC against a real server: shell tasks, logs, outputs, pools, cancellation
//! of process trees, and failover when a worker process is killed.

mod common;

use std::time::Duration;

use common::{TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn app() -> TestApp {
    let app = spawn_app().await;
    app.start_scheduler();
    let p =
        app.post("/api/v1/tenants/acme/projects", &app.admin_token, json!({ "slug": "data", "name": "Data" })).await;
    assert_eq!(p.status, StatusCode::CREATED);
    app
}

async fn apply(app: &TestApp, doc: &str) {
    let r = app
        .post("/api/v1/tenants/acme/workflows", &app.admin_token, json!({ "project": "data", "document": doc }))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
}

async fn trigger(app: &TestApp, workflow: &str) -> String {
    let t = app.post(&format!("/api/v1/tenants/acme/workflows/{workflow}/runs"), &app.admin_token, json!({})).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    t.body["run"]["id"].as_str().unwrap().to_owned()
}

async fn wait_run(app: &TestApp, run: &str, secs: u64) -> Value {
    for _ in 0..secs * 10 {
        let r = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await;
        if ["succeeded", "failed", "cancelled"].contains(&r.body["run"]["state"].as_str().unwrap_or_default()) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "run {run} did not end in {secs} s: {}",
        app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await.body
    );
}

/// An attempt's time stamp `key` (`queued_at`, `started_at`, `ended_at`) as the API gives it.
fn time_of(attempt: &Value, key: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(attempt[key].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{key} of {attempt}: {e}"))
}

async fn log(app: &TestApp, run: &str, task: &str) -> String {
    app.get(&format!("/api/v1/tenants/acme/runs/{run}/tasks/{task}/logs?limit=1000"), &app.admin_token).await.body["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_shell_workflow_runs_on_a_worker_with_logs_and_outputs_passed_downstream() {
    let app = app().await;
    let worker = app.start_worker("default", 4).await;
    apply(
        &app,
        r#"
name: shells
params: {region: eu}
tasks:
  - id: extract
    kind: shell
    config:
      script: |
        echo "hello from $ORRERY_TASK_ID in $ORRERY_PARAM_REGION"
        echo "to stderr" >&2
        echo rows=42 >> "$ORRERY_OUTPUT"
  - id: load
    kind: shell
    depends_on: [extract]
    config: {script: "echo got {{ outputs.extract.rows }} rows; test {{ outputs.extract.rows }} -eq 42"}
  - id: py
    kind: python
    depends_on: [extract]
    config: {script: "import os; print('python sees', os.environ['ORRERY_WORKFLOW'])"}
"#,
    )
    .await;
    let run = trigger(&app, "shells").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    assert_eq!(done["tasks"][0]["outputs"]["rows"], "42");
    assert_eq!(done["tasks"][0]["attempts"][0]["worker"], worker.as_str());
    let extract = log(&app, &run, "extract").await;
    assert!(extract.contains(" O hello from extract in eu"), "{extract}");
    assert!(extract.contains(" E to stderr"), "{extract}");
    assert!(log(&app, &run, "load").await.contains("got 42 rows"));
    assert!(log(&app, &run, "py").await.contains("python sees shells"));
    let workers = app.get("/api/v1/workers", &app.admin_token).await;
    let me = workers.body["items"].as_array().unwrap().iter().find(|w| w["id"] == worker.as_str()).cloned().unwrap();
    assert_eq!((me["pool"].as_str(), me["connected"].as_bool()), (Some("default"), Some(true)));
}

#[tokio::test]
async fn a_failing_script_fails_its_task_with_the_exit_code() {
    let app = app().await;
    app.start_worker("default", 2).await;
    apply(&app, "name: bad\ntasks:\n  - {id: a, kind: shell, config: {script: \"echo about to fail; exit 3\"}}\n")
        .await;
    let run = trigger(&app, "bad").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "failed");
    assert_eq!(done["tasks"][0]["reason"], "exit code 3");
    assert!(log(&app, &run, "a").await.contains("about to fail"));
}

#[tokio::test]
async fn tasks_go_to_the_workers_of_their_pool() {
    let app = app().await;
    let a = app.start_worker("alpha", 2).await;
    let b = app.start_worker("beta", 2).await;
    apply(
        &app,
        "name: pools\ntasks:\n  - {id: one, kind: shell, pool: alpha, config: {script: \"echo 1\"}}\n  - {id: two, kind: shell, pool: beta, config: {script: \"echo 2\"}, depends_on: [one]}\n",
    )
    .await;
    let run = trigger(&app, "pools").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    assert_eq!(done["tasks"][0]["attempts"][0]["worker"], a.as_str());
    assert_eq!(done["tasks"][1]["attempts"][0]["worker"], b.as_str());
}

/// Processes whose environment carries the attempt marker, anywhere on the machine.
fn processes_of_run(run: &str) -> Vec<i32> {
    let marker = format!("ORRERY_RUN_ID={run}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
        })
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")))
        .collect()
}

/// The run's processes once `done` holds of them, or as they are after `secs` seconds.
async fn processes_once(run: &str, secs: u64, done: impl Fn(&[i32]) -> bool) -> Vec<i32> {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let now = processes_of_run(run);
        if done(&now) || std::time::Instant::now() >= until {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cancel_kills_a_tree_that_ignores_sigterm_and_double_forks() {
    let app = app().await;
    app.start_worker("default", 2).await;
    apply(
        &app,
        r#"
name: stubborn
tasks:
  - id: tree
    kind: shell
    config:
      script: |
        trap '' TERM
        (trap '' TERM; sleep 300) &
        setsid bash -c 'trap "" TERM; sleep 300' &
        echo started
        sleep 300
"#,
    )
    .await;
    let run = trigger(&app, "stubborn").await;
    let tree = processes_once(&run, 10, |p| p.len() >= 4).await;
    assert!(tree.len() >= 4, "the tree is running: {tree:?}");
    let c = app.post(&format!("/api/v1/tenants/acme/runs/{run}/cancel"), &app.admin_token, json!({})).await;
    assert_eq!(c.body["run"]["state"], "cancelled");
    // The worker hears it at its next heartbeat, then SIGTERM, a 1 s grace, SIGKILL.
    let left = processes_once(&run, 20, <[i32]>::is_empty).await;
    assert!(left.is_empty(), "processes left: {left:?}");
}

/// A child process killed when dropped, so a failing test leaves no worker behind.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker_process(app: &TestApp, token: &str, pool: &str) -> Proc {
    worker_process_via(&app.base, token, pool, &[])
}

/// `orrery worker` as a process of its own, connecting to `server`.
fn worker_process_via(server: &str, token: &str, pool: &str, extra: &[&str]) -> Proc {
    let dir = std::env::temp_dir().join(format!("orrery-worker-proc-{}", uuid::Uuid::now_v7()));
    Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_orrery"))
            .args([
                "worker",
                "--server",
                server,
                "--pool",
                pool,
                "--slots",
                "2",
                "--kill-grace-secs",
                "1",
                "--work-dir",
            ])
            .arg(&dir)
            .args(extra)
            .env("ORRERY_WORKER_TOKEN", token)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            // Into the test's own output: shown when it fails.
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test]
async fn a_worker_killed_mid_task_loses_it_and_the_retry_runs_on_another() {
    let app = app().await;
    let token = app.worker_token().await;
    let mut first = worker_process(&app, &token, "default");
    // The first attempt hangs; the retry is quick. Where attempts get cgroups, the first also
    // leaves a daemon outside its process group, which only the cgroup can find once its worker
    // is gone: the worker's warden kills it.
    let daemon = if worker::cgroup::detect().usable() { "setsid sleep 300 & " } else { "" };
    apply(
        &app,
        &format!("name: failover\ntasks:\n  - id: t\n    kind: shell\n    retries: {{count: 2, delay: 0s}}\n    config: {{script: \"echo attempt $ORRERY_ATTEMPT; if [ $ORRERY_ATTEMPT = 1 ]; then {daemon}sleep 300; fi\"}}\n"),
    )
    .await;
    let run = trigger(&app, "failover").await;
    assert!(!processes_once(&run, 10, |p| !p.is_empty()).await.is_empty(), "attempt 1 runs on the first worker");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.0.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    first.0.wait().unwrap();
    // Its task goes with it — the daemon too — before any other worker starts on this host.
    let left = processes_once(&run, 5, <[i32]>::is_empty).await;
    assert!(left.is_empty(), "the dead worker's task outlived it: {left:?}");
    let _second = worker_process(&app, &token, "default");
    // The lease (6 s in tests) runs out, the attempt is declared lost, the retry goes to the second.
    let done = wait_run(&app, &run, 40).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let attempts = done["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["state"], "lost");
    assert_eq!(attempts[1]["state"], "succeeded");
    assert_ne!(attempts[0]["worker"], attempts[1]["worker"]);
    assert!(processes_of_run(&run).is_empty(), "the first attempt's processes died: {:?}", processes_of_run(&run));
}

#[tokio::test]
async fn a_worker_whose_warden_was_killed_still_takes_its_tasks_down_when_it_dies() {
    if !cgroups_or_skip("warden") {
        return;
    }
    let app = app().await;
    let token = app.worker_token().await;
    let mut w = worker_process(&app, &token, "default");
    // The warden: the worker's child running the `orrery-warden` script.
    let ppid = w.0.id().to_string();
    let mut warden = None;
    for _ in 0..100 {
        warden = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let parent = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (parent == ppid && cmdline.split(|b| *b == 0).any(|a| a == b"orrery-warden")).then_some(pid)
        });
        if warden.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warden = warden.expect("the worker starts a warden");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(warden), nix::sys::signal::Signal::SIGKILL).unwrap();
    apply(&app, "name: hang\ntasks:\n  - {id: t, kind: shell, config: {script: \"sleep 300\"}}\n").await;
    let run = trigger(&app, "hang").await;
    assert!(!processes_once(&run, 10, |p| !p.is_empty()).await.is_empty(), "the task runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.0.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    w.0.wait().unwrap();
    // With its warden gone, the worker gave the task a supervisor, which takes it down.
    let left = processes_once(&run, 5, <[i32]>::is_empty).await;
    assert!(left.is_empty(), "the dead worker's task outlived it: {left:?}");
}

/// `<what> <attempt> <nanoseconds>` lines the task writes.
fn ledger(path: &std::path::Path) -> Vec<(String, u32, u128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((p.next()?.to_owned(), p.next()?.parse().ok()?, p.next()?.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn a_worker_cut_off_by_a_partition_stops_its_task_before_it_runs_again_elsewhere() {
    let app = app().await;
    let token = app.worker_token().await;
    let proxy = common::proxy::Proxy::start(&app.base).await;
    let mut cut_off = worker_process_via(&proxy.url, &token, "default", &[]);
    let book = std::env::temp_dir().join(format!("orrery-ledger-{}", uuid::Uuid::now_v7()));
    // Attempt 1 says it is alive every 50 ms until it is stopped; attempt 2 notes its start.
    apply(
        &app,
        &format!(
            r#"
name: partition
params: {{ledger: "{}"}}
tasks:
  - id: t
    kind: shell
    retries: {{count: 2, delay: 0s}}
    config:
      script: |
        echo "start $ORRERY_ATTEMPT $(date +%s%N)" >> "$ORRERY_PARAM_LEDGER"
        if [ "$ORRERY_ATTEMPT" = 1 ]; then
          while true; do echo "alive 1 $(date +%s%N)" >> "$ORRERY_PARAM_LEDGER"; sleep 0.05; done
        fi
"#,
            book.display()
        ),
    )
    .await;
    let run = trigger(&app, "partition").await;
    for _ in 0..200 {
        if ledger(&book).iter().any(|(w, _, _)| w == "alive") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ledger(&book).iter().any(|(w, _, _)| w == "alive"), "attempt 1 runs on the worker behind the proxy");
    // A second worker, directly connected, is there to take the retry.
    let other = app.start_worker("default", 2).await;
    proxy.cut();
    let done = wait_run(&app, &run, 60).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let attempts = done["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["state"], "lost", "{done}");
    assert_eq!(attempts[1]["state"], "succeeded", "{done}");
    assert_eq!(attempts[1]["worker"], other.as_str());
    // Never twice at once: attempt 1's last sign of life comes before attempt 2 starts.
    let lines = ledger(&book);
    let last_alive = lines.iter().filter(|(w, a, _)| w == "alive" && *a == 1).map(|l| l.2).max().unwrap();
    let second = lines.iter().find(|(w, a, _)| w == "start" && *a == 2).map(|l| l.2).expect("attempt 2 started");
    assert!(
        last_alive < second,
        "attempt 1 was alive {} ms after attempt 2 started",
        (last_alive - second) / 1_000_000
    );
    // The server dropped the silent worker's stream; healed, the worker comes back.
    let find = |ws: &Value| {
        ws["items"].as_array().unwrap().iter().find(|w| w["id"] != other.as_str()).cloned().unwrap_or_default()
    };
    let mut gone = Value::Null;
    for _ in 0..100 {
        gone = find(&app.get("/api/v1/workers", &app.admin_token).await.body);
        if gone["connected"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gone["connected"], false, "the registry notices a silent worker: {gone}");
    proxy.heal();
    let mut back = Value::Null;
    for _ in 0..300 {
        back = find(&app.get("/api/v1/workers", &app.admin_token).await.body);
        if back["connected"] == true {
            break;
        }
        assert!(cut_off.0.try_wait().unwrap().is_none(), "the cut-off worker is still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back["connected"], true, "the worker reconnects once the network heals: {back}");
    assert_eq!(back["id"], gone["id"]);
    // Its report of the attempt it stopped was refused as stale: nothing changed.
    let after = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await.body;
    assert_eq!(after["tasks"][0]["attempts"], done["tasks"][0]["attempts"]);
    let _ = std::fs::remove_file(&book);
}

/// Where the host gives the worker cgroups (v1 or a delegated v2 subtree); elsewhere the limit
/// tests say why they cannot run and pass.
fn cgroups_or_skip(test: &str) -> bool {
    let h = worker::cgroup::detect();
    if !h.usable() {
        eprintln!("{test}: skipped, this host gives no cgroups: {}", h.describe());
    }
    h.usable()
}

#[tokio::test]
async fn a_task_over_its_memory_limit_fails_as_out_of_memory() {
    if !cgroups_or_skip("memory limit") {
        return;
    }
    let app = app().await;
    let worker = app.start_worker("default", 2).await;
    apply(
        &app,
        r#"
name: hungry
tasks:
  - id: big
    kind: python
    resources: {memory: 64Mi}
    config:
      script: |
        print("allocating 400 MiB", flush=True)
        block = bytearray(400 * 1024 * 1024)
        print("should not get here")
  - id: small
    kind: python
    resources: {memory: 64Mi}
    config: {script: "block = bytearray(8 * 1024 * 1024); print('fine with', len(block))"}
"#,
    )
    .await;
    let run = trigger(&app, "hungry").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "failed", "{done}");
    let big = &done["tasks"][0];
    let reason = big["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("out of memory"), "{reason}");
    assert!(reason.contains("64 MiB"), "{reason}");
    assert_eq!(big["attempts"][0]["exit_code"], 137, "{big}");
    assert!(log(&app, &run, "big").await.contains("allocating 400 MiB"));
    assert!(!log(&app, &run, "big").await.contains("should not get here"));
    assert_eq!(done["tasks"][1]["state"], "succeeded", "{done}");
    assert!(log(&app, &run, "small").await.contains("fine with 8388608"));
    // Nothing is left behind: the attempts' cgroups go (just after their reports).
    if let worker::cgroup::Hierarchy::V1 { bases } = worker::cgroup::detect() {
        let attempts = || -> Vec<std::path::PathBuf> {
            std::fs::read_dir(bases[0].join(&worker))
                .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir() && !idle_launcher(p)).collect())
                .unwrap_or_default()
        };
        let mut left = attempts();
        for _ in 0..40 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = attempts();
        }
        assert!(left.is_empty(), "cgroups left: {left:?}");
        let spares = std::fs::read_dir(bases[0].join(&worker))
            .map(|d| d.flatten().filter(|e| idle_launcher(&e.path())).count())
            .unwrap_or_default();
        assert!(spares <= worker::launch::SPARE, "{spares} launchers left waiting");
    }
}

/// A launcher made ahead for the next task (`worker::launch`): one process in its cgroup, the
/// shell still waiting for its script.
fn idle_launcher(cgroup: &std::path::Path) -> bool {
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
    let pids: Vec<&str> = procs.lines().collect();
    pids.len() == 1
        && std::fs::read(format!("/proc/{}/cmdline", pids[0]))
            .is_ok_and(|c| c == format!("{}\0-s\0", worker::launch::SHELL).as_bytes())
}

/// Where attempts get cgroups, tasks start in processes made ahead of them (`worker::launch`): a
/// shell that becomes the task. What the task sees must be what a cold start gives: exactly its
/// context and params, byte for byte, and nothing of the shell. Two tasks start together on a
/// worker whose two launchers are ready; a third starts cold, under its supervisor, on a worker
/// without cgroups.
#[tokio::test]
async fn a_task_sees_exactly_its_own_environment_however_it_was_started() {
    let app = app().await;
    let worker = app.start_worker("default", 2).await;
    app.start_worker_without_cgroups("plain", 1).await;
    let script = r#"{script: "import os, json\nprint('ENV ' + json.dumps(dict(os.environ), sort_keys=True))\nprint('CGROUP ' + open('/proc/self/cgroup').read().replace(chr(10), ' '))"}"#;
    let tasks = [("t1", "default"), ("t2", "default"), ("t3", "plain")];
    let mut doc =
        String::from("name: environ\nparams: {quote: \"it's \\\"$HOME\\\" `id` $(id)\\nline two \\\\ end\"}\ntasks:\n");
    for (t, pool) in tasks {
        doc.push_str(&format!("  - {{id: {t}, kind: python, pool: {pool}, config: {script}}}\n"));
    }
    apply(&app, &doc).await;
    let launching = match worker::cgroup::detect() {
        worker::cgroup::Hierarchy::V1 { bases } if std::path::Path::new(worker::launch::SHELL).exists() => {
            Some(bases[0].join(&worker))
        }
        _ => None,
    };
    if let Some(dir) = &launching {
        let spares =
            || std::fs::read_dir(dir).map(|d| d.flatten().filter(|e| idle_launcher(&e.path())).count()).unwrap_or(0);
        for _ in 0..100 {
            if spares() == worker::launch::SPARE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(spares(), worker::launch::SPARE, "the worker's launchers are ready");
    }
    let run = trigger(&app, "environ").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let mut cgroups = Vec::new();
    for (task, _) in tasks {
        let text = log(&app, &run, task).await;
        let line = |tag: &str| {
            text.lines()
                .find_map(|l| l.split_once(&format!(" O {tag} ")).map(|(_, rest)| rest.to_owned()))
                .unwrap_or_else(|| panic!("no {tag} line in {text}"))
        };
        let env: serde_json::Map<String, Value> = serde_json::from_str(&line("ENV")).expect("the environment");
        let keys: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "HOME",
                "LANG",
                "ORRERY_ATTEMPT",
                "ORRERY_ATTEMPT_ID",
                "ORRERY_LOGICAL_TIME",
                "ORRERY_OUTPUT",
                "ORRERY_PARAM_QUOTE",
                "ORRERY_RUN_ID",
                "ORRERY_TASK_ID",
                "ORRERY_TENANT_ID",
                "ORRERY_WORKFLOW",
                "PATH"
            ],
            "{task}: {env:?}"
        );
        assert_eq!(env["ORRERY_PARAM_QUOTE"], "it's \"$HOME\" `id` $(id)\nline two \\ end", "{task}");
        assert_eq!(env["ORRERY_TASK_ID"], task);
        assert_eq!(env["ORRERY_RUN_ID"], run.as_str());
        let home = env["HOME"].as_str().unwrap();
        assert_eq!(env["ORRERY_OUTPUT"].as_str().unwrap(), format!("{home}/.orrery-output"));
        cgroups.push(line("CGROUP"));
    }
    // The two on the worker with cgroups each in a launcher's of its own.
    if launching.is_some() {
        assert!(cgroups[0].contains("/next-") && cgroups[1].contains("/next-"), "{cgroups:?}");
        assert_ne!(cgroups[0], cgroups[1]);
    }
}

#[tokio::test]
async fn a_task_gets_no_more_cpu_than_it_asked_for() {
    if !cgroups_or_skip("cpu quota") {
        return;
    }
    let app = app().await;
    app.start_worker("default", 2).await;
    // Spins for 2 s of wall time and reports the CPU time it got: at a quarter of a core, about
    // 0.5 s; unlimited, close to 2 s.
    apply(
        &app,
        r#"
name: spin
tasks:
  - id: spin
    kind: python
    resources: {cpu: 0.25}
    config:
      script: |
        import os, time
        end = time.monotonic() + 2
        while time.monotonic() < end:
            pass
        with open(os.environ["ORRERY_OUTPUT"], "w") as f:
            f.write("cpu=%.3f\n" % time.process_time())
"#,
    )
    .await;
    let run = trigger(&app, "spin").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let cpu: f64 = done["tasks"][0]["outputs"]["cpu"].as_str().unwrap().parse().unwrap();
    assert!(cpu < 0.8, "a quarter of a core for 2 s gave {cpu} s of CPU");
    assert!(cpu > 0.1, "the task ran at all: {cpu} s of CPU");
}

#[tokio::test]
async fn a_task_no_worker_can_take_waits_and_is_reported_unschedulable() {
    let app = app().await;
    app.start_worker_sized("default", 2, "4Gi").await;
    apply(
        &app,
        r#"
name: huge
tasks:
  - {id: big, kind: shell, resources: {memory: 64Gi}, config: {script: "echo big ran"}}
  - {id: gpu, kind: shell, pool: gpu, config: {script: "echo gpu ran"}}
  - {id: small, kind: shell, config: {script: "echo small ran"}}
"#,
    )
    .await;
    let run = trigger(&app, "huge").await;
    // The small task runs; the other two wait.
    let mut d = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await.body;
    for _ in 0..100 {
        if d["tasks"][2]["state"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        d = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await.body;
    }
    assert_eq!(d["tasks"][2]["state"], "succeeded", "{d}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let d = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await.body;
    assert_eq!(d["run"]["state"], "running", "{d}");
    let big = &d["tasks"][0]["attempts"][0];
    assert_eq!(big["state"], "queued", "{d}");
    assert_eq!(
        big["unschedulable"],
        "needs 64 GiB of memory (the most a worker offers is 4 GiB) in pool `default`: lower the request or add a bigger worker"
    );
    let gpu = &d["tasks"][1]["attempts"][0];
    assert!(gpu["unschedulable"].as_str().unwrap().starts_with("no live worker in pool `gpu`"), "{gpu}");
    assert!(d["tasks"][2]["attempts"][0].get("unschedulable").is_none());

    // The platform's view: per pool, and in the metrics.
    let pools = app.get("/api/v1/pools", &app.admin_token).await.body;
    let pool = |name: &str| pools["items"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap();
    let default = pool("default");
    assert_eq!(
        (default["workers"].as_u64(), default["queued"].as_u64(), default["unschedulable"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{pools}"
    );
    assert!(default["waiting"][0]["reason"].as_str().unwrap().starts_with("needs 64 GiB"), "{pools}");
    assert_eq!((pool("gpu")["workers"].as_u64(), pool("gpu")["unschedulable"].as_u64()), (Some(0), Some(1)));
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("orrery_pool_unschedulable_attempts{pool=\"default\"} 1"), "{metrics}");
    assert!(metrics.contains("orrery_pool_unschedulable_attempts{pool=\"gpu\"} 1"), "{metrics}");
    assert!(metrics.contains("orrery_pool_live_workers{pool=\"default\"} 1"), "{metrics}");

    // Workers that fit join: both run, and nothing is reported any more.
    app.start_worker_sized("default", 1, "128Gi").await;
    app.start_worker("gpu", 1).await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    assert!(log(&app, &run, "big").await.contains("big ran"));
    let pools = app.get("/api/v1/pools", &app.admin_token).await.body;
    assert!(pools["items"].as_array().unwrap().iter().all(|p| p["unschedulable"] == 0), "{pools}");
}

/// A worker busy with one task has asked for work for its other slots, found none, and waits.
/// Work queued later reaches it when the queue announces it, not at the session's next look at
/// the queue (once a second).
#[tokio::test]
async fn work_queued_while_a_worker_is_busy_starts_when_it_is_announced() {
    let app = app().await;
    app.start_worker("default", 4).await;
    apply(&app, "name: busy\ntasks:\n  - {id: t, kind: shell, config: {script: \"sleep 20\"}}\n").await;
    apply(&app, "name: quick\ntasks:\n  - {id: t, kind: shell, config: {script: \"true\"}}\n").await;
    let busy = trigger(&app, "busy").await;
    let mut d = Value::Null;
    for _ in 0..100 {
        d = app.get(&format!("/api/v1/tenants/acme/runs/{busy}"), &app.admin_token).await.body;
        if d["tasks"][0]["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d["tasks"][0]["state"], "running", "{d}");
    // Time for the worker's request for its three other slots to be answered: nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // At four phases of the session's once-a-second look at the queue: with only that look, each
    // start would wait a uniformly spread 0-1 s, all four under 0.5 s one time in 16.
    let mut waits = Vec::new();
    for pause in [0, 330, 170, 90] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let run = trigger(&app, "quick").await;
        let done = wait_run(&app, &run, 20).await;
        assert_eq!(done["run"]["state"], "succeeded", "{done}");
        let a = &done["tasks"][0]["attempts"][0];
        waits.push((time_of(a, "started_at") - time_of(a, "queued_at")).num_milliseconds());
    }
    assert!(waits.iter().all(|w| *w < 500), "queued → started, ms: {waits:?}");
    let d = app.get(&format!("/api/v1/tenants/acme/runs/{busy}"), &app.admin_token).await.body;
    assert_eq!(d["tasks"][0]["state"], "running", "the busy task still held its slot: {d}");
    let c = app.post(&format!("/api/v1/tenants/acme/runs/{busy}/cancel"), &app.admin_token, json!({})).await;
    assert!(c.status.is_success(), "{}", c.body);
}

/// A worker's GPUs are held by the tasks that asked for them: with one GPU, two tasks that each
/// ask for it run one after the other, though the worker has a slot for both; a task without a
/// GPU runs beside them.
#[tokio::test]
async fn a_workers_gpus_go_to_one_task_at_a_time() {
    let app = app().await;
    app.start_worker_with_gpus("default", 4, 1).await;
    let task = |id: &str, gpu: u32| {
        format!("  - {{id: {id}, kind: shell, resources: {{gpu: {gpu}}}, config: {{script: \"sleep 1\"}}}}\n")
    };
    apply(&app, &format!("name: gpus\ntasks:\n{}{}{}", task("a", 1), task("b", 1), task("c", 0))).await;
    let run = trigger(&app, "gpus").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let span = |i: usize| {
        let a = &done["tasks"][i]["attempts"][0];
        (time_of(a, "started_at"), time_of(a, "ended_at"))
    };
    let (a, b, c) = (span(0), span(1), span(2));
    assert!(a.1 <= b.0 || b.1 <= a.0, "the two GPU tasks ran at once: {a:?} {b:?}");
    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    assert!(c.0 < first.1 || c.0 < second.0, "the task without a GPU waited for them: {c:?} {first:?} {second:?}");
}

/// The next offer on a session played by the test, skipping other messages; None if none comes
/// within `wait`.
async fn next_offer(
    inbound: &mut tonic::Streaming<worker::proto::ServerMessage>,
    wait: Duration,
) -> Option<worker::proto::Offer> {
    use worker::proto::server_message::Body;
    let until = tokio::time::Instant::now() + wait;
    loop {
        let m = tokio::time::timeout_at(until, inbound.message()).await.ok()?;
        if let Some(Body::Offer(o)) = m.expect("the session failed").expect("the server closed the session").body {
            return Some(o);
        }
    }
}

/// A worker played by the test over the real protocol (to order its messages as a race would):
/// registered as `id` in pool `default` with 4 slots of which `free` are free. Returns its
/// outbound queue and the server's messages.
async fn play_worker(
    app: &TestApp,
    id: &str,
    free: worker::proto::Capacity,
) -> (tokio::sync::mpsc::Sender<worker::proto::WorkerMessage>, tonic::Streaming<worker::proto::ServerMessage>) {
    use worker::proto::worker_message::Body;
    use worker::proto::{Capacity, Register, WorkerMessage};
    let token = app.worker_token().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<WorkerMessage>(16);
    let register = Register {
        worker_id: id.into(),
        pool: "default".into(),
        capacity: Some(Capacity { slots: 4, cpu_millis: 4000, memory_bytes: 4 << 30, gpus: 0 }),
        free: Some(free),
        ..Register::default()
    };
    tx.send(WorkerMessage { body: Some(Body::Register(register)) }).await.unwrap();
    let mut client = worker::proto::workers_client::WorkersClient::connect(app.base.clone()).await.unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    (tx, client.session(req).await.unwrap().into_inner())
}

/// A task ends while an offer is on its way to its worker: the worker counts its free capacity
/// without the offered task, and asks for that again. The server takes what its offers on the
/// way hold off the request, or the worker would be offered more than it has. Played by the test
/// over the real protocol, to order the messages as that race does; also, a worker that connects
/// with work still running is shown with what it has free, not its whole capacity.
#[tokio::test]
async fn a_request_for_work_made_while_an_offer_travels_is_not_offered_that_capacity_again() {
    use worker::proto::worker_message::Body;
    use worker::proto::{Capacity, WantWork, WorkerMessage};
    let app = app().await;
    let sleep = |id: &str| format!("  - {{id: {id}, kind: shell, config: {{script: \"sleep 30\"}}}}\n");
    apply(&app, &format!("name: two\ntasks:\n{}{}", sleep("a"), sleep("b"))).await;
    let run = trigger(&app, "two").await;

    let one = Capacity { slots: 1, cpu_millis: 1000, memory_bytes: 1 << 30, gpus: 0 };
    let (tx, mut inbound) = play_worker(&app, "played", one).await;
    let send = |body: Body| {
        let tx = tx.clone();
        async move { tx.send(WorkerMessage { body: Some(body) }).await.unwrap() }
    };
    let want = |seen: u64| Body::WantWork(WantWork { max: 1, free: Some(one), offers_seen: Some(seen) });
    send(want(0)).await;
    let first = next_offer(&mut inbound, Duration::from_secs(10)).await.expect("no offer for the first request");
    assert_eq!((first.attempts.len(), first.seq), (1, 1), "{first:?}");
    let workers = app.get("/api/v1/workers", &app.admin_token).await.body;
    let me = workers["items"].as_array().unwrap().iter().find(|w| w["id"] == "played").cloned().unwrap();
    assert_eq!((me["capacity"]["slots"].as_u64(), me["free"]["slots"].as_u64()), (Some(4), Some(1)), "{me}");

    // Its one slot, asked for again before the offer was seen: already on its way.
    send(want(0)).await;
    if let Some(o) = next_offer(&mut inbound, Duration::from_millis(1500)).await {
        panic!("a one-slot worker was offered a second task while the first was on its way: {o:?}");
    }
    // Once it has seen the offer, what it says it has free is what it has.
    send(want(first.seq)).await;
    let second = next_offer(&mut inbound, Duration::from_secs(10)).await.expect("no offer once the first was seen");
    assert_eq!((second.attempts.len(), second.seq), (1, 2), "{second:?}");
    assert_ne!(first.attempts[0].attempt_id, second.attempts[0].attempt_id);
    let c = app.post(&format!("/api/v1/tenants/acme/runs/{run}/cancel"), &app.admin_token, json!({})).await;
    assert!(c.status.is_success(), "{}", c.body);
}

/// A drain asked through the API while the worker was away stands when it connects again: it is
/// told at once, and its request for work is not answered, though work waits.
#[tokio::test]
async fn a_worker_drained_while_away_is_told_when_it_connects_again_and_offered_nothing() {
    use worker::proto::server_message::Body as In;
    use worker::proto::worker_message::Body;
    use worker::proto::{Capacity, WantWork, WorkerMessage};
    let app = app().await;
    let free = Capacity { slots: 4, cpu_millis: 4000, memory_bytes: 4 << 30, gpus: 0 };
    let (tx, mut inbound) = play_worker(&app, "away", free).await;
    // Registered: the session is up. Then the connection drops.
    let first = inbound.message().await.unwrap().unwrap();
    assert!(matches!(first.body, Some(In::Registered(_))), "{first:?}");
    drop((tx, inbound));
    let d = app.post("/api/v1/workers/away/drain", &app.admin_token, json!({})).await;
    assert!(d.status.is_success(), "{}", d.body);
    apply(&app, "name: waiting\ntasks:\n  - {id: t, kind: shell, config: {script: \"true\"}}\n").await;
    let run = trigger(&app, "waiting").await;

    let (tx, mut inbound) = play_worker(&app, "away", free).await;
    let want = WantWork { max: 4, free: Some(free), offers_seen: Some(0) };
    tx.send(WorkerMessage { body: Some(Body::WantWork(want)) }).await.unwrap();
    let mut drained = false;
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(m) = tokio::time::timeout_at(until, inbound.message()).await {
        match m.expect("the session failed").expect("the server closed the session").body {
            Some(In::Drain(_)) => drained = true,
            Some(In::Offer(o)) => panic!("a drained worker was offered work: {o:?}"),
            _ => {}
        }
    }
    assert!(drained, "the worker was not told to drain");
    let workers = app.get("/api/v1/workers", &app.admin_token).await.body;
    let me = workers["items"].as_array().unwrap().iter().find(|w| w["id"] == "away").cloned().unwrap();
    assert_eq!((me["draining"].as_bool(), me["connected"].as_bool()), (Some(true), Some(true)), "{me}");
    let r = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await.body;
    assert_eq!(r["tasks"][0]["state"], "queued", "{r}");
}

#[tokio::test]
async fn a_task_longer_than_its_lease_runs_to_the_end_on_a_healthy_worker() {
    let app = app().await;
    app.start_worker("default", 1).await;
    // The lease is 6 s in tests: heartbeats must keep renewing it, and their acknowledgements
    // must keep the worker's fence from firing.
    apply(&app, "name: long\ntasks:\n  - {id: t, kind: shell, config: {script: \"sleep 9; echo finished\"}}\n").await;
    let run = trigger(&app, "long").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    assert_eq!(done["tasks"][0]["attempts"].as_array().unwrap().len(), 1, "{done}");
    assert!(log(&app, &run, "t").await.contains("finished"));
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:"))?.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_task_printing_100_mb_is_capped_and_neither_side_grows_with_it() {
    let app = app().await;
    let token = app.worker_token().await;
    let cap: u64 = 16 * 1024 * 1024;
    let worker = worker_process_via(&app.base, &token, "default", &["--log-cap", &cap.to_string()]);
    let worker_pid = worker.0.id().to_string();
    // Peak RSS of this process (the server) from here on.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let server_before = status_kib("self", "VmRSS");
    // 1,000,000 lines of 100 bytes, as fast as the pipe takes them.
    apply(
        &app,
        "name: loud\ntasks:\n  - {id: t, kind: shell, config: {script: \"yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -n 1000000; echo done >&2\"}}\n",
    )
    .await;
    let run = trigger(&app, "loud").await;
    let done = wait_run(&app, &run, 120).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let worker_peak = status_kib(&worker_pid, "VmHWM");
    let server_growth = status_kib("self", "VmHWM").saturating_sub(server_before);
    let text = log(&app, &run, "t").await;
    // Kept up to the cap, then one marker line; the rest was read and dropped.
    let kept = u64::try_from(text.len()).unwrap();
    assert!(kept > cap - 64 * 1024 && kept < cap + 64 * 1024, "kept {kept} bytes with a cap of {cap}");
    assert!(text.trim_end().ends_with("the rest of the output was discarded"), "{}", &text[text.len() - 300..]);
    assert!(!text.contains(" E done"), "output past the cap is dropped");
    eprintln!("100 MB of output: worker peak RSS {worker_peak} KiB, server RSS growth {server_growth} KiB");
    assert!(worker_peak < 64 * 1024, "the worker peaked at {worker_peak} KiB");
    assert!(server_growth < 64 * 1024, "the server grew by {server_growth} KiB");
}

#[tokio::test]
async fn a_task_whose_output_is_stored_slowly_keeps_its_lease_and_its_whole_log() {
    use sqlx::{Connection, Executor};
    let app = app().await;
    let token = app.worker_token().await;
    // Every stored chunk of log costs 50 ms: the ~200 chunks of this task take ~10 s to store,
    // longer than a lease (6 s). Heartbeats must not wait behind them.
    for url in std::iter::once(&app.urls.catalog).chain(&app.urls.extra_shards) {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        c.execute(
            "CREATE FUNCTION slow_log() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END $$; \
             CREATE TRIGGER slow_log BEFORE INSERT ON log_chunks FOR EACH ROW EXECUTE FUNCTION slow_log();",
        )
        .await
        .unwrap();
    }
    let _worker = worker_process(&app, &token, "default");
    // 100,000 lines of 100 bytes at once, then a last line.
    apply(
        &app,
        "name: chatty\ntasks:\n  - {id: t, kind: shell, config: {script: \"yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -n 100000; echo the end\"}}\n",
    )
    .await;
    let run = trigger(&app, "chatty").await;
    let done = wait_run(&app, &run, 90).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let attempts = done["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "the attempt kept its lease while its log was stored: {done}");
    // The result came after the log: all of it is there when the run has ended.
    let text = log(&app, &run, "t").await;
    assert_eq!(text.lines().count(), 100_001, "{}", &text[text.len().saturating_sub(300)..]);
    assert!(text.trim_end().ends_with(" O the end"), "{}", &text[text.len().saturating_sub(300)..]);
}

#[tokio::test]
async fn a_result_the_server_could_not_store_is_sent_again_and_the_attempt_kept_meanwhile() {
    use sqlx::{Connection, Executor};
    let app = app().await;
    // The first five times an attempt is recorded as succeeded, the database fails the
    // transaction (a sequence counts the tries: it is not rolled back with them). The worker
    // sends the result again at every heartbeat after the first (1.2 s here): the sixth try
    // comes 6-7 s after the first, past the attempt's lease (6 s) unless heartbeats keep it.
    let mut shards = Vec::new();
    for url in std::iter::once(&app.urls.catalog).chain(&app.urls.extra_shards) {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        c.execute(
            "CREATE SEQUENCE tries; \
             CREATE FUNCTION fail_five() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.state = 'succeeded' AND OLD.state = 'running' THEN \
                 IF nextval('tries') <= 5 THEN RAISE EXCEPTION 'the database failed this time'; END IF; \
               END IF; RETURN NEW; END $$; \
             CREATE TRIGGER fail_five BEFORE UPDATE ON attempts FOR EACH ROW EXECUTE FUNCTION fail_five();",
        )
        .await
        .unwrap();
        shards.push(c);
    }
    app.start_worker("default", 2).await;
    apply(&app, "name: again\ntasks:\n  - {id: t, kind: shell, config: {script: \"echo hi\"}}\n").await;
    let run = trigger(&app, "again").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let attempts = done["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "the attempt kept its lease until its result was stored: {done}");
    let mut tries = 0;
    for c in &mut shards {
        let (n, called): (i64, bool) =
            sqlx::query_as("SELECT last_value, is_called FROM tries").fetch_one(&mut *c).await.unwrap();
        tries += if called { n } else { 0 };
    }
    assert!(tries >= 6, "the result was refused five times, then stored ({tries} tries)");
}

async fn put_connection(app: &TestApp, name: &str, url: &str) {
    let r = app
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/tenants/acme/connections/{name}"),
            &app.admin_token,
            Some(json!({ "url": url, "description": "test data" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn sql_tasks_query_postgres_and_mysql_and_pass_the_first_row_downstream() {
    use sqlx::{Connection, Executor};
    let app = app().await;
    app.start_worker("default", 4).await;
    let pg = testkit::scratch_postgres().await;
    let my = testkit::scratch_mysql().await;
    let mut c = sqlx::PgConnection::connect(&pg).await.unwrap();
    c.execute(
        "CREATE TABLE sales (region text, amount int, at date); \
         INSERT INTO sales VALUES ('eu', 30, '2026-01-02'), ('us', 10, '2026-01-03'), ('eu', 25, NULL)",
    )
    .await
    .unwrap();
    let mut m = sqlx::MySqlConnection::connect(&my).await.unwrap();
    m.execute("CREATE TABLE orders (id int primary key, shipped tinyint not null default 0, note blob)").await.unwrap();
    m.execute("INSERT INTO orders (id) VALUES (1), (2), (3)").await.unwrap();
    put_connection(&app, "warehouse", &pg).await;
    put_connection(&app, "shop", &my).await;
    // Passwords are never shown.
    let listed = app.get("/api/v1/tenants/acme/connections", &app.admin_token).await.body;
    let pg_password = pg.split_once("://").unwrap().1.split_once('@').unwrap().0.split_once(':').unwrap().1.to_owned();
    assert!(!listed.to_string().contains(&pg_password), "{listed}");
    assert!(!listed.to_string().contains("orrery-test-pw"), "{listed}");
    assert_eq!(listed["items"][1]["kind"], "postgres", "{listed}");
    assert!(listed["items"][1]["url"].as_str().unwrap().contains(":***@"), "{listed}");
    apply(
        &app,
        r#"
name: reports
tasks:
  - id: totals
    kind: sql
    config:
      connection: warehouse
      query: "SELECT region, sum(amount) AS total, max(at) AS latest FROM sales GROUP BY region ORDER BY total DESC"
  - id: ship
    kind: sql
    config:
      connection: shop
      query: "UPDATE orders SET shipped = 1 WHERE id <= 2; SELECT count(*) AS shipped, NULL AS nothing FROM orders WHERE shipped = 1"
  - id: report
    kind: shell
    depends_on: [totals, ship]
    config: {script: "echo top={{ outputs.totals.region }} total={{ outputs.totals.total }} rows={{ outputs.totals.rows }} shipped={{ outputs.ship.shipped }} changed={{ outputs.ship.affected }}"}
"#,
    )
    .await;
    let run = trigger(&app, "reports").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let totals = &done["tasks"][0]["outputs"];
    assert_eq!(
        (totals["rows"].as_str(), totals["region"].as_str(), totals["total"].as_str()),
        (Some("2"), Some("eu"), Some("55"))
    );
    assert_eq!(totals["latest"], "2026-01-02");
    let ship = &done["tasks"][1]["outputs"];
    assert_eq!(
        (ship["shipped"].as_str(), ship["affected"].as_str(), ship["nothing"].as_str()),
        (Some("2"), Some("2"), Some(""))
    );
    assert!(log(&app, &run, "report").await.contains("top=eu total=55 rows=2 shipped=2 changed=2"));
    let table = log(&app, &run, "totals").await;
    assert!(table.contains("region | total | latest"), "{table}");
    assert!(table.contains("us     | 10    | 2026-01-03"), "{table}");
    assert!(!table.contains(&pg_password), "the log names the connection without its password: {table}");
    assert!(log(&app, &run, "ship").await.contains("1 rows returned, 2 rows affected"));
}

#[tokio::test]
async fn a_bad_query_or_a_missing_connection_fails_with_the_reason_and_a_cancel_stops_the_query() {
    let app = app().await;
    app.start_worker("default", 4).await;
    let pg = testkit::scratch_postgres().await;
    put_connection(&app, "warehouse", &pg).await;
    let bad = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/connections/oracle",
            &app.admin_token,
            Some(json!({ "url": "oracle://db.example.com/x" })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body["message"].as_str().unwrap().contains("postgres:// or mysql://"), "{}", bad.body);
    // The document is valid, so it is saved; the missing connection is a warning.
    let applied = app
        .post(
            "/api/v1/tenants/acme/workflows",
            &app.admin_token,
            json!({ "project": "data", "document": r#"
name: broken
tasks:
  - {id: typo, kind: sql, config: {connection: warehouse, query: "SELEC 1"}}
  - {id: nowhere, kind: sql, config: {connection: nope, query: "SELECT 1"}}
"# }),
        )
        .await;
    assert_eq!(applied.status, StatusCode::CREATED, "{}", applied.body);
    assert_eq!(
        applied.body["warnings"],
        json!(["task `nowhere`: this tenant has no connection `nope` yet; the task fails until it exists \
             (orrery connection put nope --url postgres://... or mysql://...)"])
    );
    let run = trigger(&app, "broken").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "failed", "{done}");
    assert!(done["tasks"][0]["reason"].as_str().unwrap().contains("syntax error"), "{done}");
    assert_eq!(
        done["tasks"][1]["reason"],
        "this tenant has no connection `nope`: create it with `orrery connection put nope --url postgres://...`"
    );

    // A long query, cancelled: it stops on the database too.
    apply(&app, "name: slow\ntasks:\n  - {id: q, kind: sql, config: {connection: warehouse, query: \"SELECT pg_sleep(120)\"}}\n").await;
    let run = trigger(&app, "slow").await;
    let db = pg.rsplit_once('/').unwrap().1.to_owned();
    let sleeping = |app: &TestApp| {
        let (store, db) = (app.store.clone(), db.clone());
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'SELECT pg_sleep%' AND state = 'active'",
            )
            .bind(db)
            .fetch_one(&store.catalog_pool())
            .await
            .unwrap()
        }
    };
    for _ in 0..100 {
        if sleeping(&app).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sleeping(&app).await, 1, "the query runs");
    app.post(&format!("/api/v1/tenants/acme/runs/{run}/cancel"), &app.admin_token, json!({})).await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "cancelled");
    let mut left = 1;
    for _ in 0..100 {
        left = sleeping(&app).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the query was cancelled on the database");
}

/// The example plugin from `infra/plugins`, installed in a fresh plugin directory, and a
/// stand-in `spark-submit` (no Spark cluster here) that answers like the real one.
fn spark_setup(root: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let plugins = root.join("plugins");
    let spark = root.join("spark");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(spark.join("bin")).unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/plugins/spark-submit");
    std::fs::copy(&example, plugins.join("spark-submit")).unwrap();
    let fake = spark.join("bin/spark-submit");
    std::fs::write(
        &fake,
        r#"#!/bin/sh
echo "spark-submit: $# arguments, application $(for a; do case $a in /*) echo $a;; esac; done)"
for a; do
  if [ "$a" = --fail ]; then
    echo "Exception in thread \"main\" java.io.FileNotFoundException: File /jobs/missing.py does not exist" >&2
    exit 1
  fi
done
echo "INFO Client: Submitted application application_1700000000000_0042"
echo "INFO Client: tracking URL: http://rm.example:8088/proxy/application_1700000000000_0042/"
"#,
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    (plugins, spark)
}

#[tokio::test]
async fn a_plugin_task_gets_its_spec_on_stdin_and_its_result_becomes_outputs() {
    let app = app().await;
    let root = std::env::temp_dir().join(format!("orrery-plugin-test-{}", uuid::Uuid::now_v7()));
    let (plugins, spark) = spark_setup(&root);
    let worker = app.start_worker_with("default", 4, "4Gi", Some(plugins)).await;
    let spark = spark.display();
    apply(
        &app,
        &format!(
            r#"
name: spark
params: {{day: "2026-11-20"}}
tasks:
  - id: submit
    kind: plugin
    config:
      plugin: spark-submit
      spec:
        application: /jobs/aggregate.py
        master: "local[2]"
        name: "aggregate {{{{ params.day }}}}"
        conf: {{spark.executor.memory: 1g, spark.hadoop.fs.s3a.secret.key: hunter2}}
        args: ["--date", "{{{{ params.day }}}}"]
        spark_home: {spark}
  - id: report
    kind: shell
    depends_on: [submit]
    config: {{script: "echo submitted {{{{ outputs.submit.application_id }}}}"}}
"#
        ),
    )
    .await;
    let run = trigger(&app, "spark").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let outputs = &done["tasks"][0]["outputs"];
    assert_eq!(outputs["application_id"], "application_1700000000000_0042", "{done}");
    assert_eq!(outputs["tracking_url"], "http://rm.example:8088/proxy/application_1700000000000_0042/");
    assert_eq!(outputs["exit_code"], "0");
    let submit = log(&app, &run, "submit").await;
    assert!(
        submit.contains(&format!(
            "$ {spark}/bin/spark-submit --master local[2] --name aggregate 2026-11-20 --conf \
             spark.executor.memory=1g --conf spark.hadoop.fs.s3a.secret.key=*** /jobs/aggregate.py --date 2026-11-20"
        )),
        "{submit}"
    );
    assert!(submit.contains("spark-submit: 11 arguments, application /jobs/aggregate.py"), "{submit}");
    assert!(!submit.contains("hunter2"), "a secret conf value reached the log: {submit}");
    assert!(log(&app, &run, "report").await.contains("submitted application_1700000000000_0042"));
    let workers = app.get("/api/v1/workers", &app.admin_token).await.body;
    let me = workers["items"].as_array().unwrap().iter().find(|w| w["id"] == worker.as_str()).cloned().unwrap();
    assert_eq!(me["labels"]["orrery.plugin.spark-submit"], "true", "{me}");

    // What goes wrong is said by the plugin, in the task's reason.
    apply(
        &app,
        &format!(
            r#"
name: spark-bad
tasks:
  - {{id: typo, kind: plugin, config: {{plugin: spark-submit, spec: {{application: /jobs/a.py, exectuor_memory: 4g}}}}}}
  - {{id: missing, kind: plugin, config: {{plugin: spark-submit, spec: {{application: /jobs/missing.py, args: [--fail], spark_home: {spark}}}}}}}
"#
        ),
    )
    .await;
    let run = trigger(&app, "spark-bad").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "failed", "{done}");
    let reason = |i: usize| done["tasks"][i]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason(0).starts_with("unknown spec field(s) exectuor_memory; known: application, args,"), "{done}");
    assert!(reason(0).ends_with("(exit code 2)"), "{done}");
    assert_eq!(
        reason(1),
        "spark-submit exited with 1: Exception in thread \"main\" java.io.FileNotFoundException: File \
         /jobs/missing.py does not exist (exit code 1)"
    );

    // A plugin no worker has: the task waits, and says which plugin is missing.
    apply(&app, "name: flink\ntasks:\n  - {id: f, kind: plugin, config: {plugin: flink, spec: {job: x}}}\n").await;
    let run = trigger(&app, "flink").await;
    let mut why = Value::Null;
    for _ in 0..50 {
        let d = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await.body;
        why = d["tasks"][0]["attempts"][0]["unschedulable"].clone();
        if !why.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        why,
        "no live worker of pool `default` has the plugin `flink` installed (put an executable named flink in a \
         worker's --plugin-dir)"
    );
    let c = app.post(&format!("/api/v1/tenants/acme/runs/{run}/cancel"), &app.admin_token, json!({})).await;
    assert_eq!(c.body["run"]["state"], "cancelled", "{}", c.body);
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn a_worker_sent_sigterm_finishes_its_task_takes_nothing_new_and_exits() {
    let app = app().await;
    let token = app.worker_token().await;
    let mut worker = worker_process(&app, &token, "edge");
    apply(
        &app,
        "name: slow\ntasks:\n  - {id: a, kind: shell, pool: edge, config: {script: \"sleep 2; echo finished a\"}}\n",
    )
    .await;
    apply(&app, "name: quick\ntasks:\n  - {id: b, kind: shell, pool: edge, config: {script: \"echo b ran\"}}\n").await;
    let slow = trigger(&app, "slow").await;
    let mut state = Value::Null;
    for _ in 0..300 {
        let d = app.get(&format!("/api/v1/tenants/acme/runs/{slow}"), &app.admin_token).await.body;
        state = d["tasks"][0]["state"].clone();
        if state == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "running");
    let pid = nix::unistd::Pid::from_raw(worker.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();

    // Draining: the registry says so, and new work waits for another worker.
    let mut draining = false;
    for _ in 0..50 {
        let w = app.get("/api/v1/workers", &app.admin_token).await.body;
        draining = w["items"].as_array().unwrap().iter().any(|w| w["pool"] == "edge" && w["draining"] == true);
        if draining {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(draining, "the worker is not shown draining");
    let quick = trigger(&app, "quick").await;

    let done = wait_run(&app, &slow, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    assert!(log(&app, &slow, "a").await.contains("finished a"));
    let mut exited = None;
    for _ in 0..100 {
        exited = worker.0.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited.is_some_and(|s| s.success()), "the drained worker did not exit cleanly: {exited:?}");
    let q = app.get(&format!("/api/v1/tenants/acme/runs/{quick}"), &app.admin_token).await.body;
    assert_eq!(q["tasks"][0]["state"], "queued", "a draining worker took new work: {q}");

    let other = app.start_worker("edge", 1).await;
    let done = wait_run(&app, &quick, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    assert_eq!(done["tasks"][0]["attempts"][0]["worker"], other.as_str());
}

#[tokio::test]
async fn with_run_as_tasks_run_as_that_user_and_cannot_write_the_workers_files() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switching users needs a worker running as root");
        return;
    }
    let app = app().await;
    let worker = app.start_worker_as("default", 2, "4Gi", None, Some("nobody")).await;
    // A directory of the worker's (root's), readable by all, writable by root only.
    let private = std::env::temp_dir().join(format!("orrery-run-as-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&private).unwrap();
    apply(
        &app,
        &format!(
            r#"
name: as-user
tasks:
  - id: who
    kind: shell
    config:
      script: |
        echo "I am $(id -un) ($(id -u)) at home in $HOME"
        echo user=$(id -un) >> "$ORRERY_OUTPUT"
        if touch {dir}/probe 2>/dev/null; then echo "wrote to the worker's directory"; else echo "cannot write to the worker's directory"; fi
"#,
            dir = private.display()
        ),
    )
    .await;
    let run = trigger(&app, "as-user").await;
    let done = wait_run(&app, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    assert_eq!(done["tasks"][0]["outputs"]["user"], "nobody");
    let text = log(&app, &run, "who").await;
    assert!(text.contains("I am nobody (65534) at home in "), "{text}");
    assert!(text.contains("cannot write to the worker's directory"), "{text}");
    assert!(!private.join("probe").exists());
    let workers = app.get("/api/v1/workers", &app.admin_token).await.body;
    let me = workers["items"].as_array().unwrap().iter().find(|w| w["id"] == worker.as_str()).cloned().unwrap();
    assert!(me["isolation"].as_str().unwrap().ends_with("tasks run as nobody (uid 65534)"), "{me}");
    let _ = std::fs::remove_dir_all(&private);
}

#[tokio::test]
async fn when_its_server_goes_away_mid_task_the_worker_reports_to_the_next_and_nothing_is_lost() {
    let first = app().await;
    let second = common::spawn_replica(&first).await;
    second.start_scheduler();
    // The worker reaches "the server" through a load balancer that will switch servers.
    let balancer = common::proxy::Proxy::start(&first.base).await;
    let token = first.worker_token().await;
    let _worker = worker_process_via(&balancer.url, &token, "default", &[]);
    apply(
        &first,
        "name: across\ntasks:\n  - {id: t, kind: shell, config: {script: \"sleep 3; echo done=yes >> $ORRERY_OUTPUT; echo finished\"}}\n",
    )
    .await;
    let run = trigger(&first, "across").await;
    let mut state = Value::Null;
    for _ in 0..200 {
        let d = first.get(&format!("/api/v1/tenants/acme/runs/{run}"), &first.admin_token).await.body;
        state = d["tasks"][0]["state"].clone();
        if state == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "running");
    // The first server stops (its worker streams end); new connections go to the second.
    balancer.retarget(&second.base);
    drop(first);

    let done = wait_run(&second, &run, 30).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let attempts = done["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "the task ran once, its lease kept through the switch: {done}");
    assert_eq!(done["tasks"][0]["outputs"]["done"], "yes");
    assert!(log(&second, &run, "t").await.contains("finished"));
}
