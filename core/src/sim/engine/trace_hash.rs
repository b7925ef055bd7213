//! The run's trace hash.

use crate::ids::WorkerId;
use crate::lifecycle::TickReport;

/// A running hash of the run's trace: 64-bit words folded through SplitMix64 (cheap even in a
/// debug build, no dependency, the same value on every platform).
#[derive(Debug, Clone, Copy)]
pub(super) struct TraceHash(pub(super) u64);

impl TraceHash {
    pub(super) fn new() -> Self {
        TraceHash(0x243F_6A88_85A3_08D3)
    }

    pub(super) fn word(&mut self, x: u64) {
        let mut s = self.0 ^ x;
        self.0 = crate::sim::rng::splitmix64(&mut s);
    }

    pub(super) fn id(&mut self, id: &WorkerId) {
        let b = id.as_bytes();
        let (lo, hi) = b.split_at(8);
        self.word(u64::from_le_bytes(lo.try_into().unwrap_or([0; 8])));
        self.word(u64::from_le_bytes(hi.try_into().unwrap_or([0; 8])));
    }

    /// Folds in what a tick decided: times, counts, and the ids it touched, in report order.
    pub(super) fn tick(&mut self, r: &TickReport) {
        for x in [
            r.at,
            r.pending_jobs as u64,
            r.stall_grace.unwrap_or(u64::MAX),
            u64::from(r.health_checked),
            r.actions as u64,
            u64::from(r.capped),
            u64::from(r.skipped),
            r.decisions.len() as u64,
        ] {
            self.word(x);
        }
        for u in &r.unhealthy {
            self.id(&u.worker_id);
            self.word(u.reason as u64);
        }
        for l in &r.lost_jobs {
            self.id(&l.worker_id);
        }
        for t in &r.terminated {
            self.id(&t.worker_id);
            self.word(t.reason as u64);
        }
        for f in &r.failed {
            self.id(&f.worker_id);
            self.word(u64::from(f.attempts));
            self.word(f.next_retry_at);
        }
        for d in &r.drained {
            self.id(d);
        }
        for p in &r.provisioned {
            self.id(&p.worker_id);
        }
        for f in &r.provision_failures {
            self.word(u64::from(f.consecutive_failures));
            self.word(f.backoff_until);
        }
        if let Some(h) = &r.mass_expiry_held {
            self.word(h.would_expire as u64);
            self.word(h.live as u64);
        }
        if let Some(p) = &r.scaling {
            for x in [
                p.ready,
                p.busy,
                p.starting,
                p.in_flight,
                p.total,
                p.wanted,
                p.provision,
            ] {
                self.word(x as u64);
            }
            for id in &p.scale_down {
                self.id(id);
            }
        }
    }
}
