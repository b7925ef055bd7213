//! [`WorkerProvider`]: where workers come from, and [`ProviderError`].

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::{Deserialize, Serialize};

use super::lease::Term;
use crate::ids::{ProviderId, WorkerId};
use crate::worker::{ProviderType, WorkerHandle, WorkerSpec};

/// `Result` of a provider call (spelled out so that `use hodei_workers::*`, which brings the
/// crate's own `Result`, does not get in the way).
pub type ProviderResult<T> = Result<T, ProviderError>;

/// A source of workers: Docker, Kubernetes, a cloud API, local processes…
///
/// The manager calls a provider only from the thread that called it (`tick`,
/// `provision_worker`, `terminate_worker`, `reconcile`, …), never while it holds a registry
/// lock or one of its own locks. A panic in any method is caught and becomes a
/// [`ProviderError`] of kind [`ProviderErrorKind::Panicked`].
///
/// # Examples
/// ```
/// use hodei_workers::*;
///
/// #[derive(Debug)]
/// struct Echo;
///
/// impl WorkerProvider for Echo {
///     fn provider_id(&self) -> ProviderId { ProviderId::new("echo").unwrap() }
///     fn provider_type(&self) -> ProviderType { ProviderType::BareMetal }
///     fn create_worker(&self, id: WorkerId, _spec: &WorkerSpec) -> ProviderResult<WorkerHandle> {
///         // Start the instance with `id` (its agent reports in and heartbeats with it)...
///         let handle = WorkerHandle::new(self.provider_id(), self.provider_type(), "instance-1");
///         // ...and return its handle under that id.
///         Ok(WorkerHandle { worker_id: id, ..handle })
///     }
///     fn destroy_worker(&self, _handle: &WorkerHandle) -> ProviderResult<()> {
///         Ok(())
///     }
/// }
/// assert!(Echo.list_workers().unwrap_err().is_unsupported());
/// ```
pub trait WorkerProvider: Send + Sync {
    /// The provider's id (asked once, at `register_provider`).
    fn provider_id(&self) -> ProviderId;

    /// The kind of infrastructure (asked once, at `register_provider`).
    fn provider_type(&self) -> ProviderType;

    /// Asks for a new worker `id` and returns quickly: the worker reports in later (the host
    /// moves it to `Connecting`/`Ready` when its agent calls in). The manager makes the id
    /// before the call, so the instance can be started knowing it (an environment variable, an
    /// argument): its agent reports in and heartbeats with it.
    ///
    /// The returned handle carries `id` as its `worker_id` and the provider's instance id; the
    /// manager registers it in `Creating`. A handle with another `worker_id` is refused as a
    /// provider error (counted as a failed create), and its instance is destroyed — under
    /// `id` — rather than leaked.
    ///
    /// # Errors
    /// Whatever went wrong; consecutive failures back the provider off.
    fn create_worker(&self, id: WorkerId, spec: &WorkerSpec) -> ProviderResult<WorkerHandle>;

    /// Destroys the instance. `Ok` (or an error of kind [`ProviderErrorKind::NotFound`]: it is
    /// already gone) confirms destruction and lets the record leave the registry; any other
    /// error keeps the worker `Terminating` and the destroy is retried with back-off.
    ///
    /// # Errors
    /// Whatever went wrong.
    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()>;

