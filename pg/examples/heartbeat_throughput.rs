//! A quick look at heartbeat throughput on PostgreSQL, beside the raw statements (the floor):
//! `heartbeat_many` in batches of 1,000 vs a raw `UPDATE … FROM unnest`, a lone `heartbeat`
//! vs a raw single-row `UPDATE`, and 64 threads calling `heartbeat` (coalesced).
//!
//! `HODEI_PG_URL=... cargo run --release -p hodei-workers-postgres --example heartbeat_throughput [workers]`
//! (default 100,000 workers; uses and drops the registry `bench_heartbeats`).

use std::sync::{Arc, Barrier};
use std::time::Instant;

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use postgres::{Client, NoTls};

fn main() -> Result<()> {
    let url = std::env::var("HODEI_PG_URL").expect("HODEI_PG_URL");
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let name = "bench_heartbeats";
    let _ = PostgresWorkerRegistry::drop_schema(&url, name);
    let registry = Arc::new(PostgresWorkerRegistry::connect(&url, name)?);

    // The fleet, loaded in bulk (restore) rather than by n registrations.
    let memory = InMemoryWorkerRegistry::new();
    let spec = Arc::new(WorkerSpec::new("img"));
    let provider = ProviderId::new("bench")?;
    let ids: Vec<WorkerId> = (0..n)
        .map(|_| {
            let w = memory.register(
                WorkerHandle::new(provider.clone(), ProviderType::Docker, "c"),
                spec.clone(),
            )?;
            memory.update_state(&w.id, WorkerState::Ready)?;
            Ok(w.id)
        })
        .collect::<Result<_>>()?;
    let t = Instant::now();
    registry.restore(memory.snapshot()?)?;
    println!("restore of {n} workers: {:.1} s", t.elapsed().as_secs_f64());

    let mut raw = Client::connect(&url, NoTls).expect("raw client");
    raw.batch_execute(&format!("SET search_path TO {name}"))
        .unwrap();
    let raw_many = raw
        .prepare(
            "UPDATE heartbeats h SET last_heartbeat = $2 FROM unnest($1::uuid[]) AS x(id) \
             WHERE h.id = x.id",
        )
        .unwrap();
    let raw_one = raw
        .prepare("UPDATE heartbeats SET last_heartbeat = $2 WHERE id = $1")
        .unwrap();
    let stamp: i64 = i64::MIN + 1_800_000_000_000;

    for round in 0..2 {
        let t = Instant::now();
        for chunk in ids.chunks(1000) {
            let answers = registry.heartbeat_many(chunk)?;
            assert!(answers.iter().all(|a| a.is_ok()));
        }
        let ours = n as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for chunk in ids.chunks(1000) {
            let uuids: Vec<uuid::Uuid> = chunk.iter().map(|id| *id.as_uuid()).collect();
            raw.execute(&raw_many, &[&uuids, &stamp]).unwrap();
        }
        let floor = n as f64 / t.elapsed().as_secs_f64();
        println!(
            "round {round}: heartbeat_many x1000: {ours:.0} rows/s; raw UPDATE FROM unnest: \
             {floor:.0} rows/s; ratio {:.2}",
            ours / floor
        );
    }

    let lone = 2000.min(n);
    let t = Instant::now();
    for id in &ids[..lone] {
        registry.heartbeat(id)?;
    }
    let ours = lone as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for id in &ids[..lone] {
        raw.execute(&raw_one, &[id.as_uuid(), &stamp]).unwrap();
    }
    let floor = lone as f64 / t.elapsed().as_secs_f64();
    println!(
        "lone heartbeat: {ours:.0}/s; raw single-row UPDATE: {floor:.0}/s; ratio {:.2}",
        ours / floor
    );

    let threads = 64;
    let per = 300;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let ids = Arc::new(ids);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (registry, barrier, ids) = (registry.clone(), barrier.clone(), ids.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..per {
                    registry.heartbeat(&ids[(t * per + i) % ids.len()]).unwrap();
                }
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "64 threads x heartbeat (coalesced): {:.0}/s",
        (threads * per) as f64 / t.elapsed().as_secs_f64()
    );
    drop(registry);
    PostgresWorkerRegistry::drop_schema(&url, name)?;
    Ok(())
}
