//! [`Snapshot`]: every record plus the event `seq`, as serde JSON.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{millis, Timestamp};
use crate::error::{json_error_message, quote_input, Error, Result};
use crate::ids::WorkerId;
use crate::state::WorkerState;
use crate::worker::Worker;

/// The `format` tag of snapshots this version writes and reads.
pub const SNAPSHOT_FORMAT: &str = "hodei-workers.snapshot/1";

/// How far a snapshot's `taken_at` may lie after the clock of the registry restoring it (one
/// hour): within it, the snapshot's times are clamped to the restoring registry's now
/// ([`Snapshot::fit_to_clock`]); beyond it, `restore` refuses the snapshot. Clocks of
/// different hosts disagree by seconds, minutes at worst; an hour or more is a clock set
/// wrong, or a snapshot of another clock altogether (a manual clock), whose times would
/// otherwise be rewritten wholesale without a word.
pub const MAX_SNAPSHOT_CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// The greatest `seq` a snapshot may carry.
const MAX_SEQ: u64 = (1 << 63) - 1;

/// The whole registry at one instant.
///
/// ```
/// use hodei_workers::*;
/// let registry = InMemoryWorkerRegistry::new();
/// let provider = ProviderId::new("docker-local").unwrap();
/// registry.register(WorkerHandle::new(provider, ProviderType::Docker, "c-1"), WorkerSpec::new("img").into()).unwrap();
/// let json = registry.snapshot().unwrap().to_json().unwrap();
///
/// let copy = InMemoryWorkerRegistry::new();
/// copy.restore(Snapshot::from_json(&json).unwrap()).unwrap();
/// assert_eq!(copy.count().unwrap(), 1);
/// assert!(Snapshot::from_json(&json[..json.len() / 2]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`SNAPSHOT_FORMAT`].
    pub format: String,
    /// The event `seq` at the snapshot; a restored registry continues after it.
    pub seq: u64,
    /// When it was taken, on the registry's clock.
    pub taken_at: Timestamp,
    /// Every record, ordered by creation time.
    pub workers: Vec<Worker>,
    /// Ids unregistered before the snapshot that the registry still refuses to register again
    /// (ids are never reused), oldest first. Absent from the JSON when empty, so snapshots of
    /// registries that never unregistered read as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_ids: Vec<WorkerId>,
}
crate::object_form::object_form!(Snapshot, "a snapshot");

impl Snapshot {
    /// Fits a snapshot to the clock of the registry restoring it, `now` (what both backends'
    /// [`restore`](crate::WorkerRegistry::restore) do after [`Snapshot::validate`]): a time
    /// after `now` could not have been read from this clock — a heartbeat "from the future"
    /// would keep its worker from ever missing a deadline, and its job from ever being
    /// reported lost. So every time (`taken_at` and each worker's `created_at`, `updated_at`,
    /// `state_changed_at`, `last_heartbeat`, `idle_since`) becomes `min(t, now)`, provided
    /// `taken_at` is at most [`MAX_SNAPSHOT_CLOCK_SKEW`] after `now` (the clock skew between
    /// hosts); a snapshot dated later is refused. A snapshot taken at or before `now` is left
    /// unchanged.
    ///
    /// # Errors
    /// `Snapshot` when `taken_at` is more than [`MAX_SNAPSHOT_CLOCK_SKEW`] after `now`.
    pub fn fit_to_clock(&mut self, now: Timestamp) -> Result<()> {
        if self.taken_at <= now {
            return Ok(()); // `validate`: no time in it is after `taken_at`
        }
        let ahead = self.taken_at - now;
        if ahead > millis(MAX_SNAPSHOT_CLOCK_SKEW) {
            return Err(Error::Snapshot(format!(
                "taken_at {} is {} ms after this registry's clock ({now}): beyond the {} s \
                 of clock skew a restore tolerates (a clock set wrong, or a snapshot of another \
                 clock)",
                self.taken_at,
                ahead,
                MAX_SNAPSHOT_CLOCK_SKEW.as_secs()
            )));
        }
        self.taken_at = now;
        for w in &mut self.workers {
            for t in [
                &mut w.created_at,
                &mut w.updated_at,
                &mut w.state_changed_at,
                &mut w.last_heartbeat,
            ] {
                *t = (*t).min(now);
            }
            if let Some(t) = &mut w.idle_since {
                *t = (*t).min(now);
            }
        }
        Ok(())
    }

