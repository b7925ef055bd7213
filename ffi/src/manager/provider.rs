//! Providers written in C: `hw_provider_callbacks` (function pointers and `user_data`), the
//! `hw_provider_call` context each callback gets, and the adapter that makes them a core
//! `WorkerProvider`.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use engine::{
    Error, ProviderError, ProviderId, ProviderResult, ProviderType, Term, WorkerHandle, WorkerId,
    WorkerProvider, WorkerSpec,
};

use super::hw_manager;
use crate::boundary::{arg_mut, arg_out, arg_ref, arg_str, ffi_boundary, hw_status};
use crate::spec::hw_worker_spec;
use crate::types::{hw_worker_id, provider_id, provider_type};

/// What a provider callback returns.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum hw_provider_result {
    /// Done.
    Ok = 0,
    /// Failed: a provider error in the engine (a create counts toward the provider's back-off;
    /// a destroy is retried later). Say why with `hw_provider_call_set_error`. A create that
    /// set a resource id before failing has that instance destroyed (see `create_worker`).
    Failed = 1,
    /// `destroy_worker`: the instance does not exist (any more); the engine counts it as
    /// destroyed.
    NotFound = 2,
    /// `list_workers`: not supported by this provider (`reconcile` skips it).
    Unsupported = 3,
    /// `create_worker`: no capacity for this spec now (a spot market without instances, a full
    /// quota). A pool whose create fails this way hands its demand to the next pool that
    /// satisfies it until the provider's back-off ends.
    NoCapacity = 4,
    /// `create_worker`, `destroy_worker`: the call's fencing token
    /// (`hw_provider_call_get_fencing_token`) is below the largest this provider has served:
    /// another replica leads now. Not a failure of the provider (no back-off, no failed
    /// attempt): the manager stops acting as the leader until its next tick's renewal. A
    /// refused create makes `hw_manager_provision` return `HW_ERR_NOT_LEADER`; a refused
    /// destroy leaves the worker `TERMINATING`, for the replica that leads to destroy.
    Fenced = 5,
}

/// A provider written in C: function pointers and the `user_data` they receive first. Each
/// callback returns a `hw_provider_result` value (as `uint32_t`: any other value is a failure).
/// Zero the struct before filling it (`= {0}` or `memset`) so that the optional callbacks you
/// leave out are NULL.
///
/// The manager copies this struct. It calls the callbacks on the thread that called the
/// manager function (`hw_manager_tick`, `hw_manager_tick_demand`, `hw_manager_provision`,
/// `hw_manager_terminate`, `hw_manager_reconcile`, `hw_manager_run_health_check`,
/// `hw_manager_cleanup`, `hw_manager_notify_interruption`, `hw_manager_remove_pool`,
/// `hw_manager_set_pools_json`), never while the library holds a lock: a callback may call
/// back into the library, even `hw_manager_free` on the manager that called it. If the manager is
/// used from several threads, the callbacks may run concurrently and `user_data` must allow
/// it. `release(user_data)` is called exactly once when the manager no longer needs the
/// provider (unregistered, manager freed, or registration refused).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_provider_callbacks {
    /// Passed first to every callback; the library never reads it.
    pub user_data: *mut c_void,
    /// Required. Ask the infrastructure for worker `worker_id`, made from `spec`, and return
    /// quickly (the worker reports in later). The manager made `worker_id` before the call:
    /// start the instance knowing it (an environment variable, an argument), so that its agent
    /// reports in and heartbeats with it. Set the instance id with
    /// `hw_provider_call_set_resource_id` (and optionally metadata) as soon as the instance
    /// exists: it is required on success, and a create that fails after setting it (any result
    /// but `HW_PROVIDER_RESULT_OK`, say a step after the launch failed) has its instance
    /// destroyed by the library, through `destroy_worker` with this worker id, resource id and
    /// metadata, on this thread, before the failure is reported. The one exception is
    /// `HW_PROVIDER_RESULT_FENCED`: that instance is left to the replica that leads (its
    /// `hw_manager_reconcile` destroys it as an orphan). A create that fails without a
    /// resource id made nothing the library knows of: clean up yourself.
    pub create_worker: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            worker_id: hw_worker_id,
            spec: *const hw_worker_spec,
            call: *mut hw_provider_call,
        ) -> u32,
    >,
    /// Required. Destroy the instance `resource_id` of worker `worker_id` (metadata given at
    /// creation: `hw_provider_call_get_metadata`). `HW_PROVIDER_RESULT_NOT_FOUND` counts as
    /// destroyed. For an orphan instance (one `list_workers` listed that no record knows)
    /// `worker_id` is an id the library made for the listing, no worker's, and there is no
    /// metadata: destroy by `resource_id`.
    pub destroy_worker: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            worker_id: hw_worker_id,
            resource_id: *const c_char,
            call: *mut hw_provider_call,
        ) -> u32,
    >,
    /// Optional (NULL: unsupported). List the instances the infrastructure really has, one
    /// `hw_provider_call_add_instance` each; used by `hw_manager_reconcile` and by the leader's
    /// ticks every `reconcile_interval_ms`. List only the instances this provider made for this
    /// registry: each listed instance no record knows is destroyed as an orphan (by the ticks
    /// only while they are few against this provider's records: see `max_unhealthy_fraction`;
    /// by `hw_manager_reconcile` however many).
    pub list_workers:
        Option<unsafe extern "C" fn(user_data: *mut c_void, call: *mut hw_provider_call) -> u32>,
    /// Optional. Called once with `user_data` when the provider is dropped.
    pub release: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// The context of one provider callback: what the callback reads (metadata, the fencing
