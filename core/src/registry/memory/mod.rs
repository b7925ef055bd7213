//! [`InMemoryWorkerRegistry`]: sharded records in slabs behind compact id → slot indexes,
//! heartbeats in dense per-shard columns, registry-wide indexes for what is not per worker.
//!
//! The modules, by what they hold:
//! - `mod.rs` (here): the registry's fields, constructors, and the one path by which a record
//!   changes (`change`, `move_state`), keeping indexes, counters and events in step;
//! - [`shard`]: one shard — the id → slot index, the slab of records, the heartbeat column;
//! - `ops`: the `WorkerRegistry` implementation (register … release, find, stats, events);
//! - `claim`: `claim`, the ready-index walk;
//! - `deadlines`: the health check and the other deadline queries;
//! - `persist`: snapshot and restore.

mod claim;
mod deadlines;
mod ops;
mod persist;
mod shard;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use self::shard::Shard;
use super::column::HeartbeatColumn;
use super::indexes::{Indexes, Record};
use super::retired::DEFAULT_RETIRED_ID_LIMIT;
use super::{TransitionGuard, Transitioned, WorkerRegistry};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{Error, Result};
use crate::events::{EventBus, EventKind};
use crate::ids::{JobId, WorkerId};
use crate::state::WorkerState;
use crate::worker::Worker;

/// Number of shards: a power of two, enough that two to eight threads rarely meet.
const SHARD_COUNT: usize = 64;

/// Bits of a shard number in a place (see [`place_of`]).
const SHARD_BITS: u32 = SHARD_COUNT.trailing_zeros();
const _: () = assert!(1 << SHARD_BITS == SHARD_COUNT);

/// A worker's place, its shard and slot in one `u32`: what the startup and lifetime queues
/// keep instead of its 16-byte id. A shard holds fewer than `2^(32 - SHARD_BITS)` (2^26)
/// slots, so every place fits ([`Shard::insert`] refuses more).
pub(super) fn place_of(shard: usize, slot: u32) -> u32 {
    debug_assert!(shard < SHARD_COUNT && slot < shard::MAX_SLOTS);
    (slot << SHARD_BITS) | shard as u32
}

/// The shard and slot of a place.
fn unplace(place: u32) -> (usize, u32) {
    (
        (place & (SHARD_COUNT as u32 - 1)) as usize,
        place >> SHARD_BITS,
    )
}

/// The in-memory [`WorkerRegistry`].
///
/// # Design
/// - 64 `RwLock`ed shards chosen by worker id. In a shard, a compact index maps each id to a
///   slot (20-byte entries), the records live in a slab at stable slots (reused lowest
///   first), and the last heartbeats in a dense column at the same slots. `get` and
///   `heartbeat` take one shard's *shared* lock; `heartbeat` reads the index and does one
///   atomic `fetch_max` into the column (4 bytes a worker), never touching the record.
/// - `find_unhealthy` reads the columns, not the records, under each shard's shared lock, and
///   usually only the slots found due last time (a cache valid until the cutoff passes the
///   oldest heartbeat not due); a record is read only for a worker due.
/// - One mutex guards the registry-wide indexes (ready workers ordered by idle time, job
///   holders, deadline indexes) and the counters behind `stats`. Every change of state takes a
///   shard's write lock, then this mutex, then publishes its events under it, so event `seq`
///   follows the order of changes.
/// - Deadline indexes make `find_unhealthy`, `find_startup_expired` and
///   `find_for_termination` cost what is due, not the fleet size.
/// - No user code runs under any of these locks: subscribers are channels, fed with
///   `try_send`.
/// - Memory follows the fleet down as well as up: the index and the queues shrink below a
///   quarter full (to half full), the slab and column give back their free tail once the
///   workers at the top have left (free slots are reused lowest first). O(live workers),
///   amortized, whatever the fleet's past peak.
///
/// # Examples
/// ```
/// use hodei_workers::*;
/// let registry = InMemoryWorkerRegistry::new();
/// let provider = ProviderId::new("docker-local")?;
/// let spec = std::sync::Arc::new(WorkerSpec::new("ubuntu:24.04").with_label("pool", "ci"));
/// let worker = registry.register(WorkerHandle::new(provider, ProviderType::Docker, "c-1"), spec)?;
/// registry.update_state(&worker.id, WorkerState::Ready)?;
///
/// let job = JobId::new("job-42")?;
/// let taken = registry.claim(&WorkerFilter::new().label("pool", "ci"), job.clone())?.unwrap();
/// assert_eq!(taken.state, WorkerState::Busy);
/// assert_eq!(registry.release_from_job(&taken.id, Some(&job))?, job);
/// assert_eq!(registry.stats()?.by_state.ready, 1);
/// # Ok::<(), hodei_workers::Error>(())
/// ```
pub struct InMemoryWorkerRegistry {
    shards: Box<[Padded<RwLock<Shard>>]>,
    indexes: Mutex<Indexes>,
    bus: Arc<EventBus>,
    clock: Arc<dyn Clock>,
    /// See [`WorkerRegistry::grant_grace`].
    grace_floor: AtomicU64,
}

