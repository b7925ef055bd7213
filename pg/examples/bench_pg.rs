//! `make bench-pg`: the PostgreSQL registry at 1M workers, each figure beside the raw floor (the
//! same work done by plain statements from a plain client) measured in the same run, so that
//! the ratio holds whatever else the machine is doing.
//!
//! ```text
//! HODEI_PG_URL=... cargo run --release -p hodei-workers-postgres --example bench_pg -- \
//!     [--workers N] [--out FILE.json] [--only many,callers,lone,claim,stats,unhealthy,fenced,resource,silent,nomatch,noprovider]
//! ```
//! (`--out` also writes the table to FILE.md; `--only` runs only the rows named.)
//! ```text
//! ```
//!
//! Uses (and drops first and afterwards) the registry `bench_pg` on the server of
//! `HODEI_PG_URL`. `make bench-pg` runs it in a throwaway server (scripts/bench-pg.sh: durable
//! settings, `fsync` on).
//!
//! # Rows
//! - **fill**: N `Ready` workers made in an in-memory registry and `restore`d into PostgreSQL
//!   (one transaction of array `INSERT`s through the registry's own schema); then `VACUUM
//!   ANALYZE` and the grace floor that `restore` sets is put back to the beginning of time (a
//!   long-running fleet, not one just restored).
//! - **heartbeat_many** in batches of 1,000 over the whole fleet vs the raw `UPDATE heartbeats
//!   … FROM unnest($ids)` of the same batches; alternating blocks of 10 batches each. The raw
//!   heartbeat floors (this row and the next two) run with `synchronous_commit = off`, as the
//!   registry's heartbeats commit.
//! - **64 callers**: 64 threads calling `heartbeat` on distinct workers (the registry coalesces
//!   them) vs 64 threads each with its own connection running the raw single-row `UPDATE`.
//! - **lone heartbeat**: one thread, `heartbeat` vs the raw single-row `UPDATE`; alternating
//!   blocks of 100 (60 each).
//!
//! The alternating rows report the median rate of their blocks (see `alternate`).
//! - **claim + release**: 2 OS processes (this program with `--child`), each its own registry,
//!   `claim` then `release_from_job` (synchronous commit) vs the raw pair: an `UPDATE … WHERE id
//!   = (SELECT … FOR UPDATE SKIP LOCKED)` and an `UPDATE` back to ready, on the same table.
//! - **stats()** at N vs the raw read of the same counter rows.
//! - **find_unhealthy** at N with 0.1% due vs the raw `SELECT` of the due records (a join of the
//!   heartbeat scan and the records, the cutoff read first and passed as a value).
//! - **fenced state move**: a leader's `update_state` (`Ready → Draining → Ready`) through the
//!   store-fenced view of its term (`WorkerRegistry::fenced`: the lease row read `FOR SHARE` in
//!   the statement that locks the worker) vs the same calls on the registry itself;
//!   alternating blocks of 100.
//! - **find_by_resource_ids** of 3 resource ids (2 held, 1 not) on the provider that holds the
//!   whole fleet, as the lifecycle manager's orphan retries ask every tick vs the raw `SELECT`
//!   of the same rows (`provider_id = $1 AND resource_id = ANY($2)`, the same statement without
//!   the registry's decoding); medians of 51 calls.
//! - **claim, `unhealthy_for` none meets**: `claim` with `unhealthy_for(1 day)` on the whole
//!   fleet `Ready` and every heartbeat recent (the answer is "no worker") vs the raw passes over
//!   the heartbeats that such a claim cannot do with less: `count(*)` of the rows silent since
//!   the cutoff, twice, as a claim that finds no worker runs its statement twice (skipping
//!   locked rows, then waiting on them); medians of 11 calls.
//! - **claim for a pool with no ready worker**: 10 workers of a spec labelled `pool=gpu`
//!   registered and each given a job (a pool whose workers are all busy), then `claim` with the
//!   filter `pool=gpu` beside the N ready workers of spec `img` (the answer is "no worker") vs
//!   the raw question such a claim cannot do without: one `SELECT` of whether a ready worker
//!   has a spec with that label (the claim's gate: the distinct spec keys of the ready workers,
//!   at most 64, walked through schema v8's `workers_ready_spec`, each key's spec read by its
//!   primary key; on a schema without that index the same `SELECT` reads every ready worker);
//!   medians of 11 calls. (Since 2026-12-08, later: the gate walks the classes — spec,
//!   provider id, provider type — of schema v9's `workers_ready_class`; the raw question is
//!   still the v8 one, by spec, which v9's index answers as well.)
//! - **claim for a provider with no ready worker** (`noprovider`): 10 Kubernetes workers
//!   (provider `k8s`) registered and each given a job, then `claim` with the filter
//!   `provider_type = Kubernetes` beside the N ready Docker workers (the answer is "no
//!   worker": a job pinned to Kubernetes while the Docker fleet is idle) vs the raw question
//!   such a claim cannot do without: one `SELECT` of whether a ready worker of that class
//!   exists (the gate of schema v9: the distinct (spec, provider id, provider type) of the
//!   ready workers, at most 64, walked through `workers_ready_class`; on a schema without
//!   that index the same `SELECT` sorts the ready workers for each probe); medians of 11
//!   calls. The claim by `provider_id = k8s` is printed beside it (not in the table: the
//!   planner may answer that one from `workers_provider_resource`, the provider being small).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use postgres::{Client, NoTls};

