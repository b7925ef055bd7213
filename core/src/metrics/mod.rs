//! Prometheus / OpenMetrics metrics of a [`WorkerLifecycleManager`](crate::WorkerLifecycleManager)
//! and its registry, on the [`prometheus-client`](prometheus_client) crate.
//!
//! [`Metrics`] is a [`Collector`]: at each scrape it reads what the manager and the registry
//! already maintain — the registry's O(1) [`stats`](crate::WorkerRegistry::stats), the
//! manager's lifetime totals, ledger, destroy queue and back-off, and the optional registry
//! telemetry ([`job_totals`](crate::WorkerRegistry::job_totals),
//! [`heartbeat_age_histogram`](crate::WorkerRegistry::heartbeat_age_histogram),
//! [`subscriber_drops`](crate::WorkerRegistry::subscriber_drops)). Nothing scans the fleet, and
//! nothing is counted twice: the counters are the very numbers
//! [`stats()`](crate::WorkerLifecycleManager::stats) reports. Only the ticks and health checks
//! are counted and measured for the metrics: counted always (one relaxed atomic add per call,
//! `hodei_workers_ticks_total`, `hodei_workers_health_checks_total`), timed unless
//! [`Metrics::set_timing`] turned the durations off (two clock reads per call, or one call in
//! eight while they keep finishing under 10 µs: every timed call is still observed).
//!
//! Get the text with [`WorkerLifecycleManager::metrics_text`](crate::WorkerLifecycleManager::metrics_text),
//! or merge the collector into the host's own registry:
//!
//! ```
//! use std::sync::Arc;
//! use hodei_workers::*;
//! use prometheus_client::registry::Registry;
//!
//! let registry: Arc<dyn WorkerRegistry> = Arc::new(InMemoryWorkerRegistry::new());
//! let manager = WorkerLifecycleManager::new(registry, WorkerLifecycleConfig::default())?;
//! let mut host = Registry::default();
//! host.register_collector(Box::new(manager.metrics()));
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &host).unwrap();
//! assert!(text.contains("hodei_workers_workers{state=\"ready\"} 0"));
//! assert!(text.ends_with("# EOF\n"));
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! # The metrics
//! | name | type | labels | what |
//! | --- | --- | --- | --- |
//! | `hodei_workers_workers` | gauge | `state` | registered workers per state |
//! | `hodei_workers_workers_by_provider` | gauge | `provider` | registered workers per provider |
//! | `hodei_workers_workers_by_provider_type` | gauge | `provider_type` | per provider type |
//! | `hodei_workers_providers` | gauge | | registered providers |
//! | `hodei_workers_pool_workers` | gauge | `pool`, `state` | a pool's workers per state, as of the last pools tick (none on a replica that does not lead) |
//! | `hodei_workers_pool_demand` | gauge | `pool` | jobs of the demand the last pools tick gave the pool (none on a replica that does not lead) |
//! | `hodei_workers_jobs_assigned_total` | counter | | successful `assign_to_job` / `claim` (registry) |
//! | `hodei_workers_jobs_released_total` | counter | | successful `release_from_job` (registry) |
//! | `hodei_workers_lost_jobs_total` | counter | | jobs this manager reported lost (the `lost_jobs` of its ticks and calls); a job the host's own registry call takes from a worker is in its `JobLost` event only |
//! | `hodei_workers_provisions_requested_total` | counter | `provider` | provisions started per registered provider: counted when the provision is entered in the ledger, before the lease check that may stop it short of the `create_worker` call; a provider unregistered and registered again starts again from 0 (a counter reset, as after a restart) |
//! | `hodei_workers_provisions_succeeded_total` | counter | | workers provisioned and registered |
//! | `hodei_workers_provisions_failed_total` | counter | | failed creates |
//! | `hodei_workers_provisions_in_flight` | gauge | | creates in progress |
//! | `hodei_workers_destroys_total` | counter | | workers destroyed and unregistered |
//! | `hodei_workers_destroy_failures_total` | counter | | failed destroy attempts (retried) |
//! | `hodei_workers_destroys_pending` | gauge | | `Terminating` workers awaiting their destroy (0 on a replica that does not lead) |
//! | `hodei_workers_unhealthy_detections_total` | counter | | workers declared unhealthy |
//! | `hodei_workers_mass_expiry_holds_total` | counter | | health checks held by the mass-expiry brake |
//! | `hodei_workers_reconcile_holds_total` | counter | `provider`, `kind` | the ticks' reconciles whose brake held the provider's listing: `expire` (records it missed, not expired) or `orphans` (instances no record knows, not destroyed: only the host's `reconcile()` ends it) |
//! | `hodei_workers_provider_backoff_seconds` | gauge | `provider` | time left in the provider's create back-off (0: none, and on a replica that does not lead) |
//! | `hodei_workers_provider_consecutive_failures` | gauge | `provider` | consecutive create failures while backed off (0 on a replica that does not lead) |
//! | `hodei_workers_ticks_total` | counter | | ticks that ran (leader's or follower's, whatever they reported, one that panicked midway included; not one skipped because another thread was ticking), timing on or off: the one to alert on when ticks stop |
//! | `hodei_workers_tick_panics_total` | counter | | ticks that panicked midway and returned what they had done (`TickReport::panicked`; counted in `hodei_workers_ticks_total` too): alert on any increase |
//! | `hodei_workers_health_checks_total` | counter | | health checks that ran (a tick's and `run_health_check`'s), timing on or off; not a call refused before it checked anything (`NotLeader`, the owed grace period not granted) |
//! | `hodei_workers_tick_duration_seconds` | histogram | | wall time of `tick`, observed only while timing is on |
//! | `hodei_workers_health_check_duration_seconds` | histogram | | wall time of each health check that ran, observed only while timing is on (a refused call is not) |
//! | `hodei_workers_heartbeat_age_seconds` | gauge | `quantile` | heartbeat age percentiles (0.5, 0.9, 0.99, 1) from a bounded sample of the deadline index (exact for small fleets, an estimate above: see [`HeartbeatAges`](crate::HeartbeatAges)) |
//! | `hodei_workers_heartbeat_monitored_workers` | gauge | | workers under heartbeat watch (`Connecting`, `Ready`, `Busy`, `Draining`), from the state counts: exact even when the ages are sampled |
//! | `hodei_workers_event_drops_total` | counter | `subscriber` | events dropped per live subscriber ([`Subscription::id`](crate::Subscription::id)) |
//! | `hodei_workers_event_queue_length` | gauge | `subscriber` | events waiting per live subscriber |
//! | `hodei_workers_leader` | gauge | | 1 while this manager leads (holds the lease and trusts it), else 0 |
//! | `hodei_workers_leader_term` | gauge | | the lease term as this manager last saw it (its own when leading; 0: none seen) |
//!
//! Jobs assigned and released are counted by the registry (under the lock it takes for the
//! change anyway) rather than by the manager: the host calls `claim` and `release_from_job`
//! on the registry directly, so only the registry sees them all. A backend that does not
//! count them, or keeps no heartbeat index, omits those families; a registry error at scrape
//! time omits the families that needed the answer.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::clock::Timestamp;
use crate::ids::ProviderId;
use crate::lifecycle::{LifecycleStats, ProviderBackoff, ReconcileHoldKind};
use crate::registry::WorkerRegistry;
use crate::state::WorkerState;

