//! How the crate works inside — for a reader of the code or a reviewer of a change. Nothing
//! here is API; the promises are on the types. (A doc-only module, as `sharded-slab` has.)
//!
//! # The in-memory registry's layout
//!
//! <!-- storage: kept at the level that stays true while the record storage is reworked
//! (issue 12); its owner updates the details. -->
//! Records are split over 64 shards chosen by worker id, each behind its own `RwLock`. Each
//! worker has a slot in its shard, and the shard keeps its workers' last heartbeats apart from
//! the records, in a dense *heartbeat column*: one `AtomicU64` per slot. Beside the shards, one
//! mutex guards the registry-wide indexes — the ready workers by idle time, who holds each job,
//! the startup / idle / lifetime deadlines, the drained and terminal workers — and the counters
//! behind `stats`, so that it is O(1).
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
//!   shard's shared lock (shard → cache);
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
//! back. A health check of a shard reads the column sequentially (8 bytes a worker, 64 slots
//! per branch-free step) rather than every record; a record is read only for a worker found
//! due. The key compared with the cutoff is `max(heartbeat, grace floor)`:
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
//! Slots are reused, but a slot is only ever reached through the worker's id, looked up under
//! the shard's lock, so a stale id cannot touch the slot's next occupant: its look-up fails
//! first. Allocating and releasing slots takes the shard's write lock, which excludes
//! every heartbeat to that shard.
//!
//! # Why `claim` re-checks
//!
//! <!-- storage: the candidate search is the part the layout rework (issue 12) changes; the
//! re-check below stays. -->
//! `claim` finds its candidate in the ready index, under the registry-wide mutex; but the
//! record lives under its shard's lock, which the lock order puts *before* the mutex. So
//! whenever `claim` has to take the shard lock after letting go of the mutex, the world may
//! have moved in between — another claimer took the worker, it was released and claimed
//! again, it was terminated. It therefore checks again, under the shard's write lock, that
//! the worker is still `Ready`, without a job, and idle since the same instant (the index
//! key), and — under the mutex once more — that no worker holds the job yet. Only then does
//! it assign; a candidate that fails is skipped for the next one. The search is bounded per
//! hold of the mutex, so a filter that matches few of many ready workers never holds up the
//! other operations for long.
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
//! size). A record the host unregistered meanwhile ends its entry (the host took the instance
//! over); a registry that cannot answer keeps the entry for later rather than forget an
//! instance. Hence the promise: no leaked instances.