const NAME: &str = "bench_pg";
const BATCH: usize = 1000;
const CALLERS: usize = 64;
/// How long each side of the timed-loop rows runs in all, in [`ROUNDS`] turns alternating with
/// the other side (so that a change of the machine's load during the row hits both).
const PHASE: Duration = Duration::from_secs(8);
const ROUNDS: u32 = 2;

fn url() -> String {
    std::env::var("HODEI_PG_URL").expect("HODEI_PG_URL (make bench-pg sets it)")
}

/// A plain client on the bench's schema. `async_commit`: `synchronous_commit = off` for the
/// session, as the registry's heartbeats commit (pg/src/heartbeat.rs), so that the heartbeat
/// rows compare the same work.
fn raw_session(url: &str, async_commit: bool) -> Client {
    let mut c = raw_client(url);
    if async_commit {
        c.batch_execute("SET synchronous_commit = off")
            .expect("set");
    }
    c
}

fn raw_client(url: &str) -> Client {
    let mut c = Client::connect(url, NoTls).expect("raw client");
    // As the registry's connections: no JIT (see its pool).
    c.batch_execute(&format!("SET search_path TO {NAME}; SET jit = off"))
        .expect("search_path");
    c
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn uuids(ids: &[WorkerId]) -> Vec<uuid::Uuid> {
    ids.iter().map(|id| *id.as_uuid()).collect()
}

/// One row of the table.
struct Row {
    name: String,
    ours: f64,
    raw: f64,
    unit: &'static str,
    target: String,
    /// Higher is better (a rate) or lower is better (a time).
    rate: bool,
}

impl Row {
    fn ratio(&self) -> f64 {
        if self.rate {
            self.ours / self.raw
        } else {
            self.raw / self.ours
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], args[3].parse().expect("start ms"), &args[4]);
        return;
    }
    let mut workers = 1_000_000usize;
    let mut out: Option<String> = None;
    let mut only: Option<String> = None;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--workers" => {
                workers = args[i + 1].parse().expect("--workers N");
                i += 1;
            }
            "--only" => {
                only = Some(args[i + 1].clone());
                i += 1;
            }
            "--out" => {
                out = Some(args[i + 1].clone());
                i += 1;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    run(workers, out.as_deref(), only.as_deref());
}

