//! The `tracing` feature: the manager's spans (tick, health check, cleanup, provision,
//! destroy) with their ids, and the events for the decisions a tick report explains, seen by a
//! hand-written recording subscriber (no subscriber crate needed).
//!
//! Run with `cargo test -p hodei-workers --features tracing --test tracing` (`make test` does).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use hodei_workers::*;

#[derive(Debug, Clone, PartialEq)]
struct SpanRecord {
    name: &'static str,
    fields: Vec<(String, String)>,
    parent: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct EventRecord {
    fields: Vec<(String, String)>,
    /// The innermost span entered when it was emitted.
    span: Option<&'static str>,
}

#[derive(Default, Debug)]
struct Recorded {
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
    /// Entered spans, innermost last (one thread: the test's).
    stack: Vec<u64>,
    names: Vec<&'static str>,
}

#[derive(Clone, Default)]
struct Recorder {
    next: Arc<AtomicU64>,
    seen: Arc<Mutex<Recorded>>,
}

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = Fields(Vec::new());
        attrs.record(&mut fields);
        let mut seen = self.seen.lock();
        let parent = seen.stack.last().map(|p| seen.names[*p as usize - 1]);
        seen.names.push(attrs.metadata().name());
        seen.spans.push(SpanRecord {
            name: attrs.metadata().name(),
            fields: fields.0,
            parent,
        });
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let mut seen = self.seen.lock();
        let span = seen.stack.last().map(|p| seen.names[*p as usize - 1]);
        seen.events.push(EventRecord {
            fields: fields.0,
            span,
        });
    }
    fn enter(&self, span: &Id) {
        self.seen.lock().stack.push(span.into_u64());
    }
    fn exit(&self, span: &Id) {
        let mut seen = self.seen.lock();
        if let Some(pos) = seen.stack.iter().rposition(|s| *s == span.into_u64()) {
            seen.stack.remove(pos);
        }
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Creates fail while `fail_creates` > 0; destroys fail while `fail_destroys` > 0.
#[derive(Debug, Default)]
struct Cloud {
    n: AtomicU64,
    fail_creates: AtomicU64,
    fail_destroys: AtomicU64,
}

fn take(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

impl WorkerProvider for Cloud {
    fn provider_id(&self) -> ProviderId {
        ProviderId::new("cloud").unwrap()
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Docker
    }
    fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        if take(&self.fail_creates) {
            return Err(ProviderError::new("quota exceeded"));
        }
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let handle = WorkerHandle::new(self.provider_id(), self.provider_type(), format!("vm-{n}"));
        Ok(WorkerHandle {
            worker_id: id,
            ..handle
        })
    }
    fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
        if take(&self.fail_destroys) {
            return Err(ProviderError::new("api timeout"));
        }
        Ok(())
    }
}

