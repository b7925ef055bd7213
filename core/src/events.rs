//! Lifecycle events: [`WorkerLifecycleEvent`], [`EventKind`], [`Subscription`].
//!
//! Every subscriber has its own bounded channel. Publishing never blocks: when a subscriber's
//! channel is full its event is dropped, its [`Subscription::dropped`] counter grows, and the
//! gap in [`WorkerLifecycleEvent::seq`] shows where.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{JobId, ProviderId, WorkerId};
use crate::lifecycle::{is_lease_holder, MAX_LEASE_HOLDER_LEN, MAX_PROVIDER_MESSAGE_LEN};
use crate::state::WorkerState;
use crate::worker::{ProviderType, TerminationReason};

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

/// How a subscriber wants its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Channel capacity, at least 1 (`subscribe` refuses 0 with `InvalidArgument`); when full,
    /// further events are dropped for this subscriber. Memory follows the events queued, not
    /// the capacity: any value is safe to ask for.
    pub capacity: usize,
    /// Whether to receive `HeartbeatReceived` (off by default: a million workers heartbeating
    /// is a lot of events).
    pub heartbeats: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            capacity: 4096,
            heartbeats: false,
        }
    }
}

impl SubscribeOptions {
    /// Sets the channel capacity.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Opts in (or out) of heartbeat events.
    pub fn heartbeats(mut self, heartbeats: bool) -> Self {
        self.heartbeats = heartbeats;
        self
    }
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    /// An unbounded channel held to `capacity` by `publish`: a bounded crossbeam channel
    /// allocates all its slots up front, so a large capacity (asked for from C or Python)
    /// would cost its full memory at once, or abort the process when the allocation fails.
    /// Every send happens under the bus lock and receivers only shrink the queue, so the
    /// check before the send is exact.
    sender: Sender<WorkerLifecycleEvent>,
    capacity: usize,
    dropped: Arc<AtomicU64>,
    heartbeats: bool,
}

#[derive(Debug, Default)]
struct BusState {
    /// The `at` of the last event: events published with an earlier time (read before a
    /// concurrent change took the lock) are stamped with this one, so `at` follows `seq`.
    last_at: Timestamp,
    next_subscriber: u64,
    subscribers: Vec<Subscriber>,
}

/// The fan-out of a registry's events. Internal; reached through `subscribe`/`publish`.
#[derive(Debug, Default)]
pub(crate) struct EventBus {
    state: Mutex<BusState>,
    /// The seq of the last event numbered. Changed under `state`'s lock while anyone
    /// subscribes, so that events reach every subscriber in seq order.
    seq: AtomicU64,
    /// Subscribers now (`state.subscribers.len()`), read without the lock by `publish`.
    subscribers: AtomicUsize,
    heartbeat_subscribers: AtomicUsize,
}

