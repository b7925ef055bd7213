//! The serde form of the core's structs is a map of named fields, and only that.
//!
//! A derived `Deserialize` also reads a struct from a sequence of its field values in
//! declaration order (serde's positional form, meant for formats without field names), and
//! serde_json hands it one: `serde_json::from_str::<WorkerSpec>("[]")` would be the default
//! spec, `{"resources": [2.0]}` a spec asking for two cores. Nothing documents that form, no
//! writer of ours produces it, and it silently changes meaning whenever a field is added or
//! moved. So every struct of the serde schema (`WorkerSpec`, `WorkerLifecycleConfig`,
//! `Snapshot`, …) goes through [`object_form!`]: its derived code reads the fields (one source
//! for the names, defaults, `deny_unknown_fields`, `with` helpers), and its `Deserialize` asks
//! the format for a map first and refuses anything else. Rust, C and Python read through the
//! same impls, so all three refuse the positional form, at every depth.
//!
//! The derive runs with `#[serde(remote = "Self")]`, which turns the derived `serialize` and
//! `deserialize` into inherent functions of the type (serde's sanctioned way to wrap a derived
//! impl); [`object_form!`] writes the trait impls on top of them. serde makes those inherent
//! functions as public as the type, and an inherent function wins over the trait's in a path
//! call: `WorkerSpec::deserialize(d)` names the permissive derived one, while
//! `<WorkerSpec as Deserialize>::deserialize(d)` and every generic use (`serde_json::from_str`,
//! `from_value`, a field of another type) take the checked one. Nothing in the workspace calls
//! the derived one but the impls below; a stunt-double struct per type would hide it, at the
//! price of a second copy of every field list to keep in step.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};

/// A struct whose fields the derived code reads (the inherent `deserialize` of a
/// `remote = "Self"` derive).
pub(crate) trait ObjectForm<'de>: Sized {
    /// What the struct is, for messages: "a worker spec as a JSON object".
    const WHAT: &'static str;

    /// The derived reader of the fields.
    fn from_fields<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// Reads `T` from a map only. `deserialize_any` rather than `deserialize_map`, so that an
/// array is named as one in the message (serde_json's `deserialize_map` would say
/// "sequence"); every format the core's types are read from (JSON text, `serde_json::Value`)
/// describes itself.
pub(crate) fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: ObjectForm<'de>,
{
    d.deserialize_any(ObjectVisitor(PhantomData))
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: ObjectForm<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as a JSON object", T::WHAT)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_fields(MapAccessDeserializer::new(map))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(de::Error::invalid_type(Unexpected::Other("array"), &self))
    }
}

