//! `hw_worker_spec`: a builder for what a worker is (image, resources, labels, capabilities,
//! limits), also readable from and writable to JSON.

use std::ffi::c_char;

use std::sync::Arc;

use engine::{Error, WorkerSpec};

use crate::boundary::{
    arg_mut, arg_out, arg_ref, arg_str, c_string, ffi_boundary, free_handle, hw_status, into_handle,
};
use crate::types::ms;

/// A worker spec under construction. Not thread-safe: build it on one thread, then pass it
/// (`const`) to any number of calls. Workers registered or provisioned from it share its
/// content (one copy, however many workers); changing it afterwards copies it first, so those
/// workers keep the spec they were made from, and freeing it right after a call is fine.
///
/// Strings (image, labels, environment, capabilities, GPU type) are checked when the spec is
/// used (`hw_registry_register`, `hw_manager_provision`, `hw_worker_spec_from_json`, …): a
/// string longer than its limit (`HW_MAX_IMAGE_LEN`, `HW_MAX_KEY_LEN`, `HW_MAX_VALUE_LEN`) or
/// a map or set of more than `HW_MAX_ENTRIES` entries is `HW_ERR_INVALID_ARGUMENT`, naming the
/// field and the limit.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone)]
pub struct hw_worker_spec {
    /// Shared with every worker registered or provisioned from this spec (as in Rust: one
    /// `Arc<WorkerSpec>` for all of them, not a deep copy each); a later change through a
    /// setter copies it first, so those workers keep the spec they were made from.
    pub(crate) spec: Arc<WorkerSpec>,
}

impl hw_worker_spec {
    pub(crate) fn new(spec: WorkerSpec) -> Self {
        hw_worker_spec {
            spec: Arc::new(spec),
        }
    }

    /// The spec to change: copied first if a worker shares it (copy on write).
    fn edit(&mut self) -> &mut WorkerSpec {
        Arc::make_mut(&mut self.spec)
    }
}

/// A spec duration from C, refused at this first boundary when the core's validation would
/// refuse it later (so the builder never holds a spec no call accepts).
fn spec_duration(value_ms: u64, what: &str) -> Result<std::time::Duration, Error> {
    if value_ms == 0 || value_ms > crate::limits::HW_MAX_DURATION_MS {
        return Err(Error::invalid(format!(
            "{what} must be 1 ms to HW_MAX_DURATION_MS ({} ms, 100 years), got {value_ms} ms",
            crate::limits::HW_MAX_DURATION_MS
        )));
    }
    Ok(ms(value_ms))
}

/// CPU architecture of a worker.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum hw_architecture {
    /// x86-64 (the default).
    Amd64 = 0,
    /// 64-bit ARM.
    Arm64 = 1,
    /// 32-bit ARM.
    Arm = 2,
}

/// A spec for `image` with the defaults: idle timeout 300 s, maximum lifetime 3600 s, no job
/// limit, amd64, no resources, labels or capabilities.
#[no_mangle]
pub extern "C" fn hw_worker_spec_new(
    image: *const c_char,
    out: *mut *mut hw_worker_spec,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_new, {
        let image = arg_str!(image);
        let out = arg_out!(out);
        out.write(into_handle(hw_worker_spec::new(WorkerSpec::new(image))));
        Ok(())
    })
}

/// Reads a spec from JSON (the serde form: `{"image": "...", "labels": {...},
/// "capabilities": [...], "idle_timeout": 300, "max_lifetime": 3600, "max_jobs": 1,
/// "resources": {...}, "environment": {...}, "architecture": "arm64"}`; durations in seconds,
/// missing fields take their defaults). The spec is validated. Only the object form is
/// accepted, here and for `resources`: an array of the field values (serde's positional form,
/// e.g. `"[]"`) is refused.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for malformed JSON, an array where an object is
/// expected, or an invalid spec.
#[no_mangle]
pub extern "C" fn hw_worker_spec_from_json(
    json: *const c_char,
    out: *mut *mut hw_worker_spec,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_from_json, {
        let json = arg_str!(json);
        let out = arg_out!(out);
        let spec: WorkerSpec = serde_json::from_str(json).map_err(|e| {
            Error::invalid(format!(
                "invalid spec JSON: {}",
                engine::json_error_message(&e)
            ))
        })?;
        spec.validate()?;
        out.write(into_handle(hw_worker_spec::new(spec)));
        Ok(())
    })
}

/// The spec as JSON (free with `hw_string_free`).
#[no_mangle]
pub extern "C" fn hw_worker_spec_to_json(
    spec: *const hw_worker_spec,
    out: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_to_json, {
        let spec = arg_ref!(spec);
        let out = arg_out!(out);
        let json = serde_json::to_string(&spec.spec)
            .map_err(|e| Error::invalid(format!("cannot write spec JSON: {e}")))?;
        out.write(c_string(&json, "spec JSON")?.into_raw());
        Ok(())
    })
}

