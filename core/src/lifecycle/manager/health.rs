//! Heartbeats and the health check: workers past their heartbeat or startup deadline are
//! declared unhealthy and taken out of service, unless the mass-expiry brake holds.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::{millis, Timestamp};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ids::WorkerId;
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker};

use super::super::report::{
    HealthCheckResult, LostJob, MassExpiryGiveUp, MassExpiryHold, UnhealthyWorker,
};
use super::brake::{assess, Brake, BrakeVerdict};
use super::destroy_queue::Destroys;
use super::retire::LIVE;
use super::{bump, Budget, WorkerLifecycleManager};

impl WorkerLifecycleManager {
    /// Records a heartbeat of `id` (the registry's `heartbeat`: the heartbeat deadline moves,
    /// nothing else changes — the idle deadline does not).
    ///
    /// # Errors
    /// [`Error::NotFound`]: the agent should register again.
    pub fn process_heartbeat(&self, id: &WorkerId) -> Result<()> {
        self.registry.heartbeat(id)
    }

    /// Finds the workers past their heartbeat deadline (`heartbeat_timeout`) or startup
    /// deadline (`startup_timeout`), moves them to `Terminating` (a job they held is reported
    /// lost), emits `UnhealthyDetected` for each, then destroys and unregisters them.
    ///
    /// Each move is conditional, against the record as it is at that moment
    /// ([`WorkerRegistry::transition_if`](crate::WorkerRegistry::transition_if)): a startup
    /// expiry only if the worker still has not reported in (`Creating`/`Connecting`), a
    /// heartbeat expiry whatever the worker does by then — and the job it holds at the move is
    /// the one in [`HealthCheckResult::lost_jobs`]. A worker left alone gets no
    /// `UnhealthyDetected`. A worker past its startup deadline is a startup expiry even when
    /// it is silent too.
    ///
    /// Unless the brake holds: when more than `max(unhealthy_floor,
    /// max_unhealthy_fraction × watched)` of the workers under heartbeat watch are silent —
    /// counting every worker silent for more than half `heartbeat_timeout`, so that a
    /// partition is seen whole even though its victims cross their deadline over several
    /// checks; both counts leave out the workers past their startup deadline, expired
    /// regardless — no worker is declared unhealthy for its heartbeat, `MassExpiryHeld` is
    /// emitted and [`HealthCheckResult::held`] says so; they are found again next time.
    /// (Agents should heartbeat more often than every `heartbeat_timeout / 2`.) The first
    /// check after the brake held that finds the fleet under the limit releases it and gives
    /// every worker a fresh grace period ([`HealthCheckResult::brake_released`]), so that the
    /// agents still coming back from the partition are not expired in a last batch. Startup
    /// expiries (workers that never reported in) are not held back: a broken provider must not
    /// pin the fleet at `max_workers`.
    ///
    /// A check that runs while another one (on another thread) is releasing the brake declares
    /// nobody unhealthy for a heartbeat either, until that grace period is granted.
    ///
    /// The brake is bounded: a check that finds it has held continuously for longer than
    /// `max_mass_expiry_hold` (since the first check that held) lets go *without* a grace
    /// period — most of the fleet really died — and declares the silent workers unhealthy as
    /// usual ([`HealthCheckResult::brake_gave_up`]). No new hold starts until a check finds
    /// the fleet back under the limit.
    ///
    /// A worker the registry fails on (its look-up or its move) is left as it is, for the next
    /// check; what the check did to the others is in the result. A move answered `Backend` may
    /// have been applied all the same (its reply lost): the record is looked at, and a worker
    /// found `Terminating` (or gone) is reported and destroyed as if the move had answered
    /// `Ok`, its job (as read right before the move) in `lost_jobs`.
    ///
    /// A leader whose takeover (or whose tick after a host stall) could not grant the fleet
    /// its grace period grants it first: until it can, nothing is checked.
    ///
    /// A check that began (its deadline queries asked, even if they fail) is counted in the
    /// metrics (`hodei_workers_health_checks_total`, and the duration histogram while timing is
    /// on); a call refused before it checked anything — `NotLeader`, or the owed grace period
    /// not granted — is not.
    ///
    /// # Errors
    /// [`Error::NotLeader`](crate::Error::NotLeader) on a replica that does not lead; the
    /// registry's error when it fails to answer the deadline queries, or to grant the grace
    /// period the fleet is owed.
    pub fn run_health_check(&self) -> Result<HealthCheckResult> {
        let mut result = HealthCheckResult::default();
        self.health_check_inner(&mut Budget::unlimited(), &mut result)?;
        Ok(result)
    }

