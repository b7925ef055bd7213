//! Leadership: which of several [`WorkerLifecycleManager`](crate::WorkerLifecycleManager)s
//! sharing one registry may act on the fleet.
//!
//! Leadership is a **lease with a term** kept in the shared store ([`Leadership`]): a replica
//! acquires it when it is free or expired (a new, larger term), renews only the term it holds,
//! and may step down. The term is a fencing token: every leader-only write of the manager checks
//! that the term it acts under is still the one it holds. A leader trusts its lease only until
//! `start of its last successful renewal + ttl − margin`, measured on its **own** clock: a
//! leader paused for longer than that (GC, SIGSTOP, a VM migration) finds its trust window
//! closed when it wakes and changes nothing until a renewal says it still leads.
//!
//! Two implementations live here: [`AlwaysLeader`], the single-process lease the in-memory
//! registry uses (always held, term 1: today's behaviour), and [`InMemoryLease`], a real lease
//! shared by the managers of one process (tests and the simulation). The PostgreSQL one is
//! `hodei_workers_postgres::PostgresLeadership`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::clock::{millis, Clock, Timestamp};
use crate::error::{quote_input, Error, Result};

/// A fencing token: strictly increasing across the successive leaders of one store, by one
/// at each acquisition (see [`Leadership`]'s contract: terms are consecutive).
pub type Term = u64;

/// Who holds a lease, under which term, since when (the store's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderInfo {
    /// The holder's name (one per replica, e.g. `host-pid`).
    pub holder: String,
    /// The term it holds.
    pub term: Term,
    /// When this holder took this term (store clock, ms since the epoch).
    pub since: Timestamp,
    /// When the lease expires unless renewed (store clock).
    pub expires_at: Timestamp,
}

/// The answer of [`Leadership::acquire_or_renew`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStatus {
    /// This replica holds the lease (newly acquired, or renewed under the same term).
    Held(LeaderInfo),
    /// Another replica holds it (`Some`, possibly already expired but not yet taken over), or
    /// nobody ever did (`None`).
    Follower(Option<LeaderInfo>),
}

/// A leadership lease in a shared store.
///
/// # Contract (every implementation)
/// - [`acquire_or_renew`](Self::acquire_or_renew) is atomic in the store: of the replicas
///   calling it at once on a free or expired lease, exactly one gets it. Acquiring (the lease
///   was free, expired, or held under another term) makes a **new term**, larger than every
///   term before; renewing (this holder holds exactly `held`) keeps the term and moves the
///   expiry to `now + ttl`. A holder never renews a term it does not hold.
/// - **Terms are consecutive**: the first acquisition takes term 1, and every later one the
///   previous term + 1, whoever acquires and however the previous term ended (expired, given
///   up, or held by the same holder under a term it no longer names); only a renewal keeps a
///   term. So a replica that held term `t` and now holds `t + 1` knows that nobody led in
///   between, and one that holds more knows that somebody did: the manager relies on it for a
///   create that spans a lease change (see
///   [`provision_worker`](crate::WorkerLifecycleManager::provision_worker)). A store that
///   skipped terms would have a replica check the provider after its own re-acquisition
///   (harmless, one listing); a store whose terms went back to an earlier one (a lease row
///   deleted and made again) breaks fencing altogether.
/// - Expiry is judged on the store's one clock (the database's, or the given manual clock), so
///   replicas with skewed clocks agree on it.
/// - Leases are not advisory locks: they survive connection loss and poolers, and a lease
///   expires by itself when its holder stops renewing.
pub trait Leadership: Send + Sync + fmt::Debug {
    /// This replica's name in the lease.
    fn holder(&self) -> &str;

    /// How long a lease lasts after each renewal.
    fn ttl(&self) -> Duration;

    /// The part of the ttl a leader does not trust (clock drift between the replica and the
    /// store, the renewal's own round trip): the leader acts only until
    /// `renewal start + ttl − margin` on its own clock. Default: a quarter of the ttl.
    fn margin(&self) -> Duration {
        self.ttl() / 4
    }

    /// Acquires the lease when free or expired, or renews it when this replica holds `held`.
    ///
    /// # Errors
    /// The store cannot be reached (`Error::Backend`): the caller must assume nothing changed
    /// and keep trusting an earlier renewal only within its window.
    fn acquire_or_renew(&self, held: Option<Term>) -> Result<LeaseStatus>;

