//! CPU and memory limits and accounting per attempt through cgroups.
//!
//! - **v1** (hybrid hosts: CentOS 7-era servers, and hosts that mount v1 controllers read-write
//!   beside an empty unified mount): `<controller>/orrery/<worker>/<attempt>` under the memory, cpu
//!   and pids controllers.
//! - **v2** (unified hierarchy): the worker needs a delegated subtree (systemd `Delegate=yes`, or
//!   running as root). It moves itself into `<its cgroup>/worker` — the "no internal processes"
//!   rule forbids processes beside child cgroups — enables the memory, cpu and pids controllers,
//!   and puts attempts in `<its cgroup>/attempts/<attempt>`.
//!
//! Either way an attempt's memory limit is its `resources.memory`, its CPU quota its
//! `resources.cpu`, and a kill by the kernel's OOM killer is reported as such. Every process of an
//! attempt stays in its cgroup whatever it does (setsid, double fork), so stopping an attempt kills
//! the cgroup's members; a worker's warden (`Warden`) kills them all when that worker dies, and a
//! worker that starts cleans up cgroups left by dead workers.
//! When neither is usable the worker says so at registration and isolates by process group only.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// `bases[i]` is `<mount of V1_CONTROLLERS[i]>/<the worker's own cgroup there>/orrery`.
    V1 {
        bases: Vec<PathBuf>,
    },
    V2 {
        attempts: PathBuf,
    },
    None {
        why: String,
    },
}

impl Hierarchy {
    /// What registration reports.
    pub fn describe(&self) -> String {
        match self {
            Hierarchy::V1 { bases } => format!("cgroup-v1 ({})", bases[0].display()),
            Hierarchy::V2 { attempts } => format!("cgroup-v2 ({})", attempts.display()),
            Hierarchy::None { why } => {
                format!("none: {why}; tasks are isolated by process group and rlimits only")
            }
        }
    }

    pub fn usable(&self) -> bool {
        !matches!(self, Hierarchy::None { .. })
    }
}

/// Whether a cgroup hierarchy is mounted with `favordynmods` (Linux ≥ 6.1). Without it, moving
/// a process into a cgroup — every attempt's start — now and then waits for an RCU grace period
/// (10–20 ms on our test machine, for one start in ten or more), as the kernel documents for the
/// option. A host setting, not the worker's: the worker only says so when it starts.
pub fn moves_are_favoured() -> bool {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    favoured_in(&mounts)
}

fn favoured_in(mounts: &str) -> bool {
    mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 4 && (f[2] == "cgroup" || f[2] == "cgroup2") && f[3].split(',').any(|o| o == "favordynmods")
    })
}

