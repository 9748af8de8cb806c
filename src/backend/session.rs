//! The server session: the one place a backend is started, for every command (`tune`,
//! `capacity`, the quality guard, `compare`, `validate`).
//!
//! A session owns spawn or service mode, readiness (health, and the model listed where the
//! backend says so), the model preload (where the backend has one), the request target (URL and
//! model name, from the backend) and shutdown. Between trials it keeps the server running and
//! decides per plan whether the next trial reuses it, reloads the model, or needs a restart
//! ([`Launch::between`]). What it does not own: measuring (the daemon's probe and workload) and
//! recording.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context;
use tracing::warn;

use super::process::{self, NotReady, Server};
use super::service::{ServiceFile, wait_url};
use super::{Backend, Failure, FailureClass, Launch, LaunchPlan, STOP_GRACE};
use crate::measure::probe::fetch_text;
use crate::shutdown::Shutdown;
use crate::workload::Target;

/// A server ready for a trial's workload.
#[derive(Debug, Clone)]
pub struct Ready {
    pub target: Target,
    pub launch: Launch,
    /// Spawn (or service restart) → ready, in ms; `None` when the server was reused.
    pub ready_ms: Option<f64>,
    /// The model load the trial waited for (Ollama's preload), in ms; `None` for servers that
    /// load at start.
    pub load_ms: Option<f64>,
}

/// How bringing up a server for a plan ended. Only infrastructure failures are errors.
#[derive(Debug)]
pub enum Start {
    Ready(Ready),
    /// The configuration could not be served: a classified result, in the server's own words.
    Failed {
        failure: Failure,
        launch: Launch,
        ready_ms: Option<f64>,
    },
    /// A stop was requested while waiting; the server is already stopped.
    Interrupted {
        launch: Launch,
    },
}

/// The server the last plan used, kept for the next one.
struct Running {
    /// The process, in spawn mode; `None` when a service manager runs the server.
    server: Option<Server>,
    /// The plan last served (what [`Launch::between`] compares against).
    plan: LaunchPlan,
    base_url: String,
}

/// Service mode: the user's env file (put back when the session ends) and the service's URL.
struct Service {
    file: ServiceFile,
    url: String,
}

