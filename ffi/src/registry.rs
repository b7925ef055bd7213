//! `hw_registry`: every operation of the worker registry.

use std::ffi::c_char;
use std::sync::Arc;

use engine::{
    Error, InMemoryWorkerRegistry, Snapshot, StateCounts, WorkerHandle, WorkerRegistry,
    WorkerRegistryStats,
};

use hodei_workers_postgres::PostgresWorkerRegistry;

use crate::boundary::{
    arg_out, arg_ref, arg_str, c_string, check_slice, ffi_boundary, free_handle, hw_status,
    into_handle, OutArray,
};
use crate::clock::hw_clock;
use crate::filter::hw_worker_filter;
use crate::spec::hw_worker_spec;
use crate::types::{
    hw_worker_id, job_id, ms, provider_id, provider_type, reason_from_c, state_from_c,
};
use crate::worker::{hw_worker, hw_worker_list};

/// The registry of workers. Thread-safe: every function taking a `const hw_registry *` may be
/// called from any number of threads at once. Free it only when no other call on it runs.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct hw_registry {
    /// Any backend: in memory, or shared (PostgreSQL, `hw_registry_new_postgres`).
    pub(crate) inner: Arc<dyn WorkerRegistry>,
    /// The same registry as its own type, for what is not in the trait (the retired-id limit).
    backend: Backend,
}

/// The concrete registry behind a handle.
#[derive(Debug)]
enum Backend {
    Memory(Arc<InMemoryWorkerRegistry>),
    Postgres(Arc<PostgresWorkerRegistry>),
}

impl hw_registry {
    /// A handle on an in-memory registry.
    pub(crate) fn memory(registry: InMemoryWorkerRegistry) -> hw_registry {
        let registry = Arc::new(registry);
        hw_registry {
            inner: registry.clone(),
            backend: Backend::Memory(registry),
        }
    }

    /// A handle on a registry in PostgreSQL.
    pub(crate) fn postgres(registry: PostgresWorkerRegistry) -> hw_registry {
        let registry = Arc::new(registry);
        hw_registry {
            inner: registry.clone(),
            backend: Backend::Postgres(registry),
        }
    }
}

/// Counts of the registry's workers per state, read in O(1).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct hw_worker_counts {
    /// Registered workers (the sum of the others).
    pub total: usize,
    /// `CREATING`.
    pub creating: usize,
    /// `CONNECTING`.
    pub connecting: usize,
    /// `READY`.
    pub ready: usize,
    /// `BUSY`.
    pub busy: usize,
    /// `DRAINING`.
    pub draining: usize,
    /// `TERMINATING`.
    pub terminating: usize,
    /// `TERMINATED`.
    pub terminated: usize,
}

impl hw_worker_counts {
    fn from_core(s: &WorkerRegistryStats) -> Self {
        // Exhaustive on purpose: a state added to the core fails this build until C counts it
        // (ffi/tests/schema.rs checks the header against the serde names).
        let StateCounts {
            creating,
            connecting,
            ready,
            busy,
            draining,
            terminating,
            terminated,
        } = s.by_state;
        hw_worker_counts {
            total: s.total,
            creating,
            connecting,
            ready,
            busy,
            draining,
            terminating,
            terminated,
        }
    }
}

/// A new, empty registry on the monotonic system clock.
#[no_mangle]
pub extern "C" fn hw_registry_new(out: *mut *mut hw_registry) -> hw_status {
    ffi_boundary!(hw_registry_new, {
        let out = arg_out!(out);
        out.write(into_handle(hw_registry::memory(
            InMemoryWorkerRegistry::new(),
        )));
        Ok(())
    })
}

/// A new, empty registry on `clock` (shared: advancing a manual clock moves the registry's
/// time). The clock handle may be freed afterwards.
#[no_mangle]
pub extern "C" fn hw_registry_new_with_clock(
    clock: *const hw_clock,
    out: *mut *mut hw_registry,
) -> hw_status {
    ffi_boundary!(hw_registry_new_with_clock, {
        let clock = arg_ref!(clock);
        let out = arg_out!(out);
        out.write(into_handle(hw_registry::memory(
            InMemoryWorkerRegistry::with_clock(clock.as_dyn()),
        )));
        Ok(())
    })
}