/// Serde impls for a struct derived with `#[derive(Serialize, Deserialize)]` and
/// `#[serde(remote = "Self")]`: serialising as derived, deserialising from a map only (see
/// the module notes). `$what` names the struct in messages ("a worker spec").
macro_rules! object_form {
    ($ty:ty, $what:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                <$ty>::serialize(self, serializer)
            }
        }

        impl<'de> $crate::object_form::ObjectForm<'de> for $ty {
            const WHAT: &'static str = $what;

            fn from_fields<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                <$ty>::deserialize(d)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                $crate::object_form::deserialize(d)
            }
        }
    };
}
pub(crate) use object_form;

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;

    use crate::*;

    fn refused<T: DeserializeOwned + std::fmt::Debug>(text: &str) -> String {
        let error = serde_json::from_str::<T>(text).expect_err(text).to_string();
        // The same through `serde_json::Value` (Python's LifecycleConfig reads that way).
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(
            serde_json::from_value::<T>(value).is_err(),
            "{text} as a Value"
        );
        error
    }

    #[test]
    fn the_positional_form_is_refused_at_the_top() {
        let message = refused::<WorkerSpec>("[]");
        assert!(
            message.starts_with("invalid type: array, expected a worker spec as a JSON object"),
            "{message}"
        );
        refused::<WorkerSpec>(r#"["img"]"#);
        refused::<ResourceRequirements>("[2.0, 1, 1, 0, null]");
        refused::<WorkerLifecycleConfig>("[]");
        refused::<WorkerLifecycleConfig>("[60]");
        refused::<Requirement>("[{}, [], {}, null, 1]");
        refused::<Pool>(r#"["p", "docker", {"image": "x"}]"#);
        refused::<Snapshot>(r#"["hodei-workers.snapshot/1", 0, 0, []]"#);
        refused::<WorkerHandle>("[]");
        refused::<Worker>("[]");
        refused::<StateCounts>("[0, 0, 0, 0, 0, 0, 0]");
        refused::<WorkerRegistryStats>("[0]");
        refused::<ProviderError>(r#"["failed", "x"]"#);
        refused::<EventKind>(r#"["provision_requested", "p"]"#);
        refused::<WorkerLifecycleEvent>(r#"[1, 2, {"type": "x"}]"#);
        // Not a map either: still a type error naming what was expected.
        let message = refused::<WorkerSpec>(r#""img""#);
        assert!(
            message.contains("expected a worker spec as a JSON object"),
            "{message}"
        );
        refused::<WorkerSpec>("1");
        refused::<WorkerSpec>("null");
    }

    #[test]
    fn the_positional_form_is_refused_when_nested() {
        let message = refused::<WorkerSpec>(r#"{"resources": [2.0]}"#);
        assert!(
            message.contains("invalid type: array, expected resources as a JSON object"),
            "{message}"
        );
        refused::<Requirement>(r#"{"resources": [1.0, 0, 0, 1], "count": 1}"#);
        refused::<Pool>(r#"{"name": "p", "provider_id": "d", "template": ["img"]}"#);
        refused::<Pool>(r#"{"name": "p", "provider_id": "d", "template": {"resources": []}}"#);
        refused::<Demand>(r#"[[{}, [], {}, null, 3]]"#);
        refused::<Demand>(r#"[{"count": 1}, [1]]"#);
        refused::<WorkerRegistryStats>(r#"{"total": 0, "by_state": [0, 0, 0, 0, 0, 0, 0]}"#);
        refused::<WorkerLifecycleEvent>(
            r#"{"seq": 1, "at": 2, "kind": ["provision_requested", "p"]}"#,
        );
    }

    #[test]
    fn the_object_form_reads_as_before() {
        let spec: WorkerSpec = serde_json::from_str(
            r#"{"image": "img", "resources": {"cpu_cores": 2.0, "gpu_type": "a100"},
                "labels": {"a": "b"}, "idle_timeout": 1.5, "max_jobs": 1}"#,
        )
        .unwrap();
        assert_eq!(spec.resources.cpu_cores, 2.0);
        assert_eq!(spec.idle_timeout, std::time::Duration::from_millis(1500));
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<WorkerSpec>(&json).unwrap(), spec);
        let value = serde_json::to_value(&spec).unwrap();
        assert_eq!(serde_json::from_value::<WorkerSpec>(value).unwrap(), spec);
        // Defaults, unknown fields and the `with` helpers are the derived code's, unchanged.
        assert_eq!(
            serde_json::from_str::<WorkerSpec>("{}").unwrap(),
            WorkerSpec::default()
        );
        let message = serde_json::from_str::<WorkerSpec>(r#"{"idle_timout": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(message.contains("unknown field `idle_timout`"), "{message}");
        assert!(serde_json::from_str::<WorkerSpec>(r#"{"idle_timeout": -1}"#).is_err());
        let config: WorkerLifecycleConfig = serde_json::from_str(r#"{"max_workers": 4}"#).unwrap();
        assert_eq!(config.max_workers, 4);
        let demand: Demand = serde_json::from_str(r#"[{"count": 3}]"#).unwrap();
        assert_eq!(demand, Demand::from(vec![Requirement::new(3)]));
        let event = WorkerLifecycleEvent {
            seq: 1,
            at: 2,
            kind: EventKind::ProvisionRequested {
                provider_id: ProviderId::new("p").unwrap(),
            },
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            serde_json::from_str::<WorkerLifecycleEvent>(&json).unwrap(),
            event
        );
    }
}
