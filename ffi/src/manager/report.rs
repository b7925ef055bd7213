//! `hw_report`: what a manager operation (tick, health check, cleanup, terminate, reconcile)
//! found and did — its counts and flags (`hw_report_summary`), the lists C reads by index, and
//! the whole report as JSON.

use std::ffi::{c_char, CString};

use engine::{
    CleanupResult, Error, HealthCheckResult, MassExpiryGiveUp, MassExpiryHold, ReconcileReport,
    TerminationReason, TickReport, WorkerId,
};

use super::to_json;
use crate::boundary::{
    arg_out, arg_ref, c_string, ffi_boundary, free_handle, hw_status, lossy_c_string,
};
use crate::types::{hw_termination_reason, hw_worker_id, reason_to_c};

/// What a manager operation found and did: one type for the reports of `hw_manager_tick`,
/// `hw_manager_run_health_check`, `hw_manager_cleanup`, `hw_manager_terminate` and
/// `hw_manager_reconcile` (`hw_report_summary.kind` says which; lists an operation does not
/// make are empty). Immutable, thread-safe; borrowed strings valid until `hw_report_free`.
/// The JSON form (`hw_report_get_json`) holds everything, in the operation's own shape (the
/// core's `TickReport`, `HealthCheckResult`, `CleanupResult` or `ReconcileReport`).
#[derive(Debug)]
pub struct hw_report {
    summary: hw_report_summary,
    unhealthy: Vec<WorkerId>,
    lost_jobs: Vec<(WorkerId, CString)>,
    terminated: Vec<(WorkerId, TerminationReason)>,
    failed: Vec<WorkerId>,
    drained: Vec<WorkerId>,
    provisioned: Vec<WorkerId>,
    decisions: Vec<CString>,
    json: CString,
    /// Ticks only: the leader as last seen, its holder name as a C string
    /// (`hw_report_get_leader`).
    pub(crate) leader: Option<(CString, engine::LeaderInfo)>,
    /// Ticks only: the message of the panic that cut the tick short, if any
    /// (`hw_report_get_panicked`).
    panicked: Option<CString>,
}

/// Which manager operation made a `hw_report` (`hw_report_summary.kind`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum hw_report_kind {
    /// `hw_manager_tick`: everything that was due (health check, cleanup, scaling).
    #[default]
    Tick = 0,
    /// `hw_manager_run_health_check`.
    HealthCheck = 1,
    /// `hw_manager_cleanup`.
    Cleanup = 2,
    /// `hw_manager_terminate`.
    Terminate = 3,
    /// `hw_manager_reconcile` (vanished records count as terminated; the rest is in the JSON).
    Reconcile = 4,
}

/// The counts of a brake decision (`hw_report_summary.hold`): the numbers the mass-expiry brake
/// judged on.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct hw_mass_expiry_hold {
    /// Workers past their heartbeat deadline now (held back while the brake holds).
    pub would_expire: usize,
    /// Workers silent for more than half the heartbeat timeout: the brake's count (at least
    /// `would_expire`), but those past their startup deadline (expired regardless).
    pub suspect: usize,
    /// Workers under heartbeat watch (`CONNECTING`, `READY`, `BUSY`, `DRAINING`), but those
    /// past their startup deadline.
    pub live: usize,
    /// The most that may be silent at once: `max(unhealthy_floor, floor(fraction * live))`.
    pub allowed: usize,
}

impl hw_mass_expiry_hold {
    fn from_core(hold: &MassExpiryHold) -> Self {
        let MassExpiryHold {
            would_expire,
            suspect,
            live,
            allowed,
        } = *hold;
        hw_mass_expiry_hold {
            would_expire,
            suspect,
            live,
            allowed,
        }
    }
}

