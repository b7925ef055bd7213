//! Snapshots across backends: a snapshot of the in-memory registry restored into PostgreSQL,
//! snapshotted there and restored into memory again, keeps every field of every record, the
//! retired ids (ids are never reused, on either backend), the counters and the seq.
//! Against the server of `HODEI_PG_URL`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hodei_workers::*;

/// An in-memory registry with a bit of everything: every state, jobs on `Busy` and `Draining`
/// workers, a drained one-shot worker, pools, custom provider types, non-ASCII strings,
/// metadata, heartbeats at different times, retired ids.
fn rich_memory(clock: &Arc<ManualClock>) -> (InMemoryWorkerRegistry, Vec<WorkerId>) {
    let memory = InMemoryWorkerRegistry::with_clock(clock.clone());
    let custom = ProviderType::custom("rüstig-☃").unwrap();
    let pooled = Arc::new(
        WorkerSpec::new("imäge:1")
            .with_label(POOL_LABEL, "gpü")
            .with_label("zone", "éu-west")
            .with_capability("cüda")
            .with_idle_timeout(Duration::from_millis(30_500))
            .with_max_lifetime(Duration::from_secs(7_200)),
    );
    let one_shot = Arc::new(WorkerSpec::new("one").with_max_jobs(1));
    let plain = spec();
    let mut retired = Vec::new();
    for (i, state) in WorkerState::ALL.into_iter().enumerate() {
        for (k, spec) in [&pooled, &plain].into_iter().enumerate() {
            let ptype = if k == 0 {
                custom.clone()
            } else {
                ProviderType::Kubernetes
            };
            let h = WorkerHandle::new(provider(&format!("p-{k}")), ptype, format!("rés-{i}-{k}"))
                .with_metadata("nœud", format!("n{i}-☃"));
            let id = memory.register(h, spec.clone()).unwrap().id;
            clock.advance(Duration::from_millis(101));
            if state == WorkerState::Creating {
                continue;
            }
            memory.update_state(&id, WorkerState::Connecting).unwrap();
            if state == WorkerState::Connecting {
                continue;
            }
            memory.update_state(&id, WorkerState::Ready).unwrap();
            clock.advance(Duration::from_millis(7));
            memory
                .assign_to_job(&id, job(&format!("jöb-{i}-{k}")))
                .unwrap();
            clock.advance(Duration::from_millis(13));
            match state {
                WorkerState::Busy => {}
                WorkerState::Draining => {
                    memory.update_state(&id, WorkerState::Draining).unwrap();
                }
                _ => {
                    memory.release_from_job(&id, None).unwrap();
                    if state != WorkerState::Ready {
                        memory.update_state(&id, state).unwrap();
                    }
                }
            }
            clock.advance(Duration::from_millis(3));
            memory.heartbeat(&id).unwrap();
        }
    }
    // A one-shot worker that ran its job: drained.
    let id = memory
        .register(WorkerHandle::new(provider("p-1"), custom, "x"), one_shot)
        .unwrap()
        .id;
    memory.update_state(&id, WorkerState::Ready).unwrap();
    memory.assign_to_job(&id, job("once")).unwrap();
    memory.release_from_job(&id, None).unwrap();
    for _ in 0..4 {
        let id = memory.register(handle(), plain.clone()).unwrap().id;
        clock.advance(Duration::from_millis(5));
        memory
            .unregister(&id, TerminationReason::Requested)
            .unwrap();
        retired.push(id);
    }
    clock.advance(Duration::from_millis(1_000));
    (memory, retired)
}

#[test]
fn memory_to_postgres_to_memory_keeps_everything() {
    let (clock, pg, _schema) = registry("snapx");
    let (memory, retired) = rich_memory(&clock);
    assert_invariants(&memory);
    let first = memory.snapshot().unwrap();
    assert_eq!(first.retired_ids, retired);

    pg.restore(Snapshot::from_json(&first.to_json().unwrap()).unwrap())
        .unwrap();
    assert_invariants(&pg);
    assert_eq!(pg.stats().unwrap(), memory.stats().unwrap());
    let second = pg.snapshot().unwrap();
    assert_eq!(second.workers, first.workers, "every record, every field");
    assert_eq!(second.retired_ids, first.retired_ids, "retired ids");
    assert_eq!(second.seq, first.seq);
    assert_eq!(second, first, "the same snapshot out of PostgreSQL");
    // Ids are never reused, also after a restore on the other backend.
    for id in &retired {
        let mut h = handle();
        h.worker_id = *id;
        assert!(
            matches!(pg.register(h, spec()), Err(Error::AlreadyExists(_))),
            "retired {id} registered again on PostgreSQL"
        );
    }

    let back = InMemoryWorkerRegistry::with_clock(clock.clone());
    back.restore(Snapshot::from_json(&second.to_json().unwrap()).unwrap())
        .unwrap();
    assert_invariants(&back);
    assert_eq!(back.stats().unwrap(), memory.stats().unwrap());
    assert_eq!(
        back.snapshot().unwrap(),
        first,
        "the same snapshot back in memory"
    );
    for id in &retired {
        let mut h = handle();
        h.worker_id = *id;
        assert!(
            matches!(back.register(h, spec()), Err(Error::AlreadyExists(_))),
            "retired {id} registered again in memory"
        );
    }
}
