//! `claim` is atomic: racing other calls on the same job or on its candidates, it answers as
//! at one moment, so never "no worker" (`Ok(None)`) while a matching `Ready` worker stays free.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use super::{job, ready, setup, T0};
use hodei_workers::*;

#[test]
fn claim_racing_a_release_of_the_same_job_is_either_refused_or_served() {
    // The job is held while it is being released: the claim sees it held (JobAlreadyAssigned)
    // or free (a worker). Never "no worker": 20 spare workers match all along.
    let (_clock, registry) = setup();
    let holder = ready(&*registry);
    for _ in 0..20 {
        ready(&*registry);
    }
    let (mut served, mut refused) = (0, 0);
    let rounds = crate::common::scaled(300, 100);
    for round in 0..rounds {
        let job = job(&format!("j{round}"));
        registry.assign_to_job(&holder, job.clone()).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let releaser = {
            let (registry, barrier, job) = (registry.clone(), barrier.clone(), job.clone());
            thread::spawn(move || {
                barrier.wait();
                registry.release_from_job(&holder, Some(&job)).unwrap();
            })
        };
        barrier.wait();
        match registry.claim(&WorkerFilter::new(), job.clone()) {
            Ok(Some(w)) => {
                served += 1;
                releaser.join().unwrap();
                registry.release_from_job(&w.id, Some(&job)).unwrap();
            }
            Err(Error::JobAlreadyAssigned { worker_id, .. }) => {
                refused += 1;
                assert_eq!(worker_id, holder, "round {round}");
                releaser.join().unwrap();
            }
            other => panic!("round {round}: 21 workers match, the job is held or free: {other:?}"),
        }
    }
    assert_eq!(served + refused, rounds);
    assert_eq!(registry.stats().unwrap().by_state.ready, 21);
}

#[test]
fn claim_is_not_turned_away_by_calls_that_change_nothing_on_its_only_candidate() {
    // Another thread keeps looking at the only worker with calls that leave it as it is: a
    // guard that does not hold, a move to the state it is in, a refused move, an event about
    // it. A claim still takes it every time.
    let (_clock, registry) = setup();
    let only = ready(&*registry);
    let stop = Arc::new(AtomicBool::new(false));
    let looker = {
        let (registry, stop) = (registry.clone(), stop.clone());
        thread::spawn(move || {
            // Never holds: the worker is Ready or Busy, never Creating again.
            let never = TransitionGuard::new().in_state(WorkerState::Creating);
            let mut calls = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match calls % 4 {
                    0 => {
                        let moved = registry.transition_if(&only, &never, WorkerState::Terminating);
                        assert!(matches!(moved, Ok(None)), "{moved:?}");
                    }
                    1 => {
                        // Ready -> Ready is a no-op; Busy -> Ready with a job is refused.
                        let _ = registry.update_state(&only, WorkerState::Ready);
                    }
                    2 => {
                        let refused = registry.update_state(&only, WorkerState::Creating);
                        assert!(
                            matches!(refused, Err(Error::InvalidTransition { .. })),
                            "{refused:?}"
                        );
                    }
                    _ => registry
                        .publish(EventKind::UnhealthyDetected {
                            worker_id: only,
                            last_heartbeat: T0,
                        })
                        .unwrap(),
                }
                calls += 1;
            }
        })
    };
    let claims = crate::common::scaled(300, 100);
    let mut turned_away = 0;
    for round in 0..claims {
        let job = job(&format!("k{round}"));
        match registry.claim(&WorkerFilter::new(), job.clone()).unwrap() {
            Some(w) => {
                assert_eq!(w.id, only);
                registry.release_from_job(&only, Some(&job)).unwrap();
            }
            None => turned_away += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    looker.join().unwrap();
    assert_eq!(
        turned_away, 0,
        "{turned_away} of {claims} claims said no worker while the only worker was Ready"
    );
}
