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

#[test]
fn event_times_and_record_times_never_go_backwards_in_seq_order() {
    let clock = Arc::new(GatedClock::default());
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let a = register(&*registry);
    let b = register(&*registry);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();

    // Thread A reads the time for its change, then stalls; B changes another worker meanwhile.
    let slow = {
        let (registry, clock) = (registry.clone(), clock.clone());
        thread::spawn(move || {
            clock.arm(thread::current().id());
            registry.update_state(&a, WorkerState::Ready).unwrap()
        })
    };
    clock.wait_holding();
    let fast = registry.update_state(&b, WorkerState::Ready).unwrap();
    clock.release();
    let slow = slow.join().unwrap();

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

#[test]
fn a_host_event_published_while_a_change_is_under_way_does_not_shift_its_time() {
    // The host publishes an event of its own (`publish`, as the manager does for a provision)
    // while another thread's change has read its time but not yet published: the change's
    // event must still carry the time its record keeps (invariant 6), so the host's event,
    // whose time is read later, must come after it in seq order, not before.
    let clock = Arc::new(GatedClock::default());
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let a = register(&*registry);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let slow = {
        let (registry, clock) = (registry.clone(), clock.clone());
        thread::spawn(move || {
            clock.arm(thread::current().id());
            registry.update_state(&a, WorkerState::Ready).unwrap()
        })
    };
    clock.wait_holding();
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: ProviderId::new("p").unwrap(),
        })
        .unwrap();
    clock.release();
    let slow = slow.join().unwrap();

    let got = events.drain();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.windows(2).all(|p| p[0].at <= p[1].at),
        "event times go backwards: {got:?}"
    );
    let changed = got
        .iter()
        .find(|e| e.kind.worker_id() == Some(a))
        .expect("the change's event");
    assert_eq!(
        changed.at, slow.state_changed_at,
        "the change's event carries its record's time: {got:?}"
    );
}
