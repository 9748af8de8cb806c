//! The server process: spawn (no shell, own process group), readiness under one deadline, a
//! bounded log tail, and stop (SIGTERM to the group → grace → SIGKILL, always reaped).
//!
//! Knows nothing about configurations or metrics: it runs what a `LaunchPlan` says.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::LaunchPlan;

/// Lines of server output kept for classifying failures.
const LOG_TAIL_LINES: usize = 400;

/// Failures to start the process at all. These are infrastructure errors: they end a study.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("'{program}' could not be spawned")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no free loopback port")]
    Port(#[source] std::io::Error),
}

/// Why a server did not become ready.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotReady {
    /// The process exited (code, or `None` when killed by a signal).
    #[error("the server exited while starting (exit code {})", .0.map_or("none, killed by a signal".to_string(), |c| c.to_string()))]
    Exited(Option<i32>),
    /// Still running, but no 200 before the deadline.
    #[error("the server did not answer its health check within {0:?}")]
    Timeout(Duration),
}

/// Bounded tail of a process's stdout and stderr, shared with the reader tasks.
#[derive(Clone, Default)]
pub struct LogTail(Arc<Mutex<VecDeque<String>>>);

impl LogTail {
    fn push(&self, line: String) {
        let mut q = self.0.lock().expect("log tail lock is never poisoned");
        if q.len() == LOG_TAIL_LINES {
            q.pop_front();
        }
        q.push_back(line);
    }

    /// The kept lines, oldest first.
    pub fn text(&self) -> String {
        let q = self.0.lock().expect("log tail lock is never poisoned");
        q.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A running server process.
pub struct Server {
    child: Child,
    pid: u32,
    pub port: u16,
    pub log: LogTail,
    pub started: Instant,
}

/// Reserve a free loopback port by binding port 0 and releasing it.
pub fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::Port)?;
    Ok(listener.local_addr().map_err(Error::Port)?.port())
}

fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(stream: R, log: LogTail) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::trace!(target: "infertune::server", "{line}");
            log.push(line);
        }
    });
}

impl Server {
    /// Start `plan` with `extra_args` appended (the loopback bind), no shell, in its own group.
    pub fn spawn(plan: &LaunchPlan, extra_args: &[String], port: u16) -> Result<Server, Error> {
        let mut cmd = Command::new(&plan.program);
        cmd.args(&plan.args)
            .args(extra_args)
            .envs(&plan.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // If the daemon dies (even by kill -9), the kernel kills the server instead of
        // orphaning it. A daemon that died between fork and prctl is caught by the ppid check.
        let parent = std::process::id();
        // SAFETY: prctl, getppid and _exit are async-signal-safe; nothing else runs here.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| Error::Spawn { program: plan.program.clone(), source })?;
        let pid = child.id().expect("a just-spawned child has a pid");
        let log = LogTail::default();
        spawn_reader(child.stdout.take().expect("stdout is piped"), log.clone());
        spawn_reader(child.stderr.take().expect("stderr is piped"), log.clone());
        tracing::debug!(pid, port, program = %plan.program, args = ?plan.args, "server spawned");
        Ok(Server { child, pid, port, log, started: Instant::now() })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Base URL of the server.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The exit status if the process exits within `wait` (a server that just cut its
    /// streams may need a moment to finish dying).
    pub async fn exited_within(&mut self, wait: Duration) -> Option<ExitStatus> {
        match tokio::time::timeout(wait, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => None,
        }
    }

    /// Poll `path` until it answers 200, the process exits, or `deadline` passes.
    /// Returns the time from spawn to ready.
    pub async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        path: &str,
        deadline: Duration,
    ) -> Result<Duration, NotReady> {
        let url = format!("{}{}", self.url(), path);
        let until = self.started + deadline;
        loop {
            if let Some(status) = self.exited() {
                // Let the reader tasks drain the last lines before anyone reads the tail.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(NotReady::Exited(status.code()));
            }
            let probe = client.get(&url).timeout(Duration::from_secs(2)).send().await;
            if let Ok(resp) = probe
                && resp.status().is_success()
            {
                return Ok(self.started.elapsed());
            }
            if Instant::now() >= until {
                return Err(NotReady::Timeout(deadline));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stop the process group: SIGTERM, wait up to `grace`, then SIGKILL; always reap.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            kill_group(self.pid, libc::SIGKILL); // children may outlive the leader
            return Some(status);
        }
        kill_group(self.pid, libc::SIGTERM);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::warn!(pid = self.pid, ?grace, "server ignored SIGTERM; killing");
                kill_group(self.pid, libc::SIGKILL);
                self.child.wait().await.ok()
            }
        };
        kill_group(self.pid, libc::SIGKILL);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server dropped without `stop` (a panic, a cancelled task) must not outlive us.
        if self.child.try_wait().ok().flatten().is_none() {
            kill_group(self.pid, libc::SIGKILL);
        }
    }
}

fn kill_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals the process group we created at spawn.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), signal);
    }
}
