//! Processes started ahead of their attempts, so a task's start pays for none of it.
//!
//! Starting a task in its cgroups costs more than the task's own `exec`: the worker's fork, the
//! cgroups made, and above all the moves into them, each of which takes the kernel's lock for
//! cgroup moves; on a host whose cgroup mounts lack `favordynmods` that lock waits now and then
//! for an RCU grace period (10–20 ms). A *launcher* is all of that done before an attempt is
//! known: a `dash -s` in fresh cgroups of its own, in its own session and work directory, blocked
//! reading its script on stdin. An attempt
//! that takes one gets its limits written to those cgroups, then sends the script — its
//! environment (nothing else: the shell's own variables are unset) and an `exec` of its program
//! with stdin on `/dev/null` — and the shell becomes the task, with the pid, process group,
//! cgroups and pipes the launcher already had. The next launcher is made meanwhile, off the
//! attempt's path.
//!
//! Only where attempts get cgroups and the worker's warden runs (`cgroup::Warden`): the warden
//! takes launchers down with the worker's attempts. Only with `dash`: bash exports `SHLVL` again
//! as it execs, so the task would not get exactly its environment; hosts without dash start every
//! task cold. Not under `--run-as` either: a waiting launcher would run as the user every task runs
//! as, whom a running task could stop or trace before it became another tenant's task. Plugins (they read their input on stdin) and
//! anything a script cannot say (a NUL in a value, a program not on the task's `PATH`, which a cold
//! start reports as such) start cold.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::cgroup::{AttemptCgroup, Hierarchy};
use crate::exec::RunAs;

/// Launchers kept ready: a chain needs one at a time; a second serves two tasks started together.
pub const SPARE: usize = 2;

/// What a launcher runs until its script arrives.
pub const SHELL: &str = "/bin/dash";

/// A process started ahead of its attempt, waiting for its script.
#[derive(Debug)]
pub struct Launcher {
    pub child: tokio::process::Child,
    pub cgroup: AttemptCgroup,
    /// Its work directory (`$HOME`, where its script and `$ORRERY_OUTPUT` go).
    pub dir: PathBuf,
}

