//! The client verbs against a real `orrery up`, as a user types them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_orrery");

struct Up {
    child: Child,
    dir: PathBuf,
    server: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn up() -> Up {
    up_with(vec![], "http", &[])
}

/// `orrery up` on a free port with `env`; `curl` gets `curl_args` when asking whether it is ready.
fn up_with(env: Vec<(String, String)>, scheme: &str, curl_args: &[&str]) -> Up {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("orrery-cli-test-{}-{port}", std::process::id()));
    let child = Command::new(BIN)
        .args(["up", "--data-dir"])
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("ORRERY_ADMIN_PASSWORD", "cli-test-password")
        .env("RUST_LOG", "warn")
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = format!("{scheme}://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(90);
    while Command::new("curl")
        .args(curl_args)
        .args(["-fs", &format!("{server}/readyz")])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "orrery up did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    Up { child, dir, server }
}

fn cli(up: &Up, args: &[&str]) -> Output {
    Command::new(BIN).args(args).args(["--server", &up.server, "--data-dir"]).arg(&up.dir).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn apply_then_trigger_and_wait_with_exit_codes_that_follow_the_run() {
    let up = up();
    let dir = &up.dir;
    std::fs::write(dir.join("ok.yaml"), "name: ok\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: sleep, config: {seconds: 0.1}, depends_on: [a]}\n").unwrap();
    let applied = cli(&up, &["workflow", "apply", "-f", dir.join("ok.yaml").to_str().unwrap(), "-m", "first"]);
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(text(&applied).contains("version 1"), "{}", text(&applied));
    let json = cli(&up, &["workflow", "apply", "-f", dir.join("ok.yaml").to_str().unwrap(), "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["changed"], false);

    let ok = cli(&up, &["run", "trigger", "ok", "--wait", "--param", "n=3"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("succeeded"), "{}", text(&ok));

    // A shell task needs a real worker; the in-process executor fails it, so --wait exits non-zero.
    std::fs::write(dir.join("bad.yaml"), "name: bad\ntasks:\n  - {id: a, kind: shell, config: {script: \"exit 3\"}}\n")
        .unwrap();
    assert!(cli(&up, &["workflow", "apply", "-f", dir.join("bad.yaml").to_str().unwrap()]).status.success());
    let bad = cli(&up, &["run", "trigger", "bad", "--wait", "-o", "json"]);
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ended failed"), "{}", text(&bad));

    let run_id = serde_json::from_slice::<serde_json::Value>(&cli(&up, &["run", "trigger", "ok", "-o", "json"]).stdout)
        .unwrap()["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = cli(&up, &["run", "get", &run_id, "-o", "json"]);
    let detail: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(detail["run"]["id"], run_id.as_str());

    // A document with a cycle: the CLI prints the problem with its line, exits non-zero.
    std::fs::write(
        dir.join("cycle.yaml"),
        "name: c\ntasks:\n  - {id: a, kind: noop, depends_on: [b]}\n  - {id: b, kind: noop, depends_on: [a]}\n",
    )
    .unwrap();
    let cyc = cli(&up, &["workflow", "apply", "-f", dir.join("cycle.yaml").to_str().unwrap()]);
    assert!(!cyc.status.success());
    assert!(text(&cyc).contains("cycle") && text(&cyc).contains("line "), "{}", text(&cyc));

    // Connections: the password is stored but never printed back; a bad scheme is named.
    let put = cli(&up, &["connection", "put", "wh", "--url", "postgres://etl:s3cret-pw@db.example:5432/wh"]);
    assert!(put.status.success(), "{}", text(&put));
    assert!(text(&put).contains("connection wh (postgres)"), "{}", text(&put));
    let list = cli(&up, &["connection", "list"]);
    assert!(text(&list).contains("postgres://etl:***@db.example:5432/wh"), "{}", text(&list));
    assert!(!text(&list).contains("s3cret-pw") && !text(&put).contains("s3cret-pw"), "{}", text(&list));
    let bad_url = cli(&up, &["connection", "put", "x", "--url", "oracle://h/db"]);
    assert!(!bad_url.status.success());
    assert!(text(&bad_url).contains("postgres://") && text(&bad_url).contains("mysql://"), "{}", text(&bad_url));
    let rm = cli(&up, &["connection", "rm", "wh"]);
    assert!(rm.status.success(), "{}", text(&rm));
    let again = cli(&up, &["connection", "rm", "wh"]);
    assert!(!again.status.success() && text(&again).contains("404"), "{}", text(&again));
}

#[test]
fn cron_next_works_offline_in_both_dialects() {
    let unix = Command::new(BIN)
        .args([
            "cron",
            "next",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--after",
            "2026-03-28T12:00:00Z",
            "--count",
            "2",
        ])
        .output()
        .unwrap();
    assert!(unix.status.success(), "{}", text(&unix));
    let out = String::from_utf8_lossy(&unix.stdout);
    assert!(out.contains("2026-03-29T03:00:00+02:00") && out.contains("2026-03-30T02:30:00+02:00"), "DST gap: {out}");
    let quartz = Command::new(BIN)
        .args([
            "cron",
            "next",
            "0 0 12 ? * 6",
            "--dialect",
            "quartz",
            "--after",
            "2026-01-01T00:00:00Z",
            "--count",
            "1",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&quartz.stdout).unwrap();
    assert_eq!(v["next"], serde_json::json!(["2026-01-02T12:00:00Z"]));
    let bad = Command::new(BIN).args(["cron", "next", "0 12 * * *", "--dialect", "quartz"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("the quartz dialect takes 6"), "{}", text(&bad));
}

/// A self-signed certificate for localhost and 127.0.0.1, made with openssl.
fn self_signed(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // A server certificate, not a CA (openssl's default for -x509), or rustls refuses it.
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    (cert, key)
}

#[test]
fn over_https_the_console_the_cli_and_workers_use_tls_and_an_untrusted_worker_is_told_why() {
    let certs = std::env::temp_dir().join(format!("orrery-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    let (cert_path, key_path) = self_signed(&certs);
    let cert = cert_path.display().to_string();
    let up = up_with(
        vec![
            ("ORRERY_TLS_CERT_FILE".into(), cert.clone()),
            ("ORRERY_TLS_KEY_FILE".into(), key_path.display().to_string()),
        ],
        "https",
        &["--cacert", &cert],
    );
    let https = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--server", &up.server, "--ca-cert", &cert, "--data-dir"])
            .arg(&up.dir)
            .output()
            .unwrap()
    };
    // Plain HTTP on the port gets nothing; HTTPS with the certificate trusted answers.
    let plain = up.server.replace("https://", "http://");
    assert!(!Command::new("curl").args(["-fs", &format!("{plain}/healthz")]).status().unwrap().success());
    // The CLI without the certificate is refused by its own TLS check, with it all works.
    let untrusted = cli(&up, &["workflow", "list"]);
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    std::fs::write(
        up.dir.join("tls.yaml"),
        "name: tls\ntasks:\n  - {id: local, kind: shell, config: {script: \"echo local over tls\"}}\n  - {id: remote, kind: shell, pool: edge, depends_on: [local], config: {script: \"echo remote over tls\"}}\n",
    )
    .unwrap();
    let applied = https(&["workflow", "apply", "-f", up.dir.join("tls.yaml").to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied));

    // A worker of its own, trusting the certificate, serves pool `edge`; `orrery up`'s own worker
    // (pool `default`) connects over HTTPS as well.
    let token = https(&["token", "create", "edge-worker", "--worker"]);
    assert!(token.status.success(), "{}", text(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let spawn_worker = |trust: bool| {
        let mut c = Command::new(BIN);
        c.args(["worker", "--server", &up.server, "--pool", "edge", "--slots", "1", "--work-dir"])
            .arg(up.dir.join(if trust { "work-edge" } else { "work-untrusting" }))
            .env("ORRERY_WORKER_TOKEN", &token)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if trust {
            c.args(["--ca-cert", &cert]).stderr(Stdio::null());
        }
        c.spawn().unwrap()
    };
    let mut untrusting = spawn_worker(false);
    let mut edge = spawn_worker(true);
    let run = https(&["run", "trigger", "tls", "--wait"]);
    let _ = edge.kill();
    let _ = edge.wait();
    assert!(run.status.success(), "{}", text(&run));
    let _ = untrusting.kill();
    let out = untrusting.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("invalid peer certificate: UnknownIssuer") && said.contains("--ca-cert"),
        "the untrusting worker did not say why it cannot connect: {said}"
    );
    let _ = std::fs::remove_dir_all(&certs);
}
