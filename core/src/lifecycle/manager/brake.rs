//! The mass-expiry brake as pure decisions, testable without a registry: [`assess`] (is the
//! fleet over the limit?) and [`Brake::judge`] (what to do about it, given what the brake did
//! at the previous checks). The health check gathers the counts and acts on the verdict.

use std::time::Duration;

use crate::clock::{millis, Timestamp};

use super::super::config::WorkerLifecycleConfig;
use super::super::report::MassExpiryHold;

/// The mass-expiry brake's memory between health checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Brake {
    /// The first check of the current hold, while the brake holds (it held at the last check).
    held_since: Option<Timestamp>,
    /// The brake gave up on the current episode (held longer than `max_mass_expiry_hold`): no
    /// new hold starts until a check finds the fleet back under the limit, or the survivors of
    /// a real mass death would be held again right after the dead were expired.
    spent: bool,
    /// A check released the brake and is granting the grace period now. Until it is granted
    /// (see [`Brake::released`]), other checks running at the same moment declare nobody
    /// unhealthy for a heartbeat: their view predates the grace period, and the stragglers it
    /// protects would be expired in one batch, as if the brake had never held.
    releasing: bool,
}

/// What the brake does in one health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BrakeVerdict {
    /// Hold back the heartbeat expiries.
    Hold,
    /// Held for longer than `max_mass_expiry_hold` (ms): expire them after all.
    GiveUp(u64),
    /// It held at the last check and the fleet is back under the limit: grace for everyone.
    Release,
    /// Nothing to do with the brake: expire normally.
    Normal,
    /// Another check is releasing the brake (its grace period is being granted): hold back the
    /// heartbeat expiries of this check, without counting a hold.
    Releasing,
}

/// Whether the fleet is over the brake's limit: `silent` workers past their heartbeat deadline,
/// `suspect` silent for more than half of it (counted as at least `silent`), among `watched`
/// under heartbeat watch. Over the limit when the suspects exceed `max(unhealthy_floor,
/// floor(max_unhealthy_fraction × watched))`; `None` when nobody is past the deadline.
///
/// All three counts are of the workers whose heartbeat expiry the brake decides: none of them
/// includes a worker past its startup deadline, which the check expires whatever the brake
/// says (the health check takes those out of the registry's counts: `mass_expiry_hold` in
/// `health.rs`). So `silent` is at most `suspect` but for heartbeats between the reads.
pub(super) fn assess(
    config: &WorkerLifecycleConfig,
    silent: usize,
    suspect: usize,
    watched: usize,
) -> Option<MassExpiryHold> {
    if silent == 0 {
        return None;
    }
    let suspect = suspect.max(silent);
    let allowed = config
        .unhealthy_floor
        .max((config.max_unhealthy_fraction * watched as f64).floor() as usize);
    (suspect > allowed).then_some(MassExpiryHold {
        would_expire: silent,
        suspect,
        live: watched,
        allowed,
    })
}

impl Brake {
    /// The verdict of the check at `now`, `over_limit` or not, and the memory it leaves for the
    /// next check. A hold lasts while the fleet stays over the limit, at most `max_hold` from
    /// the first check that held; then the brake gives up and holds no more until a check finds
    /// the fleet back under the limit. The first check under the limit after a hold releases.
    pub(super) fn judge(
        &mut self,
        over_limit: bool,
        now: Timestamp,
        max_hold: Duration,
    ) -> BrakeVerdict {
        if self.releasing {
            return BrakeVerdict::Releasing;
        }
        match (over_limit, self.held_since) {
            // Gave up on this episode: the silent ones are dead, expire them.
            (true, _) if self.spent => BrakeVerdict::Normal,
            (true, None) => {
                self.held_since = Some(now);
                BrakeVerdict::Hold
            }
            (true, Some(since)) if now.saturating_sub(since) > millis(max_hold) => {
                self.held_since = None;
                self.spent = true;
                BrakeVerdict::GiveUp(now.saturating_sub(since))
            }
            (true, Some(_)) => BrakeVerdict::Hold,
            (false, held_since) => {
                self.spent = false;
                self.held_since = None;
                if held_since.is_some() {
                    self.releasing = true;
                    BrakeVerdict::Release
                } else {
                    BrakeVerdict::Normal
                }
            }
        }
    }