#[test]
fn spans_and_decision_events_of_a_run() {
    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.seen);
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let config = WorkerLifecycleConfig {
        heartbeat_timeout: Duration::from_secs(60),
        health_check_interval: Duration::from_secs(10),
        min_ready_workers: 0,
        ..WorkerLifecycleConfig::default()
    };
    let manager = WorkerLifecycleManager::new(Arc::clone(&registry), config).unwrap();
    let cloud = Arc::new(Cloud::default());
    manager.register_provider(cloud.clone()).unwrap();
    let provider = ProviderId::new("cloud").unwrap();
    manager
        .set_scaling_target(&provider, Arc::new(WorkerSpec::new("img")))
        .unwrap();

    let (first, silent) = tracing::subscriber::with_default(recorder, || {
        cloud.fail_creates.store(1, Ordering::Relaxed);
        manager.tick(2);
        clock.advance(Duration::from_secs(120));
        let first = manager.tick(2);
        let ids: Vec<WorkerId> = first.provisioned.iter().map(|p| p.worker_id).collect();
        for id in &ids {
            registry.update_state(id, WorkerState::Ready).unwrap();
        }
        let job = JobId::new("job-1").unwrap();
        let holder = registry.claim(&WorkerFilter::new(), job).unwrap().unwrap();
        manager.clear_scaling_target();
        cloud.fail_destroys.store(1, Ordering::Relaxed);
        for _ in 0..10 {
            clock.advance(Duration::from_secs(10));
            for id in ids.iter().filter(|id| **id != holder.id) {
                manager.process_heartbeat(id).unwrap();
            }
            manager.tick(0);
        }
        (first, holder.id)
    });

    let seen = seen.lock();
    let names: Vec<&str> = seen.spans.iter().map(|s| s.name).collect();
    for name in ["tick", "health_check", "cleanup", "provision", "destroy"] {
        assert!(names.contains(&name), "no {name} span in {names:?}");
    }
    // Nesting: the parts of a tick are inside its span.
    for s in &seen.spans {
        match s.name {
            "health_check" | "cleanup" => assert_eq!(s.parent, Some("tick"), "{s:?}"),
            "tick" => {
                assert_eq!(s.parent, None);
                assert!(field(&s.fields, "pending_jobs").is_some());
            }
            "provision" => assert_eq!(field(&s.fields, "provider_id"), Some("cloud"), "{s:?}"),
            "destroy" => {
                assert_eq!(field(&s.fields, "provider_id"), Some("cloud"));
                assert!(field(&s.fields, "worker_id").is_some());
                assert!(field(&s.fields, "resource_id").is_some());
            }
            _ => {}
        }
    }
    // The silent worker's destroy was tried twice (failed once), under its id.
    let destroys: Vec<&SpanRecord> = seen
        .spans
        .iter()
        .filter(|s| {
            s.name == "destroy" && field(&s.fields, "worker_id") == Some(&silent.to_string())
        })
        .collect();
    assert_eq!(destroys.len(), 2, "{destroys:?}");
    assert_eq!(field(&destroys[1].fields, "attempt"), Some("2"));

    // Events: every decision line of the provisioning tick, and the workers touched.
    let messages: Vec<&str> = seen
        .events
        .iter()
        .filter_map(|e| field(&e.fields, "message"))
        .collect();
    for line in &first.decisions {
        assert!(
            seen.events
                .iter()
                .any(|e| field(&e.fields, "decision") == Some(line.as_str())
                    && e.span == Some("tick")),
            "decision {line:?} not traced"
        );
    }
    // The provision span names the worker id the manager made, before the provider call.
    let creates: Vec<&EventRecord> = seen
        .events
        .iter()
        .filter(|e| field(&e.fields, "message") == Some("create_worker"))
        .collect();
    assert!(creates.iter().all(|e| e.span == Some("provision")));
    for p in &first.provisioned {
        let id = p.worker_id.to_string();
        assert!(
            creates
                .iter()
                .any(|e| field(&e.fields, "worker_id") == Some(id.as_str())),
            "no create_worker event for {id}"
        );
    }
    for m in [
        "provision failed",
        "provisioned",
        "unhealthy",
        "job lost",
        "destroy failed",
        "terminated",
    ] {
        assert!(messages.contains(&m), "no {m:?} event in {messages:?}");
    }
    let unhealthy = seen
        .events
        .iter()
        .find(|e| field(&e.fields, "message") == Some("unhealthy"))
        .unwrap();
    assert_eq!(
        field(&unhealthy.fields, "worker_id"),
        Some(silent.to_string().as_str())
    );
    assert_eq!(field(&unhealthy.fields, "provider_id"), Some("cloud"));
}

#[test]
fn nothing_is_recorded_without_a_subscriber_and_hot_paths_have_no_spans() {
    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.seen);
    let registry = InMemoryWorkerRegistry::new();
    let provider = ProviderId::new("p").unwrap();
    tracing::subscriber::with_default(recorder, || {
        let w = registry
            .register(
                WorkerHandle::new(provider, ProviderType::Docker, "r"),
                Arc::new(WorkerSpec::new("img")),
            )
            .unwrap();
        registry.update_state(&w.id, WorkerState::Ready).unwrap();
        registry.heartbeat(&w.id).unwrap();
        registry
            .claim(&WorkerFilter::new(), JobId::new("j").unwrap())
            .unwrap()
            .unwrap();
    });
    let seen = seen.lock();
    assert!(seen.spans.is_empty() && seen.events.is_empty(), "{seen:?}");
}

/// A tick that stops early (a follower's: "follower: … does not lead") still emits its
/// decision events inside its span, as every tick does.
#[test]
fn a_followers_tick_traces_its_decisions() {
    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.seen);
    let store = Arc::new(ManualClock::new(1_000_000));
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(store.clone()));
    let lease = InMemoryLease::new(store.clone(), "a", Duration::from_secs(15));
    let replica = |name: &str| {
        WorkerLifecycleManager::with_leadership(
            registry.clone(),
            WorkerLifecycleConfig::default(),
            Arc::new(lease.replica(name)),
            Arc::new(ManualClock::new(0)),
        )
        .unwrap()
    };
    let (a, b) = (replica("a"), replica("b"));
    assert!(a.tick(0).leading);
    let report = tracing::subscriber::with_default(recorder, || b.tick(0));
    assert!(!report.leading);
    assert!(!report.decisions.is_empty(), "{report:?}");
    let seen = seen.lock();
    for line in &report.decisions {
        assert!(
            seen.events
                .iter()
                .any(|e| field(&e.fields, "decision") == Some(line.as_str())
                    && e.span == Some("tick")),
            "decision {line:?} not traced: {:?}",
            seen.events
        );
    }
}

/// A provider with one instance no record holds (an orphan): reconcile destroys it.
#[derive(Debug, Default)]
struct Stray {
    destroyed: AtomicU64,
}

