//! The PostgreSQL registry's basic behaviour, against the server of `HODEI_PG_URL`.

mod common;

use std::time::Duration;

use common::*;
use hodei_workers::*;

#[test]
fn a_worker_goes_through_its_life_with_events_in_order() {
    let (clock, registry, _schema) = registry("life");
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let h = handle().with_metadata("zone", "a");
    let spec = std::sync::Arc::new(WorkerSpec::new("img").with_label("pool", "ci"));
    let w = registry.register(h.clone(), spec.clone()).unwrap();
    assert_eq!(w.state, WorkerState::Creating);
    assert_eq!(w.created_at, T0);
    assert_eq!(registry.get(&w.id).unwrap(), Some(w.clone()));
    assert_eq!(
        registry.register(h.clone(), spec.clone()),
        Err(Error::AlreadyExists(w.id))
    );
    clock.advance(Duration::from_secs(1));
    let r = registry.update_state(&w.id, WorkerState::Ready).unwrap();
    assert_eq!(r.idle_since, Some(T0 + 1000));
    assert_eq!(r.last_heartbeat, T0 + 1000, "reporting in is a heartbeat");
    clock.advance(Duration::from_secs(1));
    registry.heartbeat(&w.id).unwrap();
    assert_eq!(
        registry.get(&w.id).unwrap().unwrap().last_heartbeat,
        T0 + 2000
    );
    let busy = registry
        .claim(&WorkerFilter::new().label("pool", "ci"), job("j1"))
        .unwrap()
        .unwrap();
    assert_eq!(busy.current_job, Some(job("j1")));
    assert_eq!(busy.state, WorkerState::Busy);
    assert_eq!(registry.get(&w.id).unwrap(), Some(busy.clone()));
    assert!(matches!(
        registry.claim(&WorkerFilter::new(), job("j1")),
        Err(Error::JobAlreadyAssigned { .. })
    ));
    assert_eq!(
        registry.release_from_job(&w.id, Some(&job("other"))),
        Err(Error::NotBusy {
            worker_id: w.id,
            expected: Some(job("other"))
        })
    );
    assert_eq!(registry.release_from_job(&w.id, None).unwrap(), job("j1"));
    let stats = registry.stats().unwrap();
    assert_eq!((stats.total, stats.by_state.ready), (1, 1));
    assert_invariants(&registry);
    registry.assign_to_job(&w.id, job("j2")).unwrap();
    let last = registry
        .unregister(&w.id, TerminationReason::Requested)
        .unwrap();
    assert_eq!(last.current_job, Some(job("j2")));
    assert_eq!(registry.get(&w.id).unwrap(), None);
    assert_eq!(registry.heartbeat(&w.id), Err(Error::NotFound(w.id)));
    assert_eq!(
        registry.register(h, spec),
        Err(Error::AlreadyExists(w.id)),
        "ids are never reused"
    );
    let got = events.drain();
    let names: Vec<&str> = got.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        [
            "registered",
            "state_changed",
            "state_changed",
            "assigned_to_job",
            "released_from_job",
            "state_changed",
            "state_changed",
            "assigned_to_job",
            "job_lost",
            "unregistered"
        ]
    );
    for pair in got.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    assert_eq!(registry.count().unwrap(), 0);
    assert_invariants(&registry);
}

#[test]
fn claim_and_find_by_fit_and_architecture() {
    let (_clock, registry, _schema) = registry("fit");
    let sized = |cpu: f64, gpus: u32, gpu_type: Option<&str>, arch: Architecture| {
        std::sync::Arc::new(WorkerSpec {
            resources: ResourceRequirements {
                cpu_cores: cpu,
                memory_bytes: 8 << 30,
                gpu_count: gpus,
                gpu_type: gpu_type.map(str::to_owned),
                ..Default::default()
            },
            architecture: arch,
            ..WorkerSpec::new("img")
        })
    };
    let ready = |spec| {
        let w = registry.register(handle(), spec).unwrap();
        registry.update_state(&w.id, WorkerState::Ready).unwrap();
        w.id
    };
    let small = ready(sized(2.0, 0, None, Architecture::Amd64));
    let gpu = ready(sized(16.0, 1, Some("a100"), Architecture::Amd64));
    let arm = ready(sized(8.0, 0, None, Architecture::Arm64));
    let needs_gpu = ResourceRequirements {
        cpu_cores: 4.0,
        memory_bytes: 4 << 30,
        gpu_count: 1,
        gpu_type: Some("a100".into()),
        ..Default::default()
    };
    let filter = WorkerFilter::new().fits(needs_gpu);
    assert_eq!(
        registry.claim(&filter, job("train")).unwrap().unwrap().id,
        gpu
    );
    assert_eq!(registry.claim(&filter, job("train-2")).unwrap(), None);
    let four = ResourceRequirements {
        cpu_cores: 4.0,
        ..Default::default()
    };
    let found: Vec<WorkerId> = registry
        .find(
            &WorkerFilter::new()
                .fits(four.clone())
                .state(WorkerState::Ready),
        )
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(found, vec![arm]);
    let amd_four = WorkerFilter::new()
        .fits(four)
        .architecture(Architecture::Amd64);
    assert_eq!(registry.claim(&amd_four, job("build")).unwrap(), None);
    let too_much_memory = WorkerFilter::new().fits(ResourceRequirements {
        memory_bytes: 9 << 30,
        ..Default::default()
    });
    assert_eq!(registry.claim(&too_much_memory, job("big")).unwrap(), None);
    let amd = WorkerFilter::new().architecture(Architecture::Amd64);
    assert_eq!(
        registry.claim(&amd, job("lint")).unwrap().unwrap().id,
        small
    );
    assert_invariants(&registry);
}
