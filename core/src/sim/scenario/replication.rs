//! The replicated mode of a [`Scenario`](super::Scenario): several managers on one registry,
//! one lease, and the leader's faults (pauses, crashes).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::{non_negative, Window};

/// Most replicas a run may have.
pub const MAX_REPLICAS: usize = 16;

/// Where in its work a leader fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPoint {
    /// Between two ticks (at the fault's time).
    #[default]
    BetweenTicks,
    /// Inside the leader's next `create_worker` call from the fault's time on: the instance
    /// is created, and the process stops before it learns the answer.
    Create,
    /// Inside the leader's next `destroy_worker` call: the instance is destroyed, and the
    /// process stops before it learns the answer.
    Destroy,
    /// Inside the leader's next leader-only registry write (a health check's or a
    /// retirement's transition, the registration of a created worker, reconcile's unregister,
    /// a grace): after the manager's own fence let it through, before the store applies it.
    /// The store then refuses it if another replica took the lease meanwhile.
    Write,
    /// Inside the leader's next `create_worker` call, before it reaches the cloud: after the
    /// manager's last read of the lease, the gap only the provider can fence. The call arrives
    /// after the pause (a crash: never), with the fencing token of the term it was made under;
    /// the cloud refuses it if a call under a newer term reached it meanwhile.
    BeforeCreate,
    /// As `before_create`, for the leader's next `destroy_worker` call.
    BeforeDestroy,
}

/// The leader stops (SIGSTOP, a long GC pause, a VM migration) for the window: it neither
/// ticks nor answers, while time passes for everyone. It then wakes and goes on as if nothing
/// happened (its lease may be gone by then).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LeaderPause {
    /// When it stops (or, with `during`, from when the next such call stops it), seconds.
    pub start_secs: f64,
    /// How long it stays stopped, seconds.
    pub pause_secs: f64,
    /// Where it stops.
    #[serde(default)]
    pub during: FaultPoint,
    /// Its own clock does not count the pause (a VM its hypervisor froze, unseen by the
    /// guest's monotonic clock): when the call returns, its manager's trust window still looks
    /// open, and only the store's fence stops its next writes. Only for a pause inside a call
    /// (`during` not `between_ticks`: the next tick asks the store first anyway).
    #[serde(default)]
    pub clock_missed: bool,
}
crate::object_form::object_form!(LeaderPause, "a leader pause");

/// The leader's process dies (kill -9): its manager is dropped with everything it kept in
/// memory (destroy queue, provisions in flight, back-off, cooldowns, brake), and a fresh
/// process under a new name starts in its place later.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LeaderCrash {
    /// When it dies (or, with `during`, from when its next such call kills it), seconds.
    pub at_secs: f64,
    /// Seconds until the fresh process starts.
    pub restart_after_secs: f64,
    /// Where it dies.
    #[serde(default)]
    pub during: FaultPoint,
}
crate::object_form::object_form!(LeaderCrash, "a leader crash");

/// Several managers ("replicas") on the one registry, competing for one lease
/// ([`InMemoryLease`](crate::InMemoryLease) on the registry's clock; each replica trusts it on
/// its own clock), with the leader's faults. `replicas: 1` (the default) is the single,
/// always-leading manager of every other scenario.
///
/// A fault aimed at a call (`during` other than `between_ticks`) that finds no such call within
/// [`ARMED_FOR_SECS`] strikes between ticks instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct Replication {
    /// Managers sharing the registry, `1..=16`.
    pub replicas: usize,
    /// The lease's ttl, seconds (renewed at every tick; the leader trusts it for
    /// `ttl − ttl/4` after each renewal).
    pub lease_ttl_secs: f64,
    /// Leader pauses.
    pub leader_pauses: Vec<LeaderPause>,
    /// Leader crashes.
    pub leader_crashes: Vec<LeaderCrash>,
}
crate::object_form::object_form!(Replication, "a replication setup");

/// How long a fault aimed at a call waits for one before it strikes between ticks, seconds.
pub const ARMED_FOR_SECS: f64 = 300.0;

impl Default for Replication {
    fn default() -> Self {
        Replication {
            replicas: 1,
            lease_ttl_secs: 15.0,
            leader_pauses: Vec::new(),
            leader_crashes: Vec::new(),
        }
    }
}

impl Replication {
    /// Whether this is a replicated run (more than one manager).
    pub fn enabled(&self) -> bool {
        self.replicas > 1
    }

    pub(super) fn validate(&self) -> Result<()> {
        if !(1..=MAX_REPLICAS).contains(&self.replicas) {
            return Err(Error::invalid(format!(
                "replication.replicas must be in [1, {MAX_REPLICAS}], got {}",
                self.replicas
            )));
        }
        if !(self.lease_ttl_secs.is_finite() && self.lease_ttl_secs >= 0.004) {
            return Err(Error::invalid(format!(
                "replication.lease_ttl_secs must be at least 0.004, got {}",
                self.lease_ttl_secs
            )));
        }
        let faults = !self.leader_pauses.is_empty() || !self.leader_crashes.is_empty();
        if faults && !self.enabled() {
            return Err(Error::invalid(
                "replication: leader pauses and crashes need at least 2 replicas",
            ));
        }
        for p in &self.leader_pauses {
            Window {
                start_secs: p.start_secs,
                end_secs: p.start_secs + p.pause_secs,
            }
            .validate("replication.leader_pauses")?;
            if p.clock_missed && p.during == FaultPoint::BetweenTicks {
                return Err(Error::invalid(
                    "replication.leader_pauses: clock_missed needs a pause inside a call \
                     (during: create, destroy, write, before_create or before_destroy)",
                ));
            }
        }
        for c in &self.leader_crashes {
            non_negative("replication.leader_crashes.at_secs", c.at_secs)?;
            non_negative(
                "replication.leader_crashes.restart_after_secs",
                c.restart_after_secs,
            )?;
        }
        Ok(())
    }
}