    /// Gives up `term` if this replica still holds it (the lease expires now, so a follower
    /// may take it at once). Nothing happens otherwise.
    ///
    /// # Errors
    /// The store cannot be reached.
    fn step_down(&self, term: Term) -> Result<()>;

    /// The current holder, as the store has it (possibly expired), without trying to acquire.
    ///
    /// # Errors
    /// The store cannot be reached.
    fn current(&self) -> Result<Option<LeaderInfo>>;

    /// Where this lease lives, when a registry in the same store can check its term in the
    /// transaction of each leader-only write ([`WorkerRegistry::fenced`]): two leases with the
    /// same key are the same row. `None` (the default): no registry can, the manager's own
    /// fence is all there is.
    ///
    /// [`WorkerRegistry::fenced`]: crate::WorkerRegistry::fenced
    fn fence_key(&self) -> Option<&str> {
        None
    }
}

/// The longest lease holder name (bytes), on every backend.
pub const MAX_LEASE_HOLDER_LEN: usize = 128;

/// The shortest lease ttl, on every backend (a renewal gets a third of it to connect).
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(3);

/// Whether `name` may name a lease holder: 1 to [`MAX_LEASE_HOLDER_LEN`] bytes, no NUL (the
/// rule [`validate_lease`] applies, and `publish` to a `LeaderChanged`'s names).
pub(crate) fn is_lease_holder(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_LEASE_HOLDER_LEN && !name.contains('\0')
}

/// Checks a replica's lease arguments as every backend does (in
/// [`WorkerLifecycleManager::replicated`](crate::WorkerLifecycleManager::replicated), whatever
/// the registry, so a host's arguments fail the same way embedded and replicated).
///
/// # Errors
/// `InvalidArgument` for an empty `holder`, one longer than [`MAX_LEASE_HOLDER_LEN`] bytes or
/// holding a NUL, or a `ttl` under [`MIN_LEASE_TTL`] or above
/// [`MAX_CONFIG_DURATION`](crate::MAX_CONFIG_DURATION) (100 years, the bound of the config's
/// durations: a longer lease is no leadership lease, only a way to reach the limits of the
/// store's and the clock's arithmetic).
pub fn validate_lease(holder: &str, ttl: Duration) -> Result<()> {
    if !is_lease_holder(holder) {
        return Err(Error::invalid(format!(
            "lease holder must be 1..={MAX_LEASE_HOLDER_LEN} bytes without NUL, got {}",
            quote_input(holder)
        )));
    }
    if ttl < MIN_LEASE_TTL {
        return Err(Error::invalid(format!(
            "lease ttl must be at least {} ms, got {ttl:?}",
            MIN_LEASE_TTL.as_millis()
        )));
    }
    if ttl > crate::lifecycle::MAX_CONFIG_DURATION {
        return Err(Error::invalid(format!(
            "lease ttl must be at most {} s (100 years, MAX_CONFIG_DURATION), got {ttl:?}",
            crate::lifecycle::MAX_CONFIG_DURATION.as_secs()
        )));
    }
    Ok(())
}

/// The single-process lease: always held by `"local"` under term 1, never expiring. What a
/// manager on an in-memory registry uses: it leads, as it always did.
#[derive(Debug, Clone)]
pub struct AlwaysLeader {
    since: Timestamp,
}

impl AlwaysLeader {
    /// Held since `since` (the manager's creation).
    pub fn new(since: Timestamp) -> Self {
        AlwaysLeader { since }
    }

    fn info(&self) -> LeaderInfo {
        LeaderInfo {
            holder: "local".to_owned(),
            term: 1,
            since: self.since,
            expires_at: Timestamp::MAX,
        }
    }
}

impl Leadership for AlwaysLeader {
    fn holder(&self) -> &str {
        "local"
    }

    /// [`MAX_CONFIG_DURATION`](crate::MAX_CONFIG_DURATION) (100 years), the longest ttl
    /// [`validate_lease`] takes, so that
    /// [`with_leadership`](crate::WorkerLifecycleManager::with_leadership) accepts this lease
    /// as every other; it never expires all the same (`expires_at` is `Timestamp::MAX`, and
    /// each tick renews it).
    fn ttl(&self) -> Duration {
        crate::lifecycle::MAX_CONFIG_DURATION
    }

    fn margin(&self) -> Duration {
        Duration::ZERO
    }