mod timing;

use timing::DurationHistogram;
pub(crate) use timing::Timer;

/// What the manager knows at scrape time (built by the manager from its own bookkeeping).
#[derive(Debug, Clone)]
pub(crate) struct ManagerView {
    /// The same numbers as `WorkerLifecycleManager::stats()` (its `registry` part empty
    /// unless `counted`).
    pub stats: LifecycleStats,
    /// Whether the registry answered `stats()`: the families of its counts are left out when
    /// it did not.
    pub counted: bool,
    /// Registered providers, each with the creates started under it.
    pub requested: Vec<(ProviderId, u64)>,
    /// Providers backed off now.
    pub backoff: Vec<ProviderBackoff>,
    /// The registry clock when the view was taken.
    pub now: Timestamp,
    /// Per pool (by name), what the last pools tick counted: see [`PoolGauges`].
    pub pools: Vec<(String, PoolGauges)>,
    /// Whether the manager leads now, and the lease term as it last saw it (0: none).
    pub leader: (bool, u64),
    /// The ticks' reconciles held by the brake, per provider and side, ever.
    pub reconcile_holds: Vec<(ProviderId, ReconcileHoldKind, u64)>,
}

/// One pool's numbers as of the manager's last pools tick (stored by the tick from the
/// per-pool view it builds for the plan; a scrape reads them, it never scans the registry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolGauges {
    /// The pool's registered workers (label `hodei.pool=<name>`) per state, those under an
    /// interruption notice included.
    pub states: crate::registry::StateCounts,
    /// Jobs of the demand the plan gave this pool (its `PoolDecision::demand`).
    pub demand: usize,
}

