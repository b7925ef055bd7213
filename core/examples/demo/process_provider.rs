//! `ProcessProvider`: a [`WorkerProvider`] whose workers are local OS processes (this binary in
//! agent mode). Create = spawn, destroy = kill + wait.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use crossbeam_channel::Sender;
use hodei_workers::*;
use parking_lot::Mutex;

/// A line an agent wrote, or the end of its output.
#[derive(Debug)]
pub enum AgentMsg {
    Line(String),
    Exited,
}

struct Agent {
    child: Child,
    stdin: ChildStdin,
}

/// Spawns agents and keeps their pipes. Every agent runs in its own process group, so a kill
/// also takes the `sh` commands it may be running: nothing outlives its worker.
pub struct ProcessProvider {
    id: ProviderId,
    kind: ProviderType,
    exe: PathBuf,
    agents: Mutex<BTreeMap<WorkerId, Agent>>,
    /// Every process group ever spawned (pgid = the agent's pid), for the final leak check.
    spawned: Mutex<Vec<u32>>,
    messages: Sender<(WorkerId, AgentMsg)>,
}

impl std::fmt::Debug for ProcessProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessProvider")
            .field("id", &self.id)
            .field("agents", &self.agents.lock().len())
            .finish()
    }
}

impl ProcessProvider {
    pub fn new(id: ProviderId, messages: Sender<(WorkerId, AgentMsg)>) -> Result<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::invalid(format!("cannot find the demo binary: {e}")))?;
        Ok(ProcessProvider {
            id,
            kind: ProviderType::custom("process")?,
            exe,
            agents: Mutex::new(BTreeMap::new()),
            spawned: Mutex::new(Vec::new()),
            messages,
        })
    }

    /// Sends a job to a worker's agent. Fails when its process is gone (broken pipe).
    pub fn send(&self, worker: &WorkerId, line: &str) -> std::io::Result<()> {
        let mut agents = self.agents.lock();
        let agent = agents
            .get_mut(worker)
            .ok_or_else(|| std::io::Error::other("no such agent"))?;
        writeln!(agent.stdin, "{line}")?;
        agent.stdin.flush()
    }

    /// The chaos monkey: kills a worker's processes behind the manager's back (the record
    /// stays, as after a real crash; the manager's destroy reaps the process later).
    pub fn crash(&self, worker: &WorkerId) -> Option<u32> {
        let agents = self.agents.lock();
        let pid = agents.get(worker)?.child.id();
        kill_group(pid);
        Some(pid)
    }

    /// Agents still known (not destroyed).
    pub fn live_agents(&self) -> usize {
        self.agents.lock().len()
    }

    /// Process groups with a process still alive: should be none at the end.
    pub fn leaked_groups(&self) -> Vec<u32> {
        self.spawned
            .lock()
            .iter()
            .copied()
            .filter(|pgid| group_alive(*pgid))
            .collect()
    }

    /// Kills and reaps every agent still known (the last resort on error or panic).
    pub fn kill_all(&self) -> usize {
        let agents = std::mem::take(&mut *self.agents.lock());
        let n = agents.len();
        for (_, agent) in agents {
            reap(agent);
        }
        n
    }
}

impl Drop for ProcessProvider {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Runs the shell's `kill` builtin (present wherever `sh` is, unlike a `kill` binary), without
/// `unsafe` signal calls.
fn shell_kill(args: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("kill {args}"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// SIGKILL to the whole process group (the agent and any `sh` it runs).
fn kill_group(pgid: u32) {
    shell_kill(&format!("-9 -{pgid}"));
}

/// Whether any process of the group is alive (`kill -0` on the group).
fn group_alive(pgid: u32) -> bool {
    shell_kill(&format!("-0 -{pgid}"))
}

fn reap(mut agent: Agent) {
    kill_group(agent.child.id());
    let _ = agent.child.kill();
    let _ = agent.child.wait();
}

impl WorkerProvider for ProcessProvider {
    fn provider_id(&self) -> ProviderId {
        self.id.clone()
    }

    fn provider_type(&self) -> ProviderType {
        self.kind.clone()
    }

    fn create_worker(
        &self,
        worker_id: WorkerId,
        _spec: &WorkerSpec,
    ) -> ProviderResult<WorkerHandle> {
        let mut handle = WorkerHandle {
            worker_id,
            ..WorkerHandle::new(self.id.clone(), self.kind.clone(), "")
        };
        // The agent starts knowing its worker id: it reports in and heartbeats with it.
        let mut child = Command::new(&self.exe)
            .arg("--agent")
            .env(super::agent::WORKER_ID_VAR, worker_id.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|e| ProviderError::new(format!("spawn failed: {e}")))?;
        let pid = child.id();
        self.spawned.lock().push(pid);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            kill_group(pid);
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProviderError::new("agent pipes missing"));
        };
        let messages = self.messages.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if messages.send((worker_id, AgentMsg::Line(line))).is_err() {
                    return;
                }
            }
            let _ = messages.send((worker_id, AgentMsg::Exited));
        });
        self.agents.lock().insert(worker_id, Agent { child, stdin });
        handle.resource_id = format!("pid-{pid}");
        handle.metadata.insert("pid".to_owned(), pid.to_string());
        Ok(handle)
    }

    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
        let agent = self.agents.lock().remove(&handle.worker_id);
        match agent {
            Some(agent) => {
                reap(agent);
                Ok(())
            }
            None => Err(ProviderError::not_found(format!(
                "no agent process for {}",
                handle.resource_id
            ))),
        }
    }

    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        Ok(self
            .agents
            .lock()
            .iter()
            .map(|(id, agent)| {
                let h = WorkerHandle::new(
                    self.id.clone(),
                    self.kind.clone(),
                    format!("pid-{}", agent.child.id()),
                );
                WorkerHandle {
                    worker_id: *id,
                    ..h
                }
            })
            .collect())
    }
}
