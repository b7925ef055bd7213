/*
 * hodei_workers.h — C API of hodei-workers: the registry and lifecycle engine of a job
 * system's ephemeral workers.
 *
 * Link: pkg-config --cflags --libs hodei_workers   (or -lhodei_workers -lpthread -ldl -lm)
 *
 * ABI VERSION
 *   - HW_ABI_VERSION_MAJOR and HW_ABI_VERSION_MINOR are the ABI this header describes;
 *     hw_abi_version() returns the library's, as (major << 16) | minor. The shared library's
 *     soname carries the major (libhodei_workers.so.1).
 *   - The major changes whenever a public struct's size or layout, a function's signature, an
 *     enum value's number, a constant's value (HW_MAX_*, HW_WORKER_ID_STRING_SIZE, …: a buffer
 *     sized from the old one could be too small), or a documented behaviour a host relies on
 *     changes incompatibly. A field appended to a struct is such a change too: no struct
 *     carries its own size. The minor changes when functions, structs, enum values or
 *     constants are only added.
 *   - Check at start-up, before any other call, that the library has this header's major:
 *       if (!HW_ABI_COMPATIBLE()) return 1;  (another major: do not call anything else)
 *     A library of a lower minor than the header's lacks what was added since: a program that
 *     uses something minor N added needs (hw_abi_version() & 0xffff) >= N.
 *   - Enum values the library hands out (hw_status, hw_event_kind, hw_worker_state, …) may be
 *     ones a later minor added: treat a value you do not know as unknown (hw_status_str()
 *     names it "HW_UNKNOWN_STATUS"), never as a bug.
 *   - ABI 1.0 is the first with a number: libraries built before it have no hw_abi_version.
 *   - Each version's surface is pinned in the source repository, in ffi/abi/surface.txt: every
 *     constant's value, enum value's number, struct's members, size and alignment (64-bit
 *     targets) and function's signature. A test fails when this header, or a struct's size,
 *     departs from it without the version saying so. Maintainers re-pin with `make abi-pin`,
 *     which needs the bump the change calls for.
 *
 * CONVENTIONS
 *   - Every function that can fail returns hw_status; HW_OK is 0. Results are written through
 *     the trailing out-params, and ONLY on success: on failure they are left untouched.
 *   - hw_last_error_message() is the text of this thread's last failure (naming the function,
 *     the worker, the states). It stays valid until the next call into the library on the
 *     same thread. hw_status_str() gives a status' static name.
 *   - NULL for any pointer argument, invalid UTF-8, an over-long or malformed id, a string
 *     over its HW_MAX_* limit (a spec's strings when the spec is used), an out-of-range enum
 *     value: HW_ERR_INVALID_ARGUMENT, never a crash. Enum arguments are taken as uint32_t for
 *     that reason. The one string cut instead of refused is a provider callback's error
 *     message (hw_provider_call_set_error, HW_MAX_PROVIDER_MESSAGE_LEN). A bug inside the library is caught at the boundary and
 *     reported as HW_ERR_PANIC.
 *   - Strings are UTF-8 and NUL-terminated. Times are milliseconds: timestamps since the Unix
 *     epoch on the registry's clock, durations as plain counts.
 *   - "Option" results (hw_registry_get, hw_registry_claim, hw_subscription_recv, …) write
 *     NULL when there is nothing: that is HW_OK, not an error.
 *
 * OWNERSHIP
 *   - hw_X_new / functions writing a `hw_X **` out-param give you an object you own: free it
 *     with hw_X_free. Every _free accepts NULL and does nothing. Free each object once.
 *   - Strings written through a `char **` out-param are yours: free them with hw_string_free.
 *   - Arrays written through a `hw_X **` out-param with a `size_t *` count (the manager's
 *     read-outs: hw_manager_pending_destroys, …) are yours: free each with the function its
 *     doc names, passing the count written (NULL and 0 for an empty list).
 *   - Strings and objects written through a `const char **` / `const hw_X **` out-param are
 *     BORROWED from the object you asked (a hw_worker, hw_event, hw_worker_list): valid until
 *     that object is freed; never free them yourself.
 *   - Arguments are only read during the call: specs, filters and strings you pass may be freed
 *     or changed as soon as the call returns.
 *   - Objects handed to C providers' callbacks are borrowed for the duration of the callback.
 *
 * THREAD SAFETY
 *   - hw_registry, hw_manager, hw_clock, hw_subscription: thread-safe. Every function taking a
 *     `const` pointer to one may run on any number of threads at once (heartbeats and claims
 *     from many threads scale; claim is atomic: a job goes to one worker only).
 *   - hw_worker, hw_worker_list, hw_event, hw_report: immutable snapshots, safe to read
 *     from several threads.
 *   - hw_worker_spec, hw_worker_filter, hw_manager_config: builders. Change them from one thread
 *     at a time (functions taking a non-const pointer); once built, pass them (const) anywhere.
 *   - A _free must not run concurrently with any other call on the same object from another
 *     thread (a provider callback may free the manager that called it: see below).
 *   - The library starts no thread of its own accord. C provider callbacks run on the thread
 *     that called the manager function (hw_manager_tick, hw_manager_provision, …) and never
 *     while the library holds a lock, so they may call back into the library, even to free
 *     the manager that called them (hw_manager_free: the call in progress still finishes).
 *   - The one exception is a thread you ask for: hw_ticker_start starts a ticker thread
 *     (hw_ticker_stop / hw_ticker_free join it). Its demand and report callbacks, and the
 *     provider callbacks of the ticks it runs, are called on that thread.
 */

#ifndef HODEI_WORKERS_H
#define HODEI_WORKERS_H

/* Generated by cbindgen from ffi/src (make header). Do not edit by hand. */

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

/*
 Whether the library this program runs with has the ABI major this header describes (see
 ABI VERSION above). Check it once at start-up, before any other call into the library.
 */
#define HW_ABI_COMPATIBLE() ((hw_abi_version() >> 16) == HW_ABI_VERSION_MAJOR)

/*
 The ABI's major version. It changes whenever a host built against the previous header could
 misbehave with this library: a public struct's size or layout, a function's signature, an
 enum value's number, a constant's value (a buffer sized from the old one could be too
 small), or a documented behaviour a host relies on changed incompatibly. The shared
 library's soname carries it (`libhodei_workers.so.1`). Check it at start-up with
 `HW_ABI_COMPATIBLE()`.
 */
#define HW_ABI_VERSION_MAJOR 1

/*
 The ABI's minor version. It changes when functions, structs, enum values or constants are
 only added (back to 0 when the major changes). A host built against minor N may use what N
 added only with a library of minor N or later.
 */
#define HW_ABI_VERSION_MINOR 4

/*
 The ABI version this header describes, as `hw_abi_version()` returns the library's:
 `(HW_ABI_VERSION_MAJOR << 16) | HW_ABI_VERSION_MINOR`.
 */
#define HW_ABI_VERSION ((HW_ABI_VERSION_MAJOR << 16) | HW_ABI_VERSION_MINOR)

/*
 The queue capacity to pass to `hw_registry_subscribe` when you have no better number.
 */
#define HW_DEFAULT_SUBSCRIPTION_CAPACITY 4096

/*
 Size of a buffer that holds any lease holder's name and its NUL: 128 bytes (the most
 `hw_manager_new_replicated` accepts) plus one.
 */
#define HW_LEASE_HOLDER_SIZE 129

/*
 Longest worker spec image, in bytes (without the NUL).
 */
#define HW_MAX_IMAGE_LEN 4096

/*
 Longest resource id (the provider's instance id), in bytes.
 */
#define HW_MAX_RESOURCE_ID_LEN 2048

/*
 Longest key of a label, environment variable or metadata entry, and longest capability or
 GPU type, in bytes.
 */
#define HW_MAX_KEY_LEN 256

/*
 Longest value of a label, environment variable or metadata entry, in bytes.
 */
#define HW_MAX_VALUE_LEN 16384

/*
 Most entries in one of a spec's or worker's maps or sets (labels, environment,
 capabilities, metadata).
 */
#define HW_MAX_ENTRIES 1024

/*
 Longest provider id, in bytes.
 */
#define HW_MAX_PROVIDER_ID_LEN 128

/*
 Longest job id, in bytes.
 */
#define HW_MAX_JOB_ID_LEN 256

/*
 Longest error message a provider callback sets with `hw_provider_call_set_error`, in bytes.
 A longer one is cut (at a character boundary) and ends with `"… (truncated)"`: the message
 is copied into the failure, its event for every subscriber and the tick's report, and a
 callback could not act on a refusal. The core's limit, the same for every provider (Rust,
 Python, C).
 */
#define HW_MAX_PROVIDER_MESSAGE_LEN 4096

/*
 Longest duration a spec (idle timeout, maximum lifetime) or the manager's configuration may
 hold, in milliseconds: 100 years of 365 days. Longer ones could not be written to JSON (a
 snapshot, a config) and read back exactly, so they are refused.
 */
#define HW_MAX_DURATION_MS 3153600000000

/*
 How many unregistered ids a registry remembers unless `hw_registry_set_retired_id_limit`
 says otherwise: 2^20 (the same on every backend).
 */
#define HW_DEFAULT_RETIRED_ID_LIMIT 1048576

/*
 Size of a buffer that holds any provider id and its NUL: `HW_MAX_PROVIDER_ID_LEN` (128)
 bytes plus one.
 */
#define HW_PROVIDER_ID_SIZE 129

/*
 Size of the buffer `hw_worker_id_format` needs: 36 characters plus the NUL.
 */
#define HW_WORKER_ID_STRING_SIZE 37

/*
 `hw_subscription_recv` timeout meaning "wait until an event arrives or the registry is
 gone".
 */
#define HW_WAIT_FOREVER UINT64_MAX

/*
 The result of every fallible call. `HW_OK` is 0; the others map one-to-one to the library's
 error kinds, plus `HW_ERR_PANIC`.
 */
enum hw_status
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  /*
   Success.
   */
  HW_OK = 0,
  /*
   No worker with this id is registered (it may have been unregistered: ids are never reused).
   */
  HW_ERR_NOT_FOUND = 1,
  /*
   A worker with this id is, or once was, registered (ids are never reused).
   */
  HW_ERR_ALREADY_EXISTS = 2,
  /*
   The state machine refuses this move.
   */
  HW_ERR_INVALID_TRANSITION = 3,
  /*
   The worker is not `READY`, so it takes no job.
   */
  HW_ERR_NOT_AVAILABLE = 4,
  /*
   The worker holds no job, or another job than the one named.
   */
  HW_ERR_NOT_BUSY = 5,
  /*
   Another worker already holds this job.
   */
  HW_ERR_JOB_ALREADY_ASSIGNED = 6,
  /*
   No provider with this id is registered with the manager.
   */
  HW_ERR_PROVIDER_NOT_FOUND = 7,
  /*
   A provider call failed.
   */
  HW_ERR_PROVIDER = 8,
  /*
   The fleet is at `max_workers` (counting provisions in flight).
   */
  HW_ERR_CAPACITY = 9,
  /*
   A NULL pointer, invalid UTF-8, an over-long or malformed id, a string over its maximum
   size (see `hw_worker_spec`), an out-of-range enum value, a nonsense configuration or
   duration, a subscription capacity of 0.
   */
  HW_ERR_INVALID_ARGUMENT = 10,
  /*
   A snapshot could not be read (corrupt, foreign, inconsistent); nothing was changed.
   */
  HW_ERR_SNAPSHOT = 11,
  /*
   A storage backend failed (reserved for shared-database backends).
   */
  HW_ERR_BACKEND = 12,
  /*
   A bug: the library panicked. The call had no defined effect; please report it.
   */
  HW_ERR_PANIC = 13,
  /*
   A leader-only call (provision, terminate, health check, cleanup, reconcile) on a
   manager that does not hold the leadership lease, or whose lease was not renewed in
   time: another replica acts on the fleet. Nothing was changed.
   */
  HW_ERR_NOT_LEADER = 14,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum hw_status hw_status;
#else
typedef uint32_t hw_status;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/*
 What happened. `HW_EVENT_KIND_REGISTERED`, `_STATE_CHANGED`, `_ASSIGNED_TO_JOB`,
 `_RELEASED_FROM_JOB`, `_JOB_LOST` and `_UNREGISTERED` are the registry's own: only a
 change of its records emits them (`hw_registry_publish`, the host's way onto the stream,
 refuses them), so each one read tells of a change that happened.
 */
enum hw_event_kind
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  /*
   A worker was registered (worker id, provider id).
   */
  HW_EVENT_KIND_REGISTERED = 0,
  /*
   A worker changed state (worker id, from, to).
   */
  HW_EVENT_KIND_STATE_CHANGED = 1,
  /*
   A worker took a job (worker id, job id).
   */
  HW_EVENT_KIND_ASSIGNED_TO_JOB = 2,
  /*
   A worker released a job (worker id, job id).
   */
  HW_EVENT_KIND_RELEASED_FROM_JOB = 3,
  /*
   A heartbeat arrived (worker id; only for subscriptions that asked for them).
   */
  HW_EVENT_KIND_HEARTBEAT_RECEIVED = 4,
  /*
   A worker missed its heartbeat or startup deadline (worker id).
   */
  HW_EVENT_KIND_UNHEALTHY_DETECTED = 5,
  /*
   A worker holding a job left service: requeue the job (worker id, job id).
   */
  HW_EVENT_KIND_JOB_LOST = 6,
  /*
   A worker's record left the registry (worker id, reason).
   */
  HW_EVENT_KIND_UNREGISTERED = 7,
  /*
   The manager asked a provider for a worker (provider id).
   */
  HW_EVENT_KIND_PROVISION_REQUESTED = 8,
  /*
   A provider failed to create a worker (provider id, message).
   */
  HW_EVENT_KIND_PROVISION_FAILED = 9,
  /*
   A provider failed to destroy a worker; it is retried (worker id, provider id, message).
   Not for an orphan instance (no record): its failed destroys are in the reports only.
   */
  HW_EVENT_KIND_DESTROY_FAILED = 10,
  /*
   The health check held back a mass expiry (see the manager's `max_unhealthy_fraction`).
   */
  HW_EVENT_KIND_MASS_EXPIRY_HELD = 11,
  /*
   A replica's manager took the leadership lease under a new term, or found it lost (no
   worker id; the holder, term and publishing replica are in `hw_event_to_json`).
   */
  HW_EVENT_KIND_LEADER_CHANGED = 12,
  /*
   A kind newer than this header: read it with `hw_event_to_json`.
   */
  HW_EVENT_KIND_UNKNOWN = 255,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum hw_event_kind hw_event_kind;