/// The counts and flags of a report (`hw_report_get_summary`). Fields a kind of report does not
/// have are 0/false (e.g. `pending_jobs` outside a tick).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct hw_report_summary {
    /// Which operation made the report.
    pub kind: hw_report_kind,
    /// When it ran (registry clock, ms since the Unix epoch).
    pub at_ms: u64,
    /// The jobs of the demand the host passed to the tick (every requirement's, unschedulable
    /// ones included; ticks only). The replacements of interrupted workers are not counted
    /// here: they are in the plan's own count (`pending_jobs` of the JSON form's `pools` or
    /// `scaling`).
    pub pending_jobs: usize,
    /// When the previous tick was longer ago than `heartbeat_timeout_ms`: the length of that
    /// pause (every worker got a fresh grace period); 0 otherwise (ticks only).
    pub stall_grace_ms: u64,
    /// Workers declared unhealthy.
    pub unhealthy: usize,
    /// Jobs lost by workers taken out of service: requeue them.
    pub lost_jobs: usize,
    /// Workers destroyed and unregistered (for reconcile: records whose instance vanished).
    pub terminated: usize,
    /// Destroys that failed (retried later with back-off).
    pub failed: usize,
    /// Workers moved to `DRAINING`.
    pub drained: usize,
    /// Workers provisioned.
    pub provisioned: usize,
    /// Creates that failed.
    pub provision_failures: usize,
    /// Providers being backed off after consecutive create failures (ticks only; who and until
    /// when: the JSON form).
    pub provider_backoffs: usize,
    /// Explanation lines (`hw_report_get_decision`).
    pub decisions: usize,
    /// Requirements of the demand no pool (or, without pools, the scaling target's spec) can
    /// ever run (ticks only; each has an `unschedulable: ...` line among the decisions, and the
    /// list with the reasons is in the JSON form).
    pub unschedulable: usize,
    /// Actions performed (state changes and provider calls).
    pub actions: usize,
    /// Work found due but left for later, because of the per-tick action cap or a lease lost
    /// meanwhile (health checks and cleanups).
    pub deferred: usize,
    /// The brake's counts when `mass_expiry_held` or `brake_gave_up` is set; zero otherwise.
    pub hold: hw_mass_expiry_hold,
    /// With `brake_gave_up`: how long (ms) the brake had held before it gave up; 0 otherwise.
    pub brake_held_for_ms: u64,
    /// Whether the health check ran.
    pub health_checked: bool,
    /// Whether the mass-expiry brake held: too many watched workers were silent at once, so none
    /// was declared unhealthy for its heartbeat (startup expiries still were). Counts in `hold`.
    pub mass_expiry_held: bool,
    /// Whether the brake let go in this check (the fleet is back under the limit): every worker
    /// got a fresh grace period.
    pub brake_released: bool,
    /// Whether the brake gave up in this check (it had held longer than
    /// `max_mass_expiry_hold_ms`): the silent workers past their deadline were declared
    /// unhealthy after all, without a grace period. Counts in `hold`, duration in
    /// `brake_held_for_ms`.
    pub brake_gave_up: bool,
    /// Whether a scaling decision was made (a scaling target or pools are set; the plan is in
    /// the JSON form — `scaling` or `pools` —, its explanation lines among the decisions).
    pub scaled: bool,
    /// Whether the per-tick action cap stopped it early (the next ticks do the rest).
    pub capped: bool,
    /// Whether another thread was ticking, so this tick did nothing.
    pub skipped: bool,
    /// Ticks only: whether this manager leads (holds the leadership lease). A follower's tick
    /// does nothing but try for the lease; `hw_report_get_leader` says who leads.
    pub leading: bool,
}

impl hw_report_summary {
    /// The brake's fields from a health check's (or tick's) brake outcome.
    fn brake(
        &mut self,
        held: Option<&MassExpiryHold>,
        released: bool,
        gave_up: Option<&MassExpiryGiveUp>,
    ) {
        self.mass_expiry_held = held.is_some();
        self.brake_released = released;
        self.brake_gave_up = gave_up.is_some();
        if let Some(g) = gave_up {
            self.hold = hw_mass_expiry_hold::from_core(&g.hold);
            self.brake_held_for_ms = g.held_for;
        }
        if let Some(h) = held {
            self.hold = hw_mass_expiry_hold::from_core(h);
        }
    }
}