    /// The instances the provider really has, for `reconcile`. The default answers
    /// [`ProviderError::unsupported`]: reconcile then skips this provider.
    ///
    /// List only the instances this provider made for this registry (filter by a tag or a
    /// name prefix of your own): every instance listed that no record knows is destroyed as an
    /// orphan, and the leader's ticks reconcile by themselves every `reconcile_interval`. A
    /// provider listing a whole account or host that other systems share would have their
    /// instances destroyed: by the ticks only while they are few against this provider's
    /// records (more are held by the brake, see
    /// [`max_unhealthy_fraction`](crate::WorkerLifecycleConfig::max_unhealthy_fraction)), by
    /// the host's `reconcile()` however many.
    ///
    /// # Errors
    /// Whatever went wrong, or unsupported.
    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        Err(ProviderError::unsupported("list_workers"))
    }

    /// [`create_worker`](Self::create_worker), told the call's *fencing token*: the term of
    /// the leadership the manager calls under ([`LeaderInfo::term`](crate::LeaderInfo)). The
    /// manager always calls this method; the default ignores the token and calls
    /// `create_worker`.
    ///
    /// Terms only grow: a replica that takes over calls with a larger token than every call of
    /// the leader it replaced (a manager that is the only one calls with 1). The manager asks
    /// the store for its lease right before each provider call, but a replica paused between
    /// that answer and the call (a VM frozen by its hypervisor) reaches the provider after
    /// another replica took over. A provider whose infrastructure can compare tokens (it keeps
    /// the largest token it has served, or sends it with a conditional request) refuses a
    /// token below the largest seen with an error, and so refuses that deposed leader: the one
    /// gap the manager cannot close by itself. See DESIGN.md, "Fencing tokens for providers".
    /// A provider that wraps another (retries, metrics) should forward this method, not only
    /// `create_worker`, or the token stops at the wrapper.
    ///
    /// # Errors
    /// As `create_worker`; a refused token is best answered with
    /// [`ProviderError::fenced`]: the manager then knows at once that another replica leads
    /// (it stops acting as the leader until a renewal says otherwise) and does not count the
    /// refusal as a failure of the provider (no back-off). An error of another kind works too;
    /// the deposed replica then finds its lease lost at its next check.
    fn create_worker_fenced(
        &self,
        token: Term,
        id: WorkerId,
        spec: &WorkerSpec,
    ) -> ProviderResult<WorkerHandle> {
        let _ = token;
        self.create_worker(id, spec)
    }

    /// [`destroy_worker`](Self::destroy_worker), told the call's fencing token (see
    /// [`create_worker_fenced`](Self::create_worker_fenced)). The manager always calls this
    /// method; the default ignores the token and calls `destroy_worker`.
    ///
    /// # Errors
    /// As `destroy_worker`; a refused token is best answered with [`ProviderError::fenced`]
    /// (as for a create; the worker stays `Terminating`, for the replica that leads now to
    /// destroy, and the refusal is not counted as a failed attempt). Any kind other than
    /// `NotFound` keeps the worker `Terminating` too.
    fn destroy_worker_fenced(&self, token: Term, handle: &WorkerHandle) -> ProviderResult<()> {
        let _ = token;
        self.destroy_worker(handle)
    }
}

/// What kind of failure a [`ProviderError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ProviderErrorKind {
    /// The call failed.
    Failed = 0,
    /// The instance does not exist (for `destroy_worker`: it is already gone, which counts as
    /// destroyed).
    NotFound = 1,
    /// The provider does not support the operation (e.g. `list_workers`).
    Unsupported = 2,
    /// The provider panicked (or, in a binding, raised); caught by the manager.
    Panicked = 3,
    /// The provider has no capacity for this spec right now (a spot market without
    /// instances, a quota reached, a full cluster). A pool whose create fails this way
    /// spills its demand to the next pool that satisfies it until the back-off ends.
    NoCapacity = 4,
    /// The provider refused the call's fencing token: it has served a larger one, so another
    /// replica leads now (see [`WorkerProvider::create_worker_fenced`]). The manager stops
    /// acting as the leader at once and does not back the provider off.
    Fenced = 5,
    /// The call was cut short by the host, not failed by the provider: a binding's
    /// `KeyboardInterrupt` (Ctrl-C), `SystemExit` or cancellation landing in the provider's
    /// code. Reported like a failure (a create's `ProvisionFailed` and the tick's
    /// `provision_failures`; a destroy's `DestroyFailed` and the report's `failed`), but it
    /// counts toward no back-off: a create so ended neither starts nor lengthens the
    /// provider's, and a destroy (of a worker or an orphan instance) counts no attempt and is
    /// due again at once.
    Interrupted = 6,
}

impl ProviderErrorKind {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderErrorKind::Failed => "failed",
            ProviderErrorKind::NotFound => "not_found",
            ProviderErrorKind::Unsupported => "unsupported",
            ProviderErrorKind::Panicked => "panicked",
            ProviderErrorKind::NoCapacity => "no_capacity",
            ProviderErrorKind::Fenced => "fenced",
            ProviderErrorKind::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for ProviderErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest [`ProviderError::message`], in bytes. A longer message is cut by
/// [`cut_provider_message`]: the message is copied into the failure, the event every subscriber
/// gets (`ProvisionFailed`, `DestroyFailed`), the tick's report, logs and metrics, and a
/// provider that puts a whole HTTP response body (or a megabyte-long exception text) in it
/// would have all of those copied. `HW_MAX_PROVIDER_MESSAGE_LEN` in C.
pub const MAX_PROVIDER_MESSAGE_LEN: usize = 4096;

/// What ends a message cut by [`cut_provider_message`].
const TRUNCATED_MARK: &str = "… (truncated)";

/// `text` itself when it is at most [`MAX_PROVIDER_MESSAGE_LEN`] bytes; otherwise its head,
/// cut at a character boundary, followed by `"… (truncated)"`, the whole within
/// [`MAX_PROVIDER_MESSAGE_LEN`] bytes (only the head is copied: a `&str` of a megabyte costs
/// 4 KB). Every constructor of [`ProviderError`] applies it, and the manager applies it to
/// every error a provider returns (one built as a struct literal too).
///
/// # Examples
/// ```
/// use hodei_workers::{cut_provider_message, MAX_PROVIDER_MESSAGE_LEN};
///
/// assert_eq!(cut_provider_message("short"), "short");
/// let cut = cut_provider_message("é".repeat(MAX_PROVIDER_MESSAGE_LEN));
/// assert!(cut.len() <= MAX_PROVIDER_MESSAGE_LEN && cut.ends_with("… (truncated)"));
/// ```
pub fn cut_provider_message<S: AsRef<str> + Into<String>>(text: S) -> String {
    let whole = text.as_ref();
    if whole.len() <= MAX_PROVIDER_MESSAGE_LEN {
        return text.into();
    }
    let mut end = MAX_PROVIDER_MESSAGE_LEN - TRUNCATED_MARK.len();
    while !whole.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED_MARK}", &whole[..end])
}

