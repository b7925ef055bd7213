//! The replicated manager: the leadership lease as the manager uses it — taking over when a
//! renewal grants a new term, reporting a follower's view, and the fence every leader-only
//! write passes.
//!
//! Leader state (destroy queue, remembered orphans, provider back-off, cooldowns, brake,
//! interruption notices) is **not** shared: it is rebuilt by the new leader from the registry
//! (reconcile, which adopts every `Terminating` record) after a grace period for the whole
//! fleet, and a replica that stops leading forgets it. See DESIGN.md §11.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{millis, Clock, Timestamp};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::registry::WorkerRegistry;

use super::super::config::{backoff_delay, WorkerLifecycleConfig};
use super::super::lease::{LeaderInfo, Leadership, LeaseKeeper, Renewal, Term};
use super::super::provider::{guarded, ProviderResult};
use super::super::report::{DestroyFailure, TickReport};
use super::brake::Brake;
use super::{Budget, WorkerLifecycleManager};

/// The ticks' own reconcile every `reconcile_interval`, as the report names it.
const PERIODIC_RECONCILE: &str = "periodic reconcile";

/// A new leader's reconcile at its takeover, as the report names it.
const TAKEOVER_RECONCILE: &str = "takeover reconcile";

impl WorkerLifecycleManager {
    /// A manager that is one of several replicas sharing `registry`: it acts on the fleet only
    /// while it holds `leadership`'s lease (see [`Leadership`]), and trusts that lease only
    /// until `renewal start + ttl − margin` on `local_clock` (its own monotonic clock:
    /// [`SystemClock`](crate::SystemClock) in production, a
    /// [`ManualClock`](crate::ManualClock) in tests).
    ///
    /// Each [`tick`](Self::tick) first acquires or renews the lease (run ticks at least every
    /// `ttl / 3`, e.g. with [`start_ticker`](Self::start_ticker)):
    /// - a **follower** does nothing else; its report says who leads, under which term, since
    ///   when ([`TickReport::leader`]);
    /// - a **new leader** takes over first: it grants the whole fleet a grace period (workers
    ///   whose heartbeats went to a dead leader are not expired), rebuilds its state and runs
    ///   [`reconcile`](Self::reconcile), which adopts every `Terminating` record and destroys
    ///   the instances no record knows (when it could not look at every provider's
    ///   instances, it runs again after a back-off — `destroy_retry_initial` doubling up to
    ///   `reconcile_interval` — until it could); when the grace period cannot be granted,
    ///   its ticks run no health check and no scale-down until one of them grants it; it
    ///   publishes [`LeaderChanged`](crate::EventKind::LeaderChanged);
    /// - the **leader** does what a tick does, reconcile every `reconcile_interval` included:
    ///   an instance that appears after the takeover's reconcile (the create of a replica that
    ///   lost the lease during it, returning late) is destroyed by the next one.
    ///
    /// Every leader-only operation ([`provision_worker`](Self::provision_worker), the health
    /// check, cleanup, [`terminate_worker`](Self::terminate_worker), reconcile, each provider
    /// create or destroy, each registration of a created worker, the scaling cooldowns and the
    /// brake) is fenced: on a replica that does not lead or whose trust window closed it fails
    /// with [`Error::NotLeader`] and changes nothing. Until its first
    /// tick, a replica does not lead; nor does a copy of it in a process forked from the
    /// leader (`fork()` without `exec`): the lease is the process's whose renewal got it, and
    /// the copy follows until it acquires a lease of its own. The pools are each replica's own configuration:
    /// [`set_pools`](Self::set_pools) and [`remove_pool`](Self::remove_pool) work on every
    /// replica, but only the leader drains (fenced); a follower drains nothing, and drains
    /// what its configuration removed at its ticks once it leads.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `config` fails
    /// [`WorkerLifecycleConfig::validate`], or when `leadership`'s
    /// [`holder`](Leadership::holder) and [`ttl`](Leadership::ttl) fail
    /// [`validate_lease`](crate::validate_lease) (a ttl under 3 ms or above
    /// [`MAX_CONFIG_DURATION`](crate::MAX_CONFIG_DURATION), 100 years; a holder empty, over
    /// 128 bytes or holding a NUL): the rule [`replicated`](Self::replicated) and every
    /// backend's lease apply, whatever made the lease (clarified 2026-12-07: before, an
    /// [`InMemoryLease`](crate::InMemoryLease) or a host's own lease of any ttl, zero or
    /// `Duration::MAX` included, built a manager); or when its [`margin`](Leadership::margin)
    /// is not below its ttl (clarified 2026-12-07: such a leader trusted its lease for no
    /// time, took it at every tick and never acted, in silence). Nothing is built then, and
    /// the lease is not asked for the leadership.
    pub fn with_leadership(
        registry: Arc<dyn WorkerRegistry>,
        config: WorkerLifecycleConfig,
        leadership: Arc<dyn Leadership>,
        local_clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        crate::lifecycle::validate_lease(leadership.holder(), leadership.ttl())?;
        let (ttl, margin) = (leadership.ttl(), leadership.margin());
        if margin >= ttl {
            // The leader acts until `renewal start + ttl − margin`: no time at all. It would
            // take the lease at every tick and never act, fencing every write, in silence.
            return Err(Error::invalid(format!(
                "lease margin {margin:?} must be below its ttl {ttl:?}: a leader trusts its \
                 lease for ttl − margin after each renewal"
            )));
        }
        Self::build(registry, config, LeaseKeeper::new(leadership, local_clock))
    }

