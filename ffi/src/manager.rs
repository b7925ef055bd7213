//! `hw_manager`: the lifecycle engine (providers, provisioning, health checks, cleanup,
//! autoscaling, tick) and providers written in C.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use engine::clock::millis;
use engine::{
    CleanupResult, Error, HealthCheckResult, ProviderError, ProviderId, ProviderResult,
    ProviderType, ReconcileReport, TerminationReason, TickReport, WorkerHandle, WorkerId,
    WorkerLifecycleConfig, WorkerLifecycleManager, WorkerProvider, WorkerRegistry, WorkerSpec,
};
use serde::Serialize;

use crate::boundary::{
    arg_mut, arg_out, arg_ref, arg_str, c_string, ffi_boundary, free_handle, hw_status, into_handle,
};
use crate::registry::hw_registry;
use crate::spec::hw_worker_spec;
use crate::types::{
    hw_termination_reason, hw_worker_id, ms, provider_id, provider_type, reason_from_c, reason_to_c,
};
use crate::worker::hw_worker;

/// The lifecycle manager of one registry. Thread-safe: every function may be called from any
/// number of threads; a `hw_manager_tick` running while another thread ticks returns at once
/// with `skipped` set. C provider callbacks run on the calling thread.
#[derive(Debug)]
pub struct hw_manager {
    pub(crate) inner: Arc<WorkerLifecycleManager>,
}

/// The manager's configuration. Fill it with `hw_manager_config_default` first, then change
/// the fields you care about, so that your code keeps its meaning when a version adds a field
/// (a new field changes the struct's size: rebuild against the new header). Durations are in
/// milliseconds. `hw_manager_new` validates it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_manager_config {
    /// A worker silent longer than this is unhealthy (default 60000). Also the longest gap
    /// between ticks that is not treated as a host stall.
    pub heartbeat_timeout_ms: u64,
    /// The health check runs at most this often inside `hw_manager_tick` (default 30000).
    pub health_check_interval_ms: u64,
    /// A worker still `CREATING`/`CONNECTING` this long after registration is expired
    /// (default 300000).
    pub startup_timeout_ms: u64,
    /// Idle `READY` workers the autoscaler keeps warm (default 1).
    pub min_ready_workers: usize,
    /// Ceiling: registered workers (every state) plus provisions in flight (default 10).
    pub max_workers: usize,
    /// `hw_manager_should_scale_up` threshold of pending jobs (default 5).
    pub scale_up_threshold: usize,
    /// `hw_manager_should_scale_down` threshold of ready workers (default 3).
    pub scale_down_threshold: usize,
    /// Minimum time between automatic scale-ups (default 10000).
    pub scale_up_cooldown_ms: u64,
    /// Minimum time after any automatic scaling action before a scale-down (default 60000).
    pub scale_down_cooldown_ms: u64,
    /// Most provisions (and scale-down retirements) per tick (default 5).
    pub max_provision_per_tick: usize,
    /// Most actions (state changes and provider calls) per tick (default 100).
    pub max_actions_per_tick: usize,
    /// First retry delay of a failed destroy; doubles up to the max (default 1000).
    pub destroy_retry_initial_ms: u64,
    /// Longest retry delay of a failed destroy (default 300000).
    pub destroy_retry_max_ms: u64,
    /// First back-off of a provider whose creates fail; doubles up to the max (default 5000).
    pub provider_backoff_initial_ms: u64,
    /// Longest back-off of a failing provider (default 300000).
    pub provider_backoff_max_ms: u64,
    /// The brake: when more than this fraction of the live workers would be declared unhealthy
    /// at once, none is (in (0, 1]; 1 disables; default 0.55).
    pub max_unhealthy_fraction: f64,
    /// The brake's floor: this many workers can always be declared unhealthy at once
    /// (default 1).
    pub unhealthy_floor: usize,
    /// The brake's bound: once it has held continuously for longer than this, the health check
    /// lets go and declares the silent workers unhealthy after all — most of the fleet really
    /// died (default 300000; 0 is refused with `HW_STATUS_INVALID_ARGUMENT`).
    pub max_mass_expiry_hold_ms: u64,
}

