//! The job ledger replayed from events (invariant 2 at every point), shared by the registry's
//! stress test and the PostgreSQL crate's multi-process test.

use std::collections::HashMap;

use hodei_workers::{EventKind, JobId, WorkerId, WorkerLifecycleEvent};

/// Replays job events in `seq` order and checks invariant 2 at every point. Returns who holds
/// what at the end.
pub fn replay_job_ledger(events: &[WorkerLifecycleEvent]) -> HashMap<JobId, WorkerId> {
    let mut job_holder: HashMap<JobId, WorkerId> = HashMap::new();
    let mut worker_job: HashMap<WorkerId, JobId> = HashMap::new();
    for e in events {
        match &e.kind {
            EventKind::AssignedToJob { worker_id, job_id } => {
                if let Some(other) = job_holder.insert(job_id.clone(), *worker_id) {
                    panic!(
                        "seq {}: {job_id} assigned to {worker_id} while {other} holds it",
                        e.seq
                    );
                }
                if let Some(held) = worker_job.insert(*worker_id, job_id.clone()) {
                    panic!(
                        "seq {}: {worker_id} given {job_id} while holding {held}",
                        e.seq
                    );
                }
            }
            EventKind::ReleasedFromJob { worker_id, job_id }
            | EventKind::JobLost { worker_id, job_id } => {
                assert_eq!(
                    job_holder.remove(job_id),
                    Some(*worker_id),
                    "seq {}: {} of {job_id} by a worker that did not hold it",
                    e.seq,
                    e.kind.name()
                );
                assert_eq!(worker_job.remove(worker_id).as_ref(), Some(job_id));
            }
            _ => {}
        }
    }
    job_holder
}