    /// A manager that is one replica of several sharing `registry`, named `holder` (unique
    /// per process, e.g. `host-pid`), on the registry's own lease
    /// ([`WorkerRegistry::lease`]) lasting `ttl` after each renewal, trusted on a
    /// [`SystemClock`](crate::SystemClock): see [`with_leadership`](Self::with_leadership).
    /// On a registry that is not shared (the in-memory one) it is a plain
    /// [`new`](Self::new) manager, which always leads: the same host code runs embedded and
    /// replicated.
    ///
    /// # Errors
    /// As [`new`](Self::new); `InvalidArgument` for a `holder` or `ttl` that
    /// [`validate_lease`](crate::validate_lease) refuses, on every registry (the in-memory one
    /// too); the registry's errors for the lease (an unreachable store).
    pub fn replicated(
        registry: Arc<dyn WorkerRegistry>,
        config: WorkerLifecycleConfig,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Self> {
        crate::lifecycle::validate_lease(holder, ttl)?;
        match registry.lease(holder, ttl)? {
            Some(lease) => Self::with_leadership(
                registry,
                config,
                lease,
                Arc::new(crate::clock::SystemClock::new()),
            ),
            None => Self::new(registry, config),
        }
    }

    /// The lease this manager competes for.
    pub fn leadership(&self) -> &Arc<dyn Leadership> {
        self.lease.leadership()
    }

    /// Whether this manager leads now: it holds the lease and its trust window is open.
    pub fn is_leader(&self) -> bool {
        self.lease.fence().is_ok()
    }

    /// The leader as last seen by this manager's lease renewals (itself when leading).
    pub fn leader(&self) -> Option<LeaderInfo> {
        self.lease.leader()
    }

    /// Gives the lease up, if held (a clean shutdown): another replica takes over at its next
    /// tick instead of waiting for the lease to expire. This manager then follows until a
    /// later tick acquires the lease again; like a replica that lost its lease, it forgets
    /// what only a leader keeps (its destroy queue but for the destroys in flight, the orphans
    /// it remembered, provider back-off, the brake's episode, interruption notices, the pool
    /// gauges).
    ///
    /// # Errors
    /// The store could not be reached (the lease then expires by itself; this manager
    /// follows all the same).
    pub fn step_down(&self) -> Result<()> {
        let result = self.lease.step_down();
        // The keeper holds no term any more, so no later renewal reports one lost: forget now.
        self.forget_leader_state();
        result
    }

    /// The term to act under, or [`Error::NotLeader`]: every
    /// leader-only write calls this first.
    pub(super) fn fence(&self) -> Result<Term> {
        self.lease.fence()
    }

    /// The fence, confirmed by the store: right before a provider call (see
    /// `LeaseKeeper::confirm`).
    ///
    /// # Errors
    /// [`Error::NotLeader`].
    pub(super) fn confirm(&self) -> Result<Term> {
        self.lease.confirm()
    }

    /// Runs a create or destroy made under fencing token `token` (`what` names it; a panic
    /// becomes the error). A refused token ([`ProviderErrorKind::Fenced`]) is the provider's
    /// word that another replica leads under a larger term: the trust window of `token`
    /// closes at once, as for a refusal by the store, so the rest of the tick makes no further
    /// provider call.
    ///
    /// [`ProviderErrorKind::Fenced`]: super::super::provider::ProviderErrorKind::Fenced
    pub(super) fn provider_call<T>(
        &self,
        token: Term,
        what: &str,
        call: impl FnOnce() -> ProviderResult<T>,
    ) -> ProviderResult<T> {
        let result = guarded(what, call);
        if matches!(&result, Err(e) if e.is_fenced()) {
            self.lease.distrust(token);
        }
        result
    }

    /// Runs a leader-only registry write, fenced twice: by [`fence`](Self::fence) right
    /// before it (so a write never goes out unfenced, even when a renewal on another thread
    /// just lost the term), and by the store in the write's own transaction where the
    /// registry's store keeps the lease (PostgreSQL: the view of [`WorkerRegistry::fenced`]
    /// for the term held, which refuses once another replica took the lease). A refusal by the
    /// store closes the trust window at once, so the rest of the tick (its provider calls above
    /// all) stops at the next fence.
    ///
    /// # Errors
    /// [`Error::NotLeader`] from either fence; the write's own.
    pub(super) fn write<T>(&self, op: impl FnOnce(&dyn WorkerRegistry) -> Result<T>) -> Result<T> {
        let term = self.fence()?;
        let view = {
            let mut writes = self.writes.lock();
            match &*writes {
                Some((t, view)) if *t == term => view.clone(),
                _ => {
                    let view = self.registry.fenced(&**self.lease.leadership(), term);
                    *writes = Some((term, view.clone()));
                    view
                }
            }
        };
        let result = match &view {
            Some(view) => op(&**view),
            None => op(&*self.registry),
        };
        if matches!(result, Err(Error::NotLeader(_))) {
            self.lease.distrust(term);
        }
        result
    }

    /// Renews (or takes) the lease at the start of a tick and fills the report's leader
    /// fields; a takeover's reconcile spends the tick's `budget`. Returns whether the tick goes
    /// on as the leader's.
    pub(super) fn lead(&self, budget: &mut Budget, report: &mut TickReport) -> bool {
        let me = self.lease.leadership().holder().to_owned();
        match self.lease.renew() {
            Renewal::Kept(info) => {
                report.leading = true;
                report.leader = Some(info);
                self.retry_grace(report);
                true
            }
            Renewal::Acquired(info) => {
                report.leading = true;
                report.leader = Some(info.clone());
                self.take_over(&info, budget, report);
                // The takeover may have been long (reconcile): act only if still trusted.
                self.still_leading(report)
            }
            Renewal::Following { leader, lost } => {
                report.leading = false;
                // A follower keeps no leader state: also after a step-down (whose renewals
                // report no term lost), and whatever a call of the old term on another thread
                // queued after the step-down forgot it.
                self.forget_leader_state();
                match (&leader, lost) {
                    (_, Some(term)) => {
                        let _ = self.registry.publish(EventKind::LeaderChanged {
                            holder: leader.as_ref().map(|l| l.holder.clone()),
                            term: leader.as_ref().map_or(term, |l| l.term),
                            by: me.clone(),
                        });
                        report.decisions.push(format!(
                            "lost the lease: {me} no longer holds term {term}{}; nothing done",
                            describe(leader.as_ref())
                        ));
                    }
                    (Some(_), None) => report.decisions.push(format!(
                        "follower: {me} does not lead{}",
                        describe(leader.as_ref())
                    )),
                    (None, None) => report
                        .decisions
                        .push(format!("follower: {me} could not take the free lease")),
                }
                report.leader = leader;
                false
            }
            Renewal::SteppedDown { given_up, error } => {
                // The host stepped down while this renewal was on its way: follow, whatever
                // the store answered (a later tick may acquire again).
                self.forget_leader_state();
                report.leading = false;
                report.leader = None;
                report.decisions.push(match (given_up, error) {
                    (Some(term), None) => format!(
                        "stepped down during the lease renewal: {me} gave up term {term} \
                         again, which the renewal got; nothing done"
                    ),
                    (Some(term), Some(e)) => format!(
                        "stepped down during the lease renewal: {me} could not give up term \
                         {term}, which the renewal got ({e}; it expires by itself); nothing done"
                    ),
                    (None, _) => format!(
                        "stepped down during the lease renewal: {me} does not lead; nothing done"
                    ),
                });
                false
            }
            Renewal::Unknown { leading, error } => {
                report.leading = leading;
                report.leader = self.lease.leader();
                report.decisions.push(if leading {
                    format!(
                        "lease renewal failed ({error}); acting within the trust window of the \
                         last renewal"
                    )
                } else {
                    format!("lease renewal failed ({error}); not leading")
                });
                if leading {
                    self.retry_grace(report);
                }
                leading
            }
        }
    }

    /// Whether the lease is still trusted; otherwise says so in the report (a paused leader
    /// waking up stops here).
    pub(super) fn still_leading(&self, report: &mut TickReport) -> bool {
        self.says_leading(self.fence(), report)
    }

    /// [`still_leading`](Self::still_leading) with the store's word too ([`confirm`](Self::confirm):
    /// one read of the lease), at the end of a tick: after a pause this replica's own clock
    /// missed, the report, and the replica's trust, are right before the next tick.
    pub(super) fn still_leading_by_store(&self, report: &mut TickReport) -> bool {
        self.says_leading(self.confirm(), report)
    }

    fn says_leading(&self, fence: Result<Term>, report: &mut TickReport) -> bool {
        match fence {
            Ok(_) => true,
            Err(e) => {
                report.leading = false;
                report.decisions.push(format!("stopped: {e}"));
                false
            }
        }
    }

    /// A new term: grace for the fleet, fresh leader state, reconcile (adopting every
    /// `Terminating` record), then the event.
    fn take_over(&self, info: &LeaderInfo, budget: &mut Budget, report: &mut TickReport) {
        let now = report.at;
        self.forget_leader_state();
        {
            let mut s = self.schedule.lock();
            s.last_tick = Some(now);
            s.last_health_check = None;
            s.health_check_again = false;
            s.last_scale_up = None;
            // Owed until done below, so that a takeover cut short (a host's registry that
            // panics, under a ticker or a binding that goes on after the panic) is finished by
            // the next ticks -- the grace by `retry_grace`, the reconcile by
            // `reconcile_if_due` -- rather than never: they renew the same term, no takeover
            // again. Every way the takeover ends without a panic sets both below.
            s.grace_owed = true;
            s.next_reconcile = Some(now);
            s.reconcile_retry = Some(TAKEOVER_RECONCILE);
        }
        // The same for every pool: a pool this replica never scaled has no cooldown of its
        // own, and one it scaled under an earlier term has a stale one.
        for entry in self.pools.lock().entries.values_mut() {
            entry.last_scale_up = None;
        }
        // No scale-down right after a takeover: the old leader's decisions are unknown.
        self.restart_scale_down_cooldowns(now);
        report.decisions.push(format!(
            "took the lease: {} leads under term {} (since {}); every worker gets a fresh \
             grace period, then reconcile",
            info.holder, info.term, info.since
        ));
        if let Err(e) = self.write(|r| r.grant_grace(now)) {
            // Acting without the grace would expire the workers whose heartbeats went to the
            // dead leader: the takeover stays incomplete until a later tick grants it (the
            // grace stays owed).
            report.decisions.push(format!(
                "grant_grace failed: {e}; takeover incomplete: no health check and no \
                 scale-down until a later tick grants the grace period"
            ));
        } else {
            self.schedule.lock().grace_owed = false;
        }
        self.tick_reconcile(now, TAKEOVER_RECONCILE, false, budget, report);
        let _ = self.registry.publish(EventKind::LeaderChanged {
            holder: Some(info.holder.clone()),
            term: info.term,
            by: info.holder.clone(),
        });
    }

    /// Restarts the scale-down cooldown of the scaling target and of every pool at `now`:
    /// at a takeover, and at each tick of a leader whose takeover is incomplete.
    pub(super) fn restart_scale_down_cooldowns(&self, now: Timestamp) {
        self.schedule.lock().last_scale_action = Some(now);
        let mut set = self.pools.lock();
        set.cooldowns_restarted_at = Some(now);
        for entry in set.entries.values_mut() {
            entry.last_scale_action = Some(now);
        }
    }

    /// Grants the fleet the grace period a takeover or a host stall owes it, when their own
    /// grant failed (see `Schedule::grace_owed`): first thing in each leader tick until it
    /// succeeds (the tick then checks the fleet as usual).
    fn retry_grace(&self, report: &mut TickReport) {
        match self.grant_owed_grace(report.at) {
            Ok(false) => {}
            Ok(true) => report.decisions.push(
                "the fleet's owed grace period granted (a takeover's or a host stall's grant \
                 failed before): every worker gets a fresh grace period"
                    .to_owned(),
            ),
            Err(e) => report.decisions.push(format!(
                "grant_grace failed again: {e}; still no health check and no scale-down"
            )),
        }
    }

    /// Grants the grace period the fleet is owed (see `Schedule::grace_owed`), if any, at
    /// `now`: whether it did.
    ///
    /// # Errors
    /// The grant's own ([`Error::NotLeader`] from the fence, the registry's): the grace is
    /// still owed.
    pub(super) fn grant_owed_grace(&self, now: Timestamp) -> Result<bool> {
        if !self.schedule.lock().grace_owed {
            return Ok(false);
        }
        self.write(|r| r.grant_grace(now))?;
        self.schedule.lock().grace_owed = false;
        Ok(true)
    }

    /// A reconcile of the ticks' — the takeover's, or a periodic one (`what` names it in the
    /// report) — reported in the tick's report. Its orphan destroys spend the tick's `budget`;
    /// the orphans over it are remembered for the next ticks' orphan retries. When it could
    /// not look at every provider's instances — a listing failed, or its orphan check was
    /// skipped (a provision of this replica in flight, a destroy confirmed during the listing)
    /// — it runs again at a later tick ([`reconcile_if_due`](Self::reconcile_if_due)) after a
    /// back-off ([`reconcile_retry_delay`](Self::reconcile_retry_delay)) until it could: the
    /// orphans this replica remembered were forgotten with the lease, and a reconcile is what
    /// finds them again (on a host that only runs the ticker, nothing else would). Once
    /// complete, [`reconcile`](Self::reconcile) itself schedules the next periodic run and
    /// resets the back-off. It is braked: a provider whose listing would expire more of its
    /// workers (`Terminating` ones included) as vanished than the health check's brake allows
    /// has none expired (a
    /// listing truncated or empty by mistake must not end a fleet and its jobs in one tick),
    /// and one whose listing shows more instances no record knows than the brake allows
    /// against its records has none of them destroyed (another tenant's or region's instances,
    /// a misconfigured listing, must not be destroyed as orphans; the host's `reconcile()` is
    /// the way after losing a registry); that counts as incomplete too.
    fn tick_reconcile(
        &self,
        now: Timestamp,
        what: &'static str,
        again: bool,
        budget: &mut Budget,
        report: &mut TickReport,
    ) {
        let label = if again {
            format!("{what} (again)")
        } else {
            what.to_owned()
        };
        // No run of the ticks judges records younger than `startup_timeout`: a provider's
        // listing may lag behind its creates (a cloud API's eventual consistency), and it
        // would expire a fresh worker as `Vanished`, job and all — every ten minutes on every
        // fleet for the periodic run, the workers the old leader created just before it died
        // for a takeover's, those this leader creates meanwhile for a run again. The startup
        // deadline and the health check judge those. Only a host's own `reconcile()` judges
        // every record.
        let young = self.config.startup_timeout;
        let complete = match self.reconcile_within(young, true, budget, &mut report.lost_jobs) {
            Ok((r, deferred, held)) => {
                report.reconcile_held.extend(held);
                if !r.adopted_terminating.is_empty()
                    || !r.orphans.is_empty()
                    || !r.vanished.is_empty()
                {
                    // Only the confirmed ones: a failed destroy is said below, with its error.
                    let destroyed = r.orphans.iter().filter(|o| o.error.is_none()).count();
                    report.decisions.push(format!(
                        "{label}: {} Terminating adopted, {destroyed} orphan instances \
                         destroyed, {} vanished",
                        r.adopted_terminating.len(),
                        r.vanished.len()
                    ));
                }
                // Read after the destroys (the tick's `now` may be older than their failures).
                let after = self.registry.now();
                for orphan in &r.orphans {
                    if let Some(error) = &orphan.error {
                        // When, as it is: a destroy the host cut short (`Interrupted`) is due
                        // again at once, a provider's failure after a back-off.
                        let remembered =
                            self.orphan_retry(&orphan.provider_id, &orphan.resource_id);
                        let retry = match remembered {
                            Some((_, _, at)) if at <= after => {
                                "retried by the next tick".to_owned()
                            }
                            Some((_, _, at)) => {
                                format!("retried by the ticks after a back-off, at {at}")
                            }
                            None => "retried by the ticks".to_owned(),
                        };
                        // A failed destroy of the tick's, as the ticks' retries of it report
                        // theirs (and as `destroy_failures_total` counts it).
                        if let Some((worker_id, attempts, next_retry_at)) = remembered {
                            report.failed.push(DestroyFailure {
                                worker_id,
                                provider_id: orphan.provider_id.clone(),
                                resource_id: orphan.resource_id.clone(),
                                error: error.clone(),
                                attempts,
                                next_retry_at,
                            });
                        }
                        report.decisions.push(format!(
                            "{label}: destroying orphan instance {} of provider {} failed: \
                             {error} ({retry})",
                            orphan.resource_id, orphan.provider_id
                        ));
                    }
                }
                if deferred > 0 {
                    report.decisions.push(format!(
                        "{label}: {deferred} orphan instances over max_actions_per_tick {}: \
                         destroyed by the next ticks",
                        self.config.max_actions_per_tick
                    ));
                }
                for (provider, error) in &r.errors {
                    report
                        .decisions
                        .push(format!("{label}: provider {provider}: {error}"));
                }
                for provider in &r.orphan_check_skipped {
                    report.decisions.push(format!(
                        "{label}: orphan check of provider {provider} skipped (a provision or \
                         a destroy under way)"
                    ));
                }
                r.is_complete()
            }
            Err(e) => {
                report.decisions.push(format!("{label} failed: {e}"));
                false
            }
        };
        if !complete {
            let delay = {
                let mut s = self.schedule.lock();
                s.reconcile_failures = s.reconcile_failures.saturating_add(1);
                let delay = self.reconcile_retry_delay(s.reconcile_failures);
                s.next_reconcile = Some(now.saturating_add(millis(delay)));
                s.reconcile_retry = Some(what);
                delay
            };
            report.decisions.push(format!(
                "{label} incomplete: run again in {} s",
                delay.as_secs_f64()
            ));
        }
    }

    /// How long the ticks wait before they run a reconcile again after `failures` incomplete
    /// ones in a row: `destroy_retry_initial` doubling with each, up to `reconcile_interval`
    /// (`destroy_retry_max` when that is zero), so that a provider whose listing keeps failing
    /// is not asked every tick for ever, and a run again never waits longer than the periodic
    /// one would.
    fn reconcile_retry_delay(&self, failures: u32) -> Duration {
        let c = &self.config;
        let max = if c.reconcile_interval.is_zero() {
            c.destroy_retry_max
        } else {
            c.reconcile_interval
        };
        backoff_delay(c.destroy_retry_initial, max, failures)
    }

    /// Runs the ticks' reconcile when it is due (one timestamp comparison when it is not):
    /// again, after a back-off, while the last one was incomplete; otherwise every
    /// `reconcile_interval` after the last complete reconcile.
    pub(super) fn reconcile_if_due(
        &self,
        now: Timestamp,
        budget: &mut Budget,
        report: &mut TickReport,
    ) {
        let due = {
            let s = self.schedule.lock();
            match s.next_reconcile {
                Some(at) if at <= now => Some(s.reconcile_retry),
                _ => None,
            }
        };
        match due {
            Some(Some(what)) => self.tick_reconcile(now, what, true, budget, report),
            Some(None) => self.tick_reconcile(now, PERIODIC_RECONCILE, false, budget, report),
            None => {}
        }
    }

    /// A reconcile that looked at every provider's instances ran at `at`: the next periodic
    /// one is due `reconcile_interval` later, no run again is needed, and the back-off starts
    /// over.
    pub(super) fn reconcile_completed(&self, at: Timestamp) {
        let mut s = self.schedule.lock();
        s.next_reconcile = super::periodic_reconcile_after(&self.config, at);
        s.reconcile_retry = None;
        s.reconcile_failures = 0;
    }

    /// Drops what only a leader keeps: the next leader rebuilds it from the registry. Called
    /// when this replica stops leading (a renewal reports the term lost, a step-down), by
    /// every follower tick, and at a takeover. Kept: what threads have in flight (destroys,
    /// orphan destroys, provisions), lifetime counters.
    fn forget_leader_state(&self) {
        {
            let mut s = self.schedule.lock();
            s.next_reconcile = None;
            s.reconcile_retry = None;
            s.reconcile_failures = 0;
            s.grace_owed = false;
        }
        // Destroys in progress on other threads stay marked until they return: not picked
        // again if this replica leads again meanwhile.
        self.destroys.lock().forget();
        self.forget_orphans();
        self.backoff.lock().clear();
        *self.brake.lock() = Brake::default();
        // Not handed over with the lease: the leaders in between knew the workers only as
        // `Draining`, and a deadline passed meanwhile is no reason to kill a worker that kept
        // heartbeating under them (nor to count its replacement again).
        self.pools.lock().interruptions.clear();
        // The last pools tick's counts: a follower plans nothing, so it shows none (a
        // dashboard summing over the replicas would count the old leader's for ever).
        self.pool_gauges.lock().clear();
    }
}

fn describe(leader: Option<&LeaderInfo>) -> String {
    match leader {
        Some(l) => format!(
            "; {} leads under term {} since {} (lease until {})",
            l.holder, l.term, l.since, l.expires_at
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use parking_lot::Mutex;

    use super::*;
    use crate::clock::ManualClock;
    use crate::ids::{ProviderId, WorkerId};
    use crate::lifecycle::lease::{InMemoryLease, LeaseStatus};
    use crate::lifecycle::provider::{ProviderResult, WorkerProvider};
    use crate::registry::InMemoryWorkerRegistry;
    use crate::worker::{ProviderType, WorkerHandle, WorkerSpec};

    /// A provider whose `create_worker` takes longer than the lease: the store's and the
    /// replica's clocks move past the ttl and another replica takes the lease meanwhile.
    #[derive(Debug)]
    struct SlowCreate {
        clocks: Vec<Arc<ManualClock>>,
        /// Takes the lease during the first create, when given.
        other: Option<InMemoryLease>,
        created: Mutex<Vec<WorkerId>>,
        destroyed: Mutex<Vec<String>>,
    }

    impl WorkerProvider for SlowCreate {
        fn provider_id(&self) -> ProviderId {
            ProviderId::new("slow").unwrap()
        }
        fn provider_type(&self) -> ProviderType {
            ProviderType::BareMetal
        }
        fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
            if self.created.lock().is_empty() {
                for c in &self.clocks {
                    c.advance(Duration::from_secs(30));
                }
                if let Some(other) = &self.other {
                    assert!(matches!(
                        other.acquire_or_renew(None).unwrap(),
                        LeaseStatus::Held(_)
                    ));
                }
            }
            self.created.lock().push(id);
            Ok(WorkerHandle {
                worker_id: id,
                provider_id: self.provider_id(),
                provider_type: self.provider_type(),
                resource_id: format!("r-{id}"),
                metadata: BTreeMap::new(),
            })
        }
        fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
            self.destroyed.lock().push(handle.resource_id.clone());
            Ok(())
        }
        fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
            Err(crate::lifecycle::provider::ProviderError::unsupported(
                "list_workers",
            ))
        }
    }

