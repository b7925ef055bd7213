//! `provision_worker` and the ledger of provisions in flight, which keeps concurrent calls
//! under `max_workers`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ids::ProviderId;
use crate::worker::{Worker, WorkerSpec};

use super::super::provider::guarded;
use super::super::report::ProvisionFailure;
use super::{bump, WorkerLifecycleManager};

/// Provisions in flight: recorded before the provider is called, removed after the worker is
/// registered (or the call failed). Counted against `max_workers` and against demand.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    next: u64,
    pub(super) in_flight: HashMap<u64, ProviderId>,
    /// Provisions ever started per provider (reconcile uses it to see one start under it).
    pub(super) started: HashMap<ProviderId, u64>,
}

impl Ledger {
    pub(super) fn in_flight_for(&self, provider: &ProviderId) -> usize {
        self.in_flight.values().filter(|p| *p == provider).count()
    }
}

/// Removes a provision from the ledger when dropped, whatever happened.
struct Ticket<'a> {
    ledger: &'a Mutex<Ledger>,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.ledger.lock().in_flight.remove(&self.id);
    }
}

impl WorkerLifecycleManager {
    /// Asks `provider_id` for a worker with `spec` and registers it (in `Creating`; the host
    /// moves it on when its agent reports in).
    ///
    /// The intent is recorded in the provisioning ledger **before** the provider is called, so
    /// concurrent calls never exceed `max_workers`. Emits `ProvisionRequested`, and
    /// `ProvisionFailed` on failure; consecutive failures back the provider off for automatic
    /// scaling (a direct call is always attempted).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid spec; [`Error::ProviderNotFound`];
    /// [`Error::CapacityExceeded`] at `max_workers`; [`Error::Provider`] when the provider
    /// failed or panicked; a registry error when the handle could not be registered (the new
    /// instance is then destroyed, so nothing leaks).
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
        spec.validate().map_err(|e| (e, None))?;
        let entry = self
            .provider(provider_id)
            .ok_or_else(|| (Error::ProviderNotFound(provider_id.clone()), None))?;
        let ticket = self.reserve(provider_id).map_err(|e| (e, None))?;
        let _ = self.registry.publish(EventKind::ProvisionRequested {
            provider_id: provider_id.clone(),
        });

        let created = guarded("create_worker", || entry.provider.create_worker(&spec));
        let mut handle = match created {
            Ok(handle) => handle,
            Err(e) => {
                drop(ticket);
                let failure = self.record_create_failure(provider_id, &e);
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
        match self.registry.register(handle.clone(), spec) {
            Ok(worker) => {
                // Registered first, ledger entry removed second: the count never dips.
                drop(ticket);
                self.backoff.lock().remove(provider_id);
                bump(&self.counters.provisioned, 1);
                Ok(worker)
            }
            Err(e) => {
                drop(ticket);
                // The instance exists but cannot be recorded: destroy it rather than leak it.
                // (Should that fail too, `reconcile` finds it as an orphan.)
                let _ = guarded("destroy_worker", || entry.provider.destroy_worker(&handle));
                Err((e, None))
            }
        }
    }

    /// Records a provision in flight if there is room under `max_workers`.
    fn reserve(&self, provider_id: &ProviderId) -> Result<Ticket<'_>> {
        let mut ledger = self.ledger.lock();
        // The registry never calls back into the manager or user code: reading its count under
        // the ledger lock is what makes concurrent reservations exact.
        let registered = self.registry.count()?;
        let in_flight = ledger.in_flight.len();
        if registered + in_flight >= self.config.max_workers {
            return Err(Error::CapacityExceeded(format!(
                "max_workers {} reached ({registered} registered, {in_flight} being provisioned); \
                 not asking provider {provider_id}",
                self.config.max_workers
            )));
        }
        let id = ledger.next;
        ledger.next += 1;
        ledger.in_flight.insert(id, provider_id.clone());
        *ledger.started.entry(provider_id.clone()).or_default() += 1;
        Ok(Ticket {
            ledger: &self.ledger,
            id,
        })
    }
}
