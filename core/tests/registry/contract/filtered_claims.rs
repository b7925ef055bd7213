//! Item 10: claims with filters that match few or none of a large ready set, or of shared specs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::{get, handle, job, ready, setup};
use hodei_workers::*;

#[test]
fn claim_with_an_unmatchable_filter_on_a_large_ready_set_finds_nothing() {
    let (_clock, registry) = setup();
    for _ in 0..crate::common::scaled(5000, 300) {
        ready(&*registry);
    }
    let gpu = WorkerFilter::new().label("gpu", "true");
    assert_eq!(registry.claim(&gpu, job("g")), Ok(None));
    assert_eq!(
        registry.claim(&WorkerFilter::new().capability("cuda"), job("g")),
        Ok(None)
    );
    // The job is not held by anyone: an unfiltered claim takes it.
    assert!(registry
        .claim(&WorkerFilter::new(), job("g"))
        .unwrap()
        .is_some());
    // Still: a job already held is an error, whatever the filter.
    assert!(matches!(
        registry.claim(&gpu, job("g")),
        Err(Error::JobAlreadyAssigned { .. })
    ));
}

#[test]
fn claim_finds_the_one_matching_worker_deep_in_a_large_ready_set() {
    let (clock, registry) = setup();
    // The matching workers are the longest idle: every other ready worker comes before them in
    // the claim's walk (most recently idle first).
    let gpu_spec = Arc::new(WorkerSpec::new("img").with_label("gpu", "true"));
    let gpus: Vec<WorkerId> = (0..2)
        .map(|_| {
            let id = registry.register(handle(), gpu_spec.clone()).unwrap().id;
            registry.update_state(&id, WorkerState::Ready).unwrap();
            clock.advance(Duration::from_millis(1));
            id
        })
        .collect();
    for _ in 0..crate::common::scaled(5000, 300) {
        ready(&*registry);
    }
    let filter = WorkerFilter::new().label("gpu", "true");
    let first = registry.claim(&filter, job("g1")).unwrap().unwrap();
    assert_eq!(first.id, gpus[1], "the most recently idle match first");
    let second = registry.claim(&filter, job("g2")).unwrap().unwrap();
    assert_eq!(second.id, gpus[0]);
    assert_eq!(registry.claim(&filter, job("g3")), Ok(None));
    assert_eq!(registry.stats().unwrap().by_state.busy, 2);
}

#[test]
fn concurrent_filtered_claims_never_give_a_worker_or_a_job_twice() {
    let (_clock, registry) = setup();
    let pools = ["a", "b", "c"];
    let mut per_pool = Vec::new();
    for pool in pools {
        let spec = Arc::new(WorkerSpec::new("img").with_label("pool", pool));
        let ids: Vec<WorkerId> = (0..crate::common::scaled(300, 40))
            .map(|_| {
                let id = registry.register(handle(), spec.clone()).unwrap().id;
                registry.update_state(&id, WorkerState::Ready).unwrap();
                id
            })
            .collect();
        per_pool.push(ids);
    }
    // Plenty of unmatchable ready workers around them.
    for _ in 0..crate::common::scaled(2000, 200) {
        ready(&*registry);
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let registry = registry.clone();
            thread::spawn(move || {
                let mut won = Vec::new();
                for i in 0..crate::common::scaled(400, 80) {
                    let pool = ["a", "b", "c", "none"][(t + i) % 4];
                    let filter = WorkerFilter::new().label("pool", pool);
                    // Every thread asks for the same job names: each job goes to one worker.
                    let j = job(&format!("{pool}-{}", i / 4));
                    match registry.claim(&filter, j.clone()) {
                        Ok(Some(w)) => {
                            assert_eq!(w.spec.labels["pool"], pool);
                            assert_eq!(w.current_job.as_ref(), Some(&j));
                            won.push((w.id, j));
                        }
                        Ok(None) | Err(Error::JobAlreadyAssigned { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                won
            })
        })
        .collect();
    let won: Vec<(WorkerId, JobId)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let workers: BTreeSet<WorkerId> = won.iter().map(|(w, _)| *w).collect();
    let jobs: BTreeSet<&JobId> = won.iter().map(|(_, j)| j).collect();
    assert_eq!(workers.len(), won.len(), "a worker was given two jobs");
    assert_eq!(jobs.len(), won.len(), "a job was given to two workers");
    for (id, j) in &won {
        assert_eq!(get(&*registry, id).current_job.as_ref(), Some(j));
    }
    assert_eq!(registry.stats().unwrap().by_state.busy, won.len());
}

#[test]
fn claim_judges_every_worker_of_a_shared_spec_by_its_own_provider() {
    // Workers share specs (one Arc per spec) and alternate between specs and providers: a
    // claim's answer for one worker must never leak to the next.
    let (clock, registry) = setup();
    let gpu = Arc::new(WorkerSpec::new("img").with_label("gpu", "true"));
    let cpu = Arc::new(WorkerSpec::new("img").with_label("gpu", "false"));
    let providers = [ProviderId::new("a").unwrap(), ProviderId::new("b").unwrap()];
    let mut expected = Vec::new();
    for i in 0..600 {
        let spec = if i % 3 == 0 { &gpu } else { &cpu };
        let provider = providers[i % 2].clone();
        let h = WorkerHandle::new(provider.clone(), ProviderType::Docker, "c");
        let id = registry.register(h, spec.clone()).unwrap().id;
        registry.update_state(&id, WorkerState::Ready).unwrap();
        clock.advance(Duration::from_millis(1));
        if i % 3 == 0 && i % 2 == 1 {
            expected.push(id);
        }
    }
    let filter = WorkerFilter::new()
        .label("gpu", "true")
        .provider_id(providers[1].clone());
    let mut got = Vec::new();
    while let Some(w) = registry
        .claim(&filter, job(&format!("j{}", got.len())))
        .unwrap()
    {
        assert_eq!(w.spec.labels["gpu"], "true");
        assert_eq!(w.handle.provider_id, providers[1]);
        got.push(w.id);
    }
    expected.reverse(); // most recently idle first
    assert_eq!(got, expected);
    // Without the provider condition: every gpu worker, none of the others.
    let gpu_only = WorkerFilter::new().label("gpu", "true");
    let mut more = 0;
    while let Some(w) = registry.claim(&gpu_only, job(&format!("k{more}"))).unwrap() {
        assert_eq!(w.spec.labels["gpu"], "true");
        more += 1;
    }
    assert_eq!(got.len() + more, 200);
}
