//! `orrery up` as a user runs it: a real process, its own PostgreSQL cluster, signals.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_orrery");
const PASSWORD: &str = "up-test-password";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn data_dir() -> tempdir::Dir {
    tempdir::Dir::new()
}

/// A scratch directory removed at the end (std only; no extra crate for it).
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!("orrery-up-test-{}-{}", std::process::id(), rand_suffix()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn rand_suffix() -> u64 {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(std::time::SystemTime::now())
    }
}

fn up(dir: &Path, port: u16) -> Child {
    Command::new(BIN)
        .args(["up", "--data-dir"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-format", "text"])
        .env("ORRERY_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("RUST_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

async fn wait_ready(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output_now();
            panic!("orrery up exited with {status}: {out}");
        }
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "not ready in 90 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

trait OutputNow {
    fn wait_with_output_now(&mut self) -> String;
}

impl OutputNow for Child {
    fn wait_with_output_now(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// PIDs of postgres processes serving the cluster under `dir`.
fn postgres_of(dir: &Path) -> Vec<String> {
    let out =
        Command::new("pgrep").args(["-f", &format!("postgres -D {}", dir.join("pgdata").display())]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

async fn wait_no_postgres(dir: &Path) -> Vec<String> {
    for _ in 0..100 {
        if postgres_of(dir).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    postgres_of(dir)
}

#[tokio::test]
async fn up_keeps_its_data_across_kill_9_and_leaves_nothing_running_after_a_clean_stop() {
    let dir = data_dir();
    let port = free_port();
    let mut first = up(&dir.0, port);
    wait_ready(port, &mut first).await;

    let token_path = dir.0.join("admin.token");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&token_path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the admin token is private");
    let token = std::fs::read_to_string(&token_path).unwrap();
    let http = reqwest::Client::new();
    let created = http
        .post(format!("http://127.0.0.1:{port}/api/v1/tenants/default/projects"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "slug": "kept", "name": "Kept" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    signal(&first, nix::sys::signal::Signal::SIGKILL);
    first.wait().unwrap();
    assert_eq!(wait_no_postgres(&dir.0).await, Vec::<String>::new(), "the private PostgreSQL dies with its parent");

    let mut second = up(&dir.0, port);
    wait_ready(port, &mut second).await;
    let list: serde_json::Value = http
        .get(format!("http://127.0.0.1:{port}/api/v1/tenants/default/projects"))
        .bearer_auth(std::fs::read_to_string(&token_path).unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["slug"], "kept", "data survives kill -9: {list}");
    assert_eq!(std::fs::read_to_string(&token_path).unwrap(), token, "the same token keeps working");
    let login = http
        .post(format!("http://127.0.0.1:{port}/api/v1/auth/login"))
        .json(&serde_json::json!({ "email": "admin@orrery.local", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    signal(&second, nix::sys::signal::Signal::SIGTERM);
    let status = second.wait().unwrap();
    assert!(status.success(), "a clean stop exits 0, got {status}");
    assert_eq!(postgres_of(&dir.0), Vec::<String>::new(), "no postgres outlives a clean stop");
}

#[tokio::test]
async fn a_second_up_on_the_same_data_dir_is_refused() {
    let dir = data_dir();
    let port = free_port();
    let mut first = up(&dir.0, port);
    wait_ready(port, &mut first).await;
    let other = Command::new(BIN)
        .args(["up", "--data-dir"])
        .arg(&dir.0)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success());
    assert!(err.contains("another orrery") && err.contains(&first.id().to_string()), "{err}");
    signal(&first, nix::sys::signal::Signal::SIGTERM);
    assert!(first.wait().unwrap().success());
}

fn one_clear_line(out: &Output) -> String {
    assert!(!out.status.success(), "must fail");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("orrery: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    err
}

#[test]
fn a_port_in_use_is_refused_before_anything_is_touched() {
    let dir = data_dir();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(&["up", "--data-dir", dir.0.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")], &[]);
    let err = one_clear_line(&out);
    assert!(err.contains("already in use") && err.contains("--listen"), "{err}");
    assert!(!dir.0.join("pgdata").exists(), "no database was created");
}

#[test]
fn an_unreachable_database_is_one_line_without_the_password() {
    let port = free_port(); // nothing listens there
    let url = format!("postgres://orrery:s3cret-pw@127.0.0.1:{port}/orrery");
    let out = run(&["server", "--listen", &format!("127.0.0.1:{}", free_port()), "--database-url", &url], &[]);
    let err = one_clear_line(&out);
    assert!(err.contains("connection refused") && err.contains("is PostgreSQL running"), "{err}");
    assert!(!err.contains("s3cret-pw"), "the password is never printed: {err}");
    let wrong_scheme = run(&["migrate", "--database-url", "mysql://root@localhost/db"], &[]);
    assert!(one_clear_line(&wrong_scheme).contains("not a PostgreSQL URL"));
}

#[test]
fn a_data_dir_of_another_postgres_version_is_refused_untouched() {
    let dir = data_dir();
    std::fs::create_dir_all(dir.0.join("pgdata")).unwrap();
    std::fs::write(dir.0.join("pgdata/PG_VERSION"), "9\n").unwrap();
    let out =
        run(&["up", "--data-dir", dir.0.to_str().unwrap(), "--listen", &format!("127.0.0.1:{}", free_port())], &[]);
    let err = one_clear_line(&out);
    assert!(err.contains("PostgreSQL 9 cluster") && err.contains("install PostgreSQL 9"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.0.join("pgdata/PG_VERSION")).unwrap(), "9\n");
}

#[test]
fn a_corrupt_data_dir_is_refused_untouched() {
    let dir = data_dir();
    std::fs::create_dir_all(dir.0.join("pgdata")).unwrap();
    std::fs::write(dir.0.join("pgdata/notes.txt"), "precious").unwrap();
    let out =
        run(&["up", "--data-dir", dir.0.to_str().unwrap(), "--listen", &format!("127.0.0.1:{}", free_port())], &[]);
    let err = one_clear_line(&out);
    assert!(err.contains("not a PostgreSQL cluster"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.0.join("pgdata/notes.txt")).unwrap(), "precious");
}

#[test]
fn missing_postgres_programs_are_named_with_the_fix() {
    let dir = data_dir();
    let out = run(
        &["up", "--data-dir", dir.0.to_str().unwrap(), "--listen", &format!("127.0.0.1:{}", free_port())],
        &[("ORRERY_DATABASE_EMBEDDED_BIN_DIR", "/nonexistent/bin")],
    );
    let err = one_clear_line(&out);
    assert!(err.contains("/nonexistent/bin") && err.contains("initdb"), "{err}");
}

#[test]
fn config_prints_the_effective_values_with_secrets_hidden() {
    let out = run(
        &["config", "--listen", "127.0.0.1:9999"],
        &[("ORRERY_DATABASE_URL", "postgres://u:hidden-pw@db:5432/orrery")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "{text}");
    assert!(text.contains("postgres://u:***@db:5432/orrery") && !text.contains("hidden-pw"), "{text}");
    assert!(text.contains("session_idle_minutes = 480"), "defaults are shown: {text}");
}

#[tokio::test]
async fn up_recovers_when_orrery_and_postgres_were_both_killed() {
    let dir = data_dir();
    let port = free_port();
    let mut first = up(&dir.0, port);
    wait_ready(port, &mut first).await;
    let pid_file = dir.0.join("pgdata/postmaster.pid");
    let postmaster: i32 = std::fs::read_to_string(&pid_file).unwrap().lines().next().unwrap().trim().parse().unwrap();
    // Both die at once (power cut, OOM killer): a stale postmaster.pid stays behind.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(postmaster), nix::sys::signal::Signal::SIGKILL).unwrap();
    signal(&first, nix::sys::signal::Signal::SIGKILL);
    first.wait().unwrap();
    wait_no_postgres(&dir.0).await;
    assert!(pid_file.exists(), "the stale pid file is there");

    let mut second = up(&dir.0, port);
    wait_ready(port, &mut second).await;
    signal(&second, nix::sys::signal::Signal::SIGTERM);
    assert!(second.wait().unwrap().success());
    assert_eq!(postgres_of(&dir.0), Vec::<String>::new());
}