#else
typedef uint32_t hw_event_kind;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/*
 Where a worker is in its life (see the state diagram in DESIGN.md §3).

 Functions that take a state take it as `uint32_t`, so that an out-of-range value is an
 `HW_ERR_INVALID_ARGUMENT` and not undefined behaviour.
 */
enum hw_worker_state
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  /*
   Asked of the provider; the instance is starting.
   */
  HW_WORKER_STATE_CREATING = 0,
  /*
   The agent is up and connecting.
   */
  HW_WORKER_STATE_CONNECTING = 1,
  /*
   Idle and accepting jobs.
   */
  HW_WORKER_STATE_READY = 2,
  /*
   Running a job.
   */
  HW_WORKER_STATE_BUSY = 3,
  /*
   Finishing its job (if any); takes no new job.
   */
  HW_WORKER_STATE_DRAINING = 4,
  /*
   Being destroyed by its provider.
   */
  HW_WORKER_STATE_TERMINATING = 5,
  /*
   Gone.
   */
  HW_WORKER_STATE_TERMINATED = 6,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum hw_worker_state hw_worker_state;
#else
typedef uint32_t hw_worker_state;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/*
 Why a worker is (to be) terminated or was unregistered.
 */
enum hw_termination_reason
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  /*
   `READY` longer than the spec's idle timeout.
   */
  HW_TERMINATION_REASON_IDLE = 0,
  /*
   Older than the spec's maximum lifetime.
   */
  HW_TERMINATION_REASON_LIFETIME = 1,
  /*
   Draining and done with its job.
   */
  HW_TERMINATION_REASON_DRAINED = 2,
  /*
   Ran the spec's `max_jobs` jobs.
   */
  HW_TERMINATION_REASON_MAX_JOBS = 3,
  /*
   Missed its heartbeat deadline.
   */
  HW_TERMINATION_REASON_UNHEALTHY = 4,
  /*
   Never reached `READY` within the startup timeout.
   */
  HW_TERMINATION_REASON_STARTUP_TIMEOUT = 5,
  /*
   Its instance disappeared from the provider.
   */
  HW_TERMINATION_REASON_VANISHED = 6,
  /*
   Removed by autoscaling.
   */
  HW_TERMINATION_REASON_SCALED_DOWN = 7,
  /*
   Asked for by the host.
   */
  HW_TERMINATION_REASON_REQUESTED = 8,
  /*
   Reclaimed after an interruption notice (`hw_manager_notify_interruption`): at its
   deadline, or at the notice for a worker still starting.
   */
  HW_TERMINATION_REASON_INTERRUPTED = 9,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum hw_termination_reason hw_termination_reason;
#else
typedef uint32_t hw_termination_reason;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/*
 Which manager operation made a `hw_report` (`hw_report_summary.kind`).
 */
enum hw_report_kind
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  /*
   `hw_manager_tick`: everything that was due (health check, cleanup, scaling).
   */
  HW_REPORT_KIND_TICK = 0,
  /*
   `hw_manager_run_health_check`.
   */
  HW_REPORT_KIND_HEALTH_CHECK = 1,
  /*
   `hw_manager_cleanup`.
   */
  HW_REPORT_KIND_CLEANUP = 2,
  /*
   `hw_manager_terminate`.
   */
  HW_REPORT_KIND_TERMINATE = 3,
  /*
   `hw_manager_reconcile` (vanished records count as terminated; the rest is in the JSON).
   */
  HW_REPORT_KIND_RECONCILE = 4,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum hw_report_kind hw_report_kind;
#else
typedef uint32_t hw_report_kind;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/*
 CPU architecture of a worker.
 */
enum hw_architecture
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  /*
   x86-64 (the default).
   */
  HW_ARCHITECTURE_AMD64 = 0,
  /*
   64-bit ARM.
   */
  HW_ARCHITECTURE_ARM64 = 1,
  /*
   32-bit ARM.
   */
  HW_ARCHITECTURE_ARM = 2,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum hw_architecture hw_architecture;
#else
typedef uint32_t hw_architecture;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/*
 What a provider callback returns.
 */
enum hw_provider_result
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  /*
   Done.
   */
  HW_PROVIDER_RESULT_OK = 0,
  /*
   Failed: a provider error in the engine (a create counts toward the provider's back-off;
   a destroy is retried later). Say why with `hw_provider_call_set_error`. A create that
   set a resource id before failing has that instance destroyed (see `create_worker`).
   */
  HW_PROVIDER_RESULT_FAILED = 1,
  /*
   `destroy_worker`: the instance does not exist (any more); the engine counts it as
   destroyed.
   */
  HW_PROVIDER_RESULT_NOT_FOUND = 2,
  /*
   `list_workers`: not supported by this provider (`reconcile` skips it).
   */
  HW_PROVIDER_RESULT_UNSUPPORTED = 3,
  /*
   `create_worker`: no capacity for this spec now (a spot market without instances, a full
   quota). A pool whose create fails this way hands its demand to the next pool that
   satisfies it until the provider's back-off ends.
   */
  HW_PROVIDER_RESULT_NO_CAPACITY = 4,
  /*
   `create_worker`, `destroy_worker`: the call's fencing token
   (`hw_provider_call_get_fencing_token`) is below the largest this provider has served:
   another replica leads now. Not a failure of the provider (no back-off, no failed
   attempt): the manager stops acting as the leader until its next tick's renewal. A
   refused create makes `hw_manager_provision` return `HW_ERR_NOT_LEADER`; a refused
   destroy leaves the worker `TERMINATING`, for the replica that leads to destroy.
   */
  HW_PROVIDER_RESULT_FENCED = 5,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum hw_provider_result hw_provider_result;
#else
typedef uint32_t hw_provider_result;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/*
 A clock: the monotonic system clock or a manual clock. A registry made with
 `hw_registry_new_with_clock` shares it: advancing the clock moves the registry's time. The
 handle may be freed while registries still use the clock.
 */
typedef struct hw_clock hw_clock;

/*
 One event. Read-only, thread-safe; borrowed strings are valid until `hw_event_free`.
 */
typedef struct hw_event hw_event;

/*
 The lifecycle manager of one registry. Thread-safe: every function may be called from any
 number of threads; a `hw_manager_tick` running while another thread ticks returns at once
 with `skipped` set. C provider callbacks run on the calling thread.
 */
typedef struct hw_manager hw_manager;

/*
 The context of one provider callback: what the callback reads (metadata, the fencing
 token) and writes (resource id, instances, error message). Valid only during the callback;
 do not keep it.
 */
typedef struct hw_provider_call hw_provider_call;

/*
 The registry of workers. Thread-safe: every function taking a `const hw_registry *` may be
 called from any number of threads at once. Free it only when no other call on it runs.
 */
typedef struct hw_registry hw_registry;

/*
 What a manager operation found and did: one type for the reports of `hw_manager_tick`,
 `hw_manager_run_health_check`, `hw_manager_cleanup`, `hw_manager_terminate` and
 `hw_manager_reconcile` (`hw_report_summary.kind` says which; lists an operation does not
 make are empty). Immutable, thread-safe; borrowed strings valid until `hw_report_free`.
 The JSON form (`hw_report_get_json`) holds everything, in the operation's own shape (the
 core's `TickReport`, `HealthCheckResult`, `CleanupResult` or `ReconcileReport`).
 */
typedef struct hw_report hw_report;

/*
 A subscriber's end of a registry's event stream. Events are queued in a bounded channel; a
 full channel never blocks the registry: the event is dropped for this subscriber, its
 drop counter grows, and the gap in `seq` shows where. Thread-safe; freeing it unsubscribes.
 */
typedef struct hw_subscription hw_subscription;

/*
 A running ticker (see `hw_ticker_start`). Free it with `hw_ticker_free` (which stops it).
 Thread-safe: `hw_ticker_stop` and `hw_ticker_get_stats` may be called from any thread.
 */
typedef struct hw_ticker hw_ticker;

/*
 The demand a `hw_ticker_demand_json_fn` gives for the next tick, set with
 `hw_ticker_demand_set_json`. Borrowed: valid only during the callback's call.
 */
typedef struct hw_ticker_demand hw_ticker_demand;

/*
 A snapshot of one worker's record, taken when the call that returned it ran: it never
 changes and never reflects later changes. Thread-safe (read-only). Strings it hands out
 (`const char **` out-params) are borrowed: valid until `hw_worker_free`.
 */
typedef struct hw_worker hw_worker;

/*
 A filter under construction. Not thread-safe to change; once built, pass it (`const`) to any
 number of calls on any threads.
 */
typedef struct hw_worker_filter hw_worker_filter;

/*
 A list of worker snapshots (the result of a find). Read-only and thread-safe; the workers
 it hands out are borrowed: valid until `hw_worker_list_free`.
 */
typedef struct hw_worker_list hw_worker_list;

/*
 A worker spec under construction. Not thread-safe: build it on one thread, then pass it
 (`const`) to any number of calls. Workers registered or provisioned from it share its
 content (one copy, however many workers); changing it afterwards copies it first, so those
 workers keep the spec they were made from, and freeing it right after a call is fine.

 Strings (image, labels, environment, capabilities, GPU type) are checked when the spec is
 used (`hw_registry_register`, `hw_manager_provision`, `hw_worker_spec_from_json`, …): a
 string longer than its limit (`HW_MAX_IMAGE_LEN`, `HW_MAX_KEY_LEN`, `HW_MAX_VALUE_LEN`) or
 a map or set of more than `HW_MAX_ENTRIES` entries is `HW_ERR_INVALID_ARGUMENT`, naming the
 field and the limit.
 */
typedef struct hw_worker_spec hw_worker_spec;

/*
 A worker's id: the 16 bytes of a UUID v4. Passed by value. The all-zero (nil) id is never a
 worker: functions taking one answer `HW_ERR_INVALID_ARGUMENT`.
 */
typedef struct hw_worker_id {
  /*
   The UUID bytes, in RFC 4122 order.
   */
  uint8_t bytes[16];
} hw_worker_id;

/*
 The fields of an event that a host puts on the registry's stream (`hw_registry_publish`),
 the way `hw_event_get_fields` gives them back from a received one. `kind` is a
 `hw_event_kind`; each kind reads only the members its line names, the others are ignored
 (zero them: `hw_event_fields f = {0};`). Strings are borrowed for the call only.
 */
typedef struct hw_event_fields {
  /*
   The kind (a `hw_event_kind`).
   */
  uint32_t kind;
  /*
   The worker: `HEARTBEAT_RECEIVED`, `UNHEALTHY_DETECTED`, `DESTROY_FAILED` (and, read
   back, every kind about a worker). Not the nil id.
   */
  struct hw_worker_id worker_id;
  /*
   The provider: `PROVISION_REQUESTED`, `PROVISION_FAILED`, `DESTROY_FAILED` (and, read
   back, `REGISTERED`). At most `HW_MAX_PROVIDER_ID_LEN` bytes.
   */
  const char *provider_id;
  /*
   What the provider said: `PROVISION_FAILED`, `DESTROY_FAILED`.
   */
  const char *message;
  /*
   The worker's last heartbeat (ms since the Unix epoch): `UNHEALTHY_DETECTED`.
   */
  uint64_t last_heartbeat_ms;
  /*
   How many destroy attempts failed so far: `DESTROY_FAILED`.
   */
  uint32_t attempts;
  /*
   How many workers the health check would have declared unhealthy: `MASS_EXPIRY_HELD`.
   */
  size_t would_expire;
  /*
   Live workers at the time: `MASS_EXPIRY_HELD`.
   */
  size_t live;
  /*
   The leader now, NULL when the publisher does not know: `LEADER_CHANGED`.
   */
  const char *holder;
  /*
   The lease's term (the fencing token): `LEADER_CHANGED`.
   */
  uint64_t term;
  /*
   The replica that publishes the event: `LEADER_CHANGED`.
   */
  const char *by;
} hw_event_fields;

/*
 Who holds the leadership lease, as a tick report saw it. `holder` is borrowed from the
 report: valid until `hw_report_free`.
 */
typedef struct hw_leader_info {
  /*
   The holder's name (one per replica; `"local"` for a single-process manager).
   */
  const char *holder;
  /*
   Its term: the fencing token, larger with every change of leader.
   */
  uint64_t term;
  /*
   When this holder took this term (ms since the epoch, the registry's clock).
   */
  uint64_t since_ms;
  /*
   When the lease expires unless renewed (`UINT64_MAX`: never).
   */
  uint64_t expires_at_ms;
} hw_leader_info;

/*
 Who holds the leadership lease, as a manager last saw it (`hw_manager_leader`): a copy,
 with the holder's name in the struct (nothing to free).
 */
typedef struct hw_leader_state {
  /*
   The holder's name, NUL-terminated (one per replica; `"local"` for a single-process
   manager).
   */
  char holder[HW_LEASE_HOLDER_SIZE];
  /*
   Its term: the fencing token, larger with every change of leader.
   */
  uint64_t term;
  /*
   When this holder took this term (ms since the epoch, the registry's clock).
   */
  uint64_t since_ms;
  /*
   When the lease expires unless renewed (`UINT64_MAX`: never).
   */
  uint64_t expires_at_ms;
} hw_leader_state;

/*
 The manager's configuration. Fill it with `hw_manager_config_default` first, then change
 the fields you care about, so that your code keeps its meaning when a version adds a field
 (a new field changes the struct's size: rebuild against the new header). Durations are in
 milliseconds. `hw_manager_new` validates it.
 */