/// Frees a registry. Subscriptions and managers made from it keep what they need alive; a
/// subscription blocked in `hw_subscription_recv` wakes up once the last user is gone.
/// NULL does nothing.
#[no_mangle]
pub extern "C" fn hw_registry_free(registry: *mut hw_registry) {
    free_handle(registry)
}

/// Sets how many unregistered ids the registry remembers (default
/// `HW_DEFAULT_RETIRED_ID_LIMIT`, 2^20). Ids are never reused: registering a remembered id
/// (`hw_registry_register_with_id`) is `HW_ERR_ALREADY_EXISTS`, so a late call naming an old
/// worker never acts on a new one; an id retired longer ago than the last `limit` retirements
/// is forgotten and may be registered again. A limit of 0 remembers none. In memory a lower
/// limit forgets the oldest at once; in PostgreSQL the registry forgets them at its next prune
/// (at most a minute later, on the health-check path). Ids the library makes never repeat: the
/// limit matters for ids the caller chooses.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for NULL or a limit beyond the address space.
#[no_mangle]
pub extern "C" fn hw_registry_set_retired_id_limit(
    registry: *const hw_registry,
    limit: u64,
) -> hw_status {
    ffi_boundary!(hw_registry_set_retired_id_limit, {
        let registry = arg_ref!(registry);
        let limit = usize::try_from(limit)
            .map_err(|_| Error::invalid(format!("retired-id limit {limit} is too large")))?;
        match &registry.backend {
            Backend::Memory(r) => r.set_retired_id_limit(limit),
            Backend::Postgres(r) => r.set_retired_id_limit(limit),
        }
        Ok(())
    })
}

/// The registry's time (milliseconds since the Unix epoch): every deadline is measured on it.
#[no_mangle]
pub extern "C" fn hw_registry_now(registry: *const hw_registry, out_ms: *mut u64) -> hw_status {
    ffi_boundary!(hw_registry_now, {
        let registry = arg_ref!(registry);
        let out_ms = arg_out!(out_ms);
        out_ms.write(registry.inner.now());
        Ok(())
    })
}

/// Registers a new worker (state `CREATING`, a fresh id) for the instance `resource_id` of
/// provider `provider` of type `provider_type_name` (`"docker"`, …, `"custom:NAME"`), made from
/// `spec` (shared, not copied: every worker registered from one `hw_worker_spec` shares its
/// content). Writes the new worker's snapshot (free with `hw_worker_free`).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for an invalid provider id, provider type or spec, or a
/// `resource_id` that is empty (it names no instance) or over `HW_MAX_RESOURCE_ID_LEN` bytes.
#[no_mangle]
pub extern "C" fn hw_registry_register(
    registry: *const hw_registry,
    provider: *const c_char,
    provider_type_name: *const c_char,
    resource_id: *const c_char,
    spec: *const hw_worker_spec,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_registry_register, {
        let registry = arg_ref!(registry);
        let provider = provider_id(arg_str!(provider))?;
        let kind = provider_type(arg_str!(provider_type_name))?;
        let resource_id = arg_str!(resource_id);
        let spec = arg_ref!(spec);
        let out = arg_out!(out);
        let handle = WorkerHandle::new(provider, kind, resource_id);
        let worker = registry.inner.register(handle, Arc::clone(&spec.spec))?;
        out.write(hw_worker::boxed(worker));
        Ok(())
    })
}

/// Like `hw_registry_register`, but with the worker id chosen by the caller (e.g. the id the
/// provider gave the agent, or a restored one).
///
/// Errors: `HW_ERR_ALREADY_EXISTS` for an id that is, or once was, registered in this registry
/// (ids are never reused); `HW_ERR_INVALID_ARGUMENT` as
/// `hw_registry_register`, and for the nil id.
#[no_mangle]
pub extern "C" fn hw_registry_register_with_id(
    registry: *const hw_registry,
    id: hw_worker_id,
    provider: *const c_char,
    provider_type_name: *const c_char,
    resource_id: *const c_char,
    spec: *const hw_worker_spec,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_registry_register_with_id, {
        let registry = arg_ref!(registry);
        let id = id.to_core()?;
        let provider = provider_id(arg_str!(provider))?;
        let kind = provider_type(arg_str!(provider_type_name))?;
        let resource_id = arg_str!(resource_id);
        let spec = arg_ref!(spec);
        let out = arg_out!(out);
        let mut handle = WorkerHandle::new(provider, kind, resource_id);
        handle.worker_id = id;
        let worker = registry.inner.register(handle, Arc::clone(&spec.spec))?;
        out.write(hw_worker::boxed(worker));
        Ok(())
    })
}