/// token) and writes (resource id, instances, error message). Valid only during the callback;
/// do not keep it.
#[derive(Debug, Default)]
pub struct hw_provider_call {
    operation: &'static str,
    resource_id: Option<String>,
    metadata: BTreeMap<String, String>,
    /// Destroy: the handle's metadata as C strings (`None` when a value holds a NUL).
    given_metadata: BTreeMap<String, Option<CString>>,
    instances: Vec<String>,
    error: Option<String>,
    /// Create and destroy: the term the manager calls under (`None` only when the engine calls
    /// the provider without one, which its manager never does).
    fencing_token: Option<u64>,
}

/// A provider implemented by C callbacks.
#[derive(Debug)]
struct CProvider {
    id: ProviderId,
    kind: ProviderType,
    callbacks: hw_provider_callbacks,
}

// SAFETY: the callbacks and `user_data` belong to the C host, who promises (header) that they
// may be called from whichever threads call the manager; the library only passes them along.
unsafe impl Send for CProvider {}
// SAFETY: as above; the struct itself is never mutated after construction.
unsafe impl Sync for CProvider {}

impl Drop for CProvider {
    fn drop(&mut self) {
        if let Some(release) = self.callbacks.release {
            // SAFETY: the host gave us this function for exactly this call.
            unsafe { release(self.callbacks.user_data) }
        }
    }
}

impl CProvider {
    /// The callback's result, read as a plain integer: a C function may return any value, and
    /// an out-of-range one must not become an invalid Rust enum.
    fn outcome(&self, call: &hw_provider_call, result: u32) -> ProviderResult<()> {
        let message = || {
            call.error
                .clone()
                .unwrap_or_else(|| format!("{} of C provider {} failed", call.operation, self.id))
        };
        match result {
            0 => Ok(()),
            1 => Err(ProviderError::new(message())),
            2 => Err(ProviderError::not_found(message())),
            3 => Err(ProviderError::unsupported(call.operation)),
            4 => Err(ProviderError::no_capacity(message())),
            5 => Err(ProviderError::fenced(message())),
            other => Err(ProviderError::new(format!(
                "{} of C provider {} returned {other}, which is not a hw_provider_result",
                call.operation, self.id
            ))),
        }
    }
}

impl WorkerProvider for CProvider {
    fn provider_id(&self) -> ProviderId {
        self.id.clone()
    }

    fn provider_type(&self) -> ProviderType {
        self.kind.clone()
    }

    fn create_worker(&self, id: WorkerId, spec: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        self.create(None, id, spec)
    }