typedef struct hw_manager_config {
  /*
   A worker silent longer than this is unhealthy (default 60000). Also the longest gap
   between ticks that is not treated as a host stall.
   */
  uint64_t heartbeat_timeout_ms;
  /*
   The health check runs at most this often inside `hw_manager_tick` (default 30000).
   */
  uint64_t health_check_interval_ms;
  /*
   A worker still `CREATING`/`CONNECTING` this long after registration is expired
   (default 300000).
   */
  uint64_t startup_timeout_ms;
  /*
   Idle `READY` workers the autoscaler keeps warm (default 1).
   */
  size_t min_ready_workers;
  /*
   Ceiling: registered workers (every state) plus provisions in flight (default 10).
   */
  size_t max_workers;
  /*
   `hw_manager_should_scale_up` threshold of pending jobs (default 5).
   */
  size_t scale_up_threshold;
  /*
   `hw_manager_should_scale_down` threshold of ready workers (default 3).
   */
  size_t scale_down_threshold;
  /*
   Minimum time between automatic scale-ups (default 10000).
   */
  uint64_t scale_up_cooldown_ms;
  /*
   Minimum time after any automatic scaling action before a scale-down (default 60000).
   */
  uint64_t scale_down_cooldown_ms;
  /*
   Most provisions (and scale-down retirements) per tick (default 5).
   */
  size_t max_provision_per_tick;
  /*
   Most actions (state changes and provider calls) per tick (default 100). Each orphan
   destroy of the tick's own reconcile (a takeover's, a periodic one) is one: those over
   the cap are destroyed by the next ticks. `hw_manager_reconcile` is not capped.
   */
  size_t max_actions_per_tick;
  /*
   First retry delay of a failed destroy; doubles up to the max (default 1000).
   */
  uint64_t destroy_retry_initial_ms;
  /*
   Longest retry delay of a failed destroy (default 300000).
   */
  uint64_t destroy_retry_max_ms;
  /*
   First back-off of a provider whose creates fail; doubles up to the max (default 5000).
   */
  uint64_t provider_backoff_initial_ms;
  /*
   Longest back-off of a failing provider (default 300000).
   */
  uint64_t provider_backoff_max_ms;
  /*
   The brake: when more than this fraction of the workers under heartbeat watch
   (`CONNECTING`, `READY`, `BUSY`, `DRAINING`) are silent at once for more than half
   `heartbeat_timeout_ms`, none of them is declared unhealthy for its heartbeat (a
   partition on the host's side must not kill a healthy fleet; startup expiries are never
   held). The same rule guards the ticks' own reconciles: a provider's listing that misses
   more than this fraction of its workers (`TERMINATING` ones included; and more than
   `unhealthy_floor`) expires
   none of them as vanished, and one that shows more instances no record knows than this
   fraction of the provider's records (and more than `unhealthy_floor`) destroys none of
   them as orphans (`hw_manager_reconcile` is not braked). In (0, 1]; 1 disables the
   brake; default 0.55.
   */
  double max_unhealthy_fraction;
  /*
   The brake's floor: this many workers may always be silent at once without the brake
   holding, whatever the fraction, so that a fleet of one to three can still lose one
   (likewise this many vanished instances, and this many orphan instances, per provider in
   the ticks' reconciles; default 1).
   */
  size_t unhealthy_floor;
  /*
   The brake's bound: once it has held continuously for longer than this, the health check
   lets go and declares the silent workers unhealthy after all — most of the fleet really
   died (`hw_report_summary.brake_gave_up`). A new hold starts only after a check finds the
   fleet back under the limit. Default 300000; 0 is refused with `HW_ERR_INVALID_ARGUMENT`.
   */
  uint64_t max_mass_expiry_hold_ms;
  /*
   How often the leader's `hw_manager_tick` runs `hw_manager_reconcile` by itself: once
   this long has passed since the last complete reconcile (a takeover's, a periodic one,
   or a call of the host's), so that orphan instances that appear after it (the create of
   a replica that lost its lease, returning after the new leader's takeover reconcile)
   are destroyed on a host that only ticks. Reported in the tick's decisions. A tick's
   reconcile that could not list every provider runs again after a back-off:
   `destroy_retry_initial_ms` doubling up to this interval (`destroy_retry_max_ms` when it
   is 0), starting over after a complete reconcile. Default 600000; 0 disables it.
   */
  uint64_t reconcile_interval_ms;
} hw_manager_config;

/*
 A provider written in C: function pointers and the `user_data` they receive first. Each
 callback returns a `hw_provider_result` value (as `uint32_t`: any other value is a failure).
 Zero the struct before filling it (`= {0}` or `memset`) so that the optional callbacks you
 leave out are NULL.

 The manager copies this struct. It calls the callbacks on the thread that called the
 manager function (`hw_manager_tick`, `hw_manager_tick_demand`, `hw_manager_provision`,
 `hw_manager_terminate`, `hw_manager_reconcile`, `hw_manager_run_health_check`,
 `hw_manager_cleanup`, `hw_manager_notify_interruption`, `hw_manager_remove_pool`,
 `hw_manager_set_pools_json`), never while the library holds a lock: a callback may call
 back into the library, even `hw_manager_free` on the manager that called it. If the manager is
 used from several threads, the callbacks may run concurrently and `user_data` must allow
 it. `release(user_data)` is called exactly once when the manager no longer needs the
 provider (unregistered, manager freed, or registration refused).
 */
typedef struct hw_provider_callbacks {
  /*
   Passed first to every callback; the library never reads it.
   */
  void *user_data;
  /*
   Required. Ask the infrastructure for worker `worker_id`, made from `spec`, and return
   quickly (the worker reports in later). The manager made `worker_id` before the call:
   start the instance knowing it (an environment variable, an argument), so that its agent
   reports in and heartbeats with it. Set the instance id with
   `hw_provider_call_set_resource_id` (and optionally metadata) as soon as the instance
   exists: it is required on success, and a create that fails after setting it (any result
   but `HW_PROVIDER_RESULT_OK`, say a step after the launch failed) has its instance
   destroyed by the library, through `destroy_worker` with this worker id, resource id and
   metadata, on this thread, before the failure is reported. The one exception is
   `HW_PROVIDER_RESULT_FENCED`: that instance is left to the replica that leads (its
   `hw_manager_reconcile` destroys it as an orphan). A create that fails without a
   resource id made nothing the library knows of: clean up yourself.
   */
  uint32_t (*create_worker)(void *user_data, struct hw_worker_id worker_id, const struct hw_worker_spec *spec, struct hw_provider_call *call);
  /*
   Required. Destroy the instance `resource_id` of worker `worker_id` (metadata given at
   creation: `hw_provider_call_get_metadata`). `HW_PROVIDER_RESULT_NOT_FOUND` counts as
   destroyed. For an orphan instance (one `list_workers` listed that no record knows)
   `worker_id` is an id the library made for the listing, no worker's, and there is no
   metadata: destroy by `resource_id`.
   */
  uint32_t (*destroy_worker)(void *user_data, struct hw_worker_id worker_id, const char *resource_id, struct hw_provider_call *call);
  /*
   Optional (NULL: unsupported). List the instances the infrastructure really has, one
   `hw_provider_call_add_instance` each; used by `hw_manager_reconcile` and by the leader's
   ticks every `reconcile_interval_ms`. List only the instances this provider made for this
   registry: each listed instance no record knows is destroyed as an orphan (by the ticks
   only while they are few against this provider's records: see `max_unhealthy_fraction`;
   by `hw_manager_reconcile` however many).
   */
  uint32_t (*list_workers)(void *user_data, struct hw_provider_call *call);
  /*
   Optional. Called once with `user_data` when the provider is dropped.
   */
  void (*release)(void *user_data);
} hw_provider_callbacks;

/*
 One registered provider's id (`hw_manager_providers`).
 */
typedef struct hw_provider_name {
  /*
   The provider id, NUL-terminated.
   */
  char id[HW_PROVIDER_ID_SIZE];
} hw_provider_name;

/*
 A provider backing off after consecutive create failures (`hw_manager_provider_backoff`):
 the ticks do not ask it for workers before `until_ms`.
 */
typedef struct hw_provider_backoff {
  /*
   The provider id, NUL-terminated.
   */
  char provider_id[HW_PROVIDER_ID_SIZE];
  /*
   Its consecutive create failures.
   */
  uint32_t consecutive_failures;
  /*
   When it may be asked again (registry clock, ms since the epoch).
   */
  uint64_t until_ms;
} hw_provider_backoff;

/*
 A `TERMINATING` worker whose destroy is queued or being retried
 (`hw_manager_pending_destroys`).
 */
typedef struct hw_pending_destroy {
  /*
   The worker.
   */
  struct hw_worker_id worker;
  /*
   Its failed destroy attempts so far.
   */
  uint32_t attempts;
  /*
   When the next attempt is due (registry clock, ms since the epoch).
   */
  uint64_t next_at_ms;
} hw_pending_destroy;

/*
 A worker under an interruption notice (`hw_manager_interruptions`).
 */
typedef struct hw_interruption {
  /*
   The worker.
   */
  struct hw_worker_id worker;
  /*
   When its instance goes (registry clock, ms since the epoch): the earliest of the
   notices about it.
   */
  uint64_t deadline_ms;
} hw_interruption;

/*
 An orphan instance the leader's ticks destroy (`hw_manager_pending_orphans`,
 `hw_manager_pending_orphans_of`). It names no provider: two providers may list one resource
 id (two clusters, one pod name), which `hw_manager_pending_orphans_of` tells apart.
 */
typedef struct hw_pending_orphan {
  /*
   The id the library made for the listed instance (no registered worker's).
   */
  struct hw_worker_id worker;
  /*
   The provider's id of the instance, NUL-terminated (a NUL inside shown as `?`). Owned by
   the array: valid until `hw_pending_orphans_free`.
   */
  const char *resource_id;
  /*
   Its failed destroy attempts so far (0: found over a tick's action cap, not tried yet).
   */
  uint32_t attempts;
  /*
   When the next attempt is due (registry clock, ms since the epoch).
   */
  uint64_t next_at_ms;
} hw_pending_orphan;

/*
 The counts of a brake decision (`hw_report_summary.hold`): the numbers the mass-expiry brake
 judged on.
 */
typedef struct hw_mass_expiry_hold {
  /*
   Workers past their heartbeat deadline now (held back while the brake holds).
   */
  size_t would_expire;
  /*
   Workers silent for more than half the heartbeat timeout: the brake's count (at least
   `would_expire`), but those past their startup deadline (expired regardless).
   */
  size_t suspect;
  /*
   Workers under heartbeat watch (`CONNECTING`, `READY`, `BUSY`, `DRAINING`), but those
   past their startup deadline.
   */
  size_t live;
  /*
   The most that may be silent at once: `max(unhealthy_floor, floor(fraction * live))`.
   */
  size_t allowed;
} hw_mass_expiry_hold;

/*
 The counts and flags of a report (`hw_report_get_summary`). Fields a kind of report does not
 have are 0/false (e.g. `pending_jobs` outside a tick).
 */
typedef struct hw_report_summary {
  /*
   Which operation made the report.
   */
  hw_report_kind kind;
  /*
   When it ran (registry clock, ms since the Unix epoch).
   */
  uint64_t at_ms;
  /*
   The jobs of the demand the host passed to the tick (every requirement's, unschedulable
   ones included; ticks only). The replacements of interrupted workers are not counted
   here: they are in the plan's own count (`pending_jobs` of the JSON form's `pools` or
   `scaling`).
   */
  size_t pending_jobs;
  /*
   When the previous tick was longer ago than `heartbeat_timeout_ms`: the length of that
   pause (every worker got a fresh grace period); 0 otherwise (ticks only).
   */
  uint64_t stall_grace_ms;
  /*
   Workers declared unhealthy.
   */
  size_t unhealthy;
  /*
   Jobs lost by workers taken out of service: requeue them.
   */
  size_t lost_jobs;
  /*
   Workers destroyed and unregistered (for reconcile: records whose instance vanished).
   */
  size_t terminated;
  /*
   Destroys that failed (retried later with back-off).
   */
  size_t failed;
  /*
   Workers moved to `DRAINING`.
   */
  size_t drained;
  /*
   Workers provisioned.
   */
  size_t provisioned;
  /*
   Creates that failed.
   */
  size_t provision_failures;
  /*
   Providers being backed off after consecutive create failures (ticks only; who and until
   when: the JSON form).
   */
  size_t provider_backoffs;
  /*
   Explanation lines (`hw_report_get_decision`).
   */
  size_t decisions;
  /*
   Requirements of the demand no pool (or, without pools, the scaling target's spec) can
   ever run (ticks only; each has an `unschedulable: ...` line among the decisions, and the
   list with the reasons is in the JSON form).
   */
  size_t unschedulable;
  /*
   Actions performed (state changes and provider calls).
   */
  size_t actions;
  /*
   Work found due but left for later, because of the per-tick action cap or a lease lost
   meanwhile (health checks and cleanups).
   */
  size_t deferred;
  /*
   The brake's counts when `mass_expiry_held` or `brake_gave_up` is set; zero otherwise.
   */
  struct hw_mass_expiry_hold hold;
  /*
   With `brake_gave_up`: how long (ms) the brake had held before it gave up; 0 otherwise.
   */
  uint64_t brake_held_for_ms;
  /*
   Whether the health check ran.
   */
  bool health_checked;
  /*
   Whether the mass-expiry brake held: too many watched workers were silent at once, so none
   was declared unhealthy for its heartbeat (startup expiries still were). Counts in `hold`.
   */
  bool mass_expiry_held;
  /*
   Whether the brake let go in this check (the fleet is back under the limit): every worker
   got a fresh grace period.
   */
  bool brake_released;
  /*
   Whether the brake gave up in this check (it had held longer than
   `max_mass_expiry_hold_ms`): the silent workers past their deadline were declared
   unhealthy after all, without a grace period. Counts in `hold`, duration in
   `brake_held_for_ms`.
   */
  bool brake_gave_up;
  /*
   Whether a scaling decision was made (a scaling target or pools are set; the plan is in
   the JSON form — `scaling` or `pools` —, its explanation lines among the decisions).
   */
  bool scaled;
  /*
   Whether the per-tick action cap stopped it early (the next ticks do the rest).
   */
  bool capped;
  /*
   Whether another thread was ticking, so this tick did nothing.
   */
  bool skipped;
  /*
   Ticks only: whether this manager leads (holds the leadership lease). A follower's tick
   does nothing but try for the lease; `hw_report_get_leader` says who leads.
   */
  bool leading;
} hw_report_summary;

/*
 The counts of a scaling plan (the whole plan, with the workers to retire, the limits hit and
 the explanation, is in the JSON form).
 */