    /// The JSON text.
    ///
    /// # Errors
    /// `Snapshot` if serialisation fails (it does not for snapshots the registry made).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Snapshot(format!("cannot write: {e}")))
    }

    /// Reads and checks a snapshot ([`Snapshot::validate`]).
    ///
    /// # Errors
    /// `Snapshot` for malformed JSON, a foreign format or an inconsistent content.
    pub fn from_json(text: &str) -> Result<Snapshot> {
        let snapshot: Snapshot = serde_json::from_str(text)
            .map_err(|e| Error::Snapshot(format!("cannot read: {}", json_error_message(&e))))?;
        snapshot.validate()?;
        Ok(snapshot)
    }

    /// Checks that the snapshot could have been taken of a registry keeping its invariants:
    /// our format, a `seq` below 2^63, unique ids matching their handles, valid specs and
    /// handles ([`WorkerSpec::validate`](crate::WorkerSpec::validate),
    /// [`WorkerHandle::validate`](crate::WorkerHandle::validate)), states consistent with
    /// jobs, every job held once, `Ready` workers with an `idle_since` and below their
    /// `max_jobs`, no time after `taken_at`, no worker among the `retired_ids`.
    ///
    /// # Errors
    /// `Snapshot`, naming the first offending worker.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Snapshot(msg));
        if self.format != SNAPSHOT_FORMAT {
            return bad(format!(
                "foreign format {} (expected {SNAPSHOT_FORMAT:?})",
                quote_input(&self.format)
            ));
        }
        // A registry restored at a seq near u64::MAX could not number its next events (the
        // increment would overflow); no registry gets past 2^63 events in practice (300 years
        // at a billion a second), so such a seq is corruption.
        if self.seq > MAX_SEQ {
            return bad(format!("seq {} is past {MAX_SEQ}", self.seq));
        }
        let mut ids = HashSet::with_capacity(self.workers.len());
        let mut jobs = HashSet::new();
        for w in &self.workers {
            if !ids.insert(w.id) {
                return bad(format!("worker {} appears twice", w.id));
            }
            if w.handle.worker_id != w.id {
                return bad(format!(
                    "worker {} has the handle of worker {}",
                    w.id, w.handle.worker_id
                ));
            }
            if let Err(e) = w.spec.validate().and_then(|()| w.handle.validate()) {
                return bad(format!("worker {}: {e}", w.id));
            }
            // A time after the snapshot's own cannot have been read from its clock; a
            // heartbeat "from the future" would make an immortal worker.
            let times = [
                ("created_at", Some(w.created_at)),
                ("updated_at", Some(w.updated_at)),
                ("state_changed_at", Some(w.state_changed_at)),
                ("last_heartbeat", Some(w.last_heartbeat)),
                ("idle_since", w.idle_since),
            ];
            for (field, time) in times {
                if let Some(t) = time.filter(|t| *t > self.taken_at) {
                    return bad(format!(
                        "worker {}: {field} {t} is after the snapshot's taken_at {}",
                        w.id, self.taken_at
                    ));
                }
            }
            if !super::job_state_consistent(w.state, w.current_job.as_ref()) {
                return bad(format!(
                    "worker {} is {} with job {:?}",
                    w.id, w.state, w.current_job
                ));
            }
            if let Some(job) = &w.current_job {
                if !jobs.insert(job.clone()) {
                    return bad(format!("job {job} is held by two workers"));
                }
            }
            if w.state == WorkerState::Ready && w.idle_since.is_none() {
                return bad(format!("worker {} is ready without idle_since", w.id));
            }
            let exhausted = w
                .spec
                .max_jobs
                .is_some_and(|max| w.jobs_executed >= u64::from(max));
            if w.state == WorkerState::Ready && exhausted {
                return bad(format!(
                    "worker {} is ready after running its max_jobs ({} jobs)",
                    w.id, w.jobs_executed
                ));
            }
        }
        if let Some(id) = self.retired_ids.iter().find(|id| ids.contains(*id)) {
            return bad(format!("worker {id} is both registered and retired"));
        }
        Ok(())
    }
}
