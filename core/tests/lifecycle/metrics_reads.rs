//! What a scrape of the manager's metrics reads, on every backend: the registry's maintained
//! counts and nothing else of the registry (never a scan of the fleet), and numbers that agree
//! with `stats()` and a recount of the records once the churn is over, with counters that never
//! go back while it runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use hodei_workers::*;

use crate::common::*;
use crate::test_registry::{Call, Hooks, TestRegistry};

/// The registry calls that reach the hooks, by the name of their `Call`.
#[derive(Debug, Default)]
struct CallLog(Mutex<Vec<String>>);

impl CallLog {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock())
    }
}

impl Hooks for CallLog {
    fn before(&self, call: Call<'_>, _: &dyn WorkerRegistry) -> Result<()> {
        let name = format!("{call:?}");
        let name = name.split('(').next().unwrap_or_default().to_owned();
        self.0.lock().push(name);
        Ok(())
    }
}

/// `name{labels}` -> value of every sample of an OpenMetrics text.
fn samples(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no EOF:\n{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("name value");
            (key.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn sample(s: &BTreeMap<String, f64>, key: &str) -> f64 {
    *s.get(key)
        .unwrap_or_else(|| panic!("no {key} among {:?}", s.keys().collect::<Vec<_>>()))
}

/// Registers a worker of provider `host` (one the manager does not manage: its records are the
/// host's own) and has it report in.
fn ready_host_worker(registry: &dyn WorkerRegistry, name: &str) -> WorkerId {
    let handle = WorkerHandle::new(pid("host"), ProviderType::Docker, name);
    let id = registry.register(handle, spec()).unwrap().id;
    registry.update_state(&id, WorkerState::Ready).unwrap();
    id
}

/// A scrape of a fleet asks the registry for its maintained counts (`stats`) and for nothing
/// that reads the records: no `find`, `get`, deadline query or claim, whatever the fleet's
/// size (§13: read at O(1) cost). A fleet of 200 workers, a quarter of them busy.
#[test]
fn a_scrape_asks_the_registry_for_its_counts_and_reads_no_record() {
    let clock = Arc::new(ManualClock::new(T0));
    let log = Arc::new(CallLog::default());
    let registry =
        TestRegistry::with_hooks(crate::backend::new_registry(clock.clone()), log.clone());
    let manager = WorkerLifecycleManager::new(
        registry.shared(),
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            ..config()
        },
    )
    .unwrap();
    manager
        .register_provider(TestProvider::new("test"))
        .unwrap();
    for i in 0..200 {
        let id = ready_host_worker(&**registry.inner(), &format!("h-{i}"));
        if i % 4 == 0 {
            registry
                .inner()
                .assign_to_job(&id, job(&format!("j-{i}")))
                .unwrap();
        }
    }
    manager.tick(0);
    log.take();
    let s = samples(&manager.metrics_text());
    assert_eq!(log.take(), ["Stats"], "the registry calls of one scrape");
    assert_eq!(sample(&s, "hodei_workers_workers{state=\"busy\"}"), 50.0);
    assert_eq!(sample(&s, "hodei_workers_workers{state=\"ready\"}"), 150.0);
    assert_eq!(
        sample(&s, "hodei_workers_workers_by_provider{provider=\"host\"}"),
        200.0
    );
}

/// The samples that must never go back within a process: counters (`_total`) and the
/// histograms' `_count`, `_bucket` and `_sum`.
fn monotonic(s: &BTreeMap<String, f64>) -> impl Iterator<Item = (&String, &f64)> {
    s.iter().filter(|(k, _)| {
        let name = k.split('{').next().unwrap();
        ["_total", "_count", "_bucket", "_sum"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
    })
}

/// Host threads register, claim, release, heartbeat and unregister workers while the manager
/// ticks (provisioning toward a target, expiring, retiring) and another thread scrapes without
/// pause: every scrape parses, no counter or histogram sample ever goes back, and once the
/// threads are done the gauges equal `stats()` and a recount of the records (the states
/// summing to the total), the jobs counters the claims and releases that succeeded, and the
/// tick histogram's count the ticks.
#[test]
fn metrics_read_during_churn_never_go_back_and_agree_with_a_recount_after_it() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        max_workers: 1_000,
        ..config()
    });
    f.manager
        .set_scaling_target(&f.provider.id, spec())
        .unwrap();
    let rounds = ((200.0 * crate::backend::STRESS_SCALE) as usize).max(24);
    let (claimed, released) = (AtomicU64::new(0), AtomicU64::new(0));
    let done = AtomicBool::new(false);
    // Scrapes so far: each host round waits for one more, so that scrapes fall between them
    // (u64::MAX once the scraper stopped, a failed check included: nobody waits then).
    let scraped = AtomicU64::new(0);
    struct Stopped<'a>(&'a AtomicU64);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0.store(u64::MAX, Ordering::Release);
        }
    }
    let scrapes = std::thread::scope(|s| {
        let scraper = s.spawn(|| {
            let _stopped = Stopped(&scraped);
            let mut last: BTreeMap<String, f64> = BTreeMap::new();
            let mut scrapes = 0;
            while !done.load(Ordering::Acquire) || scrapes < 2 {
                let now = samples(&f.manager.metrics_text());
                for (key, value) in monotonic(&now) {
                    if let Some(before) = last.get(key) {
                        assert!(value >= before, "{key} went back from {before} to {value}");
                    }
                }
                last = now;
                scrapes += 1;
                scraped.fetch_add(1, Ordering::Release);
            }
            scrapes
        });
        let hosts: Vec<_> = (0..2)
            .map(|t| {
                let (f, claimed, released, scraped) = (&f, &claimed, &released, &scraped);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..rounds {
                        let before = scraped.load(Ordering::Acquire);
                        while scraped.load(Ordering::Acquire) == before && before != u64::MAX {
                            std::thread::yield_now();
                        }
                        mine.push(ready_host_worker(&*f.registry, &format!("h-{t}-{i}")));
                        let job = job(&format!("j-{t}-{i}"));
                        if let Ok(Some(w)) = f.registry.claim(&WorkerFilter::new(), job) {
                            claimed.fetch_add(1, Ordering::Relaxed);
                            if i % 3 != 0 && f.registry.release_from_job(&w.id, None).is_ok() {
                                released.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        for id in &mine {
                            let _ = f.registry.heartbeat(id);
                        }
                        if i % 4 == 3 {
                            let _ = f
                                .registry
                                .unregister(&mine.remove(0), TerminationReason::Requested);
                        }
                    }
                })
            })
            .collect();
        let mut ticks = 0;
        while !hosts.iter().all(|h| h.is_finished()) {
            // One tick a scrape, as the hosts' rounds.
            let before = scraped.load(Ordering::Acquire);
            while scraped.load(Ordering::Acquire) == before && before != u64::MAX {
                std::thread::yield_now();
            }
            f.advance(secs(1));
            f.manager.tick(2);
            ticks += 1;
        }
        for h in hosts {
            h.join().unwrap();
        }
        done.store(true, Ordering::Release);
        (scraper.join().unwrap(), ticks)
    });
    let (scrapes, ticks) = scrapes;
    assert!(scrapes > rounds, "{scrapes} scrapes");

    let s = samples(&f.manager.metrics_text());
    let stats = f.manager.stats().unwrap();
    let records = f.registry.find(&WorkerFilter::new()).unwrap();
    let mut total = 0.0;
    for state in WorkerState::ALL {
        let key = format!("hodei_workers_workers{{state=\"{}\"}}", state.as_str());
        let recounted = records.iter().filter(|w| w.state == state).count();
        assert_eq!(
            sample(&s, &key),
            stats.registry.by_state.get(state) as f64,
            "{key}"
        );
        assert_eq!(sample(&s, &key), recounted as f64, "{key}");
        total += sample(&s, &key);
    }
    assert_eq!(total, records.len() as f64);
    assert_eq!(stats.registry.total, records.len());
    for provider in ["host", "test"] {
        let key = format!("hodei_workers_workers_by_provider{{provider=\"{provider}\"}}");
        let recounted = records
            .iter()
            .filter(|w| w.handle.provider_id.as_str() == provider)
            .count();
        assert_eq!(
            s.get(&key).copied().unwrap_or(0.0),
            recounted as f64,
            "{key}"
        );
    }
    let monitored = records
        .iter()
        .filter(|w| w.state.heartbeat_monitored())
        .count();
    if let Some(n) = s.get("hodei_workers_heartbeat_monitored_workers") {
        assert_eq!(*n, monitored as f64);
    }
    if let Some(n) = s.get("hodei_workers_jobs_assigned_total") {
        assert_eq!(*n, claimed.load(Ordering::Relaxed) as f64);
        let released = released.load(Ordering::Relaxed) as f64;
        assert_eq!(sample(&s, "hodei_workers_jobs_released_total"), released);
    }
    assert_eq!(
        sample(&s, "hodei_workers_tick_duration_seconds_count"),
        ticks as f64
    );
    assert_eq!(
        sample(&s, "hodei_workers_provisions_succeeded_total"),
        stats.provisioned_total as f64
    );
    assert_eq!(
        sample(&s, "hodei_workers_destroys_total"),
        stats.terminated_total as f64
    );
}