typedef struct hw_scaling_plan {
  /*
   The jobs this plan scales for: the `pending_jobs` given to
   `hw_manager_plan_scaling`. (A tick's scaling plan, in its report's JSON form, counts
   the jobs of the demand the target's spec satisfies plus the replacements of the
   interrupted workers it replaces: its own, and without pools any other whose offer its
   spec satisfies.)
   */
  size_t pending_jobs;
  /*
   `READY` workers of the scaling target (not those of pools).
   */
  size_t ready;
  /*
   `BUSY` workers of the scaling target (not those of pools).
   */
  size_t busy;
  /*
   Workers of the scaling target still starting (`CREATING`/`CONNECTING`).
   */
  size_t starting;
  /*
   Provisions in flight of the scaling target (not those of pools' specs): capacity on
   its way.
   */
  size_t in_flight;
  /*
   Registered workers plus every provision in flight.
   */
  size_t total;
  /*
   The capacity the policy wants.
   */
  size_t wanted;
  /*
   Workers to provision now.
   */
  size_t provision;
  /*
   Idle workers to retire now.
   */
  size_t scale_down;
} hw_scaling_plan;

/*
 Counts of the registry's workers per state, read in O(1).
 */
typedef struct hw_worker_counts {
  /*
   Registered workers (the sum of the others).
   */
  size_t total;
  /*
   `CREATING`.
   */
  size_t creating;
  /*
   `CONNECTING`.
   */
  size_t connecting;
  /*
   `READY`.
   */
  size_t ready;
  /*
   `BUSY`.
   */
  size_t busy;
  /*
   `DRAINING`.
   */
  size_t draining;
  /*
   `TERMINATING`.
   */
  size_t terminating;
  /*
   `TERMINATED`.
   */
  size_t terminated;
} hw_worker_counts;

/*
 What the ticker calls: function pointers and the `user_data` they receive first. Zero the
 struct before filling it (`= {0}` or `memset`) so that the callbacks you leave out are NULL.

 `demand` and `on_report` are called **on the ticker's own thread** (never on the thread
 that called `hw_ticker_start`), one at a time, never while the library holds a lock: they
 may call into the library (but must not call `hw_ticker_free` on their own ticker), with
 handles that are still valid: once `hw_manager_free` has been called, the `hw_manager *`
 is freed memory and they must not use it any more (the ticker keeps the engine running,
 not the handle). The
 provider callbacks of the manager run on that thread too during its ticks. `user_data` must
 therefore be usable from that thread. `release(user_data)` is called exactly once, after
 the last `demand`/`on_report` call: in `hw_ticker_free`, or in `hw_ticker_start` when it
 fails; it is not called when `hw_ticker_start` is given a NULL `callbacks`.
 */
typedef struct hw_ticker_callbacks {
  /*
   Passed first to every callback; the library never reads it.
   */
  void *user_data;
  /*
   Optional (NULL: no demand, 0 pending jobs). Called before each tick: the number of
   pending jobs (e.g. the length of the host's queue). Should return quickly.
   */
  size_t (*demand)(void *user_data);
  /*
   Optional (NULL: reports are discarded). Called after each tick with its report, which
   is **borrowed**: valid only during the call (read what you need; do not free it). A slow
   callback delays the next tick (it counts as an overrun).
   */
  void (*on_report)(void *user_data, const struct hw_report *report);
  /*
   Optional. Called once with `user_data` when the ticker no longer needs it.
   */
  void (*release)(void *user_data);
} hw_ticker_callbacks;

/*
 The demand callback of `hw_ticker_start_demand`: called on the ticker's thread before each
 tick with the `user_data` of its `hw_ticker_callbacks` and a `hw_ticker_demand` (borrowed:
 valid during the call only) to set the pending jobs by requirement on, with
 `hw_ticker_demand_set_json`. A call whose last `hw_ticker_demand_set_json` did not succeed
 (none came, or its JSON was refused) is a failed demand call.
 */
typedef void (*hw_ticker_demand_json_fn)(void *user_data, struct hw_ticker_demand *demand);

/*
 What a ticker has done so far.
 */
typedef struct hw_ticker_stats {
  /*
   Ticks run.
   */
  uint64_t ticks;
  /*
   Ticks (with their `on_report` call) that took longer than the interval.
   */
  uint64_t overruns;
  /*
   Slots skipped because a tick overran: they are not made up (no burst of ticks after a
   slow one).
   */
  uint64_t missed_slots;
  /*
   Reports not handed to `on_report`: a report that could not be made for C (a bug: its
   strings are checked or have their NULs shown as `?`). The ticker went on.
   */
  uint64_t report_panics;
  /*
   Ticks that panicked (a bug of the library). One that panicked midway handed its report
   to `on_report` (what it did before the panic; `hw_report_get_panicked` says so) and
   counts in `ticks` too; one that panicked before it could make a report handed none and
   is not counted in `ticks`. The ticker went on at the next slot.
   */
  uint64_t tick_panics;
} hw_ticker_stats;

/*
 The timestamps of a worker, in milliseconds since the Unix epoch on the registry's clock.
 */
typedef struct hw_worker_timestamps {
  /*
   When it was registered.
   */
  uint64_t created_at_ms;
  /*
   Last change of any field but the heartbeat.
   */
  uint64_t updated_at_ms;
  /*
   Last change of state.
   */
  uint64_t state_changed_at_ms;
  /*
   Last heartbeat (registration counts as one).
   */
  uint64_t last_heartbeat_ms;
  /*
   When it last entered `READY`; meaningful only when `has_idle_since`.
   */
  uint64_t idle_since_ms;
  /*
   Whether it ever entered `READY`.
   */
  bool has_idle_since;
} hw_worker_timestamps;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/*
 The ABI version of the library this program runs with: `(major << 16) | minor`, to compare
 with the header's `HW_ABI_VERSION` (`HW_ABI_COMPATIBLE()` does: the majors must be equal).
 Libraries built before the ABI had a version do not export this function. Never fails,
 and leaves `hw_last_error_message` as it was.
 */
uint32_t hw_abi_version(void);

/*
 A new monotonic system clock (wall time at creation, then advanced by a monotonic timer, so
 that a wall-clock jump never expires a worker early).
 */
hw_status hw_clock_new_system(struct hw_clock **out);

/*
 A new manual clock reading `start_ms` (milliseconds since the Unix epoch). It moves only with
 `hw_clock_advance` / `hw_clock_set`.
 */
hw_status hw_clock_new_manual(uint64_t start_ms, struct hw_clock **out);

/*
 The clock's time in milliseconds since the Unix epoch.
 */
hw_status hw_clock_now(const struct hw_clock *clock, uint64_t *out_ms);

/*
 Moves a manual clock forward by `by_ms` (saturating) and writes the new time.

 Errors: `HW_ERR_INVALID_ARGUMENT` for the system clock.
 */
hw_status hw_clock_advance(const struct hw_clock *clock, uint64_t by_ms, uint64_t *out_now_ms);

/*
 Sets a manual clock to `at_ms`; a time earlier than the current one is ignored (the clock
 never goes backwards). Writes the time now in force.

 Errors: `HW_ERR_INVALID_ARGUMENT` for the system clock.
 */
hw_status hw_clock_set(const struct hw_clock *clock, uint64_t at_ms, uint64_t *out_now_ms);

/*
 Frees a clock handle (registries using the clock keep it alive). NULL does nothing.
 */
void hw_clock_free(struct hw_clock *clock);

/*
 Subscribes to `registry`'s events with a queue of `capacity` events (at least 1, e.g.
 `HW_DEFAULT_SUBSCRIPTION_CAPACITY`; when the queue is full, further events are dropped for
 this subscriber and counted by `hw_subscription_dropped`). `heartbeats` opts in to
 `HW_EVENT_KIND_HEARTBEAT_RECEIVED` events (off is the sensible choice for a large fleet).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a capacity of 0 (as in Rust and Python: a queue that
 can hold nothing is a mistake, not a default).
 */
hw_status hw_registry_subscribe(const struct hw_registry *registry, size_t capacity, bool heartbeats, struct hw_subscription **out);

/*
 Puts an event of the host on the registry's stream, with the next `seq` and the registry's
 time: every subscriber of the registry reads it (on PostgreSQL, those of every process
 sharing it), as it reads the manager's. The way of a host that provisions workers itself
 to tell the fleet's subscribers what it did (`PROVISION_REQUESTED`, `PROVISION_FAILED`,
 `DESTROY_FAILED`, …). A `HEARTBEAT_RECEIVED` reaches only the subscriptions that asked for
 heartbeat events, and is no event while none does (on PostgreSQL: none of this registry
 handle); it records no heartbeat (that is `hw_registry_heartbeat`).

 Errors: `HW_ERR_INVALID_ARGUMENT` for NULL, a `kind` out of range (`HW_EVENT_KIND_UNKNOWN`
 included), a string member the kind needs that is NULL, not UTF-8 or malformed (a provider
 id), the nil worker id, and for the registry's own kinds (`REGISTERED`, `STATE_CHANGED`,
 `ASSIGNED_TO_JOB`, `RELEASED_FROM_JOB`, `JOB_LOST`, `UNREGISTERED`: the message names the
 kind and the kinds that may be published), checked first; a `message` over
 `HW_MAX_PROVIDER_MESSAGE_LEN` + 64 bytes (the manager's carry a provider's message and its
 kind), a `holder` or `by` that is empty or over 128 bytes (a
 lease holder's rules); `HW_ERR_NOT_FOUND` for an event
 about a worker that is not registered; `HW_ERR_BACKEND` when a shared registry's store
 cannot be reached. Nothing is published on any error.
 */
hw_status hw_registry_publish(const struct hw_registry *registry, const struct hw_event_fields *fields);

/*
 The next event, waiting up to `timeout_ms` milliseconds: 0 never waits, `HW_WAIT_FOREVER`
 waits until an event arrives or the registry is gone (its handle freed and no manager
 using it any more). Writes the event (free with
 `hw_event_free`), or NULL when none came in time (not an error). On a PostgreSQL registry
 whose server stops answering, it returns within `timeout_ms` plus 5 s (the reader's reply
 timeout), with NULL; 0 then takes up to 5 s too. Once the server answers again the
 subscription goes on, nothing lost or repeated.
 */
hw_status hw_subscription_recv(const struct hw_subscription *subscription, uint64_t timeout_ms, struct hw_event **out);

/*
 How many events were dropped for this subscriber because its queue was full.
 */
hw_status hw_subscription_dropped(const struct hw_subscription *subscription, uint64_t *out);

/*
 How many events are queued and not yet received.
 */
hw_status hw_subscription_pending(const struct hw_subscription *subscription, size_t *out);

/*
 Unsubscribes and frees. NULL does nothing. Must not race with a `hw_subscription_recv` on
 the same subscription.
 */
void hw_subscription_free(struct hw_subscription *subscription);

/*
 The event's kind.
 */
hw_status hw_event_get_kind(const struct hw_event *event, hw_event_kind *out);

/*
 The event's sequence number: strictly increasing per registry; a gap means this subscriber
 missed events.
 */
hw_status hw_event_get_seq(const struct hw_event *event, uint64_t *out);

/*
 When it happened (milliseconds since the Unix epoch, on the registry's clock).
 */
hw_status hw_event_get_at(const struct hw_event *event, uint64_t *out_ms);

/*
 The worker the event is about; `*out_has` is false (and `*out` untouched) for fleet events
 (provisioning, mass expiry).
 */
hw_status hw_event_get_worker_id(const struct hw_event *event, bool *out_has, struct hw_worker_id *out);

/*
 The job of an assigned / released / job-lost event, or NULL (borrowed).
 */
hw_status hw_event_get_job_id(const struct hw_event *event, const char **out);

/*
 The provider of a registered / provision / destroy-failed event, or NULL (borrowed).
 */
hw_status hw_event_get_provider_id(const struct hw_event *event, const char **out);

/*
 The provider's error message of a provision-failed / destroy-failed event, or NULL
 (borrowed).
 */
hw_status hw_event_get_message(const struct hw_event *event, const char **out);

/*
 The states of a state-changed event.

 Errors: `HW_ERR_INVALID_ARGUMENT` for another kind of event.
 */
hw_status hw_event_get_states(const struct hw_event *event, hw_worker_state *out_from, hw_worker_state *out_to);

/*
 The reason of an unregistered event.

 Errors: `HW_ERR_INVALID_ARGUMENT` for another kind of event.
 */
hw_status hw_event_get_reason(const struct hw_event *event, hw_termination_reason *out);

/*
 Every field of the event in one struct, as `hw_registry_publish` takes them: the
 members of its kind are set (see `hw_event_fields`), the others are zero or NULL. Strings
 are borrowed from the event: valid until `hw_event_free`. The registry's own kinds fill
 `kind`, `worker_id` and, for `REGISTERED`, `provider_id`; their job, states and reason have
 their own getters. A kind newer than this header is `HW_EVENT_KIND_UNKNOWN` with its worker
 id: read the rest with `hw_event_to_json`.
 */
hw_status hw_event_get_fields(const struct hw_event *event, struct hw_event_fields *out);

/*
 The whole event as JSON (`{"seq":…,"at":…,"kind":{"type":"state_changed",…}}`); free with
 `hw_string_free`.
 */
hw_status hw_event_to_json(const struct hw_event *event, char **out);

/*
 Frees an event. NULL does nothing.
 */
void hw_event_free(struct hw_event *event);

/*
 A new filter that matches every worker.
 */
hw_status hw_worker_filter_new(struct hw_worker_filter **out);

/*
 Accepts workers in `state` (a `hw_worker_state`); called several times, any of the states.

 Errors: `HW_ERR_INVALID_ARGUMENT` for an out-of-range state.
 */
hw_status hw_worker_filter_add_state(struct hw_worker_filter *filter, uint32_t state);

/*
 Only workers of this provider.

 Errors: `HW_ERR_INVALID_ARGUMENT` for an invalid provider id (empty, over 128 bytes,
 control characters).
 */
hw_status hw_worker_filter_set_provider_id(struct hw_worker_filter *filter, const char *provider);

/*
 Only workers of this provider type (`"docker"`, …, `"custom:NAME"`).

 Errors: `HW_ERR_INVALID_ARGUMENT` for an unknown type.
 */
hw_status hw_worker_filter_set_provider_type(struct hw_worker_filter *filter, const char *provider_type_name);

/*
 Only workers that accept jobs now (`true`: `READY`) or only those that do not (`false`).
 */
hw_status hw_worker_filter_set_accepting_jobs(struct hw_worker_filter *filter, bool accepting);

/*
 Only `READY` workers idle for at least `idle_ms`.
 */