    fn slow_manager(
        other: Option<&str>,
    ) -> (
        WorkerLifecycleManager,
        Arc<SlowCreate>,
        Arc<InMemoryWorkerRegistry>,
    ) {
        let store = Arc::new(ManualClock::new(1_000_000));
        let local = Arc::new(ManualClock::new(5_000));
        let registry = Arc::new(InMemoryWorkerRegistry::with_clock(store.clone()));
        let lease = InMemoryLease::new(store.clone(), "a", Duration::from_secs(15));
        let provider = Arc::new(SlowCreate {
            clocks: vec![store.clone(), local.clone()],
            other: other.map(|name| lease.replica(name)),
            created: Mutex::new(Vec::new()),
            destroyed: Mutex::new(Vec::new()),
        });
        let manager = WorkerLifecycleManager::with_leadership(
            registry.clone(),
            WorkerLifecycleConfig {
                min_ready_workers: 1,
                ..WorkerLifecycleConfig::default()
            },
            Arc::new(lease),
            local,
        )
        .unwrap();
        manager.register_provider(provider.clone()).unwrap();
        manager
            .set_scaling_target(&provider.provider_id(), Arc::new(WorkerSpec::new("img")))
            .unwrap();
        (manager, provider, registry)
    }

    /// Found by the replicated simulation (`failover_flaky`): a leader that lost its lease
    /// during a tick's provider call said `leading: true` in that tick's report.
    #[test]
    fn a_tick_that_loses_the_lease_midway_reports_not_leading() {
        let (manager, provider, registry) = slow_manager(Some("b"));
        let report = manager.tick(0);
        assert_eq!(provider.created.lock().len(), 1, "{report:#?}");
        assert!(!report.leading, "{report:#?}");
        assert!(!manager.is_leader());
        assert_eq!(
            registry.count().unwrap(),
            0,
            "the fenced create registers nothing"
        );
        assert!(report.provisioned.is_empty(), "{report:#?}");
        assert!(
            report.decisions.iter().any(|d| d.contains("trust window")),
            "{:#?}",
            report.decisions
        );
    }

