//! The host side: registry, manager, process provider, a job queue, and the loop that ties them
//! together — printed as a timeline, checked at the end.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::*;

use crate::process_provider::{AgentMsg, ProcessProvider};

const TICK_EVERY: Duration = Duration::from_millis(150);

/// `println!` that ignores a closed stdout (`make demo | head`): the demo still cleans up and
/// checks itself instead of panicking halfway.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// A job of the demo queue: `sleep <ms>` or `sh <command>`, run by an agent.
#[derive(Debug, Clone)]
struct Job {
    id: JobId,
    kind: &'static str,
    arg: String,
}

impl Job {
    fn new(n: usize, kind: &'static str, arg: impl Into<String>) -> Result<Job> {
        Ok(Job {
            id: JobId::new(format!("job-{n:02}"))?,
            kind,
            arg: arg.into(),
        })
    }

    fn describe(&self) -> String {
        match self.kind {
            "sleep" => format!("sleep {} ms", self.arg),
            _ => format!("sh -c '{}'", self.arg),
        }
    }
}

fn jobs(quick: bool) -> Result<Vec<Job>> {
    let full: [(&'static str, &str); 12] = [
        ("sleep", "1800"),
        ("sh", "echo compiling crate hodei-workers; sleep 1.2"),
        ("sleep", "2400"),
        ("sleep", "1400"),
        ("sh", "echo unit tests: 42 passed; sleep 1.0"),
        ("sleep", "3000"),
        ("sleep", "1600"),
        ("sh", "echo packaging $(uname -s) artifact; sleep 0.8"),
        ("sleep", "2000"),
        ("sleep", "1200"),
        ("sh", "echo lint clean; sleep 0.6"),
        ("sleep", "1800"),
    ];
    let quick_set: [(&'static str, &str); 6] = [
        ("sleep", "500"),
        ("sh", "echo compiling; sleep 0.3"),
        ("sleep", "900"),
        ("sleep", "400"),
        ("sh", "echo tests passed; sleep 0.2"),
        ("sleep", "500"),
    ];
    let set: &[(&'static str, &str)] = if quick { &quick_set } else { &full };
    set.iter()
        .enumerate()
        .map(|(i, (kind, arg))| Job::new(i + 1, kind, *arg))
        .collect()
}

fn short(id: &WorkerId) -> String {
    id.to_string()[..8].to_owned()
}

/// The printed timeline.
struct Timeline {
    start: Instant,
}

impl Timeline {
    fn log(&self, mark: &str, text: impl AsRef<str>) {
        say!(
            "[{:>5.1}s] {mark} {}",
            self.start.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }
}

/// What happened, for the summary and the self-check.
#[derive(Debug, Default)]
struct Outcome {
    total_jobs: usize,
    done: BTreeMap<JobId, WorkerId>,
    requeued: Vec<(JobId, WorkerId)>,
    killed: Option<(WorkerId, JobId, u32)>,
    unhealthy: HashSet<WorkerId>,
    peak_workers: usize,
    provisioned: usize,
    terminated: BTreeMap<&'static str, usize>,
    scaled_down_to_min: bool,
    leaked: Vec<u32>,
    live_agents: usize,
    elapsed: Duration,
    /// Sample lines of `manager.metrics_text()` at the end (see `metrics_excerpt`).
    metrics: Vec<String>,
}

impl Outcome {
    /// Everything the demo promises; each broken promise is one line.
    fn failures(&self, max_workers: usize) -> Vec<String> {
        let mut failures = Vec::new();
        if self.done.len() != self.total_jobs {
            failures.push(format!(
                "only {} of {} jobs finished: a job was lost for good",
                self.done.len(),
                self.total_jobs
            ));
        }
        match &self.killed {
            None => failures.push("no worker was killed mid-job".to_owned()),
            Some((worker, job, _)) => {
                if !self.unhealthy.contains(worker) {
                    failures.push(format!(
                        "the killed worker {} was not detected unhealthy",
                        short(worker)
                    ));
                }
                if !self.requeued.iter().any(|(j, w)| j == job && w == worker) {
                    failures.push(format!("{job} of the killed worker was not requeued"));
                }
                match self.done.get(job) {
                    Some(w) if w != worker => {}
                    Some(_) => failures.push(format!("{job} finished on the killed worker?")),
                    None => failures.push(format!("{job} was not finished elsewhere")),
                }
            }
        }
        if !self.scaled_down_to_min {
            failures.push("the fleet did not scale back down to min_ready_workers".to_owned());
        }
        if self.peak_workers > max_workers {
            failures.push(format!(
                "peak of {} workers is above max_workers {max_workers}",
                self.peak_workers
            ));
        }
        if self.live_agents > 0 || !self.leaked.is_empty() {
            failures.push(format!(
                "leaked processes: {} agents not destroyed, process groups alive: {:?}",
                self.live_agents, self.leaked
            ));
        }
        failures
    }
}

pub fn run(quick: bool) -> ExitCode {
    let config = WorkerLifecycleConfig {
        heartbeat_timeout: Duration::from_millis(1500),
        health_check_interval: Duration::from_millis(250),
        startup_timeout: Duration::from_secs(5),
        min_ready_workers: 1,
        max_workers: 4,
        scale_up_cooldown: Duration::from_millis(300),
        scale_down_cooldown: Duration::from_millis(if quick { 800 } else { 2500 }),
        max_provision_per_tick: 2,
        destroy_retry_initial: Duration::from_millis(100),
        destroy_retry_max: Duration::from_secs(1),
        provider_backoff_initial: Duration::from_millis(500),
        provider_backoff_max: Duration::from_secs(5),
        ..WorkerLifecycleConfig::default()
    };
    say!(
        "hodei-workers demo{}: real processes as workers, a job queue, one crash, autoscaling.",
        if quick { " (quick)" } else { "" }
    );
    say!(
        "  legend: # manager decision  + provisioned  ^ reported in  > job sent  v job done\n          \
         ! chaos / health check  x process gone  < job requeued  - worker destroyed"
    );
    say!(
        "  heartbeat_timeout {:.1} s, tick every {} ms, min_ready_workers {}, max_workers {}\n",
        config.heartbeat_timeout.as_secs_f64(),
        TICK_EVERY.as_millis(),
        config.min_ready_workers,
        config.max_workers
    );
    let max_workers = config.max_workers;
    match drive(config, quick) {
        Ok(outcome) => {
            print_summary(&outcome);
            let failures = outcome.failures(max_workers);
            if failures.is_empty() {
                say!("\nOK: every promise of the demo held.");
                ExitCode::SUCCESS
            } else {
                for f in &failures {
                    eprintln!("FAILED: {f}");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_summary(o: &Outcome) {
    say!("\n== summary ==");
    say!("  jobs done        {}/{}", o.done.len(), o.total_jobs);
    let requeued: Vec<String> = o
        .requeued
        .iter()
        .map(|(job, lost_on)| {
            let finished_on = o
                .done
                .get(job)
                .map(short)
                .unwrap_or_else(|| "nowhere".to_owned());
            format!(
                "{job}: lost on {} (killed), finished on {finished_on}",
                short(lost_on)
            )
        })
        .collect();
    say!(
        "  jobs requeued    {}{}",
        o.requeued.len(),
        if requeued.is_empty() {
            String::new()
        } else {
            format!(" ({})", requeued.join("; "))
        }
    );
    say!("  peak workers     {}", o.peak_workers);
    say!("  provisioned      {}", o.provisioned);
    let total: usize = o.terminated.values().sum();
    let by_reason: Vec<String> = o
        .terminated
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    say!("  terminated       {total} ({})", by_reason.join(", "));
    say!("  processes leaked {}", o.leaked.len() + o.live_agents);
    say!("  wall time        {:.1} s", o.elapsed.as_secs_f64());
    say!("\n== metrics before shutdown (excerpt of manager.metrics_text(), as scraped) ==");
    for line in &o.metrics {
        say!("  {line}");
    }
}

/// The samples of the OpenMetrics text worth showing at the end of the demo: the totals of the
/// run, the tick durations and the heartbeat ages (the full text has every family).
fn metrics_excerpt(text: &str) -> Vec<String> {
    const SHOWN: [&str; 13] = [
        "hodei_workers_jobs_assigned_total",
        "hodei_workers_jobs_released_total",
        "hodei_workers_lost_jobs_total",
        "hodei_workers_provisions_requested_total",
        "hodei_workers_provisions_succeeded_total",
        "hodei_workers_destroys_total",
        "hodei_workers_unhealthy_detections_total",
        "hodei_workers_mass_expiry_holds_total",
        "hodei_workers_tick_duration_seconds_count",
        "hodei_workers_tick_duration_seconds_sum",
        "hodei_workers_health_check_duration_seconds_count",
        "hodei_workers_heartbeat_monitored_workers",
        "hodei_workers_heartbeat_age_seconds",
    ];
    text.lines()
        .filter(|l| {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            SHOWN.contains(&name) || name == "hodei_workers_workers"
        })
        .map(str::to_owned)
        .collect()
}

/// The host loop. Every process it starts is killed and reaped before it returns (and by the
/// provider's `Drop` if it returns early with an error or panics).
fn drive(config: WorkerLifecycleConfig, quick: bool) -> Result<Outcome> {
    let t = Timeline {
        start: Instant::now(),
    };
    let deadline = Duration::from_secs(if quick { 30 } else { 50 });
    let (tx, rx) = crossbeam_channel::unbounded();
    let provider_id = ProviderId::new("local-processes")?;
    let provider = Arc::new(ProcessProvider::new(provider_id.clone(), tx)?);
    let registry: Arc<dyn WorkerRegistry> = Arc::new(InMemoryWorkerRegistry::new());
    let manager = WorkerLifecycleManager::new(registry.clone(), config.clone())?;
    manager.register_provider(provider.clone())?;
    let spec = WorkerSpec::new("hodei-demo-agent")
        .with_idle_timeout(Duration::from_secs(60))
        .with_max_lifetime(Duration::from_secs(120));
    manager.set_scaling_target(&provider_id, Arc::new(spec))?;

    let all_jobs = jobs(quick)?;
    let mut outcome = Outcome {
        total_jobs: all_jobs.len(),
        ..Outcome::default()
    };
    let kill_after_done = if quick { 1 } else { 3 };
    let mut queue: VecDeque<Job> = all_jobs.into();
    let mut running: HashMap<JobId, (WorkerId, Job, Instant)> = HashMap::new();
    t.log(
        "*",
        format!(
            "{} jobs queued; asking the manager for workers",
            queue.len()
        ),
    );

    loop {
        // 1. What the agents said.
        while let Ok((worker, msg)) = rx.try_recv() {
            let line = match msg {
                AgentMsg::Line(line) => line,
                AgentMsg::Exited => {
                    if outcome
                        .killed
                        .as_ref()
                        .is_some_and(|(w, _, _)| *w == worker)
                    {
                        t.log(
                            "x",
                            format!(
                                "process of worker {} is gone; the manager does not know yet",
                                short(&worker)
                            ),
                        );
                    }
                    continue;
                }
            };
            let mut parts = line.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                // The agent says who it is: the id it was started with.
                (Some("hello"), Some(id), _) => {
                    let said = WorkerId::parse(id);
                    if said.as_ref() != Ok(&worker) {
                        t.log(
                            "?",
                            format!("agent of {} reported in as {id:?}", short(&worker)),
                        );
                        continue;
                    }
                    let reported = registry
                        .update_state(&worker, WorkerState::Connecting)
                        .and_then(|_| registry.update_state(&worker, WorkerState::Ready));
                    if let Ok(w) = reported {
                        t.log(
                            "^",
                            format!(
                                "worker {} ({}) reported in with its id after {} ms: ready",
                                short(&worker),
                                w.handle.resource_id,
                                w.state_changed_at.saturating_sub(w.created_at)
                            ),
                        );
                    }
                }
                (Some("hb"), Some(id), _) => {
                    // NotFound: the worker was removed meanwhile; its process is being reaped.
                    if let Ok(worker) = WorkerId::parse(id) {
                        let _ = manager.process_heartbeat(&worker);
                    }
                }
                (Some("output"), Some(job), Some(text)) => {
                    t.log(" ", format!("  {job} on {}: {text}", short(&worker)));
                }
                (Some("done"), Some(job), Some(code)) => {
                    let job = JobId::new(job)?;
                    match registry.release_from_job(&worker, Some(&job)) {
                        Ok(_) => {
                            let took = running
                                .remove(&job)
                                .map(|(_, _, started)| started.elapsed().as_secs_f64())
                                .unwrap_or(0.0);
                            t.log(
                                "v",
                                format!(
                                    "{job} done on {} (exit {code}, {took:.1} s)",
                                    short(&worker)
                                ),
                            );
                            outcome.done.insert(job, worker);
                        }
                        Err(e) => t.log("?", format!("late result of {job} ignored: {e}")),
                    }
                }
                _ => t.log("?", format!("unexpected agent line {line:?}")),
            }
        }

        // 2. Hand out jobs to ready workers, atomically.
        while let Some(job) = queue.front() {
            let Some(worker) = registry.claim(&WorkerFilter::new(), job.id.clone())? else {
                break;
            };
            let Some(job) = queue.pop_front() else { break };
            let line = format!("run {} {} {}", job.id, job.kind, job.arg);
            match provider.send(&worker.id, &line) {
                Ok(()) => t.log(
                    ">",
                    format!(
                        "{} -> worker {}: {}",
                        job.id,
                        short(&worker.id),
                        job.describe()
                    ),
                ),
                // The process died under us: the health check will report the job lost.
                Err(e) => t.log(
                    "?",
                    format!("{} could not reach {}: {e}", job.id, short(&worker.id)),
                ),
            }
            running.insert(job.id.clone(), (worker.id, job, Instant::now()));
        }

        // 3. The chaos monkey: kill one worker in the middle of its job.
        if outcome.killed.is_none() && outcome.done.len() >= kill_after_done {
            let victim = running
                .iter()
                .filter(|(_, (_, _, started))| started.elapsed() >= Duration::from_millis(250))
                .map(|(job, (worker, _, _))| (job.clone(), *worker))
                .min();
            if let Some((job, worker)) = victim {
                if let Some(pid) = provider.crash(&worker) {
                    t.log(
                        "!",
                        format!(
                            "chaos: killing worker {} (pid {pid}) while it runs {job}",
                            short(&worker)
                        ),
                    );
                    outcome.killed = Some((worker, job, pid));
                }
            }
        }

        // 4. Let the manager do whatever is due; print it in the order it happened.
        let report = manager.tick(queue.len());
        log_health(&t, &report, &mut outcome);
        for lost in &report.lost_jobs {
            if let Some((_, job, _)) = running.remove(&lost.job_id) {
                t.log(
                    "<",
                    format!(
                        "{} was lost with worker {}: requeued at the front",
                        job.id,
                        short(&lost.worker_id)
                    ),
                );
                outcome.requeued.push((job.id.clone(), lost.worker_id));
                queue.push_front(job);
            }
        }
        log_scaling(&t, &report, &mut outcome);

        let stats = manager.stats()?;
        outcome.peak_workers = outcome
            .peak_workers
            .max(stats.registry.total + stats.in_flight);
        if queue.is_empty()
            && running.is_empty()
            && stats.in_flight == 0
            && stats.pending_destroys == 0
            && stats.registry.total == config.min_ready_workers
            && stats.registry.by_state.ready == config.min_ready_workers
        {
            outcome.scaled_down_to_min = true;
            t.log(
                "*",
                format!(
                    "queue empty; fleet back to {} warm worker(s)",
                    config.min_ready_workers
                ),
            );
            break;
        }
        if t.start.elapsed() > deadline {
            t.log("!", "deadline reached; stopping");
            break;
        }
        std::thread::sleep(TICK_EVERY);
    }

    // What a scrape would have shown at the end of the run, before the shutdown.
    outcome.metrics = metrics_excerpt(&manager.metrics_text());

    // Shutdown: the host is done; every remaining worker goes through the manager.
    manager.clear_scaling_target();
    for w in registry.find(&WorkerFilter::new())? {
        let r = manager.terminate_worker(&w.id, TerminationReason::Requested)?;
        for done in &r.terminated {
            *outcome.terminated.entry(done.reason.as_str()).or_default() += 1;
            t.log(
                "-",
                format!(
                    "shutdown: worker {} ({}) destroyed",
                    short(&done.worker_id),
                    done.resource_id
                ),
            );
        }
    }
    outcome.live_agents = provider.live_agents();
    // A killed process group takes a moment to disappear from the process table.
    for _ in 0..20 {
        outcome.leaked = provider.leaked_groups();
        if outcome.leaked.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    outcome.elapsed = t.start.elapsed();
    Ok(outcome)
}

/// The health part of a tick: stall, brake, unhealthy workers, retirements and destroys
/// (everything but scale-downs).
fn log_health(t: &Timeline, report: &TickReport, outcome: &mut Outcome) {
    let skip = usize::from(report.scaling.is_some());
    for line in report.decisions.iter().skip(skip) {
        t.log("#", format!("manager: {line}"));
    }
    if let Some(hold) = report.mass_expiry_held {
        t.log(
            "!",
            format!(
                "brake: {} of {} workers silent at once; none declared",
                hold.would_expire, hold.live
            ),
        );
    }
    for u in &report.unhealthy {
        outcome.unhealthy.insert(u.worker_id);
        t.log(
            "!",
            format!(
                "health check: worker {} is {} (no heartbeat for {:.1} s)",
                short(&u.worker_id),
                u.reason,
                report.at.saturating_sub(u.last_heartbeat) as f64 / 1000.0
            ),
        );
    }
    let by_health = report
        .terminated
        .iter()
        .filter(|d| d.reason != TerminationReason::ScaledDown);
    log_terminated(t, by_health, outcome);
    for f in &report.failed {
        t.log(
            "?",
            format!(
                "destroy of {} failed ({}), attempt {}; retrying with back-off",
                short(&f.worker_id),
                f.error,
                f.attempts
            ),
        );
    }
}

/// The scaling part of a tick: the decision (when it acts) and what it did.
fn log_scaling(t: &Timeline, report: &TickReport, outcome: &mut Outcome) {
    if let Some(plan) = &report.scaling {
        if plan.provision > 0 || !plan.scale_down.is_empty() {
            t.log("#", format!("manager: {}", plan.explanation));
        }
    }
    for p in &report.provisioned {
        outcome.provisioned += 1;
        t.log(
            "+",
            format!(
                "provisioned worker {} ({}): spawned, waiting for it to report in",
                short(&p.worker_id),
                p.resource_id
            ),
        );
    }
    let scaled_down = report
        .terminated
        .iter()
        .filter(|d| d.reason == TerminationReason::ScaledDown);
    log_terminated(t, scaled_down, outcome);
}

fn log_terminated<'a>(
    t: &Timeline,
    terminated: impl Iterator<Item = &'a TerminatedWorker>,
    outcome: &mut Outcome,
) {
    for d in terminated {
        *outcome.terminated.entry(d.reason.as_str()).or_default() += 1;
        t.log(
            "-",
            format!(
                "worker {} ({}) destroyed and unregistered: {}",
                short(&d.worker_id),
                d.resource_id,
                d.reason
            ),
        );
    }
}