hw_status hw_worker_filter_set_idle_for_ms(struct hw_worker_filter *filter, uint64_t idle_ms);

/*
 Only workers without a heartbeat for longer than `silent_ms` (strictly), judged on their last
 heartbeat alone: in any state, and not moved by a grace period (unlike
 `hw_registry_find_unhealthy`).
 */
hw_status hw_worker_filter_set_unhealthy_for_ms(struct hw_worker_filter *filter, uint64_t silent_ms);

/*
 Requires the label `key` with exactly `value` (a key given again replaces its value).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a key over `HW_MAX_KEY_LEN` bytes, a value over
 `HW_MAX_VALUE_LEN`, or a label beyond `HW_MAX_ENTRIES` (no worker holds such labels); the
 filter is unchanged.
 */
hw_status hw_worker_filter_add_label(struct hw_worker_filter *filter, const char *key, const char *value);

/*
 Requires a capability.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a capability over `HW_MAX_KEY_LEN` bytes, or one
 beyond `HW_MAX_ENTRIES` (no worker holds such capabilities); the filter is unchanged.
 */
hw_status hw_worker_filter_add_capability(struct hw_worker_filter *filter, const char *capability);

/*
 At most `limit` results.
 */
hw_status hw_worker_filter_set_limit(struct hw_worker_filter *filter, size_t limit);

/*
 Frees a filter. NULL does nothing.
 */
void hw_worker_filter_free(struct hw_worker_filter *filter);

/*
 The leader as the tick saw it: this manager when `summary.leading`, another replica
 otherwise. Writes `*found = false` (and leaves `*out` alone) when no replica ever led, or
 for a report that is not a tick's.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_report_get_leader(const struct hw_report *report, struct hw_leader_info *out, bool *found);

/*
 The leader as this manager's lease renewals last saw it, outside a tick report: this
 manager when it leads, another replica when it follows (its ticks renew the view; until
 its first tick a replica may have seen none). Writes `*found = false` (and leaves `*out`
 alone) when it has seen no leader.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_manager_leader(const struct hw_manager *manager, struct hw_leader_state *out, bool *found);

/*
 A manager that is one replica of several sharing `registry`, named `holder` (unique per
 process, e.g. "host-1234"), on the registry's leadership lease lasting `lease_ttl_ms` after
 each renewal. Only the replica holding the lease acts; the others' ticks only try to take
 it (tick at least every `lease_ttl_ms / 3`, e.g. with `hw_ticker_start`). On a registry
 that is not shared between processes (the in-memory one) this is `hw_manager_new`: the
 manager always leads.

 Errors: as `hw_manager_new`; `HW_ERR_INVALID_ARGUMENT` for an empty holder or one longer
 than 128 bytes, or a `lease_ttl_ms` under 3 or above `HW_MAX_DURATION_MS` (100 years), on
 every registry (the in-memory one too);
 `HW_ERR_BACKEND` when the lease's store cannot be reached.
 */
hw_status hw_manager_new_replicated(const struct hw_registry *registry, const struct hw_manager_config *config, const char *holder, uint64_t lease_ttl_ms, struct hw_manager **out);

/*
 Whether the manager leads now: it holds the leadership lease and trusts it (always true
 for a single-process manager, unless it stepped down and has not ticked since).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_manager_is_leader(const struct hw_manager *manager, bool *out);

/*
 Gives the leadership lease up (a clean shutdown of a replica): another replica takes over
 at its next tick. Leader-only calls on this manager then fail with `HW_ERR_NOT_LEADER`
 until a later tick takes the lease again.

 Errors: `HW_ERR_INVALID_ARGUMENT` for NULL; `HW_ERR_BACKEND` when the lease's store
 cannot be reached (the lease then expires by itself).
 */
hw_status hw_manager_step_down(const struct hw_manager *manager);

/*
 A manager for `registry` (which it shares: the registry handle may be freed afterwards).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a nonsense configuration (zero timeouts, min ready
 above max workers, a fraction outside (0, 1], …), naming the field.
 */
hw_status hw_manager_new(const struct hw_registry *registry, const struct hw_manager_config *config, struct hw_manager **out);

/*
 A manager configured from JSON (`{"heartbeat_timeout": 60, "max_workers": 10, …}`:
 durations in seconds, missing fields take their defaults, unknown fields are refused).
 Only the object form is accepted: an array of the field values is refused.

 Errors: `HW_ERR_INVALID_ARGUMENT` for malformed JSON, an array where the object is
 expected, or a nonsense configuration.
 */
hw_status hw_manager_new_from_json(const struct hw_registry *registry, const char *config_json, struct hw_manager **out);

/*
 The configuration in force.
 */
hw_status hw_manager_get_config(const struct hw_manager *manager, struct hw_manager_config *out);

/*
 Frees the manager handle: it is invalid afterwards, for every thread and callback. The
 manager itself goes once no call on it runs any more and no ticker runs it; its providers
 are then dropped (their `release` callbacks run) on the thread that lets it go: this one,
 or, while a ticker started on it still runs, the thread whose `hw_ticker_stop` /
 `hw_ticker_free` stops that ticker (never the ticker's own thread). A provider callback (or
 `release`) may free the manager that runs it: the call in progress finishes, and the
 manager goes when that call returns, on its thread. NULL does nothing.
 */
void hw_manager_free(struct hw_manager *manager);

/*
 Asks provider `provider` for a worker made from `spec`, registers it (`CREATING`) and
 writes its snapshot. The request counts against `max_workers` while in flight.

 Errors: `HW_ERR_PROVIDER_NOT_FOUND`; `HW_ERR_CAPACITY` at `max_workers`; `HW_ERR_PROVIDER`
 when the provider's `create_worker` failed (or panicked, or returned a handle for another
 worker; an instance it set a resource id for before failing is destroyed first, see
 `hw_provider_callbacks`); `HW_ERR_NOT_LEADER` when another replica leads (this manager's lease, the store,
 or the provider's `HW_PROVIDER_RESULT_FENCED` says so: not counted as a provider failure),
 or led while the create was in flight and the provider's `list_workers` no longer shows the
 new instance (neither registered nor destroyed again: that leader destroyed it);
 `HW_ERR_INVALID_ARGUMENT` for a bad spec, or when `create_worker` returned OK with a
 handle the registry refuses (a resource id or metadata over their limits,
 `HW_MAX_RESOURCE_ID_LEN`, `HW_MAX_ENTRIES`, …): the new instance is then destroyed
 (`destroy_worker` is called) and nothing is registered; a registry error (e.g.
 `HW_ERR_BACKEND`) when the handle could not be registered otherwise (the instance is
 destroyed too).
 */
hw_status hw_manager_provision(const struct hw_manager *manager, const char *provider, const struct hw_worker_spec *spec, struct hw_worker **out);

/*
 A heartbeat of worker `id` (the registry's heartbeat).

 Errors: `HW_ERR_NOT_FOUND` (tell the agent to register again).
 */
hw_status hw_manager_process_heartbeat(const struct hw_manager *manager, struct hw_worker_id id);

/*
 Runs the health check now: workers past their heartbeat or startup deadline are declared
 unhealthy (unless the mass-expiry brake holds), the jobs they held are reported lost, and
 they are destroyed through their provider and unregistered. Writes what happened.
 */
hw_status hw_manager_run_health_check(const struct hw_manager *manager, struct hw_report **out);

/*
 Retires what is due now (idle, lifetime, drained, max jobs) and retries due destroys.
 Writes what happened.
 */
hw_status hw_manager_cleanup(const struct hw_manager *manager, struct hw_report **out);

/*
 Moves worker `id` to `DRAINING` (it finishes its job, takes no new one, and is then
 retired by cleanup). Writes the new snapshot.

 Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_INVALID_TRANSITION`.
 */
hw_status hw_manager_drain(const struct hw_manager *manager, struct hw_worker_id id, struct hw_worker **out);

/*
 Terminates worker `id` now (`reason`: a `hw_termination_reason`): `TERMINATING` (a held job
 is reported lost), destroyed through its provider, unregistered. A failed destroy shows in
 the report and is retried by later ticks.

 Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_INVALID_ARGUMENT` for a bad reason.
 */
hw_status hw_manager_terminate(const struct hw_manager *manager, struct hw_worker_id id, uint32_t reason, struct hw_report **out);

/*
 Compares the registry with each provider's `list_workers`: instances the registry does not
 know are destroyed; records whose instance vanished are unregistered (reason `VANISHED`,
 listed as terminated; their jobs as lost), however many: this call is not braked (the
 host asked; the way to clean up after losing a registry), unlike the ticks' own reconciles
 (see `max_unhealthy_fraction`). The JSON form
 has the whole reconcile report.
 */
hw_status hw_manager_reconcile(const struct hw_manager *manager, struct hw_report **out);

/*
 Does whatever is due: health check (per its interval), cleanup, destroy retries, scaling
 toward the target for `pending_jobs`. Never fails on the engine's side: problems show as
 lines in the report's decisions. Call it regularly (every second, say). A tick that
 panicked midway (a bug of the library) answers `HW_OK` with the report of what it did
 before the panic (its lost jobs to requeue), which `hw_report_get_panicked` says (ABI 1.4;
 before, `HW_ERR_PANIC` and no report).
 */
hw_status hw_manager_tick(const struct hw_manager *manager, size_t pending_jobs, struct hw_report **out);

/*
 The manager's statistics as JSON (registry counts, in flight, pending destroys, totals of
 provisions, terminations, failures, lost jobs); free with `hw_string_free`.
 */
hw_status hw_manager_stats_json(const struct hw_manager *manager, char **out);

/*
 Fills `out` with the default configuration.
 */
hw_status hw_manager_config_default(struct hw_manager_config *out);

/*
 Registers a provider implemented in C under `provider` (its id) and `provider_type_name`
 (`"docker"`, …, `"custom:NAME"`). See `hw_provider_callbacks` for the threading and the
 release rule: once this function is called with non-NULL `callbacks`, `release` runs
 exactly once, also when the registration is refused.

 Errors: `HW_ERR_INVALID_ARGUMENT` for an invalid id or type, a NULL required callback, or
 an id already registered.
 */
hw_status hw_manager_register_provider(const struct hw_manager *manager, const char *provider, const char *provider_type_name, const struct hw_provider_callbacks *callbacks);

/*
 Removes a provider; its workers stay registered (their destroys fail and are retried until
 a provider with this id is registered again).

 Errors: `HW_ERR_PROVIDER_NOT_FOUND`.
 */
hw_status hw_manager_unregister_provider(const struct hw_manager *manager, const char *provider);

/*
 Sets the text of a failure (any callback). The message is copied; one over
 `HW_MAX_PROVIDER_MESSAGE_LEN` bytes is cut to that size (at a character boundary, ending
 with `"… (truncated)"`) and still `HW_OK`: it is not refused, since a callback could do
 nothing better with the refusal.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL `call` or `message`, or a message that is not
 UTF-8 (the failure then keeps the library's own text).
 */
hw_status hw_provider_call_set_error(struct hw_provider_call *call, const char *message);

/*
 `create_worker`: the id of the new instance (container id, pod name, …). Required on success,
 and not empty: an empty one names no instance, so the handle is refused
 (`HW_ERR_INVALID_ARGUMENT` from the provisioning call) and the instance destroyed.
 */
hw_status hw_provider_call_set_resource_id(struct hw_provider_call *call, const char *resource_id);

/*
 `create_worker`: remembers `key = value` about the instance (given back to
 `destroy_worker`).
 */
hw_status hw_provider_call_add_metadata(struct hw_provider_call *call, const char *key, const char *value);

/*
 `destroy_worker`: the metadata value `key` given at creation, or NULL (borrowed, valid
 during the callback).
 */
hw_status hw_provider_call_get_metadata(const struct hw_provider_call *call, const char *key, const char **out);

/*
 `create_worker` and `destroy_worker`: the call's *fencing token*, the term of the leadership
 the manager calls under. Terms only grow: a replica that took over calls with a larger token
 than any call of the leader it replaced (a manager that is the only one calls with 1). A
 provider whose infrastructure can compare tokens (it keeps the largest token it has served,
 or sends it with a conditional request) refuses a token below the largest seen with
 `HW_PROVIDER_RESULT_FENCED` (not `HW_PROVIDER_RESULT_FAILED`, which would count as a
 failure of the provider and back it off): it so refuses a deposed leader that was paused
 after its last check of the lease, the one gap the manager cannot close by itself.

 Errors: `HW_ERR_INVALID_ARGUMENT` in `list_workers` (which has no token), or for a call
 made without one (the manager never does).
 */
hw_status hw_provider_call_get_fencing_token(const struct hw_provider_call *call, uint64_t *out);

/*
 `list_workers`: one instance the infrastructure has.
 */
hw_status hw_provider_call_add_instance(struct hw_provider_call *call, const char *resource_id);

/*
 The ids of the registered providers, sorted (byte order): an array of `*out_count` entries
 in `*out_ids` (NULL when there is none), yours: free it with `hw_provider_names_free(ids,
 count)`.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_manager_providers(const struct hw_manager *manager, struct hw_provider_name **out_ids, size_t *out_count);

/*
 Frees an array `hw_manager_providers` wrote, given with the count it wrote. NULL does
 nothing.
 */
void hw_provider_names_free(struct hw_provider_name *ids, size_t count);

/*
 The providers backing off now, after consecutive create failures: an array of
 `*out_count` entries in `*out_backoffs` (NULL when there is none), yours: free it with
 `hw_provider_backoffs_free(backoffs, count)`. Leader state, as this replica holds it: empty
 on a follower (like `hw_manager_pending_destroys`).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_manager_provider_backoff(const struct hw_manager *manager, struct hw_provider_backoff **out_backoffs, size_t *out_count);

/*
 Frees an array `hw_manager_provider_backoff` wrote, given with the count it wrote. NULL
 does nothing.
 */
void hw_provider_backoffs_free(struct hw_provider_backoff *backoffs, size_t count);

/*
 The workers `TERMINATING` whose destroy is queued or being retried, with their failed
 attempts and next attempt time: an array of `*out_count` entries in `*out_destroys` (NULL
 when there is none), yours: free it with `hw_pending_destroys_free(destroys, count)`.
 Leader state, as this replica holds it: empty on a follower; a leader whose lease was not
 renewed in time still shows it until its next tick keeps or forgets it.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_manager_pending_destroys(const struct hw_manager *manager, struct hw_pending_destroy **out_destroys, size_t *out_count);

/*
 Frees an array `hw_manager_pending_destroys` wrote, given with the count it wrote. NULL
 does nothing.
 */
