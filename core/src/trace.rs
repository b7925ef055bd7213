//! The crate's instrumentation, behind the `tracing` cargo feature.
//!
//! [`span!`] enters a span for the rest of the enclosing block, [`event!`] emits an event;
//! both take `tracing`'s own syntax (`span!("destroy", worker_id = %id)`). Without the
//! feature they expand to nothing: no argument is evaluated, no dependency is linked, and the
//! hot paths (heartbeat, claim) carry no instrumentation at all either way.

/// Enters an `INFO` span named `$name` (with `tracing` fields) until the end of the enclosing
/// block.
#[cfg(feature = "tracing")]
macro_rules! span {
    ($name:literal $(, $($field:tt)+)?) => {
        let _span = ::tracing::info_span!($name $(, $($field)+)?).entered();
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! span {
    ($($ignored:tt)*) => {};
}

/// Emits an `INFO` event (`tracing::info!` syntax).
#[cfg(feature = "tracing")]
macro_rules! event {
    ($($arg:tt)+) => {
        ::tracing::info!($($arg)+)
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! event {
    ($($ignored:tt)*) => {};
}

/// Enters the `destroy` span of the destroy of an orphan instance (`handle`: a
/// `WorkerHandle`), until the end of the enclosing block.
macro_rules! orphan_destroy_span {
    ($handle:expr) => {
        $crate::trace::span!(
            "destroy",
            worker_id = %$handle.worker_id,
            provider_id = %$handle.provider_id,
            resource_id = %$handle.resource_id,
            orphan = true
        )
    };
}

pub(crate) use {event, orphan_destroy_span, span};

/// Events for what a tick did and why, inside its span: one per decision line of the report,
/// and one per worker it touched (with the worker and provider ids).
#[cfg(feature = "tracing")]
pub(crate) fn tick_report(report: &crate::TickReport) {
    for line in &report.decisions {
        event!(decision = %line, "tick decision");
    }
    for u in &report.unhealthy {
        event!(worker_id = %u.worker_id, provider_id = %u.provider_id, reason = %u.reason,
            state = %u.state, "unhealthy");
    }
    for l in &report.lost_jobs {
        event!(worker_id = %l.worker_id, job_id = %l.job_id, "job lost");
    }
    for p in &report.provisioned {
        event!(worker_id = %p.worker_id, provider_id = %p.provider_id,
            resource_id = %p.resource_id, "provisioned");
    }
    for f in &report.provision_failures {
        event!(provider_id = %f.provider_id, error = %f.error,
            consecutive_failures = f.consecutive_failures, "provision failed");
    }
    for t in &report.terminated {
        event!(worker_id = %t.worker_id, provider_id = %t.provider_id, reason = %t.reason,
            "terminated");
    }
    for f in &report.failed {
        event!(worker_id = %f.worker_id, provider_id = %f.provider_id, error = %f.error,
            attempts = f.attempts, "destroy failed");
    }
    for d in &report.drained {
        event!(worker_id = %d, "draining");
    }
    if let Some(message) = &report.panicked {
        event!(message = %message, "tick panicked");
    }
}

/// Without the feature: nothing (inlined away).
#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn tick_report(_report: &crate::TickReport) {}
