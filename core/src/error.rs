//! The one error type of the library and its `Result` alias.

use crate::ids::{JobId, ProviderId, WorkerId};
use crate::state::WorkerState;

/// Everything that can go wrong in a registry or manager call.
///
/// Each kind maps one-to-one to a C status code and a Python exception (DESIGN.md §6).
/// Messages name the worker, the states and the provider involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No worker with this id is registered (or it was unregistered: ids are never reused).
    #[error("worker {0} not found")]
    NotFound(WorkerId),
    /// A worker with this id is registered, or was (ids are never reused: see
    /// [`InMemoryWorkerRegistry::with_retired_id_limit`](crate::InMemoryWorkerRegistry::with_retired_id_limit)).
    #[error("worker {0} already exists (or existed: ids are never reused)")]
    AlreadyExists(WorkerId),
    /// The state machine does not allow this move (see [`WorkerState::can_transition_to`]),
    /// or the worker's record does: back to `Ready` only without a job and below the spec's
    /// `max_jobs` (the message says so).
    #[error("worker {worker_id}: invalid transition {from} -> {to}{}", transition_hint(*from, *to))]
    InvalidTransition {
        /// The worker asked to move.
        worker_id: WorkerId,
        /// Its current state.
        from: WorkerState,
        /// The state asked for.
        to: WorkerState,
    },
    /// The worker cannot take a job: it is not `Ready`.
    #[error("worker {worker_id} is not available for jobs (state {state})")]
    NotAvailable {
        /// The worker asked to take a job.
        worker_id: WorkerId,
        /// Its current state.
        state: WorkerState,
    },
    /// The worker holds no job, or holds another job than the one being released.
    #[error("worker {worker_id} is not busy with {expected}", expected = .expected.as_ref().map(|j| format!("job {j}")).unwrap_or_else(|| "any job".into()))]
    NotBusy {
        /// The worker asked to release.
        worker_id: WorkerId,
        /// The job the caller expected it to hold, if it named one.
        expected: Option<JobId>,
    },
    /// The job is already held by a worker (a job runs on at most one worker).
    #[error("job {job_id} is already assigned to worker {worker_id}")]
    JobAlreadyAssigned {
        /// The job asked for.
        job_id: JobId,
        /// The worker that holds it.
        worker_id: WorkerId,
    },
    /// No provider with this id is registered with the manager.
    #[error("provider {0} not found")]
    ProviderNotFound(ProviderId),
    /// A provider call failed (or panicked).
    #[error("provider {provider_id}: {message}")]
    Provider {
        /// The provider that failed.
        provider_id: ProviderId,
        /// What it said.
        message: String,
    },
    /// The fleet is at `max_workers` (counting provisions in flight).
    #[error("capacity exceeded: {0}")]
    CapacityExceeded(String),
    /// An argument was invalid: a malformed id, a nonsense configuration, a null pointer.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A snapshot could not be read: corrupt, truncated, foreign or inconsistent.
    #[error("snapshot error: {0}")]
    Snapshot(String),
    /// A storage backend failed (reserved for shared-database backends).
    #[error("backend error: {0}")]
    Backend(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// A short stable name of the kind (`"not_found"`, `"invalid_argument"`, …), for logs and
    /// for the bindings.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::AlreadyExists(_) => "already_exists",
            Error::InvalidTransition { .. } => "invalid_transition",
            Error::NotAvailable { .. } => "not_available",
            Error::NotBusy { .. } => "not_busy",
            Error::JobAlreadyAssigned { .. } => "job_already_assigned",
            Error::ProviderNotFound(_) => "provider_not_found",
            Error::Provider { .. } => "provider",
            Error::CapacityExceeded(_) => "capacity_exceeded",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Snapshot(_) => "snapshot",
            Error::Backend(_) => "backend",
        }
    }
}

/// Why a move the table allows may still be refused (the refusal then comes from the record).
fn transition_hint(from: WorkerState, to: WorkerState) -> &'static str {
    if to == WorkerState::Ready && from.can_transition_to(to) {
        " (a worker goes back to ready only without a job and while below its spec's max_jobs)"
    } else {
        ""
    }
}

/// `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
