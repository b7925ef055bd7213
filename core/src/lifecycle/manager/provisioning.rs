//! `provision_worker` and the ledger of provisions in flight, which keeps concurrent calls
//! under `max_workers`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ids::{ProviderId, WorkerId};
use crate::registry::pool_of;
use crate::worker::{Worker, WorkerHandle, WorkerSpec};

use super::super::lease::Term;
use super::super::provider::{guarded, ProviderError, WorkerProvider};
use super::super::report::ProvisionFailure;
use super::pools::template_needs;
use super::providers::ProviderEntry;
use super::{bump, WorkerLifecycleManager};

/// Provisions in flight: recorded before the provider is called, removed after the worker is
/// registered (or the call failed). Every one counts against `max_workers`; against demand,
/// each counts for the pool its spec belongs to ([`pool_of`]; the scaling target's when of
/// its spec's pool, usually none), as its registered worker will.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    next: u64,
    pub(super) in_flight: HashMap<u64, InFlight>,
    /// Provisions ever started per provider (reconcile uses it to see one start under it).
    pub(super) started: HashMap<ProviderId, u64>,
}

impl Ledger {
    /// Drops what the ledger knows of an unregistered provider (its provisions in flight stay
    /// counted until they end).
    pub(super) fn forget(&mut self, provider: &ProviderId) {
        self.started.remove(provider);
    }

    pub(super) fn in_flight_for(&self, provider: &ProviderId) -> usize {
        self.in_flight
            .values()
            .filter(|p| p.provider_id == *provider)
            .count()
    }

    /// The provisions in flight of a spec of pool `pool` (of no pool with `None`).
    pub(super) fn in_flight_of_pool(&self, pool: Option<&str>) -> usize {
        self.in_flight
            .values()
            .filter(|p| p.pool.as_deref() == pool)
            .count()
    }

    /// Notes that pool `pool` was removed, or reshaped: each of its provisions in flight now
    /// puts the pool into `undrained` when it ends (see [`Ticket`]), for the leader's next
    /// tick to drain its worker as the removal would have, had it been registered.
    pub(super) fn pool_changed(&mut self, pool: &str) {
        for p in self.in_flight.values_mut() {
            if p.pool.as_deref() == Some(pool) {
                p.pool_changed = true;
            }
        }
    }

    /// The provisions in flight per pool (those of no pool left out).
    pub(super) fn in_flight_per_pool(&self) -> BTreeMap<String, usize> {
        let mut per_pool = BTreeMap::new();
        for pool in self.in_flight.values().filter_map(|p| p.pool.as_ref()) {
            *per_pool.entry(pool.clone()).or_insert(0) += 1;
        }
        per_pool
    }
}

/// One provision in flight.
#[derive(Debug)]
pub(super) struct InFlight {
    /// The provider asked.
    pub(super) provider_id: ProviderId,
    /// The pool of the spec ([`pool_of`]), whoever asked (a pool's tick, the scaling target,
    /// the host's own `provision_worker`): its worker, once registered, is that pool's.
    pub(super) pool: Option<String>,
    /// The pool was removed or reshaped while this was in flight ([`Ledger::pool_changed`]).
    pub(super) pool_changed: bool,
}

/// Makes the id of each new worker (see [`WorkerLifecycleManager::set_worker_id_source`]).
pub(super) type IdSource = Box<dyn FnMut() -> WorkerId + Send>;

/// Removes a provision from the ledger when dropped, whatever happened — after the
/// registration, if any. One whose pool was removed or reshaped meanwhile puts the pool into
/// `undrained`: the removal's look for the pool's workers ran before this one's was
/// registered, so the leader's next tick drains it (terminated if still starting), as it does
/// a worker of the pool's own tick's create — whoever asked for it (the pool's tick, the
/// host's own `provision_worker` of the pool's spec). Also after a failed create: its
/// registration may have been applied with its reply lost.
struct Ticket<'a> {
    manager: &'a WorkerLifecycleManager,
    id: u64,
}

