//! A refused input of any size gets a short message: what an error echoes of a caller's
//! string is at most `MAX_ECHO_CHARS` characters and the input's length (`quote_input`), so
//! that a megabyte-long argument does not become a megabyte-long error (copied into the C
//! last-error buffer, a Python exception, a log line).

use std::sync::Arc;
use std::time::Duration;

use hodei_workers::{
    validate_lease, Architecture, Error, InMemoryWorkerRegistry, Pool, ProviderId, ProviderType,
    Requirement, Snapshot, TerminationReason, WorkerId, WorkerLifecycleConfig,
    WorkerLifecycleManager, WorkerSpec, WorkerState,
};

const MB: usize = 1 << 20;

/// The longest message a refusal of a huge input may have.
const SHORT: usize = 400;

#[track_caller]
fn short(what: &str, error: Error, len: usize) {
    let message = error.to_string();
    assert!(
        message.len() < SHORT,
        "{what}: a {len}-byte input gave a {}-byte message starting {:?}",
        message.len(),
        message.chars().take(200).collect::<String>()
    );
    assert!(
        message.contains(&format!("({len} bytes)")),
        "{what}: the message does not give the input's length: {message}"
    );
}

#[test]
fn a_huge_lease_holder_is_refused_with_a_short_message() {
    let holder = "h".repeat(MB);
    let error = validate_lease(&holder, Duration::from_secs(10)).unwrap_err();
    short("lease holder", error, MB);
}

#[test]
fn a_huge_pool_name_is_refused_with_a_short_message() {
    let name = "p".repeat(MB);
    let provider = ProviderId::new("p").unwrap();
    let error = Pool::new(name, provider, Arc::new(WorkerSpec::new("i"))).unwrap_err();
    short("pool name", error, MB);
}

#[test]
fn removing_a_pool_by_a_huge_unknown_name_gives_a_short_message() {
    let registry = Arc::new(InMemoryWorkerRegistry::new());
    let manager = WorkerLifecycleManager::new(registry, WorkerLifecycleConfig::default()).unwrap();
    let error = manager.remove_pool(&"p".repeat(MB)).unwrap_err();
    short("remove_pool", error, MB);
}

#[test]
fn huge_texts_of_parsed_names_and_ids_are_refused_with_short_messages() {
    let text = "z".repeat(MB);
    short("worker id", WorkerId::parse(&text).unwrap_err(), MB);
    short("worker state", text.parse::<WorkerState>().unwrap_err(), MB);
    short(
        "provider type",
        text.parse::<ProviderType>().unwrap_err(),
        MB,
    );
    short(
        "custom provider type",
        ProviderType::custom(text.clone()).unwrap_err(),
        MB,
    );
    short(
        "architecture",
        text.parse::<Architecture>().unwrap_err(),
        MB,
    );
    short(
        "termination reason",
        text.parse::<TerminationReason>().unwrap_err(),
        MB,
    );
}

#[test]
fn a_long_requirement_string_with_a_nul_is_refused_with_a_short_message() {
    // Within MAX_VALUE_LEN (16 KiB), so refused for its NUL only.
    let value = format!("\0{}", "v".repeat(16_000));
    let error = Requirement::new(1)
        .label("k", value.clone())
        .validate()
        .unwrap_err();
    short("requirement label value", error, value.len());
}