void hw_pending_destroys_free(struct hw_pending_destroy *destroys, size_t count);

/*
 The workers under an interruption notice (`hw_manager_notify_interruption`), with their
 deadline, in worker id order: an array of `*out_count` entries in `*out_interruptions`
 (NULL when there is none), yours: free it with `hw_interruptions_free(interruptions,
 count)`. Leader state: empty on a follower.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_manager_interruptions(const struct hw_manager *manager, struct hw_interruption **out_interruptions, size_t *out_count);

/*
 Frees an array `hw_manager_interruptions` wrote, given with the count it wrote. NULL does
 nothing.
 */
void hw_interruptions_free(struct hw_interruption *interruptions, size_t count);

/*
 The orphan instances (listed by a provider, known to no record) that the leader's ticks
 destroy: those whose destroy failed, and those a tick's reconcile found over its action cap,
 by provider and instance. An array of `*out_count` entries in `*out_orphans` (NULL when
 there is none), yours: free it with `hw_pending_orphans_free(orphans, count)`, which frees
 their resource ids too. O(orphans). Leader state: empty on a follower. The entries name no
 provider: `hw_manager_pending_orphans_of` lists one provider's.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_manager_pending_orphans(const struct hw_manager *manager, struct hw_pending_orphan **out_orphans, size_t *out_count);

/*
 `hw_manager_pending_orphans`, only the orphan instances of provider `provider`, in resource
 id order, so that two providers' instances of one resource id (two clusters, one pod name)
 are told apart. An array of `*out_count` entries in `*out_orphans` (NULL when there is
 none), yours: free it with `hw_pending_orphans_free(orphans, count)`. O(orphans). Leader
 state: empty on a follower. The orphans of a provider unregistered after they were found
 are still listed, as long as the manager keeps them (their destroys fail until a provider
 of that id is registered again).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument or an invalid provider id (empty, over
 `HW_MAX_PROVIDER_ID_LEN` bytes, a control character, not UTF-8);
 `HW_ERR_PROVIDER_NOT_FOUND` for a provider that is not registered and has no pending
 orphan.
 */
hw_status hw_manager_pending_orphans_of(const struct hw_manager *manager, const char *provider, struct hw_pending_orphan **out_orphans, size_t *out_count);

/*
 Frees an array `hw_manager_pending_orphans` or `hw_manager_pending_orphans_of` wrote (and
 the resource ids in it), given with the count it wrote. NULL does nothing.
 */
void hw_pending_orphans_free(struct hw_pending_orphan *orphans, size_t count);

/*
 The report's counts.
 */
hw_status hw_report_get_summary(const struct hw_report *report, struct hw_report_summary *out);

/*
 The `index`-th lost job: the worker that held it and the job id (borrowed). Requeue it.
 */
hw_status hw_report_get_lost_job(const struct hw_report *report, size_t index, struct hw_worker_id *out_worker, const char **out_job);

/*
 The `index`-th worker declared unhealthy.
 */
hw_status hw_report_get_unhealthy(const struct hw_report *report, size_t index, struct hw_worker_id *out);

/*
 The `index`-th worker destroyed and unregistered, and why.
 */
hw_status hw_report_get_terminated(const struct hw_report *report, size_t index, struct hw_worker_id *out_worker, hw_termination_reason *out_reason);

/*
 The `index`-th worker whose destroy failed (retried later).
 */
hw_status hw_report_get_failed(const struct hw_report *report, size_t index, struct hw_worker_id *out);

/*
 The `index`-th worker moved to `DRAINING`.
 */
hw_status hw_report_get_drained(const struct hw_report *report, size_t index, struct hw_worker_id *out);

/*
 The `index`-th worker provisioned.
 */
hw_status hw_report_get_provisioned(const struct hw_report *report, size_t index, struct hw_worker_id *out);

/*
 The `index`-th explanation line (borrowed), e.g. the scaling decision
 `"+3: pending 7, …, capped by max_workers 10"`.
 */
hw_status hw_report_get_decision(const struct hw_report *report, size_t index, const char **out);

/*
 Whether the tick panicked midway (a bug of a host's own registry, clock or lease, or of
 the library), and the panic's message (borrowed: valid until `hw_report_free`; a NUL in it
 shown as `?`). Such a report holds what the tick did before the panic — requeue its lost
 jobs as always — and a decision line names the phase that panicked; the rest of the tick
 was not done (the next tick does what is still due). Writes `*found = false` (and leaves
 `*out` alone) for a tick that did not panic, and for a report that is not a tick's. The
 JSON form has the message as `panicked` (null when none).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_report_get_panicked(const struct hw_report *report, const char **out, bool *found);

/*
 The whole report as JSON (borrowed: valid until `hw_report_free`).
 */
hw_status hw_report_get_json(const struct hw_report *report, const char **out);

/*
 Frees a report. NULL does nothing.
 */
void hw_report_free(struct hw_report *report);

/*
 The seed's predicate: no ready worker and jobs pending, or more pending than
 `scale_up_threshold` with room below `max_workers`. Its ready workers are those
 `hw_manager_plan_scaling` counts: the scaling target's own (without a target, those of no
 pool), never those of other pools; the room counts every registered worker.
 */
hw_status hw_manager_should_scale_up(const struct hw_manager *manager, size_t pending_jobs, bool *out);

/*
 The seed's predicate: more ready workers than `scale_down_threshold` and than
 `min_ready_workers`; the scaling target's own (without a target, those of no pool), as
 `hw_manager_plan_scaling` counts them.
 */
hw_status hw_manager_should_scale_down(const struct hw_manager *manager, bool *out);

/*
 The autoscaling decision for `pending_jobs`, without acting on it: its counts in `out_plan`
 and the whole plan as JSON in `out_json` (free with `hw_string_free`).
 */
hw_status hw_manager_plan_scaling(const struct hw_manager *manager, size_t pending_jobs, struct hw_scaling_plan *out_plan, char **out_json);

/*
 What `hw_manager_tick` scales toward: workers of `spec` from provider `provider`. Without a
 target, ticks never provision nor scale down. Its workers are those of no pool (or of its
 spec's pool, if `spec` carries the label `hodei.pool`): it neither counts nor retires the
 workers of pools (set on another replica), which count against `max_workers` all the same.

 Errors: `HW_ERR_PROVIDER_NOT_FOUND`; `HW_ERR_INVALID_ARGUMENT` for a bad spec.
 */
hw_status hw_manager_set_scaling_target(const struct hw_manager *manager, const char *provider, const struct hw_worker_spec *spec);

/*
 Removes the scaling target.
 */
hw_status hw_manager_clear_scaling_target(const struct hw_manager *manager);

/*
 The scaling target, if one is set: its provider id in `*out_provider` (free with
 `hw_string_free`) and a copy of its spec in `*out_spec` (free with `hw_worker_spec_free`;
 read it with `hw_worker_spec_to_json` and the `hw_worker_spec_get_*` calls). Writes NULL to
 both when no target is set (not an error).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_manager_scaling_target(const struct hw_manager *manager, char **out_provider, struct hw_worker_spec **out_spec);

/*
 The manager's metrics (workers by state and provider, jobs assigned and released,
 provisions, destroys, failures, unhealthy detections, lost jobs, brake holds, provider
 back-off, tick and health-check durations, heartbeat ages, event drops) in the OpenMetrics
 text format, ending in `# EOF`. Serve it with the content type
 `application/openmetrics-text; version=1.0.0; charset=utf-8`. Reading costs O(1) in the
 fleet size. Free with `hw_string_free`.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_manager_metrics_text(const struct hw_manager *manager, char **out);

/*
 Turns the metrics' duration histograms (`hodei_workers_tick_duration_seconds`,
 `hodei_workers_health_check_duration_seconds`) on (`true`, the default) or off. Off, ticks
 and health checks read no clock for the metrics and the histograms stand still; they are
 still counted (`hodei_workers_ticks_total`, `hodei_workers_health_checks_total`: one relaxed
 atomic add a call either way), and the rest of `hw_manager_metrics_text` is read at scrape
 time as before. Takes effect from the next tick or health check (one already running keeps
 its choice); one relaxed atomic store, callable from any thread.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL `manager`.
 */
hw_status hw_manager_metrics_set_timing(const struct hw_manager *manager, bool on);

/*
 Whether the metrics' duration histograms are measured (`hw_manager_metrics_set_timing`), in
 `*out`.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument (nothing written).
 */
hw_status hw_manager_metrics_timing(const struct hw_manager *manager, bool *out);

/*
 Replaces the manager's pools with the JSON array `pools_json` (see the module notes for a
 pool's form: each pool, template and `resources` a JSON object, never an array of its
 values). Pools no longer listed are removed and their workers drain (as in
 `hw_manager_remove_pool`); so do the workers of a pool listed again with a template that
 asks more of them than theirs offers (a label, capability, architecture or resource a job of
 the new template needs). The number of workers taken out of service is written to
 `out_drained`. While any pool is set, ticks scale the pools, not the scaling target.
 On a replicated manager each replica has its own pools, but draining is leader work: a
 follower drains nothing (writes 0) and drains what its pools removed at its ticks once it
 leads. A tick running meanwhile makes each of its provisions from a pool as it is then, and
 none for a requirement that a reshaped pool's new template no longer satisfies (its
 decisions say so; its next plan counts that demand again).

 Errors: `HW_ERR_INVALID_ARGUMENT` for malformed JSON (an array where an object is expected
 included), an invalid pool or two pools with one name; `HW_ERR_PROVIDER_NOT_FOUND` for a
 pool whose provider is not registered: nothing changes on those. `HW_ERR_BACKEND` (the
 registry's status) when the workers of a pool to drain could not be listed or drained, or
 `HW_ERR_NOT_LEADER` when the lease was lost midway: the pools are set all the same,
 `hw_last_error_message()` names the workers taken out of service and the pools left, and
 the leader's ticks drain those (so does the next call).
 */
hw_status hw_manager_set_pools_json(const struct hw_manager *manager, const char *pools_json, size_t *out_drained);

/*
 Adds a pool `name` of workers from `provider` made from `template` (the manager adds the
 label `hodei.pool=NAME`), keeping `min_ready` idle workers warm, at most `max_workers`
 (`SIZE_MAX`: only the global cap), tried before pools of lower `priority`. Cooldowns are
 10 s up and 60 s down (use `hw_manager_set_pools_json` to choose them).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a bad name (1..=64 letters, digits, `-_.`), a name in
 use, `min_ready > max_workers` or a bad template; `HW_ERR_PROVIDER_NOT_FOUND`.
 */
hw_status hw_manager_add_pool(const struct hw_manager *manager, const char *name, const char *provider, const struct hw_worker_spec *template_spec, size_t min_ready, size_t max_workers, int32_t priority);

/*
 Removes pool `name`: nothing more is provisioned for it and its workers drain (idle ones
 are retired by the next tick, busy ones after their job; ones still starting are terminated
 now, through their provider's `destroy_worker`, on this thread). Writes how many were taken
 out of service (0 on a follower of a replicated set: the leader drains; this replica
 drains them at its ticks once it leads; 0 too for a pool removed earlier whose workers a
 tick is draining at that moment: the tick reports them). A create of the pool's spec still
 in flight (a tick's, or the host's own `hw_manager_provision` of a spec with its
 `hodei.pool` label) registers its worker after this look: the leader's next tick takes it
 out of service, whoever started it.

 Errors: `HW_ERR_INVALID_ARGUMENT` when no pool has that name (nor is any left to drain
 under it); `HW_ERR_BACKEND` (the
 registry's status) when its workers could not be listed or drained, or `HW_ERR_NOT_LEADER`
 when the lease was lost midway: the pool is removed all the same, and the leader's ticks
 drain them (so does calling this again with the name).
 */
hw_status hw_manager_remove_pool(const struct hw_manager *manager, const char *name, size_t *out_drained);

/*
 The pools as a JSON array, highest priority first (free with `hw_string_free`).
 */
hw_status hw_manager_get_pools_json(const struct hw_manager *manager, char **out);

/*
 The pool plan for `demand_json`, without acting on it, as JSON (free with
 `hw_string_free`): one decision per pool with its explanation line, the requirements no
 pool satisfies (`unschedulable`, with the reason) and the demand waiting for capacity
 (`unmet`).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a malformed or invalid demand (a requirement or its
 `resources` written as an array instead of an object included; a label, capability or GPU
 model over `HW_MAX_KEY_LEN` / `HW_MAX_VALUE_LEN`, or more than `HW_MAX_ENTRIES` of them).
 */
hw_status hw_manager_plan_pools_json(const struct hw_manager *manager, const char *demand_json, char **out);

/*
 `hw_manager_tick` toward a demand by requirement (`demand_json`, see the module notes)
 instead of a number of jobs. The report's decisions hold one line per pool and one per
 unschedulable requirement; its JSON holds the whole pool plan (`pools`) and the
 `unschedulable` list. A requirement index in the plan at or past the demand's length names
 the replacement of interrupted workers listed under `pools.replacements` with that
 `requirement`.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a malformed or invalid demand (a requirement or its
 `resources` written as an array instead of an object included; a label, capability or GPU
 model over `HW_MAX_KEY_LEN` / `HW_MAX_VALUE_LEN`, or more than `HW_MAX_ENTRIES` of them;
 no tick runs).
 */
hw_status hw_manager_tick_demand(const struct hw_manager *manager, const char *demand_json, struct hw_report **out);

/*
 Worker `id` is going away at `deadline_ms` (registry clock, ms since the epoch): a spot
 reclaim, a node drain. It drains now; while it runs a job its pool (for a worker of no
 pool: the scaling target on its provider; while pools are set, for a worker none of them
 owns: the pools that satisfy its spec; without pools, for a worker the scaling target does
 not own: the target, if its spec satisfies the worker's) gets a replacement ahead of the
 deadline; a job still running at the deadline is reported lost by the tick that reaches
 it. Writes the worker's snapshot after the notice.

 Leader-only (a replicated manager): a replica that does not lead refuses it and changes
 nothing; send the notice to the leader.

 Errors: `HW_ERR_NOT_LEADER` on a replica that does not lead; `HW_ERR_NOT_FOUND`;
 `HW_ERR_INVALID_TRANSITION` for a worker already on its way out.
 */
