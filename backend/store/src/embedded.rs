//! A private PostgreSQL cluster run from the system's own binaries: `orrery up`'s default database
//! and the test suite's. Process management, not SQL.
//!
//! Layout under the directory given (`<dir>`):
//!
//! ```text
//! <dir>/pgdata/           the cluster (PGDATA), owned by the OS user postgres runs as
//! <dir>/postgres.password the superuser password (mode 0600)
//! <dir>/postgres.log      the server log
//! ```
//!
//! PostgreSQL refuses to run as root; when we are root it runs as the `postgres` OS user (or
//! `nobody` when there is none), and the cluster directory is handed to that user.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User};

/// Why the private cluster could not be started. Each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL's server programs (initdb, postgres) were not found on PATH or under /usr/lib/postgresql/*/bin: \
         install them (Debian/Ubuntu: `apt-get install postgresql`) or point Orrery at an existing database with --database-url"
    )]
    MissingBinaries,
    #[error(
        "{dir} does not hold PostgreSQL's server programs (initdb, postgres): fix database.embedded_bin_dir, \
         or unset it to search PATH and /usr/lib/postgresql/*/bin"
    )]
    NoBinariesIn { dir: PathBuf },
    #[error(
        "{dir} holds a PostgreSQL {found} cluster but the installed server is PostgreSQL {have}: \
         install PostgreSQL {found}'s server, or move the directory away to start afresh (its data stays there)"
    )]
    VersionMismatch { dir: PathBuf, found: String, have: String },
    #[error(
        "{dir} exists but is not a PostgreSQL cluster (no PG_VERSION file): it may be corrupt or something else; \
         move it away or choose another --data-dir. Nothing in it was changed"
    )]
    NotACluster { dir: PathBuf },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("initdb failed ({status}): {log}")]
    Initdb { status: String, log: String },
    #[error("PostgreSQL did not start ({reason}); the last lines of {log_path}:\n{log}")]
    Start { reason: String, log_path: PathBuf, log: String },
    #[error(
        "running PostgreSQL as root is refused by PostgreSQL, and no unprivileged OS user (postgres or nobody) exists to run it as"
    )]
    NoUnprivilegedUser,
    #[error(
        "the OS user {user} that runs PostgreSQL cannot pass through {dir} (it is not searchable by others, \
         like a home directory with mode 0700): choose a --data-dir elsewhere, or `chmod o+x {dir}`"
    )]
    NotReachable { user: String, dir: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io { path: path.to_owned(), source }
}

/// How to run the cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Holds `pgdata/`, the password and the log.
    pub dir: PathBuf,
    /// Where `initdb` and `postgres` are; found automatically when None.
    pub bin_dir: Option<PathBuf>,
    /// Extra `-c name=value` server settings (tests turn durability off for speed).
    pub settings: Vec<(String, String)>,
    /// Send the cluster SIGQUIT (immediate stop) when this process dies, even by kill -9.
    /// Linux ties this to the spawning thread: start it from a thread that lives as long as you want it.
    pub die_with_parent: bool,
    /// Detach from our session and stdio (a cluster shared across processes).
    pub detach: bool,
}

/// A running private cluster. Dropping it stops PostgreSQL (fast shutdown) unless it was detached.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    password: String,
    child: Option<Child>,
}

pub const SUPERUSER: &str = "orrery";