impl hw_manager_config {
    fn from_core(c: &WorkerLifecycleConfig) -> Self {
        hw_manager_config {
            heartbeat_timeout_ms: millis(c.heartbeat_timeout),
            health_check_interval_ms: millis(c.health_check_interval),
            startup_timeout_ms: millis(c.startup_timeout),
            min_ready_workers: c.min_ready_workers,
            max_workers: c.max_workers,
            scale_up_threshold: c.scale_up_threshold,
            scale_down_threshold: c.scale_down_threshold,
            scale_up_cooldown_ms: millis(c.scale_up_cooldown),
            scale_down_cooldown_ms: millis(c.scale_down_cooldown),
            max_provision_per_tick: c.max_provision_per_tick,
            max_actions_per_tick: c.max_actions_per_tick,
            destroy_retry_initial_ms: millis(c.destroy_retry_initial),
            destroy_retry_max_ms: millis(c.destroy_retry_max),
            provider_backoff_initial_ms: millis(c.provider_backoff_initial),
            provider_backoff_max_ms: millis(c.provider_backoff_max),
            max_unhealthy_fraction: c.max_unhealthy_fraction,
            unhealthy_floor: c.unhealthy_floor,
            max_mass_expiry_hold_ms: millis(c.max_mass_expiry_hold),
        }
    }

    fn to_core(self) -> WorkerLifecycleConfig {
        WorkerLifecycleConfig {
            heartbeat_timeout: ms(self.heartbeat_timeout_ms),
            health_check_interval: ms(self.health_check_interval_ms),
            startup_timeout: ms(self.startup_timeout_ms),
            min_ready_workers: self.min_ready_workers,
            max_workers: self.max_workers,
            scale_up_threshold: self.scale_up_threshold,
            scale_down_threshold: self.scale_down_threshold,
            scale_up_cooldown: ms(self.scale_up_cooldown_ms),
            scale_down_cooldown: ms(self.scale_down_cooldown_ms),
            max_provision_per_tick: self.max_provision_per_tick,
            max_actions_per_tick: self.max_actions_per_tick,
            destroy_retry_initial: ms(self.destroy_retry_initial_ms),
            destroy_retry_max: ms(self.destroy_retry_max_ms),
            provider_backoff_initial: ms(self.provider_backoff_initial_ms),
            provider_backoff_max: ms(self.provider_backoff_max_ms),
            max_unhealthy_fraction: self.max_unhealthy_fraction,
            unhealthy_floor: self.unhealthy_floor,
            max_mass_expiry_hold: ms(self.max_mass_expiry_hold_ms),
        }
    }
}

/// Fills `out` with the default configuration.
#[no_mangle]
pub extern "C" fn hw_manager_config_default(out: *mut hw_manager_config) -> hw_status {
    ffi_boundary!(hw_manager_config_default, {
        let out = arg_out!(out);
        out.write(hw_manager_config::from_core(
            &WorkerLifecycleConfig::default(),
        ));
        Ok(())
    })
}

fn new_manager(registry: &hw_registry, config: WorkerLifecycleConfig) -> Result<hw_manager, Error> {
    let registry: Arc<dyn WorkerRegistry> = registry.inner.clone();
    Ok(hw_manager {
        inner: Arc::new(WorkerLifecycleManager::new(registry, config)?),
    })
}

/// A manager for `registry` (which it shares: the registry handle may be freed afterwards).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a nonsense configuration (zero timeouts, min ready
/// above max workers, a fraction outside (0, 1], …), naming the field.
#[no_mangle]
pub extern "C" fn hw_manager_new(
    registry: *const hw_registry,
    config: *const hw_manager_config,
    out: *mut *mut hw_manager,
) -> hw_status {
    ffi_boundary!(hw_manager_new, {
        let registry = arg_ref!(registry);
        let config = arg_ref!(config);
        let out = arg_out!(out);
        out.write(into_handle(new_manager(registry, config.to_core())?));
        Ok(())
    })
}