hw_status hw_manager_notify_interruption(const struct hw_manager *manager, struct hw_worker_id id, uint64_t deadline_ms, struct hw_worker **out);

/*
 Only workers whose resources cover those of `needs` (a spec used for its resources only:
 at least its CPU, memory, disk and GPUs, and its GPU model if it names one) — claim a
 worker for a job exactly as its demand describes it. Answered from the ready index by
 `hw_registry_claim`, like labels.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a GPU model over `HW_MAX_KEY_LEN` bytes (no worker
 has one); the filter is unchanged.
 */
hw_status hw_worker_filter_set_fits(struct hw_worker_filter *filter, const struct hw_worker_spec *needs);

/*
 Only workers of this architecture (a `hw_architecture` value).

 Errors: `HW_ERR_INVALID_ARGUMENT` for an out-of-range value.
 */
hw_status hw_worker_filter_set_architecture(struct hw_worker_filter *filter, uint32_t architecture);

/*
 The counts of one pool's workers (those labelled `hodei.pool=NAME`), per state and in all,
 from the registry's maintained counters: O(pools), never a fleet scan. A pool with no
 worker (or a name no worker carries) has all counts zero. Every pool's counts at once:
 `"by_pool"` of `hw_registry_stats_json`.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a null argument or a name that is not UTF-8.
 */
hw_status hw_registry_pool_counts(const struct hw_registry *registry, const char *pool, struct hw_worker_counts *out);

/*
 Opens the registry named `name` on the PostgreSQL server at `url` and writes a new handle to
 `*out`. Deadlines are judged on the database's clock, so replicas with skewed clocks agree.

 `url` is any libpq connection string: a URL (`postgresql://user@host:5432/db`) or
 `key=value` pairs (`host=/tmp user=postgres dbname=postgres`). `name` (1..=48 bytes of
 `[a-z0-9_]`, not starting with a digit) is the PostgreSQL schema the registry lives in,
 created with its tables on first use (safe when several processes start at once).

 Connections are opened on demand (a pool of a few per handle). Free the handle with
 `hw_registry_free`; the records stay in the database.

 Errors: `HW_ERR_INVALID_ARGUMENT` for NULL, invalid UTF-8, a malformed `url` or `name`;
 `HW_ERR_BACKEND` when the server cannot be reached or the schema cannot be set up (the
 message says why). Later calls on the handle return `HW_ERR_BACKEND` while the server is
 unreachable, and apply nothing.
 */
hw_status hw_registry_new_postgres(const char *url, const char *name, struct hw_registry **out);

/*
 As `hw_registry_new_postgres`, but every deadline and timestamp is taken from `clock`
 (a manual clock makes tests deterministic). Replicas sharing a registry must share one time:
 give them the database clock (`hw_registry_new_postgres`) outside tests. The clock handle
 may be freed afterwards.

 Errors: as `hw_registry_new_postgres`.
 */
hw_status hw_registry_new_postgres_with_clock(const char *url, const char *name, const struct hw_clock *clock, struct hw_registry **out);

/*
 Drops the registry named `name` from the server at `url`: its schema and every record and
 event in it (tests clean up with it). Handles still open on it fail afterwards with
 `HW_ERR_BACKEND`. Dropping a registry that does not exist succeeds.

 Errors: `HW_ERR_INVALID_ARGUMENT` for NULL, invalid UTF-8, a malformed `url` or `name`;
 `HW_ERR_BACKEND`.
 */
hw_status hw_registry_drop_postgres(const char *url, const char *name);

/*
 A new, empty registry on the monotonic system clock.
 */
hw_status hw_registry_new(struct hw_registry **out);

/*
 A new, empty registry on `clock` (shared: advancing a manual clock moves the registry's
 time). The clock handle may be freed afterwards.
 */
hw_status hw_registry_new_with_clock(const struct hw_clock *clock, struct hw_registry **out);

/*
 Frees a registry. Subscriptions and managers made from it keep what they need alive; a
 subscription blocked in `hw_subscription_recv` wakes up once the last user is gone.
 NULL does nothing.
 */
void hw_registry_free(struct hw_registry *registry);

/*
 Sets how many unregistered ids the registry remembers (default
 `HW_DEFAULT_RETIRED_ID_LIMIT`, 2^20). Ids are never reused: registering a remembered id
 (`hw_registry_register_with_id`) is `HW_ERR_ALREADY_EXISTS`, so a late call naming an old
 worker never acts on a new one; an id retired longer ago than the last `limit` retirements
 is forgotten and may be registered again. A limit of 0 remembers none. In memory a lower
 limit forgets the oldest at once; in PostgreSQL the registry forgets them at its next prune
 (at most a minute later, on the health-check path). Ids the library makes never repeat: the
 limit matters for ids the caller chooses.

 Errors: `HW_ERR_INVALID_ARGUMENT` for NULL or a limit beyond the address space.
 */
hw_status hw_registry_set_retired_id_limit(const struct hw_registry *registry, uint64_t limit);

/*
 The registry's time (milliseconds since the Unix epoch): every deadline is measured on it.
 */
hw_status hw_registry_now(const struct hw_registry *registry, uint64_t *out_ms);

/*
 Registers a new worker (state `CREATING`, a fresh id) for the instance `resource_id` of
 provider `provider` of type `provider_type_name` (`"docker"`, …, `"custom:NAME"`), made from
 `spec` (shared, not copied: every worker registered from one `hw_worker_spec` shares its
 content). Writes the new worker's snapshot (free with `hw_worker_free`).

 Errors: `HW_ERR_INVALID_ARGUMENT` for an invalid provider id, provider type or spec, or a
 `resource_id` that is empty (it names no instance) or over `HW_MAX_RESOURCE_ID_LEN` bytes.
 */
hw_status hw_registry_register(const struct hw_registry *registry, const char *provider, const char *provider_type_name, const char *resource_id, const struct hw_worker_spec *spec, struct hw_worker **out);

/*
 Like `hw_registry_register`, but with the worker id chosen by the caller (e.g. the id the
 provider gave the agent, or a restored one).

 Errors: `HW_ERR_ALREADY_EXISTS` for an id that is, or once was, registered in this registry
 (ids are never reused); `HW_ERR_INVALID_ARGUMENT` as
 `hw_registry_register`, and for the nil id.
 */
hw_status hw_registry_register_with_id(const struct hw_registry *registry, struct hw_worker_id id, const char *provider, const char *provider_type_name, const char *resource_id, const struct hw_worker_spec *spec, struct hw_worker **out);

/*
 Removes a worker's record (`reason`: a `hw_termination_reason`) and writes its last
 snapshot. A job it held is reported lost (a `HW_EVENT_KIND_JOB_LOST` event).

 Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_INVALID_ARGUMENT` for the nil id or a bad reason.
 */
hw_status hw_registry_unregister(const struct hw_registry *registry, struct hw_worker_id id, uint32_t reason, struct hw_worker **out);

/*
 A snapshot of worker `id`, or NULL in `*out` when no such worker is registered (a miss is
 not an error here). Takes no exclusive lock.
 */
hw_status hw_registry_get(const struct hw_registry *registry, struct hw_worker_id id, struct hw_worker **out);

/*
 The workers matching `filter` (a full scan: not for hot paths).
 */
hw_status hw_registry_find(const struct hw_registry *registry, const struct hw_worker_filter *filter, struct hw_worker_list **out);

/*
 The workers accepting jobs now (`READY`).
 */
hw_status hw_registry_find_available(const struct hw_registry *registry, struct hw_worker_list **out);

/*
 The `n` longest-idle `READY` workers, longest idle first: a host's scale-in candidates,
 answered from the ready index (no fleet scan; in memory O(classes × n + n log n), whatever
 the number of ready workers). Each worker is listed once; one claimed, or whose idle time
 restarted, during the call may be left out. Pair it with a move that keeps a job (`DRAINING`
 finishes one a worker took meanwhile) to retire them.
 */
hw_status hw_registry_longest_idle(const struct hw_registry *registry, size_t n, struct hw_worker_list **out);

/*
 The workers of provider `provider`.
 */
hw_status hw_registry_find_by_provider(const struct hw_registry *registry, const char *provider, struct hw_worker_list **out);

/*
 The workers past their heartbeat deadline: in a monitored state (`CONNECTING`, `READY`,
 `BUSY`, `DRAINING`) and silent for longer than `heartbeat_timeout_ms`. Cost follows the
 number of workers due, not the fleet size.
 */
hw_status hw_registry_find_unhealthy(const struct hw_registry *registry, uint64_t heartbeat_timeout_ms, struct hw_worker_list **out);

/*
 The workers still `CREATING`/`CONNECTING` longer than `startup_timeout_ms` after
 registration.
 */
hw_status hw_registry_find_startup_expired(const struct hw_registry *registry, uint64_t startup_timeout_ms, struct hw_worker_list **out);

/*
 The workers due for retirement; `hw_worker_list_get_reason` tells why each one is due
 (idle, lifetime, drained, max jobs).
 */
hw_status hw_registry_find_for_termination(const struct hw_registry *registry, struct hw_worker_list **out);

/*
 Moves worker `id` to `state` (a `hw_worker_state`) and writes the new snapshot. The same
 state is a successful no-op. Never enters or leaves `BUSY` (that is assign/claim and
 release).

 Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_INVALID_TRANSITION`; `HW_ERR_INVALID_ARGUMENT` for an
 out-of-range state or the nil id.
 */
hw_status hw_registry_update_state(const struct hw_registry *registry, struct hw_worker_id id, uint32_t state, struct hw_worker **out);

/*
 Records a heartbeat of worker `id` (updates its last heartbeat only). Cheap: a shared lock
 and an atomic store; scales over threads.

 Errors: `HW_ERR_NOT_FOUND` (tell the agent to register again).
 */
hw_status hw_registry_heartbeat(const struct hw_registry *registry, struct hw_worker_id id);

/*
 Gives job `job` to the `READY` worker `id` (`-> BUSY`); writes the new snapshot.

 Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_NOT_AVAILABLE` when it is not `READY`;
 `HW_ERR_JOB_ALREADY_ASSIGNED` when another worker holds `job`; `HW_ERR_INVALID_ARGUMENT` for
 an invalid job id (empty, over 256 bytes).
 */
hw_status hw_registry_assign(const struct hw_registry *registry, struct hw_worker_id id, const char *job, struct hw_worker **out);

/*
 Takes back whatever job worker `id` holds: `BUSY -> READY` (its idle clock restarts), or it
 stays `DRAINING`; reaching the spec's `max_jobs` drains it. Writes the released job id (free
 with `hw_string_free`).

 Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_NOT_BUSY` when it holds no job.
 */
hw_status hw_registry_release(const struct hw_registry *registry, struct hw_worker_id id, char **out_job);

/*
 Like `hw_registry_release`, but only if worker `id` holds `expected_job`: a late release
 from an old assignment never frees a new one.

 Errors: `HW_ERR_NOT_BUSY` (and nothing changes) when it holds no job or another one.
 */
hw_status hw_registry_release_job(const struct hw_registry *registry, struct hw_worker_id id, const char *expected_job, char **out_job);

/*
 Picks a `READY` worker matching `filter` and assigns `job` to it in one atomic step
 (preferring the most recently idle worker). Writes its new snapshot, or NULL when no
 worker matches (not an error).

 Errors: `HW_ERR_JOB_ALREADY_ASSIGNED` when a worker already holds `job`;
 `HW_ERR_INVALID_ARGUMENT` for an invalid job id.
 */
hw_status hw_registry_claim(const struct hw_registry *registry, const struct hw_worker_filter *filter, const char *job, struct hw_worker **out);

/*
 Records a heartbeat of each of the `count` workers of `ids`, as `hw_registry_heartbeat` does
 for one, and writes each one's answer to `out_statuses[i]`: `HW_OK`, or `HW_ERR_NOT_FOUND`
 for a worker the registry does not hold (tell its agent to register again). The bulk form
 for a host that gathers its agents' heartbeats: one statement on PostgreSQL; in memory, each
 a heartbeat. `out_statuses` has room for `count` statuses and is written only on success.

 Errors: `HW_ERR_INVALID_ARGUMENT` for NULL `ids` or `out_statuses` or the nil id among
 `ids` (then no heartbeat is recorded); `HW_ERR_BACKEND` when a shared registry's store
 cannot be reached.
 */
hw_status hw_registry_heartbeat_many(const struct hw_registry *registry, const struct hw_worker_id *ids, size_t count, hw_status *out_statuses);

/*
 After a stall of the host (the process was suspended): no heartbeat or startup deadline
 that started before `since_ms` expires before `since_ms` plus its timeout. The lifecycle
 manager calls this itself; a host driving the registry alone may.
 */
hw_status hw_registry_grant_grace(const struct hw_registry *registry, uint64_t since_ms);

/*
 Counts per state and the total, O(1).
 */
hw_status hw_registry_stats(const struct hw_registry *registry, struct hw_worker_counts *out);

/*
 The full statistics as JSON (`{"total":…,"by_state":{…},"by_provider":{…},
 "by_provider_type":{…},"by_pool":{"NAME":{…per state…}}}`); free with `hw_string_free`.
 */
hw_status hw_registry_stats_json(const struct hw_registry *registry, char **out);

/*
 The number of registered workers, O(1).
 */
hw_status hw_registry_count(const struct hw_registry *registry, size_t *out);

/*
 Every record plus the event sequence number, consistent at one instant, as JSON (free with
 `hw_string_free`).
 */
hw_status hw_registry_snapshot(const struct hw_registry *registry, char **out_json);

/*
 Loads a snapshot (from `hw_registry_snapshot`) into this registry, which must be empty. The
 snapshot is checked whole first: on any error the registry is left untouched. Every restored
 worker gets a fresh grace period from now: none expires at the first check after a restore
 for the time the snapshot lay on disk. A snapshot dated after this registry's clock
 (taken on a host whose clock is ahead) has every time clamped to this clock's now, so that
 none of its workers escapes its heartbeat deadline; one dated more than an hour after now
 is refused.

 Errors: `HW_ERR_SNAPSHOT` for corrupt, foreign or inconsistent JSON (timestamps after the
 snapshot's own time, a string holding a NUL byte, the snapshot or a record, handle, spec
 or `resources` in it written as an array of its values instead of an object, …), or a
 snapshot dated more than an hour after this registry's clock; `HW_ERR_INVALID_ARGUMENT`
 when the registry is not empty, one of the snapshot's workers was registered in this
 registry before (ids are never reused), the text is not UTF-8, or (PostgreSQL) the
 database's encoding cannot store one of its strings.
 */
