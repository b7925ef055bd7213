//! Tests of this binary that the other backends do not include: they exercise no registry
//! backend at all (the clock), or what only the in-memory registry has. Everything about
//! behaviour that a `WorkerRegistry` promises belongs in the shared modules instead.

use std::sync::Arc;

use hodei_workers::*;

// The clock, not a registry: the same for every backend, so it runs here only.
#[test]
fn system_clock_never_goes_backwards_across_threads() {
    use std::sync::Mutex;
    let clock = Arc::new(SystemClock::new());
    // Each thread checks its own readings, and every reading is also checked against the
    // latest one of any thread, taken under one lock: the order the lock imposes is a real
    // order in time, so a reading may never be below one taken before it.
    let latest = Arc::new(Mutex::new(clock.now()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let clock = Arc::clone(&clock);
            let latest = Arc::clone(&latest);
            std::thread::spawn(move || {
                let mut own = 0;
                for i in 0..20_000 {
                    let now = clock.now();
                    assert!(now >= own, "a thread's clock went back: {own} -> {now}");
                    own = now;
                    if i % 16 == 0 {
                        let mut last = latest.lock().unwrap();
                        let now = clock.now();
                        assert!(now >= *last, "clock went back: {} -> {now}", *last);
                        *last = now;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Shared by copy too: two copies of one clock agree on the order.
    let copy = *clock;
    let a = clock.now();
    let b = copy.now();
    assert!(b >= a);
}