/// A provider's failure: its kind and what it said.
///
/// The message is at most [`MAX_PROVIDER_MESSAGE_LEN`] bytes: every constructor cuts a longer
/// one (see [`cut_provider_message`]), and the manager cuts the message of every error a
/// provider returns, so one written as a struct literal is cut too before it reaches a report
/// or an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(remote = "Self")]
#[error("{message} ({kind})")]
pub struct ProviderError {
    /// The kind of failure.
    pub kind: ProviderErrorKind,
    /// What the provider said (at most [`MAX_PROVIDER_MESSAGE_LEN`] bytes once it leaves the
    /// provider: see [`cut_provider_message`]).
    pub message: String,
}
crate::object_form::object_form!(ProviderError, "a provider error");

impl ProviderError {
    /// A failure ([`ProviderErrorKind::Failed`]).
    pub fn new(message: impl Into<String>) -> Self {
        ProviderError {
            kind: ProviderErrorKind::Failed,
            message: cut_provider_message(message.into()),
        }
    }

    /// The instance does not exist ([`ProviderErrorKind::NotFound`]).
    pub fn not_found(message: impl Into<String>) -> Self {
        ProviderError {
            kind: ProviderErrorKind::NotFound,
            message: cut_provider_message(message.into()),
        }
    }

    /// The operation is not supported ([`ProviderErrorKind::Unsupported`]).
    pub fn unsupported(operation: impl Into<String>) -> Self {
        ProviderError {
            kind: ProviderErrorKind::Unsupported,
            message: cut_provider_message(format!("{} is not supported", operation.into())),
        }
    }

    /// A caught panic ([`ProviderErrorKind::Panicked`]).
    pub fn panicked(message: impl Into<String>) -> Self {
        ProviderError {
            kind: ProviderErrorKind::Panicked,
            message: cut_provider_message(message.into()),
        }
    }

    /// No capacity for the spec right now ([`ProviderErrorKind::NoCapacity`]).
    pub fn no_capacity(message: impl Into<String>) -> Self {
        ProviderError {
            kind: ProviderErrorKind::NoCapacity,
            message: cut_provider_message(message.into()),
        }
    }

    /// The call's fencing token was refused: a larger one was served
    /// ([`ProviderErrorKind::Fenced`]).
    pub fn fenced(message: impl Into<String>) -> Self {
        ProviderError {
            kind: ProviderErrorKind::Fenced,
            message: cut_provider_message(message.into()),
        }
    }

    /// The call was cut short by the host, not failed by the provider
    /// ([`ProviderErrorKind::Interrupted`]).
    pub fn interrupted(message: impl Into<String>) -> Self {
        ProviderError {
            kind: ProviderErrorKind::Interrupted,
            message: cut_provider_message(message.into()),
        }
    }

    /// Whether the provider had no capacity.
    pub fn is_no_capacity(&self) -> bool {
        self.kind == ProviderErrorKind::NoCapacity
    }

    /// Whether the operation is unsupported.
    pub fn is_unsupported(&self) -> bool {
        self.kind == ProviderErrorKind::Unsupported
    }

    /// Whether the instance does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == ProviderErrorKind::NotFound
    }

    /// Whether the call's fencing token was refused.
    pub fn is_fenced(&self) -> bool {
        self.kind == ProviderErrorKind::Fenced
    }

    /// Whether the host cut the call short.
    pub fn is_interrupted(&self) -> bool {
        self.kind == ProviderErrorKind::Interrupted
    }
}

