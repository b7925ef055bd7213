//! `hw_subscription` and `hw_event`: the registry's event stream.

use std::ffi::{c_char, CString};

use engine::{
    Error, EventKind, JobId, SubscribeOptions, Subscription, TerminationReason, WorkerId,
    WorkerLifecycleEvent, WorkerState,
};

use crate::boundary::{
    arg_out, arg_ref, c_string, check_str, ffi_boundary, free_handle, hw_status, into_handle,
    lossy_c_string,
};
use crate::registry::hw_registry;
use crate::types::{
    hw_termination_reason, hw_worker_id, hw_worker_state, provider_id, provider_type, reason_to_c,
    state_to_c, HW_WAIT_FOREVER,
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
/// change of its records emits them (`hw_registry_publish`, the host's way onto the stream,
/// refuses them), so each one read tells of a change that happened.
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
    /// A `LeaderChanged`'s holder and publishing replica, for `hw_event_get_fields`.
    holder: Option<CString>,
    by: Option<CString>,
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
        let (holder, by) = match &event.kind {
            EventKind::LeaderChanged { holder, by, .. } => (holder.as_deref().and_then(c), c(by)),
            _ => (None, None),
        };
        hw_event {
            event,
            job_id,
            provider_id,
            message,
            holder,
            by,
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

/// The fields of an event that a host puts on the registry's stream (`hw_registry_publish`),
/// the way `hw_event_get_fields` gives them back from a received one. `kind` is a
/// `hw_event_kind`; each kind reads only the members its line names, the others are ignored
/// (zero them: `hw_event_fields f = {0};`). Strings are borrowed for the call only.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_event_fields {
    /// The kind (a `hw_event_kind`).
    pub kind: u32,
    /// The worker: `HEARTBEAT_RECEIVED`, `UNHEALTHY_DETECTED`, `DESTROY_FAILED` (and, read
    /// back, every kind about a worker). Not the nil id.
    pub worker_id: hw_worker_id,
    /// The provider: `PROVISION_REQUESTED`, `PROVISION_FAILED`, `DESTROY_FAILED` (and, read
    /// back, `REGISTERED`). At most `HW_MAX_PROVIDER_ID_LEN` bytes.
    pub provider_id: *const c_char,
    /// What the provider said: `PROVISION_FAILED`, `DESTROY_FAILED`.
    pub message: *const c_char,
    /// The worker's last heartbeat (ms since the Unix epoch): `UNHEALTHY_DETECTED`.
    pub last_heartbeat_ms: u64,
    /// How many destroy attempts failed so far: `DESTROY_FAILED`.
    pub attempts: u32,
    /// How many workers the health check would have declared unhealthy: `MASS_EXPIRY_HELD`.
    pub would_expire: usize,
    /// Live workers at the time: `MASS_EXPIRY_HELD`.
    pub live: usize,
    /// The leader now, NULL when the publisher does not know: `LEADER_CHANGED`.
    pub holder: *const c_char,
    /// The lease's term (the fencing token): `LEADER_CHANGED`.
    pub term: u64,
    /// The replica that publishes the event: `LEADER_CHANGED`.
    pub by: *const c_char,
}

/// The core's event for `fields`, or why there is none. The registry's own kinds are refused
/// by the core's own check (`EventKind::check_publishable`, whose message lists the kinds
/// that may be published), asked of an event of that kind made up here: the refusal depends
/// on the kind alone, none of its fields is read.
fn kind_from_c(fields: &hw_event_fields) -> Result<EventKind, Error> {
    let worker = || fields.worker_id.to_core();
    let provider = || provider_id(check_str(fields.provider_id, "fields->provider_id")?);
    let message = || check_str(fields.message, "fields->message").map(str::to_owned);
    let own = |kind: EventKind| -> Result<EventKind, Error> {
        kind.check_publishable()?;
        Err(Error::invalid(format!(
            "event kind {} is not publishable",
            kind.name()
        )))
    };
    let sample_worker = WorkerId::new;
    let sample_job = || JobId::new("job");
    match fields.kind {
        k if k == hw_event_kind::Registered as u32 => own(EventKind::Registered {
            worker_id: sample_worker(),
            provider_id: provider_id("provider")?,
            provider_type: provider_type("docker")?,
        }),
        k if k == hw_event_kind::StateChanged as u32 => own(EventKind::StateChanged {
            worker_id: sample_worker(),
            from: WorkerState::Creating,
            to: WorkerState::Connecting,
        }),
        k if k == hw_event_kind::AssignedToJob as u32 => own(EventKind::AssignedToJob {
            worker_id: sample_worker(),
            job_id: sample_job()?,
        }),
        k if k == hw_event_kind::ReleasedFromJob as u32 => own(EventKind::ReleasedFromJob {
            worker_id: sample_worker(),
            job_id: sample_job()?,
        }),
        k if k == hw_event_kind::JobLost as u32 => own(EventKind::JobLost {
            worker_id: sample_worker(),
            job_id: sample_job()?,
        }),
        k if k == hw_event_kind::Unregistered as u32 => own(EventKind::Unregistered {
            worker_id: sample_worker(),
            reason: TerminationReason::Requested,
        }),
        k if k == hw_event_kind::HeartbeatReceived as u32 => Ok(EventKind::HeartbeatReceived {
            worker_id: worker()?,
        }),
        k if k == hw_event_kind::UnhealthyDetected as u32 => Ok(EventKind::UnhealthyDetected {
            worker_id: worker()?,
            last_heartbeat: fields.last_heartbeat_ms,
        }),
        k if k == hw_event_kind::ProvisionRequested as u32 => Ok(EventKind::ProvisionRequested {
            provider_id: provider()?,
        }),
        k if k == hw_event_kind::ProvisionFailed as u32 => Ok(EventKind::ProvisionFailed {
            provider_id: provider()?,
            error: message()?,
        }),
        k if k == hw_event_kind::DestroyFailed as u32 => Ok(EventKind::DestroyFailed {
            worker_id: worker()?,
            provider_id: provider()?,
            error: message()?,
            attempts: fields.attempts,
        }),
        k if k == hw_event_kind::MassExpiryHeld as u32 => Ok(EventKind::MassExpiryHeld {
            would_expire: fields.would_expire,
            live: fields.live,
        }),
        k if k == hw_event_kind::LeaderChanged as u32 => Ok(EventKind::LeaderChanged {
            holder: if fields.holder.is_null() {
                None
            } else {
                Some(check_str(fields.holder, "fields->holder")?.to_owned())
            },
            term: fields.term,
            by: check_str(fields.by, "fields->by")?.to_owned(),
        }),
        other => Err(Error::invalid(format!(
            "{other} is not a hw_event_kind that can be published (0..=12)"
        ))),
    }
}

/// Puts an event of the host on the registry's stream, with the next `seq` and the registry's
/// time: every subscriber of the registry reads it (on PostgreSQL, those of every process
/// sharing it), as it reads the manager's. The way of a host that provisions workers itself
/// to tell the fleet's subscribers what it did (`PROVISION_REQUESTED`, `PROVISION_FAILED`,
/// `DESTROY_FAILED`, …). A `HEARTBEAT_RECEIVED` reaches only the subscriptions that asked for
/// heartbeat events, and is no event while none does (on PostgreSQL: none of this registry
/// handle); it records no heartbeat (that is `hw_registry_heartbeat`).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for NULL, a `kind` out of range (`HW_EVENT_KIND_UNKNOWN`
/// included), a string member the kind needs that is NULL, not UTF-8 or malformed (a provider
/// id), the nil worker id, and for the registry's own kinds (`REGISTERED`, `STATE_CHANGED`,
/// `ASSIGNED_TO_JOB`, `RELEASED_FROM_JOB`, `JOB_LOST`, `UNREGISTERED`: the message names the
/// kind and the kinds that may be published), checked first; a `message` over
/// `HW_MAX_PROVIDER_MESSAGE_LEN` + 64 bytes (the manager's carry a provider's message and its
/// kind), a `holder` or `by` that is empty or over 128 bytes (a
/// lease holder's rules); `HW_ERR_NOT_FOUND` for an event
/// about a worker that is not registered; `HW_ERR_BACKEND` when a shared registry's store
/// cannot be reached. Nothing is published on any error.
#[no_mangle]
pub extern "C" fn hw_registry_publish(
    registry: *const hw_registry,
    fields: *const hw_event_fields,
) -> hw_status {
    ffi_boundary!(hw_registry_publish, {
        let registry = arg_ref!(registry);
        let fields = arg_ref!(fields);
        registry.inner.publish(kind_from_c(fields)?)
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

/// Every field of the event in one struct, as `hw_registry_publish` takes them: the
/// members of its kind are set (see `hw_event_fields`), the others are zero or NULL. Strings
/// are borrowed from the event: valid until `hw_event_free`. The registry's own kinds fill
/// `kind`, `worker_id` and, for `REGISTERED`, `provider_id`; their job, states and reason have
/// their own getters. A kind newer than this header is `HW_EVENT_KIND_UNKNOWN` with its worker
/// id: read the rest with `hw_event_to_json`.
#[no_mangle]
pub extern "C" fn hw_event_get_fields(
    event: *const hw_event,
    out: *mut hw_event_fields,
) -> hw_status {
    ffi_boundary!(hw_event_get_fields, {
        let event = arg_ref!(event);
        let out = arg_out!(out);
        let text = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let mut fields = hw_event_fields {
            kind: event.kind() as u32,
            worker_id: hw_worker_id { bytes: [0; 16] },
            provider_id: text(&event.provider_id),
            message: text(&event.message),
            last_heartbeat_ms: 0,
            attempts: 0,
            would_expire: 0,
            live: 0,
            holder: text(&event.holder),
            term: 0,
            by: text(&event.by),
        };
        if let Some(id) = event.event.kind.worker_id() {
            fields.worker_id = hw_worker_id::from_core(&id);
        }
        match &event.event.kind {
            EventKind::UnhealthyDetected { last_heartbeat, .. } => {
                fields.last_heartbeat_ms = *last_heartbeat
            }
            EventKind::DestroyFailed { attempts, .. } => fields.attempts = *attempts,
            EventKind::MassExpiryHeld { would_expire, live } => {
                fields.would_expire = *would_expire;
                fields.live = *live;
            }
            EventKind::LeaderChanged { term, .. } => fields.term = *term,
            _ => {}
        }
        out.write(fields);
        Ok(())
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