    /// The health check of a tick (spending its `budget`) or of
    /// [`run_health_check`](Self::run_health_check), measured for the metrics: counted in
    /// `hodei_workers_health_checks_total` and observed in the duration histogram once it
    /// began (its deadline queries asked, even if they fail). A call refused before — not
    /// leading, or the grace period the fleet is owed not granted — checked nothing and is
    /// neither.
    ///
    /// What it finds and does is written into `result` as it goes (each worker right after it
    /// was taken out of service), so that a panic midway leaves in `result` what was done
    /// before it: a tick reports it (see `tick_with`). An error comes before any action.
    pub(super) fn health_check_inner(
        &self,
        budget: &mut Budget,
        result: &mut HealthCheckResult,
    ) -> Result<()> {
        let timer = self.metrics.start_health_check();
        budget.note_first_action |= timer.wants_first_action();
        // In a tick, an action taken before the check (a takeover's reconcile) is the tick's.
        let noted = budget.first_action;
        crate::trace::span!("health_check");
        self.fence()?;
        let now = self.registry.now();
        // A takeover or host stall whose grace period could not be granted: granted first, or
        // nothing is checked (the workers whose heartbeats were not seen would be expired).
        // The ticks skip their health check meanwhile; this is the host's own call.
        self.grant_owed_grace(now)?;
        let checked = self.check_deadlines(now, budget, result);
        let first = budget.first_action.filter(|_| noted.is_none());
        self.metrics.health_check_done(timer, first);
        checked
    }