impl Ticket<'_> {
    /// Marks this provision as one whose pool was removed or reshaped while it was in flight
    /// when, before it started, this replica removed `pool` (and has not set a pool of that
    /// name again), or reshaped it so that its template no longer takes a worker of `spec`
    /// ([`template_needs`]): the host read the pool's spec just before a
    /// `set_pools`/`remove_pool` on another thread. Its worker, once registered, belongs to no
    /// pool of this replica, or is of an old template that the pool would count as capacity
    /// for demand it cannot take, so it is drained as one in flight at the change. A change
    /// after the reservation marks it itself ([`Ledger::pool_changed`]); one between the
    /// reservation and this look is seen here too. (Lock order: the pools', then the
    /// ledger's.) Cost: a look at the pool's template, when the spec names a pool.
    fn note_if_pool_changed(&self, pool: &str, spec: &WorkerSpec) {
        let set = self.manager.pools.lock();
        let changed = match set.entries.get(pool) {
            Some(entry) => !template_needs(&entry.pool).matches_spec(spec),
            None => set.removed.contains(pool),
        };
        if changed {
            if let Some(p) = self.manager.ledger.lock().in_flight.get_mut(&self.id) {
                p.pool_changed = true;
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        // The ledger's lock is let go before the pools' is taken (never one under the other
        // here; `set_pools`/`remove_pool` take the ledger's under the pools').
        let ended = self.manager.ledger.lock().in_flight.remove(&self.id);
        if let Some(InFlight {
            pool: Some(pool),
            pool_changed: true,
            ..
        }) = ended
        {
            self.manager.pools.lock().undrained.insert(pool);
        }
    }
}

/// Remembers a created instance as an orphan when the provisioning unwinds past it (a host's
/// registry that panics in `register`, say; a ticker, `hw_manager_tick` and the Python binding
/// go on after the panic): otherwise it was in nobody's hands, leaked until a periodic
/// reconcile found it (never with `reconcile_interval` 0). Due at once: the ticks' orphan
/// retries destroy it once the registry says no record holds it, and forget it if one does.
/// (No registry call here: a second panic while unwinding would abort the process.)
struct OrphanOnUnwind<'a> {
    manager: &'a WorkerLifecycleManager,
    handle: &'a WorkerHandle,
}

impl Drop for OrphanOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.manager.remember_orphan(self.handle, 0);
        }
    }
}