    fn create_worker_fenced(
        &self,
        token: Term,
        id: WorkerId,
        spec: &WorkerSpec,
    ) -> ProviderResult<WorkerHandle> {
        self.create(Some(token), id, spec)
    }

    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
        self.destroy(None, handle)
    }

    fn destroy_worker_fenced(&self, token: Term, handle: &WorkerHandle) -> ProviderResult<()> {
        self.destroy(Some(token), handle)
    }

    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        let Some(list) = self.callbacks.list_workers else {
            return Err(ProviderError::unsupported("list_workers"));
        };
        let mut call = hw_provider_call {
            operation: "list_workers",
            ..Default::default()
        };
        // SAFETY: a callback the host registered for this; the pointer lives for the call.
        let raw = unsafe { list(self.callbacks.user_data, &mut call) };
        self.outcome(&call, raw)?;
        Ok(call
            .instances
            .into_iter()
            .map(|r| WorkerHandle::new(self.id.clone(), self.kind.clone(), r))
            .collect())
    }
}

impl CProvider {
    /// `create_worker` of the C callbacks, told `token` (see `hw_provider_call_get_fencing_token`).
    fn create(
        &self,
        token: Option<Term>,
        id: WorkerId,
        spec: &WorkerSpec,
    ) -> ProviderResult<WorkerHandle> {
        let Some(create) = self.callbacks.create_worker else {
            return Err(ProviderError::new("create_worker callback is NULL"));
        };
        let spec = hw_worker_spec::new(spec.clone());
        let mut call = hw_provider_call {
            operation: "create_worker",
            fencing_token: token,
            ..Default::default()
        };
        // SAFETY: a callback the host registered for this; both pointers live for the call.
        let raw = unsafe {
            create(
                self.callbacks.user_data,
                hw_worker_id::from_core(&id),
                &spec,
                &mut call,
            )
        };
        if let Err(error) = self.outcome(&call, raw) {
            return Err(self.abandon(token, id, call, error));
        }
        let resource_id = call.resource_id.clone().ok_or_else(|| {
            ProviderError::new(format!(
                "create_worker of C provider {} returned OK without a resource id \
                 (hw_provider_call_set_resource_id)",
                self.id
            ))
        })?;
        let mut handle = WorkerHandle::new(self.id.clone(), self.kind.clone(), resource_id);
        handle.worker_id = id;
        handle.metadata = call.metadata;
        Ok(handle)
    }

    /// The failure of a create whose callback set a resource id before it failed: the instance
    /// exists, and this failure is the only record of it (the engine registers nothing and
    /// never destroys what a failed create made), so it is destroyed here, with the id,
    /// resource id and metadata it was made with, before the failure is reported. Not after
    /// `FENCED`: the provider refuses this manager's token (a destroy under it would be
    /// refused too), and the replica that leads owns the instance (its reconcile).
    fn abandon(
        &self,
        token: Option<Term>,
        id: WorkerId,
        call: hw_provider_call,
        error: ProviderError,
    ) -> ProviderError {
        let Some(resource_id) = call.resource_id else {
            return error;
        };
        let fate = if error.is_fenced() {
            format!(
                "its instance {resource_id} was created and is left to the replica that leads \
                 (hw_manager_reconcile)"
            )
        } else {
            let mut handle =
                WorkerHandle::new(self.id.clone(), self.kind.clone(), resource_id.clone());
            handle.worker_id = id;
            handle.metadata = call.metadata;
            match self.destroy(token, &handle) {
                Ok(()) => format!("its instance {resource_id} was destroyed"),
                Err(e) if e.is_not_found() => format!("its instance {resource_id} was destroyed"),
                Err(e) => format!(
                    "destroying its instance {resource_id} failed too: {e} (hw_manager_reconcile \
                     finds it as an orphan)"
                ),
            }
        };
        ProviderError {
            kind: error.kind,
            message: format!("{}; {fate}", error.message),
        }
    }