/// The worker's own cgroup per controller (`/proc/self/cgroup`): `"memory"` → `/a/b`, `""` (v2)
/// → `/c`.
fn own_cgroups() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(controllers.split(',').map(move |c| (c.to_owned(), path.to_owned())).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

/// Finds a usable hierarchy, preparing it (v2: moving the worker into a leaf).
pub fn detect() -> Hierarchy {
    let root = PathBuf::from("/sys/fs/cgroup");
    let own = own_cgroups();
    let v2 = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if v2.split_whitespace().any(|c| c == "memory") {
        let path = own.iter().find(|(c, _)| c.is_empty()).map_or("/", |(_, p)| p.as_str());
        return detect_v2(&root.join(path.trim_start_matches('/')));
    }
    if V1_CONTROLLERS.iter().all(|c| root.join(c).is_dir()) {
        let bases: Vec<PathBuf> = V1_CONTROLLERS
            .iter()
            .map(|c| {
                let path = own.iter().find(|(k, _)| k == c).map_or("/", |(_, p)| p.as_str());
                root.join(c).join(path.trim_start_matches('/')).join("orrery")
            })
            .collect();
        for b in &bases {
            if let Err(e) = fs::create_dir_all(b) {
                return Hierarchy::None {
                    why: format!("cgroup v1 is mounted but {} cannot be created ({e})", b.display()),
                };
            }
        }
        return Hierarchy::V1 { bases };
    }
    Hierarchy::None { why: "no cgroup v2 memory controller and no v1 memory, cpu and pids mounts".into() }
}

fn detect_v2(base: &Path) -> Hierarchy {
    let setup = || -> std::io::Result<PathBuf> {
        let me = base.join("worker");
        fs::create_dir_all(&me)?;
        fs::write(me.join("cgroup.procs"), std::process::id().to_string())?;
        fs::write(base.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
        let attempts = base.join("attempts");
        fs::create_dir_all(&attempts)?;
        fs::write(attempts.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
        Ok(attempts)
    };
    match setup() {
        Ok(attempts) => Hierarchy::V2 { attempts },
        Err(e) => Hierarchy::None {
            why: format!(
                "cgroup v2 without a delegated subtree at {} ({e}): run the worker with systemd Delegate=yes",
                base.display()
            ),
        },
    }
}

/// One attempt's cgroup(s).
#[derive(Debug)]
pub struct AttemptCgroup {
    dirs: Vec<PathBuf>,
    memory_dir: PathBuf,
    v2: bool,
    pub memory_limit: u64,
}

impl AttemptCgroup {
    pub fn create(
        h: &Hierarchy,
        worker_id: &str,
        attempt_id: &str,
        cpu_millis: u32,
        memory_bytes: u64,
    ) -> std::io::Result<Option<AttemptCgroup>> {
        match h {
            Hierarchy::None { .. } => Ok(None),
            Hierarchy::V1 { bases } => {
                let dirs: Vec<PathBuf> = bases.iter().map(|b| b.join(worker_id).join(attempt_id)).collect();
                for d in &dirs {
                    fs::create_dir_all(d)?;
                }
                let mut cg = AttemptCgroup { memory_dir: dirs[0].clone(), dirs, v2: false, memory_limit: 0 };
                cg.limit(cpu_millis, memory_bytes)?;
                Ok(Some(cg))
            }
            Hierarchy::V2 { attempts } => {
                let dir = attempts.join(attempt_id);
                fs::create_dir_all(&dir)?;
                let mut cg = AttemptCgroup { memory_dir: dir.clone(), dirs: vec![dir], v2: true, memory_limit: 0 };
                cg.limit(cpu_millis, memory_bytes)?;
                Ok(Some(cg))
            }
        }
    }

    /// Sets its memory limit (0: none) and CPU quota (thousandths of a core; 0: none), before
    /// anything of the attempt runs in it.
    pub fn limit(&mut self, cpu_millis: u32, memory_bytes: u64) -> std::io::Result<()> {
        if self.v2 {
            let dir = &self.dirs[0];
            if memory_bytes > 0 {
                fs::write(dir.join("memory.max"), memory_bytes.to_string())?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
            }
            if cpu_millis > 0 {
                fs::write(dir.join("cpu.max"), format!("{} 100000", u64::from(cpu_millis) * 100))?;
            }
        } else {
            if memory_bytes > 0 {
                fs::write(self.dirs[0].join("memory.limit_in_bytes"), memory_bytes.to_string())?;
                // No swap beyond the limit where the kernel accounts it.
                let _ = fs::write(self.dirs[0].join("memory.memsw.limit_in_bytes"), memory_bytes.to_string());
            }
            if cpu_millis > 0 {
                fs::write(self.dirs[1].join("cpu.cfs_period_us"), "100000")?;
                fs::write(self.dirs[1].join("cpu.cfs_quota_us"), (u64::from(cpu_millis) * 100).to_string())?;
            }
        }
        self.memory_limit = memory_bytes;
        Ok(())
    }

    /// The `cgroup.procs` files, opened now so the child can join them between fork and exec
    /// without allocating.
    pub fn procs_files(&self) -> std::io::Result<Vec<fs::File>> {
        self.dirs.iter().map(|d| fs::OpenOptions::new().write(true).open(d.join("cgroup.procs"))).collect()
    }

    /// Did the kernel's OOM killer kill something here?
    pub fn oom_killed(&self) -> bool {
        let file = if self.v2 { "memory.events" } else { "memory.oom_control" };
        fs::read_to_string(self.memory_dir.join(file))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()))
            })
            .is_some_and(|n| n > 0)
    }

    /// Every process in it.
    pub fn pids(&self) -> Vec<i32> {
        members(&self.dirs[0])
    }

    /// Kills what is left and removes the cgroup(s).
    pub fn remove(self) {
        remove_tree(&self.dirs);
    }
}