/// Runs a provider call, turning a panic into a [`ProviderError`] and cutting the message of
/// an error to [`MAX_PROVIDER_MESSAGE_LEN`] bytes.
///
/// `AssertUnwindSafe`: the provider's own state may be left inconsistent by its panic, but the
/// manager's is not (no manager or registry lock is held across the call), and the provider is
/// told of the failure only through the error it gets back.
pub(crate) fn guarded<T>(
    what: &str,
    call: impl FnOnce() -> Result<T, ProviderError>,
) -> Result<T, ProviderError> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        // A message the provider wrote into the public field, past the constructors.
        Ok(Err(ProviderError { kind, message })) => Err(ProviderError {
            kind,
            message: cut_provider_message(message),
        }),
        Err(payload) => Err(ProviderError::panicked(format!(
            "{what} panicked: {}",
            super::panic_message(payload.as_ref())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors() {
        let err = guarded::<()>("create_worker", || panic!("boom {}", 7)).unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Panicked);
        assert_eq!(err.message, "create_worker panicked: boom 7");
        let err = guarded::<()>("destroy_worker", || std::panic::panic_any(42u8)).unwrap_err();
        assert!(err.message.contains("non-text"), "{}", err.message);
        assert_eq!(guarded("x", || Ok(5)).unwrap(), 5);
    }

    #[test]
    fn cut_keeps_short_text_and_cuts_long_text_on_a_character_boundary() {
        let at_limit = "m".repeat(MAX_PROVIDER_MESSAGE_LEN);
        assert_eq!(cut_provider_message(at_limit.as_str()), at_limit);
        // One-, two-, three- and four-byte characters, each shifted so that the cut point
        // falls inside one of them.
        for unit in ["m", "é", "€", "𝄞"] {
            for lead in 0..4 {
                let text = format!(
                    "{}{}",
                    "x".repeat(lead),
                    unit.repeat(MAX_PROVIDER_MESSAGE_LEN + 1)
                );
                let cut = cut_provider_message(text.as_str());
                assert!(
                    cut.len() <= MAX_PROVIDER_MESSAGE_LEN,
                    "{unit} {lead}: {}",
                    cut.len()
                );
                assert!(cut.len() > MAX_PROVIDER_MESSAGE_LEN - 32);
                assert!(cut.ends_with(TRUNCATED_MARK));
                assert!(text.starts_with(cut.trim_end_matches(TRUNCATED_MARK)));
            }
        }
    }

    #[test]
    fn every_constructor_and_every_guarded_call_cuts_a_long_message() {
        let long = "y".repeat(4 * MAX_PROVIDER_MESSAGE_LEN);
        let literal = ProviderError {
            kind: ProviderErrorKind::NoCapacity,
            message: long.clone(),
        };
        for e in [
            ProviderError::new(long.clone()),
            ProviderError::not_found(long.clone()),
            ProviderError::unsupported(long.clone()),
            ProviderError::panicked(long.clone()),
            ProviderError::no_capacity(long.clone()),
            ProviderError::fenced(long.clone()),
            ProviderError::interrupted(long.clone()),
            guarded::<()>("create_worker", || Err(literal.clone())).unwrap_err(),
            guarded::<()>("create_worker", || panic!("{long}")).unwrap_err(),
        ] {
            assert!(
                e.message.len() <= MAX_PROVIDER_MESSAGE_LEN && e.message.ends_with(TRUNCATED_MARK),
                "{}: {} bytes",
                e.kind,
                e.message.len()
            );
        }
        let kept = guarded::<()>("create_worker", || Err(literal)).unwrap_err();
        assert_eq!(kept.kind, ProviderErrorKind::NoCapacity);
    }

    #[test]
    fn error_display_names_kind() {
        assert_eq!(
            ProviderError::not_found("no container c-1").to_string(),
            "no container c-1 (not_found)"
        );
        assert!(ProviderError::unsupported("list_workers").is_unsupported());
        let full = ProviderError::no_capacity("no spot g5.xlarge in eu-west-1a");
        assert!(full.is_no_capacity());
        assert_eq!(
            full.to_string(),
            "no spot g5.xlarge in eu-west-1a (no_capacity)"
        );
        let refused = ProviderError::fenced("token 1 is below 2");
        assert!(refused.is_fenced() && !refused.is_not_found());
        assert_eq!(refused.to_string(), "token 1 is below 2 (fenced)");
        let cut = ProviderError::interrupted("create_worker raised KeyboardInterrupt");
        assert!(cut.is_interrupted() && !cut.is_fenced());
        assert_eq!(
            cut.to_string(),
            "create_worker raised KeyboardInterrupt (interrupted)"
        );
    }
}