impl fmt::Debug for InMemoryWorkerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryWorkerRegistry")
            .field("workers", &self.indexes.lock().stats.total)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Default for InMemoryWorkerRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryWorkerRegistry {
    /// An empty registry on the monotonic [`SystemClock`].
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock::new()))
    }

    /// An empty registry on `clock` (a [`ManualClock`](crate::ManualClock) for tests).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        InMemoryWorkerRegistry {
            shards: (0..SHARD_COUNT)
                .map(|_| Padded(RwLock::new(Shard::default())))
                .collect(),
            indexes: Mutex::new(Indexes::default()),
            bus: Arc::new(EventBus::default()),
            clock,
            grace_floor: AtomicU64::new(0),
        }
    }

    /// How many unregistered ids a registry remembers by default (see
    /// [`with_retired_id_limit`](Self::with_retired_id_limit)): 2^20, about 25 MiB at most
    /// (~40 MiB in the worst case of its tables' growth).
    pub const DEFAULT_RETIRED_ID_LIMIT: usize = DEFAULT_RETIRED_ID_LIMIT;

    /// Sets how many unregistered ids the registry remembers (builder style).
    ///
    /// Ids are never reused: `register` of an id that was unregistered is `AlreadyExists`, so
    /// that a late call naming the old worker (a stale `release_from_job`) can never act on a
    /// new one. The registry remembers exactly the last `limit` unregistered ids, oldest
    /// forgotten first (about 16 bytes each for ids this process minted, 25 for others, at
    /// most ~40; snapshots carry them, oldest first); an id retired longer ago than that may
    /// be registered again. A lower limit forgets the oldest at once; a limit of 0 remembers
    /// none. Ids of [`WorkerId::new`] never repeat within a process (and collide across
    /// processes as rarely as random ids): the limit only matters for ids chosen by the
    /// caller.
    ///
    /// Cost: for an id this process minted ([`WorkerId::new`]), `register` reads one bit of
    /// a bitmap by the id's counter and `unregister` sets one (half a byte an id at most, in
    /// a window of recent counters; 16 bytes an id in all). For any other id `register` asks
    /// a filter of about 4 bytes an id (two reads; an exact look-up only when it says maybe,
    /// about 1 in 16,000 fresh ids), `unregister` appends the id and forgets the oldest in
    /// O(1); the filter is rebuilt (O(ids remembered)) only when it doubles on the way up to
    /// the limit or shrinks after a lower limit.
    pub fn with_retired_id_limit(self, limit: usize) -> Self {
        self.set_retired_id_limit(limit);
        self
    }

    /// As [`with_retired_id_limit`](Self::with_retired_id_limit), on a registry in use (the C
    /// and Python surfaces set it after construction).
    pub fn set_retired_id_limit(&self, limit: usize) {
        self.indexes.lock().retired.set_limit(limit);
    }

    /// The registry's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn shard(&self, id: &WorkerId) -> &RwLock<Shard> {
        &self.shards[self.shard_index(id)]
    }

    fn shard_index(&self, id: &WorkerId) -> usize {
        // Ids are random(-looking) v4 UUIDs (`WorkerId::new`'s are a keyed permutation, see
        // `mint.rs`); two bytes away from the version nibbles spread them well.
        let b = id.as_bytes();
        (b[15] ^ b[3]) as usize & (SHARD_COUNT - 1)
    }

    fn floor(&self) -> Timestamp {
        self.grace_floor.load(Ordering::Acquire)
    }

    /// Applies `edit` to a record and keeps indexes, counters and events in step: the one path
    /// by which a record changes.
    fn change(
        &self,
        ix: &mut Indexes,
        column: &mut HeartbeatColumn,
        slot: u32,
        rec: &mut Record,
        now: Timestamp,
        edit: impl FnOnce(&mut Record),
    ) {
        let id = rec.id();
        let (before, before_idle, from) = (rec.membership(), rec.idle_since(), rec.state);
        edit(rec);
        rec.updated_at = now;
        let to = rec.state;
        if to != from {
            rec.state_changed_at = now;
            if to == WorkerState::Ready {
                rec.set_idle_since(Some(now));
            }
            ix.count_move(rec.class, from, to);
        }
        ix.refile(
            id,
            place_of(self.shard_index(&id), slot),
            before,
            before_idle,
            rec.membership(),
            rec,
        );
        column.set_monitored(slot, to.heartbeat_monitored(), self.floor());
        if to != from {
            self.bus.publish(now, || EventKind::StateChanged {
                worker_id: id,
                from,
                to,
            });
        }
    }

    fn assign_locked(
        &self,
        ix: &mut Indexes,
        column: &mut HeartbeatColumn,
        slot: u32,
        rec: &mut Record,
        job: JobId,
        now: Timestamp,
    ) {
        let id = rec.id();
        ix.jobs.insert(job.clone(), id);
        ix.jobs_assigned += 1;
        self.change(ix, column, slot, rec, now, |r| {
            r.current_job = Some(job.clone());
            r.state = WorkerState::Busy;
        });
        self.bus.publish(now, || EventKind::AssignedToJob {
            worker_id: id,
            job_id: job,
        });
    }

    /// The one path of `update_state` and `transition_if`: checks `guard` (if any) and the
    /// state machine against the record under its shard's write lock, then moves it.
    fn move_state(
        &self,
        id: &WorkerId,
        guard: Option<&TransitionGuard>,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        let mut shard = self.shard(id).write();
        let (slot, rec, column, spec) = shard.get_mut(id).ok_or_else(|| not_found(id))?;
        let from = rec.state;
        if let Some(guard) = guard {
            if !guard.holds(from, rec.idle_since(), rec.current_job.is_some()) {
                return Ok(None);
            }
        }
        if from == to {
            return Ok(Some(Transitioned {
                worker: rec.to_worker(column.get(slot), spec),
                from,
                lost_job: None,
            }));
        }
        // Back to Ready only without a job and below max_jobs: a one-shot worker that ran its
        // job must not take a second one (the error's message names max_jobs).
        let no_ready =
            to == WorkerState::Ready && (rec.current_job.is_some() || rec.jobs_exhausted(spec));
        if !from.can_update_to(to) || no_ready {
            return Err(Error::InvalidTransition {
                worker_id: *id,
                from,
                to,
            });
        }
        let lost = if to.is_terminal() {
            rec.current_job.clone()
        } else {
            None
        };
        // A starting worker that moves on (to Connecting or Ready) has just reported in: that
        // is a sign of life, so its heartbeat deadline starts now and not at registration
        // (a boot slower than the heartbeat timeout must not be expired the moment it ends).
        let reported_in = from.is_starting() && !to.is_terminal();
        let mut ix = self.indexes.lock();
        // Read under the mutex that orders the events: times never go back along `seq`.
        let now = self.now();
        if reported_in {
            column.beat_mut(slot, now);
        }
        self.change(&mut ix, column, slot, rec, now, |r| {
            r.state = to;
            if to.is_terminal() {
                r.current_job = None;
            }
        });
        if let Some(job) = &lost {
            ix.unhold(job);
            self.bus.publish(now, || EventKind::JobLost {
                worker_id: *id,
                job_id: job.clone(),
            });
        }
        drop(ix);
        let worker = rec.to_worker(column.get(slot), spec);
        Ok(Some(Transitioned {
            worker,
            from,
            lost_job: lost,
        }))
    }

    /// `heartbeat` while some subscriber wants heartbeat events: the heartbeat's event is
    /// published under the shard lock (order shard -> mutex -> bus, as everywhere: every other
    /// event of this worker is published under its shard's write lock, so a heartbeat event
    /// can never follow its `Unregistered` in seq order) and under the registry-wide mutex, as
    /// every event (a change reads its time under it and numbers its events before letting
    /// go, so no event may take a seq in between: its later time would become the change's
    /// event's `at`, no longer its record's time). The column keeps the time the event
    /// carries, which is later than `now` when an event numbered since `now` was read
    /// carries a later one (invariant 6: a record's times are its events' `at`).
    fn heartbeat_heard(
        &self,
        id: &WorkerId,
        now: Timestamp,
        shard: RwLockReadGuard<'_, Shard>,
        slot: u32,
    ) -> Result<()> {
        {
            let _order = self.indexes.lock();
            if self
                .bus
                .publish_heartbeat(now, *id, |at| shard.column.beat(slot, at))
            {
                return Ok(());
            }
        }
        drop(shard);
        // Out of the column's range: the write lock (see `heartbeat`).
        let mut shard = self.shard(id).write();
        let slot = shard.slot_of(id).ok_or_else(|| not_found(id))?;
        let _order = self.indexes.lock();
        self.bus.publish_heartbeat(now, *id, |at| {
            shard.column.beat_mut(slot, at);
            true
        });
        Ok(())
    }

    /// The ids of the workers at `places` (from a queue, with their tickets) that are still
    /// there: a record is the entry's only if its `birth_ticket` is the entry's ticket (a slot
    /// reused since holds another ticket). In the order given.
    fn resolve(&self, places: impl IntoIterator<Item = (u64, u32)>) -> Vec<WorkerId> {
        places
            .into_iter()
            .filter_map(|(ticket, place)| {
                let (shard, slot) = unplace(place);
                let shard = self.shards[shard].read();
                shard
                    .at(slot)
                    .filter(|rec| rec.birth_ticket == ticket)
                    .map(Record::id)
            })
            .collect()
    }

    /// Snapshots of `ids` (those still present), each kept only if `keep` holds for it.
    fn snapshots_where(
        &self,
        ids: impl IntoIterator<Item = WorkerId>,
        mut keep: impl FnMut(&Record) -> bool,
    ) -> Vec<Worker> {
        ids.into_iter()
            .filter_map(|id| {
                let shard = self.shard(&id).read();
                shard
                    .get(&id)
                    .filter(|(_, rec)| keep(rec))
                    .map(|(slot, rec)| shard.worker(slot, rec))
            })
            .collect()
    }
}

/// One shard on cache lines of its own.
///
/// Unpadded, the shards (~180 bytes each) sit back to back, so a shard's lock word shares a
/// line with the tail of its neighbour: two threads heartbeating workers of neighbouring
/// shards then write (the lock word) into a line the other reads (the index and column of its
/// shard), and the line travels between their caches on every call. 128 bytes: the adjacent
/// line prefetcher of x86 pulls lines in pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

fn not_found(id: &WorkerId) -> Error {
    Error::NotFound(*id)
}