    fn acquire_or_renew(&self, _held: Option<Term>) -> Result<LeaseStatus> {
        Ok(LeaseStatus::Held(self.info()))
    }

    fn step_down(&self, _term: Term) -> Result<()> {
        Ok(())
    }

    fn current(&self) -> Result<Option<LeaderInfo>> {
        Ok(Some(self.info()))
    }
}

/// A lease shared by the managers of one process, on a [`Clock`]: the same contract as the
/// PostgreSQL lease, for tests and simulations of a replicated manager without a database.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use hodei_workers::*;
///
/// let clock = Arc::new(ManualClock::new(1_000));
/// let a = InMemoryLease::new(clock.clone(), "a", Duration::from_secs(10));
/// let b = a.replica("b");
/// let LeaseStatus::Held(info) = a.acquire_or_renew(None)? else { panic!() };
/// assert_eq!(info.term, 1);
/// assert!(matches!(b.acquire_or_renew(None)?, LeaseStatus::Follower(Some(_))));
/// clock.advance(Duration::from_secs(11)); // a stopped renewing
/// let LeaseStatus::Held(info) = b.acquire_or_renew(None)? else { panic!() };
/// assert_eq!((info.holder.as_str(), info.term), ("b", 2));
/// // a's renewal of term 1 is refused: it does not hold it any more.
/// assert!(matches!(a.acquire_or_renew(Some(1))?, LeaseStatus::Follower(_)));
/// # Ok::<(), hodei_workers::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryLease {
    row: Arc<Mutex<Option<LeaderInfo>>>,
    clock: Arc<dyn Clock>,
    holder: String,
    ttl: Duration,
}

impl InMemoryLease {
    /// A new, free lease, and this replica's view of it as `holder`.
    ///
    /// Any `holder` and `ttl` are taken here (this is the store's side, as a row another
    /// replica wrote is); a manager given the lease checks them:
    /// [`WorkerLifecycleManager::with_leadership`](crate::WorkerLifecycleManager::with_leadership)
    /// refuses one that [`validate_lease`] refuses (a ttl under [`MIN_LEASE_TTL`] or above
    /// [`MAX_CONFIG_DURATION`](crate::MAX_CONFIG_DURATION), zero included), with
    /// `InvalidArgument`.
    pub fn new(clock: Arc<dyn Clock>, holder: impl Into<String>, ttl: Duration) -> Self {
        InMemoryLease {
            row: Arc::new(Mutex::new(None)),
            clock,
            holder: holder.into(),
            ttl,
        }
    }

    /// Another replica's view of the same lease.
    pub fn replica(&self, holder: impl Into<String>) -> Self {
        InMemoryLease {
            holder: holder.into(),
            ..self.clone()
        }
    }
}

impl Leadership for InMemoryLease {
    fn holder(&self) -> &str {
        &self.holder
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn acquire_or_renew(&self, held: Option<Term>) -> Result<LeaseStatus> {
        let now = self.clock.now();
        let expires_at = now.saturating_add(millis(self.ttl));
        let mut row = self.row.lock();
        match row.as_mut() {
            Some(r) if r.holder == self.holder && Some(r.term) == held => {
                r.expires_at = expires_at;
                Ok(LeaseStatus::Held(r.clone()))
            }
            Some(r) if r.expires_at > now => Ok(LeaseStatus::Follower(Some(r.clone()))),
            previous => {
                let term = previous.as_ref().map_or(1, |r| r.term + 1);
                let info = LeaderInfo {
                    holder: self.holder.clone(),
                    term,
                    since: now,
                    expires_at,
                };
                *row = Some(info.clone());
                Ok(LeaseStatus::Held(info))
            }
        }
    }

    fn step_down(&self, term: Term) -> Result<()> {
        let now = self.clock.now();
        if let Some(r) = self.row.lock().as_mut() {
            if r.holder == self.holder && r.term == term {
                r.expires_at = now;
            }
        }
        Ok(())
    }

    fn current(&self) -> Result<Option<LeaderInfo>> {
        Ok(self.row.lock().clone())
    }
}

/// What a renewal changed, as seen by the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Leading under the same term as before.
    Kept(LeaderInfo),
    /// Leading under a new term (just acquired): the caller takes over.
    Acquired(LeaderInfo),
    /// Not leading; `lost` when it led before this renewal.
    Following {
        leader: Option<LeaderInfo>,
        lost: Option<Term>,
    },
    /// The store did not answer: leading still (within the trust window of the last renewal)
    /// or not.
    Unknown { leading: bool, error: Error },
    /// [`LeaseKeeper::step_down`] ran while this renewal was on its way: its answer is
    /// discarded (not leading; the keeper's state is left as the step-down made it). Had the
    /// store granted a term (`given_up`), it was given up again; `Err` when that failed (the
    /// lease then expires by itself).
    SteppedDown {
        given_up: Option<Term>,
        error: Option<Error>,
    },
}