fn run(n: usize, out: Option<&str>, only: Option<&str>) {
    let url = url();
    let load_before = load();
    println!("bench-pg: {n} workers; load average before: {load_before}");
    let mut admin = Client::connect(&url, NoTls).expect("admin client");
    let settings: Vec<String> = [
        "server_version",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "shared_buffers",
    ]
    .iter()
    .map(|s| {
        let v: String = admin
            .query_one(&format!("SHOW {s}"), &[])
            .expect("SHOW")
            .get(0);
        format!("{s}={v}")
    })
    .collect();
    println!("server: {}", settings.join(" "));

    let _ = PostgresWorkerRegistry::drop_schema(&url, NAME);
    let registry = Arc::new(PostgresWorkerRegistry::connect(&url, NAME).expect("connect"));
    let (ids, fill_secs) = fill(&registry, n);
    println!("fill: {n} workers restored in {fill_secs:.1} s (+ VACUUM ANALYZE)");
    let mut raw = raw_client(&url);
    let mut raw_async = raw_session(&url, true);
    let mut rows = Vec::new();

    let want = |row: &str| only.is_none_or(|o| o.split(',').any(|r| r == row));
    if want("many") {
        rows.push(heartbeat_many(&registry, &mut raw_async, &ids));
    }
    if want("callers") {
        rows.push(callers(&registry, &url, &ids));
    }
    if want("lone") {
        rows.push(lone(&registry, &mut raw_async, &ids));
    }
    if want("claim") {
        rows.push(claim_release());
    }
    if want("stats") {
        rows.push(stats(&registry, &mut raw, n));
    }
    if want("unhealthy") {
        rows.push(unhealthy(&registry, &mut raw, &ids));
    }
    if want("fenced") {
        rows.push(fenced(&registry, &ids));
    }
    if want("resource") {
        rows.push(by_resource(&registry, &mut raw, n));
    }
    if want("silent") {
        rows.push(claim_silent(&registry, &mut raw));
    }
    if want("nomatch") {
        rows.push(claim_nomatch(&registry, &mut raw));
    }
    if want("noprovider") {
        rows.push(claim_noprovider(&registry, &mut raw));
    }

    let load_after = load();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| row ({n} workers) | ours | raw floor | ours / raw | target |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---|");
    for r in &rows {
        let fmt = |v: f64| {
            if r.rate {
                format!("{:.0} {}", v, r.unit)
            } else {
                format!("{:.3} {}", v, r.unit)
            }
        };
        let _ = writeln!(
            table,
            "| {} | {} | {} | {:.2} | {} |",
            r.name,
            fmt(r.ours),
            fmt(r.raw),
            r.ratio(),
            r.target
        );
    }
    println!("\n{table}");
    println!("fill: {fill_secs:.1} s; load average before: {load_before}, after: {load_after}");
    println!("server: {}", settings.join(" "));
    if let Some(path) = out {
        let json = serde_json::json!({
            "workers": n,
            "fill_seconds": fill_secs,
            "load_before": load_before,
            "load_after": load_after,
            "server": settings,
            "rows": rows.iter().map(|r| serde_json::json!({
                "row": r.name, "ours": r.ours, "raw": r.raw, "unit": r.unit,
                "ratio": r.ratio(), "target": r.target,
            })).collect::<Vec<_>>(),
            "table": table,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json).unwrap()).expect("write --out");
        let md = std::path::Path::new(path).with_extension("md");
        let text = format!(
            "{table}\nfill: {fill_secs:.1} s; load average before: {load_before}, after: \
             {load_after}\nserver: {}\n",
            settings.join(" ")
        );
        std::fs::write(md, text).expect("write the table");
    }
    drop(registry);
    // BENCH_PG_KEEP=1 keeps the fleet for a look with psql.
    if std::env::var_os("BENCH_PG_KEEP").is_none() {
        PostgresWorkerRegistry::drop_schema(&url, NAME).expect("drop schema");
    }
}

/// N ready workers, restored from an in-memory registry in one transaction.
fn fill(registry: &PostgresWorkerRegistry, n: usize) -> (Vec<WorkerId>, f64) {
    let memory = InMemoryWorkerRegistry::new();
    let spec = Arc::new(WorkerSpec::new("img"));
    let provider = ProviderId::new("bench").unwrap();
    let ids: Vec<WorkerId> = (0..n)
        .map(|i| {
            let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("c{i}"));
            let w = memory.register(handle, spec.clone()).unwrap();
            memory.update_state(&w.id, WorkerState::Ready).unwrap();
            w.id
        })
        .collect();
    let snapshot = memory.snapshot().unwrap();
    drop(memory);
    let t = Instant::now();
    registry.restore(snapshot).expect("restore");
    let secs = t.elapsed().as_secs_f64();
    let mut raw = raw_client(&url());
    // A long-running fleet: no grace period from the restore.
    for sql in [
        "UPDATE meta SET grace_floor = -9223372036854775807 - 1",
        "VACUUM ANALYZE workers",
        "VACUUM ANALYZE heartbeats",
        "VACUUM ANALYZE known_ids",
    ] {
        raw.batch_execute(sql).expect(sql);
    }
    (ids, secs)
}

