//! The manager's read-outs from C: the registered providers, the providers backing off, the
//! destroys and orphan destroys being retried, the interruption notices. Each is a snapshot
//! the library allocates (an array of plain structs and its length, NULL and 0 when empty)
//! and the caller gives back to the list's `_free` with that length.

use std::ffi::{c_char, CString};

use super::hw_manager;
use crate::boundary::{
    arg_out, arg_ref, arg_str, ffi_boundary, free_array, give_array, hw_status, lossy_c_string,
};
use crate::types::{hw_string_free, hw_worker_id, provider_id};
use engine::{Error, PendingOrphan};

/// Size of a buffer that holds any provider id and its NUL: `HW_MAX_PROVIDER_ID_LEN` (128)
/// bytes plus one.
pub const HW_PROVIDER_ID_SIZE: usize = 129;

const _: () = assert!(HW_PROVIDER_ID_SIZE == engine::MAX_PROVIDER_ID_LEN + 1);

/// `text` in a NUL-terminated buffer of `N` bytes: cut at a character boundary if longer than
/// `N - 1` bytes, a NUL inside shown as `?` (neither happens to a provider id, which the core
/// holds to 1..=128 bytes without control characters, nor to a lease holder this library
/// wrote; the store's row of another program might say what it likes).
pub(crate) fn fixed_text<const N: usize>(text: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    let mut end = text.len().min(N - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    for (slot, byte) in out.iter_mut().zip(&text.as_bytes()[..end]) {
        *slot = if *byte == 0 { b'?' } else { *byte } as c_char;
    }
    out
}

/// One registered provider's id (`hw_manager_providers`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_provider_name {
    /// The provider id, NUL-terminated.
    pub id: [c_char; HW_PROVIDER_ID_SIZE],
}

/// The ids of the registered providers, sorted (byte order): an array of `*out_count` entries
/// in `*out_ids` (NULL when there is none), yours: free it with `hw_provider_names_free(ids,
/// count)`.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_manager_providers(
    manager: *const hw_manager,
    out_ids: *mut *mut hw_provider_name,
    out_count: *mut usize,
) -> hw_status {
    ffi_boundary!(hw_manager_providers, {
        let manager = arg_ref!(manager);
        let out_ids = arg_out!(out_ids);
        let out_count = arg_out!(out_count);
        let names = manager
            .inner
            .providers()
            .iter()
            .map(|id| hw_provider_name {
                id: fixed_text(id.as_str()),
            })
            .collect();
        give_array(names, out_ids, out_count);
        Ok(())
    })
}

/// Frees an array `hw_manager_providers` wrote, given with the count it wrote. NULL does
/// nothing.
#[no_mangle]
pub extern "C" fn hw_provider_names_free(ids: *mut hw_provider_name, count: usize) {
    free_array(ids, count)
}

/// A provider backing off after consecutive create failures (`hw_manager_provider_backoff`):
/// the ticks do not ask it for workers before `until_ms`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_provider_backoff {
    /// The provider id, NUL-terminated.
    pub provider_id: [c_char; HW_PROVIDER_ID_SIZE],
    /// Its consecutive create failures.
    pub consecutive_failures: u32,
    /// When it may be asked again (registry clock, ms since the epoch).
    pub until_ms: u64,
}

/// The providers backing off now, after consecutive create failures: an array of
/// `*out_count` entries in `*out_backoffs` (NULL when there is none), yours: free it with
/// `hw_provider_backoffs_free(backoffs, count)`. Leader state, as this replica holds it: empty
/// on a follower (like `hw_manager_pending_destroys`).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_manager_provider_backoff(
    manager: *const hw_manager,
    out_backoffs: *mut *mut hw_provider_backoff,
    out_count: *mut usize,
) -> hw_status {
    ffi_boundary!(hw_manager_provider_backoff, {
        let manager = arg_ref!(manager);
        let out_backoffs = arg_out!(out_backoffs);
        let out_count = arg_out!(out_count);
        let backoffs = manager
            .inner
            .provider_backoff()
            .iter()
            .map(|b| hw_provider_backoff {
                provider_id: fixed_text(b.provider_id.as_str()),
                consecutive_failures: b.consecutive_failures,
                until_ms: b.until,
            })
            .collect();
        give_array(backoffs, out_backoffs, out_count);
        Ok(())
    })
}

/// Frees an array `hw_manager_provider_backoff` wrote, given with the count it wrote. NULL
/// does nothing.
#[no_mangle]
pub extern "C" fn hw_provider_backoffs_free(backoffs: *mut hw_provider_backoff, count: usize) {
    free_array(backoffs, count)
}