/// One backend's servers over a command's life.
pub struct ServerSession<'a> {
    backend: &'a dyn Backend,
    client: reqwest::Client,
    running: Option<Running>,
    service: Option<Service>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl<'a> ServerSession<'a> {
    /// A session for `backend`: service mode when the backend runs under a service manager
    /// (its env file is remembered now and put back when the session ends), else spawn mode.
    pub fn open(backend: &'a dyn Backend, client: reqwest::Client) -> anyhow::Result<ServerSession<'a>> {
        let service = match backend.service() {
            Some(spec) => Some(Service { file: ServiceFile::open(&spec)?, url: spec.url }),
            None => None,
        };
        Ok(ServerSession { backend, client, running: None, service })
    }

    /// What serving `plan` next would take, from the running server.
    pub fn launch_for(&self, plan: &LaunchPlan) -> Launch {
        Launch::between(self.running.as_ref().map(|r| &r.plan), plan, self.backend.reload_options())
    }

    /// Serve `plan`: reuse the running server, reload its model, or (re)start it, then wait until
    /// it is ready and preload the model where the backend wants that.
    pub async fn start(&mut self, plan: &LaunchPlan, shutdown: &Shutdown) -> anyhow::Result<Start> {
        let launch = self.launch_for(plan);
        let mut ready_ms = None;
        if launch == Launch::Restart {
            self.close(shutdown).await;
            let started = match self.service.is_some() {
                true => self.restart_service(plan).await?,
                false => self.spawn(plan, shutdown).await?,
            };
            match started {
                Ok(ready) => ready_ms = Some(ms(ready)),
                Err(Some(failure)) => return Ok(Start::Failed { failure, launch, ready_ms: None }),
                Err(None) => return Ok(Start::Interrupted { launch }),
            }
        }
        let running = self.running.as_mut().expect("a server runs after a restart or a reuse");
        running.plan = plan.clone();
        let target = Target {
            protocol: self.backend.protocol(),
            base_url: running.base_url.clone(),
            model: self.backend.request_model(plan),
            options: plan.request_options.clone(),
        };
        match self.backend.preload(&self.client, &target, plan).await {
            Ok(load) => Ok(Start::Ready(Ready { target, launch, ready_ms, load_ms: load.map(ms) })),
            Err(failure) => {
                if self.has_exited().is_some() {
                    self.close(shutdown).await;
                }
                Ok(Start::Failed { failure, launch, ready_ms })
            }
        }
    }

    /// Spawn `plan` on a free loopback port and wait for it. `Err(None)`: interrupted.
    async fn spawn(
        &mut self,
        plan: &LaunchPlan,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Result<Duration, Option<Failure>>> {
        let backend = self.backend;
        let port = process::free_port()?;
        let mut spawned = plan.clone();
        spawned.env.extend(backend.bind_env(port));
        let mut server = Server::spawn(&spawned, &backend.bind_args(port), port)
            .context("starting the backend (check [backend] command)")?;
        let deadline = backend.spec().ready_timeout;
        let model = backend.request_model(plan);
        let ready = tokio::select! {
            r = wait_ready(&mut server, &self.client, backend, &model, deadline) => r,
            _ = shutdown.graceful.cancelled() => {
                stop(server, shutdown).await;
                return Ok(Err(None));
            }
        };
        match ready {
            Ok(ready) => {
                self.running = Some(Running { base_url: server.url(), server: Some(server), plan: plan.clone() });
                Ok(Ok(ready))
            }
            Err(not_ready) => {
                let exited = matches!(not_ready, NotReady::Exited(_));
                let log = server.log.clone();
                stop(server, shutdown).await;
                Ok(Err(Some(backend.classify(&log.text(), exited))))
            }
        }
    }

    /// Service mode: write the plan's variables into the user's file, run their restart command,
    /// and wait for the service to answer.
    async fn restart_service(&mut self, plan: &LaunchPlan) -> anyhow::Result<Result<Duration, Option<Failure>>> {
        let service = self.service.as_mut().expect("service mode");
        let note = plan.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        service.file.apply(&plan.env, &note).await?;
        let deadline = self.backend.spec().ready_timeout;
        let Some(ready) = wait_url(&self.client, &format!("{}/", service.url), deadline).await else {
            let message =
                format!("the service did not answer at '{}/' within {deadline:?} after the restart", service.url);
            return Ok(Err(Some(Failure { class: FailureClass::NeverReady, message })));
        };
        self.running = Some(Running { server: None, plan: plan.clone(), base_url: service.url.clone() });
        Ok(Ok(ready))
    }

    /// PID of the server process this session spawned (recorded so a resume can reap it).
    pub fn spawned_pid(&self) -> Option<u32> {
        self.running.as_ref()?.server.as_ref().map(Server::pid)
    }

    /// PID whose process tree's memory is the server's: the spawned process, or in service mode
    /// the process listening on the service's port (when its `/proc` entries are readable).
    pub fn memory_pid(&self) -> Option<u32> {
        let running = self.running.as_ref()?;
        match &running.server {
            Some(server) => Some(server.pid()),
            None => reqwest::Url::parse(&running.base_url)
                .ok()
                .and_then(|u| u.port_or_known_default())
                .and_then(crate::measure::system::listening_pid),
        }
    }

    /// The exit status, if the spawned server has exited.
    pub fn has_exited(&mut self) -> Option<ExitStatus> {
        self.running.as_mut()?.server.as_mut()?.exited()
    }

    /// Whether the spawned server died during a workload, waiting up to `settle` for it to show
    /// (failed requests may mean it is dying). Then the server is stopped and the failure is
    /// classified from its log.
    pub async fn crash_after_workload(&mut self, settle: Duration, shutdown: &Shutdown) -> Option<Failure> {
        let server = self.running.as_mut()?.server.as_mut()?;
        let status = server.exited_within(settle).await?;
        // Let the reader tasks drain the last log lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let log = server.log.text();
        self.close(shutdown).await;
        let failure = self.backend.classify(&log, true);
        let message = format!("server exited during the workload ({status}): {}", failure.message);
        Some(Failure { class: failure.class, message })
    }

    /// Stop the server this session started, if any (a service keeps running).
    pub async fn close(&mut self, shutdown: &Shutdown) {
        if let Some(server) = self.running.take().and_then(|r| r.server) {
            stop(server, shutdown).await;
        }
    }

    /// End the session. In service mode the user's file is put back (or, with `deploy`, set to
    /// those variables; with `leave`, left as the last trial wrote it) and the service restarted;
    /// returns the file's path then.
    pub async fn finish(
        mut self,
        shutdown: &Shutdown,
        deploy: Option<&BTreeMap<String, String>>,
        leave: bool,
    ) -> anyhow::Result<Option<PathBuf>> {
        self.close(shutdown).await;
        let Some(service) = self.service.take() else { return Ok(None) };
        let path = service.file.path().to_path_buf();
        if leave {
            service.file.leave();
            return Ok(None);
        }
        service.file.finish(deploy).await?;
        Ok(Some(path))
    }
}

/// Health 200, then (where the backend asks) the model listed, under one deadline.
async fn wait_ready(
    server: &mut Server,
    client: &reqwest::Client,
    backend: &dyn Backend,
    model: &str,
    deadline: Duration,
) -> Result<Duration, NotReady> {
    let ready = server.wait_ready(client, backend.health_path(), deadline).await?;
    match backend.models_path() {
        Some(path) => wait_model_listed(server, client, path, model, deadline).await,
        None => Ok(ready),
    }
}

/// After `/health`, poll `path` (OpenAI `/v1/models`) until it lists `model`, under the same
/// deadline as the health check; a server that serves another model never counts as ready.
async fn wait_model_listed(
    server: &mut Server,
    client: &reqwest::Client,
    path: &str,
    model: &str,
    deadline: Duration,
) -> Result<Duration, NotReady> {
    let url = format!("{}{path}", server.url());
    loop {
        if let Some(status) = server.exited() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(NotReady::Exited(status.code()));
        }
        if let Some(text) = fetch_text(client, &url).await
            && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text)
            && doc["data"].as_array().is_some_and(|d| d.iter().any(|m| m["id"] == model))
        {
            return Ok(server.started.elapsed());
        }
        if server.started.elapsed() >= deadline {
            warn!(model, url = %url, "the server never listed the model");
            return Err(NotReady::Timeout(deadline));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stop a server: SIGTERM and its grace period, or SIGKILL at once after a second signal.
async fn stop(server: Server, shutdown: &Shutdown) {
    if shutdown.now.is_cancelled() {
        server.stop(Duration::ZERO).await;
        return;
    }
    tokio::select! {
        _ = server.stop(STOP_GRACE) => {},
        // Dropping the stop future drops the server, which SIGKILLs its process group.
        _ = shutdown.now.cancelled() => {},
    }
}