/// Removes a worker's record (`reason`: a `hw_termination_reason`) and writes its last
/// snapshot. A job it held is reported lost (a `HW_EVENT_KIND_JOB_LOST` event).
///
/// Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_INVALID_ARGUMENT` for the nil id or a bad reason.
#[no_mangle]
pub extern "C" fn hw_registry_unregister(
    registry: *const hw_registry,
    id: hw_worker_id,
    reason: u32,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_registry_unregister, {
        let registry = arg_ref!(registry);
        let id = id.to_core()?;
        let reason = reason_from_c(reason)?;
        let out = arg_out!(out);
        let worker = registry.inner.unregister(&id, reason)?;
        out.write(hw_worker::boxed(worker));
        Ok(())
    })
}

/// A snapshot of worker `id`, or NULL in `*out` when no such worker is registered (a miss is
/// not an error here). Takes no exclusive lock.
#[no_mangle]
pub extern "C" fn hw_registry_get(
    registry: *const hw_registry,
    id: hw_worker_id,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_registry_get, {
        let registry = arg_ref!(registry);
        let id = id.to_core()?;
        let out = arg_out!(out);
        let worker = registry.inner.get(&id)?;
        out.write(worker.map_or(std::ptr::null_mut(), hw_worker::boxed));
        Ok(())
    })
}

/// The workers matching `filter` (a full scan: not for hot paths).
#[no_mangle]
pub extern "C" fn hw_registry_find(
    registry: *const hw_registry,
    filter: *const hw_worker_filter,
    out: *mut *mut hw_worker_list,
) -> hw_status {
    ffi_boundary!(hw_registry_find, {
        let registry = arg_ref!(registry);
        let filter = arg_ref!(filter);
        let out = arg_out!(out);
        let workers = registry.inner.find(&filter.filter)?;
        out.write(hw_worker_list::boxed(workers));
        Ok(())
    })
}

/// The workers accepting jobs now (`READY`).
#[no_mangle]
pub extern "C" fn hw_registry_find_available(
    registry: *const hw_registry,
    out: *mut *mut hw_worker_list,
) -> hw_status {
    ffi_boundary!(hw_registry_find_available, {
        let registry = arg_ref!(registry);
        let out = arg_out!(out);
        out.write(hw_worker_list::boxed(registry.inner.find_available()?));
        Ok(())
    })
}

/// The `n` longest-idle `READY` workers, longest idle first: a host's scale-in candidates,
/// answered from the ready index (no fleet scan; in memory O(classes × n + n log n), whatever
/// the number of ready workers). Each worker is listed once; one claimed, or whose idle time
/// restarted, during the call may be left out. Pair it with a move that keeps a job (`DRAINING`
/// finishes one a worker took meanwhile) to retire them.
#[no_mangle]
pub extern "C" fn hw_registry_longest_idle(
    registry: *const hw_registry,
    n: usize,
    out: *mut *mut hw_worker_list,
) -> hw_status {
    ffi_boundary!(hw_registry_longest_idle, {
        let registry = arg_ref!(registry);
        let out = arg_out!(out);
        out.write(hw_worker_list::boxed(registry.inner.longest_idle(n)?));
        Ok(())
    })
}

/// The workers of provider `provider`.
#[no_mangle]
pub extern "C" fn hw_registry_find_by_provider(
    registry: *const hw_registry,
    provider: *const c_char,
    out: *mut *mut hw_worker_list,
) -> hw_status {
    ffi_boundary!(hw_registry_find_by_provider, {
        let registry = arg_ref!(registry);
        let provider = provider_id(arg_str!(provider))?;
        let out = arg_out!(out);
        out.write(hw_worker_list::boxed(
            registry.inner.find_by_provider(&provider)?,
        ));
        Ok(())
    })
}

