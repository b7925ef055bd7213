//! Deadlines on a [`ManualClock`]: a worker expires when `now - start > timeout`, strictly
//! (DESIGN.md §3). Each test sweeps the clock over every deadline of a varied fleet, stopping
//! one millisecond before, at, and one millisecond after each, and compares what the deadline
//! indexes report with a brute-force recomputation from the records.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use hodei_workers::*;

const MS: Duration = Duration::from_millis(1);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The instants around a deadline: one millisecond before, at, one millisecond after.
fn around(deadline: Timestamp) -> [Timestamp; 3] {
    [deadline - 1, deadline, deadline + 1]
}

/// Moves the clock to `at`, which must not be in the past.
fn goto(clock: &ManualClock, at: Timestamp) {
    assert_eq!(clock.set(at), at, "the sweep must only move forward");
}

/// The workers `find_unhealthy(timeout)` reports now, checked against
/// `count_unhealthy(timeout)`, which must count exactly as many (the backend's own count: the
/// lifecycle manager's brake decides on it).
fn unhealthy(registry: &dyn WorkerRegistry, timeout: Duration) -> BTreeSet<WorkerId> {
    let found = id_set(&registry.find_unhealthy(timeout).unwrap());
    assert_eq!(
        registry.count_unhealthy(timeout).unwrap(),
        found.len(),
        "count_unhealthy({timeout:?}) against find_unhealthy at T0+{} ms",
        registry.now() - T0
    );
    found
}

/// A varied fleet: every state, registrations and heartbeats spread over ten seconds, each at
/// an odd millisecond so that deadlines do not all coincide.
fn fleet(clock: &ManualClock, registry: &dyn WorkerRegistry) -> Vec<WorkerId> {
    use WorkerState::*;
    let states = [
        Creating,
        Connecting,
        Ready,
        Busy,
        Draining,
        Terminating,
        Terminated,
    ];
    let mut ids = Vec::new();
    for i in 0..28u64 {
        clock.advance(Duration::from_millis(137 + i * 11));
        let state = states[(i % 7) as usize];
        let job_name = format!("job-{i}");
        let with_job = (state == Busy || (state == Draining && i % 2 == 0)).then_some(&*job_name);
        ids.push(in_state(registry, state, with_job));
    }
    // Heartbeats for some, a few milliseconds apart.
    for (i, id) in ids.iter().enumerate() {
        if i % 3 != 0 {
            clock.advance(Duration::from_millis(7 + i as u64));
            registry.heartbeat(id).unwrap();
        }
    }
    ids
}

#[test]
fn heartbeat_deadline_is_exact_and_lazy_rechecks_revive_workers() {
    let (clock, registry) = registry();
    let ids = fleet(&clock, &registry);
    let all = assert_invariants(&registry);
    let mut instants: BTreeSet<Timestamp> = all
        .iter()
        .flat_map(|w| around(w.last_heartbeat + ms(HEARTBEAT_TIMEOUT)))
        .collect();
    let mut revived = BTreeSet::new();
    let mut checked = 0;
    while let Some(at) = instants.pop_first() {
        goto(&clock, at);
        let all = registry.find(&WorkerFilter::new()).unwrap();
        let expected = expected_unhealthy(&all, at, HEARTBEAT_TIMEOUT, 0);
        let found = registry.find_unhealthy(HEARTBEAT_TIMEOUT).unwrap();
        assert_eq!(id_set(&found), expected, "at T0+{} ms", at - T0);
        assert_eq!(
            registry.count_unhealthy(HEARTBEAT_TIMEOUT).unwrap(),
            expected.len(),
            "count_unhealthy at T0+{} ms",
            at - T0
        );
        for w in &found {
            assert_eq!(registry.get(&w.id).unwrap().as_ref(), Some(w));
        }
        // Asking again changes nothing (a held-back health check finds them again), and the
        // filter form agrees.
        assert_eq!(unhealthy(&registry, HEARTBEAT_TIMEOUT), expected);
        let monitored = [
            WorkerState::Connecting,
            WorkerState::Ready,
            WorkerState::Busy,
            WorkerState::Draining,
        ];
        assert_eq!(
            id_set(
                &registry
                    .find(
                        &WorkerFilter::new()
                            .states(monitored)
                            .unhealthy_for(HEARTBEAT_TIMEOUT)
                    )
                    .unwrap()
            ),
            expected
        );
        checked += 1;
        // A late heartbeat takes a due worker out at once (the index entry is re-checked
        // against the live heartbeat), and its next deadline counts from the heartbeat.
        for w in found {
            if revived.insert(w.id) {
                registry.heartbeat(&w.id).unwrap();
                assert!(!unhealthy(&registry, HEARTBEAT_TIMEOUT).contains(&w.id));
                instants.extend(around(at + ms(HEARTBEAT_TIMEOUT)));
            }
        }
    }
    // Every monitored worker expired and was revived once; the others never expired.
    let monitored: BTreeSet<WorkerId> = ids
        .iter()
        .copied()
        .filter(|id| {
            registry
                .get(id)
                .unwrap()
                .unwrap()
                .state
                .heartbeat_monitored()
        })
        .collect();
    assert_eq!(revived, monitored);
    assert_eq!(monitored.len(), 16);
    assert!(checked > 3 * 16);
    assert_eq!(
        unhealthy(&registry, HEARTBEAT_TIMEOUT),
        monitored,
        "silent since their revival"
    );
    assert_invariants(&registry);
}