/// A manager configured from JSON (`{"heartbeat_timeout": 60, "max_workers": 10, …}`:
/// durations in seconds, missing fields take their defaults, unknown fields are refused).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for malformed JSON or a nonsense configuration.
#[no_mangle]
pub extern "C" fn hw_manager_new_from_json(
    registry: *const hw_registry,
    config_json: *const c_char,
    out: *mut *mut hw_manager,
) -> hw_status {
    ffi_boundary!(hw_manager_new_from_json, {
        let registry = arg_ref!(registry);
        let json = arg_str!(config_json);
        let out = arg_out!(out);
        let config: WorkerLifecycleConfig = serde_json::from_str(json)
            .map_err(|e| Error::invalid(format!("invalid manager config JSON: {e}")))?;
        out.write(into_handle(new_manager(registry, config)?));
        Ok(())
    })
}

/// The configuration in force.
#[no_mangle]
pub extern "C" fn hw_manager_get_config(
    manager: *const hw_manager,
    out: *mut hw_manager_config,
) -> hw_status {
    ffi_boundary!(hw_manager_get_config, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        out.write(hw_manager_config::from_core(manager.inner.config()));
        Ok(())
    })
}

/// Frees the manager. Its providers are dropped (their `release` callbacks run, on this
/// thread) once no call on the manager runs any more. NULL does nothing.
#[no_mangle]
pub extern "C" fn hw_manager_free(manager: *mut hw_manager) {
    free_handle(manager)
}

// ---------------------------------------------------------------------------------------------
// Providers written in C.

/// What a provider callback returns.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum hw_provider_result {
    /// Done.
    Ok = 0,
    /// Failed: a provider error in the engine (a create counts toward the provider's back-off;
    /// a destroy is retried later). Say why with `hw_provider_call_set_error`.
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
}

/// A provider written in C: function pointers and the `user_data` they receive first. Each
/// callback returns a `hw_provider_result` value (as `uint32_t`: any other value is a failure).
/// Zero the struct before filling it (`= {0}` or `memset`) so that the optional callbacks you
/// leave out are NULL.
///
/// The manager copies this struct. It calls the callbacks on the thread that called the
/// manager function (`hw_manager_tick`, `hw_manager_provision`, `hw_manager_terminate`,
/// `hw_manager_reconcile`, `hw_manager_run_health_check`, `hw_manager_cleanup`), never while
/// the library holds a lock: a callback may call back into the library. If the manager is
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
    /// reports in and heartbeats with it. On success set the instance id with
    /// `hw_provider_call_set_resource_id` (and optionally metadata).
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
    /// destroyed.
    pub destroy_worker: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            worker_id: hw_worker_id,
            resource_id: *const c_char,
            call: *mut hw_provider_call,
        ) -> u32,
    >,
    /// Optional (NULL: unsupported). List the instances the infrastructure really has, one
    /// `hw_provider_call_add_instance` each; used by `hw_manager_reconcile`.
    pub list_workers:
        Option<unsafe extern "C" fn(user_data: *mut c_void, call: *mut hw_provider_call) -> u32>,
    /// Optional. Called once with `user_data` when the provider is dropped.
    pub release: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// The context of one provider callback: what the callback reads (metadata) and writes
/// (resource id, instances, error message). Valid only during the callback; do not keep it.
#[derive(Debug, Default)]
pub struct hw_provider_call {
    operation: &'static str,
    resource_id: Option<String>,
    metadata: BTreeMap<String, String>,
    /// Destroy: the handle's metadata as C strings (`None` when a value holds a NUL).
    given_metadata: BTreeMap<String, Option<CString>>,
    instances: Vec<String>,
    error: Option<String>,
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
        let Some(create) = self.callbacks.create_worker else {
            return Err(ProviderError::new("create_worker callback is NULL"));
        };
        let spec = hw_worker_spec { spec: spec.clone() };
        let mut call = hw_provider_call {
            operation: "create_worker",
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
        self.outcome(&call, raw)?;
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

    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
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
        let manager = arg_ref!(manager);
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
        manager.inner.register_provider(provider)?;
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
        let manager = arg_ref!(manager);
        let id = provider_id(arg_str!(provider))?;
        manager.inner.unregister_provider(&id)?;
        Ok(())
    })
}

/// Sets the text of a failure (any callback). The message is copied.
#[no_mangle]
pub extern "C" fn hw_provider_call_set_error(
    call: *mut hw_provider_call,
    message: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_provider_call_set_error, {
        let call = arg_mut!(call);
        call.error = Some(arg_str!(message).to_owned());
        Ok(())
    })
}

