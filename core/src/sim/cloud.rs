//! The simulated world outside the library: a cloud whose instances boot, run an agent,
//! vanish and fail ([`Cloud`]), and the [`SimProvider`] through which the manager reaches it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::{Clock, ManualClock, Timestamp};
use crate::ids::{JobId, ProviderId, WorkerId};
use crate::lifecycle::{ProviderError, Term, WorkerProvider};
use crate::worker::{ProviderType, WorkerHandle, WorkerSpec};

use super::rng::SimRng;
use super::scenario::{AgentModel, ProviderModel, Window};

// Stream tags of the keyed random streams (any distinct constants).
const STREAM_CREATE: u64 = 0xC2EA7E;
const STREAM_INSTANCE: u64 = 0x1257A4CE;
const STREAM_DESTROY: u64 = 0xDE57_2011;

/// How far an agent got in telling the registry about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Told {
    /// Still booting, or could not reach the host yet.
    Nothing,
    /// Reported `Connecting` (and heartbeats from then on).
    Connecting,
    /// Reported `Ready`.
    Ready,
}

/// A job an agent runs.
#[derive(Debug, Clone)]
pub(crate) struct AgentJob {
    pub seq: u64,
    pub job: JobId,
    /// Sim time (ms) when it finishes.
    pub ends_at: u64,
}

/// One instance of the simulated cloud and the agent running on it.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The provider's id of the instance.
    pub resource_id: String,
    /// The worker id the provider handed out for it.
    pub worker_id: WorkerId,
    /// Registry-clock time of its creation.
    pub created_at: Timestamp,
    pub(crate) boot_at: u64,
    pub(crate) ready_at: u64,
    pub(crate) told: Told,
    /// The agent crashed: the instance runs (and costs) but says nothing any more.
    pub crashed: bool,
    /// The agent gave up (its record is gone or terminating).
    pub(crate) agent_gone: bool,
    pub(crate) next_heartbeat: u64,
    pub(crate) job: Option<AgentJob>,
    pub(crate) finished: Option<AgentJob>,
    pub(crate) destroy_attempts: u64,
    /// In a partition of fraction `f`, the agent is cut off when `partition_key < f`.
    pub(crate) partition_key: f64,
    /// Sim time (ms) when an interruption notice runs out and the instance disappears.
    pub(crate) reclaim_at: Option<u64>,
    pub(crate) index: u64,
    pub(crate) rng: SimRng,
}

/// Counters of what the cloud did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudStats {
    /// Instances created.
    pub created: u64,
    /// `create_worker` calls that failed (outage or random failure).
    pub create_failures: u64,
    /// Provider calls that panicked.
    pub panics: u64,
    /// Instances destroyed on request.
    pub destroyed: u64,
    /// `destroy_worker` calls that failed.
    pub destroy_failures: u64,
    /// Instances that vanished on their own.
    pub vanished: u64,
    /// Agents that crashed.
    pub crashes: u64,
    /// `create_worker` calls refused for lack of capacity (a pool's `no_capacity` window).
    pub no_capacity: u64,
    /// Instances reclaimed at the end of an interruption notice.
    pub reclaimed: u64,
    /// Create and destroy calls refused for their fencing token (a larger one was served).
    pub token_refusals: u64,
}