    /// `destroy_worker` of the C callbacks, told `token`.
    fn destroy(&self, token: Option<Term>, handle: &WorkerHandle) -> ProviderResult<()> {
        let Some(destroy) = self.callbacks.destroy_worker else {
            return Err(ProviderError::new("destroy_worker callback is NULL"));
        };
        let resource_id = CString::new(handle.resource_id.as_str()).map_err(|_| {
            ProviderError::new("resource id contains a NUL byte and cannot be given to C")
        })?;
        let mut call = hw_provider_call {
            operation: "destroy_worker",
            given_metadata: handle
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), CString::new(v.as_str()).ok()))
                .collect(),
            fencing_token: token,
            ..Default::default()
        };
        let id = hw_worker_id::from_core(&handle.worker_id);
        // SAFETY: a callback the host registered for this; the pointers live for the call.
        let raw = unsafe {
            destroy(
                self.callbacks.user_data,
                id,
                resource_id.as_ptr(),
                &mut call,
            )
        };
        self.outcome(&call, raw)
    }
}

/// Registers a provider implemented in C under `provider` (its id) and `provider_type_name`
/// (`"docker"`, …, `"custom:NAME"`). See `hw_provider_callbacks` for the threading and the
/// release rule: once this function is called with non-NULL `callbacks`, `release` runs
/// exactly once, also when the registration is refused.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for an invalid id or type, a NULL required callback, or
/// an id already registered.
#[no_mangle]
pub extern "C" fn hw_manager_register_provider(
    manager: *const hw_manager,
    provider: *const c_char,
    provider_type_name: *const c_char,
    callbacks: *const hw_provider_callbacks,
) -> hw_status {
    ffi_boundary!(hw_manager_register_provider, {
        let callbacks = *arg_ref!(callbacks);
        // From here on, dropping `guard` releases the user data: every refusal below does.
        let mut guard = ReleaseGuard(Some(callbacks));
        let manager = arg_ref!(manager).held();
        let id = provider_id(arg_str!(provider))?;
        let kind = provider_type(arg_str!(provider_type_name))?;
        if callbacks.create_worker.is_none() || callbacks.destroy_worker.is_none() {
            return Err(Error::invalid(
                "create_worker and destroy_worker callbacks are required",
            ));
        }
        guard.0 = None;
        let provider = Arc::new(CProvider {
            id,
            kind,
            callbacks,
        });
        manager.register_provider(provider)?;
        Ok(())
    })
}

/// Calls `release` when dropped (a refused registration) unless disarmed.
struct ReleaseGuard(Option<hw_provider_callbacks>);

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        if let Some(callbacks) = self.0.take() {
            if let Some(release) = callbacks.release {
                // SAFETY: the host gave us this function for exactly this call.
                unsafe { release(callbacks.user_data) }
            }
        }
    }
}

/// Removes a provider; its workers stay registered (their destroys fail and are retried until
/// a provider with this id is registered again).
///
/// Errors: `HW_ERR_PROVIDER_NOT_FOUND`.
#[no_mangle]
pub extern "C" fn hw_manager_unregister_provider(
    manager: *const hw_manager,
    provider: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_manager_unregister_provider, {
        let manager = arg_ref!(manager).held();
        let id = provider_id(arg_str!(provider))?;
        manager.unregister_provider(&id)?;
        Ok(())
    })
}

/// Sets the text of a failure (any callback). The message is copied; one over
/// `HW_MAX_PROVIDER_MESSAGE_LEN` bytes is cut to that size (at a character boundary, ending
/// with `"… (truncated)"`) and still `HW_OK`: it is not refused, since a callback could do
/// nothing better with the refusal.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL `call` or `message`, or a message that is not
/// UTF-8 (the failure then keeps the library's own text).
#[no_mangle]
pub extern "C" fn hw_provider_call_set_error(
    call: *mut hw_provider_call,
    message: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_provider_call_set_error, {
        let call = arg_mut!(call);
        // Cut by the core's rule (the same for every binding).
        call.error = Some(engine::cut_provider_message(arg_str!(message)));
        Ok(())
    })
}

