//! The state machines of runs, tasks and attempts. Every transition Orrery makes is checked
//! here; the store records it (and its SQL guards mirror these tables).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! state_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $v),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("unknown {} state {s:?}", stringify!($name)))
            }
        }
    };
}

state_enum!(
    /// A run of a workflow.
    RunState {
        /// Created, waiting for a slot (max_active_runs, overlap `queue`).
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

state_enum!(
    /// One task within one run.
    TaskState {
        /// Waiting for its upstream tasks.
        Pending => "pending",
        /// An attempt waits in the queue (possibly until a retry's time).
        Queued => "queued",
        /// An attempt runs on a worker.
        Running => "running",
        Succeeded => "succeeded",
        /// Failed with no retries left.
        Failed => "failed",
        Cancelled => "cancelled",
        /// Not run: a branch not taken, or its trigger rule said so.
        Skipped => "skipped",
        /// Not run because an upstream task failed.
        UpstreamFailed => "upstream_failed",
    }
);

state_enum!(
    /// One try of a task.
    AttemptState {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        TimedOut => "timed_out",
        Cancelled => "cancelled",
        /// Its worker stopped renewing the lease.
        Lost => "lost",
    }
);

state_enum!(
    /// What started a run.
    Trigger {
        Schedule => "schedule",
        Manual => "manual",
        Api => "api",
        Backfill => "backfill",
        Webhook => "webhook",
        Event => "event",
        SubWorkflow => "sub_workflow",
    }
);

impl RunState {
    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Failed | RunState::Cancelled)
    }

    /// Runs end once; a rerun or a cleared task reopens a finished run.
    pub fn can_become(self, to: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, to),
            (Queued, Running | Cancelled)
                | (Running, Succeeded | Failed | Cancelled)
                | (Succeeded | Failed | Cancelled, Running)
        )
    }
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskState::Pending | TaskState::Queued | TaskState::Running)
    }

    /// Counts as a failure for trigger rules and the run's outcome.
    pub fn is_failure(self) -> bool {
        matches!(self, TaskState::Failed | TaskState::UpstreamFailed | TaskState::Cancelled)
    }

    pub fn can_become(self, to: TaskState) -> bool {
        use TaskState::*;
        match (self, to) {
            (a, b) if a == b => false,
            (Pending, Queued | Succeeded | Failed | Skipped | UpstreamFailed | Cancelled) => true,
            (Queued, Running | Failed | Cancelled | Pending | Succeeded) => true,
            // A retry goes back to the queue; a clear back to pending.
            (Running, Succeeded | Failed | Cancelled | Queued | Pending) => true,
            // Clearing (rerun) and marking act on finished tasks.
            (Succeeded | Failed | Cancelled | Skipped | UpstreamFailed, Pending | Succeeded | Failed) => true,
            _ => false,
        }
    }
}

impl AttemptState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, AttemptState::Queued | AttemptState::Running)
    }

    pub fn can_become(self, to: AttemptState) -> bool {
        use AttemptState::*;
        matches!(
            (self, to),
            (Queued, Running | Cancelled) | (Running, Succeeded | Failed | TimedOut | Cancelled | Lost)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_attempts_never_change() {
        for from in AttemptState::ALL.iter().filter(|s| s.is_terminal()) {
            for to in AttemptState::ALL {
                assert!(!from.can_become(*to), "{from} → {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), *s);
        }
        assert_eq!("upstream_failed".parse::<TaskState>().unwrap(), TaskState::UpstreamFailed);
    }
}