/// The simulated cloud: its instances (the ground truth the leak check compares against),
/// its failure model and its outage windows. Shared by the [`SimProvider`] and the simulation
/// loop behind a mutex.
#[derive(Debug)]
pub struct Cloud {
    seed: u64,
    pub(crate) provider_id: ProviderId,
    pub(crate) model: ProviderModel,
    pub(crate) agents: AgentModel,
    outages: Vec<Window>,
    /// Windows without capacity: creates fail with `NoCapacity` (pools of multi-pool runs).
    no_capacity: Vec<Window>,
    /// Prepended to resource ids, so that the instances of several clouds never share one.
    prefix: String,
    clock: Arc<ManualClock>,
    /// Sim time (ms since the run began), set by the loop each step.
    pub(crate) t: u64,
    /// Live instances by resource id (sorted: iteration order is part of determinism).
    pub(crate) instances: BTreeMap<String, Instance>,
    pub(crate) by_worker: HashMap<WorkerId, String>,
    create_calls: u64,
    next_index: u64,
    /// Whether the cloud checks fencing tokens (replicated runs, unless broken on purpose:
    /// [`Hooks::no_provider_fencing`](crate::sim::Hooks::no_provider_fencing)): a create or
    /// destroy whose token is below the largest served is refused.
    pub(crate) fencing: bool,
    /// The largest fencing token served.
    highest_token: u64,
    /// What happened so far.
    pub stats: CloudStats,
}

impl Cloud {
    pub(crate) fn new(
        seed: u64,
        provider_id: ProviderId,
        model: ProviderModel,
        agents: AgentModel,
        outages: Vec<Window>,
        clock: Arc<ManualClock>,
    ) -> Self {
        Cloud {
            seed,
            provider_id,
            model,
            agents,
            outages,
            no_capacity: Vec::new(),
            prefix: String::new(),
            clock,
            t: 0,
            instances: BTreeMap::new(),
            by_worker: HashMap::new(),
            create_calls: 0,
            next_index: 0,
            fencing: false,
            highest_token: 0,
            stats: CloudStats::default(),
        }
    }

    /// The cloud of a pool: its resource ids start with `prefix`, and creates fail for lack of
    /// capacity during `no_capacity`.
    pub(crate) fn for_pool(mut self, prefix: String, no_capacity: Vec<Window>) -> Self {
        self.prefix = prefix;
        self.no_capacity = no_capacity;
        self
    }

    /// A call under fencing token `token` reaches the cloud: refused (a
    /// [`ProviderError::fenced`]) when the cloud checks tokens and has served a larger one,
    /// else served.
    fn admit(&mut self, token: Term) -> Option<ProviderError> {
        if !self.fencing {
            return None;
        }
        if token < self.highest_token {
            self.stats.token_refusals += 1;
            return Some(ProviderError::fenced(format!(
                "token {token} is below {}, already served",
                self.highest_token
            )));
        }
        self.highest_token = token;
        None
    }

    fn in_outage(&self) -> bool {
        self.outages.iter().any(|w| w.contains_ms(self.t))
    }

    /// The live instances: `(resource_id, worker_id, created_at)`, sorted by resource id.
    pub fn live(&self) -> Vec<(String, WorkerId, Timestamp)> {
        self.instances
            .values()
            .map(|i| (i.resource_id.clone(), i.worker_id, i.created_at))
            .collect()
    }

    /// Whether the instance of `worker` still exists.
    pub fn has_worker(&self, worker: &WorkerId) -> bool {
        self.by_worker.contains_key(worker)
    }

    pub(crate) fn remove(&mut self, resource_id: &str) -> Option<Instance> {
        let inst = self.instances.remove(resource_id)?;
        self.by_worker.remove(&inst.worker_id);
        Some(inst)
    }

    pub(crate) fn instance_of(&mut self, worker: &WorkerId) -> Option<&mut Instance> {
        let key = self.by_worker.get(worker)?;
        self.instances.get_mut(key)
    }

    /// Draws the next heartbeat time after `t` for `inst`.
    pub(crate) fn next_heartbeat(agents: &AgentModel, rng: &mut SimRng, t: u64) -> u64 {
        let jitter = agents.heartbeat_jitter_secs;
        let gap = (agents.heartbeat_interval_secs + rng.range(-jitter, jitter)).max(0.001);
        t + super::scenario::secs_to_ms(gap).max(1)
    }