impl WorkerProvider for Stray {
    fn provider_id(&self) -> ProviderId {
        ProviderId::new("stray").unwrap()
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Docker
    }
    fn create_worker(&self, _: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        Err(ProviderError::new("not used"))
    }
    fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
        self.destroyed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        if self.destroyed.load(Ordering::Relaxed) > 0 {
            return Ok(Vec::new());
        }
        Ok(vec![WorkerHandle::new(
            self.provider_id(),
            self.provider_type(),
            "vm-lost",
        )])
    }
}

/// Every destroy call has its `destroy` span, an orphan instance's (destroyed by reconcile,
/// no record holds it) too, with its provider and resource.
#[test]
fn an_orphan_destroy_has_its_destroy_span() {
    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.seen);
    let registry: Arc<dyn WorkerRegistry> = Arc::new(InMemoryWorkerRegistry::new());
    let manager =
        WorkerLifecycleManager::new(Arc::clone(&registry), WorkerLifecycleConfig::default())
            .unwrap();
    let stray = Arc::new(Stray::default());
    manager.register_provider(stray.clone()).unwrap();
    let report = tracing::subscriber::with_default(recorder, || manager.reconcile()).unwrap();
    assert_eq!(report.orphans.len(), 1, "{report:?}");
    assert_eq!(stray.destroyed.load(Ordering::Relaxed), 1);
    let seen = seen.lock();
    let destroys: Vec<&SpanRecord> = seen.spans.iter().filter(|s| s.name == "destroy").collect();
    assert_eq!(destroys.len(), 1, "{:?}", seen.spans);
    assert_eq!(field(&destroys[0].fields, "provider_id"), Some("stray"));
    assert_eq!(field(&destroys[0].fields, "resource_id"), Some("vm-lost"));
}

/// Creates, destroys and listings that panic inside the provider (with a span of the
/// provider's own entered, as instrumented provider code has).
#[derive(Debug, Default)]
struct Panicky {
    n: AtomicU64,
}

impl WorkerProvider for Panicky {
    fn provider_id(&self) -> ProviderId {
        ProviderId::new("panicky").unwrap()
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Docker
    }
    fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        let _own = tracing::info_span!("sdk_call").entered();
        if self.n.fetch_add(1, Ordering::Relaxed) == 0 {
            panic!("the cloud SDK panicked in create");
        }
        let handle =
            WorkerHandle::new(self.provider_id(), self.provider_type(), format!("vm-{id}"));
        Ok(WorkerHandle {
            worker_id: id,
            ..handle
        })
    }
    fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
        let _own = tracing::info_span!("sdk_call").entered();
        panic!("the cloud SDK panicked in destroy");
    }
    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        let _own = tracing::info_span!("sdk_call").entered();
        panic!("the cloud SDK panicked in list");
    }
}

/// A provider callback that panics (caught: a failed create, destroy or listing) leaves no span
/// entered: once the manager's calls returned, none of its spans — nor the provider's own — is
/// still entered, and what the tick reports after the panic is traced inside the `tick` span,
/// not inside the `provision` or `destroy` span of the call that panicked. The tick span has
/// the documented fields, `pending_jobs` and `requirements`.
#[test]
fn a_provider_that_panics_leaves_no_span_entered() {
    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.seen);
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let config = WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..WorkerLifecycleConfig::default()
    };
    let manager = WorkerLifecycleManager::new(Arc::clone(&registry), config).unwrap();
    manager
        .register_provider(Arc::new(Panicky::default()))
        .unwrap();
    let provider = ProviderId::new("panicky").unwrap();
    manager
        .set_scaling_target(&provider, Arc::new(WorkerSpec::new("img")))
        .unwrap();
    let (failed, made) = tracing::subscriber::with_default(recorder, || {
        let failed = manager.tick(1);
        clock.advance(Duration::from_secs(120)); // past the back-off
        let made = manager.tick(1);
        for p in &made.provisioned {
            let _ = manager.terminate_worker(&p.worker_id, TerminationReason::Requested);
        }
        let _ = manager.reconcile();
        (failed, made)
    });
    assert_eq!(failed.provision_failures.len(), 1, "{:?}", failed.decisions);
    assert!(
        failed.provision_failures[0].error.contains("panicked"),
        "{:?}",
        failed.provision_failures
    );
    assert_eq!(made.provisioned.len(), 1, "{:?}", made.decisions);
    let seen = seen.lock();
    assert!(
        seen.stack.is_empty(),
        "spans still entered: {:?}",
        seen.stack
    );
    let failure = seen
        .events
        .iter()
        .find(|e| field(&e.fields, "message") == Some("provision failed"))
        .expect("a provision failed event");
    assert_eq!(failure.span, Some("tick"), "{failure:?}");
    let names: Vec<&str> = seen.spans.iter().map(|s| s.name).collect();
    assert!(names.contains(&"destroy"), "{names:?}");
    for tick in seen.spans.iter().filter(|s| s.name == "tick") {
        let fields: Vec<&str> = tick.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(fields, ["pending_jobs", "requirements"], "{tick:?}");
    }
}
