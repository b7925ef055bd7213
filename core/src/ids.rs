//! Identifiers: [`WorkerId`], [`ProviderId`], [`JobId`].
//!
//! Each validates on construction: an invalid id is an [`Error::InvalidArgument`], never a
//! panic and never a silent truncation. Deserialisation validates too.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::error::{quote_input, Error, Result};

/// A worker's identity: a UUID v4 (random, or [`WorkerId::new`]'s keyed permutation of a
/// counter, which looks random). Its text form is lowercase hyphenated.
///
/// Ids are never reused, so a stale reference to a removed worker fails with `NotFound`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(Uuid);

impl WorkerId {
    /// A fresh random-looking id, never repeated within this process.
    ///
    /// A UUID v4 whose 122 random bits are a keyed pseudo-random permutation of a
    /// per-process counter (the key drawn from the system's random source once per process):
    /// a registry recognises the ids of its own process and keeps its retired ones in a
    /// bitmap by counter instead of a hash filter (see `mint.rs`). Ids from anywhere else
    /// are just as valid.
    ///
    /// Unique, not secret: the permutation is fast, not cryptographic, so a worker id must
    /// not serve as a credential (it never was one: ids travel in events, logs and metrics).
    pub fn new() -> Self {
        WorkerId(crate::mint::mint())
    }

    /// The counter this process minted the id from ([`WorkerId::new`]), if it decodes as one
    /// of its own (a deterministic function of the id; see `mint.rs`).
    #[inline]
    pub(crate) fn minted_counter(&self) -> Option<u64> {
        crate::mint::decode(&self.0)
    }

    /// The id this process mints from `counter` (below 2^61): the inverse of
    /// [`minted_counter`](Self::minted_counter).
    pub(crate) fn from_counter(counter: u64) -> WorkerId {
        WorkerId(crate::mint::encode(counter))
    }

    /// Parses the hyphenated (or simple, or braced) UUID text form.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `text` is not a UUID or is the nil UUID.
    pub fn parse(text: &str) -> Result<Self> {
        let uuid = Uuid::parse_str(text)
            .map_err(|e| Error::invalid(format!("invalid worker id {}: {e}", quote_input(text))))?;
        Self::from_uuid(uuid)
    }

    /// Wraps raw bytes (the C form).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for the nil UUID, which is never a worker.
    // `#[inline]` (with `from_uuid`): the C ABI converts every id it is passed with this,
    // from another crate. Called out of line, the id, which C passes in two registers and the
    // caller spills as two 8-byte stores, is copied with one 16-byte load that the CPU cannot
    // forward from those stores: the load waits until they retire, which is after the
    // previous call's cache misses, so a C heartbeat could not overlap the next one's misses
    // with its own (measured: +150 ns a heartbeat at 1M workers, bench/c/heartbeat.c).
    #[inline]
    pub fn from_bytes(bytes: [u8; 16]) -> Result<Self> {
        Self::from_uuid(Uuid::from_bytes(bytes))
    }

    #[inline]
    fn from_uuid(uuid: Uuid) -> Result<Self> {
        if uuid.is_nil() {
            return Err(nil_id());
        }
        Ok(WorkerId(uuid))
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The nil id, never a worker: the empty mark of the registry's id tables.
    pub(crate) const MIN: WorkerId = WorkerId(Uuid::nil());
    /// The greatest id in the order, for range bounds. Unlike [`MIN`](Self::MIN) it is a valid
    /// worker id (only nil is refused): a bound that must take every worker at a time is the
    /// nil id of the next millisecond, not this one.
    pub(crate) const MAX: WorkerId = WorkerId(Uuid::max());
}

/// The error for the nil id, out of line: [`WorkerId::from_bytes`] is inlined into every C call.
#[cold]
fn nil_id() -> Error {
    Error::invalid("invalid worker id: the nil UUID")
}

impl Default for WorkerId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerId({})", self.0.hyphenated())
    }
}