#[derive(Debug, Default)]
struct KeeperState {
    /// The term held, while the last renewal said so.
    term: Option<Term>,
    /// Trust the term until then (local clock).
    trusted_until: Timestamp,
    /// The leader as last seen.
    leader: Option<LeaderInfo>,
    /// Step-downs so far: a renewal whose answer comes back after one that started after it
    /// began is discarded (see [`LeaseKeeper::renew`]).
    step_downs: u64,
    /// The OS process whose renewal got `term` (see [`held`](Self::held)).
    process: u32,
}

impl KeeperState {
    /// The term held, in the process whose renewal got it. A process forked from the leader
    /// (`fork()` without `exec`: `multiprocessing`, a pre-forking server) inherits a copy of
    /// this state, not the lease: it holds nothing, and leads only by acquiring a lease of its
    /// own, under a new term. Otherwise it led as the parent's twin, the same holder under the
    /// same term, which neither the store's fence nor a provider's fencing token can tell
    /// apart, and its step-down gave up the parent's lease. Cost: one `getpid` while a term
    /// is held (every fence pays it: small beside the registry call a fence precedes).
    fn held(&self) -> Option<Term> {
        self.term.filter(|_| self.process == std::process::id())
    }
}

/// The manager's side of the lease: the term it holds and the trust window on its own clock.
pub(crate) struct LeaseKeeper {
    leadership: Arc<dyn Leadership>,
    local: Arc<dyn Clock>,
    state: Mutex<KeeperState>,
}

impl fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.lock();
        f.debug_struct("LeaseKeeper")
            .field("holder", &self.leadership.holder())
            .field("term", &s.term)
            .field("trusted_until", &s.trusted_until)
            .finish()
    }
}

impl LeaseKeeper {
    pub(crate) fn new(leadership: Arc<dyn Leadership>, local: Arc<dyn Clock>) -> Self {
        LeaseKeeper {
            leadership,
            local,
            state: Mutex::new(KeeperState::default()),
        }
    }

    pub(crate) fn leadership(&self) -> &Arc<dyn Leadership> {
        &self.leadership
    }

    /// Acquires or renews the lease; the trust window restarts from the moment the renewal
    /// *started* (what the store granted was measured from a moment at or after it).
    ///
    /// A [`step_down`](Self::step_down) during the store call wins: the answer is discarded
    /// ([`Renewal::SteppedDown`]), and a term it granted (the renewal reached the store
    /// before the step-down, or after it and renewed the just-expired row, or acquired a new
    /// term) is given up again. Otherwise the keeper would trust, and take over under, a term
    /// the host just gave up while the store row says it is free: two replicas would lead.
    /// No lock is held across the store call, so a step-down never waits for a renewal.
    pub(crate) fn renew(&self) -> Renewal {
        let started = self.local.now();
        let (held, step_downs) = {
            let s = self.state.lock();
            (s.held(), s.step_downs)
        };
        let answer = self.leadership.acquire_or_renew(held);
        let mut s = self.state.lock();
        if s.step_downs != step_downs {
            drop(s);
            let given_up = match answer {
                Ok(LeaseStatus::Held(info)) => Some(info.term),
                _ => None,
            };
            let error = given_up.and_then(|term| self.leadership.step_down(term).err());
            return Renewal::SteppedDown { given_up, error };
        }
        match answer {
            Ok(LeaseStatus::Held(info)) => {
                let trust = self
                    .leadership
                    .ttl()
                    .saturating_sub(self.leadership.margin());
                s.trusted_until = started.saturating_add(millis(trust));
                s.leader = Some(info.clone());
                if s.held() == Some(info.term) {
                    Renewal::Kept(info)
                } else {
                    s.term = Some(info.term);
                    s.process = std::process::id();
                    Renewal::Acquired(info)
                }
            }
            Ok(LeaseStatus::Follower(leader)) => {
                let lost = s.held();
                s.term = None;
                s.trusted_until = 0;
                s.leader = leader.clone();
                Renewal::Following { leader, lost }
            }
            Err(error) => {
                let leading = s.held().is_some() && self.local.now() < s.trusted_until;
                Renewal::Unknown { leading, error }
            }
        }
    }

