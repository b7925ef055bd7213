//! Item 8: timestamps follow the event order (a clock that holds a thread mid-reading).

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::{register, T0};
use hodei_workers::*;

/// A clock that ticks one millisecond per reading and, once armed for a thread, holds that
/// thread's next reading (after taking its value) until released or for `HOLD` at most: it
/// reproduces "the time was read, then the thread was descheduled".
#[derive(Debug, Default)]
struct GatedClock {
    now: std::sync::atomic::AtomicU64,
    gate: std::sync::Mutex<Gate>,
    changed: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct Gate {
    armed_for: Option<thread::ThreadId>,
    /// Held until released, however long (for a test whose other thread never needs the
    /// registry's locks while the armed one holds them).
    unbounded: bool,
    holding: bool,
    released: bool,
}

const HOLD: Duration = Duration::from_millis(300);

impl GatedClock {
    fn arm(&self, thread: thread::ThreadId) {
        *self.gate.lock().unwrap() = Gate {
            armed_for: Some(thread),
            ..Gate::default()
        };
    }

    /// As [`arm`](Self::arm), and the reading is held until [`release`](Self::release),
    /// without the `HOLD` bound.
    fn arm_until_released(&self, thread: thread::ThreadId) {
        *self.gate.lock().unwrap() = Gate {
            armed_for: Some(thread),
            unbounded: true,
            ..Gate::default()
        };
    }

    /// Waits until the armed thread is held in a reading.
    fn wait_holding(&self) {
        let mut gate = self.gate.lock().unwrap();
        while !gate.holding {
            gate = self.changed.wait(gate).unwrap();
        }
    }

    fn release(&self) {
        self.gate.lock().unwrap().released = true;
        self.changed.notify_all();
    }
}

impl Clock for GatedClock {
    fn now(&self) -> Timestamp {
        let t = T0 + self.now.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut gate = self.gate.lock().unwrap();
        if gate.armed_for == Some(thread::current().id()) {
            gate.armed_for = None;
            gate.holding = true;
            self.changed.notify_all();
            if gate.unbounded {
                drop(self.changed.wait_while(gate, |g| !g.released).unwrap());
                return t;
            }
            // Bounded: when the registry reads the time under its lock, the other thread
            // cannot finish (and release us) until we do.
            let _ = self
                .changed
                .wait_timeout_while(gate, HOLD, |g| !g.released)
                .unwrap();
        }
        t
    }
}

/// Moves `a` to `Ready` on another thread, which stalls right after reading its time; runs
/// `meanwhile` while it is held there, then lets it go. The worker as the move left it.
fn stalled_change(
    registry: &Arc<dyn WorkerRegistry>,
    clock: &Arc<GatedClock>,
    a: WorkerId,
    meanwhile: impl FnOnce(),
) -> Worker {
    let slow = {
        let (registry, clock) = (registry.clone(), clock.clone());
        thread::spawn(move || {
            clock.arm(thread::current().id());
            registry.update_state(&a, WorkerState::Ready).unwrap()
        })
    };
    clock.wait_holding();
    meanwhile();
    clock.release();
    slow.join().unwrap()
}

#[test]
fn event_times_and_record_times_never_go_backwards_in_seq_order() {
    let clock = Arc::new(GatedClock::default());
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let a = register(&*registry);
    let b = register(&*registry);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();

    // Thread A reads the time for its change, then stalls; B changes another worker meanwhile.
    let mut fast = None;
    let slow = stalled_change(&registry, &clock, a, || {
        fast = Some(registry.update_state(&b, WorkerState::Ready).unwrap());
    });
    let fast = fast.unwrap();

    let got = events.drain();
    assert_eq!(got.len(), 2);
    assert!(
        got.windows(2).all(|p| p[0].at <= p[1].at),
        "event times go backwards: {got:?}"
    );
    // The records' times agree with the order of their events.
    let (first, second) = if got[0].kind.worker_id() == Some(a) {
        (&slow, &fast)
    } else {
        (&fast, &slow)
    };
    assert!(first.updated_at <= second.updated_at);
    assert!(first.idle_since <= second.idle_since);
    for (event, worker) in got.iter().zip([first, second]) {
        assert_eq!(event.at, worker.state_changed_at);
    }
}

/// An in-memory registry on a gated clock with two workers, `a` `Creating` and `b` `Ready`, and
/// a subscription that wants heartbeat events.
fn two_workers_heard_on_a_gated_clock() -> (
    Arc<GatedClock>,
    Arc<dyn WorkerRegistry>,
    WorkerId,
    WorkerId,
    Subscription,
) {
    let clock = Arc::new(GatedClock::default());
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let a = register(&*registry);
    let b = register(&*registry);
    registry.update_state(&b, WorkerState::Ready).unwrap();
    let events = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    (clock, registry, a, b, events)
}

/// A change reads its time under the lock that orders the registry's changes, then stalls
/// before its events are numbered; an event that does not change a record (the host's, the
/// manager's, a heartbeat's) is published meanwhile with a later time. The change's event must
/// still carry the time its record keeps: either the other event waits for the change, or the
/// other event's time is not later.
fn a_stalled_change_keeps_its_time(publish_other: impl FnOnce(&dyn WorkerRegistry, WorkerId)) {
    let (clock, registry, a, b, events) = two_workers_heard_on_a_gated_clock();

    let slow = stalled_change(&registry, &clock, a, || publish_other(&*registry, b));

    let got = events.drain();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.windows(2).all(|p| p[0].at <= p[1].at),
        "event times go backwards: {got:?}"
    );
    let changed = got
        .iter()
        .find(|e| matches!(e.kind, EventKind::StateChanged { worker_id, .. } if worker_id == a))
        .expect("the change's event");
    assert_eq!(
        changed.at, slow.state_changed_at,
        "the event of a change carries another time than its record: {got:?}, record {slow:?}"
    );
}