/// The workers past their heartbeat deadline: in a monitored state (`CONNECTING`, `READY`,
/// `BUSY`, `DRAINING`) and silent for longer than `heartbeat_timeout_ms`. Cost follows the
/// number of workers due, not the fleet size.
#[no_mangle]
pub extern "C" fn hw_registry_find_unhealthy(
    registry: *const hw_registry,
    heartbeat_timeout_ms: u64,
    out: *mut *mut hw_worker_list,
) -> hw_status {
    ffi_boundary!(hw_registry_find_unhealthy, {
        let registry = arg_ref!(registry);
        let out = arg_out!(out);
        let due = registry.inner.find_unhealthy(ms(heartbeat_timeout_ms))?;
        out.write(hw_worker_list::boxed(due));
        Ok(())
    })
}

/// The workers still `CREATING`/`CONNECTING` longer than `startup_timeout_ms` after
/// registration.
#[no_mangle]
pub extern "C" fn hw_registry_find_startup_expired(
    registry: *const hw_registry,
    startup_timeout_ms: u64,
    out: *mut *mut hw_worker_list,
) -> hw_status {
    ffi_boundary!(hw_registry_find_startup_expired, {
        let registry = arg_ref!(registry);
        let out = arg_out!(out);
        let due = registry
            .inner
            .find_startup_expired(ms(startup_timeout_ms))?;
        out.write(hw_worker_list::boxed(due));
        Ok(())
    })
}

/// The workers due for retirement; `hw_worker_list_get_reason` tells why each one is due
/// (idle, lifetime, drained, max jobs).
#[no_mangle]
pub extern "C" fn hw_registry_find_for_termination(
    registry: *const hw_registry,
    out: *mut *mut hw_worker_list,
) -> hw_status {
    ffi_boundary!(hw_registry_find_for_termination, {
        let registry = arg_ref!(registry);
        let out = arg_out!(out);
        let due = registry.inner.find_for_termination()?;
        out.write(hw_worker_list::boxed_with_reasons(due));
        Ok(())
    })
}

/// Moves worker `id` to `state` (a `hw_worker_state`) and writes the new snapshot. The same
/// state is a successful no-op. Never enters or leaves `BUSY` (that is assign/claim and
/// release).
///
/// Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_INVALID_TRANSITION`; `HW_ERR_INVALID_ARGUMENT` for an
/// out-of-range state or the nil id.
#[no_mangle]
pub extern "C" fn hw_registry_update_state(
    registry: *const hw_registry,
    id: hw_worker_id,
    state: u32,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_registry_update_state, {
        let registry = arg_ref!(registry);
        let id = id.to_core()?;
        let state = state_from_c(state)?;
        let out = arg_out!(out);
        let worker = registry.inner.update_state(&id, state)?;
        out.write(hw_worker::boxed(worker));
        Ok(())
    })
}

/// Records a heartbeat of worker `id` (updates its last heartbeat only). Cheap: a shared lock
/// and an atomic store; scales over threads.
///
/// Errors: `HW_ERR_NOT_FOUND` (tell the agent to register again).
#[no_mangle]
pub extern "C" fn hw_registry_heartbeat(
    registry: *const hw_registry,
    id: hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_registry_heartbeat, {
        let registry = arg_ref!(registry);
        let id = id.to_core()?;
        registry.inner.heartbeat(&id)?;
        Ok(())
    })
}

/// Gives job `job` to the `READY` worker `id` (`-> BUSY`); writes the new snapshot.
///
/// Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_NOT_AVAILABLE` when it is not `READY`;
/// `HW_ERR_JOB_ALREADY_ASSIGNED` when another worker holds `job`; `HW_ERR_INVALID_ARGUMENT` for
/// an invalid job id (empty, over 256 bytes).
#[no_mangle]
pub extern "C" fn hw_registry_assign(
    registry: *const hw_registry,
    id: hw_worker_id,
    job: *const c_char,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_registry_assign, {
        let registry = arg_ref!(registry);
        let id = id.to_core()?;
        let job = job_id(arg_str!(job))?;
        let out = arg_out!(out);
        let worker = registry.inner.assign_to_job(&id, job)?;
        out.write(hw_worker::boxed(worker));
        Ok(())
    })
}