/// A `TERMINATING` worker whose destroy is queued or being retried
/// (`hw_manager_pending_destroys`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_pending_destroy {
    /// The worker.
    pub worker: hw_worker_id,
    /// Its failed destroy attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (registry clock, ms since the epoch).
    pub next_at_ms: u64,
}

/// The workers `TERMINATING` whose destroy is queued or being retried, with their failed
/// attempts and next attempt time: an array of `*out_count` entries in `*out_destroys` (NULL
/// when there is none), yours: free it with `hw_pending_destroys_free(destroys, count)`.
/// Leader state, as this replica holds it: empty on a follower; a leader whose lease was not
/// renewed in time still shows it until its next tick keeps or forgets it.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_manager_pending_destroys(
    manager: *const hw_manager,
    out_destroys: *mut *mut hw_pending_destroy,
    out_count: *mut usize,
) -> hw_status {
    ffi_boundary!(hw_manager_pending_destroys, {
        let manager = arg_ref!(manager);
        let out_destroys = arg_out!(out_destroys);
        let out_count = arg_out!(out_count);
        let destroys = manager
            .inner
            .pending_destroys()
            .iter()
            .map(|(id, attempts, next_at)| hw_pending_destroy {
                worker: hw_worker_id::from_core(id),
                attempts: *attempts,
                next_at_ms: *next_at,
            })
            .collect();
        give_array(destroys, out_destroys, out_count);
        Ok(())
    })
}

/// Frees an array `hw_manager_pending_destroys` wrote, given with the count it wrote. NULL
/// does nothing.
#[no_mangle]
pub extern "C" fn hw_pending_destroys_free(destroys: *mut hw_pending_destroy, count: usize) {
    free_array(destroys, count)
}

/// A worker under an interruption notice (`hw_manager_interruptions`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_interruption {
    /// The worker.
    pub worker: hw_worker_id,
    /// When its instance goes (registry clock, ms since the epoch): the earliest of the
    /// notices about it.
    pub deadline_ms: u64,
}

/// The workers under an interruption notice (`hw_manager_notify_interruption`), with their
/// deadline, in worker id order: an array of `*out_count` entries in `*out_interruptions`
/// (NULL when there is none), yours: free it with `hw_interruptions_free(interruptions,
/// count)`. Leader state: empty on a follower.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_manager_interruptions(
    manager: *const hw_manager,
    out_interruptions: *mut *mut hw_interruption,
    out_count: *mut usize,
) -> hw_status {
    ffi_boundary!(hw_manager_interruptions, {
        let manager = arg_ref!(manager);
        let out_interruptions = arg_out!(out_interruptions);
        let out_count = arg_out!(out_count);
        let notices = manager
            .inner
            .interruptions()
            .iter()
            .map(|(id, deadline)| hw_interruption {
                worker: hw_worker_id::from_core(id),
                deadline_ms: *deadline,
            })
            .collect();
        give_array(notices, out_interruptions, out_count);
        Ok(())
    })
}

/// Frees an array `hw_manager_interruptions` wrote, given with the count it wrote. NULL does
/// nothing.
#[no_mangle]
pub extern "C" fn hw_interruptions_free(interruptions: *mut hw_interruption, count: usize) {
    free_array(interruptions, count)
}

/// An orphan instance the leader's ticks destroy (`hw_manager_pending_orphans`,
/// `hw_manager_pending_orphans_of`). It names no provider: two providers may list one resource
/// id (two clusters, one pod name), which `hw_manager_pending_orphans_of` tells apart.
// Not `Copy`: an element owns its resource id, freed with the array (`Drop` below).
#[repr(C)]
#[derive(Debug)]
pub struct hw_pending_orphan {
    /// The id the library made for the listed instance (no registered worker's).
    pub worker: hw_worker_id,
    /// The provider's id of the instance, NUL-terminated (a NUL inside shown as `?`). Owned by
    /// the array: valid until `hw_pending_orphans_free`.
    pub resource_id: *const c_char,
    /// Its failed destroy attempts so far (0: found over a tick's action cap, not tried yet).
    pub attempts: u32,
    /// When the next attempt is due (registry clock, ms since the epoch).
    pub next_at_ms: u64,
}