    fn create(&mut self, worker_id: WorkerId) -> CreateOutcome {
        let mut rng = SimRng::keyed(self.seed, STREAM_CREATE, self.create_calls);
        self.create_calls += 1;
        let panic = rng.bernoulli(self.model.panic_probability);
        let fail = rng.bernoulli(self.model.create_failure_probability);
        if self.in_outage() {
            self.stats.create_failures += 1;
            return CreateOutcome::Fail("provider outage: API unavailable (503)".into());
        }
        if self.no_capacity.iter().any(|w| w.contains_ms(self.t)) {
            self.stats.create_failures += 1;
            self.stats.no_capacity += 1;
            return CreateOutcome::NoCapacity;
        }
        if panic {
            self.stats.panics += 1;
            return CreateOutcome::Panic;
        }
        if fail {
            self.stats.create_failures += 1;
            return CreateOutcome::Fail("quota exceeded (simulated)".into());
        }
        let index = self.next_index;
        self.next_index += 1;
        let mut irng = SimRng::keyed(self.seed, STREAM_INSTANCE, index);
        // The id comes from the manager now; the draw that used to make it is kept, so that an
        // instance's boot and connect times stay what they were for a seed.
        let _ = irng.bytes16();
        let slow = irng.bernoulli(self.model.slow_boot_probability);
        let boot = if slow {
            self.model.slow_boot.sample_ms(&mut irng)
        } else {
            self.model.boot.sample_ms(&mut irng)
        };
        let connect = self.agents.connect.sample_ms(&mut irng);
        let partition_key = irng.uniform();
        let resource_id = format!("{}i-{index:06}", self.prefix);
        let boot_at = self.t + boot;
        let inst = Instance {
            resource_id: resource_id.clone(),
            worker_id,
            created_at: self.clock.now(),
            boot_at,
            ready_at: boot_at + connect,
            told: Told::Nothing,
            crashed: false,
            agent_gone: false,
            next_heartbeat: 0,
            job: None,
            finished: None,
            destroy_attempts: 0,
            partition_key,
            reclaim_at: None,
            index,
            rng: irng,
        };
        self.stats.created += 1;
        self.by_worker.insert(worker_id, resource_id.clone());
        self.instances.insert(resource_id.clone(), inst);
        CreateOutcome::Created(WorkerHandle {
            worker_id,
            provider_id: self.provider_id.clone(),
            provider_type: ProviderType::Ec2,
            resource_id,
            metadata: BTreeMap::new(),
        })
    }

    fn destroy(&mut self, handle: &WorkerHandle) -> DestroyOutcome {
        let Some(inst) = self.instances.get_mut(&handle.resource_id) else {
            // Vanished, or destroyed before: already gone, which confirms the destroy.
            return DestroyOutcome::NotFound;
        };
        inst.destroy_attempts += 1;
        let mut rng = SimRng::keyed(
            self.seed,
            STREAM_DESTROY,
            inst.index
                .wrapping_mul(1 << 20)
                .wrapping_add(inst.destroy_attempts),
        );
        let panic = rng.bernoulli(self.model.panic_probability);
        let fail = rng.bernoulli(self.model.destroy_failure_probability);
        if self.in_outage() {
            self.stats.destroy_failures += 1;
            return DestroyOutcome::Fail("provider outage: API unavailable (503)".into());
        }
        if panic {
            self.stats.panics += 1;
            return DestroyOutcome::Panic;
        }
        if fail {
            self.stats.destroy_failures += 1;
            return DestroyOutcome::Fail("instance is locked (simulated)".into());
        }
        let rid = handle.resource_id.clone();
        self.remove(&rid);
        self.stats.destroyed += 1;
        DestroyOutcome::Destroyed
    }
}

enum CreateOutcome {
    Created(WorkerHandle),
    Fail(String),
    NoCapacity,
    Panic,
}

enum DestroyOutcome {
    Destroyed,
    NotFound,
    Fail(String),
    Panic,
}

/// The message of every panic the simulated provider raises on purpose (a CLI can silence
/// them in its panic hook).
pub const SIM_PANIC_MESSAGE: &str = "simulated provider panic";