#[test]
fn heartbeat_deadline_holds_for_any_timeout_asked() {
    // The index is keyed by heartbeat, not by deadline: a shorter timeout after a longer one
    // (or the reverse) still finds exactly who is due.
    let (clock, registry) = registry();
    fleet(&clock, &registry);
    clock.advance(secs(5));
    for timeout_ms in [9_000, 4_000, 20_000, 1, 6_500, 6_499, 6_501, 0] {
        let timeout = Duration::from_millis(timeout_ms);
        let all = registry.find(&WorkerFilter::new()).unwrap();
        assert_eq!(
            unhealthy(&registry, timeout),
            expected_unhealthy(&all, clock.now(), timeout, 0),
            "timeout {timeout_ms} ms"
        );
    }
    assert_eq!(
        registry.find_unhealthy(secs(1_000_000_000)),
        Ok(vec![]),
        "a timeout longer than the epoch"
    );
    assert_eq!(registry.count_unhealthy(secs(1_000_000_000)), Ok(0));
}

#[test]
fn startup_deadline_is_exact() {
    let (clock, registry) = registry();
    let ids = fleet(&clock, &registry);
    // One starting worker reaches Ready in the middle of the sweep: it leaves the index.
    let late_ready = ids
        .iter()
        .copied()
        .rev()
        .find(|id| registry.get(id).unwrap().unwrap().state == WorkerState::Connecting)
        .unwrap();
    let all = assert_invariants(&registry);
    let instants: BTreeSet<Timestamp> = all
        .iter()
        .flat_map(|w| around(w.created_at + ms(STARTUP_TIMEOUT)))
        .collect();
    let mut ever_expired = BTreeSet::new();
    for (n, at) in instants.into_iter().enumerate() {
        goto(&clock, at);
        if n == 10 {
            registry
                .update_state(&late_ready, WorkerState::Ready)
                .unwrap();
        }
        let all = registry.find(&WorkerFilter::new()).unwrap();
        let expected = expected_startup_expired(&all, at, STARTUP_TIMEOUT, 0);
        let found = registry.find_startup_expired(STARTUP_TIMEOUT).unwrap();
        assert_eq!(id_set(&found), expected, "at T0+{} ms", at - T0);
        ever_expired.extend(expected);
    }
    assert_eq!(
        ever_expired.len(),
        7,
        "4 creating + 4 connecting, one of which got ready"
    );
    assert!(!ever_expired.contains(&late_ready));
}

