//! The in-memory registry's fan-out of its events: one bounded queue a subscriber, filled
//! under one mutex so that every subscriber sees the events in `seq` order, and no work at all
//! (one atomic increment) while nobody subscribes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use super::{EventKind, SubscribeOptions, Subscription, WorkerLifecycleEvent};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::ids::WorkerId;

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
        Ok(Subscription::on_bus(
            id,
            receiver,
            dropped,
            Arc::downgrade(self),
        ))
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

    /// Removes subscriber `id` (a [`Subscription`] being dropped); nothing when it is gone.
    pub(super) fn unsubscribe(&self, id: u64) {
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
