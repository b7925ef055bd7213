//! `hw_subscription` and `hw_event`: the registry's event stream.

use std::ffi::{c_char, CString};

use engine::{Error, EventKind, SubscribeOptions, Subscription, WorkerLifecycleEvent};

use crate::boundary::{
    arg_out, arg_ref, c_string, ffi_boundary, free_handle, hw_status, into_handle, lossy_c_string,
};
use crate::registry::hw_registry;
use crate::types::{
    hw_termination_reason, hw_worker_id, hw_worker_state, reason_to_c, state_to_c, HW_WAIT_FOREVER,
};

/// A subscriber's end of a registry's event stream. Events are queued in a bounded channel; a
/// full channel never blocks the registry: the event is dropped for this subscriber, its
/// drop counter grows, and the gap in `seq` shows where. Thread-safe; freeing it unsubscribes.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct hw_subscription {
    inner: Subscription,
}

/// What happened. `HW_EVENT_KIND_REGISTERED`, `_STATE_CHANGED`, `_ASSIGNED_TO_JOB`,
/// `_RELEASED_FROM_JOB`, `_JOB_LOST` and `_UNREGISTERED` are the registry's own: only a
/// change of its records emits them (the core's `publish`, the way of the manager's kinds
/// onto the stream, refuses them), so each one read tells of a change that happened.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum hw_event_kind {
    /// A worker was registered (worker id, provider id).
    Registered = 0,
    /// A worker changed state (worker id, from, to).
    StateChanged = 1,
    /// A worker took a job (worker id, job id).
    AssignedToJob = 2,
    /// A worker released a job (worker id, job id).
    ReleasedFromJob = 3,
    /// A heartbeat arrived (worker id; only for subscriptions that asked for them).
    HeartbeatReceived = 4,
    /// A worker missed its heartbeat or startup deadline (worker id).
    UnhealthyDetected = 5,
    /// A worker holding a job left service: requeue the job (worker id, job id).
    JobLost = 6,
    /// A worker's record left the registry (worker id, reason).
    Unregistered = 7,
    /// The manager asked a provider for a worker (provider id).
    ProvisionRequested = 8,
    /// A provider failed to create a worker (provider id, message).
    ProvisionFailed = 9,
    /// A provider failed to destroy a worker; it is retried (worker id, provider id, message).
    /// Not for an orphan instance (no record): its failed destroys are in the reports only.
    DestroyFailed = 10,
    /// The health check held back a mass expiry (see the manager's `max_unhealthy_fraction`).
    MassExpiryHeld = 11,
    /// A replica's manager took the leadership lease under a new term, or found it lost (no
    /// worker id; the holder, term and publishing replica are in `hw_event_to_json`).
    LeaderChanged = 12,
    /// A kind newer than this header: read it with `hw_event_to_json`.
    Unknown = 255,
}

/// One event. Read-only, thread-safe; borrowed strings are valid until `hw_event_free`.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct hw_event {
    event: WorkerLifecycleEvent,
    job_id: Option<CString>,
    provider_id: Option<CString>,
    message: Option<CString>,
}

impl hw_event {
    fn new(event: WorkerLifecycleEvent) -> Self {
        let c = |s: &str| Some(lossy_c_string(s));
        let (job_id, provider_id, message) = match &event.kind {
            EventKind::AssignedToJob { job_id, .. }
            | EventKind::ReleasedFromJob { job_id, .. }
            | EventKind::JobLost { job_id, .. } => (c(job_id.as_str()), None, None),
            EventKind::Registered { provider_id, .. }
            | EventKind::ProvisionRequested { provider_id } => {
                (None, c(provider_id.as_str()), None)
            }
            EventKind::ProvisionFailed { provider_id, error }
            | EventKind::DestroyFailed {
                provider_id, error, ..
            } => (None, c(provider_id.as_str()), c(error)),
            _ => (None, None, None),
        };
        hw_event {
            event,
            job_id,
            provider_id,
            message,
        }
    }

    fn kind(&self) -> hw_event_kind {
        match &self.event.kind {
            EventKind::Registered { .. } => hw_event_kind::Registered,
            EventKind::StateChanged { .. } => hw_event_kind::StateChanged,
            EventKind::AssignedToJob { .. } => hw_event_kind::AssignedToJob,
            EventKind::ReleasedFromJob { .. } => hw_event_kind::ReleasedFromJob,
            EventKind::HeartbeatReceived { .. } => hw_event_kind::HeartbeatReceived,
            EventKind::UnhealthyDetected { .. } => hw_event_kind::UnhealthyDetected,
            EventKind::JobLost { .. } => hw_event_kind::JobLost,
            EventKind::Unregistered { .. } => hw_event_kind::Unregistered,
            EventKind::ProvisionRequested { .. } => hw_event_kind::ProvisionRequested,
            EventKind::ProvisionFailed { .. } => hw_event_kind::ProvisionFailed,
            EventKind::DestroyFailed { .. } => hw_event_kind::DestroyFailed,
            EventKind::MassExpiryHeld { .. } => hw_event_kind::MassExpiryHeld,
            EventKind::LeaderChanged { .. } => hw_event_kind::LeaderChanged,
            _ => hw_event_kind::Unknown,
        }
    }
}

