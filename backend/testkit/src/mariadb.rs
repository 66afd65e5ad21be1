//! A private MariaDB server for tests of MySQL connections, shared by test processes like the
//! PostgreSQL cluster: started on first use under `target/testkit-mariadb`, on 127.0.0.1 only,
//! detached so later test processes attach to it; `infra/dev/test-db-stop.sh` stops it.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use sqlx::{Connection, Executor, MySqlConnection};

const USER: &str = "orrery";
const PASSWORD: &str = "orrery-test-pw";

static URL: OnceLock<String> = OnceLock::new();

fn dir() -> PathBuf {
    std::env::var_os("ORRERY_TEST_MARIADB_DIR")
        .map_or_else(|| super::workspace_root().join("target/testkit-mariadb"), PathBuf::from)
}

fn program(name: &str) -> PathBuf {
    for d in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(d).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: `make setup` installs mariadb-server (Debian), which the MySQL tests run against")
}

fn alive(dir: &Path) -> Option<u16> {
    let pid: i32 = fs::read_to_string(dir.join("mariadbd.pid")).ok()?.trim().parse().ok()?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).ok()?;
    let port: u16 = fs::read_to_string(dir.join("port")).ok()?.trim().parse().ok()?;
    std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    Some(port)
}

fn start(dir: &Path) -> u16 {
    let _ = fs::remove_dir_all(dir.join("data"));
    fs::create_dir_all(dir.join("data")).expect("create the MariaDB data directory");
    let root = nix::unistd::geteuid().is_root();
    let mut install = Command::new(program("mariadb-install-db"));
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if root {
        install.arg("--user=root");
    }
    let out = install.output().expect("run mariadb-install-db");
    assert!(out.status.success(), "mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr));
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut server = Command::new(program("mariadbd"));
    server
        .arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--socket={}", dir.join("mariadbd.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
        .arg(format!("--port={port}"))
        .args([
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--max-connections=200",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("mariadbd.log")).expect("create the MariaDB log"));
    if root {
        server.arg("--user=root");
    }
    // Its own session: it outlives this test process, for the next ones.
    #[expect(unsafe_code, reason = "pre_exec runs between fork and exec; setsid is async-signal-safe")]
    // SAFETY: setsid(2) is async-signal-safe and nothing here allocates.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        server.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    // Not waited for: it is meant to outlive this process (a later test process reuses it; when
    // this one exits, init reaps it).
    #[expect(clippy::zombie_processes, reason = "a detached daemon shared by test processes")]
    let _daemon = server.spawn().expect("start mariadbd");
    for _ in 0..300 {
        if alive(dir).is_some() || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            fs::write(dir.join("port"), port.to_string()).expect("write the port");
            return port;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("mariadbd did not start in 30 s; see {}", dir.join("mariadbd.log").display())
}

/// The shared server's admin URL, starting it if needed.
fn shared() -> &'static str {
    URL.get_or_init(|| {
        std::thread::spawn(|| {
            let dir = dir();
            fs::create_dir_all(&dir).expect("create the MariaDB test directory");
            let lock = fs::File::create(dir.join("lock")).expect("create the MariaDB lock");
            let _lock = Flock::lock(lock, FlockArg::LockExclusive).expect("lock the MariaDB directory");
            let port = match alive(&dir) {
                Some(p) => p,
                None => {
                    let port = start(&dir);
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    rt.block_on(async {
                        let mut root = MySqlConnection::connect(&format!("mysql://root@127.0.0.1:{port}/mysql"))
                            .await
                            .expect("connect to MariaDB as root");
                        for stmt in [
                            format!("CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'"),
                            format!("GRANT ALL ON *.* TO '{USER}'@'%'"),
                        ] {
                            root.execute(stmt.as_str()).await.expect("create the test user");
                        }
                    });
                    port
                }
            };
            format!("mysql://{USER}:{PASSWORD}@127.0.0.1:{port}")
        })
        .join()
        .expect("MariaDB setup panicked")
    })
}

/// An empty database on the shared MariaDB server, as a `mysql://` URL with a password.
pub async fn scratch_mysql() -> String {
    let base = shared();
    let mut admin = MySqlConnection::connect(&format!("{base}/mysql")).await.expect("connect to MariaDB");
    let name = format!("t_{:016x}", rand::random::<u64>());
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create a scratch database");
    format!("{base}/{name}")
}