/// Runs `ours` and `raw` in alternating blocks until each has had `blocks` turns; returns the
/// median rate (items per second) of each side's blocks. Short blocks, interleaved, and the
/// median: a burst of load from elsewhere on the shared machine spoils a few blocks of either
/// side instead of one side's total.
fn alternate(
    blocks: usize,
    mut ours: impl FnMut(usize) -> usize,
    mut raw: impl FnMut(usize) -> usize,
) -> (f64, f64) {
    let (mut o, mut r) = (Vec::new(), Vec::new());
    for b in 0..blocks {
        let t = Instant::now();
        let n = ours(b);
        o.push(n as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let n = raw(b);
        r.push(n as f64 / t.elapsed().as_secs_f64());
    }
    (median(o), median(r))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn heartbeat_many(registry: &PostgresWorkerRegistry, raw: &mut Client, ids: &[WorkerId]) -> Row {
    let stmt = raw
        .prepare(
            "UPDATE heartbeats h SET last_heartbeat = $2 FROM unnest($1::uuid[]) AS x(id) \
             WHERE h.id = x.id",
        )
        .unwrap();
    let chunks: Vec<&[WorkerId]> = ids.chunks(BATCH).collect();
    let per_block = 10;
    let blocks = chunks.len().div_ceil(per_block);
    let stamp: i64 = i64::MIN + 1_800_000_000_000;
    let (ours, floor) = alternate(
        blocks,
        |b| {
            let mut done = 0;
            for chunk in chunks.iter().skip(b * per_block).take(per_block) {
                let answers = registry.heartbeat_many(chunk).unwrap();
                assert!(answers.iter().all(|a| a.is_ok()));
                done += chunk.len();
            }
            done
        },
        |b| {
            let mut done = 0;
            for chunk in chunks.iter().skip(b * per_block).take(per_block) {
                let n = raw.execute(&stmt, &[&uuids(chunk), &stamp]).unwrap();
                assert_eq!(n as usize, chunk.len());
                done += chunk.len();
            }
            done
        },
    );
    println!("heartbeat_many x{BATCH}: {ours:.0}/s, raw {floor:.0}/s");
    Row {
        name: format!("`heartbeat_many`, batches of {BATCH} (rows/s)"),
        ours,
        raw: floor,
        unit: "/s",
        target: "≥ 50,000/s".into(),
        rate: true,
    }
}

/// `CALLERS` threads for `PHASE`, each on its own slice of the fleet; returns calls per second.
fn threads(ids: &[WorkerId], each: impl Fn(usize) -> Box<dyn FnMut(&WorkerId) + Send>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(CALLERS + 1));
    let slice = ids.len() / CALLERS;
    let handles: Vec<_> = (0..CALLERS)
        .map(|t| {
            let mut call = each(t);
            let mine: Vec<WorkerId> = ids[t * slice..(t + 1) * slice].to_vec();
            let (stop, count, barrier) = (stop.clone(), count.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    call(&mine[i % mine.len()]);
                    i += 1;
                }
                count.fetch_add(i as u64, Ordering::Relaxed);
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    std::thread::sleep(PHASE / ROUNDS);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

fn callers(registry: &Arc<PostgresWorkerRegistry>, url: &str, ids: &[WorkerId]) -> Row {
    let (mut ours, mut floor) = (0.0, 0.0);
    for _ in 0..ROUNDS {
        ours += threads(ids, |_| {
            let registry = registry.clone();
            Box::new(move |id| registry.heartbeat(id).unwrap())
        });
        floor += threads(ids, |_| {
            let mut c = raw_session(url, true);
            let stmt = c
                .prepare("UPDATE heartbeats SET last_heartbeat = $2 WHERE id = $1")
                .unwrap();
            let stamp: i64 = i64::MIN + 1_800_000_000_000;
            Box::new(move |id| {
                assert_eq!(c.execute(&stmt, &[id.as_uuid(), &stamp]).unwrap(), 1);
            })
        });
    }
    let (ours, floor) = (ours / f64::from(ROUNDS), floor / f64::from(ROUNDS));
    println!("{CALLERS} callers: {ours:.0}/s, raw ({CALLERS} connections) {floor:.0}/s");
    Row {
        name: format!(
            "{CALLERS} threads calling `heartbeat` (coalesced) vs {CALLERS} raw connections \
             (single-row `UPDATE`)"
        ),
        ours,
        raw: floor,
        unit: "/s",
        target: "≥ 50,000/s".into(),
        rate: true,
    }
}

fn lone(registry: &PostgresWorkerRegistry, raw: &mut Client, ids: &[WorkerId]) -> Row {
    let stmt = raw
        .prepare("UPDATE heartbeats SET last_heartbeat = $2 WHERE id = $1")
        .unwrap();
    let stamp: i64 = i64::MIN + 1_800_000_000_000;
    let block = 100;
    let blocks = 60.min(ids.len() / block).max(1);
    let (ours, floor) = alternate(
        blocks,
        |b| {
            for id in ids.iter().skip(b * block).take(block) {
                registry.heartbeat(id).unwrap();
            }
            block
        },
        |b| {
            for id in ids.iter().skip(b * block).take(block) {
                raw.execute(&stmt, &[id.as_uuid(), &stamp]).unwrap();
            }
            block
        },
    );
    println!("lone heartbeat: {ours:.0}/s, raw {floor:.0}/s");
    Row {
        name: "lone `heartbeat` vs raw single-row `UPDATE`".into(),
        ours,
        raw: floor,
        unit: "/s",
        target: "≥ 0.80 × raw".into(),
        rate: true,
    }
}

/// What store-side fencing costs a leader's write: the same state moves through the fenced
/// view of its term and through the registry itself.
fn fenced(registry: &Arc<PostgresWorkerRegistry>, ids: &[WorkerId]) -> Row {
    let lease = registry
        .leadership("bench", Duration::from_secs(600))
        .expect("lease");
    let term = match lease.acquire_or_renew(None).expect("acquire") {
        LeaseStatus::Held(info) => info.term,
        other => panic!("the bench lease is taken: {other:?}"),
    };
    let view = registry
        .fenced(&lease, term)
        .expect("a view of the own store");
    let block = 50;
    let blocks = 40.min(ids.len() / (2 * block)).max(1);
    let moves = |r: &dyn WorkerRegistry, ids: &[WorkerId]| {
        for id in ids {
            r.update_state(id, WorkerState::Draining).unwrap();
            r.update_state(id, WorkerState::Ready).unwrap();
        }
        2 * ids.len()
    };
    // Distinct workers for each side, so neither finds the other's rows hot in a cache.
    let (ours, floor) = alternate(
        blocks,
        |b| moves(&*view, &ids[2 * b * block..(2 * b + 1) * block]),
        |b| moves(&**registry, &ids[(2 * b + 1) * block..(2 * b + 2) * block]),
    );
    lease.step_down(term).expect("step down");
    println!("fenced state move: {ours:.0}/s, unfenced {floor:.0}/s");
    Row {
        name: "a leader's `update_state`, store-fenced vs unfenced".into(),
        ours,
        raw: floor,
        unit: "/s",
        target: "≥ 0.80 × unfenced".into(),
        rate: true,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Two child processes of `mode`, started together; pairs per second of both.
fn two_processes(mode: &str) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let start = now_ms() + 1500;
    let children: Vec<_> = (0..2)
        .map(|i| {
            Command::new(&exe)
                .args(["--child", mode, &start.to_string(), &format!("p{i}")])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut total = 0.0;
    for mut c in children {
        let mut line = String::new();
        BufReader::new(c.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(c.wait().unwrap().success(), "child failed");
        let mut parts = line.split_whitespace();
        let pairs: f64 = parts.next().expect("pairs").parse().unwrap();
        let secs: f64 = parts.next().expect("secs").parse().unwrap();
        total += pairs / secs;
    }
    total
}

fn claim_release() -> Row {
    let (mut ours, mut floor) = (0.0, 0.0);
    for _ in 0..ROUNDS {
        ours += two_processes("claim");
        floor += two_processes("raw-claim");
    }
    let (ours, floor) = (ours / f64::from(ROUNDS), floor / f64::from(ROUNDS));
    println!("claim+release, 2 processes: {ours:.0} pairs/s, raw {floor:.0} pairs/s");
    Row {
        name: "`claim` + `release_from_job`, 2 processes (pairs/s)".into(),
        ours,
        raw: floor,
        unit: "/s",
        target: "≥ 500/s and ≥ 0.75 × raw".into(),
        rate: true,
    }
}

/// A child: claim + release pairs (or the raw pair) for `PHASE` from `start` (unix ms); prints
/// "pairs seconds".
fn child(mode: &str, start: u64, tag: &str) {
    let url = url();
    let mut step: Box<dyn FnMut(usize)> = match mode {
        "claim" => {
            let registry = PostgresWorkerRegistry::connect(&url, NAME).expect("connect");
            let any = WorkerFilter::new();
            Box::new(move |i| {
                let job = JobId::new(format!("{tag}-{i}")).unwrap();
                let w = registry
                    .claim(&any, job.clone())
                    .unwrap()
                    .expect("a ready worker");
                registry.release_from_job(&w.id, Some(&job)).unwrap();
            })
        }
        "raw-claim" => {
            let mut c = raw_client(&url);
            let claim = c
                .prepare(
                    "UPDATE workers SET state = 3, current_job = $1, updated_at = $2, \
                     state_changed_at = $2 \
                     WHERE id = (SELECT id FROM workers WHERE state = 2 AND current_job IS NULL \
                         ORDER BY idle_since DESC, id DESC LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     RETURNING id",
                )
                .unwrap();
            let release = c
                .prepare(
                    "UPDATE workers SET state = 2, current_job = NULL, \
                     jobs_executed = jobs_executed + 1, updated_at = $3, state_changed_at = $3, \
                     idle_since = $3 WHERE id = $1 AND current_job = $2",
                )
                .unwrap();
            Box::new(move |i| {
                let job = format!("raw-{tag}-{i}");
                let now = (now_ms() ^ (1 << 63)) as i64;
                let id: uuid::Uuid = c.query_one(&claim, &[&job, &now]).unwrap().get(0);
                let n = c.execute(&release, &[&id, &job, &now]).unwrap();
                assert_eq!(n, 1);
            })
        }
        other => panic!("unknown child mode {other}"),
    };
    while now_ms() < start {
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    let mut i = 0;
    while t.elapsed() < PHASE / ROUNDS {
        step(i);
        i += 1;
    }
    println!("{i} {}", t.elapsed().as_secs_f64());
}

/// Median of `runs` timings of `f`, in ms.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn stats(registry: &PostgresWorkerRegistry, raw: &mut Client, n: usize) -> Row {
    let stmt = raw
        .prepare(
            "SELECT sum(total)::bigint, sum(s0)::bigint, sum(s1)::bigint, sum(s2)::bigint, \
             sum(s3)::bigint, sum(s4)::bigint, sum(s5)::bigint, sum(s6)::bigint \
             FROM state_counts",
        )
        .unwrap();
    assert_eq!(registry.stats().unwrap().total, n);
    let ours = median_ms(500, || {
        registry.stats().unwrap();
    });
    let floor = median_ms(500, || {
        raw.query_one(&stmt, &[]).unwrap();
    });
    println!("stats(): {ours:.3} ms, raw {floor:.3} ms");
    Row {
        name: "`stats()` (median)".into(),
        ours,
        raw: floor,
        unit: "ms",
        target: "< 1 ms".into(),
        rate: false,
    }
}

fn unhealthy(registry: &PostgresWorkerRegistry, raw: &mut Client, ids: &[WorkerId]) -> Row {
    // Every heartbeat recent, then 0.1% of the fleet silent for an hour.
    let due: Vec<uuid::Uuid> = uuids(&ids.iter().step_by(1000).copied().collect::<Vec<_>>());
    for sql in [
        "UPDATE heartbeats SET last_heartbeat = now_ms(NULL)",
        "VACUUM ANALYZE heartbeats",
    ] {
        raw.batch_execute(sql).expect(sql);
    }
    raw.execute(
        "UPDATE heartbeats SET last_heartbeat = last_heartbeat - 3600000 \
         WHERE id = ANY($1::uuid[])",
        &[&due],
    )
    .unwrap();
    let timeout = Duration::from_secs(600);
    assert_eq!(registry.find_unhealthy(timeout).unwrap().len(), due.len());
    // The raw floor: the due records by a join of the heartbeat scan with the records, the
    // cutoff read from the database clock first and passed as a value (so that the planner sees
    // how few are due).
    let stmt = raw
        .prepare(
            "SELECT w.* FROM heartbeats h JOIN workers w ON w.id = h.id \
             WHERE h.last_heartbeat < $1 AND w.state IN (1, 2, 3, 4)",
        )
        .unwrap();
    let cutoff = |raw: &mut Client| -> i64 {
        raw.query_one("SELECT now_ms(NULL) - 600000", &[])
            .unwrap()
            .get(0)
    };
    let c = cutoff(raw);
    assert_eq!(raw.query(&stmt, &[&c]).unwrap().len(), due.len());
    let ours = median_ms(15, || {
        registry.find_unhealthy(timeout).unwrap();
    });
    let floor = median_ms(15, || {
        let c = cutoff(raw);
        raw.query(&stmt, &[&c]).unwrap();
    });
    println!(
        "find_unhealthy ({} due): {ours:.1} ms, raw {floor:.1} ms",
        due.len()
    );
    Row {
        name: format!("`find_unhealthy`, {} due (median)", due.len()),
        ours,
        raw: floor,
        unit: "ms",
        target: "< 150 ms".into(),
        rate: false,
    }
}

/// The orphan retries' question: 3 resource ids (2 held) of the provider holding the fleet.
fn by_resource(registry: &PostgresWorkerRegistry, raw: &mut Client, n: usize) -> Row {
    let provider = ProviderId::new("bench").unwrap();
    let held = [format!("c{}", n / 3), format!("c{}", n - 1)];
    let asked = [held[0].as_str(), held[1].as_str(), "not-held"];
    assert_eq!(
        registry
            .find_by_resource_ids(&provider, &asked)
            .unwrap()
            .len(),
        2
    );
    let stmt = raw
        .prepare("SELECT * FROM workers WHERE provider_id = $1 AND resource_id = ANY($2)")
        .unwrap();
    let asked_vec: Vec<&str> = asked.to_vec();
    assert_eq!(raw.query(&stmt, &[&"bench", &asked_vec]).unwrap().len(), 2);
    let ours = median_ms(51, || {
        registry.find_by_resource_ids(&provider, &asked).unwrap();
    });
    let floor = median_ms(51, || {
        raw.query(&stmt, &[&"bench", &asked_vec]).unwrap();
    });
    println!("find_by_resource_ids (3 asked): {ours:.3} ms, raw {floor:.3} ms");
    Row {
        name: "`find_by_resource_ids`, 3 ids of the provider holding the fleet (median)".into(),
        ours,
        raw: floor,
        unit: "ms",
        target: "< 1 ms".into(),
        rate: false,
    }
}

/// A claim whose `unhealthy_for` no ready worker meets: every heartbeat recent, the whole
/// fleet ready.
fn claim_silent(registry: &PostgresWorkerRegistry, raw: &mut Client) -> Row {
    for sql in [
        "UPDATE heartbeats SET last_heartbeat = now_ms(NULL)",
        "VACUUM ANALYZE heartbeats",
    ] {
        raw.batch_execute(sql).expect(sql);
    }
    let silent = WorkerFilter::new().unhealthy_for(Duration::from_secs(86_400));
    let mut i = 0;
    let mut claim = || {
        i += 1;
        let job = JobId::new(format!("silent-{i}")).unwrap();
        assert!(registry.claim(&silent, job).unwrap().is_none());
    };
    claim();
    let stmt = raw
        .prepare(
            "SELECT count(*) FROM heartbeats \
             WHERE last_heartbeat <= (SELECT now_ms(NULL) - 86400001)",
        )
        .unwrap();
    let ours = median_ms(11, &mut claim);
    let floor = median_ms(11, || {
        for _ in 0..2 {
            let n: i64 = raw.query_one(&stmt, &[]).unwrap().get(0);
            assert_eq!(n, 0);
        }
    });
    println!("claim, unhealthy_for none meets: {ours:.1} ms, raw 2 passes {floor:.1} ms");
    Row {
        name: "`claim` with `unhealthy_for` no ready worker meets (median)".into(),
        ours,
        raw: floor,
        unit: "ms",
        target: "≤ 2 × raw".into(),
        rate: false,
    }
}

/// A claim for a pool whose workers are all busy, beside the whole fleet ready (of another
/// spec): the scheduler's claim for a pool scaled to zero, every loop.
fn claim_nomatch(registry: &PostgresWorkerRegistry, raw: &mut Client) -> Row {
    let gpu = Arc::new(WorkerSpec::new("img").with_label("pool", "gpu"));
    let provider = ProviderId::new("bench").unwrap();
    for i in 0..10 {
        let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("gpu{i}"));
        let id = registry.register(handle, gpu.clone()).unwrap().id;
        registry.update_state(&id, WorkerState::Ready).unwrap();
        registry
            .assign_to_job(&id, JobId::new(format!("gpu-held-{i}")).unwrap())
            .unwrap();
    }
    raw.batch_execute("ANALYZE workers; ANALYZE specs")
        .expect("analyze");
    let pool = WorkerFilter::new().label("pool", "gpu");
    let mut i = 0;
    let mut claim = || {
        i += 1;
        let job = JobId::new(format!("nomatch-{i}")).unwrap();
        assert!(registry.claim(&pool, job).unwrap().is_none());
    };
    claim();
    let stmt = raw
        .prepare(
            "SELECT EXISTS (WITH RECURSIVE k(key, n) AS (\
                 (SELECT r.spec_key, 1 FROM workers r WHERE r.state = 2 \
                     ORDER BY r.spec_key LIMIT 1) \
                 UNION ALL \
                 SELECT (SELECT r.spec_key FROM workers r WHERE r.state = 2 \
                     AND r.spec_key > k.key ORDER BY r.spec_key LIMIT 1), k.n + 1 \
                 FROM k WHERE k.key IS NOT NULL AND k.n < 64) \
             SELECT 1 FROM k WHERE (k.n = 64 AND k.key IS NOT NULL) \
                 OR (SELECT s.labels @> ($1::text)::jsonb FROM specs s WHERE s.key = k.key))",
        )
        .unwrap();
    let label = r#"{"pool":"gpu"}"#;
    let gate = |raw: &mut Client| -> bool { raw.query_one(&stmt, &[&label]).unwrap().get(0) };
    assert!(!gate(raw));
    let ours = median_ms(11, &mut claim);
    let floor = median_ms(11, || {
        gate(raw);
    });
    println!("claim, a pool with no ready worker: {ours:.3} ms, raw gate {floor:.3} ms");
    Row {
        name: "`claim` for a pool with no ready worker beside the ready fleet (median)".into(),
        ours,
        raw: floor,
        unit: "ms",
        target: "< 1 ms (no walk of the ready set)".into(),
        rate: false,
    }
}

/// A claim for a provider whose workers are all busy, beside the whole fleet ready (of
/// another provider): a job pinned to Kubernetes while the Docker fleet is idle.
fn claim_noprovider(registry: &PostgresWorkerRegistry, raw: &mut Client) -> Row {
    let spec = Arc::new(WorkerSpec::new("img"));
    let provider = ProviderId::new("k8s").unwrap();
    for i in 0..10 {
        let handle = WorkerHandle::new(provider.clone(), ProviderType::Kubernetes, format!("k{i}"));
        let id = registry.register(handle, spec.clone()).unwrap().id;
        registry.update_state(&id, WorkerState::Ready).unwrap();
        registry
            .assign_to_job(&id, JobId::new(format!("k8s-held-{i}")).unwrap())
            .unwrap();
    }
    raw.batch_execute("ANALYZE workers; ANALYZE specs")
        .expect("analyze");
    let mut i = 0;
    let mut claim_by = |filter: &WorkerFilter| {
        i += 1;
        let job = JobId::new(format!("noprovider-{i}")).unwrap();
        assert!(registry.claim(filter, job).unwrap().is_none());
    };
    let by_type = WorkerFilter::new().provider_type(ProviderType::Kubernetes);
    let by_id = WorkerFilter::new().provider_id(provider);
    claim_by(&by_type);
    claim_by(&by_id);
    let stmt = raw
        .prepare(
            "SELECT EXISTS (WITH RECURSIVE k(key, pid, ptype, n) AS (\
                 (SELECT r.spec_key, r.provider_id, r.provider_type, 1 FROM workers r \
                     WHERE r.state = 2 \
                     ORDER BY r.spec_key, r.provider_id, r.provider_type LIMIT 1) \
                 UNION ALL \
                 SELECT x.spec_key, x.provider_id, x.provider_type, k.n + 1 \
                 FROM k CROSS JOIN LATERAL (\
                     SELECT r.spec_key, r.provider_id, r.provider_type FROM workers r \
                     WHERE r.state = 2 AND (r.spec_key, r.provider_id, r.provider_type) \
                         > (k.key, k.pid, k.ptype) \
                     ORDER BY r.spec_key, r.provider_id, r.provider_type LIMIT 1) x \
                 WHERE k.n < 64) \
             SELECT 1 FROM k WHERE k.n = 64 OR k.ptype = $1)",
        )
        .unwrap();
    let kind = ProviderType::Kubernetes.to_string();
    let gate = |raw: &mut Client| -> bool { raw.query_one(&stmt, &[&kind]).unwrap().get(0) };
    assert!(!gate(raw));
    let ours = median_ms(11, || claim_by(&by_type));
    let by_id_ms = median_ms(11, || claim_by(&by_id));
    let floor = median_ms(11, || {
        gate(raw);
    });
    println!(
        "claim, a provider with no ready worker: by type {ours:.3} ms, by id {by_id_ms:.3} ms, \
         raw gate {floor:.3} ms"
    );
    Row {
        name: "`claim` by a provider type with no ready worker beside the ready fleet (median)"
            .into(),
        ours,
        raw: floor,
        unit: "ms",
        target: "< 1 ms (no walk of the ready set)".into(),
        rate: false,
    }
}