    /// Found by the replicated simulation (`failover_random`, seed 14): a leader whose trust
    /// window closed during a create registers nothing (fenced) and leaves the instance to
    /// "the new leader's reconcile" — but when no other replica took the lease meanwhile, the
    /// same replica keeps its term at its next renewal: there is no takeover, no takeover
    /// reconcile, and the instance leaked (for ever, on a host that only runs the ticker).
    #[test]
    fn an_instance_created_while_the_trust_window_closed_is_destroyed_if_the_term_is_kept() {
        let (manager, provider, registry) = slow_manager(None);
        let report = manager.tick(0);
        assert!(!report.leading, "{report:#?}");
        assert_eq!(
            registry.count().unwrap(),
            0,
            "the fenced create registers nothing"
        );
        let created = provider.created.lock()[0];
        // Nobody took the lease: the next tick renews the same term and cleans up.
        let report = manager.tick(0);
        assert!(report.leading, "{report:#?}");
        assert_eq!(
            provider.destroyed.lock().as_slice(),
            [format!("r-{created}")],
            "{report:#?}"
        );
        assert!(manager.pending_orphans().is_empty());
    }

    /// When another replica took the lease, the instance is the new leader's (its takeover
    /// reconcile): the old leader forgets it and never destroys it.
    #[test]
    fn an_instance_created_after_another_replica_took_over_is_left_to_it() {
        let (manager, provider, _registry) = slow_manager(Some("b"));
        manager.tick(0);
        let report = manager.tick(0);
        assert!(!report.leading, "{report:#?}");
        assert!(provider.destroyed.lock().is_empty(), "{report:#?}");
        assert!(manager.pending_orphans().is_empty());
    }