impl FromStr for WorkerId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for WorkerId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0.hyphenated())
    }
}

impl<'de> Deserialize<'de> for WorkerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        WorkerId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Maximum length of a [`ProviderId`] in bytes.
pub const MAX_PROVIDER_ID_LEN: usize = 128;
/// Maximum length of a [`JobId`] in bytes.
pub const MAX_JOB_ID_LEN: usize = 256;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $what:literal, $validate:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps `text`.
            ///
            /// # Errors
            /// [`Error::InvalidArgument`] when the text breaks the rules above.
            pub fn new(text: impl AsRef<str>) -> Result<Self> {
                let text = text.as_ref();
                $validate(text)?;
                Ok($name(Arc::from(text)))
            }

            /// The text form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), &*self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::new(&*text).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn validate_provider_id(text: &str) -> Result<()> {
    if text.is_empty() || text.len() > MAX_PROVIDER_ID_LEN {
        return Err(Error::invalid(format!(
            "provider id must be 1..={MAX_PROVIDER_ID_LEN} bytes, got {}",
            text.len()
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "provider id {text:?} contains a control character"
        )));
    }
    Ok(())
}

fn validate_job_id(text: &str) -> Result<()> {
    if text.is_empty() || text.len() > MAX_JOB_ID_LEN {
        return Err(Error::invalid(format!(
            "job id must be 1..={MAX_JOB_ID_LEN} bytes, got {}",
            text.len()
        )));
    }
    if text.contains('\0') {
        return Err(Error::invalid("job id contains a NUL byte"));
    }
    Ok(())
}

string_id!(
    /// A provider's host-chosen name, e.g. `"docker-local"`: 1..=128 bytes, no control characters.
    ///
    /// Cloning is cheap (a reference count).
    ProviderId,
    "provider id",
    validate_provider_id
);

string_id!(
    /// The host scheduler's id of a job, opaque to the library: 1..=256 bytes, no NUL.
    ///
    /// Cloning is cheap (a reference count).
    JobId,
    "job id",
    validate_job_id
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_id_text_round_trip_is_lowercase_hyphenated() {
        let id = WorkerId::new();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(WorkerId::parse(&text).unwrap(), id);
        assert_eq!(WorkerId::parse(&text.to_uppercase()).unwrap(), id);
        assert_eq!(WorkerId::from_bytes(*id.as_bytes()).unwrap(), id);
    }

    #[test]
    fn invalid_worker_ids_are_errors() {
        for bad in ["", "nope", "0000", "00000000-0000-0000-0000-000000000000"] {
            assert!(
                matches!(WorkerId::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
        assert!(WorkerId::from_bytes([0; 16]).is_err());
    }

    #[test]
    fn provider_id_rules() {
        assert!(ProviderId::new("docker-local").is_ok());
        assert!(ProviderId::new("x".repeat(128)).is_ok());
        assert!(ProviderId::new("x".repeat(129)).is_err());
        assert!(ProviderId::new("").is_err());
        assert!(ProviderId::new("a\nb").is_err());
        assert!(ProviderId::new("a\u{7f}b").is_err());
    }

    #[test]
    fn job_id_rules() {
        assert!(JobId::new("job-1").is_ok());
        assert!(JobId::new("j".repeat(256)).is_ok());
        assert!(JobId::new("j".repeat(257)).is_err());
        assert!(JobId::new("").is_err());
        assert!(JobId::new("a\0b").is_err());
        assert!(
            JobId::new("a\nb").is_ok(),
            "job ids are opaque: only NUL is refused"
        );
    }

    #[test]
    fn ids_deserialize_with_validation() {
        let ok: JobId = serde_json::from_str("\"j1\"").unwrap();
        assert_eq!(ok.as_str(), "j1");
        assert!(serde_json::from_str::<JobId>("\"\"").is_err());
        assert!(serde_json::from_str::<WorkerId>("\"zzz\"").is_err());
        let id = WorkerId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<WorkerId>(&json).unwrap(), id);
    }
}
