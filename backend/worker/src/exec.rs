//! Running one attempt: its directory, its process group, its environment, its limits, its end.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cgroup::{AttemptCgroup, Hierarchy};
use crate::logs;

/// One attempt to run, as the server assigned it.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub tenant_id: String,
    pub attempt_id: String,
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    pub workflow: String,
    pub logical_time: String,
    /// `{"kind": "...", "config": {...}}`, templates rendered.
    pub task: Value,
    pub params: serde_json::Map<String, Value>,
    pub timeout: Option<Duration>,
    /// `resources.cpu` in thousandths of a core; 0 = no quota.
    pub cpu_millis: u32,
    /// `resources.memory`; 0 = no limit.
    pub memory_bytes: u64,
}

/// How attempts run on this worker.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// Each attempt gets `<work_root>/<attempt id>` (or its launcher's `<work_root>/next-…`);
    /// removed when it ends.
    pub work_root: PathBuf,
    /// Log bytes kept per attempt.
    pub log_cap: u64,
    /// Between SIGTERM and SIGKILL when an attempt is stopped.
    pub kill_grace: Duration,
    /// Where attempts' cgroups go (limits, accounting, a tree nothing escapes).
    pub cgroups: Hierarchy,
    /// Names this worker's cgroup directory.
    pub worker_id: String,
    /// Where `plugin` tasks' executables are (docs/PLUGINS.md); none: no plugins.
    pub plugin_dir: Option<PathBuf>,
    /// The user every attempt's processes run as (`--run-as`); none: the worker's own.
    pub run_as: Option<RunAs>,
    /// Set by the worker's session when it could start one (`cgroup::Warden`): attempts with a
    /// cgroup then run with no supervisor process.
    pub warden: Option<Arc<crate::cgroup::Warden>>,
    /// An ended attempt's cgroup and directory are removed here, after its report has gone; the
    /// session waits for them before it removes the worker's own cgroup.
    pub cleanup: tokio_util::task::TaskTracker,
    /// Set by the worker's session where attempts get cgroups: processes started ahead of their
    /// attempts (`launch`).
    pub launchers: Option<Arc<crate::launch::Launchers>>,
}

/// A user attempts run as, resolved once when the worker starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl RunAs {
    /// Looks `name` up; the worker must be able to switch to it (root, or that user already).
    pub fn resolve(name: &str) -> Result<RunAs, String> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| format!("--run-as {name}: looking the user up: {e}"))?
            .ok_or_else(|| format!("--run-as {name}: no such user on this machine"))?;
        let me = nix::unistd::geteuid();
        if !me.is_root() && me != user.uid {
            return Err(format!(
                "--run-as {name}: only a worker running as root can run tasks as another user (this one is uid {me})"
            ));
        }
        let cname = std::ffi::CString::new(name).map_err(|_| format!("--run-as {name:?}: not a user name"))?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid)
            .map_err(|e| format!("--run-as {name}: reading its groups: {e}"))?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        Ok(RunAs { name: name.to_owned(), uid: user.uid.as_raw(), gid: user.gid.as_raw(), groups })
    }

    /// Can the user reach `dir` (every ancestor searchable by it)? The reason when not.
    pub fn check_reaches(&self, dir: &Path) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt as _;
        for d in dir.ancestors() {
            let m = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
            let bits = if m.uid() == self.uid {
                m.mode() >> 6
            } else if m.gid() == self.gid || self.groups.contains(&m.gid()) {
                m.mode() >> 3
            } else {
                m.mode()
            };
            if bits & 0o1 == 0 {
                return Err(format!(
                    "tasks run as {} cannot reach the work directory {}: {} is not searchable by that user \
                     (choose a --work-dir elsewhere, or chmod o+x {})",
                    self.name,
                    dir.display(),
                    d.display(),
                    d.display()
                ));
            }
        }
        Ok(())
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    Succeeded { outputs: BTreeMap<String, String> },
    Failed { exit_code: i32, reason: String },
    TimedOut,
    Cancelled,
}

impl Finish {
    pub fn state(&self) -> &'static str {
        match self {
            Finish::Succeeded { .. } => "succeeded",
            Finish::Failed { .. } => "failed",
            Finish::TimedOut => "timed_out",
            Finish::Cancelled => "cancelled",
        }
    }
}