hw_status hw_registry_restore(const struct hw_registry *registry, const char *json);

/*
 A spec for `image` with the defaults: idle timeout 300 s, maximum lifetime 3600 s, no job
 limit, amd64, no resources, labels or capabilities.
 */
hw_status hw_worker_spec_new(const char *image, struct hw_worker_spec **out);

/*
 Reads a spec from JSON (the serde form: `{"image": "...", "labels": {...},
 "capabilities": [...], "idle_timeout": 300, "max_lifetime": 3600, "max_jobs": 1,
 "resources": {...}, "environment": {...}, "architecture": "arm64"}`; durations in seconds,
 missing fields take their defaults). The spec is validated. Only the object form is
 accepted, here and for `resources`: an array of the field values (serde's positional form,
 e.g. `"[]"`) is refused.

 Errors: `HW_ERR_INVALID_ARGUMENT` for malformed JSON, an array where an object is
 expected, or an invalid spec.
 */
hw_status hw_worker_spec_from_json(const char *json, struct hw_worker_spec **out);

/*
 The spec as JSON (free with `hw_string_free`).
 */
hw_status hw_worker_spec_to_json(const struct hw_worker_spec *spec, char **out);

/*
 The spec's image (for C providers reading the spec they are asked to create; free with
 `hw_string_free`). Everything else is in `hw_worker_spec_to_json`.
 */
hw_status hw_worker_spec_get_image(const struct hw_worker_spec *spec, char **out);

/*
 A copy of `spec`.
 */
hw_status hw_worker_spec_clone(const struct hw_worker_spec *spec, struct hw_worker_spec **out);

/*
 Replaces the image.
 */
hw_status hw_worker_spec_set_image(struct hw_worker_spec *spec, const char *image);

/*
 Adds (or replaces) a label. Filters match labels exactly.
 */
hw_status hw_worker_spec_add_label(struct hw_worker_spec *spec, const char *key, const char *value);

/*
 Adds (or replaces) an environment variable of the worker process.
 */
hw_status hw_worker_spec_add_env(struct hw_worker_spec *spec, const char *key, const char *value);

/*
 Adds a capability (e.g. `"gpu"`); a filter may require it.
 */
hw_status hw_worker_spec_add_capability(struct hw_worker_spec *spec, const char *capability);

/*
 Sets the idle timeout: a `READY` worker idle this long is cleaned up (1 ms to
 `HW_MAX_DURATION_MS`).

 Errors: `HW_ERR_INVALID_ARGUMENT` for 0 or above `HW_MAX_DURATION_MS` (the spec is
 unchanged).
 */
hw_status hw_worker_spec_set_idle_timeout_ms(struct hw_worker_spec *spec, uint64_t timeout_ms);

/*
 Sets the maximum lifetime since creation (1 ms to `HW_MAX_DURATION_MS`); a busy worker is
 drained first.

 Errors: `HW_ERR_INVALID_ARGUMENT` for 0 or above `HW_MAX_DURATION_MS` (the spec is
 unchanged).
 */
hw_status hw_worker_spec_set_max_lifetime_ms(struct hw_worker_spec *spec, uint64_t lifetime_ms);

/*
 Sets the job limit: after `max_jobs` jobs the worker is drained (1 makes a one-shot worker);
 0 removes the limit.
 */
hw_status hw_worker_spec_set_max_jobs(struct hw_worker_spec *spec, uint32_t max_jobs);

/*
 Sets the resources asked for. `cpu_cores` must be finite and not negative.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a bad `cpu_cores` (the spec is unchanged).
 */
hw_status hw_worker_spec_set_resources(struct hw_worker_spec *spec, double cpu_cores, uint64_t memory_bytes, uint64_t disk_bytes, uint32_t gpu_count);

/*
 Sets the GPU model asked for.
 */
hw_status hw_worker_spec_set_gpu_type(struct hw_worker_spec *spec, const char *gpu_type);

/*
 Sets the architecture (a `hw_architecture` value).

 Errors: `HW_ERR_INVALID_ARGUMENT` for an out-of-range value.
 */
hw_status hw_worker_spec_set_architecture(struct hw_worker_spec *spec, uint32_t architecture);

/*
 Frees a spec. NULL does nothing.
 */
void hw_worker_spec_free(struct hw_worker_spec *spec);

/*
 Starts a thread that calls `hw_manager_tick(manager, demand(user_data))` every
 `interval_ms` milliseconds (the first tick at once; the next ones on the grid
 `start + k * interval`) and hands each report to `on_report`. A tick that overruns its slot
 is counted and the slots it covered are skipped, not piled up. The ticker keeps the
 manager's engine running (`hw_manager_free` may be called before `hw_ticker_free`), but
 not its handle: after `hw_manager_free` the `hw_manager *` is invalid, and the callbacks
 must not pass it to the library any more. The engine then goes when the ticker is stopped:
 its providers' `release` callbacks run in that `hw_ticker_stop` / `hw_ticker_free`, on its
 caller's thread. See `hw_ticker_callbacks` for the threads the callbacks run on and the
 release rule.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument or `interval_ms` 0; `HW_ERR_BACKEND`
 when the thread cannot be started.
 */
hw_status hw_ticker_start(const struct hw_manager *manager, uint64_t interval_ms, const struct hw_ticker_callbacks *callbacks, struct hw_ticker **out);

/*
 Sets the pending jobs by requirement for the tick about to run: `demand_json` in the form
 `hw_manager_tick_demand` takes (`[{"labels": {"gpu": "a100"}, "count": 3}]`). The library
 copies what it reads: the string stays the caller's, and may be freed once this returns.
 Only from a `hw_ticker_demand_json_fn`, on the `demand` it was given.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument, or a demand
 `hw_manager_tick_demand` refuses (malformed or invalid; the message says why). The demand
 is then unset: unless a later call in the same callback sets one, the callback's call is a
 failed demand call (the tick uses the last good demand, see `hw_ticker_start_demand`).
 */
hw_status hw_ticker_demand_set_json(struct hw_ticker_demand *demand, const char *demand_json);

/*
 `hw_ticker_start` for a host with pools, whose pending jobs need different workers: before
 each tick, `demand_json(callbacks->user_data, demand)` sets the pending jobs by requirement
 with `hw_ticker_demand_set_json`, and the tick runs as `hw_manager_tick_demand` with it.
 `callbacks->demand` must be NULL (this callback replaces it); `on_report`, `release`, the
 threads and the rest are as in `hw_ticker_start`.

 A failed demand call (nothing set, or a demand refused by `hw_ticker_demand_set_json`) is
 counted (`hw_ticker_get_demand_failures`) and never crashes: the tick uses the last demand a
 call set; before any call set one, the tick runs every phase but scaling (nothing
 provisioned or retired for a demand not known yet). Its report says so in its decisions.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument (`demand_json` included),
 `interval_ms` 0, or a `callbacks->demand` that is not NULL; `HW_ERR_BACKEND` when the
 thread cannot be started. `release` is called on every error but a NULL `callbacks`.
 */
hw_status hw_ticker_start_demand(const struct hw_manager *manager, uint64_t interval_ms, const struct hw_ticker_callbacks *callbacks, hw_ticker_demand_json_fn demand_json, struct hw_ticker **out);

/*
 How many calls of the ticker's demand callback failed so far: with
 `hw_ticker_start_demand`, the calls that set no valid demand (the tick used the last good
 one). Always 0 for a ticker of `hw_ticker_start`, whose `demand` cannot fail.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_ticker_get_demand_failures(const struct hw_ticker *ticker, uint64_t *out);

/*
 Stops the ticker: no tick starts after this call; waits for the tick in progress (and its
 `on_report`) and joins the thread. Idempotent. Called from the ticker's own callbacks it
 only asks the thread to stop after the current tick and returns at once. When
 `hw_manager_free` was called before, the manager goes with the join: its providers'
 `release` callbacks run in this call, on this thread (one may call `hw_ticker_stop` on this
 ticker again: the thread has ended, it returns at once).

 Errors: `HW_ERR_INVALID_ARGUMENT` for NULL.
 */
hw_status hw_ticker_stop(const struct hw_ticker *ticker);

/*
 The ticker's counters so far (ticks, overruns, skipped slots, failures).

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
 */
hw_status hw_ticker_get_stats(const struct hw_ticker *ticker, struct hw_ticker_stats *out);

/*
 Stops the ticker (as `hw_ticker_stop`), frees it and calls `release(user_data)`. NULL does
 nothing. Must not be called from the ticker's own callbacks. When `hw_manager_free` was
 called before, the manager goes here: its providers' `release` callbacks run in this call,
 on this thread (or already in an earlier `hw_ticker_stop`, on that one's).
 */
void hw_ticker_free(struct hw_ticker *ticker);

/*
 The static name of a status (`"HW_ERR_NOT_FOUND"`); `"HW_UNKNOWN_STATUS"` for a value that
 is not a status. Never NULL; never to be freed.
 */
const char *hw_status_str(uint32_t status);

/*
 The message of the last call on this thread that failed, naming the function and what was
 wrong; `""` if the last call succeeded. Never NULL; never to be freed.

 The text stays valid until the next call into the library **on this thread** (any call
 but `hw_last_error_message`, `hw_status_str`, `hw_abi_version` and the `_free` functions);
 copy it to keep it.
 */
const char *hw_last_error_message(void);

/*
 Frees a string the library returned through a `char **` out-param. NULL does nothing.
 Strings borrowed through a `const char **` out-param must NOT be passed here.
 */
void hw_string_free(char *string);

/*
 Parses a worker id from its text form (hyphenated UUID; upper case, simple and braced forms
 are accepted).

 Errors: `HW_ERR_INVALID_ARGUMENT` for NULL, invalid UTF-8, malformed text or the nil UUID.
 */
hw_status hw_worker_id_parse(const char *text, struct hw_worker_id *out);

/*
 Writes the lowercase hyphenated text of `id` and a NUL into `buffer`, which must hold at
 least `HW_WORKER_ID_STRING_SIZE` (37) bytes.

 Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL or too small buffer, or the nil id; the buffer
 is then untouched.
 */
hw_status hw_worker_id_format(struct hw_worker_id id, char *buffer, size_t buffer_size);

/*
 The lowercase name of a state (`"ready"`); `"unknown"` for an out-of-range value. Never
 NULL; never to be freed.
 */
const char *hw_worker_state_str(uint32_t state);

/*
 The library's release version (`"0.1.0"`); its ABI version is `hw_abi_version`. Never
 NULL; never to be freed.
 */
const char *hw_version(void);

/*
 The worker's id.
 */
hw_status hw_worker_get_id(const struct hw_worker *worker, struct hw_worker_id *out);

/*
 The worker's state.
 */
hw_status hw_worker_get_state(const struct hw_worker *worker, hw_worker_state *out);

/*
 The id of the provider that owns the worker (borrowed).
 */
hw_status hw_worker_get_provider_id(const struct hw_worker *worker, const char **out);

/*
 The provider type's text form: `"docker"`, …, `"custom:NAME"` (borrowed).
 */
hw_status hw_worker_get_provider_type(const struct hw_worker *worker, const char **out);

/*
 The provider's id of the instance: container id, pod name, … (borrowed).
 */
hw_status hw_worker_get_resource_id(const struct hw_worker *worker, const char **out);

/*
 The job the worker holds, or NULL when it holds none (borrowed).
 */
hw_status hw_worker_get_current_job(const struct hw_worker *worker, const char **out);

/*
 The image of the worker's spec (borrowed).
 */
hw_status hw_worker_get_image(const struct hw_worker *worker, const char **out);

/*
 Jobs the worker released so far.
 */
hw_status hw_worker_get_jobs_executed(const struct hw_worker *worker, uint64_t *out);

/*
 The worker's timestamps.
 */
hw_status hw_worker_get_timestamps(const struct hw_worker *worker, struct hw_worker_timestamps *out);

/*
 The number of labels of the worker's spec (for `hw_worker_get_label_at`).
 */
hw_status hw_worker_get_label_count(const struct hw_worker *worker, size_t *out);

/*
 The number of capabilities of the worker's spec.
 */
hw_status hw_worker_get_capability_count(const struct hw_worker *worker, size_t *out);

/*
 The value of label `key`, or NULL when the worker has no such label (borrowed).
 */
hw_status hw_worker_get_label(const struct hw_worker *worker, const char *key, const char **out_value);

/*
 The `index`-th label (in key order) (borrowed).

 Errors: `HW_ERR_INVALID_ARGUMENT` when `index` is out of range.
 */
hw_status hw_worker_get_label_at(const struct hw_worker *worker, size_t index, const char **out_key, const char **out_value);

/*
 The `index`-th capability (in sorted order) (borrowed).

 Errors: `HW_ERR_INVALID_ARGUMENT` when `index` is out of range.
 */
hw_status hw_worker_get_capability_at(const struct hw_worker *worker, size_t index, const char **out);

/*
 The whole record as JSON (the snapshot form: handle with metadata, spec, state, job,
 timestamps). Free with `hw_string_free`.
 */
hw_status hw_worker_to_json(const struct hw_worker *worker, char **out);

/*
 Frees a worker snapshot. NULL does nothing.
 */
void hw_worker_free(struct hw_worker *worker);

/*
 The number of workers in the list.
 */
hw_status hw_worker_list_len(const struct hw_worker_list *list, size_t *out);

/*
 The `index`-th worker (borrowed: valid until the list is freed; do not free it).

 Errors: `HW_ERR_INVALID_ARGUMENT` when `index` is out of range.
 */
hw_status hw_worker_list_get(const struct hw_worker_list *list, size_t index, const struct hw_worker **out);

/*
 Why the `index`-th worker is due for termination (lists from
 `hw_registry_find_for_termination` only).

 Errors: `HW_ERR_INVALID_ARGUMENT` when `index` is out of range or the list carries no
 reasons.
 */
hw_status hw_worker_list_get_reason(const struct hw_worker_list *list, size_t index, hw_termination_reason *out);

/*
 Frees a list and the workers in it. NULL does nothing.
 */
void hw_worker_list_free(struct hw_worker_list *list);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* HODEI_WORKERS_H */
