//! [`WorkerState`] and its transition table.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{quote_input, Error, Result};

/// Where a worker is in its life.
///
/// ```text
/// Creating ─► Connecting ─► Ready ◄──► Busy
///    │            │          │  ▲        │
///    │            │          ▼  │        ▼
///    │            │        Draining ◄────┘
///    └────────────┴──────────┴─► Terminating ─► Terminated
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum WorkerState {
    /// Asked of the provider; the instance is starting.
    Creating = 0,
    /// The agent is up and connecting.
    Connecting = 1,
    /// Idle and accepting jobs.
    Ready = 2,
    /// Running a job.
    Busy = 3,
    /// Finishing its job (if any); takes no new job.
    Draining = 4,
    /// Being destroyed by its provider.
    Terminating = 5,
    /// Gone.
    Terminated = 6,
}

use WorkerState::*;

/// `TRANSITIONS[from][to]`: whether `from -> to` is a legal move, as data (DESIGN.md §3).
///
/// `Ready -> Busy` and `Busy -> Ready` are legal moves but only `assign`/`claim` and
/// `release` make them; [`WorkerState::can_update_to`] is the rule for `update_state`.
const TRANSITIONS: [[bool; 7]; 7] = {
    const F: bool = false;
    const T: bool = true;
    [
        // to: Creating Connecting Ready Busy Draining Terminating Terminated
        [F, T, T, F, F, T, T], // from Creating
        [F, F, T, F, F, T, T], // from Connecting
        [F, F, F, T, T, T, T], // from Ready
        [F, F, T, F, T, T, T], // from Busy
        [F, F, T, F, F, T, T], // from Draining
        [F, F, F, F, F, F, T], // from Terminating
        [F, F, F, F, F, F, F], // from Terminated
    ]
};

impl WorkerState {
    /// Every state, in declaration order (the order of the `repr(u8)` values).
    pub const ALL: [WorkerState; 7] = [
        Creating,
        Connecting,
        Ready,
        Busy,
        Draining,
        Terminating,
        Terminated,
    ];

    /// Whether the state machine allows `self -> to` at all (by any operation).
    pub fn can_transition_to(self, to: WorkerState) -> bool {
        TRANSITIONS[self as usize][to as usize]
    }

    /// Whether `update_state` may move `self -> to`: a legal move other than the two that go
    /// with a job, `Ready -> Busy` (only assign/claim, which hand the job over) and
    /// `Busy -> Ready` (only release, which takes it back). Same state is not a move.
    ///
    /// `Busy -> Draining` (the job finishes first: a lifetime drain) and
    /// `Busy -> Terminating/Terminated` (the job is reported lost) stay open to `update_state`:
    /// without them the lifecycle manager could neither drain a busy worker past its lifetime
    /// nor retire a busy worker that went silent.
    pub fn can_update_to(self, to: WorkerState) -> bool {
        self.can_transition_to(to) && to != Busy && !(self == Busy && to == Ready)
    }

    /// Only `Ready` accepts jobs.
    pub fn accepts_jobs(self) -> bool {
        self == Ready
    }

    /// `Terminating` or `Terminated`: on its way out.
    pub fn is_terminal(self) -> bool {
        matches!(self, Terminating | Terminated)
    }

    /// States in which the heartbeat deadline applies.
    pub fn heartbeat_monitored(self) -> bool {
        matches!(self, Connecting | Ready | Busy | Draining)
    }

    /// States in which the startup deadline applies (the worker must still reach `Ready`).
    pub fn is_starting(self) -> bool {
        matches!(self, Creating | Connecting)
    }

    /// Stable lowercase name (`"ready"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Creating => "creating",
            Connecting => "connecting",
            Ready => "ready",
            Busy => "busy",
            Draining => "draining",
            Terminating => "terminating",
            Terminated => "terminated",
        }
    }

    /// The state with this `repr(u8)` value (the C and Python form).
    pub fn from_u8(value: u8) -> Option<WorkerState> {
        Self::ALL.get(value as usize).copied()
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkerState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::invalid(format!("unknown worker state {}", quote_input(s))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of DESIGN.md §3, written out pair by pair.
    fn design_allows(from: WorkerState, to: WorkerState) -> bool {
        match from {
            Creating => matches!(to, Connecting | Ready | Terminating | Terminated),
            Connecting => matches!(to, Ready | Terminating | Terminated),
            Ready => matches!(to, Busy | Draining | Terminating | Terminated),
            Busy => matches!(to, Ready | Draining | Terminating | Terminated),
            Draining => matches!(to, Ready | Terminating | Terminated),
            Terminating => matches!(to, Terminated),
            Terminated => false,
        }
    }

    #[test]
    fn transition_table_matches_design_for_every_pair() {
        for from in WorkerState::ALL {
            for to in WorkerState::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    design_allows(from, to),
                    "{from} -> {to}"
                );
                assert_eq!(
                    from.can_update_to(to),
                    design_allows(from, to) && to != Busy && !(from == Busy && to == Ready),
                    "update_state {from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn text_and_numeric_forms_round_trip() {
        for (i, state) in WorkerState::ALL.into_iter().enumerate() {
            assert_eq!(state as usize, i);
            assert_eq!(WorkerState::from_u8(i as u8), Some(state));
            assert_eq!(state.as_str().parse::<WorkerState>().unwrap(), state);
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert_eq!(WorkerState::from_u8(7), None);
        assert!("bogus".parse::<WorkerState>().is_err());
    }
}