/// `create_worker`: the id of the new instance (container id, pod name, …). Required on success,
/// and not empty: an empty one names no instance, so the handle is refused
/// (`HW_ERR_INVALID_ARGUMENT` from the provisioning call) and the instance destroyed.
#[no_mangle]
pub extern "C" fn hw_provider_call_set_resource_id(
    call: *mut hw_provider_call,
    resource_id: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_provider_call_set_resource_id, {
        let call = arg_mut!(call);
        let resource_id = arg_str!(resource_id);
        only(call, "create_worker", "set_resource_id")?;
        call.resource_id = Some(resource_id.to_owned());
        Ok(())
    })
}

/// `create_worker`: remembers `key = value` about the instance (given back to
/// `destroy_worker`).
#[no_mangle]
pub extern "C" fn hw_provider_call_add_metadata(
    call: *mut hw_provider_call,
    key: *const c_char,
    value: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_provider_call_add_metadata, {
        let call = arg_mut!(call);
        let (key, value) = (arg_str!(key), arg_str!(value));
        only(call, "create_worker", "add_metadata")?;
        call.metadata.insert(key.to_owned(), value.to_owned());
        Ok(())
    })
}

/// `destroy_worker`: the metadata value `key` given at creation, or NULL (borrowed, valid
/// during the callback).
#[no_mangle]
pub extern "C" fn hw_provider_call_get_metadata(
    call: *const hw_provider_call,
    key: *const c_char,
    out: *mut *const c_char,
) -> hw_status {
    ffi_boundary!(hw_provider_call_get_metadata, {
        let call = arg_ref!(call);
        let key = arg_str!(key);
        let out = arg_out!(out);
        let value = match call.given_metadata.get(key) {
            Some(Some(v)) => v.as_ptr(),
            Some(None) => return Err(Error::invalid("the metadata value contains a NUL byte")),
            None => std::ptr::null(),
        };
        out.write(value);
        Ok(())
    })
}

/// `create_worker` and `destroy_worker`: the call's *fencing token*, the term of the leadership
/// the manager calls under. Terms only grow: a replica that took over calls with a larger token
/// than any call of the leader it replaced (a manager that is the only one calls with 1). A
/// provider whose infrastructure can compare tokens (it keeps the largest token it has served,
/// or sends it with a conditional request) refuses a token below the largest seen with
/// `HW_PROVIDER_RESULT_FENCED` (not `HW_PROVIDER_RESULT_FAILED`, which would count as a
/// failure of the provider and back it off): it so refuses a deposed leader that was paused
/// after its last check of the lease, the one gap the manager cannot close by itself.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` in `list_workers` (which has no token), or for a call
/// made without one (the manager never does).
#[no_mangle]
pub extern "C" fn hw_provider_call_get_fencing_token(
    call: *const hw_provider_call,
    out: *mut u64,
) -> hw_status {
    ffi_boundary!(hw_provider_call_get_fencing_token, {
        let call = arg_ref!(call);
        let out = arg_out!(out);
        let token = call.fencing_token.ok_or_else(|| {
            Error::invalid(format!(
                "hw_provider_call_get_fencing_token: {} has no fencing token",
                call.operation
            ))
        })?;
        out.write(token);
        Ok(())
    })
}

/// `list_workers`: one instance the infrastructure has.
#[no_mangle]
pub extern "C" fn hw_provider_call_add_instance(
    call: *mut hw_provider_call,
    resource_id: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_provider_call_add_instance, {
        let call = arg_mut!(call);
        let resource_id = arg_str!(resource_id);
        only(call, "list_workers", "add_instance")?;
        call.instances.push(resource_id.to_owned());
        Ok(())
    })
}

fn only(call: &hw_provider_call, operation: &str, what: &str) -> Result<(), Error> {
    if call.operation == operation {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "hw_provider_call_{what} is for {operation}, not {}",
            call.operation
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::limits::HW_MAX_PROVIDER_MESSAGE_LEN;

    #[test]
    fn the_c_limit_is_the_cores() {
        assert_eq!(
            HW_MAX_PROVIDER_MESSAGE_LEN,
            engine::MAX_PROVIDER_MESSAGE_LEN
        );
    }
}