impl EventBus {
    /// Publishes one event to every subscriber that wants it, without ever blocking. `kind`
    /// is called only when someone subscribes: with no subscriber an event costs one atomic
    /// increment (its seq) and nothing is built, locked or sent.
    ///
    /// A subscriber that subscribes while an event is published may or may not receive it
    /// (its subscription is not ordered with that event); one that subscribed before the
    /// publishing call began receives it (or counts it dropped).
    ///
    /// Cost with subscribers: one short mutex section and one `try_send` per subscriber.
    pub(crate) fn publish(&self, at: Timestamp, kind: impl FnOnce() -> EventKind) {
        // Acquire pairs with the Release increment in `subscribe`: a subscription made before
        // this call (on any thread that synchronised with us) is seen.
        if self.subscribers.load(Ordering::Acquire) == 0 {
            self.seq.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut state = self.state.lock();
        let kind = kind();
        debug_assert!(
            !matches!(kind, EventKind::HeartbeatReceived { .. }),
            "heartbeat events go through publish_heartbeat"
        );
        self.send(&mut state, at, kind, false);
    }

    /// Publishes `worker_id`'s `HeartbeatReceived`, read at `now`, to the subscribers that
    /// want heartbeat events; while none does, it is no event at all: no `seq` is taken (a
    /// subscriber would see a gap that neither its `dropped()` nor any heartbeat subscriber
    /// explains), nothing is built or sent.
    ///
    /// First, under the bus lock, `record(at)` is called with the time the event carries
    /// (`now`, or the last event's `at` when that is later: `at` never decreases along `seq`),
    /// so that the worker keeps exactly its event's time (DESIGN.md §3, invariant 6). When
    /// `record` answers `false` (it could not store the time: the heartbeat column needs its
    /// write lock) nothing is published and `false` is returned, for the caller to call
    /// again with a `record` that can. Called with the registry-wide mutex held, as every
    /// publisher: no event is numbered between the time's reading and its event.
    pub(crate) fn publish_heartbeat(
        &self,
        now: Timestamp,
        worker_id: WorkerId,
        record: impl FnOnce(Timestamp) -> bool,
    ) -> bool {
        let mut state = self.state.lock();
        let at = now.max(state.last_at);
        if !record(at) {
            return false;
        }
        // Changed under this lock only: exact here.
        if self.heartbeat_subscribers.load(Ordering::Relaxed) > 0 {
            self.send(
                &mut state,
                at,
                EventKind::HeartbeatReceived { worker_id },
                true,
            );
        }
        true
    }

    /// Numbers `kind` and sends it to every subscriber that wants it (only those that opted
    /// in to heartbeats for a `heartbeat`), counting it dropped for those that are full.
    fn send(&self, state: &mut BusState, at: Timestamp, kind: EventKind, heartbeat: bool) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let at = at.max(state.last_at);
        state.last_at = at;
        let event = WorkerLifecycleEvent { seq, at, kind };
        for sub in &state.subscribers {
            if heartbeat && !sub.heartbeats {
                continue;
            }
            if sub.sender.len() >= sub.capacity {
                sub.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                // Never blocks (unbounded); cannot fail while the Subscription lives, and
                // dropping it unsubscribes first.
                let _ = sub.sender.send(event.clone());
            }
        }
    }

    /// Whether any subscriber wants heartbeat events (checked lock-free on the heartbeat path).
    pub(crate) fn wants_heartbeats(&self) -> bool {
        self.heartbeat_subscribers.load(Ordering::Relaxed) > 0
    }

