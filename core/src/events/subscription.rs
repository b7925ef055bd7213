//! The subscriber's end of the event stream, [`Subscription`]: fed by the in-memory
//! registry's bus, or by another backend's [`EventSource`] (a shared database's outbox) on the
//! caller's thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::{EventBus, WorkerLifecycleEvent};

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
    /// A subscription to the in-memory bus (`EventBus::subscribe`), whose subscriber `id`
    /// sends into `receiver`'s channel: dropping it unsubscribes from `bus`.
    pub(super) fn on_bus(
        id: u64,
        receiver: Receiver<WorkerLifecycleEvent>,
        dropped: Arc<AtomicU64>,
        bus: Weak<EventBus>,
    ) -> Subscription {
        Subscription {
            id,
            receiver,
            dropped,
            bus,
            source: None,
        }
    }

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
    use crate::events::EventKind;
    use crate::ids::ProviderId;
    use std::sync::{mpsc, Condvar};

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