/// How a running attempt is asked to stop.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    asked: CancellationToken,
    urgent: Arc<AtomicBool>,
}

impl Stop {
    /// SIGTERM, the grace period, then SIGKILL (a cancel, a drain that gives up).
    pub fn graceful(&self) {
        self.asked.cancel();
    }

    /// SIGKILL now, cutting short a grace period under way: the attempt's lease may be handed on
    /// any moment (fencing), so it must be gone first.
    pub fn urgent(&self) {
        self.urgent.store(true, Ordering::SeqCst);
        self.asked.cancel();
    }

    pub fn is_asked(&self) -> bool {
        self.asked.is_cancelled()
    }

    pub fn is_urgent(&self) -> bool {
        self.urgent.load(Ordering::SeqCst)
    }

    pub async fn asked(&self) {
        self.asked.cancelled().await;
    }
}

/// Most bytes read from `$ORRERY_OUTPUT`.
const MAX_OUTPUT_FILE: usize = 64 * 1024;

/// A file the task left in its directory (`$ORRERY_OUTPUT`, a plugin's result): its size and at
/// most `max` bytes of it. Not through a symlink, only a regular file (a FIFO would block the
/// worker), and when tasks run as another user (`owner`) only one that user owns: the worker may
/// be root, and a task must not have it read, and report as outputs, a file the task could not
/// read itself.
pub(crate) fn read_task_file(path: &Path, max: u64, owner: Option<u32>) -> std::io::Result<(u64, Vec<u8>)> {
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if owner.is_some_and(|uid| meta.uid() != uid) {
        return Err(std::io::Error::other("not the task user's file"));
    }
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes)?;
    Ok((meta.len(), bytes))
}

/// `key=value` lines; blank lines and `#` comments ignored; the last value of a key wins.
pub fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.trim().is_empty() && k.trim().len() <= 100)
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .collect()
}

