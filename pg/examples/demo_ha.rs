//! `make demo-ha`: two scheduler host processes share one fleet on PostgreSQL; one leads; it is
//! killed with SIGKILL mid-run; the other takes over and the run finishes.
//!
//! One binary, three roles:
//! - the **orchestrator** (no role argument): makes the registry, the job table and the jobs,
//!   starts two hosts, kills the leader, waits for the run to finish and checks it: every job
//!   ran exactly once (or was reported lost and requeued), no agent process is left, no record
//!   is left (`Terminating` or otherwise), no instance was destroyed twice. Exit status 1
//!   otherwise.
//! - a **host** (`--host NAME HOLDER URL`): a `WorkerLifecycleManager` replica
//!   (`with_leadership` on the registry's PostgreSQL lease), ticked by `start_ticker`, with a
//!   provider of real OS processes; while it leads it hands pending jobs to ready workers
//!   (`claim`) and requeues the jobs of workers that left.
//! - an **agent** (`--agent NAME WORKER_ID URL`): a worker, a real process that survives the host
//!   that started it: it reports in, heartbeats, runs the job the registry says it holds
//!   (marking it running only if it still is pending: a job runs once) and releases it.
//!
//! Needs `HODEI_PG_URL` (make demo-ha starts a throwaway server). `--quick`: the short run of
//! `make test`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use parking_lot::Mutex;

const LEASE_TTL: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--host") if args.len() == 5 => host(&args[2], &args[3], &args[4]),
        Some("--agent") if args.len() == 5 => agent(&args[2], &args[3], &args[4]),
        _ => orchestrate(args.iter().any(|a| a == "--quick")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo_ha: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = std::result::Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A plain client with the registry's schema on its search path (for the demo's job tables).
fn client(url: &str, name: &str) -> Res<postgres::Client> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).map_err(err)?;
    c.batch_execute(&format!("SET search_path TO \"{name}\""))
        .map_err(err)?;
    Ok(c)
}

/// `println!` that never panics on a closed pipe (the orchestrator may be gone).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

// ---------------------------------------------------------------------------------------------
// Processes: spawn, kill, find (by command line, so any host can destroy any agent).