    /// The term to act under, if this replica leads and its trust window is open now.
    ///
    /// # Errors
    /// [`Error::NotLeader`] otherwise, naming the leader as last seen.
    pub(crate) fn fence(&self) -> Result<Term> {
        let s = self.state.lock();
        match (s.held(), s.term) {
            (Some(term), _) if self.local.now() < s.trusted_until => Ok(term),
            (Some(term), _) => Err(Error::NotLeader(format!(
                "{} held term {term} but its lease was not renewed in time (trust window \
                 closed); leader-only writes are refused until a renewal succeeds",
                self.leadership.holder()
            ))),
            (None, Some(term)) => Err(Error::NotLeader(format!(
                "{} holds no lease in this process: term {term} is held by the process it was \
                 forked from, and a fork does not inherit it",
                self.leadership.holder()
            ))),
            (None, None) => Err(Error::NotLeader(match &s.leader {
                Some(l) => format!(
                    "{} is not the leader: {} leads under term {} since {}",
                    self.leadership.holder(),
                    l.holder,
                    l.term,
                    l.since
                ),
                None => format!("{} is not the leader", self.leadership.holder()),
            })),
        }
    }

    /// [`fence`](Self::fence), then the store's word: the lease row must still name this
    /// replica under the term (expired or not: only a takeover changes the row). For the
    /// moments right before a provider call, which no store can fence: a replica paused past
    /// its lease, on a clock that did not see the pause, learns here that another replica took
    /// over, instead of acting on its stale trust window. A row naming another holder or term
    /// closes the trust window ([`distrust`](Self::distrust)). A store that does not answer
    /// leaves the fence's verdict, as a failed renewal does. Either way the fence is judged
    /// again once the read returned: the read may take up to half the ttl (PostgreSQL's
    /// deadline), during which the trust window can close and the lease expire. Cost: one
    /// read of the lease (one round trip on PostgreSQL), small beside the provider call it
    /// guards.
    ///
    /// # Errors
    /// [`Error::NotLeader`] from the fence (before or after the read), or when the row names
    /// another holder or term.
    pub(crate) fn confirm(&self) -> Result<Term> {
        let term = self.fence()?;
        match self.leadership.current() {
            Ok(Some(row)) if row.holder == self.leadership.holder() && row.term == term => {
                self.fence_after_read(term)
            }
            Ok(row) => {
                self.distrust(term);
                Err(Error::NotLeader(format!(
                    "{} held term {term}, but the store's lease row now says {}: another \
                     replica took over",
                    self.leadership.holder(),
                    match row {
                        Some(r) => format!("{} under term {}", r.holder, r.term),
                        None => "nobody".to_owned(),
                    }
                )))
            }
            Err(_) => self.fence_after_read(term),
        }
    }

    /// The fence once more, after [`confirm`](Self::confirm)'s read of the row, which took
    /// time: judged before it, a read that gave up after half the ttl (a store that stopped
    /// answering) let a provider call go out after the trust window had closed, while another
    /// replica had taken the lease. The term must be the one the read was about.
    fn fence_after_read(&self, term: Term) -> Result<Term> {
        match self.fence()? {
            now if now == term => Ok(term),
            now => Err(Error::NotLeader(format!(
                "{} held term {term} when it read the lease and holds term {now} now: the \
                 read confirmed the former only",
                self.leadership.holder()
            ))),
        }
    }

    /// The store refused a write under `term`, or its lease row names another holder or term
    /// ([`confirm`](Self::confirm)): another replica took the lease. The trust window closes
    /// now, so no further leader-only act (a provider call above all) happens
    /// before a renewal says who leads.
    pub(crate) fn distrust(&self, term: Term) {
        let mut s = self.state.lock();
        if s.term == Some(term) {
            s.trusted_until = 0;
        }
    }

    /// The term this process holds, whether or not its trust window is open now (`None` when
    /// it holds none: never acquired, lost, given up, or a forked copy).
    pub(crate) fn held(&self) -> Option<Term> {
        self.state.lock().held()
    }

    /// Whether the last renewal said this replica leads (whatever the window says now).
    pub(crate) fn leader(&self) -> Option<LeaderInfo> {
        self.state.lock().leader.clone()
    }