/// Takes back whatever job worker `id` holds: `BUSY -> READY` (its idle clock restarts), or it
/// stays `DRAINING`; reaching the spec's `max_jobs` drains it. Writes the released job id (free
/// with `hw_string_free`).
///
/// Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_NOT_BUSY` when it holds no job.
#[no_mangle]
pub extern "C" fn hw_registry_release(
    registry: *const hw_registry,
    id: hw_worker_id,
    out_job: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_registry_release, {
        let registry = arg_ref!(registry);
        let id = id.to_core()?;
        let out_job = arg_out!(out_job);
        let job = registry.inner.release_from_job(&id, None)?;
        out_job.write(c_string(job.as_str(), "job id")?.into_raw());
        Ok(())
    })
}

/// Like `hw_registry_release`, but only if worker `id` holds `expected_job`: a late release
/// from an old assignment never frees a new one.
///
/// Errors: `HW_ERR_NOT_BUSY` (and nothing changes) when it holds no job or another one.
#[no_mangle]
pub extern "C" fn hw_registry_release_job(
    registry: *const hw_registry,
    id: hw_worker_id,
    expected_job: *const c_char,
    out_job: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_registry_release_job, {
        let registry = arg_ref!(registry);
        let id = id.to_core()?;
        let expected = job_id(arg_str!(expected_job))?;
        let out_job = arg_out!(out_job);
        let job = registry.inner.release_from_job(&id, Some(&expected))?;
        out_job.write(c_string(job.as_str(), "job id")?.into_raw());
        Ok(())
    })
}

/// Picks a `READY` worker matching `filter` and assigns `job` to it in one atomic step
/// (preferring the most recently idle worker). Writes its new snapshot, or NULL when no
/// worker matches (not an error).
///
/// Errors: `HW_ERR_JOB_ALREADY_ASSIGNED` when a worker already holds `job`;
/// `HW_ERR_INVALID_ARGUMENT` for an invalid job id.
#[no_mangle]
pub extern "C" fn hw_registry_claim(
    registry: *const hw_registry,
    filter: *const hw_worker_filter,
    job: *const c_char,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_registry_claim, {
        let registry = arg_ref!(registry);
        let filter = arg_ref!(filter);
        let job = job_id(arg_str!(job))?;
        let out = arg_out!(out);
        let worker = registry.inner.claim(&filter.filter, job)?;
        out.write(worker.map_or(std::ptr::null_mut(), hw_worker::boxed));
        Ok(())
    })
}

/// Records a heartbeat of each of the `count` workers of `ids`, as `hw_registry_heartbeat` does
/// for one, and writes each one's answer to `out_statuses[i]`: `HW_OK`, or `HW_ERR_NOT_FOUND`
/// for a worker the registry does not hold (tell its agent to register again). The bulk form
/// for a host that gathers its agents' heartbeats: one statement on PostgreSQL; in memory, each
/// a heartbeat. `out_statuses` has room for `count` statuses and is written only on success.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for NULL `ids` or `out_statuses` or the nil id among
/// `ids` (then no heartbeat is recorded); `HW_ERR_BACKEND` when a shared registry's store
/// cannot be reached.
#[no_mangle]
pub extern "C" fn hw_registry_heartbeat_many(
    registry: *const hw_registry,
    ids: *const hw_worker_id,
    count: usize,
    out_statuses: *mut hw_status,
) -> hw_status {
    ffi_boundary!(hw_registry_heartbeat_many, {
        let registry = arg_ref!(registry);
        let ids = check_slice(ids, count, "ids")?;
        let out_statuses = OutArray::new(out_statuses, count, "out_statuses")?;
        let ids = ids
            .iter()
            .map(|id| id.to_core())
            .collect::<Result<Vec<_>, Error>>()?;
        let answers = registry.inner.heartbeat_many(&ids)?;
        out_statuses.write(answers.iter().map(|answer| match answer {
            Ok(()) => hw_status::HwOk,
            Err(e) => hw_status::of(e),
        }));
        Ok(())
    })
}