/// The spec's image (for C providers reading the spec they are asked to create; free with
/// `hw_string_free`). Everything else is in `hw_worker_spec_to_json`.
#[no_mangle]
pub extern "C" fn hw_worker_spec_get_image(
    spec: *const hw_worker_spec,
    out: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_get_image, {
        let spec = arg_ref!(spec);
        let out = arg_out!(out);
        out.write(c_string(&spec.spec.image, "image")?.into_raw());
        Ok(())
    })
}

/// A copy of `spec`.
#[no_mangle]
pub extern "C" fn hw_worker_spec_clone(
    spec: *const hw_worker_spec,
    out: *mut *mut hw_worker_spec,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_clone, {
        let spec = arg_ref!(spec);
        let out = arg_out!(out);
        out.write(into_handle(spec.clone()));
        Ok(())
    })
}

/// Replaces the image.
#[no_mangle]
pub extern "C" fn hw_worker_spec_set_image(
    spec: *mut hw_worker_spec,
    image: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_set_image, {
        let spec = arg_mut!(spec);
        spec.edit().image = arg_str!(image).to_owned();
        Ok(())
    })
}

/// Adds (or replaces) a label. Filters match labels exactly.
#[no_mangle]
pub extern "C" fn hw_worker_spec_add_label(
    spec: *mut hw_worker_spec,
    key: *const c_char,
    value: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_add_label, {
        let spec = arg_mut!(spec);
        let (key, value) = (arg_str!(key), arg_str!(value));
        spec.edit().labels.insert(key.to_owned(), value.to_owned());
        Ok(())
    })
}

/// Adds (or replaces) an environment variable of the worker process.
#[no_mangle]
pub extern "C" fn hw_worker_spec_add_env(
    spec: *mut hw_worker_spec,
    key: *const c_char,
    value: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_add_env, {
        let spec = arg_mut!(spec);
        let (key, value) = (arg_str!(key), arg_str!(value));
        spec.edit()
            .environment
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    })
}

/// Adds a capability (e.g. `"gpu"`); a filter may require it.
#[no_mangle]
pub extern "C" fn hw_worker_spec_add_capability(
    spec: *mut hw_worker_spec,
    capability: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_add_capability, {
        let spec = arg_mut!(spec);
        spec.edit()
            .capabilities
            .insert(arg_str!(capability).to_owned());
        Ok(())
    })
}

/// Sets the idle timeout: a `READY` worker idle this long is cleaned up (1 ms to
/// `HW_MAX_DURATION_MS`).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for 0 or above `HW_MAX_DURATION_MS` (the spec is
/// unchanged).
#[no_mangle]
pub extern "C" fn hw_worker_spec_set_idle_timeout_ms(
    spec: *mut hw_worker_spec,
    timeout_ms: u64,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_set_idle_timeout_ms, {
        let spec = arg_mut!(spec);
        spec.edit().idle_timeout = spec_duration(timeout_ms, "idle timeout")?;
        Ok(())
    })
}

/// Sets the maximum lifetime since creation (1 ms to `HW_MAX_DURATION_MS`); a busy worker is
/// drained first.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for 0 or above `HW_MAX_DURATION_MS` (the spec is
/// unchanged).
#[no_mangle]
pub extern "C" fn hw_worker_spec_set_max_lifetime_ms(
    spec: *mut hw_worker_spec,
    lifetime_ms: u64,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_set_max_lifetime_ms, {
        let spec = arg_mut!(spec);
        spec.edit().max_lifetime = spec_duration(lifetime_ms, "max lifetime")?;
        Ok(())
    })
}

/// Sets the job limit: after `max_jobs` jobs the worker is drained (1 makes a one-shot worker);
/// 0 removes the limit.
#[no_mangle]
pub extern "C" fn hw_worker_spec_set_max_jobs(
    spec: *mut hw_worker_spec,
    max_jobs: u32,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_set_max_jobs, {
        let spec = arg_mut!(spec);
        spec.edit().max_jobs = (max_jobs > 0).then_some(max_jobs);
        Ok(())
    })
}

/// Sets the resources asked for. `cpu_cores` must be finite and not negative.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a bad `cpu_cores` (the spec is unchanged).
#[no_mangle]
pub extern "C" fn hw_worker_spec_set_resources(
    spec: *mut hw_worker_spec,
    cpu_cores: f64,
    memory_bytes: u64,
    disk_bytes: u64,
    gpu_count: u32,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_set_resources, {
        let spec = arg_mut!(spec);
        if !cpu_cores.is_finite() || cpu_cores < 0.0 {
            return Err(Error::invalid(format!(
                "cpu_cores must be finite and >= 0, got {cpu_cores}"
            )));
        }
        let r = &mut spec.edit().resources;
        r.cpu_cores = cpu_cores;
        r.memory_bytes = memory_bytes;
        r.disk_bytes = disk_bytes;
        r.gpu_count = gpu_count;
        Ok(())
    })
}