    /// Steps down from the term held, if any (a clean shutdown: a follower takes over at once).
    /// A renewal on its way meanwhile does not make this replica lead again: its answer is
    /// discarded, and a term it got is given up too. A later renewal may acquire again. The
    /// leader as last seen is forgotten when it was this replica under that term: until the
    /// next renewal, nobody is known to lead.
    pub(crate) fn step_down(&self) -> Result<()> {
        let term = {
            let mut s = self.state.lock();
            s.trusted_until = 0;
            // A renewal on its way now is discarded when it comes back (see `renew`).
            s.step_downs += 1;
            // Not the term of the process this one was forked from: that is its own to give up.
            let held = s.held();
            s.term = None;
            // Nor the leader it saw as itself: who leads next is unknown until a renewal says.
            // Before, `leader()` and the fence's refusal still named this replica as leader
            // under the term it gave up ("a is not the leader: a leads under term 1").
            if held.is_some_and(|term| {
                s.leader
                    .as_ref()
                    .is_some_and(|l| l.term == term && l.holder == self.leadership.holder())
            }) {
                s.leader = None;
            }
            held
        };
        match term {
            Some(term) => self.leadership.step_down(term),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn terms_grow_and_renewal_needs_the_held_term() {
        let store = Arc::new(ManualClock::new(0));
        let a = InMemoryLease::new(store.clone(), "a", 10 * S);
        let b = a.replica("b");
        assert_eq!(a.current().unwrap(), None);
        let LeaseStatus::Held(t1) = a.acquire_or_renew(None).unwrap() else {
            panic!()
        };
        assert_eq!((t1.term, t1.since, t1.expires_at), (1, 0, 10_000));
        // `a` without saying which term it holds does not renew (a restarted process).
        assert!(matches!(
            a.acquire_or_renew(None).unwrap(),
            LeaseStatus::Follower(Some(_))
        ));
        store.advance(5 * S);
        let LeaseStatus::Held(r) = a.acquire_or_renew(Some(1)).unwrap() else {
            panic!()
        };
        assert_eq!((r.term, r.since, r.expires_at), (1, 0, 15_000));
        assert!(matches!(
            b.acquire_or_renew(None).unwrap(),
            LeaseStatus::Follower(Some(ref l)) if l.holder == "a"
        ));
        a.step_down(1).unwrap();
        let LeaseStatus::Held(t2) = b.acquire_or_renew(None).unwrap() else {
            panic!()
        };
        assert_eq!((t2.holder.as_str(), t2.term, t2.since), ("b", 2, 5_000));
        a.step_down(1).unwrap(); // not its term: nothing happens
        assert_eq!(a.current().unwrap(), Some(t2));
    }

    #[test]
    fn the_keeper_trusts_only_until_renewal_start_plus_ttl_minus_margin() {
        let store = Arc::new(ManualClock::new(0));
        let local = Arc::new(ManualClock::new(500));
        let lease = Arc::new(InMemoryLease::new(store.clone(), "a", 8 * S));
        let keeper = LeaseKeeper::new(lease, local.clone());
        assert!(matches!(keeper.fence(), Err(Error::NotLeader(_))));
        assert!(matches!(keeper.renew(), Renewal::Acquired(ref l) if l.term == 1));
        assert_eq!(keeper.fence().unwrap(), 1);
        // ttl 8 s, margin 2 s: trusted until 500 + 6000 on the local clock.
        local.set(6_499);
        assert_eq!(keeper.fence().unwrap(), 1);
        local.set(6_500);
        let err = keeper.fence().unwrap_err();
        assert!(err.to_string().contains("trust window closed"), "{err}");
        // A renewal under the same term reopens it.
        assert!(matches!(keeper.renew(), Renewal::Kept(_)));
        assert_eq!(keeper.fence().unwrap(), 1);
    }

    /// The store's clock, a's own clock, a's keeper holding term 1 of an 8 s lease, and b's
    /// view of the same lease.
    fn a_leads() -> (
        Arc<ManualClock>,
        Arc<ManualClock>,
        LeaseKeeper,
        InMemoryLease,
    ) {
        let store = Arc::new(ManualClock::new(0));
        let local = Arc::new(ManualClock::new(0));
        let a_lease = InMemoryLease::new(store.clone(), "a", 8 * S);
        let b = a_lease.replica("b");
        let keeper = LeaseKeeper::new(Arc::new(a_lease), local.clone());
        assert!(matches!(keeper.renew(), Renewal::Acquired(ref l) if l.term == 1));
        (store, local, keeper, b)
    }

    #[test]
    fn the_keeper_reports_a_lost_lease_and_the_new_leader() {
        let (store, local, keeper, b) = a_leads();
        store.advance(9 * S);
        local.advance(9 * S);
        assert!(matches!(
            b.acquire_or_renew(None).unwrap(),
            LeaseStatus::Held(_)
        ));
        match keeper.renew() {
            Renewal::Following {
                leader: Some(l),
                lost: Some(1),
            } => assert_eq!((l.holder.as_str(), l.term), ("b", 2)),
            other => panic!("{other:?}"),
        }
        let err = keeper.fence().unwrap_err().to_string();
        assert!(err.contains("b leads under term 2"), "{err}");
    }

    /// A lease whose store answers renewals but not `current` (it went away in between).
    #[derive(Debug)]
    struct Mute(InMemoryLease);

    impl Leadership for Mute {
        fn holder(&self) -> &str {
            self.0.holder()
        }
        fn ttl(&self) -> Duration {
            self.0.ttl()
        }
        fn acquire_or_renew(&self, held: Option<Term>) -> Result<LeaseStatus> {
            self.0.acquire_or_renew(held)
        }
        fn step_down(&self, term: Term) -> Result<()> {
            self.0.step_down(term)
        }
        fn current(&self) -> Result<Option<LeaderInfo>> {
            Err(Error::Backend("the store does not answer".to_owned()))
        }
    }

    #[test]
    fn confirm_asks_the_store_which_only_a_takeover_changes() {
        let (store, _local, keeper, b) = a_leads();
        assert_eq!(keeper.confirm().unwrap(), 1);
        // Past the lease on the store's clock, not on a's own (a pause its clock missed):
        // expired, but nobody took it, so the row still names a.
        store.advance(9 * S);
        assert_eq!(keeper.confirm().unwrap(), 1);
        // b takes it: the store's word refuses, and closes the window a's clock keeps open.
        assert!(matches!(
            b.acquire_or_renew(None).unwrap(),
            LeaseStatus::Held(_)
        ));
        let err = keeper.confirm().unwrap_err().to_string();
        assert!(err.contains("now says b under term 2"), "{err}");
        let err = keeper.fence().unwrap_err().to_string();
        assert!(err.contains("trust window closed"), "{err}");
    }

    #[test]
    fn confirm_keeps_the_local_verdict_when_the_store_does_not_answer() {
        let store = Arc::new(ManualClock::new(0));
        let local = Arc::new(ManualClock::new(0));
        let lease = Mute(InMemoryLease::new(store.clone(), "a", 8 * S));
        let keeper = LeaseKeeper::new(Arc::new(lease), local.clone());
        assert!(matches!(keeper.confirm(), Err(Error::NotLeader(_))));
        keeper.renew();
        assert_eq!(keeper.confirm().unwrap(), 1);
        // Past the trust window (8 s - 2 s) on its own clock: the fence's verdict.
        local.advance(6 * S);
        assert!(matches!(keeper.confirm(), Err(Error::NotLeader(_))));
    }

    /// A lease whose reads of the row take `by` on the replica's own clock (a store slow to
    /// answer, or one that does not answer in time: then the read fails after it).
    #[derive(Debug)]
    struct SlowRead {
        inner: InMemoryLease,
        local: Arc<ManualClock>,
        by: Duration,
        answers: bool,
    }

    impl Leadership for SlowRead {
        fn holder(&self) -> &str {
            self.inner.holder()
        }
        fn ttl(&self) -> Duration {
            self.inner.ttl()
        }
        fn acquire_or_renew(&self, held: Option<Term>) -> Result<LeaseStatus> {
            self.inner.acquire_or_renew(held)
        }
        fn step_down(&self, term: Term) -> Result<()> {
            self.inner.step_down(term)
        }
        fn current(&self) -> Result<Option<LeaderInfo>> {
            self.local.advance(self.by);
            if self.answers {
                self.inner.current()
            } else {
                Err(Error::Backend("no answer within half the ttl".to_owned()))
            }
        }
    }

    /// After a step-down the keeper does not name itself as the leader of the term it gave up:
    /// nobody is known to lead until a renewal says (clarified 2026-12-07).
    #[test]
    fn a_step_down_forgets_itself_as_the_leader() {
        let store = Arc::new(ManualClock::new(0));
        let lease = InMemoryLease::new(store.clone(), "a", 10 * S);
        let keeper = LeaseKeeper::new(Arc::new(lease.clone()), store.clone());
        assert!(matches!(keeper.renew(), Renewal::Acquired(ref l) if l.term == 1));
        keeper.step_down().unwrap();
        assert_eq!(
            keeper.leader(),
            None,
            "the leader as last seen after a step-down"
        );
        let err = keeper.fence().unwrap_err().to_string();
        assert!(!err.contains("a leads"), "{err}");
        // The next renewal tells who leads: b, which took the free lease meanwhile.
        let b = lease.replica("b");
        assert!(matches!(
            b.acquire_or_renew(None).unwrap(),
            LeaseStatus::Held(_)
        ));
        assert!(matches!(keeper.renew(), Renewal::Following { .. }));
        assert_eq!(
            keeper.leader().map(|l| (l.holder, l.term)),
            Some(("b".to_owned(), 2))
        );
    }

    /// A keeper of term 1 of an 8 s lease (trusted for 6 s) whose reads of the row take 5 s,
    /// asked to confirm 2 s after its renewal: the window is open when the read starts and
    /// closed when it ends.
    fn confirm_across_a_slow_read(answers: bool) -> Result<Term> {
        let local = Arc::new(ManualClock::new(0));
        let lease = SlowRead {
            inner: InMemoryLease::new(Arc::new(ManualClock::new(0)), "a", 8 * S),
            local: local.clone(),
            by: 5 * S,
            answers,
        };
        let keeper = LeaseKeeper::new(Arc::new(lease), local.clone());
        assert!(matches!(keeper.renew(), Renewal::Acquired(ref l) if l.term == 1));
        local.advance(2 * S);
        assert_eq!(keeper.fence().unwrap(), 1);
        keeper.confirm()
    }

    /// A store that does not answer leaves the local verdict as it is once the read gave up
    /// (up to half the ttl later on PostgreSQL), not as it was before the read: otherwise a
    /// provider call went out after the trust window closed, while another replica could
    /// take the lease.
    #[test]
    fn confirm_judges_the_trust_window_after_a_read_that_got_no_answer() {
        let err = confirm_across_a_slow_read(false).unwrap_err();
        assert!(err.to_string().contains("trust window closed"), "{err}");
    }

    /// Likewise a read that answers late, the row still naming the replica: the window closed
    /// meanwhile, and the lease may expire (and be taken) any moment.
    #[test]
    fn confirm_judges_the_trust_window_after_a_slow_read() {
        let err = confirm_across_a_slow_read(true).unwrap_err();
        assert!(err.to_string().contains("trust window closed"), "{err}");
    }

    /// A keeper copied into another process (`fork()`: what the copy's state looks like
    /// there, its `process` not that process's id) holds nothing: it does not lead, does not
    /// renew the parent's term (it follows while that lease lives), and its step-down leaves
    /// the parent's term alone. The HA hunt's Python test forks for real
    /// (`test_postgres.py::test_a_process_forked_from_the_leader_does_not_lead`).
    #[test]
    fn a_keeper_copied_into_a_forked_process_holds_no_term() {
        let (_store, _local, keeper, b) = a_leads();
        keeper.state.lock().process = std::process::id().wrapping_add(1);
        let err = keeper.fence().unwrap_err().to_string();
        assert!(err.contains("forked"), "{err}");
        keeper.step_down().unwrap();
        assert!(
            matches!(b.acquire_or_renew(None).unwrap(), LeaseStatus::Follower(Some(ref l)) if l.holder == "a" && l.term == 1),
            "the copy gave up the parent's lease"
        );
        assert!(matches!(
            keeper.renew(),
            Renewal::Following { lost: None, .. }
        ));
    }

    #[test]
    fn always_leader_is_held_under_term_1() {
        let keeper = LeaseKeeper::new(
            Arc::new(AlwaysLeader::new(7)),
            Arc::new(ManualClock::new(u64::MAX - 1)),
        );
        assert!(matches!(keeper.renew(), Renewal::Acquired(ref l) if l.term == 1 && l.since == 7));
        assert_eq!(keeper.fence().unwrap(), 1);
        assert_eq!(keeper.confirm().unwrap(), 1);
        assert!(matches!(keeper.renew(), Renewal::Kept(_)));
    }
}