fn members(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn remove_tree(dirs: &[PathBuf]) {
    for _ in 0..50 {
        let left: Vec<i32> = dirs.iter().flat_map(|d| members(d)).collect();
        if left.is_empty() {
            break;
        }
        for p in left {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for d in dirs {
        let _ = fs::remove_dir(d);
    }
}

/// Writes the calling process's pid into each `cgroup.procs` file: for `pre_exec`, so nothing
/// allocates (the pid is formatted into a stack buffer, the files were opened by the parent and
/// close on exec).
pub fn join(files: &[fs::File]) -> std::io::Result<()> {
    let mut buf = [0u8; 16];
    let mut n = std::process::id();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for mut f in files {
        f.write_all(&buf[i..])?;
    }
    Ok(())
}

/// Kills processes in, and removes, the cgroups of workers of this host that are gone (a worker
/// killed with -9 cannot clean up after itself; its tasks must not run on).
pub fn clean_stale(h: &Hierarchy, me: &str) {
    let bases = match h {
        Hierarchy::None { .. } => return,
        // v2: `attempts/` is inside this worker's own cgroup; whatever is there is a predecessor's.
        Hierarchy::V2 { attempts } => {
            for e in fs::read_dir(attempts).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
                tracing::warn!(cgroup = %e.path().display(), "killing what a previous worker left running");
                remove_tree(&[e.path()]);
            }
            return;
        }
        Hierarchy::V1 { bases } => bases,
    };
    let Ok(workers) = fs::read_dir(&bases[0]) else { return };
    for w in workers.flatten() {
        let id = w.file_name().to_string_lossy().into_owned();
        if id == me || worker_alive(&id) || !w.path().is_dir() {
            continue;
        }
        let attempts: Vec<_> = fs::read_dir(w.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name())
            .collect();
        for a in attempts {
            let dirs: Vec<PathBuf> = bases.iter().map(|b| b.join(&id).join(&a)).collect();
            tracing::warn!(worker.id = %id, cgroup = %dirs[0].display(), "killing what a worker that is gone left running");
            remove_tree(&dirs);
        }
        for b in bases {
            let _ = fs::remove_dir(b.join(&id));
        }
    }
}

/// Takes every attempt of this worker down once the worker is gone, however it went (kill -9
/// included): a small `sh` started once per worker, in its own session, that waits for the end
/// of a pipe only the worker holds, then kills every process in this worker's attempt cgroups
/// (setsid and double-forked ones included: nothing leaves a cgroup) and removes them. With it an
/// attempt's own process is the leader of its group, with no supervisor process between the
/// worker and the task (`exec`). Without a usable hierarchy there is no warden, and each attempt
/// gets its own supervisor instead.
#[derive(Debug)]
pub struct Warden {
    // Held open for the worker's life; its end is the warden's signal.
    pipe: Option<std::process::ChildStdin>,
    child: std::process::Child,
    // Said once, when the warden is found gone.
    gone: std::sync::atomic::AtomicBool,
}

/// `$1`: the directory whose subdirectories are the attempts' cgroups in the memory (or unified)
/// hierarchy; every argument: such a directory, in each controller, whose attempts are removed.
/// TERM and friends are ignored: a stop of the worker's service reaches the worker, whose end
/// this waits for.
const WARDEN: &str = r#"trap '' TERM INT HUP
while read -r _; do :; done
i=0
while [ "$i" -lt 200 ]; do
  left=$(cat "$1"/*/cgroup.procs 2>/dev/null)
  [ -n "$left" ] || break
  kill -KILL $left 2>/dev/null
  sleep 0.05
  i=$((i + 1))
done
for d in "$@"; do for a in "$d"/*/; do rmdir "$a" 2>/dev/null; done; done
exit 0"#;

impl Warden {
    /// Starts the warden of worker `me` (none without a usable hierarchy).
    pub fn start(h: &Hierarchy, me: &str) -> std::io::Result<Option<Warden>> {
        use std::os::unix::process::CommandExt as _;
        let dirs: Vec<PathBuf> = match h {
            Hierarchy::None { .. } => return Ok(None),
            Hierarchy::V1 { bases } => bases.iter().map(|b| b.join(me)).collect(),
            Hierarchy::V2 { attempts } => vec![attempts.clone()],
        };
        for d in &dirs {
            fs::create_dir_all(d)?;
        }
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WARDEN)
            .arg("orrery-warden")
            .args(&dirs)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        #[expect(unsafe_code, reason = "pre_exec runs between fork and exec; it only calls setsid")]
        // SAFETY: setsid(2) is async-signal-safe and nothing here allocates.
        unsafe {
            // Its own session: a signal to the worker's process group does not reach it.
            cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
        }
        let mut child = cmd.spawn()?;
        Ok(Some(Warden { pipe: child.stdin.take(), child, gone: false.into() }))
    }

    /// Whether the warden still runs. Something may have killed it (it ignores the usual stop
    /// signals, not SIGKILL or the OOM killer); the attempts started after that get a supervisor
    /// each again. Not yet waited for, a dead warden stays a zombie, so its pid is not reused.
    pub fn alive(&self) -> bool {
        let pid = self.child.id();
        let alive = !crate::exec::is_zombie(i32::try_from(pid).unwrap_or(i32::MAX));
        if !alive && !self.gone.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                pid,
                "this worker's cgroup warden is gone (killed from outside?): each task now gets a supervisor process, \
                 which cannot reach processes a task moves to a session of their own if the worker dies; restart the worker"
            );
        }
        alive
    }
}

impl Drop for Warden {
    /// The worker's session ended: whatever attempt is left goes (a draining worker has none).
    fn drop(&mut self) {
        self.pipe.take();
        let _ = self.child.wait();
    }
}

/// Removes this worker's own directories (at a clean exit).
pub fn remove_worker(h: &Hierarchy, me: &str) {
    if let Hierarchy::V1 { bases } = h {
        for b in bases {
            let _ = fs::remove_dir(b.join(me));
        }
    }
}

/// Worker ids are `<host>-<pid>-<random>`: alive if that pid runs an orrery-looking process.
pub(crate) fn worker_alive(id: &str) -> bool {
    let mut parts = id.rsplitn(3, '-');
    let _rand = parts.next();
    let Some(pid) = parts.next().and_then(|p| p.parse::<i32>().ok()) else { return true };
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn favordynmods_is_found_on_a_cgroup_mount_only() {
        let off = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                   cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n\
                   tmpfs /favordynmods tmpfs rw,favordynmods 0 0\n";
        assert!(!super::favoured_in(off));
        let on = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,favordynmods 0 0\n";
        assert!(super::favoured_in(on));
        assert!(!super::favoured_in("cgroup2 /x cgroup2 rw,nofavordynmods 0 0\n"));
    }
}
