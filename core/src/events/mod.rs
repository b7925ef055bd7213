//! Lifecycle events: [`WorkerLifecycleEvent`], [`EventKind`], [`Subscription`].
//!
//! Every subscriber has its own bounded channel. Publishing never blocks: when a subscriber's
//! channel is full its event is dropped, its [`Subscription::dropped`] counter grows, and the
//! gap in [`WorkerLifecycleEvent::seq`] shows where.
//!
//! This module holds what an event is; `bus` the in-memory registry's fan-out to its
//! subscribers; `subscription` the subscriber's end, fed by that bus or by another backend's
//! [`EventSource`].

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{JobId, ProviderId, WorkerId};
use crate::lifecycle::{is_lease_holder, MAX_LEASE_HOLDER_LEN, MAX_PROVIDER_MESSAGE_LEN};
use crate::state::WorkerState;
use crate::worker::{ProviderType, TerminationReason};

mod bus;
mod subscription;

pub(crate) use bus::EventBus;
pub use subscription::{
    EventFeed, EventSource, SubscribeOptions, Subscription, SubscriptionMonitor,
};

/// Longest `error` a published `ProvisionFailed` or `DestroyFailed` may carry: the manager's
/// carry a provider's failure as text, its message (at most [`MAX_PROVIDER_MESSAGE_LEN`]
/// bytes: the manager cuts every provider's) and its kind (`"… (no_capacity)"`), which the 64
/// bytes above the message leave room for.
pub(crate) const MAX_PUBLISHED_ERROR_LEN: usize = MAX_PROVIDER_MESSAGE_LEN + 64;

/// One thing that happened to a worker (or to the fleet), in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct WorkerLifecycleEvent {
    /// Strictly increasing per registry. A gap means this subscriber missed events: dropped
    /// because its queue was full (counted by [`Subscription::dropped`]), or heartbeat events
    /// it did not opt in to while another subscriber did. Every other event of the registry
    /// takes a number, heard or not (only its building and sending are skipped while nobody
    /// subscribes), so a snapshot's `seq` counts every event before it; a `HeartbeatReceived`
    /// (the registry's or one given to `publish`) is an event only while some subscriber
    /// wants heartbeat events, and takes no number otherwise.
    pub seq: u64,
    /// When it happened, on the registry's clock. Never decreases along `seq`; a record's
    /// `updated_at`/`state_changed_at`/`idle_since` equal the `at` of the event of their change.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
}
crate::object_form::object_form!(WorkerLifecycleEvent, "an event");

/// What happened. The registry emits the worker events; the lifecycle manager adds its own
/// (`Provision*`, `DestroyFailed`, `MassExpiryHeld`, `UnhealthyDetected`, `LeaderChanged`) to
/// the same stream, through [`WorkerRegistry::publish`](crate::WorkerRegistry::publish). The
/// kinds that tell of a change of the registry's records (`Registered`, `StateChanged`,
/// `AssignedToJob`, `ReleasedFromJob`, `JobLost`, `Unregistered`:
/// [`is_registry_change`](Self::is_registry_change)) come from the registry alone: `publish`
/// refuses them, so a subscriber that reads one knows the change happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A worker was registered (in `Creating`).
    Registered {
        /// The worker.
        worker_id: WorkerId,
        /// Its provider.
        provider_id: ProviderId,
        /// Its provider's type.
        provider_type: ProviderType,
    },
    /// A worker changed state.
    StateChanged {
        /// The worker.
        worker_id: WorkerId,
        /// Previous state.
        from: WorkerState,
        /// New state.
        to: WorkerState,
    },
    /// A worker took a job.
    AssignedToJob {
        /// The worker.
        worker_id: WorkerId,
        /// The job.
        job_id: JobId,
    },
    /// A worker finished (released) a job.
    ReleasedFromJob {
        /// The worker.
        worker_id: WorkerId,
        /// The job.
        job_id: JobId,
    },
    /// A heartbeat arrived (only for subscribers that opt in).
    HeartbeatReceived {
        /// The worker.
        worker_id: WorkerId,
    },
    /// A worker missed its heartbeat or startup deadline.
    UnhealthyDetected {
        /// The worker.
        worker_id: WorkerId,
        /// Its last heartbeat.
        last_heartbeat: Timestamp,
    },
    /// A worker holding a job left service: the job must be requeued by the host.
    JobLost {
        /// The worker.
        worker_id: WorkerId,
        /// The job it held.
        job_id: JobId,
    },
    /// A worker's record left the registry.
    Unregistered {
        /// The worker.
        worker_id: WorkerId,
        /// Why.
        reason: TerminationReason,
    },
    /// The manager asked a provider for a worker.
    ProvisionRequested {
        /// The provider asked.
        provider_id: ProviderId,
    },
    /// A provider failed to create a worker.
    ProvisionFailed {
        /// The provider.
        provider_id: ProviderId,
        /// What it said.
        error: String,
    },
    /// A provider failed to destroy a worker; it stays `Terminating` and is retried. Only for a
    /// worker the registry holds: a failed destroy of an orphan instance (one no record knows,
    /// see [`reconcile`](crate::WorkerLifecycleManager::reconcile)) publishes none; it is in the
    /// reports (`ReconcileReport::orphans`, `TickReport::failed`) and `destroy_failures_total`.
    DestroyFailed {
        /// The worker.
        worker_id: WorkerId,
        /// The provider.
        provider_id: ProviderId,
        /// What it said.
        error: String,
        /// How many attempts failed so far.
        attempts: u32,
    },
    /// The health check would have declared too many workers unhealthy at once and declared
    /// none (see `max_unhealthy_fraction`).
    MassExpiryHeld {
        /// How many would have been declared unhealthy.
        would_expire: usize,
        /// Live workers at the time.
        live: usize,
    },
    /// A replica's manager took the leadership lease under a new term (published by the new
    /// leader after it took over), or found it lost (published by the old one).
    LeaderChanged {
        /// The leader now (`None`: the publisher lost the lease and does not know who leads).
        holder: Option<String>,
        /// Its term (the fencing token).
        term: u64,
        /// The replica that published the event.
        by: String,
    },
}
crate::object_form::object_form!(EventKind, "an event kind");