/// The lost jobs for C. A job id holds no NUL: `JobId` refuses one on every path (construction,
/// deserialisation of a snapshot or a database row), so this fails only on a broken invariant.
fn lost(jobs: &[engine::LostJob]) -> Result<Vec<(WorkerId, CString)>, Error> {
    jobs.iter()
        .map(|l| Ok((l.worker_id, c_string(l.job_id.as_str(), "job id")?)))
        .collect()
}

fn terminated(list: &[engine::TerminatedWorker]) -> Vec<(WorkerId, TerminationReason)> {
    list.iter().map(|t| (t.worker_id, t.reason)).collect()
}

impl hw_report {
    pub(crate) fn from_tick(r: &TickReport) -> Result<Self, Error> {
        // Exhaustive on purpose: a field added to the core's report fails this build until the
        // C summary (or the JSON-only list in ffi/tests/schema.rs) accounts for it.
        let TickReport {
            at,
            pending_jobs,
            stall_grace,
            health_checked,
            unhealthy,
            lost_jobs,
            mass_expiry_held,
            brake_released,
            brake_gave_up,
            // JSON only (see ffi/tests/schema.rs): each hold is also a line in `decisions`.
            reconcile_held: _,
            terminated: terminated_workers,
            failed,
            drained,
            provisioned,
            provision_failures,
            provider_backoff,
            scaling,
            pools,
            unschedulable,
            decisions,
            actions,
            capped,
            skipped,
            leading,
            leader,
            panicked,
        } = r;
        // What reaches C as a string: the decisions (free text: a provider's or the registry's
        // error message among them) and the leader's name (checked by `validate_lease` for
        // every manager's own lease, but read back from the lease's store, where another
        // replica's row says what it likes) with their NULs shown as `?`; the job
        // ids, which cannot hold one (see `lost`); the JSON, whose writer escapes control
        // characters (a provider's error text, a resource id: `\u0000`). Nothing else: ids
        // are bytes, the rest numbers.
        let decisions = decisions
            .iter()
            .map(|d| lossy_c_string(d))
            .collect::<Vec<_>>();
        let mut summary = hw_report_summary {
            kind: hw_report_kind::Tick,
            at_ms: *at,
            pending_jobs: *pending_jobs,
            stall_grace_ms: stall_grace.unwrap_or(0),
            unhealthy: unhealthy.len(),
            lost_jobs: lost_jobs.len(),
            terminated: terminated_workers.len(),
            failed: failed.len(),
            drained: drained.len(),
            provisioned: provisioned.len(),
            provision_failures: provision_failures.len(),
            provider_backoffs: provider_backoff.len(),
            decisions: decisions.len(),
            actions: *actions,
            health_checked: *health_checked,
            scaled: scaling.is_some() || pools.is_some(),
            unschedulable: unschedulable.len(),
            capped: *capped,
            skipped: *skipped,
            leading: *leading,
            ..Default::default()
        };
        summary.brake(
            mass_expiry_held.as_ref(),
            *brake_released,
            brake_gave_up.as_ref(),
        );
        Ok(hw_report {
            summary,
            unhealthy: unhealthy.iter().map(|u| u.worker_id).collect(),
            lost_jobs: lost(lost_jobs)?,
            terminated: terminated(terminated_workers),
            failed: failed.iter().map(|f| f.worker_id).collect(),
            drained: drained.clone(),
            provisioned: provisioned.iter().map(|p| p.worker_id).collect(),
            decisions,
            json: to_json(r, "tick report")?,
            leader: leader
                .as_ref()
                .map(|l| (lossy_c_string(&l.holder), l.clone())),
            panicked: panicked.as_deref().map(lossy_c_string),
        })
    }