#[test]
fn a_host_event_published_during_a_change_does_not_restamp_the_change() {
    a_stalled_change_keeps_its_time(|registry, _| {
        registry
            .publish(EventKind::ProvisionRequested {
                provider_id: ProviderId::new("p").unwrap(),
            })
            .unwrap();
    });
}

#[test]
fn a_host_event_about_a_worker_published_during_a_change_does_not_restamp_the_change() {
    a_stalled_change_keeps_its_time(|registry, b| {
        registry
            .publish(EventKind::UnhealthyDetected {
                worker_id: b,
                last_heartbeat: T0,
            })
            .unwrap();
    });
}

#[test]
fn a_heartbeat_event_published_during_a_change_does_not_restamp_the_change() {
    a_stalled_change_keeps_its_time(|registry, b| registry.heartbeat(&b).unwrap());
}

/// A heartbeat reads its time, then stalls; a change of another worker reads a later time and
/// publishes meanwhile. The heartbeat's event cannot carry its own earlier time (`at` never
/// decreases along `seq`): it carries the change's. Invariant 6 asks the record to keep the
/// `at` of its event, so the worker's `last_heartbeat` is that same time. Before, the column
/// kept the raw reading, a millisecond before the event's `at`.
#[test]
fn a_heartbeat_stalled_behind_a_change_keeps_the_time_of_its_event() {
    let (clock, registry, a, b, events) = two_workers_heard_on_a_gated_clock();

    let slow = {
        let (registry, clock) = (registry.clone(), clock.clone());
        thread::spawn(move || {
            // Held until released: it holds no lock while reading the time.
            clock.arm_until_released(thread::current().id());
            registry.heartbeat(&b).unwrap()
        })
    };
    clock.wait_holding();
    let moved = registry.update_state(&a, WorkerState::Ready).unwrap();
    clock.release();
    slow.join().unwrap();

    let got = events.drain();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.windows(2).all(|p| p[0].at <= p[1].at),
        "event times go backwards: {got:?}"
    );
    let beat = got
        .iter()
        .find(|e| matches!(e.kind, EventKind::HeartbeatReceived { .. }))
        .expect("the heartbeat's event");
    let kept = registry.get(&b).unwrap().unwrap().last_heartbeat;
    assert_eq!(
        beat.at, kept,
        "the heartbeat's event carries another time than its worker keeps: {got:?}"
    );
    assert!(
        kept >= moved.state_changed_at,
        "the heartbeat's event follows the change's, so its time is not earlier: {got:?}"
    );
}

/// The last heartbeat subscriber leaves while a heartbeat that saw it waits for the lock that
/// orders events (held by a host's `publish` stalled in its clock reading). The heartbeat is
/// then heard by nobody, so it must not take a seq: a plain subscriber would see a gap that
/// neither its `dropped()` nor any heartbeat subscriber explains. Before, the check for
/// heartbeat subscribers was made before that lock and never again.
#[test]
fn a_heartbeat_whose_last_listener_left_while_it_waited_takes_no_seq() {
    let clock = Arc::new(GatedClock::default());
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let b = register(&*registry);
    let plain = registry.subscribe(SubscribeOptions::default()).unwrap();
    let keen = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    let before = registry.get(&b).unwrap().unwrap().last_heartbeat;
    let provision = || EventKind::ProvisionRequested {
        provider_id: ProviderId::new("p").unwrap(),
    };

    // A host's event reads its time under the registry-wide mutex, holding no shard lock,
    // and is held there until released (no time bound: nothing below needs that mutex).
    let host = {
        let (registry, clock) = (registry.clone(), clock.clone());
        thread::spawn(move || {
            clock.arm_until_released(thread::current().id());
            registry.publish(provision()).unwrap()
        })
    };
    clock.wait_holding();
    let beat = {
        let registry = registry.clone();
        thread::spawn(move || registry.heartbeat(&b).unwrap())
    };
    // The old code stored the heartbeat, then checked for heartbeat subscribers, then waited
    // for the mutex: wait until the heartbeat is stored (never, on the new code, which stores
    // it under that mutex; there this only gives the thread time to reach it).
    let start = std::time::Instant::now();
    while registry.get(&b).unwrap().unwrap().last_heartbeat == before
        && start.elapsed() < Duration::from_millis(200)
    {
        thread::yield_now();
    }
    drop(keen);
    clock.release();
    host.join().unwrap();
    beat.join().unwrap();
    registry.publish(provision()).unwrap();

    let got = plain.drain();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[1].seq,
        got[0].seq + 1,
        "a seq gap no subscriber explains (dropped: {}): {got:?}",
        plain.dropped()
    );
}