/// `create_worker`: the id of the new instance (container id, pod name, …). Required on success.
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

// ---------------------------------------------------------------------------------------------
// Operations.

/// Asks provider `provider` for a worker made from `spec`, registers it (`CREATING`) and
/// writes its snapshot. The request counts against `max_workers` while in flight.
///
/// Errors: `HW_ERR_PROVIDER_NOT_FOUND`; `HW_ERR_CAPACITY` at `max_workers`; `HW_ERR_PROVIDER`
/// when the provider's `create_worker` failed; `HW_ERR_INVALID_ARGUMENT` for a bad spec.
#[no_mangle]
pub extern "C" fn hw_manager_provision(
    manager: *const hw_manager,
    provider: *const c_char,
    spec: *const hw_worker_spec,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_manager_provision, {
        let manager = arg_ref!(manager);
        let id = provider_id(arg_str!(provider))?;
        let spec = arg_ref!(spec);
        let out = arg_out!(out);
        let worker = manager
            .inner
            .provision_worker(&id, Arc::new(spec.spec.clone()))?;
        out.write(hw_worker::boxed(worker));
        Ok(())
    })
}

/// A heartbeat of worker `id` (the registry's heartbeat).
///
/// Errors: `HW_ERR_NOT_FOUND` (tell the agent to register again).
#[no_mangle]
pub extern "C" fn hw_manager_process_heartbeat(
    manager: *const hw_manager,
    id: hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_manager_process_heartbeat, {
        let manager = arg_ref!(manager);
        manager.inner.process_heartbeat(&id.to_core()?)?;
        Ok(())
    })
}

/// Runs the health check now: workers past their heartbeat or startup deadline are declared
/// unhealthy (unless the mass-expiry brake holds), the jobs they held are reported lost, and
/// they are destroyed through their provider and unregistered. Writes what happened.
#[no_mangle]
pub extern "C" fn hw_manager_run_health_check(
    manager: *const hw_manager,
    out: *mut *mut hw_tick_report,
) -> hw_status {
    ffi_boundary!(hw_manager_run_health_check, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        let result = manager.inner.run_health_check()?;
        out.write(into_handle(hw_tick_report::from_health(&result)?));
        Ok(())
    })
}

/// Retires what is due now (idle, lifetime, drained, max jobs) and retries due destroys.
/// Writes what happened.
#[no_mangle]
pub extern "C" fn hw_manager_cleanup(
    manager: *const hw_manager,
    out: *mut *mut hw_tick_report,
) -> hw_status {
    ffi_boundary!(hw_manager_cleanup, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        let result = manager.inner.cleanup_workers()?;
        let now = manager.inner.registry().now();
        out.write(into_handle(hw_tick_report::from_cleanup(&result, now)?));
        Ok(())
    })
}

/// The seed's predicate: no ready worker and jobs pending, or more pending than
/// `scale_up_threshold` with room below `max_workers`.
#[no_mangle]
pub extern "C" fn hw_manager_should_scale_up(
    manager: *const hw_manager,
    pending_jobs: usize,
    out: *mut bool,
) -> hw_status {
    ffi_boundary!(hw_manager_should_scale_up, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        out.write(manager.inner.should_scale_up(pending_jobs));
        Ok(())
    })
}

/// The seed's predicate: more ready workers than `scale_down_threshold` and than
/// `min_ready_workers`.
#[no_mangle]
pub extern "C" fn hw_manager_should_scale_down(
    manager: *const hw_manager,
    out: *mut bool,
) -> hw_status {
    ffi_boundary!(hw_manager_should_scale_down, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        out.write(manager.inner.should_scale_down());
        Ok(())
    })
}

/// The counts of a scaling plan (the whole plan, with the workers to retire, the limits hit and
/// the explanation, is in the JSON form).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct hw_scaling_plan {
    /// Pending jobs as told.
    pub pending_jobs: usize,
    /// `READY` workers.
    pub ready: usize,
    /// `BUSY` workers.
    pub busy: usize,
    /// Workers still starting (`CREATING`/`CONNECTING`).
    pub starting: usize,
    /// Provisions in flight.
    pub in_flight: usize,
    /// Registered workers plus provisions in flight.
    pub total: usize,
    /// The capacity the policy wants.
    pub wanted: usize,
    /// Workers to provision now.
    pub provision: usize,
    /// Idle workers to retire now.
    pub scale_down: usize,
}