    pub(super) fn from_health(r: &HealthCheckResult) -> Result<Self, Error> {
        let HealthCheckResult {
            checked_at,
            unhealthy,
            lost_jobs,
            terminated: terminated_workers,
            failed,
            held,
            deferred,
            brake_released,
            brake_gave_up,
        } = r;
        let mut summary = hw_report_summary {
            kind: hw_report_kind::HealthCheck,
            at_ms: *checked_at,
            unhealthy: unhealthy.len(),
            lost_jobs: lost_jobs.len(),
            terminated: terminated_workers.len(),
            failed: failed.len(),
            deferred: *deferred,
            health_checked: true,
            ..Default::default()
        };
        summary.brake(held.as_ref(), *brake_released, brake_gave_up.as_ref());
        Ok(hw_report {
            summary,
            unhealthy: unhealthy.iter().map(|u| u.worker_id).collect(),
            lost_jobs: lost(lost_jobs)?,
            terminated: terminated(terminated_workers),
            failed: failed.iter().map(|f| f.worker_id).collect(),
            drained: Vec::new(),
            provisioned: Vec::new(),
            decisions: Vec::new(),
            json: to_json(r, "health check result")?,
            leader: None,
            panicked: None,
        })
    }

    pub(super) fn from_cleanup(
        r: &CleanupResult,
        at: u64,
        kind: hw_report_kind,
    ) -> Result<Self, Error> {
        let CleanupResult {
            terminated: terminated_workers,
            drained,
            failed,
            lost_jobs,
            deferred,
        } = r;
        Ok(hw_report {
            summary: hw_report_summary {
                kind,
                at_ms: at,
                lost_jobs: lost_jobs.len(),
                terminated: terminated_workers.len(),
                failed: failed.len(),
                drained: drained.len(),
                deferred: *deferred,
                ..Default::default()
            },
            unhealthy: Vec::new(),
            lost_jobs: lost(lost_jobs)?,
            terminated: terminated(terminated_workers),
            failed: failed.iter().map(|f| f.worker_id).collect(),
            drained: drained.clone(),
            provisioned: Vec::new(),
            decisions: Vec::new(),
            json: to_json(r, "cleanup result")?,
            leader: None,
            panicked: None,
        })
    }

    pub(super) fn from_reconcile(r: &ReconcileReport) -> Result<Self, Error> {
        Ok(hw_report {
            summary: hw_report_summary {
                kind: hw_report_kind::Reconcile,
                at_ms: r.at,
                lost_jobs: r.lost_jobs.len(),
                terminated: r.vanished.len(),
                ..Default::default()
            },
            unhealthy: Vec::new(),
            lost_jobs: lost(&r.lost_jobs)?,
            terminated: r
                .vanished
                .iter()
                .map(|id| (*id, TerminationReason::Vanished))
                .collect(),
            failed: Vec::new(),
            drained: Vec::new(),
            provisioned: Vec::new(),
            decisions: Vec::new(),
            json: to_json(r, "reconcile report")?,
            leader: None,
            panicked: None,
        })
    }
}

fn index_error(what: &str, index: usize, len: usize) -> Error {
    Error::invalid(format!("{what} index {index} out of range (count {len})"))
}

/// The `index`-th entry of one of the report's lists, or an `InvalidArgument` naming the list.
fn nth<'a, T>(list: &'a [T], what: &str, index: usize) -> Result<&'a T, Error> {
    list.get(index)
        .ok_or_else(|| index_error(what, index, list.len()))
}

/// The report's counts.
#[no_mangle]
pub extern "C" fn hw_report_get_summary(
    report: *const hw_report,
    out: *mut hw_report_summary,
) -> hw_status {
    ffi_boundary!(hw_report_get_summary, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        out.write(report.summary);
        Ok(())
    })
}

/// The `index`-th lost job: the worker that held it and the job id (borrowed). Requeue it.
#[no_mangle]
pub extern "C" fn hw_report_get_lost_job(
    report: *const hw_report,
    index: usize,
    out_worker: *mut hw_worker_id,
    out_job: *mut *const c_char,
) -> hw_status {
    ffi_boundary!(hw_report_get_lost_job, {
        let report = arg_ref!(report);
        let out_worker = arg_out!(out_worker);
        let out_job = arg_out!(out_job);
        let (id, job) = nth(&report.lost_jobs, "lost job", index)?;
        out_worker.write(hw_worker_id::from_core(id));
        out_job.write(job.as_ptr());
        Ok(())
    })
}