    /// The check itself, once the lease and the owed grace allowed it: the deadline queries,
    /// the brake, the moves and destroys (see [`run_health_check`](Self::run_health_check)).
    ///
    /// Out of line, as the check was before the measuring moved around it: inlined into
    /// `health_check_inner`, the live-fleet tick of `core/benches/metrics.rs` (10k workers, a
    /// health check every tick) ran 0.4–0.9 % slower than before, in 60-round alternations.
    #[inline(never)]
    fn check_deadlines(
        &self,
        now: Timestamp,
        budget: &mut Budget,
        result: &mut HealthCheckResult,
    ) -> Result<()> {
        result.checked_at = now;
        let silent = self
            .registry
            .find_unhealthy(self.config.heartbeat_timeout)?;
        let never_ready = self
            .registry
            .find_startup_expired(self.config.startup_timeout)?;
        // The brake leaves out the workers past their startup deadline (see
        // `mass_expiry_hold`): read before their snapshots are dropped.
        let starting = StartupExpired::of(&never_ready, now, self.config.heartbeat_timeout);
        // Ids only: each worker is looked at afresh before anything is done to it.
        let mut due: BTreeMap<WorkerId, TerminationReason> = BTreeMap::new();
        for w in silent {
            due.insert(w.id, TerminationReason::Unhealthy);
        }
        // A worker past its startup deadline is a startup expiry even when it is silent too:
        // the brake never holds those (it would keep a broken provider's workers alive).
        for w in never_ready {
            due.insert(w.id, TerminationReason::StartupTimeout);
        }
        if due.is_empty() {
            let (verdict, before) = self.judge(false, now);
            if verdict == BrakeVerdict::Release {
                // Everyone is back in time: release the brake with a grace period anyway, for
                // the stragglers already more than half a timeout silent.
                self.release_brake(now, before)?;
                result.brake_released = true;
            }
            // (`Releasing`: another check is granting the grace period; nobody is due here.)
            return Ok(());
        }

        // The brake looks at heartbeat expiries only: a partition on the host's side silences
        // running workers, and those are the ones not to kill. Workers that never reported in
        // are expired regardless, or a broken provider would pin the fleet at max_workers.
        let silent = due
            .values()
            .filter(|reason| **reason == TerminationReason::Unhealthy)
            .count();
        let hold = match silent {
            0 => None,
            _ => self.mass_expiry_hold(silent, starting)?,
        };
        // Decided under the brake's lock, acted upon after it (no registry call under it).
        let (verdict, before) = self.judge(hold.is_some(), now);
        match (verdict, hold) {
            (BrakeVerdict::Hold, Some(hold)) => {
                bump(&self.counters.holds, 1);
                let _ = self.registry.publish(EventKind::MassExpiryHeld {
                    would_expire: hold.would_expire,
                    live: hold.live,
                });
                result.held = Some(hold);
                due.retain(|_, reason| *reason != TerminationReason::Unhealthy);
            }
            (BrakeVerdict::GiveUp(held_for), Some(hold)) => {
                // Held for longer than a partition is allowed to last: most of the fleet
                // really died. No grace period: the silent workers are expired below, their
                // jobs reported lost, their instances destroyed.
                result.brake_gave_up = Some(MassExpiryGiveUp { held_for, hold });
            }
            (BrakeVerdict::Release, _) => {
                // The partition heals: its victims come back one by one over a heartbeat
                // interval. Those not heard from yet are not expired in a last batch: everyone
                // gets a fresh grace period, as after a host stall. A worker that really died
                // meanwhile is expired one heartbeat_timeout later.
                self.release_brake(now, before)?;
                result.brake_released = true;
                due.retain(|_, reason| *reason != TerminationReason::Unhealthy);
            }
            (BrakeVerdict::Releasing, _) => {
                // Another check is granting the release's grace period right now: what this
                // check read predates it, and would expire the stragglers it protects. They
                // are looked at again by the next check, after the grace period.
                due.retain(|_, reason| *reason != TerminationReason::Unhealthy);
            }
            _ => {}
        }

        let total = due.len();
        for (i, (id, reason)) in due.into_iter().enumerate() {
            // The lease may have been lost meanwhile (a long check, a pause): stop here. Fenced
            // before the action is taken from the budget: a worker left for the lost lease is
            // no action of the tick's (`actions`, `capped`, the first-action timing).
            if self.fence().is_err() {
                result.deferred = total - i;
                break;
            }
            if !budget.take() {
                result.deferred = total - i;
                break;
            }
            // A fresh look: the worker may have recovered, left or changed since the index
            // was read.
            let Some(fresh) = self.registry.get(&id).ok().flatten() else {
                continue;
            };
            if fresh.state.is_terminal() {
                continue;
            }
            let still_due = match reason {
                TerminationReason::StartupTimeout => fresh.state.is_starting(),
                _ => fresh.heartbeat_age(now) > millis(self.config.heartbeat_timeout),
            };
            if !still_due {
                continue;
            }
            // Applied against the record as it is now: a starting worker only if it still has
            // not reported in; a silent one whatever it does, and the job it holds at the move
            // is the one reported lost.
            let states: &[WorkerState] = match reason {
                TerminationReason::StartupTimeout => {
                    &[WorkerState::Creating, WorkerState::Connecting]
                }
                _ => &LIVE,
            };
            // A move applied whose reply was lost counts as applied (the record is looked at).
            let moved = match self.take_out_of_service(&fresh, states) {
                Ok(Some(moved)) => moved,
                // It moved on meanwhile (reported in, or another thread terminated it).
                Ok(None) | Err(Error::NotFound(_) | Error::InvalidTransition { .. }) => continue,
                // The registry failed on this one (as on the `get` above): it is found again
                // by the next check. Returning the error instead would drop from the result
                // what this check already did — the jobs of the workers it took out of service
                // before (their `JobLost` is emitted) — and the lease lost is the next
                // iteration's fence.
                Err(_) => continue,
            };
            // Announced once it is out of service, never for a worker left alone.
            let _ = self.registry.publish(EventKind::UnhealthyDetected {
                worker_id: id,
                last_heartbeat: fresh.last_heartbeat,
            });
            // Written (and counted) before the destroy, whose call out may panic.
            if let Some(job) = moved.lost_job {
                bump(&self.counters.lost_jobs, 1);
                result.lost_jobs.push(LostJob {
                    worker_id: id,
                    job_id: job,
                });
            }
            bump(&self.counters.unhealthy, 1);
            result.unhealthy.push(UnhealthyWorker {
                worker_id: id,
                provider_id: fresh.provider_id().clone(),
                state: moved.from,
                reason,
                last_heartbeat: fresh.last_heartbeat,
            });
            self.queue_destroy(&fresh, reason, now);
            self.destroy_due(Some(&[id]), budget, result.destroys());
        }
        Ok(())
    }

    /// The brake's verdict at `now`, and its memory before it (see `release_brake`).
    fn judge(&self, over_limit: bool, now: Timestamp) -> (BrakeVerdict, Brake) {
        let mut brake = self.brake.lock();
        let before = *brake;
        let verdict = brake.judge(over_limit, now, self.config.max_mass_expiry_hold);
        (verdict, before)
    }