impl WorkerLifecycleManager {
    /// Asks `provider_id` for a worker with `spec` and registers it (in `Creating`; the host
    /// moves it on when its agent reports in).
    ///
    /// The manager makes the new worker's id first and passes it to
    /// [`create_worker`](WorkerProvider::create_worker), so the instance starts knowing it; a
    /// handle coming back with another id is refused as a provider error (its instance is
    /// destroyed under the id the manager made, never under the other one). Whenever the
    /// manager destroys the instance of a create it does not register and that destroy fails,
    /// the instance is kept as an orphan, destroyed again by a later tick once the registry says
    /// no record holds it.
    ///
    /// The intent is recorded in the provisioning ledger **before** the provider is called, so
    /// concurrent calls never exceed `max_workers`. Emits `ProvisionRequested`, and
    /// `ProvisionFailed` when the provider fails; consecutive failures back the provider off
    /// for automatic scaling (a direct call is always attempted).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid spec; [`Error::ProviderNotFound`];
    /// [`Error::CapacityExceeded`] at `max_workers` (also after the create, when this replica
    /// led again under a new term meanwhile and the fleet filled up in between: the new
    /// instance is then destroyed); [`Error::NotLeader`] when another replica
    /// leads (this manager's lease, the store's lease row, or the provider's refusal of the
    /// fencing token says so: not a failure of the provider), or led while the create was in
    /// flight and the provider no longer lists the new instance (see below);
    /// [`Error::Provider`] when the provider failed or panicked; a registry error when the
    /// handle could not be registered (the new instance is then destroyed, so nothing leaks):
    /// [`Error::InvalidArgument`] for a handle over the registry's limits (resource id,
    /// metadata). A registration that failed with [`Error::Backend`] may have been applied all
    /// the same (a reply lost after the commit): the registry is asked, and a worker it holds
    /// is returned as provisioned; when it cannot say either, the error is returned and the
    /// instance is kept as an orphan, destroyed by a later tick once the registry says no
    /// record holds it.
    ///
    /// A create that returns after another replica led meanwhile (this replica leads again
    /// under a term more than one past the create's: terms are consecutive, see
    /// [`Leadership`](crate::Leadership)) may have had its instance destroyed by that leader's
    /// reconcile, which saw it without a record. The provider is asked first (one
    /// [`list_workers`](WorkerProvider::list_workers), under the lease confirmed by the
    /// store): an instance it no longer lists (by resource id or by the worker's id) is neither
    /// registered nor destroyed again, and the call fails with [`Error::NotLeader`] (no
    /// `ProvisionFailed`, no back-off); one it lists is registered as usual. A provider that
    /// does not list, or whose listing fails, cannot say: the worker is registered, and should
    /// its instance be gone, it never reports in and its destroy at `startup_timeout` is the
    /// instance's second (answered `NotFound` by most clouds). A listing that lags behind the
    /// create (an eventually consistent cloud API) leaves the instance unregistered and
    /// undestroyed until a reconcile of the leader finds it (`reconcile_interval`), as is an
    /// instance whose create returns to this replica holding such a term with its trust window
    /// closed (`NotLeader`; not remembered as an orphan: its destroy could be the second). A
    /// create that returns to this replica leading under the next term (it lost the lease and
    /// took it again, nobody leading in between) is registered without that look.
    ///
    /// A spec carrying the label [`POOL_LABEL`](crate::POOL_LABEL) makes a worker of that pool
    /// (counted as its capacity on its way). Should the pool be removed while the create is in
    /// flight (or reshaped to a template that does not take the worker), the worker ends as
    /// one of the pool's own tick's creates would: returned as provisioned, and taken out of
    /// service by the leader's next tick (drained; terminated if still starting), since the
    /// removal could not find it before it was registered.
    pub fn provision_worker(
        &self,
        provider_id: &ProviderId,
        spec: Arc<WorkerSpec>,
    ) -> Result<Worker> {
        self.provision_inner(provider_id, spec)
            .map_err(|(error, _failure)| error)
    }