impl Cluster {
    /// Finds the server binaries: on PATH first, then the newest /usr/lib/postgresql/*/bin.
    pub fn find_binaries() -> Result<PathBuf, EmbeddedError> {
        let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
        for dir in on_path {
            if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
                return Ok(fs::canonicalize(dir.join("postgres"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_owned))
                    .unwrap_or(dir));
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((v, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, p)| p).ok_or(EmbeddedError::MissingBinaries)
    }

    /// The major version of the binaries in `bin_dir`, e.g. "15".
    pub fn binary_version(bin_dir: &Path) -> Result<String, EmbeddedError> {
        let out = Command::new(bin_dir.join("postgres")).arg("--version").output().map_err(io_err(bin_dir))?;
        // "postgres (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)"
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.split_whitespace().nth(2).unwrap_or_default();
        Ok(version.split('.').next().unwrap_or_default().to_owned())
    }

    pub fn pgdata(dir: &Path) -> PathBuf {
        dir.join("pgdata")
    }

    /// Creates the cluster when absent, refuses a foreign or damaged directory, clears what a
    /// killed predecessor left behind, starts PostgreSQL on a free 127.0.0.1 port and waits until
    /// it accepts connections.
    ///
    /// The caller must hold the data directory's lock: any PostgreSQL still running on this
    /// cluster is then an orphan of a killed process, and is stopped.
    pub fn start(spec: &ClusterSpec) -> Result<Cluster, EmbeddedError> {
        let bin = match &spec.bin_dir {
            Some(b) if b.join("initdb").is_file() && b.join("postgres").is_file() => b.clone(),
            Some(b) => return Err(EmbeddedError::NoBinariesIn { dir: b.clone() }),
            None => Self::find_binaries()?,
        };
        let have = Self::binary_version(&bin)?;
        let pgdata = Self::pgdata(&spec.dir);
        fs::create_dir_all(&spec.dir).map_err(io_err(&spec.dir))?;
        let run_as = run_as_user()?;
        if let Some(u) = &run_as {
            ensure_reachable(&spec.dir, u)?;
        }
        let password = read_or_create_password(&spec.dir.join("postgres.password"))?;

        match fs::read_to_string(pgdata.join("PG_VERSION")) {
            Ok(found) if found.trim() == have => {}
            Ok(found) => {
                return Err(EmbeddedError::VersionMismatch { dir: pgdata, found: found.trim().to_owned(), have });
            }
            Err(_) if pgdata.exists() && fs::read_dir(&pgdata).map_err(io_err(&pgdata))?.next().is_some() => {
                return Err(EmbeddedError::NotACluster { dir: pgdata });
            }
            Err(_) => initdb(&bin, &pgdata, &password, run_as.as_ref())?,
        }
        stop_orphan(&pgdata);

        let log_path = spec.dir.join("postgres.log");
        let mut last_err = None;
        // A free port can be taken between our probe and postgres' bind: try a few.
        for _ in 0..3 {
            let port = free_port().map_err(io_err(&spec.dir))?;
            match spawn_postgres(&bin, &pgdata, port, spec, run_as.as_ref(), &log_path) {
                Ok(mut child) => {
                    let child = if spec.detach {
                        // Not ours to stop, but ours to reap when it exits, so no zombie lingers.
                        std::thread::spawn(move || child.wait());
                        None
                    } else {
                        Some(child)
                    };
                    return Ok(Cluster { dir: spec.dir.clone(), port, password, child });
                }
                Err(e @ EmbeddedError::Start { .. }) if e.to_string().contains("already in use") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("three attempts were made"))
    }

    /// Attaches to a detached cluster already running from `dir` (tests share one across processes).
    pub fn attach(dir: &Path) -> Option<Cluster> {
        let pgdata = Self::pgdata(dir);
        let pid_file = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
        let lines: Vec<&str> = pid_file.lines().collect();
        let pid: i32 = lines.first()?.trim().parse().ok()?;
        let port: u16 = lines.get(3)?.trim().parse().ok()?;
        let alive = kill(Pid::from_raw(pid), None).is_ok() && lines.get(7).is_some_and(|s| s.trim() == "ready");
        let password = fs::read_to_string(dir.join("postgres.password")).ok()?;
        alive.then(|| Cluster { dir: dir.to_owned(), port, password: password.trim().to_owned(), child: None })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A URL for `database` as the cluster's superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    /// Fast shutdown (rolls back open transactions, checkpoints), escalating to immediate after 30 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = kill(pid, Signal::SIGQUIT);
        let _ = child.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

struct OsUser {
    name: String,
    uid: u32,
    gid: u32,
}

/// None: run as ourselves. Some: we are root, run as this user.
fn run_as_user() -> Result<Option<OsUser>, EmbeddedError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(u)) = User::from_name(name) {
            return Ok(Some(OsUser { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw() }));
        }
    }
    Err(EmbeddedError::NoUnprivilegedUser)
}

/// The unprivileged user must be able to traverse to the cluster. Our own directory is opened for
/// traversal only (o+x, no listing; its secrets are 0600); a parent we do not own is reported.
fn ensure_reachable(dir: &Path, user: &OsUser) -> Result<(), EmbeddedError> {
    let dir = fs::canonicalize(dir).map_err(io_err(dir))?;
    let mode = fs::metadata(&dir).map_err(io_err(&dir))?.permissions().mode();
    if mode & 0o001 == 0 {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o001)).map_err(io_err(&dir))?;
    }
    for parent in dir.ancestors().skip(1) {
        let mode = fs::metadata(parent).map_err(io_err(parent))?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(EmbeddedError::NotReachable { user: user.name.clone(), dir: parent.to_owned() });
        }
    }
    Ok(())
}

fn read_or_create_password(path: &Path) -> Result<String, EmbeddedError> {
    if let Ok(p) = fs::read_to_string(path) {
        return Ok(p.trim().to_owned());
    }
    let mut bytes = [0u8; 24];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(io_err(path))?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io_err(path))?;
    f.write_all(password.as_bytes()).map_err(io_err(path))?;
    Ok(password)
}

fn chown_tree(path: &Path, user: &OsUser) -> Result<(), EmbeddedError> {
    nix::unistd::chown(path, Some(user.uid.into()), Some(user.gid.into()))
        .map_err(|e| EmbeddedError::Io { path: path.to_owned(), source: e.into() })?;
    if path.is_dir() {
        for entry in fs::read_dir(path).map_err(io_err(path))? {
            chown_tree(&entry.map_err(io_err(path))?.path(), user)?;
        }
    }
    Ok(())
}

