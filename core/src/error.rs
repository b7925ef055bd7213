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
    /// A leader-only operation on a replica that does not hold the leadership lease (or whose
    /// lease was not renewed in time): another replica's manager acts on the fleet.
    #[error("not the leader: {0}")]
    NotLeader(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// The kind of the error, without its details.
    ///
    /// Unlike `Error`, [`ErrorKind`] is exhaustive: the bindings match on it without a
    /// catch-all arm, so a kind added here fails their build until they map it (DESIGN.md §6).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::InvalidTransition { .. } => ErrorKind::InvalidTransition,
            Error::NotAvailable { .. } => ErrorKind::NotAvailable,
            Error::NotBusy { .. } => ErrorKind::NotBusy,
            Error::JobAlreadyAssigned { .. } => ErrorKind::JobAlreadyAssigned,
            Error::ProviderNotFound(_) => ErrorKind::ProviderNotFound,
            Error::Provider { .. } => ErrorKind::Provider,
            Error::CapacityExceeded(_) => ErrorKind::CapacityExceeded,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Snapshot(_) => ErrorKind::Snapshot,
            Error::Backend(_) => ErrorKind::Backend,
            Error::NotLeader(_) => ErrorKind::NotLeader,
        }
    }

    /// A short stable name of the kind (`"not_found"`, `"invalid_argument"`, …), for logs and
    /// for the bindings.
    pub fn kind_name(&self) -> &'static str {
        self.kind().name()
    }
}

/// The kind of an [`Error`]: one per variant, one C status and one Python exception each
/// (DESIGN.md §6).
///
/// Deliberately **not** `#[non_exhaustive]`: the C and Python bindings match on it
/// exhaustively, so that a new kind cannot silently fall into another kind's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// [`Error::NotFound`].
    NotFound,
    /// [`Error::AlreadyExists`].
    AlreadyExists,
    /// [`Error::InvalidTransition`].
    InvalidTransition,
    /// [`Error::NotAvailable`].
    NotAvailable,
    /// [`Error::NotBusy`].
    NotBusy,
    /// [`Error::JobAlreadyAssigned`].
    JobAlreadyAssigned,
    /// [`Error::ProviderNotFound`].
    ProviderNotFound,
    /// [`Error::Provider`].
    Provider,
    /// [`Error::CapacityExceeded`].
    CapacityExceeded,
    /// [`Error::InvalidArgument`].
    InvalidArgument,
    /// [`Error::Snapshot`].
    Snapshot,
    /// [`Error::Backend`].
    Backend,
    /// [`Error::NotLeader`].
    NotLeader,
}