    pub(super) fn provision_inner(
        &self,
        provider_id: &ProviderId,
        spec: Arc<WorkerSpec>,
    ) -> std::result::Result<Worker, (Error, Option<ProvisionFailure>)> {
        crate::trace::span!("provision", provider_id = %provider_id);
        spec.validate().map_err(|e| (e, None))?;
        // A replica that does not lead is refused before anything (no reservation, no event).
        self.fence().map_err(|e| (e, None))?;
        let entry = self
            .provider(provider_id)
            .ok_or_else(|| (Error::ProviderNotFound(provider_id.clone()), None))?;
        let ticket = self
            .reserve(provider_id, &entry.provider, pool_of(&spec))
            .map_err(|e| (e, None))?;
        if let Some(pool) = pool_of(&spec) {
            ticket.note_if_pool_changed(pool, &spec);
        }
        let _ = self.registry.publish(EventKind::ProvisionRequested {
            provider_id: provider_id.clone(),
        });
        // Confirmed by the store right before the create, a provider call no store can fence:
        // after the reservation and the event above (registry round trips on a shared store,
        // during which the lease may have been lost). Its term is the fencing token of the
        // calls below.
        let token = match self.confirm() {
            Ok(token) => token,
            Err(e) => {
                drop(ticket);
                return Err((e, None));
            }
        };

        let id = self.next_worker_id();
        crate::trace::event!(worker_id = %id, "create_worker");
        let created = self.provider_call(token, "create_worker", || {
            entry.provider.create_worker_fenced(token, id, &spec)
        });
        let mut handle = match created {
            Ok(handle) if handle.worker_id == id => handle,
            Ok(mut handle) => {
                // Not the worker that was asked for (another worker's id, perhaps one that is
                // registered): refused. Its instance is destroyed under the id it was created
                // for, so a provider that routes by id cannot hit the other worker.
                let returned = handle.worker_id;
                handle.worker_id = id;
                handle.provider_id = provider_id.clone();
                handle.provider_type = entry.provider_type.clone();
                let destroyed = self.destroy_unregistered(&entry, &handle);
                drop(ticket);
                let e = ProviderError::new(format!(
                    "create_worker returned a handle for worker {returned}, not for {id} (the id \
                     it was given); {destroyed}"
                ));
                let failure = self.record_create_failure(provider_id, &entry.provider, &e);
                return Err((
                    Error::Provider {
                        provider_id: provider_id.clone(),
                        message: format!("create_worker failed: {e}"),
                    },
                    Some(failure),
                ));
            }
            // The provider refused the token: another replica leads (`provider_call` closed the
            // trust window). Not the provider's failure: no back-off, no `ProvisionFailed`.
            Err(e) if e.is_fenced() => {
                drop(ticket);
                return Err((
                    Error::NotLeader(format!(
                        "provider {provider_id} refused fencing token {token}, the term this \
                         replica held: another replica leads under a larger term ({e})"
                    )),
                    None,
                ));
            }
            Err(e) => {
                drop(ticket);
                let failure = self.record_create_failure(provider_id, &entry.provider, &e);
                return Err((
                    Error::Provider {
                        provider_id: provider_id.clone(),
                        message: format!("create_worker failed: {e}"),
                    },
                    Some(failure),
                ));
            }
        };
        // The worker belongs to the provider that was asked, whatever the handle says: destroys
        // are routed by it.
        handle.provider_id = provider_id.clone();
        handle.provider_type = entry.provider_type.clone();
        // Declared after the ticket, so dropped before it when unwinding: remembered before
        // the provision leaves the ledger.
        let _orphan_on_unwind = OrphanOnUnwind {
            manager: self,
            handle: &handle,
        };
        // Fenced: a leader that lost its lease during the create registers nothing, and
        // destroys nothing either (the new leader owns the instance now: two destroys of one
        // instance are what fencing prevents). Its takeover reconcile destroys it, or, when
        // the create returns after that reconcile, its next periodic one
        // (`reconcile_interval`).
        let term = match self.fence() {
            Ok(term) => term,
            // Still holding a term past the next one (its trust window closed): another
            // replica led in between, whose reconcile may have destroyed the instance (see
            // below). Remembered as an orphan, it would be destroyed by this replica's next
            // tick, should the renewal keep that term: a second destroy. Left to a reconcile
            // of whoever leads instead (its periodic one, if this replica keeps the term).
            Err(e)
                if self
                    .lease
                    .held()
                    .is_some_and(|held| held > token.saturating_add(1)) =>
            {
                drop(ticket);
                return Err((
                    Error::NotLeader(format!(
                        "{e}; instance {} of provider {provider_id} was created under term \
                         {token}, another replica led since: not registered (left to a \
                         reconcile of whoever leads)",
                        handle.resource_id
                    )),
                    None,
                ));
            }
            Err(e) => {
                // Remembered while still in flight (see `remember_orphan`).
                let e = self.orphaned_by_lost_lease(&handle, e);
                drop(ticket);
                return Err((e, None));
            }
        };
        // Leading again under a term past the next one: another replica led in between
        // (terms are consecutive, see `Leadership`), and its reconcile, which cannot see this
        // ledger, may have taken the new instance for an orphan and destroyed it. Registered
        // then, it would never report in, and the health check's destroy of it at
        // `startup_timeout` would be its second: the provider is asked first.
        if term > token.saturating_add(1) {
            match self.still_listed(&entry, &handle) {
                Ok(Some(true)) => {}
                Ok(Some(false)) => {
                    drop(ticket);
                    return Err((
                        Error::NotLeader(format!(
                            "worker {id} was created under term {token}, and another replica \
                             led before this one led again under term {term}: provider \
                             {provider_id} no longer lists instance {} (that leader's reconcile \
                             destroyed it as an orphan): not registered, not destroyed again",
                            handle.resource_id
                        )),
                        None,
                    ));
                }
                // Nobody can say: registered as before (DESIGN.md, "#14", the residual risk).
                Ok(None) => {}
                Err(lost) => {
                    // Not remembered as an orphan: the leader in between may have destroyed it
                    // already, and a retry of this replica's would be the second destroy.
                    // Whoever leads next finds it (its takeover or periodic reconcile) if it
                    // is still there.
                    drop(ticket);
                    return Err((
                        Error::NotLeader(format!(
                            "{lost}; instance {} of provider {provider_id} was created under \
                             term {token} but not registered (left to whoever leads next)",
                            handle.resource_id
                        )),
                        None,
                    ));
                }
            }
        }
        // Leading again under a new term: the reservation was made on this replica's view of
        // the fleet under its old term, and the leaders in between, who cannot see this
        // ledger, may have filled the fleet up to `max_workers` meanwhile.
        if term != token && self.over_capacity() {
            // Still in flight until the destroy returned (a `reconcile` meanwhile must not take
            // the instance for an orphan and destroy it too).
            let destroyed = self.destroy_unregistered(&entry, &handle);
            drop(ticket);
            return Err((
                Error::CapacityExceeded(format!(
                    "max_workers {} reached while worker {id} was being created under term \
                     {token} (term {term} now): not registered, {destroyed}",
                    self.config.max_workers
                )),
                None,
            ));
        }
        let registered = match self.write(|r| r.register(handle.clone(), spec)) {
            // The store did not answer: the registration may have been applied all the same
            // (PostgreSQL committed, the reply was lost). Destroying the instance then would
            // leave a record without an instance, destroyed a second time when the health
            // check expires it: ask the store what happened.
            Err(e @ Error::Backend(_)) => match self.registry.get(&id) {
                // Registered after all (the id was made for this call: nobody else's).
                Ok(Some(worker)) => Ok(worker),
                Ok(None) => Err(e),
                Err(unknown) => {
                    // Nobody can say: destroying it now might pull a registered worker's
                    // instance from under its record. Remembered as an orphan: a later tick
                    // destroys it once the store says no record holds it (or forgets it if
                    // one does), or the next leader's reconcile settles it. Remembered while
                    // still in flight (see `remember_orphan`).
                    self.remember_orphan(&handle, self.registry.now());
                    drop(ticket);
                    return Err((
                        Error::Backend(format!(
                            "{e}; whether worker {id} was registered is unknown ({unknown}): \
                             instance {} of provider {provider_id} is kept until the registry \
                             says (destroyed by a later tick if it has no record)",
                            handle.resource_id
                        )),
                        None,
                    ));
                }
            },
            other => other,
        };
        match registered {
            Ok(worker) => {
                // Registered first, ledger entry removed second: the count never dips.
                drop(ticket);
                self.backoff.lock().remove(provider_id);
                bump(&self.counters.provisioned, 1);
                Ok(worker)
            }
            // The store refused the registration: another replica took the lease after the
            // fence above. As there, the instance is left to whoever leads next.
            Err(e @ Error::NotLeader(_)) => {
                // Remembered while still in flight (see `remember_orphan`).
                let e = self.orphaned_by_lost_lease(&handle, e);
                drop(ticket);
                Err((e, None))
            }
            Err(e) => {
                // The instance exists but cannot be recorded: destroy it rather than leak it.
                // (Should that fail too, the ticks' orphan retries destroy it.) The handle carries
                // the id the manager made, never another worker's. The provision stays in
                // flight until the destroy returned: a `reconcile` listing the instance
                // meanwhile must not take it for an orphan and destroy it too. Only while this
                // replica still leads (confirmed by the store: the registration may have failed
                // because the lease was lost, and the next leader's reconcile destroys the
                // instance then).
                self.destroy_unregistered(&entry, &handle);
                drop(ticket);
                Err((e, None))
            }
        }
    }