    /// A leader-only write checks the lease right before it: once a renewal (on any thread)
    /// said the term is lost, `write` refuses without calling the registry, even when its
    /// caller passed the fence earlier.
    #[test]
    fn a_write_after_the_term_was_lost_never_reaches_the_registry() {
        let (manager, provider, _registry) = slow_manager(Some("b"));
        assert!(matches!(manager.lease.renew(), Renewal::Acquired(_)));
        assert_eq!(manager.write(|r| r.count()).unwrap(), 0);
        for c in &provider.clocks {
            c.advance(Duration::from_secs(30));
        }
        let b = provider.other.as_ref().unwrap();
        assert!(matches!(
            b.acquire_or_renew(None).unwrap(),
            LeaseStatus::Held(_)
        ));
        assert!(matches!(
            manager.lease.renew(),
            Renewal::Following { lost: Some(1), .. }
        ));
        let mut called = false;
        let err = manager
            .write(|r| {
                called = true;
                r.count()
            })
            .unwrap_err();
        assert!(matches!(err, Error::NotLeader(_)), "{err}");
        assert!(!called, "the registry was called without the lease");
    }

    /// A write the store refuses (`NotLeader` from the registry) closes the trust window at
    /// once: the next leader-only act stops at the fence until a renewal says who leads.
    #[test]
    fn a_refusal_by_the_store_closes_the_trust_window() {
        let (manager, _provider, _registry) = slow_manager(None);
        assert!(matches!(manager.lease.renew(), Renewal::Acquired(_)));
        assert!(manager.is_leader());
        let err = manager
            .write(|_| -> Result<()> { Err(Error::NotLeader("refused by the store".into())) })
            .unwrap_err();
        assert!(matches!(err, Error::NotLeader(_)), "{err}");
        assert!(!manager.is_leader());
        assert!(matches!(manager.fence(), Err(Error::NotLeader(_))));
        // Nobody else took the lease: the next renewal keeps the term and trusts it again.
        assert!(matches!(manager.lease.renew(), Renewal::Kept(_)));
        assert!(manager.is_leader());
    }
}