impl EventKind {
    /// The worker the event is about, if it is about one.
    pub fn worker_id(&self) -> Option<WorkerId> {
        match self {
            EventKind::Registered { worker_id, .. }
            | EventKind::StateChanged { worker_id, .. }
            | EventKind::AssignedToJob { worker_id, .. }
            | EventKind::ReleasedFromJob { worker_id, .. }
            | EventKind::HeartbeatReceived { worker_id }
            | EventKind::UnhealthyDetected { worker_id, .. }
            | EventKind::JobLost { worker_id, .. }
            | EventKind::Unregistered { worker_id, .. }
            | EventKind::DestroyFailed { worker_id, .. } => Some(*worker_id),
            EventKind::ProvisionRequested { .. }
            | EventKind::ProvisionFailed { .. }
            | EventKind::MassExpiryHeld { .. }
            | EventKind::LeaderChanged { .. } => None,
        }
    }

    /// Whether this kind tells of a change of the registry's records, which the registry alone
    /// emits as it makes the change: `Registered`, `StateChanged`, `AssignedToJob`,
    /// `ReleasedFromJob`, `JobLost` (a job cleared by a move out of service or an
    /// unregister), `Unregistered`. Every other kind may be published by a host or the manager
    /// ([`check_publishable`](Self::check_publishable)): `HeartbeatReceived` (it records no
    /// heartbeat), `UnhealthyDetected`, `ProvisionRequested`, `ProvisionFailed`,
    /// `DestroyFailed`, `MassExpiryHeld`, `LeaderChanged`.
    pub fn is_registry_change(&self) -> bool {
        match self {
            EventKind::Registered { .. }
            | EventKind::StateChanged { .. }
            | EventKind::AssignedToJob { .. }
            | EventKind::ReleasedFromJob { .. }
            | EventKind::JobLost { .. }
            | EventKind::Unregistered { .. } => true,
            EventKind::HeartbeatReceived { .. }
            | EventKind::UnhealthyDetected { .. }
            | EventKind::ProvisionRequested { .. }
            | EventKind::ProvisionFailed { .. }
            | EventKind::DestroyFailed { .. }
            | EventKind::MassExpiryHeld { .. }
            | EventKind::LeaderChanged { .. } => false,
        }
    }