/// Runs `a` to its end. Logs go to `logs` (bounded: a slow consumer slows the task).
pub async fn run(a: &Attempt, cfg: &ExecConfig, logs: mpsc::Sender<Vec<u8>>, stop: Stop) -> Finish {
    let kind = a.task["kind"].as_str().unwrap_or_default();
    let config = &a.task["config"];
    let work = async {
        match kind {
            "noop" => Finish::Succeeded { outputs: BTreeMap::new() },
            "sleep" => {
                let secs = config["seconds"].as_f64().unwrap_or(0.0).clamp(0.0, 365.0 * 86_400.0);
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                Finish::Succeeded { outputs: BTreeMap::new() }
            }
            "shell" => {
                let shell = config["shell"].as_str().unwrap_or("bash").to_owned();
                let script = config["script"].as_str().unwrap_or_default().to_owned();
                run_script(a, cfg, &shell, &[], "script.sh", &script, logs.clone(), stop.clone()).await
            }
            "python" => {
                let interpreter = config["interpreter"].as_str().unwrap_or("python3").to_owned();
                match (config["script"].as_str(), config["file"].as_str()) {
                    (Some(script), _) => {
                        run_script(a, cfg, &interpreter, &[], "script.py", script, logs.clone(), stop.clone()).await
                    }
                    (None, Some(file)) => {
                        run_command(a, cfg, &interpreter, &[file.to_owned()], None, None, logs.clone(), stop.clone())
                            .await
                    }
                    (None, None) => {
                        Finish::Failed { exit_code: -1, reason: "a python task needs `script` or `file`".into() }
                    }
                }
            }
            "http" => crate::http::run(config, logs.clone()).await,
            "sql" => crate::sql::run(&a.task, a.timeout, logs.clone(), stop.clone()).await,
            "plugin" => {
                let name = config["plugin"].as_str().unwrap_or_default();
                match crate::plugin::resolve(cfg.plugin_dir.as_deref(), name) {
                    Ok(exe) => {
                        let program = exe.display().to_string();
                        let io = Some(crate::plugin::input(a));
                        run_command(a, cfg, &program, &[], None, io, logs.clone(), stop.clone()).await
                    }
                    Err(reason) => Finish::Failed { exit_code: -1, reason },
                }
            }
            other => Finish::Failed {
                exit_code: -1,
                reason: format!(
                    "this worker does not run `{other}` tasks (it runs shell, python, http, sql, plugin, noop and sleep)"
                ),
            },
        }
    };
    // Processes (they must kill a tree) and queries (they must be cancelled on the database)
    // handle cancel and timeout themselves; the rest stop here.
    let own = matches!(kind, "shell" | "python" | "sql" | "plugin");
    let deadline = a.timeout.map(|t| tokio::time::Instant::now() + t);
    tokio::select! {
        f = work => f,
        () = stop.asked(), if !own => Finish::Cancelled,
        () = sleep_until(deadline), if !own => Finish::TimedOut,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[expect(clippy::too_many_arguments, reason = "the attempt, its config, and the script's parts")]
async fn run_script(
    a: &Attempt,
    cfg: &ExecConfig,
    program: &str,
    args: &[String],
    file_name: &str,
    script: &str,
    logs: mpsc::Sender<Vec<u8>>,
    stop: Stop,
) -> Finish {
    let mut all = args.to_vec();
    all.push(file_name.to_owned());
    run_command(a, cfg, program, &all, Some((file_name, script)), None, logs, stop).await
}

/// The environment of an attempt: nothing inherited but a sane PATH and locale, then the attempt's
/// context and its params (`ORRERY_PARAM_<NAME>`, upper-cased, non-alphanumerics as `_`).
fn environment(a: &Attempt, dir: &Path) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_owned(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ("HOME".to_owned(), dir.display().to_string()),
        ("ORRERY_TENANT_ID".to_owned(), a.tenant_id.clone()),
        ("ORRERY_ATTEMPT_ID".to_owned(), a.attempt_id.clone()),
        ("ORRERY_RUN_ID".to_owned(), a.run_id.clone()),
        ("ORRERY_TASK_ID".to_owned(), a.task_id.clone()),
        ("ORRERY_ATTEMPT".to_owned(), a.attempt.to_string()),
        ("ORRERY_WORKFLOW".to_owned(), a.workflow.clone()),
        ("ORRERY_LOGICAL_TIME".to_owned(), a.logical_time.clone()),
        ("ORRERY_OUTPUT".to_owned(), dir.join(".orrery-output").display().to_string()),
    ];
    for (k, v) in &a.params {
        let name: String =
            k.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        let value = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        env.push((format!("ORRERY_PARAM_{name}"), value));
    }
    env
}

/// Without a cgroup and its warden (`cgroup::Warden`), the leader of an attempt's process group: a
/// tiny `sh` supervisor that runs the task's program as its child (with the supervisor's stdin: a
/// background job's would be /dev/null). The worker sets its parent-death signal to SIGUSR1, so
/// when the worker dies (kill -9, OOM) the supervisor kills the whole group — the task's children
/// included, which the kernel's parent-death signal alone would leave running. SIGTERM and friends
/// are caught and ignored by the supervisor only (a handler, not SIG_IGN, so the task still
/// receives them with their default effect), and it exits with the task's status. (Started with
/// fork: `posix_spawn` through util-linux's `setpriv --pdeathsig` copies none of the worker's
/// memory but costs an exec more, and was slower at the worker's ~3 MB of anonymous memory: 2.5–2.8
/// ms against 2.1 ms.) With a cgroup the warden does this job for every attempt at once, and the
/// task's own process leads its group: this second process cost ~1.1 ms a task (`sh` started, and
/// its fork: `/bin/true` 0.78 ms p50 bare, 1.93 ms under the supervisor, 1,000 runs each).
const SUPERVISOR: &str = r#"unset PWD OLDPWD SHLVL
trap 'kill -KILL 0' USR1
trap ':' TERM INT HUP
exec 3<&0
"$@" <&3 3<&- &
pid=$!
exec 3<&- 0</dev/null
while :; do
  wait "$pid"; status=$?
  kill -0 "$pid" 2>/dev/null || exit "$status"
done"#;

/// Runs a program in the attempt's directory (`file`: a script written there first, by name), in
/// a new session, and waits for it, its timeout, or its cancellation. The process is a launcher
/// made ahead (`launch`) where one is ready and fits; else it is started here (cold), led by the
/// supervisor above where there is no warden. `plugin`: the document a plugin reads on stdin (it
/// also gets `$ORRERY_RESULT`).
#[expect(clippy::too_many_arguments, reason = "the attempt, its config, and the command's parts")]
async fn run_command(
    a: &Attempt,
    cfg: &ExecConfig,
    program: &str,
    args: &[String],
    file: Option<(&str, &str)>,
    plugin: Option<Vec<u8>>,
    logs: mpsc::Sender<Vec<u8>>,
    stop: Stop,
) -> Finish {
    let launcher = cfg.launchers.as_ref().filter(|_| plugin.is_none() && launchable(a, cfg, program, args));
    let launched = match launcher.and_then(|l| l.take()) {
        Some(l) => match become_task(l, a, program, args, file).await {
            Ok(started) => Some(started),
            Err((l, why)) => {
                tracing::debug!(attempt.id = %a.attempt_id, "a launcher could not take the task ({why}): it starts cold");
                if let Some(ls) = launcher {
                    ls.discard(l);
                }
                None
            }
        },
        None => None,
    };
    let (dir, cgroup, child) = match launched {
        Some((dir, cgroup, child)) => (dir, Some(cgroup), child),
        None => {
            let dir = cfg.work_root.join(&a.attempt_id);
            // A new directory of its own, the script in it, then the task's user may write there
            // ($HOME, $ORRERY_OUTPUT): nothing of a task's can be in the way of what the worker
            // writes (a directory made ahead, a link), and no link is followed.
            if let Err(e) = std::fs::create_dir(&dir) {
                return Finish::Failed { exit_code: -1, reason: format!("preparing {}: {e}", dir.display()) };
            }
            let prepared =
                file.map_or(Ok(()), |(name, text)| write_new(&dir.join(name), text)).and_then(|()| match &cfg.run_as {
                    Some(u) => std::os::unix::fs::lchown(&dir, Some(u.uid), Some(u.gid)),
                    None => Ok(()),
                });
            if let Err(e) = prepared {
                let _ = std::fs::remove_dir_all(&dir);
                return Finish::Failed { exit_code: -1, reason: format!("preparing {}: {e}", dir.display()) };
            }
            let cgroup = match AttemptCgroup::create(
                &cfg.cgroups,
                &cfg.worker_id,
                &a.attempt_id,
                a.cpu_millis,
                a.memory_bytes,
            ) {
                Ok(c) => c,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Finish::Failed {
                        exit_code: -1,
                        reason: format!("creating the attempt's cgroup under {}: {e}", cfg.cgroups.describe()),
                    };
                }
            };
            match spawn(a, cfg, &dir, cgroup.as_ref(), program, args, plugin.is_some()) {
                Ok(child) => (dir, cgroup, child),
                Err(finish) => {
                    remove_later(cfg, cgroup, dir);
                    return finish;
                }
            }
        }
    };
    let finish = run_in(a, cfg, &dir, cgroup.as_ref(), child, program, plugin, logs, stop).await;
    // Off the report's path (~0.2 ms a task): nothing of the attempt runs any more (`run_in` killed
    // what its leader left), and the attempt's id is never used again.
    remove_later(cfg, cgroup, dir);
    finish
}

