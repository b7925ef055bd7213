//! The registered providers, and the back-off of those whose `create_worker` keeps failing.

use std::sync::Arc;

use crate::clock::{millis, Timestamp};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ids::ProviderId;
use crate::worker::{ProviderType, WorkerHandle};

use super::super::config::backoff_delay;
use super::super::lease::Term;
use super::super::provider::{guarded, ProviderError, ProviderErrorKind, WorkerProvider};
use super::super::report::{ProviderBackoff, ProvisionFailure};
use super::{bump, WorkerLifecycleManager};

/// A registered provider and what it said about itself at registration.
#[derive(Clone)]
pub(super) struct ProviderEntry {
    pub(super) provider: Arc<dyn WorkerProvider>,
    pub(super) provider_type: ProviderType,
}

/// Consecutive create failures of a provider, the end of its back-off, and the kind of the
/// last failure (whoever's create it was: a pool's, another pool's on the same provider, a
/// direct `provision_worker`), which tells "no capacity" from a failure in the pools' plan.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    pub(super) failures: u32,
    pub(super) until: Timestamp,
    pub(super) kind: ProviderErrorKind,
}

impl WorkerLifecycleManager {
    /// Adds a provider under its [`provider_id`](WorkerProvider::provider_id).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a provider with that id is registered already or asking
    /// the provider its id panicked; [`Error::Provider`] when asking its type panicked.
    pub fn register_provider(&self, provider: Arc<dyn WorkerProvider>) -> Result<()> {
        // Asked outside any lock: this is user code.
        let id = guarded("provider_id", || Ok(provider.provider_id()))
            .map_err(|e| Error::invalid(format!("cannot register provider: {e}")))?;
        let provider_type =
            guarded("provider_type", || Ok(provider.provider_type())).map_err(|e| {
                Error::Provider {
                    provider_id: id.clone(),
                    message: e.to_string(),
                }
            })?;
        let mut providers = self.providers.write();
        if providers.contains_key(&id) {
            return Err(Error::invalid(format!(
                "provider {id} is already registered"
            )));
        }
        providers.insert(
            id,
            ProviderEntry {
                provider,
                provider_type,
            },
        );
        Ok(())
    }

    /// Removes a provider. Its workers stay registered; destroys for them fail (and are
    /// retried) until a provider with that id is registered again; a scaling target on it is
    /// cleared (a tick that planned with it meanwhile provisions and retires nothing).
    ///
    /// # Errors
    /// [`Error::ProviderNotFound`].
    pub fn unregister_provider(&self, provider_id: &ProviderId) -> Result<()> {
        let removed = {
            let mut providers = self.providers.write();
            let removed = providers.remove(provider_id);
            if removed.is_some() {
                // Forgotten with the provider, under its lock: a create failing right now or a
                // provision starting right now checks the registration under the same lock, so
                // neither can bring an entry back (lock order: providers, then the rest).
                self.backoff.lock().remove(provider_id);
                self.ledger.lock().forget(provider_id);
                // The target too, under the same lock: `set_scaling_target` checks the
                // registration and writes the target under it, so a target set on the
                // provider is cleared here or refused there, and a target set after a
                // re-registration (which waits for this lock) is never cleared by this call.
                let mut target = self.target.lock();
                if target
                    .as_ref()
                    .is_some_and(|t| &t.provider_id == provider_id)
                {
                    *target = None;
                }
            }
            removed
        };
        match removed {
            // `_entry` (perhaps the last reference to user code) drops here, lock-free.
            Some(_entry) => Ok(()),
            None => Err(Error::ProviderNotFound(provider_id.clone())),
        }
    }

    /// Ids of the registered providers, sorted.
    pub fn providers(&self) -> Vec<ProviderId> {
        self.providers.read().keys().cloned().collect()
    }

    pub(super) fn provider(&self, id: &ProviderId) -> Option<ProviderEntry> {
        self.providers.read().get(id).cloned()
    }

    /// Destroys `handle`'s instance with its provider, under fencing token `token` (a panic
    /// there is caught and becomes the error); an error if that provider is not registered.
    /// No lock is held during the call.
    pub(super) fn destroy_with_provider(
        &self,
        token: Term,
        handle: &WorkerHandle,
    ) -> std::result::Result<(), ProviderError> {
        match self.provider(&handle.provider_id) {
            Some(p) => self.provider_call(token, "destroy_worker", || {
                p.provider.destroy_worker_fenced(token, handle)
            }),
            None => Err(ProviderError::new(format!(
                "provider {} is not registered",
                handle.provider_id
            ))),
        }
    }

    /// Runs `f` under the providers' read lock if `provider` is still the one registered
    /// under `id` (not unregistered, nor replaced by another with the same id, since it was
    /// looked up); `None` otherwise.
    pub(super) fn while_registered<T>(
        &self,
        id: &ProviderId,
        provider: &Arc<dyn WorkerProvider>,
        f: impl FnOnce() -> T,
    ) -> Option<T> {
        let providers = self.providers.read();
        let same = providers.get(id).is_some_and(|e| {
            // Data pointers only: vtable pointers of one type may differ between codegen units.
            std::ptr::eq(
                Arc::as_ptr(&e.provider) as *const (),
                Arc::as_ptr(provider) as *const (),
            )
        });
        same.then(f)
    }

    /// Counts a failed create of `provider` (registered as `provider_id`): backs it off, emits
    /// `ProvisionFailed`. A provider unregistered meanwhile gets no back-off entry (the failure
    /// is still reported, with `backoff_until` = now). An interrupted create
    /// ([`ProviderErrorKind::Interrupted`]: the host cut it short) is reported alike but leaves
    /// the back-off as it was: the provider did not fail.
    pub(super) fn record_create_failure(
        &self,
        provider_id: &ProviderId,
        provider: &Arc<dyn WorkerProvider>,
        e: &ProviderError,
    ) -> ProvisionFailure {
        let now = self.registry.now();
        let state = self
            .while_registered(provider_id, provider, || {
                let mut backoff = self.backoff.lock();
                if e.is_interrupted() {
                    return backoff.get(provider_id).copied().unwrap_or(Backoff {
                        failures: 0,
                        until: now,
                        kind: e.kind,
                    });
                }
                let entry = backoff.entry(provider_id.clone()).or_insert(Backoff {
                    failures: 0,
                    until: now,
                    kind: e.kind,
                });
                entry.failures = entry.failures.saturating_add(1);
                entry.kind = e.kind;
                entry.until = now.saturating_add(millis(backoff_delay(
                    self.config.provider_backoff_initial,
                    self.config.provider_backoff_max,
                    entry.failures,
                )));
                *entry
            })
            .unwrap_or(Backoff {
                failures: u32::from(!e.is_interrupted()),
                until: now,
                kind: e.kind,
            });
        bump(&self.counters.provision_failures, 1);
        let _ = self.registry.publish(EventKind::ProvisionFailed {
            provider_id: provider_id.clone(),
            error: e.to_string(),
        });
        ProvisionFailure {
            provider_id: provider_id.clone(),
            kind: e.kind,
            error: e.to_string(),
            consecutive_failures: state.failures,
            backoff_until: state.until,
        }
    }

    /// Providers backing off now (after consecutive create failures). Leader state, as this
    /// replica holds it: see [`pending_destroys`](Self::pending_destroys) for a stalled leader.
    pub fn provider_backoff(&self) -> Vec<ProviderBackoff> {
        super::backoff_of(&self.backoff, self.registry.now())
    }
}
