//! The worker side: a tiny agent that talks to the host over its stdin/stdout pipes.
//!
//! The agent learns its worker id from the environment (`HODEI_WORKER_ID`, set by the provider
//! from the id the manager passed to `create_worker`) and reports in and heartbeats with it,
//! as an agent on another machine would over the network.
//!
//! Protocol, one line each way:
//! - agent → host: `hello <worker-id>`, `hb <worker-id>`, `output <job> <text>`,
//!   `done <job> <exit-code>`;
//! - host → agent: `run <job> sleep <ms>` or `run <job> sh <command…>`.

use std::io::{BufRead, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The environment variable that carries the agent's worker id.
pub const WORKER_ID_VAR: &str = "HODEI_WORKER_ID";

/// How often the agent heartbeats (the host's heartbeat timeout is 1.5 s).
const HEARTBEAT_EVERY: Duration = Duration::from_millis(300);

/// One writer for the heartbeat thread and the job threads, so that lines never interleave.
#[derive(Clone)]
struct Out(Arc<Mutex<std::io::Stdout>>);

impl Out {
    /// Writes one line; the host is gone when that fails, and so the agent goes too.
    fn say(&self, line: &str) {
        let mut out = match self.0.lock() {
            Ok(out) => out,
            Err(poisoned) => poisoned.into_inner(),
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            std::process::exit(1);
        }
    }
}

pub fn run(worker_id: &str) -> ExitCode {
    if worker_id.is_empty() {
        eprintln!("usage: {WORKER_ID_VAR}=<worker-id> demo --agent");
        return ExitCode::from(2);
    }
    let out = Out(Arc::new(Mutex::new(std::io::stdout())));
    out.say(&format!("hello {worker_id}"));
    let beat = out.clone();
    let hb = format!("hb {worker_id}");
    std::thread::spawn(move || loop {
        std::thread::sleep(HEARTBEAT_EVERY);
        beat.say(&hb);
    });
    // The host owns our stdin: when it closes (the host exited or crashed) we exit too, so no
    // agent outlives its host.
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut parts = line.splitn(4, ' ');
        let (Some("run"), Some(job), Some(kind), Some(arg)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            eprintln!("agent {worker_id}: cannot parse {line:?}");
            continue;
        };
        let (job, kind, arg) = (job.to_owned(), kind.to_owned(), arg.to_owned());
        let out = out.clone();
        std::thread::spawn(move || {
            let code = match kind.as_str() {
                "sleep" => {
                    let ms = arg.parse().unwrap_or(100);
                    std::thread::sleep(Duration::from_millis(ms));
                    0
                }
                "sh" => match Command::new("sh")
                    .arg("-c")
                    .arg(&arg)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                {
                    Ok(output) => {
                        let text = String::from_utf8_lossy(&output.stdout);
                        if let Some(first) = text.lines().next() {
                            out.say(&format!("output {job} {first}"));
                        }
                        output.status.code().unwrap_or(-1)
                    }
                    Err(e) => {
                        eprintln!("agent: cannot run sh: {e}");
                        127
                    }
                },
                other => {
                    eprintln!("agent: unknown job kind {other:?}");
                    2
                }
            };
            out.say(&format!("done {job} {code}"));
        });
    }
    ExitCode::SUCCESS
}
