//! The sizes the library accepts, for C readers (issue 10 item 23). The core's `validate()`
//! enforces them (`HW_ERR_INVALID_ARGUMENT`, naming the field and the limit) for every binding
//! and backend; they are repeated here as literals because cbindgen reads this crate only, and
//! the test below keeps them equal to the core's.

/// Longest worker spec image, in bytes (without the NUL).
pub const HW_MAX_IMAGE_LEN: usize = 4096;
/// Longest resource id (the provider's instance id), in bytes.
pub const HW_MAX_RESOURCE_ID_LEN: usize = 2048;
/// Longest key of a label, environment variable or metadata entry, and longest capability or
/// GPU type, in bytes.
pub const HW_MAX_KEY_LEN: usize = 256;
/// Longest value of a label, environment variable or metadata entry, in bytes.
pub const HW_MAX_VALUE_LEN: usize = 16384;
/// Most entries in one of a spec's or worker's maps or sets (labels, environment,
/// capabilities, metadata).
pub const HW_MAX_ENTRIES: usize = 1024;
/// Longest provider id, in bytes.
pub const HW_MAX_PROVIDER_ID_LEN: usize = 128;
/// Longest job id, in bytes.
pub const HW_MAX_JOB_ID_LEN: usize = 256;
/// Longest error message a provider callback sets with `hw_provider_call_set_error`, in bytes.
/// A longer one is cut (at a character boundary) and ends with `"… (truncated)"`: the message
/// is copied into the failure, its event for every subscriber and the tick's report, and a
/// callback could not act on a refusal. The core's limit, the same for every provider (Rust,
/// Python, C).
pub const HW_MAX_PROVIDER_MESSAGE_LEN: usize = 4096;
/// Longest duration a spec (idle timeout, maximum lifetime) or the manager's configuration may
/// hold, in milliseconds: 100 years of 365 days. Longer ones could not be written to JSON (a
/// snapshot, a config) and read back exactly, so they are refused.
pub const HW_MAX_DURATION_MS: u64 = 3_153_600_000_000;
/// How many unregistered ids a registry remembers unless `hw_registry_set_retired_id_limit`
/// says otherwise: 2^20 (the same on every backend).
pub const HW_DEFAULT_RETIRED_ID_LIMIT: u64 = 1_048_576;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_are_the_cores() {
        assert_eq!(HW_MAX_IMAGE_LEN, engine::MAX_IMAGE_LEN);
        assert_eq!(HW_MAX_RESOURCE_ID_LEN, engine::MAX_RESOURCE_ID_LEN);
        assert_eq!(HW_MAX_KEY_LEN, engine::MAX_KEY_LEN);
        assert_eq!(HW_MAX_VALUE_LEN, engine::MAX_VALUE_LEN);
        assert_eq!(HW_MAX_ENTRIES, engine::MAX_ENTRIES);
        assert_eq!(HW_MAX_PROVIDER_ID_LEN, engine::MAX_PROVIDER_ID_LEN);
        assert_eq!(HW_MAX_JOB_ID_LEN, engine::MAX_JOB_ID_LEN);
        assert_eq!(
            HW_DEFAULT_RETIRED_ID_LIMIT as usize,
            engine::InMemoryWorkerRegistry::DEFAULT_RETIRED_ID_LIMIT
        );
        assert_eq!(
            HW_DEFAULT_RETIRED_ID_LIMIT as usize,
            hodei_workers_postgres::DEFAULT_RETIRED_ID_LIMIT
        );
        let max_ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap();
        assert_eq!(HW_MAX_DURATION_MS, max_ms(engine::MAX_SPEC_DURATION));
        assert_eq!(HW_MAX_DURATION_MS, max_ms(engine::MAX_CONFIG_DURATION));
    }
}