    /// What every backend's [`publish`](crate::WorkerRegistry::publish) runs first: a kind
    /// that [`is_registry_change`](Self::is_registry_change) is refused, and so is text the
    /// manager's own events of the kind never carry. Costs one match and the length of the
    /// event's text.
    ///
    /// # Errors
    /// `InvalidArgument` naming the kind:
    /// - for a registry change: published, it would tell every subscriber of a change that
    ///   never happened in the registry (a fake `JobLost` would have the host requeue a job a
    ///   worker still runs);
    /// - for an `error` over [`MAX_PROVIDER_MESSAGE_LEN`](crate::MAX_PROVIDER_MESSAGE_LEN) +
    ///   64 bytes (`ProvisionFailed`, `DestroyFailed`: the manager's carry a provider's message,
    ///   cut with [`cut_provider_message`](crate::cut_provider_message), which a host can call
    ///   too, and its kind, `" (no_capacity)"`), and
    ///   for a `LeaderChanged` whose `holder` or `by` breaks the lease holder's rules (1 to
    ///   [`MAX_LEASE_HOLDER_LEN`](crate::MAX_LEASE_HOLDER_LEN) bytes, no NUL): every subscriber
    ///   gets a copy of the event (on PostgreSQL, every replica's, through one outbox row), and
    ///   a C subscriber reads its text as NUL-terminated strings (clarified 2026-12-07).
    pub fn check_publishable(&self) -> Result<()> {
        if self.is_registry_change() {
            return Err(Error::invalid(format!(
                "event kind {} is emitted by the registry alone, as it changes its records: \
                 publish refuses it (publish may carry heartbeat_received, unhealthy_detected, \
                 provision_requested, provision_failed, destroy_failed, mass_expiry_held, \
                 leader_changed)",
                self.name()
            )));
        }
        let refuse = |what: String| {
            Err(Error::invalid(format!(
                "event kind {}: {what}: publish refuses it",
                self.name()
            )))
        };
        match self {
            EventKind::ProvisionFailed { error, .. } | EventKind::DestroyFailed { error, .. }
                if error.len() > MAX_PUBLISHED_ERROR_LEN =>
            {
                refuse(format!(
                    "error of {} bytes, over {MAX_PUBLISHED_ERROR_LEN} (cut it with \
                     cut_provider_message, as the manager cuts a provider's message)",
                    error.len()
                ))
            }
            EventKind::LeaderChanged { holder, by, .. } => {
                let unfit = holder.as_deref().filter(|h| !is_lease_holder(h));
                match (unfit, !is_lease_holder(by)) {
                    (Some(h), _) => refuse(format!(
                        "holder of {} bytes is not a lease holder (1..={MAX_LEASE_HOLDER_LEN} \
                         bytes, no NUL)",
                        h.len()
                    )),
                    (None, true) => refuse(format!(
                        "by of {} bytes is not a lease holder (1..={MAX_LEASE_HOLDER_LEN} bytes, \
                         no NUL)",
                        by.len()
                    )),
                    (None, false) => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Stable snake_case name of the variant (`"state_changed"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Registered { .. } => "registered",
            EventKind::StateChanged { .. } => "state_changed",
            EventKind::AssignedToJob { .. } => "assigned_to_job",
            EventKind::ReleasedFromJob { .. } => "released_from_job",
            EventKind::HeartbeatReceived { .. } => "heartbeat_received",
            EventKind::UnhealthyDetected { .. } => "unhealthy_detected",
            EventKind::JobLost { .. } => "job_lost",
            EventKind::Unregistered { .. } => "unregistered",
            EventKind::ProvisionRequested { .. } => "provision_requested",
            EventKind::ProvisionFailed { .. } => "provision_failed",
            EventKind::DestroyFailed { .. } => "destroy_failed",
            EventKind::MassExpiryHeld { .. } => "mass_expiry_held",
            EventKind::LeaderChanged { .. } => "leader_changed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{ProviderError, ProviderErrorKind};

    #[test]
    fn every_failure_the_manager_publishes_fits_the_published_error_limit() {
        use ProviderErrorKind::*;
        let longest = "é".repeat(MAX_PROVIDER_MESSAGE_LEN);
        for kind in [
            Failed,
            NotFound,
            Unsupported,
            Panicked,
            NoCapacity,
            Fenced,
            Interrupted,
        ] {
            // What the manager's ProvisionFailed and DestroyFailed carry: `e.to_string()`.
            let mut e = ProviderError::new(longest.as_str());
            e.kind = kind;
            let error = e.to_string();
            assert!(
                error.len() > MAX_PROVIDER_MESSAGE_LEN,
                "{kind:?}: the test's premise"
            );
            let event = EventKind::ProvisionFailed {
                provider_id: ProviderId::new("p").unwrap(),
                error,
            };
            assert_eq!(event.check_publishable(), Ok(()), "{kind:?}");
        }
    }
}