/// Sets the GPU model asked for.
#[no_mangle]
pub extern "C" fn hw_worker_spec_set_gpu_type(
    spec: *mut hw_worker_spec,
    gpu_type: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_set_gpu_type, {
        let spec = arg_mut!(spec);
        spec.edit().resources.gpu_type = Some(arg_str!(gpu_type).to_owned());
        Ok(())
    })
}

/// Sets the architecture (a `hw_architecture` value).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for an out-of-range value.
#[no_mangle]
pub extern "C" fn hw_worker_spec_set_architecture(
    spec: *mut hw_worker_spec,
    architecture: u32,
) -> hw_status {
    ffi_boundary!(hw_worker_spec_set_architecture, {
        let spec = arg_mut!(spec);
        let architecture = usize::try_from(architecture)
            .ok()
            .and_then(|i| hw_architecture::all().get(i))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{architecture} is not a hw_architecture (0..={})",
                    hw_architecture::all().len() - 1
                ))
            })?;
        spec.edit().architecture = architecture.to_core();
        Ok(())
    })
}

/// Frees a spec. NULL does nothing.
#[no_mangle]
pub extern "C" fn hw_worker_spec_free(spec: *mut hw_worker_spec) {
    free_handle(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{hw_registry, hw_registry_free, hw_registry_new, hw_registry_register};
    use crate::worker::{hw_worker, hw_worker_free};

    /// Issue 10 item 23: workers registered from one `hw_worker_spec` share its `Arc` instead of
    /// holding a deep copy each (200 workers of a spec at its size limits cost one spec).
    #[test]
    fn workers_made_from_one_spec_share_it_and_a_later_edit_copies() {
        let mut spec: *mut hw_worker_spec = std::ptr::null_mut();
        let image = std::ffi::CString::new("x".repeat(crate::limits::HW_MAX_IMAGE_LEN)).unwrap();
        assert_eq!(
            hw_worker_spec_new(image.as_ptr(), &mut spec),
            hw_status::HwOk
        );
        let value = std::ffi::CString::new("v".repeat(crate::limits::HW_MAX_VALUE_LEN)).unwrap();
        for i in 0..64 {
            let key = std::ffi::CString::new(format!("label-{i}")).unwrap();
            let status = hw_worker_spec_add_label(spec, key.as_ptr(), value.as_ptr());
            assert_eq!(status, hw_status::HwOk);
        }
        let mut registry: *mut hw_registry = std::ptr::null_mut();
        assert_eq!(hw_registry_new(&mut registry), hw_status::HwOk);
        let register = |from: usize, to: usize| {
            for i in from..to {
                let resource = std::ffi::CString::new(format!("r-{i}")).unwrap();
                let mut worker: *mut hw_worker = std::ptr::null_mut();
                let status = hw_registry_register(
                    registry,
                    c"p".as_ptr(),
                    c"docker".as_ptr(),
                    resource.as_ptr(),
                    spec,
                    &mut worker,
                );
                assert_eq!(status, hw_status::HwOk, "{:?}", unsafe {
                    std::ffi::CStr::from_ptr(crate::boundary::last_error_ptr())
                });
                hw_worker_free(worker);
            }
        };
        register(0, 200);
        // SAFETY: made above, freed below.
        let shared = unsafe { Arc::clone(&(*spec).spec) };
        // The builder, `shared`, and the registry's own few references to the spec it
        // interned (its table of specs, the class of these workers, the last spec joined, and
        // one for each of its 64 shards that holds workers of the class: the records keep the
        // class, not the spec): never a copy, and never a reference a worker — 100 more
        // workers add none, beyond shards that had none of them yet.
        let before = Arc::strong_count(&shared);
        assert!((5..=5 + 64).contains(&before), "{before}");
        register(200, 300);
        let after = Arc::strong_count(&shared);
        assert!(after >= before && after <= 5 + 64, "{before} -> {after}");
        assert_eq!(
            hw_worker_spec_set_image(spec, c"other".as_ptr()),
            hw_status::HwOk
        );
        // The edit copied: the registry keeps the spec its workers were made from.
        assert_eq!(Arc::strong_count(&shared), after - 1);
        assert_eq!(shared.image.len(), crate::limits::HW_MAX_IMAGE_LEN);
        hw_registry_free(registry);
        assert_eq!(Arc::strong_count(&shared), 1);
        hw_worker_spec_free(spec);
    }
}