    /// The seq of the last published event.
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Continues numbering after `seq` (restore).
    pub(crate) fn set_seq(&self, seq: u64) {
        let _state = self.state.lock();
        self.seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// A new subscriber.
    ///
    /// # Errors
    /// `InvalidArgument` for a capacity of 0 (a subscriber that could hold no event).
    pub(crate) fn subscribe(self: &Arc<Self>, options: SubscribeOptions) -> Result<Subscription> {
        if options.capacity == 0 {
            return Err(Error::invalid(
                "subscription capacity must be at least 1 (0 would drop every event)",
            ));
        }
        let (sender, receiver) = crossbeam_channel::unbounded();
        let dropped = Arc::new(AtomicU64::new(0));
        let mut state = self.state.lock();
        let id = state.next_subscriber;
        state.next_subscriber += 1;
        state.subscribers.push(Subscriber {
            id,
            sender,
            capacity: options.capacity,
            dropped: Arc::clone(&dropped),
            heartbeats: options.heartbeats,
        });
        self.subscribers.fetch_add(1, Ordering::Release);
        if options.heartbeats {
            self.heartbeat_subscribers.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Subscription {
            id,
            receiver,
            dropped,
            bus: Arc::downgrade(self),
            source: None,
        })
    }

    /// Every live subscriber's drop count, queue length and capacity.
    pub(crate) fn subscriber_drops(&self) -> Vec<crate::registry::SubscriberDrops> {
        let state = self.state.lock();
        state
            .subscribers
            .iter()
            .map(|s| crate::registry::SubscriberDrops {
                subscriber: s.id,
                dropped: s.dropped.load(Ordering::Relaxed),
                queued: s.sender.len(),
                capacity: s.capacity,
            })
            .collect()
    }

    fn unsubscribe(&self, id: u64) {
        let mut state = self.state.lock();
        if let Some(pos) = state.subscribers.iter().position(|s| s.id == id) {
            let sub = state.subscribers.swap_remove(pos);
            self.subscribers.fetch_sub(1, Ordering::Release);
            if sub.heartbeats {
                self.heartbeat_subscribers.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// A subscriber's end of the event stream. Dropping it unsubscribes.
///
/// ```
/// use hodei_workers::*;
/// let registry = InMemoryWorkerRegistry::new();
/// let events = registry.subscribe(SubscribeOptions::default()).unwrap();
/// let provider = ProviderId::new("docker-local").unwrap();
/// let handle = WorkerHandle::new(provider, ProviderType::Docker, "c-1");
/// registry.register(handle, WorkerSpec::new("img").into()).unwrap();
/// let event = events.try_recv().unwrap();
/// assert_eq!(event.kind.name(), "registered");
/// assert_eq!(events.dropped(), 0);
/// ```
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    receiver: Receiver<WorkerLifecycleEvent>,
    dropped: Arc<AtomicU64>,
    bus: Weak<EventBus>,
    /// Set for a subscription fed by another backend ([`Subscription::from_source`]); shared,
    /// weakly, with its [`SubscriptionMonitor`].
    source: Option<Arc<SourceFeed>>,
}

/// How long a `recv` on a backend-fed subscription whose source another thread is waiting on
/// waits on the queue before it tries the source again.
const SOURCE_BUSY_POLL: Duration = Duration::from_millis(20);

/// The parts of a backend-fed subscription: its source and the sending end of its queue.
#[derive(Debug)]
struct SourceFeed {
    source: Mutex<Box<dyn EventSource>>,
    sender: Sender<WorkerLifecycleEvent>,
    capacity: usize,
    /// The subscription's own counter.
    dropped: Arc<AtomicU64>,
}

impl SourceFeed {
    /// Lets `source` fill the queue, waiting up to `wait` for an event; `false` once it has
    /// ended.
    fn fill_with(&self, source: &mut dyn EventSource, wait: Duration) -> bool {
        source.fill(
            &EventFeed {
                sender: &self.sender,
                capacity: self.capacity,
                dropped: &self.dropped,
            },
            wait,
        )
    }
}

/// A backend's handle on one of its source-fed subscriptions, for the figures of
/// [`WorkerRegistry::subscriber_drops`](crate::WorkerRegistry::subscriber_drops): it does not
/// keep the subscription alive ([`drops`](Self::drops) answers `None` once it is dropped).
#[derive(Debug, Clone)]
pub struct SubscriptionMonitor {
    id: u64,
    feed: Weak<SourceFeed>,
}

impl SubscriptionMonitor {
    /// The subscription's id ([`Subscription::id`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the subscription still exists.
    pub fn is_live(&self) -> bool {
        self.feed.strong_count() > 0
    }

    /// The subscription's drop count, queue length and capacity, as an in-memory registry
    /// reports them; `None` once the subscription is dropped.
    ///
    /// A backend-fed subscription takes its events from its source only when it is used, so a
    /// subscriber that stopped reading would lose nothing and show nothing. So first, unless
    /// the subscriber is in a call of its own right now (which fills the queue anyway), this
    /// lets the source fill the queue without waiting, on the caller's thread, exactly as
    /// the subscriber's next call would: the events that do not fit are dropped and counted,
    /// as an in-memory registry drops them when they are published.
    pub fn drops(&self) -> Option<crate::registry::SubscriberDrops> {
        let feed = self.feed.upgrade()?;
        if let Some(mut source) = feed.source.try_lock() {
            feed.fill_with(&mut **source, Duration::ZERO);
        }
        Some(crate::registry::SubscriberDrops {
            subscriber: self.id,
            dropped: feed.dropped.load(Ordering::Relaxed),
            queued: feed.sender.len(),
            capacity: feed.capacity,
        })
    }
}

/// Where a backend-fed [`Subscription`] gets its events from: a shared-database registry
/// reading its outbox, say. The subscription calls [`fill`](EventSource::fill) (under its own
/// mutex, on the caller's thread) before it looks at its queue, so no thread is needed.
pub trait EventSource: Send + std::fmt::Debug {
    /// Moves the events that have arrived, in `seq` order, into the subscription's queue with
    /// [`EventFeed::push`]. When none has arrived, waits up to `wait` for one (zero: does not
    /// wait). Errors of the backend are the source's to retry on the next call: a subscriber
    /// never sees them. It returns within `wait` plus a bounded slack of its own, whatever the
    /// backend does: [`Subscription::recv`]'s deadline is kept within that slack (once: a
    /// `recv` whose time ran out during a fill does not fill again).
    ///
    /// Returns `false` once the source will never produce another event (its registry is
    /// gone): `recv` then returns `None` as soon as the queue is empty, as it does for a
    /// dropped in-memory registry.
    fn fill(&mut self, feed: &EventFeed<'_>, wait: Duration) -> bool;
}

/// The queue of a backend-fed subscription, as its [`EventSource`] sees it.
#[derive(Debug)]
pub struct EventFeed<'a> {
    sender: &'a Sender<WorkerLifecycleEvent>,
    capacity: usize,
    dropped: &'a AtomicU64,
}

impl EventFeed<'_> {
    /// Queues `event`; when the queue is at its capacity the event is dropped and counted in
    /// [`Subscription::dropped`] instead, as for the in-memory registry. Returns whether it
    /// was queued.
    pub fn push(&self, event: WorkerLifecycleEvent) -> bool {
        if self.sender.len() >= self.capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            // Cannot fail: the receiver lives in the same Subscription.
            self.sender.send(event).is_ok()
        }
    }

    /// Counts `n` events as dropped ([`Subscription::dropped`]) without queueing them: events
    /// the source read while it could not offer them to the queue (read ahead for a registry
    /// that was closing, beyond what the queue could hold), which an in-memory registry would
    /// have dropped when they were published.
    pub fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Events queued and not yet received.
    pub fn len(&self) -> usize {
        self.sender.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.sender.is_empty()
    }

    /// Room left in the queue before events are dropped.
    pub fn room(&self) -> usize {
        self.capacity.saturating_sub(self.sender.len())
    }
}

impl Subscription {
    /// A subscription fed by `source` instead of a registry's in-process bus: the hook by which
    /// a backend on a shared database (whose events come from other processes too) hands out
    /// the same [`Subscription`] type. `options.capacity` bounds the queue as for the in-memory
    /// registry (0 means 1); `options.heartbeats` is the source's to honour.
    ///
    /// Every method of the subscription first lets the source [`fill`](EventSource::fill) the
    /// queue, on the caller's thread, unless a call on another thread is filling it right now
    /// (its events land in the same queue: the calls that never wait do not wait for it, and a
    /// `recv` waits on the queue meanwhile); `recv` waits through the source.
    ///
    /// Its [`id`](Self::id) is 0: a backend that hands out several subscriptions and reports
    /// them ([`WorkerRegistry::subscriber_drops`](crate::WorkerRegistry::subscriber_drops))
    /// numbers them with [`from_source_with_id`](Self::from_source_with_id).
    pub fn from_source(options: SubscribeOptions, source: Box<dyn EventSource>) -> Subscription {
        Subscription::from_source_with_id(0, options, source)
    }

    /// As [`from_source`](Self::from_source), with the [`id`](Self::id) `id` (the backend
    /// keeps it unique per registry). The backend reports the subscription's drops through its
    /// [`monitor`](Self::monitor).
    pub fn from_source_with_id(
        id: u64,
        options: SubscribeOptions,
        source: Box<dyn EventSource>,
    ) -> Subscription {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let dropped = Arc::new(AtomicU64::new(0));
        Subscription {
            id,
            receiver,
            dropped: Arc::clone(&dropped),
            bus: Weak::new(),
            source: Some(Arc::new(SourceFeed {
                source: Mutex::new(source),
                sender,
                capacity: options.capacity.max(1),
                dropped,
            })),
        }
    }

    /// A handle on this subscription's queue for its backend's telemetry, if it is fed by a
    /// source ([`from_source`](Self::from_source); `None` for an in-memory registry's, which
    /// the registry reports itself).
    pub fn monitor(&self) -> Option<SubscriptionMonitor> {
        self.source.as_ref().map(|feed| SubscriptionMonitor {
            id: self.id,
            feed: Arc::downgrade(feed),
        })
    }

    /// Lets a backend's source fill the queue, waiting up to `wait` for an event; `false` once
    /// the source has ended. `None` when another call on this subscription is filling it
    /// right now (a `recv` waiting on another thread): whatever arrives goes into the same
    /// queue, so this call does not queue up behind that one's wait (up to a second), which
    /// would make a call that never waits (`try_recv`, `len`, `dropped`) wait.
    fn fill(&self, wait: Duration) -> Option<bool> {
        match &self.source {
            Some(feed) => {
                let mut source = feed.source.try_lock()?;
                Some(feed.fill_with(&mut **source, wait))
            }
            None => Some(true),
        }
    }

    /// The next event, waiting up to `timeout` (`None`: until one comes or the registry is
    /// gone). Returns `None` on timeout or when the registry was dropped and the queue is empty.
    ///
    /// A subscription fed by a backend's source returns within `timeout` plus the source's own
    /// slack on one [`fill`](EventSource::fill) (PostgreSQL: 5 s, when its server stops
    /// answering; docs/DESIGN.md §10).
    pub fn recv(&self, timeout: Option<Duration>) -> Option<WorkerLifecycleEvent> {
        if self.source.is_some() {
            return self.recv_from_source(timeout);
        }
        match timeout {
            None => self.receiver.recv().ok(),
            Some(t) => self.receiver.recv_timeout(t).ok(),
        }
    }

    fn recv_from_source(&self, timeout: Option<Duration>) -> Option<WorkerLifecycleEvent> {
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        let mut filled = false;
        loop {
            if let Ok(event) = self.receiver.try_recv() {
                return Some(event);
            }
            // The source waits in slices, so that a deadline is kept within one slice.
            let slice = match (timeout, deadline) {
                (Some(_), Some(deadline)) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        // One look at the source when none was had (a zero timeout), never
                        // a second fill past the deadline: each may take the source's slack.
                        if !filled {
                            self.fill(Duration::ZERO);
                        }
                        return self.receiver.try_recv().ok();
                    }
                    left.min(Duration::from_secs(1))
                }
                _ => Duration::from_secs(1),
            };
            filled = true;
            match self.fill(slice) {
                Some(true) => {}
                Some(false) => return self.receiver.try_recv().ok(),
                // Another thread waits on the source: what it moves lands in this queue too.
                // Briefly, then the source is tried again (that thread may be gone by then).
                None => {
                    if let Ok(event) = self.receiver.recv_timeout(slice.min(SOURCE_BUSY_POLL)) {
                        return Some(event);
                    }
                }
            }
        }
    }