/// Removes an ended attempt's cgroup (killing stragglers: they cannot have left it) and its
/// directory, on the worker's cleanup tracker.
fn remove_later(cfg: &ExecConfig, cgroup: Option<AttemptCgroup>, dir: PathBuf) {
    cfg.cleanup.spawn_blocking(move || {
        if let Some(cg) = cgroup {
            cg.remove();
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// Whether a launcher can become this task: tasks run as the worker's own user (under `--run-as`
/// a waiting launcher would run as the user every task runs as, whom a running task could stop or
/// trace before it became another tenant's task), the worker's warden runs (a launcher has no
/// supervisor), its script can say everything, and its program is where a cold start would find
/// it (a missing one is reported as such by a cold start).
fn launchable(a: &Attempt, cfg: &ExecConfig, program: &str, args: &[String]) -> bool {
    let env = environment(a, Path::new("/"));
    let path = env.iter().find(|(k, _)| k == "PATH").map_or("", |(_, v)| v.as_str());
    cfg.run_as.is_none()
        && cfg.warden.as_ref().is_some_and(|w| w.alive())
        && crate::launch::findable(program, path)
        && crate::launch::script(&env, program, args).is_some()
}

/// Most time the worker waits for a launcher's shell to take a script too large for the pipe's
/// buffer (it reads at once; a stopped one never does, and the task then starts cold).
const SCRIPT_TAKEN_WITHIN: Duration = Duration::from_secs(5);

/// Makes launcher `l` this attempt: its limits, its script file, and the script that turns the
/// shell into the task. The launcher back, with why,
/// when any of that fails: nothing of the task has run, and it can start cold.
async fn become_task(
    mut l: crate::launch::Launcher,
    a: &Attempt,
    program: &str,
    args: &[String],
    file: Option<(&str, &str)>,
) -> Result<(PathBuf, AttemptCgroup, tokio::process::Child), (crate::launch::Launcher, String)> {
    if let Err(e) = l.cgroup.limit(a.cpu_millis, a.memory_bytes) {
        return Err((l, format!("setting its limits: {e}")));
    }
    if let Some((name, text)) = file
        && let Err(e) = write_new(&l.dir.join(name), text)
    {
        let why = format!("preparing {}: {e}", l.dir.display());
        return Err((l, why));
    }
    let Some(script) = crate::launch::script(&environment(a, &l.dir), program, args) else {
        return Err((l, "its script cannot say the task".into()));
    };
    let Some(mut stdin) = l.child.stdin.take() else { return Err((l, "its stdin is gone".into())) };
    use tokio::io::AsyncWriteExt as _;
    let written = match tokio::time::timeout(SCRIPT_TAKEN_WITHIN, stdin.write_all(script.as_bytes())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing its script: {e}")),
        Err(_) => Err(format!("its shell did not take its script within {SCRIPT_TAKEN_WITHIN:?}")),
    };
    if let Err(why) = written {
        // Killed before its stdin closes: a shell must never see the end of a script cut short.
        // (The script is one `{ … }` group besides, which a cut leaves unfinished: nothing runs.)
        let _ = l.child.start_kill();
        drop(stdin);
        return Err((l, why));
    }
    // EOF after the script. From here the shell is the task, or is becoming it.
    drop(stdin);
    Ok((l.dir, l.cgroup, l.child))
}

#[expect(clippy::too_many_arguments, reason = "the attempt, its config, its place, its process, and the command")]
async fn run_in(
    a: &Attempt,
    cfg: &ExecConfig,
    dir: &Path,
    cgroup: Option<&AttemptCgroup>,
    mut child: tokio::process::Child,
    program: &str,
    plugin: Option<Vec<u8>>,
    logs: mpsc::Sender<Vec<u8>>,
    stop: Stop,
) -> Finish {
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    // The leader has not been waited for yet, so its /proc entry is there (0: anything goes).
    let born = start_ticks(pid).unwrap_or(0);
    if let (Some(doc), Some(mut stdin)) = (plugin.as_ref(), child.stdin.take()) {
        // Then EOF. A plugin that exits without reading it is not an error.
        let doc = doc.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            let _ = stdin.write_all(&doc).await;
            let _ = stdin.shutdown().await;
        });
    }
    // Driven beside the process in this task (not a task of its own): the pipes' end, the last
    // chunk and the exit come together without a hand-over between threads.
    let pump = logs::pump(child.stdout.take().expect("piped"), child.stderr.take().expect("piped"), cfg.log_cap, logs);
    let (finish, stats) = tokio::join!(watch(a, cfg, dir, cgroup, child, pid, born, program, &stop), pump);
    let finish =
        if plugin.is_some() { crate::plugin::finish(dir, finish, cfg.run_as.as_ref().map(|u| u.uid)) } else { finish };
    tracing::debug!(attempt.id = %a.attempt_id, log.bytes = stats.bytes, log.truncated = stats.truncated, "attempt ended");
    finish
}

/// Waits for the task's end (its exit, a stop, its timeout), takes down what it left, and says
/// how it ended.
#[expect(clippy::too_many_arguments, reason = "the attempt, its config, its place, its process, and the command")]
async fn watch(
    a: &Attempt,
    cfg: &ExecConfig,
    dir: &Path,
    cgroup: Option<&AttemptCgroup>,
    mut child: tokio::process::Child,
    pid: i32,
    born: u64,
    program: &str,
    stop: &Stop,
) -> Finish {
    let deadline = a.timeout.map(|t| tokio::time::Instant::now() + t);
    enum End {
        Exited(std::io::Result<std::process::ExitStatus>),
        Cancelled,
        TimedOut,
    }
    let end = tokio::select! {
        s = child.wait() => End::Exited(s),
        () = stop.asked() => End::Cancelled,
        () = sleep_until(deadline) => End::TimedOut,
    };
    match end {
        End::Exited(status) => {
            // The leader is done; anything it left running in the background goes too.
            stop_tree(pid, born, &a.attempt_id, cgroup, Duration::ZERO, None).await;
            match status {
                // The kernel killed something for going over `resources.memory`.
                Ok(s) if !s.success() && cgroup.is_some_and(AttemptCgroup::oom_killed) => {
                    use std::os::unix::process::ExitStatusExt;
                    let limit = cgroup.map_or(0, |c| c.memory_limit);
                    Finish::Failed {
                        exit_code: s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
                        reason: format!(
                            "out of memory: killed by the kernel at the task's memory limit of {} (resources.memory); \
                             raise the limit or make the task use less",
                            model::units::human_bytes(limit)
                        ),
                    }
                }
                Ok(s) if s.success() => {
                    let owner = cfg.run_as.as_ref().map(|u| u.uid);
                    let outputs = read_task_file(&dir.join(".orrery-output"), MAX_OUTPUT_FILE as u64, owner)
                        .map(|(_, b)| parse_outputs(&String::from_utf8_lossy(&b)))
                        .unwrap_or_default();
                    Finish::Succeeded { outputs }
                }
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    match (s.code(), s.signal()) {
                        (Some(127), _) => Finish::Failed {
                            exit_code: 127,
                            reason: format!("exit code 127 (is `{program}` installed on this worker?)"),
                        },
                        (Some(code), _) if code > 128 && code < 160 => Finish::Failed {
                            exit_code: code,
                            reason: format!(
                                "exit code {code} (killed by signal {})",
                                Signal::try_from(code - 128).map(|s| s.as_str()).unwrap_or("?")
                            ),
                        },
                        (Some(code), _) => Finish::Failed { exit_code: code, reason: format!("exit code {code}") },
                        (None, Some(sig)) => Finish::Failed {
                            exit_code: 128 + sig,
                            reason: format!(
                                "killed by signal {}",
                                Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("?")
                            ),
                        },
                        (None, None) => Finish::Failed { exit_code: -1, reason: "ended without a status".into() },
                    }
                }
                Err(e) => Finish::Failed { exit_code: -1, reason: format!("waiting for the process: {e}") },
            }
        }
        End::Cancelled => {
            stop_tree(pid, born, &a.attempt_id, cgroup, cfg.kill_grace, Some(stop)).await;
            let _ = child.wait().await;
            Finish::Cancelled
        }
        End::TimedOut => {
            stop_tree(pid, born, &a.attempt_id, cgroup, cfg.kill_grace, Some(stop)).await;
            let _ = child.wait().await;
            Finish::TimedOut
        }
    }
}

/// Starts the task's process here (cold): its cgroups joined between fork and exec, led by the
/// supervisor where there is no warden.
fn spawn(
    a: &Attempt,
    cfg: &ExecConfig,
    dir: &Path,
    cgroup: Option<&AttemptCgroup>,
    program: &str,
    args: &[String],
    plugin: bool,
) -> Result<tokio::process::Child, Finish> {
    let procs = match cgroup.map(AttemptCgroup::procs_files).transpose() {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => return Err(Finish::Failed { exit_code: -1, reason: format!("opening the attempt's cgroup: {e}") }),
    };
    // The warden takes the cgroup down if the worker dies; without both, the supervisor does.
    let supervised = cgroup.is_none() || !cfg.warden.as_ref().is_some_and(|w| w.alive());
    let mut cmd = if supervised {
        let mut c = std::process::Command::new("/bin/sh");
        c.arg("-c").arg(SUPERVISOR).arg("orrery-task").arg(program);
        c
    } else {
        std::process::Command::new(program)
    };
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .envs(environment(a, dir))
        .envs(plugin.then(|| ("ORRERY_RESULT", dir.join(crate::plugin::RESULT_FILE))))
        .stdin(if plugin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    isolate(&mut cmd, procs, cfg.run_as.as_ref(), supervised);
    tokio::process::Command::from(cmd).spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Finish::Failed { exit_code: 127, reason: format!("`{program}` was not found on this worker") }
        }
        _ => Finish::Failed { exit_code: -1, reason: format!("starting `{program}`: {e}") },
    })
}