    /// Whether `entry`'s provider still lists the instance of `handle` (its resource id, or
    /// the worker id the manager made for the create), asked under the lease confirmed by the
    /// store, as [`reconcile`](Self::reconcile) lists. `None` when the provider cannot say:
    /// it does not list ([`list_workers`](WorkerProvider::list_workers) unsupported), or its
    /// listing failed or panicked. Cost: one listing of the provider's instances.
    ///
    /// # Errors
    /// [`Error::NotLeader`] when this replica no longer leads (nothing is asked then).
    fn still_listed(&self, entry: &ProviderEntry, handle: &WorkerHandle) -> Result<Option<bool>> {
        self.confirm()?;
        match guarded("list_workers", || entry.provider.list_workers()) {
            Ok(listed) => Ok(Some(listed.iter().any(|h| {
                h.resource_id == handle.resource_id || h.worker_id == handle.worker_id
            }))),
            Err(_) => Ok(None),
        }
    }

    /// A created instance this replica may no longer register (its lease was lost during the
    /// create): remembered as an orphan, destroyed by this replica's next tick if it keeps its
    /// term (nobody else led meanwhile), else by the new leader's takeover reconcile (or its
    /// periodic one, for a create that returns after the takeover) — never by both. Returns
    /// the error that says so.
    fn orphaned_by_lost_lease(&self, handle: &WorkerHandle, lost: Error) -> Error {
        self.remember_orphan(handle, self.registry.now());
        Error::NotLeader(format!(
            "{lost}; instance {} of provider {} was created but not registered (destroyed by \
             whoever leads next)",
            handle.resource_id, handle.provider_id
        ))
    }