/// The autoscaling decision for `pending_jobs`, without acting on it: its counts in `out_plan`
/// and the whole plan as JSON in `out_json` (free with `hw_string_free`).
#[no_mangle]
pub extern "C" fn hw_manager_plan_scaling(
    manager: *const hw_manager,
    pending_jobs: usize,
    out_plan: *mut hw_scaling_plan,
    out_json: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_manager_plan_scaling, {
        let manager = arg_ref!(manager);
        let out_plan = arg_out!(out_plan);
        let out_json = arg_out!(out_json);
        let plan = manager.inner.plan_scaling(pending_jobs)?;
        let json = to_json(&plan, "scaling plan")?;
        out_plan.write(hw_scaling_plan {
            pending_jobs: plan.pending_jobs,
            ready: plan.ready,
            busy: plan.busy,
            starting: plan.starting,
            in_flight: plan.in_flight,
            total: plan.total,
            wanted: plan.wanted,
            provision: plan.provision,
            scale_down: plan.scale_down.len(),
        });
        out_json.write(json.into_raw());
        Ok(())
    })
}

/// What `hw_manager_tick` scales toward: workers of `spec` from provider `provider`. Without a
/// target, ticks never provision nor scale down.
///
/// Errors: `HW_ERR_PROVIDER_NOT_FOUND`; `HW_ERR_INVALID_ARGUMENT` for a bad spec.
#[no_mangle]
pub extern "C" fn hw_manager_set_scaling_target(
    manager: *const hw_manager,
    provider: *const c_char,
    spec: *const hw_worker_spec,
) -> hw_status {
    ffi_boundary!(hw_manager_set_scaling_target, {
        let manager = arg_ref!(manager);
        let id = provider_id(arg_str!(provider))?;
        let spec = arg_ref!(spec);
        manager
            .inner
            .set_scaling_target(&id, Arc::new(spec.spec.clone()))?;
        Ok(())
    })
}

/// Removes the scaling target.
#[no_mangle]
pub extern "C" fn hw_manager_clear_scaling_target(manager: *const hw_manager) -> hw_status {
    ffi_boundary!(hw_manager_clear_scaling_target, {
        arg_ref!(manager).inner.clear_scaling_target();
        Ok(())
    })
}

/// Moves worker `id` to `DRAINING` (it finishes its job, takes no new one, and is then
/// retired by cleanup). Writes the new snapshot.
///
/// Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_INVALID_TRANSITION`.
#[no_mangle]
pub extern "C" fn hw_manager_drain(
    manager: *const hw_manager,
    id: hw_worker_id,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_manager_drain, {
        let manager = arg_ref!(manager);
        let id = id.to_core()?;
        let out = arg_out!(out);
        out.write(hw_worker::boxed(manager.inner.drain_worker(&id)?));
        Ok(())
    })
}

/// Terminates worker `id` now (`reason`: a `hw_termination_reason`): `TERMINATING` (a held job
/// is reported lost), destroyed through its provider, unregistered. A failed destroy shows in
/// the report and is retried by later ticks.
///
/// Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_INVALID_ARGUMENT` for a bad reason.
#[no_mangle]
pub extern "C" fn hw_manager_terminate(
    manager: *const hw_manager,
    id: hw_worker_id,
    reason: u32,
    out: *mut *mut hw_tick_report,
) -> hw_status {
    ffi_boundary!(hw_manager_terminate, {
        let manager = arg_ref!(manager);
        let id = id.to_core()?;
        let reason = reason_from_c(reason)?;
        let out = arg_out!(out);
        let result = manager.inner.terminate_worker(&id, reason)?;
        let now = manager.inner.registry().now();
        out.write(into_handle(hw_tick_report::from_cleanup(&result, now)?));
        Ok(())
    })
}

/// Compares the registry with each provider's `list_workers`: instances the registry does not
/// know are destroyed; records whose instance vanished are unregistered (reason `VANISHED`,
/// listed as terminated; their jobs as lost). The JSON form has the whole reconcile report.
#[no_mangle]
pub extern "C" fn hw_manager_reconcile(
    manager: *const hw_manager,
    out: *mut *mut hw_tick_report,
) -> hw_status {
    ffi_boundary!(hw_manager_reconcile, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        let report = manager.inner.reconcile()?;
        out.write(into_handle(hw_tick_report::from_reconcile(&report)?));
        Ok(())
    })
}

