//! One list per mirrored enum: the C enums (declared literally in their modules, because
//! cbindgen reads declarations and does not expand macros) are tied to the core enums they
//! mirror by [`mirror_enum!`], which generates both conversions from a single list of variant
//! names. Both generated `match`es are exhaustive, so a variant added on either side without
//! the other fails the build; the test below checks that the discriminants (the values C sees)
//! agree with the core's.

use engine::{Architecture, ErrorKind, TerminationReason, WorkerState};

use crate::boundary::hw_status;
use crate::spec::hw_architecture;
use crate::types::{hw_termination_reason, hw_worker_state};

/// `impl $c { fn from_core(..), fn to_core(..) }` over the listed variants, with `ALL_$c` (every
/// C value in declaration order) for the tests.
macro_rules! mirror_enum {
    ($(#[$meta:meta])* $c:ident <=> $core:ident { $($variant:ident),+ $(,)? }) => {
        impl $c {
            /// The C value of a core value.
            #[allow(dead_code)]
            pub(crate) fn from_core(value: $core) -> Self {
                match value {
                    $($core::$variant => $c::$variant,)+
                }
            }

            /// The core value of a C value.
            #[allow(dead_code)]
            pub(crate) fn to_core(self) -> $core {
                match self {
                    $($c::$variant => $core::$variant,)+
                }
            }

            /// Every C value, in declaration order.
            #[allow(dead_code)]
            pub(crate) fn all() -> &'static [$c] {
                &[$($c::$variant,)+]
            }
        }
    };
}

mirror_enum!(hw_worker_state <=> WorkerState {
    Creating, Connecting, Ready, Busy, Draining, Terminating, Terminated,
});

mirror_enum!(hw_termination_reason <=> TerminationReason {
    Idle, Lifetime, Drained, MaxJobs, Unhealthy, StartupTimeout, Vanished, ScaledDown, Requested,
    Interrupted,
});

mirror_enum!(hw_architecture <=> Architecture { Amd64, Arm64, Arm });

/// The statuses of the core's error kinds (`HW_OK` and `HW_ERR_PANIC` have no kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KindStatus {
    NotFound,
    AlreadyExists,
    InvalidTransition,
    NotAvailable,
    NotBusy,
    JobAlreadyAssigned,
    ProviderNotFound,
    Provider,
    CapacityExceeded,
    InvalidArgument,
    Snapshot,
    Backend,
    NotLeader,
}

mirror_enum!(KindStatus <=> ErrorKind {
    NotFound, AlreadyExists, InvalidTransition, NotAvailable, NotBusy, JobAlreadyAssigned,
    ProviderNotFound, Provider, CapacityExceeded, InvalidArgument, Snapshot, Backend, NotLeader,
});

impl KindStatus {
    /// The status C sees; one per kind (DESIGN.md §6). Exhaustive: no kind falls into another's.
    pub(crate) fn status(self) -> hw_status {
        match self {
            KindStatus::NotFound => hw_status::HwErrNotFound,
            KindStatus::AlreadyExists => hw_status::HwErrAlreadyExists,
            KindStatus::InvalidTransition => hw_status::HwErrInvalidTransition,
            KindStatus::NotAvailable => hw_status::HwErrNotAvailable,
            KindStatus::NotBusy => hw_status::HwErrNotBusy,
            KindStatus::JobAlreadyAssigned => hw_status::HwErrJobAlreadyAssigned,
            KindStatus::ProviderNotFound => hw_status::HwErrProviderNotFound,
            KindStatus::Provider => hw_status::HwErrProvider,
            KindStatus::CapacityExceeded => hw_status::HwErrCapacity,
            KindStatus::InvalidArgument => hw_status::HwErrInvalidArgument,
            KindStatus::Snapshot => hw_status::HwErrSnapshot,
            KindStatus::Backend => hw_status::HwErrBackend,
            KindStatus::NotLeader => hw_status::HwErrNotLeader,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discriminants_agree_with_the_core() {
        assert_eq!(hw_worker_state::all().len(), WorkerState::ALL.len());
        for state in WorkerState::ALL {
            let c = hw_worker_state::from_core(state);
            assert_eq!(c as u32, state as u32, "{state:?}");
            assert_eq!(c.to_core(), state);
        }
        assert_eq!(
            hw_termination_reason::all().len(),
            TerminationReason::ALL.len()
        );
        for reason in TerminationReason::ALL {
            let c = hw_termination_reason::from_core(reason);
            assert_eq!(c as u32, reason as u32, "{reason:?}");
            assert_eq!(c.to_core(), reason);
        }
        for (i, arch) in hw_architecture::all().iter().enumerate() {
            assert_eq!(*arch as usize, i);
            assert_eq!(hw_architecture::from_core(arch.to_core()), *arch);
        }
        assert_eq!(
            hw_architecture::Amd64.to_core(),
            Architecture::default(),
            "the C default (0) is the core default"
        );
    }

    #[test]
    fn every_error_kind_has_its_own_status() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in ErrorKind::ALL {
            let status = KindStatus::from_core(kind).status();
            assert!(seen.insert(status as u32), "{kind:?} shares {status:?}");
            assert!(!matches!(status, hw_status::HwOk | hw_status::HwErrPanic));
            assert_eq!(hw_status::of(&kind.sample()), status);
        }
        assert_eq!(seen.len(), ErrorKind::ALL.len());
    }
}
