//! How the crate works inside — for a reader of the code or a reviewer of a change. Nothing
//! here is API; the promises are on the types. (A doc-only module, as `sharded-slab` has.)
//!
//! # The in-memory registry's layout
//!
//! Records are split over 64 shards chosen by worker id, each behind its own `RwLock`. In a
//! shard, a compact *index* maps each id to a slot (20 bytes an entry: linear probing without
//! tombstones, load 1/2 to 3/4 while growing and never below 1/4, `registry/idtable.rs`), the
//! records (80 bytes each, pinned by a test) live in a *slab* at those slots (a `Vec`, free
//! slots reused lowest first, `registry/freeslots.rs`), and the
//! last heartbeats in a dense *heartbeat column* at the same slots (one 32-bit word each: an
//! offset from the shard's base, its sign the monitored flag). A heartbeat reads the index and
//! does one `fetch_max` into the column; it never touches the record. Shards are aligned to
//! 128 bytes, so two threads on neighbouring shards never share a line.
//!
//! Beside the shards, one mutex guards the registry-wide indexes and the counters behind
//! `stats` (so that it is O(1)). The ready, idle and lifetime indexes are per *class*: the
//! workers of one spec and one provider (`registry/classes.rs`). Equal specs are interned
//! (one shared `Arc`), so a fleet has few classes; a record keeps its class, and each shard one
//! reference to the spec of every class it has workers of. A class's ready workers are a
//! sorted deque by `(idle_since, id)` (the order `claim` and `longest_idle` promise; within a
//! class it is also idle-deadline order, `idle_since + spec.idle_timeout`): a worker enters
//! `Ready` now, so inserts go to the back and `claim` takes from the back in O(1); a removal in
//! the middle goes to a side set that reads skip. Its lifetime-tracked workers are a queue by
//! `(created_at, ticket)` — a `VecDeque` of 20-byte entries naming a worker by its place
//! (shard and slot), appended in O(1) since tickets grow, a removal in the middle marking the
//! entry dead, compacted when dead entries outnumber live ones — which is lifetime-deadline
//! order; a reader keeps a place's record only if its birth ticket is the entry's, so a reused
//! slot is never taken for the old worker. The mutex also holds the startup queue (the same
//! kind), who holds each job, the drained and terminal sets, the counts by provider, type
//! and pool (numbered slots each class takes once, `registry/stats.rs`), and the retired ids
//! (`registry/retired.rs`: retirement-order blocks; the ids this process minted
//! (`WorkerId::new`, a keyed permutation of a counter, `mint.rs`) in a bitmap by counter, any
//! other id behind a fingerprint filter, so that `register`'s check of a fresh id reads one
//! bit or ~4 MB, not a 32 MB table).
//!
//! # Lock order
//!
//! In the registry, always **shard → registry-wide mutex → event bus**, never the other way:
//!
//! - a change of state takes the worker's shard *write* lock, then the mutex, changes the
//!   record, its index entries and the counters together, and publishes its events while still
//!   holding the mutex — so event `seq` follows the order of the changes and `stats` always
//!   agrees with the records;
//! - `get` and `heartbeat` take only the shard's *shared* lock (a heartbeat event, when some
//!   subscriber wants them, is published under it: shard → bus, as everywhere);
//! - the health-check cache of a column (below) has its own small mutex, taken under the
//!   shard's shared lock (shard → cache); a full pass over a shard's column takes the shard's
//!   write lock for the pass only (a few µs at 1M) and downgrades it for the snapshots;
//! - an operation on one worker holds at most one shard lock; queries that walk an index copy
//!   what they need out of the mutex first, then visit the shards one by one; `snapshot` and
//!   `restore` take every shard's lock in shard order, then the mutex.
//!
//! No user code runs under any of these locks (subscribers are bounded channels fed with
//! `try_send`), so no callback can re-enter the registry and deadlock it.
//!
//! The manager's own state (providers, provisioning ledger, destroy queue, back-off, schedule)
//! sits behind `parking_lot` locks held for a few map operations. Its order is **providers →
//! ledger → registry**: reserving a provision reads the registry's count under the ledger lock,
//! which is what makes `max_workers` exact under concurrent provisions (the registry never
//! calls back into the manager). No manager lock is held across a provider call.
//!
//! # The heartbeat column and the health-check cache
//!
//! A heartbeat is one `fetch_max` into the worker's slot under the shard's shared lock: it
//! never waits for another heartbeat, never touches the indexes, and the timestamp never goes
//! back. A health check of a shard reads the column sequentially (4 bytes a worker, under the
//! shard's write lock so that the loads are plain and vectorised; blocks of 64 slots whose
//! smallest word is not due are skipped) rather than every record; a record is read only for a
//! worker found due, and the due records are loaded together before the snapshots are built,
//! so that their cache misses overlap. The key compared with the cutoff is `max(heartbeat, grace floor)`:
//! [`grant_grace`](crate::WorkerRegistry::grant_grace) raises one registry-wide floor, which is
//! how every worker gets a fresh deadline in O(1).
//!
//! On top of the column, each shard caches the last check's result: a *horizon* (the smallest
//! key that was not due) and the *suspects* (the slots that were due). Keys only grow, so a
//! check whose cutoff is at or below the horizon need only look at the suspects; the usual
//! health check, every tick with the same timeout, therefore costs what is due, not the fleet.
//! A later cutoff rescans the column and moves the horizon. A slot that becomes monitored with
//! a key below the horizon (a worker reporting in after a long boot) joins the suspects; the
//! list is bounded, and past the bound the cache is dropped and the next check rescans.
//!
//! Slots are reused through the slab's free set, but a slot is only ever reached through the
//! shard's id → slot index under the shard's lock, and a worker's index entry is removed
//! before its slot is freed (both under the write lock), so a stale id cannot touch the
//! slot's next occupant: its look-up fails first (tested by a property test and a stress
//! test in `core/tests/registry/memory_only.rs`). Taking and freeing slots needs the shard's
//! write lock, which excludes every heartbeat to that shard.
//!
//! # Giving memory back
//!
//! Every structure that grows with the fleet shrinks with it (`registry/shrink.rs`: below a
//! quarter full, to half full, never below 64 entries; the hysteresis keeps a fleet that
//! oscillates around one size from rebuilding on every call): the id index (rehashed
//! smaller), the per-class ready deques and the startup and lifetime queues, the class
//! tables, the job-holder map. Records never move (the queues name them by slot), so the slab and the column give
//! back only their free tail: free slots are reused lowest first, which packs the live
//! records at the front, and the `unregister` that frees the slab's last slot cuts off the
//! free tail before it. A fleet cut from 1M to 10k gives the index and queues back at once,
//! and the slab once its old high-slot workers have died (tested in
//! `registry/memory/tests.rs`, `a_shrunk_fleet_gives_its_memory_back_once_its_old_workers_died`).
//!
//! # Why `claim` re-checks
//!
//! `claim` picks its candidate under the registry-wide mutex: it asks the filter's static
//! part (spec and provider) once per class, and takes the most recently idle worker of the
//! matching classes (O(classes × log ready): an unmatchable filter looks at no worker). The
//! record can only be changed under its shard's write lock, which is normally taken *before*
//! the mutex. So `claim` tries the shard's lock without waiting (`try_write`, which cannot
//! deadlock) and, in the usual case, checks and assigns in that one hold. When the shard is
//! busy it lets go of the mutex, takes the shard lock and then the mutex in order, and checks
//! again that the worker is still `Ready`, without a job, and idle since the same instant —
//! another claimer, a release and re-claim, or a termination may have come in between. A
//! candidate that fails the check (or the filter's dynamic condition, `unhealthy_for`) is
//! passed over for the next one down the order.
//!
//! The deadline queries work the same way: the index says who *may* be due, the record under
//! its own lock says who *is* (an idle worker claimed since the index was read is left out).
//!
//! # Decisions against the record as it is now: `transition_if`
//!
//! The manager decides on views that are stale by the time it acts: a health check reads who
//! is silent, cleanup reads who is idle, scale-down picks the longest idle. Between the look
//! and the act the host may claim that worker, or the agent may report in. So every such
//! decision is applied with [`transition_if`](crate::WorkerRegistry::transition_if): a guard
//! (still in this state, idle since this instant, without a job) checked against the record
//! under its shard's write lock, atomically with the move, which also says exactly which job
//! the move took away (the one reported lost). A guard that fails means "the host moved
//! first": the decision is dropped, or, for a lifetime expiry (which stays true), looked at
//! once more.
//!
//! # The destroy queue
//!
//! A worker going out of service is first moved to `Terminating` in the registry, then queued
//! for its provider's destroy; its record is unregistered only after the provider confirmed the
//! destroy (`Ok`, or "not found"). The provider is called outside every lock: an entry is
//! marked *in progress* under the queue's mutex, the mutex is released, the provider called,
//! and the outcome recorded (unregister on success, exponential back-off on failure). The
//! in-progress mark keeps a second thread (a concurrent `cleanup_workers`, `tick`) from
//! destroying the same instance twice, and keeps `reconcile` from withdrawing an entry whose
//! destroy is under way.
//!
//! The queue lives in the manager, not the registry, so a restart or a new leader rebuilds it
//! from the registry: every `Terminating`/`Terminated` record that nobody destroys is adopted
//! (checked in O(1) by comparing the registry's count of terminal records with the queue's
//! size; while the queue is not empty, once per health-check interval the registry's terminal
//! ids — `terminal_ids`, no snapshot — are compared with the queue, which finds a record a
//! stale entry hides: every id queued and as many ids as entries means the same set). A record the host unregistered meanwhile ends its entry (the host took the instance
//! over); a registry that cannot answer keeps the entry for later rather than forget an
//! instance. Hence the promise: no leaked instances.