/// Does whatever is due: health check (per its interval), cleanup, destroy retries, scaling
/// toward the target for `pending_jobs`. Never fails on the engine's side: problems show as
/// lines in the report's decisions. Call it regularly (every second, say).
#[no_mangle]
pub extern "C" fn hw_manager_tick(
    manager: *const hw_manager,
    pending_jobs: usize,
    out: *mut *mut hw_tick_report,
) -> hw_status {
    ffi_boundary!(hw_manager_tick, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        let report = manager.inner.tick(pending_jobs);
        out.write(into_handle(hw_tick_report::from_tick(&report)?));
        Ok(())
    })
}

/// The manager's statistics as JSON (registry counts, in flight, pending destroys, totals of
/// provisions, terminations, failures, lost jobs); free with `hw_string_free`.
#[no_mangle]
pub extern "C" fn hw_manager_stats_json(
    manager: *const hw_manager,
    out: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_manager_stats_json, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        let stats = manager.inner.stats()?;
        out.write(to_json(&stats, "manager stats")?.into_raw());
        Ok(())
    })
}

fn to_json<T: Serialize>(value: &T, what: &str) -> Result<CString, Error> {
    let json = serde_json::to_string(value)
        .map_err(|e| Error::invalid(format!("cannot write {what}: {e}")))?;
    c_string(&json, what)
}

// ---------------------------------------------------------------------------------------------
// Reports.

/// What a tick (or a health check, cleanup, terminate or reconcile: the parts of a tick they
/// do) found and did. Immutable, thread-safe; borrowed strings valid until
/// `hw_tick_report_free`. The JSON form holds everything, including the per-kind details.
#[derive(Debug)]
pub struct hw_tick_report {
    summary: hw_tick_summary,
    unhealthy: Vec<WorkerId>,
    lost_jobs: Vec<(WorkerId, CString)>,
    terminated: Vec<(WorkerId, TerminationReason)>,
    failed: Vec<WorkerId>,
    drained: Vec<WorkerId>,
    provisioned: Vec<WorkerId>,
    decisions: Vec<CString>,
    json: CString,
}

/// The counts of a report.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct hw_tick_summary {
    /// When it ran (registry clock, ms since the Unix epoch).
    pub at_ms: u64,
    /// Pending jobs as told by the host (ticks only).
    pub pending_jobs: usize,
    /// Workers declared unhealthy.
    pub unhealthy: usize,
    /// Jobs lost by workers taken out of service: requeue them.
    pub lost_jobs: usize,
    /// Workers destroyed and unregistered.
    pub terminated: usize,
    /// Destroys that failed (retried later with back-off).
    pub failed: usize,
    /// Workers moved to `DRAINING`.
    pub drained: usize,
    /// Workers provisioned.
    pub provisioned: usize,
    /// Creates that failed.
    pub provision_failures: usize,
    /// Explanation lines (`hw_tick_report_get_decision`).
    pub decisions: usize,
    /// Actions performed (state changes and provider calls).
    pub actions: usize,
    /// Whether the health check ran.
    pub health_checked: bool,
    /// Whether the mass-expiry brake held (no worker was declared unhealthy).
    pub mass_expiry_held: bool,
    /// Whether the per-tick action cap stopped it early (the next ticks do the rest).
    pub capped: bool,
    /// Whether another thread was ticking, so this tick did nothing.
    pub skipped: bool,
}

fn lost(jobs: &[engine::LostJob]) -> Result<Vec<(WorkerId, CString)>, Error> {
    jobs.iter()
        .map(|l| Ok((l.worker_id, c_string(l.job_id.as_str(), "job id")?)))
        .collect()
}