    /// The next event if one is queued; never waits.
    pub fn try_recv(&self) -> Option<WorkerLifecycleEvent> {
        self.fill(Duration::ZERO);
        self.receiver.try_recv().ok()
    }

    /// Every event queued now; never waits.
    pub fn drain(&self) -> Vec<WorkerLifecycleEvent> {
        self.fill(Duration::ZERO);
        self.receiver.try_iter().collect()
    }

    /// This subscription's id: unique per registry, the `subscriber` label of the event-drop
    /// metric ([`SubscriberDrops`](crate::SubscriberDrops)).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How many events were dropped for this subscriber because its channel was full.
    pub fn dropped(&self) -> u64 {
        self.fill(Duration::ZERO);
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events queued and not yet received.
    pub fn len(&self) -> usize {
        self.fill(Duration::ZERO);
        self.receiver.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.fill(Duration::ZERO);
        self.receiver.is_empty()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            bus.unsubscribe(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{ProviderError, ProviderErrorKind};
    use std::sync::{mpsc, Condvar};

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

    /// Released by the test: until then, a fill that may wait holds its caller.
    #[derive(Debug, Default)]
    struct Gate {
        /// (a fill is waiting, released)
        state: std::sync::Mutex<(bool, bool)>,
        changed: Condvar,
    }

    impl Gate {
        fn wait_holding(&self) {
            let mut state = self.state.lock().unwrap();
            while !state.0 {
                state = self.changed.wait(state).unwrap();
            }
        }

        fn release(&self) {
            self.state.lock().unwrap().1 = true;
            self.changed.notify_all();
        }
    }

    /// A source whose waiting fills wait for the gate (a database that has nothing new yet),
    /// then deliver one event.
    #[derive(Debug)]
    struct HeldSource(Arc<Gate>);

    impl EventSource for HeldSource {
        fn fill(&mut self, feed: &EventFeed<'_>, wait: Duration) -> bool {
            if !wait.is_zero() {
                let mut state = self.0.state.lock().unwrap();
                state.0 = true;
                self.0.changed.notify_all();
                while !state.1 {
                    state = self.0.changed.wait(state).unwrap();
                }
                feed.push(WorkerLifecycleEvent {
                    seq: 1,
                    at: 0,
                    kind: EventKind::ProvisionRequested {
                        provider_id: ProviderId::new("p").unwrap(),
                    },
                });
            }
            true
        }
    }

    /// A source whose fills take all the time they are given and deliver nothing (a backend
    /// whose server does not answer), counting them.
    #[derive(Debug)]
    struct SlowSource(Arc<std::sync::atomic::AtomicUsize>);

    impl EventSource for SlowSource {
        fn fill(&mut self, _feed: &EventFeed<'_>, wait: Duration) -> bool {
            self.0.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(wait);
            true
        }
    }

    /// A `recv` whose time ran out during a fill returns: it does not fill once more past its
    /// deadline (a second wait of the source's slack, up to 5 s more on PostgreSQL when its
    /// server stops answering). A zero timeout still looks at the source once.
    #[test]
    fn a_recv_whose_time_ran_out_in_a_fill_does_not_fill_again() {
        let fills = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let subscription = Subscription::from_source(
            SubscribeOptions::default(),
            Box::new(SlowSource(Arc::clone(&fills))),
        );
        assert_eq!(subscription.recv(Some(Duration::from_millis(30))), None);
        assert_eq!(
            fills.load(Ordering::Relaxed),
            1,
            "one fill, of the whole timeout"
        );
        assert_eq!(subscription.recv(Some(Duration::ZERO)), None);
        assert_eq!(
            fills.load(Ordering::Relaxed),
            2,
            "a zero timeout fills once"
        );
    }

    /// A source-fed subscription shared by two threads: one waits in `recv`; the other's
    /// calls that never wait (`try_recv`, `drain`, `len`, `dropped`, `is_empty`) and its
    /// `recv` with a short timeout must answer, not queue up behind the waiter's fill.
    #[test]
    fn a_waiting_recv_does_not_hold_up_the_other_threads_calls() {
        let gate = Arc::new(Gate::default());
        let subscription = Arc::new(Subscription::from_source(
            SubscribeOptions::default(),
            Box::new(HeldSource(Arc::clone(&gate))),
        ));
        let waiter = {
            let subscription = Arc::clone(&subscription);
            std::thread::spawn(move || subscription.recv(None))
        };
        gate.wait_holding();
        let (done, finished) = mpsc::channel();
        let other = {
            let subscription = Arc::clone(&subscription);
            std::thread::spawn(move || {
                let answers = (
                    subscription.try_recv(),
                    subscription.drain(),
                    subscription.len(),
                    subscription.dropped(),
                    subscription.is_empty(),
                    subscription.recv(Some(Duration::from_millis(20))),
                );
                let _ = done.send(answers);
            })
        };
        // A deadlock detector, not a timing: the waiter is held until released below.
        let answers = finished.recv_timeout(Duration::from_secs(10));
        gate.release();
        let got = waiter.join().unwrap();
        other.join().unwrap();
        assert_eq!(
            answers,
            Ok((None, Vec::new(), 0, 0, true, None)),
            "the other thread's calls waited for the waiter's fill"
        );
        assert_eq!(got.map(|e| e.seq), Some(1), "the waiter gets its event");
    }
}