/// The C entry of `orphan` (its resource id copied, owned by the array).
fn pending_orphan(orphan: PendingOrphan) -> hw_pending_orphan {
    hw_pending_orphan {
        worker: hw_worker_id::from_core(&orphan.worker_id),
        resource_id: CString::into_raw(lossy_c_string(&orphan.resource_id)).cast_const(),
        attempts: orphan.attempts,
        next_at_ms: orphan.next_at,
    }
}

impl Drop for hw_pending_orphan {
    fn drop(&mut self) {
        hw_string_free(self.resource_id.cast_mut());
    }
}

/// The orphan instances (listed by a provider, known to no record) that the leader's ticks
/// destroy: those whose destroy failed, and those a tick's reconcile found over its action cap,
/// by provider and instance. An array of `*out_count` entries in `*out_orphans` (NULL when
/// there is none), yours: free it with `hw_pending_orphans_free(orphans, count)`, which frees
/// their resource ids too. O(orphans). Leader state: empty on a follower. The entries name no
/// provider: `hw_manager_pending_orphans_of` lists one provider's.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_manager_pending_orphans(
    manager: *const hw_manager,
    out_orphans: *mut *mut hw_pending_orphan,
    out_count: *mut usize,
) -> hw_status {
    ffi_boundary!(hw_manager_pending_orphans, {
        let manager = arg_ref!(manager);
        let out_orphans = arg_out!(out_orphans);
        let out_count = arg_out!(out_count);
        let orphans = manager
            .inner
            .pending_orphans()
            .into_iter()
            .map(pending_orphan)
            .collect();
        give_array(orphans, out_orphans, out_count);
        Ok(())
    })
}

/// `hw_manager_pending_orphans`, only the orphan instances of provider `provider`, in resource
/// id order, so that two providers' instances of one resource id (two clusters, one pod name)
/// are told apart. An array of `*out_count` entries in `*out_orphans` (NULL when there is
/// none), yours: free it with `hw_pending_orphans_free(orphans, count)`. O(orphans). Leader
/// state: empty on a follower. The orphans of a provider unregistered after they were found
/// are still listed, as long as the manager keeps them (their destroys fail until a provider
/// of that id is registered again).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument or an invalid provider id (empty, over
/// `HW_MAX_PROVIDER_ID_LEN` bytes, a control character, not UTF-8);
/// `HW_ERR_PROVIDER_NOT_FOUND` for a provider that is not registered and has no pending
/// orphan.
#[no_mangle]
pub extern "C" fn hw_manager_pending_orphans_of(
    manager: *const hw_manager,
    provider: *const c_char,
    out_orphans: *mut *mut hw_pending_orphan,
    out_count: *mut usize,
) -> hw_status {
    ffi_boundary!(hw_manager_pending_orphans_of, {
        let manager = arg_ref!(manager);
        let id = provider_id(arg_str!(provider))?;
        let out_orphans = arg_out!(out_orphans);
        let out_count = arg_out!(out_count);
        let orphans: Vec<hw_pending_orphan> = manager
            .inner
            .pending_orphans()
            .into_iter()
            .filter(|o| o.provider_id == id)
            .map(pending_orphan)
            .collect();
        // An unregistered provider whose orphans are still pending is listed; one the manager
        // knows nothing of is the error every other call taking a provider id returns.
        if orphans.is_empty() && !manager.inner.providers().contains(&id) {
            return Err(Error::ProviderNotFound(id));
        }
        give_array(orphans, out_orphans, out_count);
        Ok(())
    })
}

/// Frees an array `hw_manager_pending_orphans` or `hw_manager_pending_orphans_of` wrote (and
/// the resource ids in it), given with the count it wrote. NULL does nothing.
#[no_mangle]
pub extern "C" fn hw_pending_orphans_free(orphans: *mut hw_pending_orphan, count: usize) {
    free_array(orphans, count)
}

#[cfg(test)]
mod tests {
    use super::fixed_text;

    fn text<const N: usize>(buf: &[std::ffi::c_char; N]) -> String {
        let bytes: Vec<u8> = buf
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn fixed_text_cuts_at_a_character_boundary_and_shows_nul_as_a_question_mark() {
        assert_eq!(text(&fixed_text::<8>("abc")), "abc");
        assert_eq!(text(&fixed_text::<4>("abcdef")), "abc");
        // "é" is two bytes: a cut inside it falls back before it.
        assert_eq!(text(&fixed_text::<4>("abé")), "ab");
        assert_eq!(text(&fixed_text::<8>("a\0b")), "a?b");
        assert_eq!(fixed_text::<4>("abcdef")[3], 0);
    }
}