impl ErrorKind {
    /// Every kind, in declaration order (tests of the bindings walk it).
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::InvalidTransition,
        ErrorKind::NotAvailable,
        ErrorKind::NotBusy,
        ErrorKind::JobAlreadyAssigned,
        ErrorKind::ProviderNotFound,
        ErrorKind::Provider,
        ErrorKind::CapacityExceeded,
        ErrorKind::InvalidArgument,
        ErrorKind::Snapshot,
        ErrorKind::Backend,
        ErrorKind::NotLeader,
    ];

    /// The stable snake_case name (`"not_found"`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidTransition => "invalid_transition",
            ErrorKind::NotAvailable => "not_available",
            ErrorKind::NotBusy => "not_busy",
            ErrorKind::JobAlreadyAssigned => "job_already_assigned",
            ErrorKind::ProviderNotFound => "provider_not_found",
            ErrorKind::Provider => "provider",
            ErrorKind::CapacityExceeded => "capacity_exceeded",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Snapshot => "snapshot",
            ErrorKind::Backend => "backend",
            ErrorKind::NotLeader => "not_leader",
        }
    }

    /// An error of this kind with placeholder details, for tests that must cover every kind
    /// (the bindings' mapping tests).
    #[doc(hidden)]
    pub fn sample(self) -> Error {
        let worker_id = WorkerId::from_bytes([0x11; 16]).unwrap_or_else(|_| WorkerId::new());
        let provider_id = ProviderId::new("sample-provider").expect("a valid provider id");
        let job_id = JobId::new("sample-job").expect("a valid job id");
        let state = WorkerState::Ready;
        match self {
            ErrorKind::NotFound => Error::NotFound(worker_id),
            ErrorKind::AlreadyExists => Error::AlreadyExists(worker_id),
            ErrorKind::InvalidTransition => Error::InvalidTransition {
                worker_id,
                from: state,
                to: WorkerState::Busy,
            },
            ErrorKind::NotAvailable => Error::NotAvailable { worker_id, state },
            ErrorKind::NotBusy => Error::NotBusy {
                worker_id,
                expected: Some(job_id),
            },
            ErrorKind::JobAlreadyAssigned => Error::JobAlreadyAssigned { job_id, worker_id },
            ErrorKind::ProviderNotFound => Error::ProviderNotFound(provider_id),
            ErrorKind::Provider => Error::Provider {
                provider_id,
                message: "sample failure".into(),
            },
            ErrorKind::CapacityExceeded => Error::CapacityExceeded("sample".into()),
            ErrorKind::InvalidArgument => Error::InvalidArgument("sample".into()),
            ErrorKind::Snapshot => Error::Snapshot("sample".into()),
            ErrorKind::Backend => Error::Backend("sample".into()),
            ErrorKind::NotLeader => Error::NotLeader("sample".into()),
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

/// How many characters of a caller's string an error message echoes ([`quote_input`]).
pub const MAX_ECHO_CHARS: usize = 64;

/// A caller's string as an error message echoes it: Debug-quoted as `{:?}` would, but at most
/// its first [`MAX_ECHO_CHARS`] characters (cut on a character boundary), followed by
/// `… (N bytes)` when cut. A refused input can be megabytes long: the message that refuses it
/// (copied into the C last-error buffer, a Python exception, a log line) stays short and still
/// says how long it was.
///
/// ```
/// use hodei_workers::quote_input;
/// assert_eq!(quote_input("gpu/spot"), "\"gpu/spot\"");
/// let long = "x".repeat(1 << 20);
/// assert_eq!(quote_input(&long), format!("{:?}… (1048576 bytes)", "x".repeat(64)));
/// ```
pub fn quote_input(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

/// The longest message of serde's in a form [`json_error_message`] does not know that it passes
/// whole (the longest list of expected fields, the manager config's, is under 500 characters).
const MAX_SERDE_MESSAGE_CHARS: usize = 1024;

/// A JSON parser's refusal as a message: serde_json's own, but with the caller's string it
/// quotes (an unknown field or variant, a string of the wrong type or value: serde quotes them
/// whole) cut as [`quote_input`] cuts, so that a megabyte-long key or value does not become a
/// megabyte-long error. Serde's list of what it expected and the position are kept. For the
/// bindings, which parse the caller's JSON text themselves.
#[doc(hidden)]
pub fn json_error_message(error: &serde_json::Error) -> String {
    let (reason, position) = json_error_parts(error);
    format!("{reason}{position}")
}

/// [`json_error_message`] in its two parts: the reason (the caller's quoted string cut), and
/// the position (` at line L column C`, empty for an error without one: line 0, from
/// `from_value`, which serde_json prints without one). For a binding that words the reason
/// its own way.
#[doc(hidden)]
pub fn json_error_parts(error: &serde_json::Error) -> (String, String) {
    let mut message = error.to_string();
    let mut position = String::new();
    if error.line() != 0 {
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        if message.ends_with(&suffix) {
            message.truncate(message.len() - suffix.len());
            position = suffix;
        }
    }
    (clip_serde_message(&message), position)
}

/// Serde's message with the caller's string it quotes cut (see [`json_error_message`]).
fn clip_serde_message(message: &str) -> String {
    // `unknown field `X`, expected …`, `unknown variant `X`, expected …` (X verbatim), and
    // `invalid type: string "X", expected …` (X escaped as Debug does): X runs to the last
    // closing mark, since serde's own text after it holds none.
    let forms: [(&str, &[&str]); 4] = [
        ("unknown field `", &["`, expected ", "`, there are no "]),
        ("unknown variant `", &["`, expected ", "`, there are no "]),
        ("invalid type: string \"", &["\", expected "]),
        ("invalid value: string \"", &["\", expected "]),
    ];
    for (head, ends) in forms {
        let Some(rest) = message.strip_prefix(head) else {
            continue;
        };
        let Some(end) = ends.iter().filter_map(|e| rest.rfind(e)).max() else {
            continue;
        };
        let (quoted, tail) = rest.split_at(end);
        if let Some((cut, _)) = quoted.char_indices().nth(MAX_ECHO_CHARS) {
            let mark = &tail[..1];
            return format!(
                "{head}{}{mark}… ({} bytes){}",
                &quoted[..cut],
                quoted.len(),
                &tail[1..]
            );
        }
    }
    // Another form, or a short string: the whole message, cut when long.
    match message.char_indices().nth(MAX_SERDE_MESSAGE_CHARS) {
        None => message.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes)", &message[..cut], message.len()),
    }
}

/// `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn serde_messages_keep_their_expected_list_and_position_but_not_a_huge_quoted_string() {
        let key = "k".repeat(1 << 20);
        let error =
            serde_json::from_str::<crate::WorkerLifecycleConfig>(&format!(r#"{{"{key}": 1}}"#))
                .unwrap_err();
        let message = json_error_message(&error);
        assert!(
            message.starts_with(&format!(
                "unknown field `{}`… (1048576 bytes), expected one of `heartbeat_timeout`",
                "k".repeat(MAX_ECHO_CHARS)
            )),
            "{message}"
        );
        assert!(message.ends_with(" at line 1 column 1048579"), "{message}");
        assert!(message.len() < 700, "{message}");
        let error = serde_json::from_str::<WorkerState>(&format!("\"{key}\"")).unwrap_err();
        let message = json_error_message(&error);
        assert!(message.contains("… (1048576 bytes), expected one of `creating`"));
        assert!(message.len() < 300, "{message}");
        let error = serde_json::from_str::<u64>(&format!("\"{key}\"")).unwrap_err();
        let message = json_error_message(&error);
        assert!(
            message.starts_with(&format!(
                "invalid type: string \"{}\"… (1048576 bytes), expected u64 at line 1",
                "k".repeat(MAX_ECHO_CHARS)
            )),
            "{message}"
        );
        // A short one is serde's own.
        let error = serde_json::from_str::<WorkerState>("\"zz\"").unwrap_err();
        assert_eq!(json_error_message(&error), error.to_string());
        // A string over MAX_ECHO_CHARS is cut however short the whole message.
        let error =
            serde_json::from_str::<WorkerState>(&format!("\"{}\"", "s".repeat(65))).unwrap_err();
        assert!(
            json_error_message(&error).starts_with(&format!(
                "unknown variant `{}`… (65 bytes), expected one of",
                "s".repeat(64)
            )),
            "{}",
            json_error_message(&error)
        );
    }

    #[test]
    fn quote_input_keeps_short_strings_and_cuts_long_ones_on_a_char_boundary() {
        assert_eq!(quote_input(""), "\"\"");
        let exact = "é".repeat(MAX_ECHO_CHARS);
        assert_eq!(quote_input(&exact), format!("{exact:?}"));
        let long = format!("{exact}\u{1F600}tail");
        assert_eq!(
            quote_input(&long),
            format!("{exact:?}… ({} bytes)", long.len())
        );
    }

    #[test]
    fn every_kind_round_trips_through_its_sample() {
        let mut names = std::collections::BTreeSet::new();
        for kind in ErrorKind::ALL {
            assert_eq!(kind.sample().kind(), kind);
            assert!(names.insert(kind.name()), "two kinds named {}", kind.name());
        }
    }
}