/// The queue capacity to pass to `hw_registry_subscribe` when you have no better number.
pub const HW_DEFAULT_SUBSCRIPTION_CAPACITY: usize = 4096;

/// Subscribes to `registry`'s events with a queue of `capacity` events (at least 1, e.g.
/// `HW_DEFAULT_SUBSCRIPTION_CAPACITY`; when the queue is full, further events are dropped for
/// this subscriber and counted by `hw_subscription_dropped`). `heartbeats` opts in to
/// `HW_EVENT_KIND_HEARTBEAT_RECEIVED` events (off is the sensible choice for a large fleet).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a capacity of 0 (as in Rust and Python: a queue that
/// can hold nothing is a mistake, not a default).
#[no_mangle]
pub extern "C" fn hw_registry_subscribe(
    registry: *const hw_registry,
    capacity: usize,
    heartbeats: bool,
    out: *mut *mut hw_subscription,
) -> hw_status {
    ffi_boundary!(hw_registry_subscribe, {
        let registry = arg_ref!(registry);
        let out = arg_out!(out);
        if capacity == 0 {
            return Err(Error::invalid(
                "capacity must be at least 1 (HW_DEFAULT_SUBSCRIPTION_CAPACITY is 4096)",
            ));
        }
        let options = SubscribeOptions::default()
            .heartbeats(heartbeats)
            .capacity(capacity);
        let inner = registry.inner.subscribe(options)?;
        out.write(into_handle(hw_subscription { inner }));
        Ok(())
    })
}

/// The next event, waiting up to `timeout_ms` milliseconds: 0 never waits, `HW_WAIT_FOREVER`
/// waits until an event arrives or the registry is gone (its handle freed and no manager
/// using it any more). Writes the event (free with
/// `hw_event_free`), or NULL when none came in time (not an error). On a PostgreSQL registry
/// whose server stops answering, it returns within `timeout_ms` plus 5 s (the reader's reply
/// timeout), with NULL; 0 then takes up to 5 s too. Once the server answers again the
/// subscription goes on, nothing lost or repeated.
#[no_mangle]
pub extern "C" fn hw_subscription_recv(
    subscription: *const hw_subscription,
    timeout_ms: u64,
    out: *mut *mut hw_event,
) -> hw_status {
    ffi_boundary!(hw_subscription_recv, {
        let subscription = arg_ref!(subscription);
        let out = arg_out!(out);
        let event = match timeout_ms {
            0 => subscription.inner.try_recv(),
            HW_WAIT_FOREVER => subscription.inner.recv(None),
            t => subscription
                .inner
                .recv(Some(std::time::Duration::from_millis(t))),
        };
        out.write(event.map_or(std::ptr::null_mut(), |e| into_handle(hw_event::new(e))));
        Ok(())
    })
}

/// How many events were dropped for this subscriber because its queue was full.
#[no_mangle]
pub extern "C" fn hw_subscription_dropped(
    subscription: *const hw_subscription,
    out: *mut u64,
) -> hw_status {
    ffi_boundary!(hw_subscription_dropped, {
        let subscription = arg_ref!(subscription);
        let out = arg_out!(out);
        out.write(subscription.inner.dropped());
        Ok(())
    })
}

/// How many events are queued and not yet received.
#[no_mangle]
pub extern "C" fn hw_subscription_pending(
    subscription: *const hw_subscription,
    out: *mut usize,
) -> hw_status {
    ffi_boundary!(hw_subscription_pending, {
        let subscription = arg_ref!(subscription);
        let out = arg_out!(out);
        out.write(subscription.inner.len());
        Ok(())
    })
}

/// Unsubscribes and frees. NULL does nothing. Must not race with a `hw_subscription_recv` on
/// the same subscription.
#[no_mangle]
pub extern "C" fn hw_subscription_free(subscription: *mut hw_subscription) {
    free_handle(subscription)
}

/// The event's kind.
#[no_mangle]
pub extern "C" fn hw_event_get_kind(event: *const hw_event, out: *mut hw_event_kind) -> hw_status {
    ffi_boundary!(hw_event_get_kind, {
        let event = arg_ref!(event);
        let out = arg_out!(out);
        out.write(event.kind());
        Ok(())
    })
}