fn shell_kill(args: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("kill {args}"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The agents of registry `name` alive now: worker id -> pid (zombies do not count).
fn live_agents(name: &str) -> BTreeMap<String, u32> {
    let mut found = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() >= 4 && args[1] == b"--agent" && args[2] == name.as_bytes() && alive(pid) {
            found.insert(String::from_utf8_lossy(args[3]).into_owned(), pid);
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Agents as real processes, destroyed by pid from any host.
struct ProcessProvider {
    id: ProviderId,
    kind: ProviderType,
    name: String,
    url: String,
    holder: String,
    /// Our own children, to reap them.
    children: Mutex<HashMap<WorkerId, Child>>,
    /// Set by host A's sabotage: its destroys fail from then on, so that it dies with a destroy
    /// retry pending.
    fail_destroys: AtomicBool,
    /// Armed once by the sabotage: the next create hangs after spawning the agent, so that the
    /// host dies in the middle of a provisioning.
    hang_next_create: AtomicBool,
}

impl std::fmt::Debug for ProcessProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessProvider")
            .field("id", &self.id)
            .finish()
    }
}

impl WorkerProvider for ProcessProvider {
    fn provider_id(&self) -> ProviderId {
        self.id.clone()
    }

    fn provider_type(&self) -> ProviderType {
        self.kind.clone()
    }

    fn create_worker(&self, id: WorkerId, _spec: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        let exe = std::env::current_exe().map_err(|e| ProviderError::new(e.to_string()))?;
        let child = Command::new(exe)
            .args(["--agent", &self.name, &id.to_string(), &self.url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0) // outlives its host, as a VM outlives its scheduler
            .spawn()
            .map_err(|e| ProviderError::new(format!("spawn failed: {e}")))?;
        let pid = child.id();
        self.children.lock().insert(id, child);
        if self.hang_next_create.swap(false, Ordering::SeqCst) {
            say!("CREATING-SLOW {id} pid {pid} by {}", self.holder);
            // Never returns: the orchestrator kills this host now.
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        let mut handle =
            WorkerHandle::new(self.id.clone(), self.kind.clone(), format!("pid-{pid}"));
        handle.worker_id = id;
        say!("CREATE {id} pid {pid} by {}", self.holder);
        Ok(handle)
    }

    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
        let id = handle.worker_id.to_string();
        if self.fail_destroys.load(Ordering::SeqCst) {
            say!("DESTROY-FAILED {id} by {} (sabotage)", self.holder);
            return Err(ProviderError::new("sabotaged: the cloud API is down"));
        }
        let pid = live_agents(&self.name).get(&id).copied();
        let child = self.children.lock().remove(&handle.worker_id);
        let result = match pid {
            Some(pid) => {
                shell_kill(&format!("-9 {pid}"));
                say!("DESTROY {id} killed pid {pid} by {}", self.holder);
                Ok(())
            }
            None => Err(ProviderError::not_found(format!(
                "no agent process for {id}"
            ))),
        };
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
        result
    }

    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        Ok(live_agents(&self.name)
            .into_iter()
            .filter_map(|(id, pid)| {
                let mut h =
                    WorkerHandle::new(self.id.clone(), self.kind.clone(), format!("pid-{pid}"));
                h.worker_id = id.parse().ok()?;
                Some(h)
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// The agent.

fn agent(name: &str, worker: &str, url: &str) -> Res<ExitCode> {
    let id: WorkerId = worker.parse().map_err(err)?;
    let registry = PostgresWorkerRegistry::connect(url, name).map_err(err)?;
    let mut db = client(url, name)?;
    loop {
        let me = match registry.get(&id) {
            Ok(Some(me)) => me,
            // Unregistered (or never registered: an orphan the leader will kill).
            Ok(None) => {
                std::thread::sleep(TICK);
                continue;
            }
            Err(_) => {
                std::thread::sleep(TICK);
                continue;
            }
        };
        let _ = registry.heartbeat(&id);
        match (me.state, me.current_job) {
            (WorkerState::Creating | WorkerState::Connecting, _) => {
                let _ = registry.update_state(&id, WorkerState::Ready);
            }
            (WorkerState::Busy, Some(job)) => run_job(&registry, &mut db, &id, &job)?,
            _ => std::thread::sleep(TICK),
        }
    }
}

fn run_job(
    registry: &PostgresWorkerRegistry,
    db: &mut postgres::Client,
    id: &WorkerId,
    job: &JobId,
) -> Res<()> {
    let me = id.to_string();
    // A job runs once: only a pending or assigned job becomes running, in one statement.
    let row = db
        .query_opt(
            "UPDATE demo_jobs SET state = 'running', worker = $2 \
             WHERE id = $1 AND state IN ('pending', 'assigned') RETURNING ms",
            &[&job.as_str(), &me],
        )
        .map_err(err)?;
    if let Some(row) = row {
        let ms: i32 = row.get(0);
        let until = Instant::now() + Duration::from_millis(ms as u64);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
            let _ = registry.heartbeat(id);
        }
        db.execute(
            "INSERT INTO demo_runs (job, worker) VALUES ($1, $2)",
            &[&job.as_str(), &me],
        )
        .map_err(err)?;
        db.execute(
            "UPDATE demo_jobs SET state = 'done' WHERE id = $1 AND worker = $2",
            &[&job.as_str(), &me],
        )
        .map_err(err)?;
    }
    let _ = registry.release_from_job(id, Some(job));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A host (scheduler replica).

fn host(name: &str, holder: &str, url: &str) -> Res<ExitCode> {
    let sabotage = std::env::var_os("HW_DEMO_SABOTAGE").is_some();
    let pg = PostgresWorkerRegistry::connect(url, name).map_err(err)?;
    let lease = pg.leadership(holder, LEASE_TTL).map_err(err)?;
    let registry: Arc<dyn WorkerRegistry> = Arc::new(pg);
    let config = WorkerLifecycleConfig {
        heartbeat_timeout: Duration::from_secs(2),
        health_check_interval: Duration::from_millis(400),
        startup_timeout: Duration::from_secs(10),
        min_ready_workers: 0,
        max_workers: 6,
        scale_up_cooldown: Duration::from_millis(200),
        scale_down_cooldown: Duration::from_secs(1),
        ..WorkerLifecycleConfig::default()
    };
    let manager = Arc::new(
        WorkerLifecycleManager::with_leadership(
            registry.clone(),
            config,
            Arc::new(lease),
            Arc::new(SystemClock::new()),
        )
        .map_err(err)?,
    );
    let provider = Arc::new(ProcessProvider {
        id: ProviderId::new("processes").map_err(err)?,
        kind: ProviderType::custom("process").map_err(err)?,
        name: name.to_owned(),
        url: url.to_owned(),
        holder: holder.to_owned(),
        children: Mutex::new(HashMap::new()),
        fail_destroys: AtomicBool::new(false),
        hang_next_create: AtomicBool::new(false),
    });
    manager.register_provider(provider.clone()).map_err(err)?;
    let spec = Arc::new(WorkerSpec::new("agent").with_idle_timeout(Duration::from_secs(2)));
    manager
        .set_scaling_target(&provider.id, spec)
        .map_err(err)?;

    // The demand: pending jobs, read on the ticker's thread from a client of its own.
    let demand_db = Mutex::new(client(url, name)?);
    let me = holder.to_owned();
    let was_leading = AtomicBool::new(false);
    let ticker = manager
        .start_ticker_with(
            TICK,
            move || {
                demand_db
                    .lock()
                    .query_one(
                        "SELECT count(*) FROM demo_jobs WHERE state = 'pending'",
                        &[],
                    )
                    .map(|r| r.get::<_, i64>(0) as usize)
                    .unwrap_or(0)
            },
            move |report| {
                if report.leading && !was_leading.swap(true, Ordering::Relaxed) {
                    let l = report.leader.clone().expect("a leader leads");
                    say!("LEADER {me} term {} since {}", l.term, l.since);
                }
                if !report.leading && was_leading.swap(false, Ordering::Relaxed) {
                    say!("FOLLOWER {me}");
                }
                for d in &report.decisions {
                    if d.starts_with("took the lease") || d.starts_with("takeover") {
                        say!("NOTE {me}: {d}");
                    }
                }
                for lost in &report.lost_jobs {
                    say!("LOST {} on {}", lost.job_id, lost.worker_id);
                }
            },
        )
        .map_err(err)?;

    // Stop when the orchestrator closes our stdin.
    let quit = Arc::new(AtomicBool::new(false));
    {
        let quit = Arc::clone(&quit);
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
            quit.store(true, Ordering::Relaxed);
        });
    }
    let mut db = client(url, name)?;
    let mut sabotaged = false;
    while !quit.load(Ordering::Relaxed) {
        if manager.is_leader() {
            sweep(&mut db, registry.as_ref())?;
            dispatch(&mut db, registry.as_ref())?;
            if sabotage && !sabotaged {
                sabotaged = sabotage_step(&mut db, &manager, &provider)?;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ticker.stop();
    // Wind down: the leader retires the fleet, then steps down.
    if manager.is_leader() {
        for w in registry.find(&WorkerFilter::new()).map_err(err)? {
            let _ = manager.terminate_worker(&w.id, TerminationReason::Requested);
        }
        let _ = manager.step_down();
    }
    say!("EXIT {holder}");
    Ok(ExitCode::SUCCESS)
}

/// Host A's sabotage, once a job runs: terminate that job's worker (its destroy fails: a
/// `Terminating` record with a retry pending; the job is reported lost), then start a
/// provisioning that hangs inside the provider (an agent process no record knows yet). Prints
/// `SABOTAGE-READY` when both are under way: the orchestrator kills this host then.
fn sabotage_step(
    db: &mut postgres::Client,
    manager: &Arc<WorkerLifecycleManager>,
    provider: &Arc<ProcessProvider>,
) -> Res<bool> {
    let Some(row) = db
        .query_opt(
            "SELECT worker FROM demo_jobs WHERE state = 'running' ORDER BY id LIMIT 1",
            &[],
        )
        .map_err(err)?
    else {
        return Ok(false);
    };
    let Ok(worker) = row.get::<_, String>(0).parse::<WorkerId>() else {
        return Ok(false);
    };
    // Armed first: whichever create comes next (the autoscaler replacing the lost job's
    // worker, or the provisioning below) hangs.
    provider.hang_next_create.store(true, Ordering::SeqCst);
    provider.fail_destroys.store(true, Ordering::SeqCst);
    let r = manager
        .terminate_worker(&worker, TerminationReason::Requested)
        .map_err(err)?;
    for lost in &r.lost_jobs {
        say!("LOST {} on {}", lost.job_id, lost.worker_id);
    }
    let (m, pid) = (Arc::clone(manager), provider.id.clone());
    std::thread::spawn(move || {
        let _ = m.provision_worker(&pid, Arc::new(WorkerSpec::new("agent")));
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while provider.hang_next_create.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            return Err("the sabotaged create never started".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    say!("SABOTAGE-READY");
    Ok(true)
}

/// Hands pending jobs to ready workers: `claim` picks and assigns atomically (a job is held by
/// at most one worker); the agent marks it running.
fn dispatch(db: &mut postgres::Client, registry: &dyn WorkerRegistry) -> Res<()> {
    let pending = db
        .query(
            "SELECT id FROM demo_jobs WHERE state = 'pending' ORDER BY id",
            &[],
        )
        .map_err(err)?;
    for row in pending {
        let job = JobId::new(row.get::<_, String>(0)).map_err(err)?;
        match registry.claim(&WorkerFilter::new(), job.clone()) {
            Ok(Some(w)) => {
                // Assigned: no longer demand (the agent makes it running).
                db.execute(
                    "UPDATE demo_jobs SET state = 'assigned', worker = $2 \
                     WHERE id = $1 AND state = 'pending'",
                    &[&job.as_str(), &w.id.to_string()],
                )
                .map_err(err)?;
                say!("ASSIGN {job} to {}", w.id)
            }
            Ok(None) => break,  // no ready worker
            Err(_) => continue, // held already: on its way to running
        }
    }
    Ok(())
}

/// Requeues the assigned or running jobs whose worker left (unregistered, terminating, or holding no
/// longer this job): the job was lost with it.
fn sweep(db: &mut postgres::Client, registry: &dyn WorkerRegistry) -> Res<()> {
    let running = db
        .query(
            "SELECT id, worker FROM demo_jobs WHERE state IN ('assigned', 'running')",
            &[],
        )
        .map_err(err)?;
    for row in running {
        let (job, worker): (String, String) = (row.get(0), row.get(1));
        let Ok(id) = worker.parse::<WorkerId>() else {
            continue;
        };
        let gone = match registry.get(&id) {
            Ok(None) => true,
            Ok(Some(w)) => {
                w.state.is_terminal() || w.current_job.as_ref().map(JobId::as_str) != Some(&job)
            }
            Err(_) => false,
        };
        if gone {
            let n = db
                .execute(
                    "UPDATE demo_jobs SET state = 'pending', worker = NULL, \
                     requeues = requeues + 1 \
                     WHERE id = $1 AND state IN ('assigned', 'running') AND worker = $2",
                    &[&job, &worker],
                )
                .map_err(err)?;
            if n == 1 {
                say!("REQUEUE {job} (worker {worker} left)");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The orchestrator.

struct Host {
    holder: String,
    child: Child,
}

fn orchestrate(quick: bool) -> Res<ExitCode> {
    let url = std::env::var("HODEI_PG_URL").map_err(|_| {
        "HODEI_PG_URL must name a PostgreSQL server (make demo-ha starts a throwaway one)"
            .to_owned()
    })?;
    let name = format!("demo_ha_{}", &WorkerId::new().to_string()[..8]);
    let start = Instant::now();
    let t = move || format!("{:6.2}s", start.elapsed().as_secs_f64());

    let registry = PostgresWorkerRegistry::connect(&url, &name).map_err(err)?;
    let events = registry
        .subscribe(SubscribeOptions::default())
        .map_err(err)?;
    let mut db = client(&url, &name)?;
    db.batch_execute(
        "CREATE TABLE demo_jobs (id text PRIMARY KEY, ms int NOT NULL, state text NOT NULL \
         DEFAULT 'pending', worker text, requeues int NOT NULL DEFAULT 0);
         CREATE TABLE demo_runs (job text NOT NULL, worker text NOT NULL, at timestamptz NOT \
         NULL DEFAULT clock_timestamp());",
    )
    .map_err(err)?;
    let jobs: Vec<i32> = if quick {
        vec![600, 900, 700, 1200, 500, 800, 1000, 600]
    } else {
        vec![
            1800, 1200, 2400, 1400, 1000, 3000, 1600, 800, 2000, 1200, 600, 1800,
        ]
    };
    // Four jobs first: four workers, one slot left under max_workers for the sabotaged create.
    let half = 4;
    let queue = |db: &mut postgres::Client, from: usize, to: usize| -> Res<()> {
        for (i, ms) in jobs.iter().enumerate().take(to).skip(from) {
            db.execute(
                "INSERT INTO demo_jobs (id, ms) VALUES ($1, $2)",
                &[&format!("job-{:02}", i + 1), ms],
            )
            .map_err(err)?;
        }
        Ok(())
    };
    queue(&mut db, 0, half)?;
    say!("{} registry {name} on PostgreSQL, {half} jobs queued", t());

    let (lines_tx, lines) = crossbeam_channel::unbounded::<(String, String)>();
    let spawn_host = |holder: &str, sabotage: bool| -> Res<Host> {
        let exe = std::env::current_exe().map_err(err)?;
        let mut command = Command::new(exe);
        if sabotage {
            command.env("HW_DEMO_SABOTAGE", "1");
        }
        let mut child = command
            .args(["--host", &name, holder, &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(err)?;
        let out = child.stdout.take().expect("piped");
        let tx = lines_tx.clone();
        let h = holder.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(out)
                .lines()
                .map_while(std::result::Result::ok)
            {
                let _ = tx.send((h.clone(), line));
            }
        });
        Ok(Host {
            holder: holder.to_owned(),
            child,
        })
    };

    let mut log: Vec<(String, String)> = Vec::new();
    let mut wait_for = |what: &dyn Fn(&str, &str) -> bool, limit: Duration| -> Res<()> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok((h, line)) => {
                    say!("{} [{h}] {line}", t());
                    let hit = what(&h, &line);
                    log.push((h, line));
                    if hit {
                        return Ok(());
                    }
                }
                Err(_) if Instant::now() >= deadline => {
                    return Err("timed out waiting for the hosts".to_owned())
                }
                Err(_) => {
                    if what("", "") {
                        return Ok(());
                    }
                }
            }
        }
    };

    let mut a = spawn_host("host-a", true)?;
    wait_for(
        &|h, l| h == "host-a" && l.starts_with("LEADER"),
        Duration::from_secs(20),
    )?;
    let mut b = spawn_host("host-b", false)?;

    // Let jobs flow until host-a is in the middle of a provisioning (an agent started, not yet
    // registered) and of a destroy retry (a Terminating worker whose destroy failed), then
    // kill it.
    wait_for(
        &|h, l| h == "host-a" && l == "SABOTAGE-READY",
        Duration::from_secs(30),
    )?;
    a.child.kill().map_err(err)?; // SIGKILL
    let _ = a.child.wait();
    let killed_at = Instant::now();
    say!(
        "{} *** killed the leader {} with SIGKILL (mid-provisioning, mid-destroy-retry) ***",
        t(),
        a.holder
    );
    queue(&mut db, half, jobs.len())?;
    say!("{} {} more jobs queued", t(), jobs.len() - half);

    wait_for(
        &|h, l| h == "host-b" && l.starts_with("LEADER"),
        Duration::from_secs(30),
    )?;
    let failover = killed_at.elapsed();
    say!(
        "{} *** {} took over {:.2} s after the kill (lease ttl {:.1} s) ***",
        t(),
        b.holder,
        failover.as_secs_f64(),
        LEASE_TTL.as_secs_f64()
    );

    // Chaos: kill -9 the agent of a running job. Its worker goes silent, the new leader's
    // health check declares it unhealthy (the job is reported lost) and the job is requeued.
    let mut victim = None;
    for _ in 0..100 {
        let row = db
            .query_opt(
                "SELECT id, worker FROM demo_jobs WHERE state = 'running' ORDER BY id LIMIT 1",
                &[],
            )
            .map_err(err)?;
        if let Some(row) = row {
            let (job, worker): (String, String) = (row.get(0), row.get(1));
            if let Some(pid) = live_agents(&name).get(&worker) {
                shell_kill(&format!("-9 {pid}"));
                say!(
                    "{} *** killed the agent of {job} (worker {worker}, pid {pid}) ***",
                    t()
                );
                victim = Some(job);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let all_done = |db: &mut postgres::Client| -> bool {
        db.query_one("SELECT count(*) FROM demo_jobs WHERE state <> 'done'", &[])
            .map(|r| r.get::<_, i64>(0) == 0)
            .unwrap_or(false)
    };
    wait_for(
        &|_, _| all_done(&mut client(&url, &name).expect("db")),
        Duration::from_secs(if quick { 60 } else { 120 }),
    )?;
    say!("{} every job is done; winding down {}", t(), b.holder);
    drop(b.child.stdin.take()); // the host's signal to stop
    wait_for(
        &|h, l| h == "host-b" && l.starts_with("EXIT"),
        Duration::from_secs(30),
    )?;
    let _ = b.child.wait();
    while let Ok((h, line)) = lines.try_recv() {
        log.push((h, line));
    }

    // ----- the self-check -----
    let mut failures = Vec::new();
    let runs = db
        .query(
            "SELECT j.id, j.requeues, count(r.job) FROM demo_jobs j LEFT JOIN demo_runs r \
             ON r.job = j.id GROUP BY j.id, j.requeues ORDER BY j.id",
            &[],
        )
        .map_err(err)?;
    let mut requeued = 0;
    for row in &runs {
        let (job, requeues, n): (String, i32, i64) = (row.get(0), row.get(1), row.get(2));
        requeued += requeues;
        if n == 0 {
            failures.push(format!("{job} never ran (lost)"));
        } else if n > 1 + i64::from(requeues) {
            failures.push(format!("{job} ran {n} times with {requeues} requeues"));
        }
    }
    let takeover = log
        .iter()
        .find(|(h, l)| h == "host-b" && l.contains("takeover reconcile:"))
        .map(|(_, l)| l.clone());
    match &takeover {
        // The sabotaged worker; and the hung create's agent (or two, when the autoscaler
        // was provisioning at the same moment).
        Some(l) if l.contains("1 Terminating adopted") && !l.contains(" 0 orphan") => {}
        other => failures.push(format!(
            "host-b's takeover did not adopt the Terminating record and the orphan: {other:?}"
        )),
    }
    let mut killed: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, line) in &log {
        if let Some(rest) = line.strip_prefix("DESTROY ") {
            if let Some(id) = rest.split_whitespace().next() {
                *killed.entry(id).or_default() += 1;
            }
        }
    }
    for (id, n) in &killed {
        if *n > 1 {
            failures.push(format!("worker {id} destroyed {n} times"));
        }
    }
    let leaked = live_agents(&name);
    if !leaked.is_empty() {
        failures.push(format!("agent processes left running: {leaked:?}"));
        for pid in leaked.values() {
            shell_kill(&format!("-9 {pid}"));
        }
    }
    let left = registry.find(&WorkerFilter::new()).map_err(err)?;
    if !left.is_empty() {
        failures.push(format!(
            "{} records left in the registry: {:?}",
            left.len(),
            left.iter().map(|w| (w.id, w.state)).collect::<Vec<_>>()
        ));
    }
    let changes: Vec<String> = events
        .drain()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::LeaderChanged { holder, term, by } => Some(format!(
                "term {term}: {} (seen by {by})",
                holder.unwrap_or_else(|| "?".to_owned())
            )),
            _ => None,
        })
        .collect();

    say!("");
    say!("== failover ==");
    for c in &changes {
        say!("  leader changed: {c}");
    }
    if let Some(l) = &takeover {
        say!(
            "  {}",
            l.split_once(": ").map_or(l.as_str(), |(_, rest)| rest)
        );
    }
    say!(
        "  host-a killed; host-b leading {:.2} s later (lease ttl {:.1} s)",
        failover.as_secs_f64(),
        LEASE_TTL.as_secs_f64()
    );
    say!("== self-check ==");
    say!("  jobs: {} done, {requeued} requeued", runs.len());
    if let Some(job) = &victim {
        let r: i32 = db
            .query_one("SELECT requeues FROM demo_jobs WHERE id = $1", &[job])
            .map(|r| r.get(0))
            .map_err(err)?;
        say!("  {job}: its agent was killed mid-run, requeued {r} time(s), then finished");
        if r == 0 {
            failures.push(format!("{job} lost its agent but was never requeued"));
        }
    }
    say!("  instances destroyed: {} (none twice)", killed.len());
    say!("  agent processes left: {}", live_agents(&name).len());
    say!("  registry records left: {}", left.len());
    drop(events);
    drop(registry);
    let _ = PostgresWorkerRegistry::drop_schema(&url, &name);
    if failures.is_empty() {
        say!("  OK");
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            say!("  FAILED: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}
