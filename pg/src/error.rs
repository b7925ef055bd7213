//! SQL errors to the core's kinds, and the guard that keeps the `postgres` crate's panics (it
//! panics when called inside an async runtime) from crossing into the host.

use std::panic::{catch_unwind, AssertUnwindSafe};

use hodei_workers::Error;
use postgres::error::{Severity, SqlState};

/// What a failed database call was, as far as the registry cares.
#[derive(Debug)]
pub(crate) enum DbError {
    /// A unique index refused a row: which constraint.
    Unique(String),
    /// The database cannot take a string of the call: its encoding lacks a character (a
    /// `LATIN1` database given `"☃"`), or the string holds a NUL (stored strings and filters
    /// are checked before they are sent: a guard). The caller's value, not the server, is the
    /// problem, and nothing was applied.
    Encoding(String),
    /// Anything else: the connection, the server, a bug in our SQL.
    Other(String),
}

impl DbError {
    /// The cause alone, as [`backend`](Self::backend) words it after what we were doing.
    pub(crate) fn text(self) -> String {
        match self {
            DbError::Unique(constraint) => format!("unexpected unique violation on {constraint}"),
            DbError::Encoding(cause) | DbError::Other(cause) => cause,
        }
    }

    /// The core error for a failure that the operation did not expect: `Backend`, with the
    /// cause and what we were doing; `InvalidArgument` for text the database cannot store.
    pub(crate) fn backend(self, doing: &str) -> Error {
        match self {
            DbError::Unique(constraint) => Error::Backend(format!(
                "{doing}: unexpected unique violation on {constraint}"
            )),
            DbError::Encoding(cause) => Error::InvalidArgument(format!(
                "{doing}: {cause}: the database cannot take that text (a NUL character, or a \
                 character its encoding lacks: a registry needs a UTF8 database to hold any \
                 string)"
            )),
            DbError::Other(cause) => Error::Backend(format!("{doing}: {cause}")),
        }
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            if db.code() == &SqlState::UNIQUE_VIOLATION {
                return DbError::Unique(db.constraint().unwrap_or("?").to_owned());
            }
            if db.code() == &SqlState::UNTRANSLATABLE_CHARACTER
                || db.code() == &SqlState::CHARACTER_NOT_IN_REPERTOIRE
            {
                return DbError::Encoding(format!(
                    "{} (SQLSTATE {})",
                    db.message(),
                    db.code().code()
                ));
            }
            return DbError::Other(format!(
                "{} (SQLSTATE {}){}",
                db.message(),
                db.code().code(),
                db.detail().map(|d| format!(": {d}")).unwrap_or_default()
            ));
        }
        DbError::Other(describe(&e))
    }
}

/// The error and its causes on one line (a `postgres::Error` says only "error connecting to
/// server" or "connection closed" at the top; the reason is in its source).
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Whether `e` ended its connection's session: the connection is closed, or the server sent an
/// error of severity `FATAL` or `PANIC` (it closes the connection after sending one, and the
/// client may not have read the close yet: `Client::is_closed` can still say no).
pub(crate) fn ends_session(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_some_and(|db| {
            matches!(
                db.parsed_severity(),
                Some(Severity::Fatal | Severity::Panic)
            )
        })
}

/// Whether a failed statement may be retried as a whole: the server rolled the transaction
/// back because of a deadlock or a serialization failure (nothing was applied).
pub(crate) fn is_retryable(e: &postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::T_R_DEADLOCK_DETECTED
            || db.code() == &SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// The message for a call made where the `postgres` crate cannot block.
pub(crate) const ASYNC_CONTEXT: &str = "the PostgreSQL registry was called from inside an async \
     runtime (the synchronous `postgres` client cannot block there): call it from a blocking \
     thread, e.g. tokio::task::spawn_blocking";

/// Whether the `postgres` client's blocking calls can run on this thread: not on one that
/// drives an async runtime, where they panic (a thread of `spawn_blocking` can). Outside any
/// runtime's context, at once; inside one, by blocking as the client does, on an idle runtime
/// of its own (a panic caught here, in place of the client's).
pub(crate) fn may_block() -> bool {
    static PROBE: std::sync::LazyLock<Option<tokio::runtime::Runtime>> =
        std::sync::LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().ok());
    if tokio::runtime::Handle::try_current().is_err() {
        return true;
    }
    match &*PROBE {
        Some(runtime) => catch_unwind(AssertUnwindSafe(|| runtime.block_on(async {}))).is_ok(),
        None => true,
    }
}

/// Runs `f`, turning a panic of the client into `Error::Backend`. The `postgres` crate panics
/// when its blocking calls run on a thread that drives an async runtime (tokio's "cannot start
/// a runtime from within a runtime"); it does so before touching the connection, which stays
/// usable.
pub(crate) fn guard<T>(f: impl FnOnce() -> hodei_workers::Result<T>) -> hodei_workers::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if what.contains("runtime") {
                Err(Error::Backend(format!("{ASYNC_CONTEXT} ({what})")))
            } else {
                Err(Error::Backend(format!(
                    "the PostgreSQL client panicked: {what}"
                )))
            }
        }
    }
}