fn initdb(bin: &Path, pgdata: &Path, password: &str, run_as: Option<&OsUser>) -> Result<(), EmbeddedError> {
    fs::create_dir_all(pgdata).map_err(io_err(pgdata))?;
    fs::set_permissions(pgdata, fs::Permissions::from_mode(0o700)).map_err(io_err(pgdata))?;
    // initdb reads the password from a file: private to the user running initdb, removed at once.
    let pwfile = pgdata.with_file_name(".initdb-password");
    let _ = fs::remove_file(&pwfile);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&pwfile)
        .and_then(|mut f| f.write_all(password.as_bytes()))
        .map_err(io_err(&pwfile))?;
    if let Some(u) = run_as {
        chown_tree(pgdata, u)?;
        chown_tree(&pwfile, u)?;
    }
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(pgdata)
        .args([
            "--username",
            SUPERUSER,
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .stdin(Stdio::null());
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
    let out = cmd.output().map_err(io_err(bin));
    let _ = fs::remove_file(&pwfile);
    let out = out?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        // Leave no half-made cluster behind: the next start would call it corrupt.
        let _ = fs::remove_dir_all(pgdata);
        if run_as.is_some() && log.contains("Permission denied") {
            return Err(EmbeddedError::NotReachable {
                user: run_as.map(|u| u.name.clone()).unwrap_or_default(),
                dir: pgdata.to_owned(),
            });
        }
        return Err(EmbeddedError::Initdb { status: out.status.to_string(), log });
    }
    Ok(())
}

/// A postmaster left running on this cluster by a killed predecessor is stopped; a stale pid file
/// whose process is gone is left for PostgreSQL, which handles it. A postmaster that died but is
/// not yet reaped (a zombie) still blocks PostgreSQL's own check, so we wait for it to vanish.
fn stop_orphan(pgdata: &Path) {
    let Ok(pid_file) = fs::read_to_string(pgdata.join("postmaster.pid")) else { return };
    let Some(raw) = pid_file.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else { return };
    let pid = Pid::from_raw(raw);
    match process_state(raw) {
        None => return,
        Some('Z') => {}
        Some(_) => {
            // PIDs are reused: only a postgres whose working directory is this cluster is ours.
            let is_ours = fs::read_link(format!("/proc/{raw}/cwd"))
                .ok()
                .zip(fs::canonicalize(pgdata).ok())
                .is_some_and(|(a, b)| a == b)
                && fs::read(format!("/proc/{raw}/comm"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).starts_with("postgres"));
            if !is_ours {
                return;
            }
            tracing::warn!(
                pid = raw,
                "stopping a PostgreSQL left running on {} by a previous process",
                pgdata.display()
            );
            let _ = kill(pid, Signal::SIGINT);
            if !wait_until(Duration::from_secs(30), || process_state(raw).is_none_or(|s| s == 'Z')) {
                let _ = kill(pid, Signal::SIGQUIT);
            }
        }
    }
    wait_until(Duration::from_secs(10), || process_state(raw).is_none());
}

/// The state letter of /proc/<pid>/stat (R, S, Z, ...), or None when there is no such process.
fn process_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ..." — comm may contain spaces and parentheses; the state follows the last ')'.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn_postgres(
    bin: &Path,
    pgdata: &Path,
    port: u16,
    spec: &ClusterSpec,
    run_as: Option<&OsUser>,
    log_path: &Path,
) -> Result<Child, EmbeddedError> {
    let mut log = fs::OpenOptions::new().create(true).append(true).open(log_path).map_err(io_err(log_path))?;
    let log_start = log.seek(SeekFrom::End(0)).map_err(io_err(log_path))?;
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(pgdata)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_err(log_path))?)
        .stderr(log.try_clone().map_err(io_err(log_path))?);
    for (k, v) in &spec.settings {
        cmd.arg("-c").arg(format!("{k}={v}"));
    }
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
    let die_with_parent = spec.die_with_parent;
    let detach = spec.detach;
    #[expect(unsafe_code, reason = "pre_exec runs between fork and exec; it only calls async-signal-safe prctl/setsid")]
    // SAFETY: the closure calls only prctl(2) and setsid(2), both async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if detach {
                nix::unistd::setsid()?;
            }
            if die_with_parent {
                nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT)?;
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io_err(bin))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(start_error(format!("postgres exited with {status}"), log_path, log_start));
        }
        let ready = fs::read_to_string(pgdata.join("postmaster.pid")).is_ok_and(|s| {
            s.lines().nth(7).is_some_and(|l| l.trim() == "ready")
                && s.lines().nth(3).is_some_and(|l| l.trim() == port.to_string())
        });
        if ready {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = kill(Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)), Signal::SIGQUIT);
            let _ = child.wait();
            return Err(start_error("it was not ready after 60 s".into(), log_path, log_start));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_error(reason: String, log_path: &Path, from: u64) -> EmbeddedError {
    let text = fs::read(log_path)
        .map(|b| String::from_utf8_lossy(&b[usize::try_from(from).unwrap_or(0).min(b.len())..]).into_owned())
        .unwrap_or_default();
    let log = text.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    EmbeddedError::Start { reason, log_path: log_path.to_owned(), log }
}