    /// Releases the brake with a grace period for every worker. When the grace period cannot
    /// be granted, the brake's memory goes back to `before` (it still holds), so that the next
    /// check releases again: otherwise it would expire the stragglers in one batch, as if the
    /// brake had never held.
    ///
    /// Until the grace period is granted (or failed), a check running at the same moment on
    /// another thread declares nobody unhealthy for a heartbeat (`BrakeVerdict::Releasing`);
    /// the brake's memory is settled also when the registry call unwinds.
    fn release_brake(&self, now: Timestamp, before: Brake) -> Result<()> {
        struct Settle<'a> {
            brake: &'a parking_lot::Mutex<Brake>,
            before: Brake,
            granted: bool,
        }
        impl Drop for Settle<'_> {
            fn drop(&mut self) {
                self.brake.lock().released(self.granted, self.before);
            }
        }
        let mut settle = Settle {
            brake: &self.brake,
            before,
            granted: false,
        };
        let granted = self.write(|r| r.grant_grace(now));
        settle.granted = granted.is_ok();
        granted
    }

    /// Whether the brake holds, with `silent` workers past their heartbeat deadline now (and
    /// not past their startup deadline: those are startup expiries).
    ///
    /// Silenced agents do not all cross their deadline in the same health check: their last
    /// heartbeats are spread over one heartbeat interval, so a partition would expire the
    /// fleet in batches, each under the limit. The brake therefore counts the *suspects*:
    /// workers silent for more than half the heartbeat timeout (agents heartbeat more often
    /// than that), which a partition makes of the whole fleet at once. It compares them with
    /// the workers under heartbeat watch (`Connecting`, `Ready`, `Busy`, `Draining`):
    /// replacements still `Creating` cannot go silent and do not dilute the count.
    ///
    /// Both counts leave out the `Connecting` workers past their startup deadline
    /// (`starting`): this check expires them whatever the brake says, so they are not workers
    /// it protects, and their own silence is no sign of a partition of the running fleet.
    /// (Clarified 2026-12-07: the registry's counts include them — `count_unhealthy` and
    /// `find_unhealthy` count every heartbeat-watched state alike, on both backends — while
    /// `silent` did not; six of them made the brake hold the one dead running worker's expiry,
    /// or, heartbeating, let a partition of the running workers through. Tests:
    /// `health::workers_past_their_startup_deadline_do_not_make_the_brake_hold_the_others`,
    /// `health::workers_past_their_startup_deadline_do_not_dilute_the_brakes_count`.)
    fn mass_expiry_hold(
        &self,
        silent: usize,
        starting: StartupExpired,
    ) -> Result<Option<MassExpiryHold>> {
        let suspect = self
            .registry
            .count_unhealthy(self.config.heartbeat_timeout / 2)?
            .saturating_sub(starting.suspect);
        let s = self.registry.stats()?.by_state;
        let watched =
            (s.connecting + s.ready + s.busy + s.draining).saturating_sub(starting.watched);
        Ok(assess(&self.config, silent, suspect, watched))
    }
}

/// The workers past their startup deadline that the registry's counts for the brake include:
/// the `Connecting` ones (heartbeat-watched; `Creating` is not), and of those the suspects,
/// silent for more than half the heartbeat timeout at the check's `now`.
///
/// Judged from the snapshots' `last_heartbeat`, without the registry's grace floor: that
/// only matters while `now - floor` is at most half the timeout, and then nobody is past the
/// full timeout (the floor counts as everyone's heartbeat), so the brake is not asked. A
/// heartbeat or a move between the queries may make a count off by the workers it touched,
/// as any count taken over several reads.
#[derive(Debug, Clone, Copy, Default)]
struct StartupExpired {
    watched: usize,
    suspect: usize,
}

impl StartupExpired {
    fn of(never_ready: &[Worker], now: Timestamp, heartbeat_timeout: Duration) -> Self {
        let half = millis(heartbeat_timeout / 2);
        never_ready
            .iter()
            .filter(|w| w.state.heartbeat_monitored())
            .fold(Self::default(), |n, w| StartupExpired {
                watched: n.watched + 1,
                suspect: n.suspect + usize::from(w.heartbeat_age(now) > half),
            })
    }
}