#[test]
fn a_snapshot_of_a_huge_foreign_format_is_refused_with_a_short_message() {
    let format = "f".repeat(MB);
    let json =
        format!(r#"{{"format":"{format}","seq":0,"taken_at":0,"workers":[],"retired_ids":[]}}"#);
    let error = Snapshot::from_json(&json).unwrap_err();
    short("snapshot format", error, MB);
}

#[test]
fn json_that_serde_refuses_for_a_huge_string_gives_a_short_message() {
    // serde_json quotes the offending string whole ("invalid type: string \"…\"", "unknown
    // field `…`"): the message is cut, and still says where the error is.
    let json = format!("\"{}\"", "s".repeat(MB));
    let message = Snapshot::from_json(&json).unwrap_err().to_string();
    assert!(message.len() < SHORT + 100, "{} bytes", message.len());
    assert!(message.contains("at line 1 column"), "{message}");
    let json = format!(r#"{{"{}": 1}}"#, "k".repeat(MB));
    let message = Snapshot::from_json(&json).unwrap_err().to_string();
    assert!(message.len() < SHORT + 100, "{} bytes", message.len());
}

/// A provider whose creates fail with a 1 MB message (through `ProviderError::new`) and whose
/// destroys fail with a 1 MB message written as a struct literal (no constructor to cut it).
#[derive(Debug)]
struct Verbose {
    create_ok: std::sync::atomic::AtomicBool,
}

impl hodei_workers::WorkerProvider for Verbose {
    fn provider_id(&self) -> ProviderId {
        ProviderId::new("verbose").unwrap()
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::BareMetal
    }
    fn create_worker(
        &self,
        id: WorkerId,
        _spec: &WorkerSpec,
    ) -> hodei_workers::ProviderResult<hodei_workers::WorkerHandle> {
        if self.create_ok.load(std::sync::atomic::Ordering::SeqCst) {
            let handle =
                hodei_workers::WorkerHandle::new(self.provider_id(), self.provider_type(), "i-1");
            return Ok(hodei_workers::WorkerHandle {
                worker_id: id,
                ..handle
            });
        }
        Err(hodei_workers::ProviderError::new(format!(
            "body: {}",
            "é".repeat(MB / 2)
        )))
    }
    fn destroy_worker(&self, _: &hodei_workers::WorkerHandle) -> hodei_workers::ProviderResult<()> {
        Err(hodei_workers::ProviderError {
            kind: hodei_workers::ProviderErrorKind::Failed,
            message: format!("body: {}", "d".repeat(MB)),
        })
    }
}

/// `message` holds a provider's message cut to 4096 bytes (`HW_MAX_PROVIDER_MESSAGE_LEN`),
/// with at most a short context around it ("create_worker failed: …", " (failed)").
#[track_caller]
fn cut(what: &str, message: &str) {
    const MARK: &str = "… (truncated)";
    assert!(
        message.len() <= 4096 + 64,
        "{what}: a {}-byte message",
        message.len()
    );
    assert!(
        message.contains(MARK) && message.contains("body: "),
        "{what}: no mark in {:?}…",
        message.chars().take(80).collect::<String>()
    );
}

#[test]
fn a_provider_error_of_a_megabyte_is_cut_in_reports_and_events() {
    let registry = Arc::new(InMemoryWorkerRegistry::new());
    let events = hodei_workers::WorkerRegistry::subscribe(
        registry.as_ref(),
        hodei_workers::SubscribeOptions::default(),
    )
    .unwrap();
    let manager = WorkerLifecycleManager::new(registry, WorkerLifecycleConfig::default()).unwrap();
    let provider = Arc::new(Verbose {
        create_ok: false.into(),
    });
    manager.register_provider(provider.clone()).unwrap();

    manager
        .set_scaling_target(
            &ProviderId::new("verbose").unwrap(),
            Arc::new(WorkerSpec::new("i")),
        )
        .unwrap();
    let report = manager.tick(1);
    assert_eq!(report.provision_failures.len(), 1, "{report:?}");
    cut("provision failure", &report.provision_failures[0].error);
    match manager.provision_worker(
        &ProviderId::new("verbose").unwrap(),
        Arc::new(WorkerSpec::new("i")),
    ) {
        Err(Error::Provider { message, .. }) => cut("provision_worker's error", &message),
        other => panic!("expected a provider error, got {other:?}"),
    }

    provider
        .create_ok
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let worker = manager
        .provision_worker(
            &ProviderId::new("verbose").unwrap(),
            Arc::new(WorkerSpec::new("i")),
        )
        .unwrap();
    let result = manager
        .terminate_worker(&worker.id, TerminationReason::Requested)
        .unwrap();
    assert_eq!(result.failed.len(), 1, "{result:?}");
    cut("destroy failure", &result.failed[0].error);

    let mut seen = 0;
    for event in events.drain() {
        match &event.kind {
            hodei_workers::EventKind::ProvisionFailed { error, .. } => {
                cut("ProvisionFailed", error);
                seen += 1;
            }
            hodei_workers::EventKind::DestroyFailed { error, .. } => {
                cut("DestroyFailed", error);
                seen += 1;
            }
            _ => {}
        }
    }
    assert_eq!(seen, 3);
}