/// Sets what a task's process does between fork and exec: into the attempt's cgroups (`procs`,
/// opened by the caller), its own session and process group, no core dumps, `run_as`'s user, and
/// for a supervised start the parent-death signal.
pub(crate) fn isolate(
    cmd: &mut std::process::Command,
    procs: Vec<std::fs::File>,
    run_as: Option<&RunAs>,
    supervised: bool,
) {
    let ids = run_as.map(|u| {
        let groups: Vec<nix::unistd::Gid> = u.groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
        (nix::unistd::Uid::from_raw(u.uid), nix::unistd::Gid::from_raw(u.gid), groups)
    });
    #[expect(unsafe_code, reason = "pre_exec runs between fork and exec; it only makes async-signal-safe calls")]
    // SAFETY: setsid(2), setrlimit(2), setgroups(2), setgid(2), setuid(2), prctl(2) and write(2)
    // are async-signal-safe, and nothing here allocates (the group list was built before fork).
    unsafe {
        cmd.pre_exec(move || {
            // Into the attempt's cgroup(s) first (that needs the worker's rights): every
            // descendant is born inside.
            crate::cgroup::join(&procs)?;
            // Its own session and process group: the whole tree can be signalled at once.
            nix::unistd::setsid()?;
            // No core dumps filling the worker's disk.
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
            // `--run-as`: groups, then group, then user (after which nothing else may be changed).
            if let Some((uid, gid, groups)) = &ids {
                nix::unistd::setgroups(groups)?;
                nix::unistd::setgid(*gid)?;
                nix::unistd::setuid(*uid)?;
            }
            // If the worker dies (kill -9), the supervisor hears it and takes the group down; the
            // lease decides what happens to the attempt. (Last: a change of user clears it.)
            if supervised {
                nix::sys::prctl::set_pdeathsig(Signal::SIGUSR1)?;
            }
            Ok(())
        });
    }
}