    /// The grace period of a [`BrakeVerdict::Release`] was `granted`, or not: then the brake's
    /// memory goes back to `before` the release (it still holds), so that the next check
    /// releases again. Checks wait for this (`Releasing`) between the two, so `before` is
    /// still the memory to go back to.
    pub(super) fn released(&mut self, granted: bool, before: Brake) {
        self.releasing = false;
        if !granted {
            *self = before;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_HOLD: Duration = Duration::from_secs(300);

    fn config(floor: usize, fraction: f64) -> WorkerLifecycleConfig {
        WorkerLifecycleConfig {
            unhealthy_floor: floor,
            max_unhealthy_fraction: fraction,
            ..WorkerLifecycleConfig::default()
        }
    }

    #[test]
    fn nobody_past_the_deadline_is_never_over_the_limit() {
        assert_eq!(assess(&config(0, 0.0), 0, 100, 100), None);
    }

    #[test]
    fn the_limit_is_the_larger_of_the_floor_and_the_fraction() {
        // 10% of 100 = 10 allowed; floor 3 does not matter.
        assert_eq!(assess(&config(3, 0.1), 1, 10, 100), None);
        let hold = assess(&config(3, 0.1), 1, 11, 100).unwrap();
        assert_eq!(
            (hold.would_expire, hold.suspect, hold.live, hold.allowed),
            (1, 11, 100, 10)
        );
        // A small fleet: the floor (3) wins over 10% of 10 = 1.
        assert_eq!(assess(&config(3, 0.1), 3, 3, 10), None);
        assert_eq!(assess(&config(3, 0.1), 4, 4, 10).unwrap().allowed, 3);
    }

    #[test]
    fn suspects_count_at_least_the_silent() {
        let hold = assess(&config(0, 0.5), 6, 2, 10).unwrap();
        assert_eq!((hold.suspect, hold.allowed), (6, 5));
    }

    #[test]
    fn a_hold_lasts_while_over_the_limit_then_releases() {
        let mut b = Brake::default();
        assert_eq!(b.judge(false, 0, MAX_HOLD), BrakeVerdict::Normal);
        assert_eq!(b.judge(true, 1_000, MAX_HOLD), BrakeVerdict::Hold);
        assert_eq!(b.judge(true, 31_000, MAX_HOLD), BrakeVerdict::Hold);
        assert_eq!(b.judge(false, 61_000, MAX_HOLD), BrakeVerdict::Release);
        b.released(true, Brake::default());
        assert_eq!(b.judge(false, 91_000, MAX_HOLD), BrakeVerdict::Normal);
        assert_eq!(b, Brake::default());
    }

    #[test]
    fn checks_during_a_release_hold_until_its_grace_period_is_granted_or_failed() {
        let mut b = Brake::default();
        assert_eq!(b.judge(true, 1_000, MAX_HOLD), BrakeVerdict::Hold);
        let before = b;
        assert_eq!(b.judge(false, 31_000, MAX_HOLD), BrakeVerdict::Release);
        // A check at the same moment, over the limit or not: neither expires nor releases.
        assert_eq!(b.judge(false, 31_000, MAX_HOLD), BrakeVerdict::Releasing);
        assert_eq!(b.judge(true, 31_000, MAX_HOLD), BrakeVerdict::Releasing);
        // The grace period failed: still held, the next check releases again.
        b.released(false, before);
        assert_eq!(b, before);
        assert_eq!(b.judge(false, 61_000, MAX_HOLD), BrakeVerdict::Release);
        b.released(true, before);
        assert_eq!(b, Brake::default());
        assert_eq!(b.judge(false, 91_000, MAX_HOLD), BrakeVerdict::Normal);
    }

    #[test]
    fn the_brake_gives_up_after_max_hold_and_holds_no_more_until_back_under() {
        let mut b = Brake::default();
        assert_eq!(b.judge(true, 1_000, MAX_HOLD), BrakeVerdict::Hold);
        // Exactly max_hold since the first hold: still holds.
        assert_eq!(b.judge(true, 301_000, MAX_HOLD), BrakeVerdict::Hold);
        assert_eq!(
            b.judge(true, 301_001, MAX_HOLD),
            BrakeVerdict::GiveUp(300_001)
        );
        // The survivors of a real mass death are not held right after.
        assert_eq!(b.judge(true, 331_000, MAX_HOLD), BrakeVerdict::Normal);
        // Back under the limit: no release (it did not hold), and a new episode may hold.
        assert_eq!(b.judge(false, 361_000, MAX_HOLD), BrakeVerdict::Normal);
        assert_eq!(b.judge(true, 391_000, MAX_HOLD), BrakeVerdict::Hold);
    }
}