#[test]
fn idle_and_lifetime_deadlines_are_exact_and_heartbeats_do_not_reset_idle() {
    let (clock, registry) = registry();
    let mut ids = Vec::new();
    for i in 0..24u64 {
        clock.advance(Duration::from_millis(101 + i * 13));
        let spec = Arc::new(
            WorkerSpec::new("img")
                .with_idle_timeout(Duration::from_millis(7_000 + i * 257))
                .with_max_lifetime(Duration::from_millis(12_000 + i * 311)),
        );
        let id = register(&registry, spec);
        if i % 6 != 5 {
            registry.update_state(&id, WorkerState::Ready).unwrap();
        }
        if i % 4 == 1 && i % 6 != 5 {
            registry.assign_to_job(&id, job(&format!("j{i}"))).unwrap();
        }
        ids.push(id);
    }
    let deadlines = |all: &[Worker]| -> BTreeSet<Timestamp> {
        all.iter()
            .flat_map(|w| {
                let mut v = around(w.created_at + ms(w.spec.max_lifetime)).to_vec();
                if let Some(since) = w.idle_since {
                    v.extend(around(since + ms(w.spec.idle_timeout)));
                }
                v
            })
            .collect()
    };
    let mut instants = deadlines(&assert_invariants(&registry));
    let mut released = BTreeSet::new();
    let mut seen: std::collections::HashMap<TerminationReason, usize> = Default::default();
    while let Some(at) = instants.pop_first() {
        goto(&clock, at);
        // Heartbeats everywhere, all the time: they must not keep anyone from idling out.
        for id in &ids {
            registry.heartbeat(id).unwrap();
        }
        let all = registry.find(&WorkerFilter::new()).unwrap();
        let expected = expected_termination(&all, at);
        assert_eq!(termination_map(&registry), expected, "at T0+{} ms", at - T0);
        for r in expected.values() {
            *seen.entry(*r).or_default() += 1;
        }
        // Half-way, the busy workers finish their jobs: their idle clock starts now.
        if at >= T0 + 10_000 {
            for w in all.iter().filter(|w| w.state == WorkerState::Busy) {
                if released.insert(w.id) {
                    registry.release_from_job(&w.id, None).unwrap();
                    let idle_since = registry.get(&w.id).unwrap().unwrap().idle_since;
                    assert_eq!(idle_since, Some(at));
                    instants.extend(around(at + ms(w.spec.idle_timeout)));
                }
            }
        }
    }
    assert!(!released.is_empty());
    assert!(seen[&TerminationReason::Idle] > 0, "{seen:?}");
    assert!(seen[&TerminationReason::Lifetime] > 0, "{seen:?}");
    assert_eq!(
        termination_map(&registry).len(),
        ids.len(),
        "in the end everyone is past its lifetime"
    );
    assert_invariants(&registry);
}