    /// Right before destroying the instance of a create that this call does not register:
    /// the lease, confirmed by the store (the term to destroy under). A replica that no
    /// longer leads makes no provider call: the instance is remembered as an orphan instead,
    /// destroyed by this replica's next tick if it keeps its term, else left to the new
    /// leader's takeover reconcile (the renewal that reports the loss forgets it) -- never
    /// destroyed by both.
    fn confirm_cleanup(&self, handle: &WorkerHandle) -> Result<Term> {
        self.confirm()
            .inspect_err(|_| self.remember_orphan(handle, self.registry.now()))
    }

    /// Destroys the instance of a create that this call does not register (the lease
    /// confirmed first, [`confirm_cleanup`](Self::confirm_cleanup)); says what became of it,
    /// for the call's error. A destroy that fails (not refused for the token) is a failed
    /// attempt (counted in `destroy_failures_total` and the orphan's attempts) and leaves the
    /// instance remembered as an orphan, destroyed again by the ticks after the destroy
    /// back-off, once no record holds it.
    fn destroy_unregistered(&self, entry: &ProviderEntry, handle: &WorkerHandle) -> String {
        crate::trace::orphan_destroy_span!(handle);
        let term = match self.confirm_cleanup(handle) {
            Ok(term) => term,
            Err(e) => return format!("its instance is left to whoever leads ({e})"),
        };
        let outcome = self.provider_call(term, "destroy_worker", || {
            entry.provider.destroy_worker_fenced(term, handle)
        });
        if super::orphans::confirms_destroy(&outcome) {
            self.note_destroy_confirmed();
        }
        match outcome {
            Ok(()) => "its instance was destroyed".to_owned(),
            Err(e) if e.is_not_found() => "its instance was destroyed".to_owned(),
            Err(e) => {
                if !e.is_fenced() {
                    // A failed attempt like the orphan destroys of `reconcile` and of the
                    // ticks' retries: counted, and retried after the back-off.
                    self.orphan_destroy_failed(handle, self.registry.now(), &e);
                    bump(&self.counters.destroy_failures, 1);
                }
                format!("destroying its instance failed: {e}")
            }
        }
    }

    /// Sets where the ids of new workers come from (default: a fresh random
    /// [`WorkerId::new`] each). For deterministic simulations and tests: every id it makes must
    /// be new to the registry (a reused one is refused by `register` with `AlreadyExists`).
    /// Called under a manager lock: it must not call the manager (and a panic in it is not
    /// caught: it reaches the caller of `provision_worker`/`tick`).
    pub fn set_worker_id_source(&self, source: impl FnMut() -> WorkerId + Send + 'static) {
        *self.worker_ids.lock() = Some(Box::new(source));
    }