/// How the collector reaches the manager's bookkeeping: shared handles, never the manager
/// itself (the collector may outlive it).
pub(crate) type ViewFn = Box<dyn Fn() -> ManagerView + Send + Sync>;

/// The heartbeat age quantiles exported.
const AGE_QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (1.0, "1")];

/// A manager's metrics: a [`Collector`] for a `prometheus_client` registry. Get it with
/// [`WorkerLifecycleManager::metrics`](crate::WorkerLifecycleManager::metrics).
///
/// Reading costs O(1) in the fleet size (plus the heartbeat index's buckets, the providers
/// and the subscribers). Safe to scrape from any thread while the manager runs.
pub struct Metrics {
    registry: Arc<dyn WorkerRegistry>,
    view: ViewFn,
    timing: AtomicBool,
    /// Ticks that ran, timed or not (`hodei_workers_ticks_total`).
    ticks: AtomicU64,
    /// Ticks that panicked midway and returned what they had done
    /// (`hodei_workers_tick_panics_total`).
    tick_panics: AtomicU64,
    /// Health checks that ran, timed or not (`hodei_workers_health_checks_total`).
    health_checks: AtomicU64,
    tick_seconds: DurationHistogram,
    health_check_seconds: DurationHistogram,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("timing", &self.timing.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(registry: Arc<dyn WorkerRegistry>, view: ViewFn) -> Self {
        Metrics {
            registry,
            view,
            timing: AtomicBool::new(true),
            ticks: AtomicU64::new(0),
            tick_panics: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            tick_seconds: DurationHistogram::default(),
            health_check_seconds: DurationHistogram::default(),
        }
    }

    /// Turns the duration histograms on (the default) or off. Off, `tick` and the health
    /// check read no clock for the metrics and the histograms stand still; the ticks and
    /// health checks are still counted (`hodei_workers_ticks_total`,
    /// `hodei_workers_health_checks_total`: one relaxed atomic add per call either way), and
    /// everything else is read at scrape time and costs nothing between scrapes. On, a tick or
    /// health check reads the clock twice, except while they keep finishing under 10 µs: then
    /// one in eight is timed and the others are counted in the first bucket (or timed from
    /// their first action, if they take one).
    pub fn set_timing(&self, on: bool) {
        self.timing.store(on, Ordering::Relaxed);
    }

    /// Whether the duration histograms are measured.
    pub fn timing(&self) -> bool {
        self.timing.load(Ordering::Relaxed)
    }

    fn start(&self, histogram: &DurationHistogram) -> Timer {
        if !self.timing() {
            Timer::Off
        } else if histogram.wants_clock() {
            Timer::Clock(Instant::now())
        } else {
            Timer::Untimed
        }
    }

    fn done(histogram: &DurationHistogram, timer: Timer, first_action: Option<Instant>) {
        match timer {
            Timer::Off => {}
            Timer::Clock(t) => histogram.observe(t.elapsed()),
            Timer::Untimed => histogram.observe_untimed(first_action),
        }
    }

    /// Starts timing a tick.
    pub(crate) fn start_tick(&self) -> Timer {
        self.start(&self.tick_seconds)
    }

    /// Starts timing a health check.
    pub(crate) fn start_health_check(&self) -> Timer {
        self.start(&self.health_check_seconds)
    }

    /// A tick ended (counted whatever the timing); `first_action`: when its first action
    /// started, if noted; `panicked`: it panicked midway (counted in both counters).
    pub(crate) fn tick_done(&self, timer: Timer, first_action: Option<Instant>, panicked: bool) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        if panicked {
            self.tick_panics.fetch_add(1, Ordering::Relaxed);
        }
        Self::done(&self.tick_seconds, timer, first_action);
    }