/// The `index`-th worker declared unhealthy.
#[no_mangle]
pub extern "C" fn hw_report_get_unhealthy(
    report: *const hw_report,
    index: usize,
    out: *mut hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_report_get_unhealthy, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let id = nth(&report.unhealthy, "unhealthy", index)?;
        out.write(hw_worker_id::from_core(id));
        Ok(())
    })
}

/// The `index`-th worker destroyed and unregistered, and why.
#[no_mangle]
pub extern "C" fn hw_report_get_terminated(
    report: *const hw_report,
    index: usize,
    out_worker: *mut hw_worker_id,
    out_reason: *mut hw_termination_reason,
) -> hw_status {
    ffi_boundary!(hw_report_get_terminated, {
        let report = arg_ref!(report);
        let out_worker = arg_out!(out_worker);
        let out_reason = arg_out!(out_reason);
        let (id, reason) = nth(&report.terminated, "terminated", index)?;
        out_worker.write(hw_worker_id::from_core(id));
        out_reason.write(reason_to_c(*reason));
        Ok(())
    })
}

/// The `index`-th worker whose destroy failed (retried later).
#[no_mangle]
pub extern "C" fn hw_report_get_failed(
    report: *const hw_report,
    index: usize,
    out: *mut hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_report_get_failed, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let id = nth(&report.failed, "failed", index)?;
        out.write(hw_worker_id::from_core(id));
        Ok(())
    })
}

/// The `index`-th worker moved to `DRAINING`.
#[no_mangle]
pub extern "C" fn hw_report_get_drained(
    report: *const hw_report,
    index: usize,
    out: *mut hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_report_get_drained, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let id = nth(&report.drained, "drained", index)?;
        out.write(hw_worker_id::from_core(id));
        Ok(())
    })
}

/// The `index`-th worker provisioned.
#[no_mangle]
pub extern "C" fn hw_report_get_provisioned(
    report: *const hw_report,
    index: usize,
    out: *mut hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_report_get_provisioned, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let id = nth(&report.provisioned, "provisioned", index)?;
        out.write(hw_worker_id::from_core(id));
        Ok(())
    })
}

/// The `index`-th explanation line (borrowed), e.g. the scaling decision
/// `"+3: pending 7, …, capped by max_workers 10"`.
#[no_mangle]
pub extern "C" fn hw_report_get_decision(
    report: *const hw_report,
    index: usize,
    out: *mut *const c_char,
) -> hw_status {
    ffi_boundary!(hw_report_get_decision, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let line = nth(&report.decisions, "decision", index)?;
        out.write(line.as_ptr());
        Ok(())
    })
}

/// Whether the tick panicked midway (a bug of a host's own registry, clock or lease, or of
/// the library), and the panic's message (borrowed: valid until `hw_report_free`; a NUL in it
/// shown as `?`). Such a report holds what the tick did before the panic — requeue its lost
/// jobs as always — and a decision line names the phase that panicked; the rest of the tick
/// was not done (the next tick does what is still due). Writes `*found = false` (and leaves
/// `*out` alone) for a tick that did not panic, and for a report that is not a tick's. The
/// JSON form has the message as `panicked` (null when none).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_report_get_panicked(
    report: *const hw_report,
    out: *mut *const c_char,
    found: *mut bool,
) -> hw_status {
    ffi_boundary!(hw_report_get_panicked, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let found = arg_out!(found);
        match &report.panicked {
            Some(message) => {
                out.write(message.as_ptr());
                found.write(true);
            }
            None => found.write(false),
        }
        Ok(())
    })
}

/// The whole report as JSON (borrowed: valid until `hw_report_free`).
#[no_mangle]
pub extern "C" fn hw_report_get_json(
    report: *const hw_report,
    out: *mut *const c_char,
) -> hw_status {
    ffi_boundary!(hw_report_get_json, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        out.write(report.json.as_ptr());
        Ok(())
    })
}

/// Frees a report. NULL does nothing.
#[no_mangle]
pub extern "C" fn hw_report_free(report: *mut hw_report) {
    free_handle(report)
}