/// Every process of the attempt. With a cgroup: its members (every descendant is born inside, and
/// only a privileged process can move itself out), and, only if the process group still has a
/// member, whoever of the group is elsewhere. Without one: the process group, and any process that
/// left it (a double-forked daemon calls setsid) but carries the attempt's id in its environment.
/// Only processes born since the attempt's leader (`born`, in clock ticks since boot) can be
/// either, so the environment of older ones is not read. (Reading every process's environment
/// took 0.6 ms at each task's end with 86 processes on the machine, and grows with them.)
fn members(pgid: i32, born: u64, attempt_id: &str, cgroup: Option<&AttemptCgroup>) -> Vec<i32> {
    let mut out = cgroup.map(AttemptCgroup::pids).unwrap_or_default();
    // Signal 0 to the group: is anyone left in it? (The common case after an exit: no.)
    let group_alive = killpg(Pid::from_raw(pgid), None) != Err(nix::errno::Errno::ESRCH);
    if cgroup.is_some() && !group_alive {
        return out;
    }
    let marker = format!("ORRERY_ATTEMPT_ID={attempt_id}");
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == std::process::id() as i32 || out.contains(&pid) {
            continue;
        }
        let in_group = group_alive && nix::unistd::getpgid(Some(Pid::from_raw(pid))).is_ok_and(|g| g.as_raw() == pgid);
        let marked = || {
            cgroup.is_none()
                && start_ticks(pid).is_some_and(|t| t >= born)
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
        };
        if in_group || marked() {
            out.push(pid);
        }
    }
    out
}