    /// A health check ended (counted whatever the timing); `first_action`: when its first
    /// action started, if noted.
    pub(crate) fn health_check_done(&self, timer: Timer, first_action: Option<Instant>) {
        self.health_checks.fetch_add(1, Ordering::Relaxed);
        Self::done(&self.health_check_seconds, timer, first_action);
    }

    /// The metrics in the OpenMetrics text format (ending in `# EOF`).
    pub fn encode_text(self: &Arc<Self>) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Arc::clone(self)));
        let mut out = String::new();
        // Writing to a String cannot fail, nor can our collector.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue + Copy>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: &[(&[(&str, &str)], V)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    if let [(&[], v)] = series {
        return ConstGauge::new(*v).encode(m);
    }
    for (labels, v) in series {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(&[(&str, &str)], u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    if let [(&[], v)] = series {
        return ConstCounter::new(*v).encode(m);
    }
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let enc = &mut enc;
        let view = (self.view)();
        encode_view(enc, &view)?;
        encode_leader(enc, view.leader)?;
        if let Ok(Some(jobs)) = self.registry.job_totals() {
            counter(
                enc,
                "hodei_workers_jobs_assigned",
                "Jobs given to workers (assign_to_job and claim) since the registry was made.",
                &[(&[], jobs.assigned)],
            )?;
            counter(
                enc,
                "hodei_workers_jobs_released",
                "Jobs taken back from workers (release_from_job) since the registry was made.",
                &[(&[], jobs.released)],
            )?;
        }
        if let Ok(Some(ages)) = self.registry.heartbeat_age_histogram() {
            // The population from the registry's state counts when it gave them (exact, and
            // the very numbers of `hodei_workers_workers`): the ages' own total is a sample's,
            // scaled to that count — or nothing, when the sample met none of the workers (a
            // fleet that shrank to a few, scattered in columns that kept their length).
            let monitored = if view.counted {
                WorkerState::ALL
                    .iter()
                    .filter(|state| state.heartbeat_monitored())
                    .map(|state| view.stats.registry.by_state.get(*state) as u64)
                    .sum()
            } else {
                ages.total()
            };
            let values: Vec<(&str, f64)> = AGE_QUANTILES
                .iter()
                .filter_map(|(q, label)| {
                    ages.quantile_ms(*q).map(|ms| (*label, ms as f64 / 1000.0))
                })
                .collect();
            let series: Vec<([(&str, &str); 1], f64)> = values
                .iter()
                .map(|(label, v)| ([("quantile", *label)], *v))
                .collect();
            let series: Vec<(&[(&str, &str)], f64)> =
                series.iter().map(|(l, v)| (&l[..], *v)).collect();
            gauge(
                enc,
                "hodei_workers_heartbeat_age",
                "Heartbeat age percentiles of the monitored workers, from the heartbeat deadline \
                 index (at most 32768 workers sampled: exact below, an estimate above).",
                Some(&Unit::Seconds),
                &series,
            )?;
            gauge(
                enc,
                "hodei_workers_heartbeat_monitored_workers",
                "Workers under heartbeat watch (Connecting, Ready, Busy, Draining).",
                None,
                &[(&[], monitored)],
            )?;
        }
        if let Ok(subs) = self.registry.subscriber_drops() {
            let ids: Vec<String> = subs.iter().map(|s| s.subscriber.to_string()).collect();
            let labels: Vec<[(&str, &str); 1]> =
                ids.iter().map(|id| [("subscriber", id.as_str())]).collect();
            let drops: Vec<(&[(&str, &str)], u64)> = labels
                .iter()
                .zip(&subs)
                .map(|(l, s)| (&l[..], s.dropped))
                .collect();
            counter(
                enc,
                "hodei_workers_event_drops",
                "Events dropped for a live subscriber because its queue was full.",
                &drops,
            )?;
            let queued: Vec<(&[(&str, &str)], u64)> = labels
                .iter()
                .zip(&subs)
                .map(|(l, s)| (&l[..], s.queued as u64))
                .collect();
            gauge(
                enc,
                "hodei_workers_event_queue_length",
                "Events waiting in a live subscriber's queue.",
                None,
                &queued,
            )?;
        }
        counter(
            enc,
            "hodei_workers_ticks",
            "Calls of WorkerLifecycleManager::tick that ran (a leader's or a follower's, whatever \
             they reported; not one skipped because another thread was ticking), counted whether \
             the durations are timed or not.",
            &[(&[], self.ticks.load(Ordering::Relaxed))],
        )?;
        counter(
            enc,
            "hodei_workers_tick_panics",
            "Ticks that panicked midway (a bug of a host's own registry, clock or lease, or of \
             the library) and returned the report of what they had done (TickReport.panicked); \
             each is counted in hodei_workers_ticks too. Alert on any increase.",
            &[(&[], self.tick_panics.load(Ordering::Relaxed))],
        )?;
        counter(
            enc,
            "hodei_workers_health_checks",
            "Health checks that ran (in a tick or run_health_check; not a call refused before \
             it checked anything), counted whether the durations are timed or not.",
            &[(&[], self.health_checks.load(Ordering::Relaxed))],
        )?;
        let m = enc.encode_descriptor(
            "hodei_workers_tick_duration",
            "Wall time of WorkerLifecycleManager::tick (observed only while timing is on).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        self.tick_seconds.encode(m)?;
        let m = enc.encode_descriptor(
            "hodei_workers_health_check_duration",
            "Wall time of each health check that ran (in a tick or run_health_check; not a \
             refused call), observed only while timing is on.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        self.health_check_seconds.encode(m)
    }
}

fn encode_view(enc: &mut DescriptorEncoder<'_>, view: &ManagerView) -> fmt::Result {
    let s = &view.stats;
    if view.counted {
        encode_registry_counts(enc, &s.registry)?;
    }
    gauge(
        enc,
        "hodei_workers_providers",
        "Registered providers.",
        None,
        &[(&[], s.providers as u64)],
    )?;
    encode_pools(enc, &view.pools)?;
    encode_manager(enc, view)
}

/// The families of the registry's counts (`stats()`): left out when it cannot answer.
fn encode_registry_counts(
    enc: &mut DescriptorEncoder<'_>,
    r: &crate::registry::WorkerRegistryStats,
) -> fmt::Result {
    let states: Vec<([(&str, &str); 1], u64)> = WorkerState::ALL
        .iter()
        .map(|st| ([("state", st.as_str())], r.by_state.get(*st) as u64))
        .collect();
    let states: Vec<(&[(&str, &str)], u64)> = states.iter().map(|(l, v)| (&l[..], *v)).collect();
    gauge(
        enc,
        "hodei_workers_workers",
        "Registered workers per state.",
        None,
        &states,
    )?;
    let providers: Vec<(String, u64)> = r
        .by_provider
        .iter()
        .map(|(p, n)| (p.to_string(), *n as u64))
        .collect();
    let labels: Vec<([(&str, &str); 1], u64)> = providers
        .iter()
        .map(|(p, n)| ([("provider", p.as_str())], *n))
        .collect();
    let series: Vec<(&[(&str, &str)], u64)> = labels.iter().map(|(l, v)| (&l[..], *v)).collect();
    gauge(
        enc,
        "hodei_workers_workers_by_provider",
        "Registered workers per provider.",
        None,
        &series,
    )?;
    let types: Vec<(String, u64)> = r
        .by_provider_type
        .iter()
        .map(|(t, n)| (t.to_string(), *n as u64))
        .collect();
    let labels: Vec<([(&str, &str); 1], u64)> = types
        .iter()
        .map(|(t, n)| ([("provider_type", t.as_str())], *n))
        .collect();
    let series: Vec<(&[(&str, &str)], u64)> = labels.iter().map(|(l, v)| (&l[..], *v)).collect();
    gauge(
        enc,
        "hodei_workers_workers_by_provider_type",
        "Registered workers per provider type.",
        None,
        &series,
    )
}

/// The families of the manager's own bookkeeping: provisions, destroys, failures, back-off.
fn encode_manager(enc: &mut DescriptorEncoder<'_>, view: &ManagerView) -> fmt::Result {
    let s = &view.stats;
    let names: Vec<String> = view.requested.iter().map(|(p, _)| p.to_string()).collect();
    let labels: Vec<[(&str, &str); 1]> = names.iter().map(|p| [("provider", p.as_str())]).collect();
    let requested: Vec<(&[(&str, &str)], u64)> = labels
        .iter()
        .zip(&view.requested)
        .map(|(l, (_, n))| (&l[..], *n))
        .collect();
    counter(
        enc,
        "hodei_workers_provisions_requested",
        "Provisions started (automatic and direct), per registered provider: each one is about to call create_worker unless the lease is lost first.",
        &requested,
    )?;
    for (name, help, value) in [
        (
            "hodei_workers_provisions_succeeded",
            "Workers provisioned and registered.",
            s.provisioned_total,
        ),
        (
            "hodei_workers_provisions_failed",
            "Failed provider create_worker calls.",
            s.provision_failures_total,
        ),
        (
            "hodei_workers_destroys",
            "Workers destroyed by their provider and unregistered.",
            s.terminated_total,
        ),
        (
            "hodei_workers_destroy_failures",
            "Failed destroy attempts (each retried with back-off).",
            s.destroy_failures_total,
        ),
        (
            "hodei_workers_unhealthy_detections",
            "Workers declared unhealthy (heartbeat or startup deadline).",
            s.unhealthy_total,
        ),
        (
            "hodei_workers_lost_jobs",
            "Jobs this manager reported lost with a worker it took out of service.",
            s.lost_jobs_total,
        ),
        (
            "hodei_workers_mass_expiry_holds",
            "Health checks held back by the mass-expiry brake.",
            s.mass_expiry_holds_total,
        ),
    ] {
        counter(enc, name, help, &[(&[], value)])?;
    }
    let held: Vec<([(&str, &str); 2], u64)> = view
        .reconcile_holds
        .iter()
        .map(|(p, k, n)| ([("provider", p.as_str()), ("kind", k.as_str())], *n))
        .collect();
    let held: Vec<(&[(&str, &str)], u64)> = held.iter().map(|(l, v)| (&l[..], *v)).collect();
    counter(
        enc,
        "hodei_workers_reconcile_holds",
        "The ticks' reconciles whose brake held a provider's listing: kind expire (records it \
         missed not expired) or orphans (instances no record knows not destroyed; only the \
         host's reconcile() ends that).",
        &held,
    )?;
    gauge(
        enc,
        "hodei_workers_provisions_in_flight",
        "Provider create_worker calls in progress.",
        None,
        &[(&[], s.in_flight as u64)],
    )?;
    // Leader state (the destroy queue, the create back-off): a replica that does not lead now
    // shows 0, as a follower that forgot it does — also one whose trust window closed without
    // a tick to forget it (stalled), which would otherwise show the old leader's numbers
    // beside the new leader's.
    let leading = view.leader.0;
    gauge(
        enc,
        "hodei_workers_destroys_pending",
        "Terminating workers whose destroy is queued or being retried (0 on a replica that \
         does not lead).",
        None,
        &[(
            &[],
            if leading {
                s.pending_destroys as u64
            } else {
                0
            },
        )],
    )?;
    let backoff: Vec<(f64, u64)> = view
        .requested
        .iter()
        .map(|(p, _)| {
            view.backoff
                .iter()
                .filter(|_| leading)
                .find(|b| &b.provider_id == p)
                .map_or((0.0, 0), |b| {
                    (
                        b.until.saturating_sub(view.now) as f64 / 1000.0,
                        u64::from(b.consecutive_failures),
                    )
                })
        })
        .collect();
    let left: Vec<(&[(&str, &str)], f64)> = labels
        .iter()
        .zip(&backoff)
        .map(|(l, (secs, _))| (&l[..], *secs))
        .collect();
    gauge(
        enc,
        "hodei_workers_provider_backoff",
        "Time left in the provider's create back-off after consecutive failures (0: none, and on a \
         replica that does not lead).",
        Some(&Unit::Seconds),
        &left,
    )?;
    let failures: Vec<(&[(&str, &str)], u64)> = labels
        .iter()
        .zip(&backoff)
        .map(|(l, (_, n))| (&l[..], *n))
        .collect();
    gauge(
        enc,
        "hodei_workers_provider_consecutive_failures",
        "Consecutive create failures of a provider that is backed off now (0: not backed off, \
         and on a replica that does not lead).",
        None,
        &failures,
    )
}

/// The per-pool families: each pool's workers per state and its demand, as of the last pools
/// tick. A pool removed since is gone from both (the removal forgets it at once).
fn encode_pools(enc: &mut DescriptorEncoder<'_>, pools: &[(String, PoolGauges)]) -> fmt::Result {
    let labels: Vec<([(&str, &str); 2], u64)> = pools
        .iter()
        .flat_map(|(name, g)| {
            WorkerState::ALL.iter().map(move |st| {
                (
                    [("pool", name.as_str()), ("state", st.as_str())],
                    g.states.get(*st) as u64,
                )
            })
        })
        .collect();
    let series: Vec<(&[(&str, &str)], u64)> = labels.iter().map(|(l, v)| (&l[..], *v)).collect();
    gauge(
        enc,
        "hodei_workers_pool_workers",
        "A pool's registered workers (label hodei.pool) per state, as of the manager's last \
         pools tick (not re-counted at scrape time).",
        None,
        &series,
    )?;
    let labels: Vec<([(&str, &str); 1], u64)> = pools
        .iter()
        .map(|(name, g)| ([("pool", name.as_str())], g.demand as u64))
        .collect();
    let series: Vec<(&[(&str, &str)], u64)> = labels.iter().map(|(l, v)| (&l[..], *v)).collect();
    gauge(
        enc,
        "hodei_workers_pool_demand",
        "Pending jobs the manager's last pools tick gave the pool to serve (interruption \
         replacements included).",
        None,
        &series,
    )
}

/// The leadership families (#14): whether this manager leads, and the term it last saw.
fn encode_leader(enc: &mut DescriptorEncoder<'_>, (leading, term): (bool, u64)) -> fmt::Result {
    gauge(
        enc,
        "hodei_workers_leader",
        "1 while this manager leads (holds the leadership lease and trusts it), else 0.",
        None,
        &[(&[], u64::from(leading))],
    )?;
    gauge(
        enc,
        "hodei_workers_leader_term",
        "The leadership lease's term as this manager last saw it (its own when leading; 0: none).",
        None,
        &[(&[], term)],
    )
}