impl Launcher {
    /// Takes it down unused, then its cgroups and directory.
    fn discard(mut self) {
        // Killed first: its stdin's end must not reach a shell that has part of a script.
        let _ = self.child.start_kill();
        drop(self.child.stdin.take());
        self.cgroup.remove();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The spare launchers of one worker.
#[derive(Debug)]
pub struct Launchers {
    spares: Mutex<Spares>,
    seq: AtomicU64,
    cgroups: Hierarchy,
    worker_id: String,
    work_root: PathBuf,
    tracker: tokio_util::task::TaskTracker,
}

#[derive(Debug, Default)]
struct Spares {
    ready: Vec<Launcher>,
    /// Being made.
    making: usize,
    closed: bool,
}

impl Launchers {
    /// Starts making the spares (on the blocking pool, tracked by `tracker`). None where attempts
    /// get no cgroups, tasks run as another user (`exec::launchable` says why), or the host has no
    /// dash.
    pub fn start(
        cgroups: &Hierarchy,
        worker_id: &str,
        work_root: &Path,
        run_as: Option<&RunAs>,
        tracker: tokio_util::task::TaskTracker,
    ) -> Option<Arc<Launchers>> {
        if !cgroups.usable() || run_as.is_some() || !Path::new(SHELL).exists() {
            return None;
        }
        let l = Arc::new(Launchers {
            spares: Mutex::default(),
            seq: AtomicU64::new(0),
            cgroups: cgroups.clone(),
            worker_id: worker_id.to_owned(),
            work_root: work_root.to_owned(),
            tracker,
        });
        l.refill();
        Some(l)
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Spares> {
        self.spares.lock().expect("launchers poisoned")
    }

    /// A ready launcher whose shell still waits, if there is one; another is made meanwhile.
    pub fn take(self: &Arc<Self>) -> Option<Launcher> {
        let mut found = None;
        loop {
            let Some(mut l) = self.spares().ready.pop() else { break };
            // Still waiting: not gone (killed from outside), stopped or traced.
            let waiting = matches!(l.child.try_wait(), Ok(None))
                && l.child
                    .id()
                    .and_then(|p| crate::exec::process_state(i32::try_from(p).ok()?))
                    .is_some_and(|s| !matches!(s, 'T' | 't' | 'Z' | 'X'));
            if waiting {
                found = Some(l);
                break;
            }
            self.discard(l);
        }
        self.refill();
        found
    }

    /// Takes down one an attempt could not use after all (its limits could not be set, its shell
    /// did not take the script): its cgroups and directory too, off the caller's path.
    pub fn discard(&self, l: Launcher) {
        self.tracker.spawn_blocking(move || l.discard());
    }

    fn refill(self: &Arc<Self>) {
        let wanted = {
            let mut s = self.spares();
            if s.closed {
                return;
            }
            let wanted = SPARE.saturating_sub(s.ready.len() + s.making);
            s.making += wanted;
            wanted
        };
        for _ in 0..wanted {
            let me = self.clone();
            self.tracker.spawn_blocking(move || {
                let made = me.make();
                let mut s = me.spares();
                s.making -= 1;
                match made {
                    Ok(l) if !s.closed => s.ready.push(l),
                    Ok(l) => {
                        drop(s);
                        l.discard();
                    }
                    Err(e) => tracing::warn!(error = %e, "making a launcher for the next task: that task starts cold"),
                }
            });
        }
    }

    /// A shell in fresh cgroups and a fresh directory, isolated as a cold start's task is.
    fn make(&self) -> std::io::Result<Launcher> {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        // Named for the worker: on cgroup v2 the workers of a host share one `attempts/`.
        let name = format!("next-{}-{n}", self.worker_id);
        let dir = self.work_root.join(&name);
        // New, never one that is there already.
        std::fs::create_dir(&dir)?;
        let made = AttemptCgroup::create(&self.cgroups, &self.worker_id, &name, 0, 0)
            .and_then(|c| c.ok_or_else(|| std::io::Error::other("no cgroups")));
        let cgroup = match made {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let spawned = cgroup.procs_files().and_then(|procs| {
            let mut cmd = std::process::Command::new(SHELL);
            cmd.arg("-s")
                .current_dir(&dir)
                .env_clear()
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            crate::exec::isolate(&mut cmd, procs, None, false);
            tokio::process::Command::from(cmd).spawn()
        });
        match spawned {
            Ok(child) => Ok(Launcher { child, cgroup, dir }),
            Err(e) => {
                cgroup.remove();
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// No more launchers; the spares are taken down (tracked: wait for the tracker). One being
    /// made is taken down when it is.
    pub fn close(&self) {
        let ready = {
            let mut s = self.spares();
            s.closed = true;
            std::mem::take(&mut s.ready)
        };
        for l in ready {
            self.discard(l);
        }
    }
}

/// Removes what launchers of this host's workers that are gone left in the work root: their
/// directories (a worker killed with -9 cannot; its warden killed their shells and the next
/// worker's `cgroup::clean_stale` removes their cgroups). Only names of this host (a work root may
/// be shared), never `me`'s, never a live worker's.
pub fn clean_stale(work_root: &Path, me: &str) {
    let host = |id: &str| id.rsplitn(3, '-').nth(2).map(str::to_owned);
    let Some(my_host) = host(me) else { return };
    let Ok(entries) = std::fs::read_dir(work_root) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some((worker, n)) = name.to_str().and_then(|n| n.strip_prefix("next-")).and_then(|r| r.rsplit_once('-'))
        else {
            continue;
        };
        if worker == me
            || n.parse::<u64>().is_err()
            || host(worker).as_deref() != Some(my_host.as_str())
            || crate::cgroup::worker_alive(worker)
        {
            continue;
        }
        tracing::info!(dir = %e.path().display(), "removing a launcher's directory a worker that is gone left");
        let _ = std::fs::remove_dir_all(e.path());
    }
}

/// Single-quoted for the shell: every byte literal (`'` as `'\''`).
fn quote(s: &str, out: &mut String) {
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

/// The script that turns a launcher into the task: exactly `env` in its environment, then its
/// program with its arguments in place of the shell, stdin on `/dev/null`. None if something in it
/// cannot be said (a NUL, which no environment or argument can hold; a cold start reports it).
pub fn script(env: &[(String, String)], program: &str, args: &[String]) -> Option<String> {
    let nul = |w: &str| w.contains('\0');
    if env.iter().any(|(k, v)| nul(k) || nul(v)) || nul(program) || args.iter().any(|a| nul(a)) {
        return None;
    }
    // The shell's own exported variables (dash: PWD; bash: PWD, OLDPWD, SHLVL) are not the task's.
    // One `{ … }` group: a shell runs none of it before it has all of it, so a script cut short
    // (its writer gone midway) is a syntax error, never a truncated `exec`.
    let mut s = String::from("{\nunset PWD OLDPWD SHLVL\n");
    for (k, v) in env {
        // Names are ours (`exec::environment`): PATH, ORRERY_*, upper-case identifiers.
        if k.is_empty()
            || k.starts_with(|c: char| c.is_ascii_digit())
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return None;
        }
        s.push_str("export ");
        s.push_str(k);
        s.push('=');
        quote(v, &mut s);
        s.push('\n');
    }
    s.push_str("exec");
    for w in std::iter::once(program).chain(args.iter().map(String::as_str)) {
        s.push(' ');
        quote(w, &mut s);
    }
    s.push_str(" </dev/null\n}\n");
    Some(s)
}

/// Whether `program` is found as the shell of a launcher would find it with `path` (the task's
/// `PATH`): a cold start turns a missing program into a clear error, so those start cold, as do
/// programs named relative to the attempt's directory.
pub fn findable(program: &str, path: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    // `exec` would read a leading `-` as an option of its own.
    if program.starts_with('-') {
        return false;
    }
    // A relative path names a file in the attempt's directory, which is not chosen yet.
    if program.contains('/') {
        return program.starts_with('/') && executable(Path::new(program));
    }
    path.split(':').filter(|d| !d.is_empty()).any(|d| executable(&Path::new(d).join(program)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_says_every_value_literally() {
        let env = vec![
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("ORRERY_PARAM_Q".to_owned(), "it's $HOME `id` \"x\"\nline two \\ end".to_owned()),
        ];
        let s = script(&env, "python3", &["a b.py".to_owned()]).expect("a script");
        if !Path::new(SHELL).exists() {
            eprintln!("skipped: no {SHELL} on this host (its workers start every task cold)");
            return;
        }
        let out = std::process::Command::new(SHELL)
            .arg("-s")
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                // `env` instead of python3, printing what the task would get, NUL-separated.
                let s = s.replace("exec 'python3' 'a b.py'", "exec 'env' '-0'");
                c.stdin.take().expect("piped").write_all(s.as_bytes())?;
                c.wait_with_output()
            })
            .expect("the shell");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let mut vars: Vec<&str> = text.split('\0').filter(|v| !v.is_empty()).collect();
        vars.sort_unstable();
        assert_eq!(vars, ["ORRERY_PARAM_Q=it's $HOME `id` \"x\"\nline two \\ end", "PATH=/usr/bin:/bin"]);
        // Cut anywhere short of its group's end (its writer gone midway), a script runs nothing.
        let whole = script(&env, "echo", &["ran".to_owned()]).expect("a script");
        let run = |text: &str| {
            let mut c = std::process::Command::new(SHELL)
                .arg("-s")
                .env_clear()
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("the shell");
            use std::io::Write as _;
            c.stdin.take().expect("piped").write_all(text.as_bytes()).expect("the script");
            String::from_utf8(c.wait_with_output().expect("its end").stdout).expect("utf-8")
        };
        assert_eq!(run(&whole), "ran\n");
        let end = whole.rfind('}').expect("the group's end");
        for cut in (0..end).filter(|&i| whole.is_char_boundary(i)) {
            assert_eq!(run(&whole[..cut]), "", "cut at {cut}: {:?}", &whole[..cut]);
        }
        assert!(script(&[("A".into(), "x\0y".into())], "p", &[]).is_none());
        assert!(script(&[], "p", &["\0".into()]).is_none());
        assert!(script(&[("A B".into(), "x".into())], "p", &[]).is_none());
    }

    #[test]
    fn only_gone_workers_launcher_directories_of_this_host_are_removed() {
        let root = std::env::temp_dir().join(format!("orrery-launch-clean-{}", std::process::id()));
        let me = format!("h-{}-aaaa", std::process::id());
        // No pid is that large (pid_max is at most 2^22); pid 1 always runs.
        let (gone, elsewhere, alive) = ("h-999999999-bbbb", "g-999999999-cccc", "h-1-dddd");
        let names = [
            format!("next-{gone}-0"),
            format!("next-{gone}-12"),
            format!("next-{elsewhere}-0"),
            format!("next-{alive}-3"),
            format!("next-{me}-1"),
            format!("next-{gone}-x"),
            "01a2521d-f89a-76aa-86b4-42424dda800a".to_owned(),
        ];
        for n in &names {
            std::fs::create_dir_all(root.join(n)).unwrap();
        }
        clean_stale(&root, &me);
        let mut left: Vec<String> =
            std::fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        let mut want: Vec<String> = names[2..].to_vec();
        want.sort();
        assert_eq!(left, want);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_program_is_found_on_the_tasks_path_only() {
        assert!(findable("sh", "/nowhere:/bin"));
        assert!(!findable("sh", "/nowhere"));
        assert!(!findable("no-such-program-here", "/usr/bin:/bin"));
        assert!(findable("/bin/sh", ""));
        assert!(!findable("./sh", "/bin"));
        assert!(!findable("-sh", "/bin"));
    }
}