/// After a stall of the host (the process was suspended): no heartbeat or startup deadline
/// that started before `since_ms` expires before `since_ms` plus its timeout. The lifecycle
/// manager calls this itself; a host driving the registry alone may.
#[no_mangle]
pub extern "C" fn hw_registry_grant_grace(
    registry: *const hw_registry,
    since_ms: u64,
) -> hw_status {
    ffi_boundary!(hw_registry_grant_grace, {
        arg_ref!(registry).inner.grant_grace(since_ms)?;
        Ok(())
    })
}

/// Counts per state and the total, O(1).
#[no_mangle]
pub extern "C" fn hw_registry_stats(
    registry: *const hw_registry,
    out: *mut hw_worker_counts,
) -> hw_status {
    ffi_boundary!(hw_registry_stats, {
        let registry = arg_ref!(registry);
        let out = arg_out!(out);
        let stats = registry.inner.stats()?;
        out.write(hw_worker_counts::from_core(&stats));
        Ok(())
    })
}

/// The full statistics as JSON (`{"total":…,"by_state":{…},"by_provider":{…},
/// "by_provider_type":{…},"by_pool":{"NAME":{…per state…}}}`); free with `hw_string_free`.
#[no_mangle]
pub extern "C" fn hw_registry_stats_json(
    registry: *const hw_registry,
    out: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_registry_stats_json, {
        let registry = arg_ref!(registry);
        let out = arg_out!(out);
        let stats = registry.inner.stats()?;
        let json = serde_json::to_string(&stats)
            .map_err(|e| Error::invalid(format!("cannot write stats JSON: {e}")))?;
        out.write(c_string(&json, "stats JSON")?.into_raw());
        Ok(())
    })
}

/// The number of registered workers, O(1).
#[no_mangle]
pub extern "C" fn hw_registry_count(registry: *const hw_registry, out: *mut usize) -> hw_status {
    ffi_boundary!(hw_registry_count, {
        let registry = arg_ref!(registry);
        let out = arg_out!(out);
        out.write(registry.inner.count()?);
        Ok(())
    })
}

/// Every record plus the event sequence number, consistent at one instant, as JSON (free with
/// `hw_string_free`).
#[no_mangle]
pub extern "C" fn hw_registry_snapshot(
    registry: *const hw_registry,
    out_json: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_registry_snapshot, {
        let registry = arg_ref!(registry);
        let out_json = arg_out!(out_json);
        let json = registry.inner.snapshot()?.to_json()?;
        out_json.write(c_string(&json, "snapshot JSON")?.into_raw());
        Ok(())
    })
}

/// Loads a snapshot (from `hw_registry_snapshot`) into this registry, which must be empty. The
/// snapshot is checked whole first: on any error the registry is left untouched. Every restored
/// worker gets a fresh grace period from now: none expires at the first check after a restore
/// for the time the snapshot lay on disk. A snapshot dated after this registry's clock
/// (taken on a host whose clock is ahead) has every time clamped to this clock's now, so that
/// none of its workers escapes its heartbeat deadline; one dated more than an hour after now
/// is refused.
///
/// Errors: `HW_ERR_SNAPSHOT` for corrupt, foreign or inconsistent JSON (timestamps after the
/// snapshot's own time, a string holding a NUL byte, the snapshot or a record, handle, spec
/// or `resources` in it written as an array of its values instead of an object, …), or a
/// snapshot dated more than an hour after this registry's clock; `HW_ERR_INVALID_ARGUMENT`
/// when the registry is not empty, one of the snapshot's workers was registered in this
/// registry before (ids are never reused), the text is not UTF-8, or (PostgreSQL) the
/// database's encoding cannot store one of its strings.
#[no_mangle]
pub extern "C" fn hw_registry_restore(
    registry: *const hw_registry,
    json: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_registry_restore, {
        let registry = arg_ref!(registry);
        let json = arg_str!(json);
        registry.inner.restore(Snapshot::from_json(json)?)?;
        Ok(())
    })
}