/// The [`WorkerProvider`] of the simulated [`Cloud`]: creates instances that boot after a
/// drawn delay, fails, panics and is unreachable during outages, as the scenario says.
///
/// Panics are raised after the cloud's lock is released, like a real provider whose client
/// library blows up.
#[derive(Debug, Clone)]
pub struct SimProvider {
    cloud: Arc<Mutex<Cloud>>,
    id: ProviderId,
}

impl SimProvider {
    pub(crate) fn new(cloud: Arc<Mutex<Cloud>>, id: ProviderId) -> Self {
        SimProvider { cloud, id }
    }
}

impl WorkerProvider for SimProvider {
    fn provider_id(&self) -> ProviderId {
        self.id.clone()
    }

    fn provider_type(&self) -> ProviderType {
        ProviderType::Ec2
    }

    fn create_worker(
        &self,
        id: WorkerId,
        _spec: &WorkerSpec,
    ) -> Result<WorkerHandle, ProviderError> {
        let outcome = self.cloud.lock().create(id);
        created(outcome)
    }

    fn create_worker_fenced(
        &self,
        token: Term,
        id: WorkerId,
        _spec: &WorkerSpec,
    ) -> Result<WorkerHandle, ProviderError> {
        let outcome = {
            let mut cloud = self.cloud.lock();
            if let Some(refused) = cloud.admit(token) {
                return Err(refused);
            }
            cloud.create(id)
        };
        created(outcome)
    }

    fn destroy_worker(&self, handle: &WorkerHandle) -> Result<(), ProviderError> {
        let outcome = self.cloud.lock().destroy(handle);
        destroyed(outcome, handle)
    }

    fn destroy_worker_fenced(
        &self,
        token: Term,
        handle: &WorkerHandle,
    ) -> Result<(), ProviderError> {
        let outcome = {
            let mut cloud = self.cloud.lock();
            if let Some(refused) = cloud.admit(token) {
                return Err(refused);
            }
            cloud.destroy(handle)
        };
        destroyed(outcome, handle)
    }

    fn list_workers(&self) -> Result<Vec<WorkerHandle>, ProviderError> {
        let cloud = self.cloud.lock();
        if !cloud.model.supports_list {
            return Err(ProviderError::unsupported("list_workers"));
        }
        if cloud.in_outage() {
            return Err(ProviderError::new("provider outage: API unavailable (503)"));
        }
        Ok(cloud
            .instances
            .values()
            .map(|i| WorkerHandle {
                worker_id: i.worker_id,
                provider_id: cloud.provider_id.clone(),
                provider_type: ProviderType::Ec2,
                resource_id: i.resource_id.clone(),
                metadata: BTreeMap::new(),
            })
            .collect())
    }
}

/// A create's outcome as the provider's answer (a panic raised here, after the cloud's lock
/// is released).
fn created(outcome: CreateOutcome) -> Result<WorkerHandle, ProviderError> {
    match outcome {
        CreateOutcome::Created(h) => Ok(h),
        CreateOutcome::Fail(msg) => Err(ProviderError::new(msg)),
        CreateOutcome::NoCapacity => Err(ProviderError::no_capacity(
            "no capacity for this instance type (simulated)",
        )),
        CreateOutcome::Panic => panic!("{SIM_PANIC_MESSAGE} in create_worker"),
    }
}

/// A destroy's outcome as the provider's answer, as [`created`].
fn destroyed(outcome: DestroyOutcome, handle: &WorkerHandle) -> Result<(), ProviderError> {
    match outcome {
        DestroyOutcome::Destroyed => Ok(()),
        DestroyOutcome::NotFound => Err(ProviderError::not_found(format!(
            "no instance {}",
            handle.resource_id
        ))),
        DestroyOutcome::Fail(msg) => Err(ProviderError::new(msg)),
        DestroyOutcome::Panic => panic!("{SIM_PANIC_MESSAGE} in destroy_worker"),
    }
}