    fn next_worker_id(&self) -> WorkerId {
        match self.worker_ids.lock().as_mut() {
            Some(source) => source(),
            None => WorkerId::new(),
        }
    }

    /// Records a provision in flight of a spec of `pool` if there is room under `max_workers`
    /// and `provider` is still registered as `provider_id` (checked under the providers' lock,
    /// so that an unregistered provider leaves nothing behind in the ledger).
    fn reserve(
        &self,
        provider_id: &ProviderId,
        provider: &Arc<dyn WorkerProvider>,
        pool: Option<&str>,
    ) -> Result<Ticket<'_>> {
        self.while_registered(provider_id, provider, || {
            let mut ledger = self.ledger.lock();
            // The registry never calls back into the manager or user code: reading its count
            // under the ledger lock is what makes concurrent reservations exact.
            let registered = self.registry.count()?;
            let in_flight = ledger.in_flight.len();
            if registered + in_flight >= self.config.max_workers {
                return Err(Error::CapacityExceeded(format!(
                    "max_workers {} reached ({registered} registered, {in_flight} being \
                     provisioned); not asking provider {provider_id}",
                    self.config.max_workers
                )));
            }
            let id = ledger.next;
            ledger.next += 1;
            ledger.in_flight.insert(
                id,
                InFlight {
                    provider_id: provider_id.clone(),
                    pool: pool.map(str::to_owned),
                    pool_changed: false,
                },
            );
            *ledger.started.entry(provider_id.clone()).or_default() += 1;
            Ok(Ticket { manager: self, id })
        })
        .unwrap_or_else(|| Err(Error::ProviderNotFound(provider_id.clone())))
    }

    /// Whether the registered workers and the provisions in flight (the caller's own among
    /// them) are more than `max_workers`. A registry that cannot answer says no: the
    /// registration that follows fails the same way.
    fn over_capacity(&self) -> bool {
        let ledger = self.ledger.lock();
        self.registry
            .count()
            .is_ok_and(|registered| registered + ledger.in_flight.len() > self.config.max_workers)
    }

    /// Tests of the ledger's hygiene (its private state is not visible from outside).
    #[cfg(test)]
    pub(super) fn ledger_providers(&self) -> usize {
        self.ledger.lock().started.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::registry::InMemoryWorkerRegistry;
    use crate::worker::{ProviderType, WorkerHandle};
    use crate::WorkerLifecycleConfig;

    #[derive(Debug)]
    struct Local;

    impl WorkerProvider for Local {
        fn provider_id(&self) -> ProviderId {
            ProviderId::new("local").unwrap()
        }
        fn provider_type(&self) -> ProviderType {
            ProviderType::BareMetal
        }
        fn create_worker(
            &self,
            id: WorkerId,
            _: &WorkerSpec,
        ) -> super::super::super::provider::ProviderResult<WorkerHandle> {
            let h = WorkerHandle::new(self.provider_id(), self.provider_type(), "p");
            Ok(WorkerHandle { worker_id: id, ..h })
        }
        fn destroy_worker(
            &self,
            _: &WorkerHandle,
        ) -> super::super::super::provider::ProviderResult<()> {
            Ok(())
        }
    }

    #[test]
    fn the_ledger_forgets_an_unregistered_provider() {
        let registry = Arc::new(InMemoryWorkerRegistry::with_clock(Arc::new(
            ManualClock::new(1_000),
        )));
        let manager =
            WorkerLifecycleManager::new(registry, WorkerLifecycleConfig::default()).unwrap();
        let local = ProviderId::new("local").unwrap();
        for _ in 0..3 {
            manager.register_provider(Arc::new(Local)).unwrap();
            manager
                .provision_worker(&local, Arc::new(WorkerSpec::new("img")))
                .unwrap();
            assert_eq!(manager.ledger_providers(), 1);
            manager.unregister_provider(&local).unwrap();
            assert_eq!(manager.ledger_providers(), 0);
        }
    }
}