impl hw_tick_report {
    pub(crate) fn from_tick(r: &TickReport) -> Result<Self, Error> {
        let decisions = r
            .decisions
            .iter()
            .map(|d| CString::new(d.replace('\0', "?")).unwrap_or_default())
            .collect::<Vec<_>>();
        Ok(hw_tick_report {
            summary: hw_tick_summary {
                at_ms: r.at,
                pending_jobs: r.pending_jobs,
                unhealthy: r.unhealthy.len(),
                lost_jobs: r.lost_jobs.len(),
                terminated: r.terminated.len(),
                failed: r.failed.len(),
                drained: r.drained.len(),
                provisioned: r.provisioned.len(),
                provision_failures: r.provision_failures.len(),
                decisions: decisions.len(),
                actions: r.actions,
                health_checked: r.health_checked,
                mass_expiry_held: r.mass_expiry_held.is_some(),
                capped: r.capped,
                skipped: r.skipped,
            },
            unhealthy: r.unhealthy.iter().map(|u| u.worker_id).collect(),
            lost_jobs: lost(&r.lost_jobs)?,
            terminated: r
                .terminated
                .iter()
                .map(|t| (t.worker_id, t.reason))
                .collect(),
            failed: r.failed.iter().map(|f| f.worker_id).collect(),
            drained: r.drained.clone(),
            provisioned: r.provisioned.iter().map(|p| p.worker_id).collect(),
            decisions,
            json: to_json(r, "tick report")?,
        })
    }

    fn from_health(r: &HealthCheckResult) -> Result<Self, Error> {
        Ok(hw_tick_report {
            summary: hw_tick_summary {
                at_ms: r.checked_at,
                unhealthy: r.unhealthy.len(),
                lost_jobs: r.lost_jobs.len(),
                terminated: r.terminated.len(),
                failed: r.failed.len(),
                health_checked: true,
                mass_expiry_held: r.held.is_some(),
                ..Default::default()
            },
            unhealthy: r.unhealthy.iter().map(|u| u.worker_id).collect(),
            lost_jobs: lost(&r.lost_jobs)?,
            terminated: r
                .terminated
                .iter()
                .map(|t| (t.worker_id, t.reason))
                .collect(),
            failed: r.failed.iter().map(|f| f.worker_id).collect(),
            drained: Vec::new(),
            provisioned: Vec::new(),
            decisions: Vec::new(),
            json: to_json(r, "health check result")?,
        })
    }

    fn from_cleanup(r: &CleanupResult, at: u64) -> Result<Self, Error> {
        Ok(hw_tick_report {
            summary: hw_tick_summary {
                at_ms: at,
                lost_jobs: r.lost_jobs.len(),
                terminated: r.terminated.len(),
                failed: r.failed.len(),
                drained: r.drained.len(),
                ..Default::default()
            },
            unhealthy: Vec::new(),
            lost_jobs: lost(&r.lost_jobs)?,
            terminated: r
                .terminated
                .iter()
                .map(|t| (t.worker_id, t.reason))
                .collect(),
            failed: r.failed.iter().map(|f| f.worker_id).collect(),
            drained: r.drained.clone(),
            provisioned: Vec::new(),
            decisions: Vec::new(),
            json: to_json(r, "cleanup result")?,
        })
    }

    fn from_reconcile(r: &ReconcileReport) -> Result<Self, Error> {
        Ok(hw_tick_report {
            summary: hw_tick_summary {
                at_ms: r.at,
                lost_jobs: r.lost_jobs.len(),
                terminated: r.vanished.len(),
                ..Default::default()
            },
            unhealthy: Vec::new(),
            lost_jobs: lost(&r.lost_jobs)?,
            terminated: r
                .vanished
                .iter()
                .map(|id| (*id, TerminationReason::Vanished))
                .collect(),
            failed: Vec::new(),
            drained: Vec::new(),
            provisioned: Vec::new(),
            decisions: Vec::new(),
            json: to_json(r, "reconcile report")?,
        })
    }
}

fn index_error(what: &str, index: usize, len: usize) -> Error {
    Error::invalid(format!("{what} index {index} out of range (count {len})"))
}

/// The `index`-th entry of one of the report's lists, or an `InvalidArgument` naming the list.
fn nth<'a, T>(list: &'a [T], what: &str, index: usize) -> Result<&'a T, Error> {
    list.get(index)
        .ok_or_else(|| index_error(what, index, list.len()))
}