/// The event's sequence number: strictly increasing per registry; a gap means this subscriber
/// missed events.
#[no_mangle]
pub extern "C" fn hw_event_get_seq(event: *const hw_event, out: *mut u64) -> hw_status {
    ffi_boundary!(hw_event_get_seq, {
        let event = arg_ref!(event);
        let out = arg_out!(out);
        out.write(event.event.seq);
        Ok(())
    })
}

/// When it happened (milliseconds since the Unix epoch, on the registry's clock).
#[no_mangle]
pub extern "C" fn hw_event_get_at(event: *const hw_event, out_ms: *mut u64) -> hw_status {
    ffi_boundary!(hw_event_get_at, {
        let event = arg_ref!(event);
        let out_ms = arg_out!(out_ms);
        out_ms.write(event.event.at);
        Ok(())
    })
}

/// The worker the event is about; `*out_has` is false (and `*out` untouched) for fleet events
/// (provisioning, mass expiry).
#[no_mangle]
pub extern "C" fn hw_event_get_worker_id(
    event: *const hw_event,
    out_has: *mut bool,
    out: *mut hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_event_get_worker_id, {
        let event = arg_ref!(event);
        let out_has = arg_out!(out_has);
        let out = arg_out!(out);
        match event.event.kind.worker_id() {
            Some(id) => {
                out.write(hw_worker_id::from_core(&id));
                out_has.write(true);
            }
            None => out_has.write(false),
        }
        Ok(())
    })
}

/// The job of an assigned / released / job-lost event, or NULL (borrowed).
#[no_mangle]
pub extern "C" fn hw_event_get_job_id(
    event: *const hw_event,
    out: *mut *const c_char,
) -> hw_status {
    ffi_boundary!(hw_event_get_job_id, {
        let event = arg_ref!(event);
        let out = arg_out!(out);
        out.write(
            event
                .job_id
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr()),
        );
        Ok(())
    })
}

/// The provider of a registered / provision / destroy-failed event, or NULL (borrowed).
#[no_mangle]
pub extern "C" fn hw_event_get_provider_id(
    event: *const hw_event,
    out: *mut *const c_char,
) -> hw_status {
    ffi_boundary!(hw_event_get_provider_id, {
        let event = arg_ref!(event);
        let out = arg_out!(out);
        out.write(
            event
                .provider_id
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr()),
        );
        Ok(())
    })
}

/// The provider's error message of a provision-failed / destroy-failed event, or NULL
/// (borrowed).
#[no_mangle]
pub extern "C" fn hw_event_get_message(
    event: *const hw_event,
    out: *mut *const c_char,
) -> hw_status {
    ffi_boundary!(hw_event_get_message, {
        let event = arg_ref!(event);
        let out = arg_out!(out);
        out.write(
            event
                .message
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr()),
        );
        Ok(())
    })
}

/// The states of a state-changed event.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for another kind of event.
#[no_mangle]
pub extern "C" fn hw_event_get_states(
    event: *const hw_event,
    out_from: *mut hw_worker_state,
    out_to: *mut hw_worker_state,
) -> hw_status {
    ffi_boundary!(hw_event_get_states, {
        let event = arg_ref!(event);
        let out_from = arg_out!(out_from);
        let out_to = arg_out!(out_to);
        match &event.event.kind {
            EventKind::StateChanged { from, to, .. } => {
                out_from.write(state_to_c(*from));
                out_to.write(state_to_c(*to));
                Ok(())
            }
            other => Err(Error::invalid(format!(
                "a {} event has no states",
                other.name()
            ))),
        }
    })
}

/// The reason of an unregistered event.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for another kind of event.
#[no_mangle]
pub extern "C" fn hw_event_get_reason(
    event: *const hw_event,
    out: *mut hw_termination_reason,
) -> hw_status {
    ffi_boundary!(hw_event_get_reason, {
        let event = arg_ref!(event);
        let out = arg_out!(out);
        match &event.event.kind {
            EventKind::Unregistered { reason, .. } => {
                out.write(reason_to_c(*reason));
                Ok(())
            }
            other => Err(Error::invalid(format!(
                "a {} event has no termination reason",
                other.name()
            ))),
        }
    })
}

/// The whole event as JSON (`{"seq":…,"at":…,"kind":{"type":"state_changed",…}}`); free with
/// `hw_string_free`.
#[no_mangle]
pub extern "C" fn hw_event_to_json(event: *const hw_event, out: *mut *mut c_char) -> hw_status {
    ffi_boundary!(hw_event_to_json, {
        let event = arg_ref!(event);
        let out = arg_out!(out);
        let json = serde_json::to_string(&event.event)
            .map_err(|e| Error::invalid(format!("cannot write event JSON: {e}")))?;
        out.write(c_string(&json, "event JSON")?.into_raw());
        Ok(())
    })
}

/// Frees an event. NULL does nothing.
#[no_mangle]
pub extern "C" fn hw_event_free(event: *mut hw_event) {
    free_handle(event)
}