/// When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat).
fn start_ticks(pid: i32) -> Option<u64> {
    let stat = proc_stat(pid)?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// `/proc/PID/stat`; none if the process is gone. Read into room for all of it (52 fields, a
/// name of at most 16 bytes): `read_to_string` takes five reads, its buffer grown from nothing
/// since a proc file says it is empty. And converted lossily: a process names itself as it likes,
/// bytes that are not UTF-8 included (`read_to_string` failed on those, and the process passed
/// for gone); only the fields after the name are read.
fn proc_stat(pid: i32) -> Option<String> {
    use std::io::Read as _;
    let mut buf = Vec::with_capacity(1024);
    std::fs::File::open(format!("/proc/{pid}/stat")).ok()?.read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// SIGTERM to every member, up to `grace` for them to go, then SIGKILL to whatever is left.
pub async fn stop_tree(
    pgid: i32,
    born: u64,
    attempt_id: &str,
    cgroup: Option<&AttemptCgroup>,
    grace: Duration,
    hurry: Option<&Stop>,
) {
    if pgid <= 0 {
        return;
    }
    let pids = members(pgid, born, attempt_id, cgroup);
    if pids.is_empty() {
        return;
    }
    let hurried = || hurry.is_some_and(Stop::is_urgent);
    if !grace.is_zero() && !hurried() {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
        for p in &pids {
            let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
        }
        let until = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < until
            && !hurried()
            && !members(pgid, born, attempt_id, cgroup).iter().all(|p| is_zombie(*p))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Kill until nothing is left: a process may fork while we look.
    for _ in 0..20 {
        let left: Vec<i32> = members(pgid, born, attempt_id, cgroup).into_iter().filter(|p| !is_zombie(*p)).collect();
        if left.is_empty() {
            return;
        }
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        for p in left {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Gone or a zombie (exited, not yet waited for).
pub(crate) fn is_zombie(pid: i32) -> bool {
    process_state(pid).is_none_or(|s| s == 'Z')
}

/// The state letter of `/proc/PID/stat` (R, S, D, T stopped, t traced, Z…); none if gone.
pub(crate) fn process_state(pid: i32) -> Option<char> {
    let stat = proc_stat(pid)?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Writes a file the worker makes in an attempt's directory: a new one, never one that is there
/// already or a link (`O_EXCL`).
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_born_no_earlier_than_its_parent() {
        let me = start_ticks(std::process::id() as i32).expect("our own start");
        let mut child = std::process::Command::new("sleep").arg("1").spawn().expect("sleep");
        let born = start_ticks(child.id() as i32).expect("the child's start");
        child.kill().ok();
        child.wait().ok();
        assert!(born >= me, "{born} < {me}");
        assert!(start_ticks(i32::MAX).is_none());
    }

    #[test]
    fn a_process_whose_name_is_not_utf8_is_seen_alive() {
        // A process names itself as it likes (prctl PR_SET_NAME, 15), bytes that are not UTF-8
        // included.
        let mut child = std::process::Command::new("python3")
            .args(["-c", "import ctypes, time; ctypes.CDLL(None).prctl(15, b'sl\\xffep', 0, 0, 0); time.sleep(5)"])
            .spawn()
            .expect("python3");
        let pid = child.id() as i32;
        let mut named = Vec::new();
        for _ in 0..100 {
            named = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
            if named == b"sl\xffep\n" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let seen = (process_state(pid), is_zombie(pid), start_ticks(pid).is_some());
        child.kill().ok();
        child.wait().ok();
        assert_eq!(named, b"sl\xffep\n", "the name took");
        assert!(matches!(seen.0, Some('R' | 'S' | 'D')), "{seen:?}");
        assert!(!seen.1 && seen.2, "a running process passed for gone: {seen:?}");
    }

    #[test]
    fn a_task_file_is_read_only_as_a_regular_file_of_the_tasks_own() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = std::env::temp_dir().join(format!("orrery-task-file-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "password=hunter2\n").unwrap();
        let me = std::fs::metadata(&secret).unwrap().uid();
        let (len, bytes) = read_task_file(&secret, 8, Some(me)).unwrap();
        assert_eq!((len, bytes.as_slice()), (17, &b"password"[..]));
        // A link to a file the worker can read and the task could not.
        std::os::unix::fs::symlink(&secret, dir.join("link")).unwrap();
        assert!(read_task_file(&dir.join("link"), 100, None).is_err());
        // A file of someone else's, where tasks run as another user.
        assert!(read_task_file(&secret, 100, Some(me + 1)).is_err());
        // A FIFO nobody writes: refused at once, not waited on.
        nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read_task_file(&dir.join("fifo"), 100, None).is_err());
        assert_eq!(read_task_file(&dir.join("none"), 100, None).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn outputs_are_key_value_lines() {
        let o = parse_outputs("rows=42\n# a comment\n\nname = ada\nbad line\nrows=43\nurl=http://x/?a=b\n");
        assert_eq!(o.get("rows").map(String::as_str), Some("43"));
        assert_eq!(o.get("name").map(String::as_str), Some(" ada"));
        assert_eq!(o.get("url").map(String::as_str), Some("http://x/?a=b"));
        assert_eq!(o.len(), 3);
    }
}