/// The report's counts.
#[no_mangle]
pub extern "C" fn hw_tick_report_get_summary(
    report: *const hw_tick_report,
    out: *mut hw_tick_summary,
) -> hw_status {
    ffi_boundary!(hw_tick_report_get_summary, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        out.write(report.summary);
        Ok(())
    })
}

/// The `index`-th lost job: the worker that held it and the job id (borrowed). Requeue it.
#[no_mangle]
pub extern "C" fn hw_tick_report_get_lost_job(
    report: *const hw_tick_report,
    index: usize,
    out_worker: *mut hw_worker_id,
    out_job: *mut *const c_char,
) -> hw_status {
    ffi_boundary!(hw_tick_report_get_lost_job, {
        let report = arg_ref!(report);
        let out_worker = arg_out!(out_worker);
        let out_job = arg_out!(out_job);
        let (id, job) = nth(&report.lost_jobs, "lost job", index)?;
        out_worker.write(hw_worker_id::from_core(id));
        out_job.write(job.as_ptr());
        Ok(())
    })
}

/// The `index`-th worker declared unhealthy.
#[no_mangle]
pub extern "C" fn hw_tick_report_get_unhealthy(
    report: *const hw_tick_report,
    index: usize,
    out: *mut hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_tick_report_get_unhealthy, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let id = nth(&report.unhealthy, "unhealthy", index)?;
        out.write(hw_worker_id::from_core(id));
        Ok(())
    })
}

/// The `index`-th worker destroyed and unregistered, and why.
#[no_mangle]
pub extern "C" fn hw_tick_report_get_terminated(
    report: *const hw_tick_report,
    index: usize,
    out_worker: *mut hw_worker_id,
    out_reason: *mut hw_termination_reason,
) -> hw_status {
    ffi_boundary!(hw_tick_report_get_terminated, {
        let report = arg_ref!(report);
        let out_worker = arg_out!(out_worker);
        let out_reason = arg_out!(out_reason);
        let (id, reason) = nth(&report.terminated, "terminated", index)?;
        out_worker.write(hw_worker_id::from_core(id));
        out_reason.write(reason_to_c(*reason));
        Ok(())
    })
}

/// The `index`-th worker whose destroy failed (retried later).
#[no_mangle]
pub extern "C" fn hw_tick_report_get_failed(
    report: *const hw_tick_report,
    index: usize,
    out: *mut hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_tick_report_get_failed, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let id = nth(&report.failed, "failed", index)?;
        out.write(hw_worker_id::from_core(id));
        Ok(())
    })
}

/// The `index`-th worker moved to `DRAINING`.
#[no_mangle]
pub extern "C" fn hw_tick_report_get_drained(
    report: *const hw_tick_report,
    index: usize,
    out: *mut hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_tick_report_get_drained, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let id = nth(&report.drained, "drained", index)?;
        out.write(hw_worker_id::from_core(id));
        Ok(())
    })
}

/// The `index`-th worker provisioned.
#[no_mangle]
pub extern "C" fn hw_tick_report_get_provisioned(
    report: *const hw_tick_report,
    index: usize,
    out: *mut hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_tick_report_get_provisioned, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let id = nth(&report.provisioned, "provisioned", index)?;
        out.write(hw_worker_id::from_core(id));
        Ok(())
    })
}

/// The `index`-th explanation line (borrowed), e.g. the scaling decision
/// `"+3: pending 7, …, capped by max_workers 10"`.
#[no_mangle]
pub extern "C" fn hw_tick_report_get_decision(
    report: *const hw_tick_report,
    index: usize,
    out: *mut *const c_char,
) -> hw_status {
    ffi_boundary!(hw_tick_report_get_decision, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let line = nth(&report.decisions, "decision", index)?;
        out.write(line.as_ptr());
        Ok(())
    })
}

/// The whole report as JSON (borrowed: valid until `hw_tick_report_free`).
#[no_mangle]
pub extern "C" fn hw_tick_report_get_json(
    report: *const hw_tick_report,
    out: *mut *const c_char,
) -> hw_status {
    ffi_boundary!(hw_tick_report_get_json, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        out.write(report.json.as_ptr());
        Ok(())
    })
}

/// Frees a report. NULL does nothing.
#[no_mangle]
pub extern "C" fn hw_tick_report_free(report: *mut hw_tick_report) {
    free_handle(report)
}