#[test]
fn a_busy_worker_past_its_lifetime_is_reported_until_drained() {
    let (clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img").with_max_lifetime(secs(10)));
    let id = ready(&registry, spec);
    registry.assign_to_job(&id, job("long")).unwrap();
    clock.advance(secs(10));
    assert_eq!(
        termination_map(&registry),
        BTreeMap::new(),
        "exactly at the deadline"
    );
    clock.advance(MS);
    assert_eq!(
        termination_map(&registry),
        BTreeMap::from([(id, TerminationReason::Lifetime)])
    );
    registry.update_state(&id, WorkerState::Draining).unwrap();
    assert_eq!(
        termination_map(&registry),
        BTreeMap::new(),
        "draining with its job"
    );
    registry.release_from_job(&id, Some(&job("long"))).unwrap();
    assert_eq!(
        termination_map(&registry),
        BTreeMap::from([(id, TerminationReason::Drained)])
    );
}

#[test]
fn grant_grace_gives_everyone_a_fresh_period() {
    let (clock, registry) = registry();
    fleet(&clock, &registry);
    // The host stalls for ten heartbeat timeouts.
    clock.advance(HEARTBEAT_TIMEOUT * 10);
    let all = registry.find(&WorkerFilter::new()).unwrap();
    let everyone_silent = expected_unhealthy(&all, clock.now(), HEARTBEAT_TIMEOUT, 0);
    let everyone_starting = expected_startup_expired(&all, clock.now(), STARTUP_TIMEOUT, 0);
    assert_eq!(everyone_silent.len(), 16);
    assert_eq!(everyone_starting.len(), 8);
    // Some workers were found due before the grace (their entries were re-filed).
    assert_eq!(unhealthy(&registry, HEARTBEAT_TIMEOUT).len(), 16);

    let floor = clock.now();
    registry.grant_grace(floor).unwrap();
    registry.grant_grace(floor - 5_000).unwrap(); // an older floor does not lower it
    let chatty: Vec<WorkerId> = everyone_silent.iter().copied().step_by(2).collect();
    clock.advance(secs(30));
    for id in &chatty {
        registry.heartbeat(id).unwrap();
    }
    let check = |expect_silent: usize, expect_starting: usize| {
        let now = clock.now();
        let all = registry.find(&WorkerFilter::new()).unwrap();
        let silent = expected_unhealthy(&all, now, HEARTBEAT_TIMEOUT, floor);
        let starting = expected_startup_expired(&all, now, STARTUP_TIMEOUT, floor);
        assert_eq!(unhealthy(&registry, HEARTBEAT_TIMEOUT), silent);
        // Shorter and longer timeouts than the manager's, on the same floor (the brake counts
        // at half the timeout).
        for timeout in [HEARTBEAT_TIMEOUT / 2, secs(1), HEARTBEAT_TIMEOUT * 2] {
            assert_eq!(
                unhealthy(&registry, timeout),
                expected_unhealthy(&all, now, timeout, floor),
                "timeout {timeout:?}"
            );
        }
        // The filter speaks of heartbeats, not deadlines: a grace moves no `last_heartbeat`
        // (it is not a sign of life), so `unhealthy_for` judges the silence as the records
        // show it, as `WorkerFilter::matches` does on a snapshot.
        let monitored = [
            WorkerState::Connecting,
            WorkerState::Ready,
            WorkerState::Busy,
            WorkerState::Draining,
        ];
        let by_filter = id_set(
            &registry
                .find(
                    &WorkerFilter::new()
                        .states(monitored)
                        .unhealthy_for(HEARTBEAT_TIMEOUT),
                )
                .unwrap(),
        );
        assert_eq!(
            by_filter,
            expected_unhealthy(&all, now, HEARTBEAT_TIMEOUT, 0),
            "unhealthy_for ignores the grace floor"
        );
        assert_eq!(
            by_filter,
            id_set(
                &all.iter()
                    .filter(|w| WorkerFilter::new()
                        .states(monitored)
                        .unhealthy_for(HEARTBEAT_TIMEOUT)
                        .matches(w, now))
                    .cloned()
                    .collect::<Vec<_>>()
            )
        );
        assert_eq!(
            id_set(&registry.find_startup_expired(STARTUP_TIMEOUT).unwrap()),
            starting
        );
        assert_eq!(
            (silent.len(), starting.len()),
            (expect_silent, expect_starting)
        );
    };
    goto(&clock, floor + ms(HEARTBEAT_TIMEOUT));
    check(0, 0);
    clock.advance(MS);
    check(8, 0);
    goto(&clock, floor + ms(secs(30) + HEARTBEAT_TIMEOUT));
    check(8, 0);
    clock.advance(MS);
    check(16, 0);
    goto(&clock, floor + ms(STARTUP_TIMEOUT));
    check(16, 0);
    clock.advance(MS);
    check(16, 8);
}

#[test]
fn reporting_in_after_a_slow_boot_starts_the_heartbeat_deadline_afresh() {
    let (clock, registry) = registry();
    let slow = register(&registry, Arc::new(WorkerSpec::new("img")));
    let slower = register(&registry, Arc::new(WorkerSpec::new("img")));
    // Booting for longer than the heartbeat timeout (within the startup timeout).
    clock.advance(HEARTBEAT_TIMEOUT * 2);
    let connecting = registry
        .update_state(&slow, WorkerState::Connecting)
        .unwrap();
    assert_eq!(
        connecting.last_heartbeat,
        clock.now(),
        "reporting in is a sign of life"
    );
    let ready = registry.update_state(&slower, WorkerState::Ready).unwrap();
    assert_eq!(ready.last_heartbeat, clock.now());
    assert!(registry
        .find_unhealthy(HEARTBEAT_TIMEOUT)
        .unwrap()
        .is_empty());
    // From then on the ordinary deadline runs: silent for the timeout plus 1 ms is unhealthy.
    clock.advance(HEARTBEAT_TIMEOUT);
    assert!(registry
        .find_unhealthy(HEARTBEAT_TIMEOUT)
        .unwrap()
        .is_empty());
    clock.advance(MS);
    let due = id_set(&registry.find_unhealthy(HEARTBEAT_TIMEOUT).unwrap());
    assert_eq!(due, BTreeSet::from([slow, slower]));
    // Moving on from Connecting counts too; terminating a starting worker does not.
    registry.update_state(&slow, WorkerState::Ready).unwrap();
    assert_eq!(
        id_set(&registry.find_unhealthy(HEARTBEAT_TIMEOUT).unwrap()),
        BTreeSet::from([slower])
    );
    let starting = register(&registry, Arc::new(WorkerSpec::new("img")));
    clock.advance(HEARTBEAT_TIMEOUT);
    let gone = registry
        .update_state(&starting, WorkerState::Terminating)
        .unwrap();
    assert_eq!(gone.last_heartbeat, gone.created_at);
}

#[test]
fn deadlines_with_timeouts_past_2_pow_63_ms_at_the_end_of_the_clock_are_exact() {
    // Timestamps are u64 milliseconds, and a timeout may be any `Duration`: the deadline
    // questions and the filters' durations follow `now - start > timeout` (or `>=` for
    // `idle_for`) over the whole range, as in memory, also for a timeout too long for a
    // signed 64-bit count of milliseconds on a clock past 2^63 ms (a restored snapshot's or a
    // manual clock's: `snapshot::extreme_values_in_a_snapshot_do_not_break_the_registry`).
    // Before, PostgreSQL read any timeout of 2^63 - 1 ms or more as 2^63 - 1 ms: it found
    // workers silent (and starting) for less than their timeout, and its filters none of those
    // silent or idle for more.
    let (clock, registry) = registry();
    let ids = fleet(&clock, &registry);
    // Before any grace: the jump to the end of the clock is not a restore.
    let ready = ids
        .iter()
        .copied()
        .find(|id| registry.get(id).unwrap().unwrap().state == WorkerState::Ready)
        .unwrap();
    let end = u64::MAX - 1;
    clock.set(end);
    let all = registry.find(&WorkerFilter::new()).unwrap();
    let lived = end - all.iter().map(|w| w.created_at).min().unwrap();
    for timeout in [
        Duration::from_millis(i64::MAX as u64 - 1),
        Duration::from_millis(i64::MAX as u64),
        Duration::from_millis(1 << 63),
        Duration::from_millis(lived - 1),
        Duration::from_millis(lived),
        Duration::from_millis(u64::MAX - 1),
        Duration::from_millis(u64::MAX),
        Duration::MAX,
    ] {
        assert_eq!(
            unhealthy(&registry, timeout),
            expected_unhealthy(&all, end, timeout, 0),
            "find_unhealthy({timeout:?})"
        );
        assert_eq!(
            id_set(&registry.find_startup_expired(timeout).unwrap()),
            expected_startup_expired(&all, end, timeout, 0),
            "find_startup_expired({timeout:?})"
        );
        for filter in [
            WorkerFilter::new().unhealthy_for(timeout),
            WorkerFilter::new().idle_for(timeout),
        ] {
            let expected: BTreeSet<WorkerId> = all
                .iter()
                .filter(|w| filter.matches(w, end))
                .map(|w| w.id)
                .collect();
            assert_eq!(
                id_set(&registry.find(&filter).unwrap()),
                expected,
                "find({filter:?})"
            );
        }
    }
    // The idle filter at the longest timeouts a ready worker can meet: its whole idle time.
    let idle = end - registry.get(&ready).unwrap().unwrap().idle_since.unwrap();
    for (timeout, found) in [(idle, true), (idle + 1, false)] {
        let filter = WorkerFilter::new().idle_for(Duration::from_millis(timeout));
        assert_eq!(
            registry
                .find(&filter)
                .unwrap()
                .iter()
                .any(|w| w.id == ready),
            found,
            "idle_for({timeout} ms)"
        );
    }
}
