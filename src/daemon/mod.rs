//! The study loop: the only place that wires the stages together.
//!
//! ```text
//! Strategy::propose → Backend::plan → Server::spawn/wait_ready → workload::run (+ RSS sampler)
//!   → measure::summarize → measure::judge → Store::finish_trial → Strategy::observe
//!   → (best changed) export::write_atomic
//! ```
//!
//! A bad configuration is a result: planning refusals, failed starts and crashes become
//! `infeasible` trials. Only infrastructure failures (store, missing program, no port) end a study.

pub mod bench;
pub mod capacity;
pub mod clock;
pub mod compare;
mod fingerprint;
pub mod lock;
mod ollama;
mod output;
pub mod prune;
mod quality;
pub mod replay;
pub mod signal;
pub mod validate;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::backend::{
    self, Backend, Launch, LaunchPlan,
    process::{self, NotReady, Server},
};
use crate::measure::{self, RequestSlo, system};
use crate::search;
use crate::space::{BackendKind, BackendMode, Candidate, Space};
use crate::store::{Finished, NewStudy, Store};
use crate::trial::{self, Fingerprint, Outcome, StageTimes, Study, Trial, TrialState};
use crate::workload::{self, Prompt, Protocol, Target};
use fingerprint::{Watch, check_model_files, drift_before_trial, fingerprint, fingerprint_drift};
use output::write_outputs;

pub use fingerprint::SkippedModel;
pub use signal::Shutdown;

/// How long a server gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often peak RSS is sampled during the workload.
const RSS_INTERVAL: Duration = Duration::from_millis(250);
/// How often a paused daemon (outside its window) wakes to check signals and the clock.
const PAUSE_TICK: Duration = Duration::from_secs(30);

/// Limits given on the command line; they narrow the space file's budget.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stop after this many finished trials in the study (counting earlier runs).
    pub max_trials: Option<u32>,
    /// Stop starting new trials after this long.
    pub max_duration: Option<Duration>,
    /// Stop starting new trials at this local time.
    pub until: Option<clock::TimeOfDay>,
    /// Start trials only inside this daily window; pause between trials outside it.
    pub window: Option<clock::Window>,
    /// Override the study name from the space file.
    pub study_name: Option<String>,
    /// Resume even though the space file changed (the changes are reported).
    pub force: bool,
    /// On a changed fingerprint, start a new study seeded with the old top configurations
    /// instead of stopping.
    pub retune_on_drift: bool,
    /// What a service-mode backend runs afterwards; `None` follows the space file
    /// (`[ollama] restore`).
    pub on_exit: Option<OnExit>,
    /// Answer trials from this recorded landscape instead of launching the backend.
    pub replay: Option<std::sync::Arc<replay::Replay>>,
    /// Drop template values whose model file is missing (said once by `Event::ModelsSkipped`)
    /// instead of refusing to start.
    pub skip_missing: bool,
}

/// What a service-mode backend runs once the study stops (spawned servers are always stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnExit {
    /// Put the original env file back and restart the service.
    Restore,
    /// Deploy the best trial meeting every SLO (the original if none does) and restart.
    Best,
    /// Leave the service as the last trial configured it.
    Leave,
}

/// Why a run of the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The trial budget is spent.
    Budget,
    /// The time budget (`--max-duration`, `--until`) is spent.
    Deadline,
    /// The strategy has nothing left to propose.
    Exhausted,
    /// Stopped by a signal.
    Interrupted,
    /// The environment no longer matches the study's fingerprint.
    Drift,
}

impl Stop {
    pub fn as_str(&self) -> &'static str {
        match self {
            Stop::Budget => "budget",
            Stop::Deadline => "deadline",
            Stop::Exhausted => "exhausted",
            Stop::Interrupted => "interrupted",
            Stop::Drift => "drift",
        }
    }
}

/// What the loop reports as it goes (the CLI turns these into progress lines).
#[derive(Debug)]
pub enum Event<'a> {
    /// A study was created or resumed (`resumed` = trials already stored).
    Started { study: &'a Study, resumed: usize, interrupted: u64, planned: Option<u32> },
    /// The space file differs from the stored one and `--force` was given.
    SpaceChanged { diff: &'a str },
    /// Server processes left by a killed daemon were stopped.
    OrphansReaped { pids: &'a [u32] },
    /// Outside the window: no trial starts for `wait`.
    Paused { wait: Duration, window: clock::Window },
    /// A trial is about to launch.
    TrialStarted { number: i64, candidate: &'a Candidate, planned: Option<u32>, is_retry: bool },
    /// A trial is stored.
    TrialFinished { trial: &'a Trial, elapsed: Duration, is_new_best: bool },
    /// An output file was rewritten because the best trial changed.
    OutputWritten { path: &'a std::path::Path },
    /// The fingerprint changed.
    Drift { what: &'a str },
    /// A model the space needs is being pulled (`/api/pull` progress, sizes in bytes).
    Pulling { model: &'a str, status: &'a str, completed: Option<u64>, total: Option<u64> },
    /// Service mode: the env file was put back (or set to the best trial) and the service restarted.
    ServiceRestored { path: &'a std::path::Path, is_best: bool },
    /// `--skip-missing`: these template values were dropped because their model files do not exist.
    ModelsSkipped { skipped: &'a [SkippedModel] },
}

/// The result of one run of the loop.
#[derive(Debug)]
pub struct Report {
    pub study: Study,
    pub trials: Vec<Trial>,
    pub stop: Stop,
}

/// The parts every trial of a run shares.
struct Bench<'a> {
    space: &'a Space,
    backend: &'a dyn Backend,
    client: reqwest::Client,
    prompts: Vec<Prompt>,
    request_slo: RequestSlo,
    shutdown: &'a Shutdown,
    /// The quantization quality guard, when the space has a model-variant parameter.
    guard: Option<quality::Guard>,
}

impl<'a> Bench<'a> {
    /// The HTTP client, prompts and per-request SLOs for `space`; no quality guard.
    fn new(space: &'a Space, backend: &'a dyn Backend, shutdown: &'a Shutdown) -> anyhow::Result<Bench<'a>> {
        Ok(Bench {
            space,
            backend,
            client: reqwest::Client::builder()
                .no_proxy()
                // A fresh loopback connection per request (~0.1 ms): servers close kept-alive
                // connections on their own schedule (cpp-httplib after a few requests), and a
                // request sent on a connection the server just closed would fail without
                // reaching it.
                .pool_max_idle_per_host(0)
                .build()
                .context("building the HTTP client")?,
            prompts: workload::load_dataset(&space.workload.dataset)?,
            request_slo: RequestSlo::from_slos(&space.slos),
            shutdown,
            guard: None,
        })
    }
}

/// Run (or resume) the study described by `space` until a budget ends, the space is exhausted,
/// the fingerprint drifts, or `shutdown` is requested.
pub async fn tune(
    space: &Space,
    store: &Store,
    options: &Options,
    shutdown: &Shutdown,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<Report> {
    let replay = options.replay.as_deref();
    // Before anything starts: a typo in a model path must not cost the night (issue 13 item 8).
    let (checked, skipped) = match replay {
        Some(_) => (std::borrow::Cow::Borrowed(space), Vec::new()),
        None => check_model_files(space, options.skip_missing)?,
    };
    let space: &Space = &checked;
    if !skipped.is_empty() {
        on_event(Event::ModelsSkipped { skipped: &skipped });
    }
    let backend = backend::from_spec(&space.backend, &space.params);
    let name = options.study_name.clone().unwrap_or_else(|| space.name.clone());
    let mut bench = Bench::new(space, backend.as_ref(), shutdown)?;
    let fingerprint = match (replay, space.backend.kind) {
        (Some(replay), _) => replay.fingerprint(),
        (None, BackendKind::Ollama) => ollama::prepare(space, &bench.client, on_event).await?,
        (None, BackendKind::Llamacpp | BackendKind::Vllm) => fingerprint(space, backend.as_ref(), store).await?,
    };
    let mut seeds: Vec<Candidate> = Vec::new();

    let study = match store.study(&name).await? {
        Some(existing) => {
            if existing.space_toml != space.source {
                let diff = line_diff(&existing.space_toml, &space.source);
                if !options.force {
                    bail!(
                        "study '{name}' was started with a different search space; \
                         resume with --force to accept the changes, or pick another name with --name\n{diff}"
                    );
                }
                on_event(Event::SpaceChanged { diff: &diff });
            }
            let drift = fingerprint_drift(&existing.fingerprint, &fingerprint);
            if !drift.is_empty() {
                let what = drift.join("; ");
                if !options.retune_on_drift {
                    bail!(
                        "the environment changed since study '{name}' started ({what}); its \
                         figures would not be comparable. Re-run with --retune-on-drift to start a \
                         linked study seeded with its best configurations"
                    );
                }
                on_event(Event::Drift { what: &what });
                let old_trials = store.trials(existing.id).await?;
                seeds = top_candidates(&old_trials, &existing, 5);
                let new_name = next_free_name(store, &format!("{name}-retune")).await?;
                create_study(store, space, &new_name, &fingerprint).await?
            } else {
                existing
            }
        }
        None => create_study(store, space, &name, &fingerprint).await?,
    };

    // A daemon killed mid-trial left its trial `running`, maybe with its server alive.
    let orphans = store.orphan_server_pids(study.id).await?;
    let reaped = reap_orphans(&orphans, &space.backend.command[0]);
    if !reaped.is_empty() {
        on_event(Event::OrphansReaped { pids: &reaped });
    }
    let interrupted = store.mark_interrupted(study.id).await?;
    let mut trials = store.trials(study.id).await?;
    let mut strategy = search::from_space(space);
    for t in trials.iter().filter(|t| is_finished(t)) {
        strategy.observe(t);
    }
    // Interrupted trials are retried first; then the seeds of a re-tune; then the strategy.
    let mut queue: Vec<Candidate> = unfinished_params(&trials);
    queue.extend(seeds.into_iter().filter(|c| !trials.iter().any(|t| &t.params == c && is_finished(t))));

    let max_trials = options.max_trials.or(space.max_trials);
    let deadline = deadline(options.max_duration.or(space.max_duration), options.until);
    on_event(Event::Started { study: &study, resumed: trials.len(), interrupted, planned: max_trials });
    let run = store.begin_run(study.id, std::process::id(), max_trials, deadline.map(system_ms)).await?;

    if replay.is_none() {
        bench.guard = quality::prepare(space, backend.as_ref(), &bench.client).await?;
    }
    let mut session = Session {
        running: None,
        // Service mode: the user's env file, put back when the loop ends, however it ends.
        service: match (&space.backend.ollama, space.backend.mode, replay) {
            (Some(settings), BackendMode::Service, None) => Some(ollama::ServiceFile::open(settings)?),
            _ => None,
        },
    };
    let mut best_number = best_feasible(&trials, space);
    let mut watch = Watch::snapshot(space);

    let stop = loop {
        if max_trials.is_some_and(|m| trials.iter().filter(|t| is_finished(t)).count() >= m as usize) {
            break Stop::Budget;
        }
        if deadline.is_some_and(|d| SystemTime::now() >= d) {
            break Stop::Deadline;
        }
        if shutdown.is_requested() {
            break Stop::Interrupted;
        }
        if let Some(window) = options.window {
            let wait = window.until_open(clock::local_minutes(SystemTime::now()).0);
            if !wait.is_zero() {
                on_event(Event::Paused { wait, window });
                store.heartbeat(run).await?;
                tokio::select! {
                    _ = tokio::time::sleep(wait.min(PAUSE_TICK)) => {},
                    _ = shutdown.graceful.cancelled() => {},
                }
                continue;
            }
        }
        if replay.is_none()
            && let Some(what) = drift_before_trial(space, backend.as_ref(), &fingerprint, &mut watch, store).await?
        {
            on_event(Event::Drift { what: &what });
            break Stop::Drift;
        }
        let is_retry = !queue.is_empty();
        let candidate = if is_retry {
            queue.remove(0)
        } else {
            match strategy.propose(space) {
                Some(c) => c,
                None => break Stop::Exhausted,
            }
        };

        let (trial_id, number) = store.begin_trial(study.id, &candidate).await?;
        store.heartbeat(run).await?;
        on_event(Event::TrialStarted { number, candidate: &candidate, planned: max_trials, is_retry });
        let t0 = Instant::now();
        let span = info_span!("trial", study = %study.name, number, backend = %backend.kind());
        let result = match replay {
            Some(replay) => Ok(replay.answer(space, backend.as_ref(), &candidate)),
            None => run_trial(&bench, &mut session, Some((store, trial_id)), &candidate).instrument(span).await,
        };
        let result = match result {
            Ok(result) => result,
            Err(e) => {
                session.close(shutdown).await;
                return Err(e);
            }
        };

        // Persist now: a later crash must not lose this trial.
        store
            .finish_trial(
                trial_id,
                &Finished {
                    outcome: &result.outcome,
                    plan: result.plan.as_ref(),
                    stages: result.stages,
                    samples: &result.samples,
                },
            )
            .await
            .with_context(|| format!("recording trial {number} of study '{}'", study.name))?;
        trials = store.trials(study.id).await?;
        let stored = trials.iter().find(|t| t.id == trial_id).expect("a trial just written is readable").clone();
        if is_finished(&stored) {
            strategy.observe(&stored);
        }

        let new_best = best_feasible(&trials, space);
        let is_new_best = new_best.is_some() && new_best != best_number;
        on_event(Event::TrialFinished { trial: &stored, elapsed: t0.elapsed(), is_new_best });
        if is_new_best {
            best_number = new_best;
            write_outputs(space, &study, &stored, on_event)?;
        }
        if matches!(result.outcome, Outcome::Interrupted) {
            break Stop::Interrupted;
        }
    };
    if let Some(file) = session.service.take() {
        let path = file.path().to_path_buf();
        let on_exit = options.on_exit.unwrap_or(if space.backend.ollama.as_ref().is_some_and(|o| o.restore_best) {
            OnExit::Best
        } else {
            OnExit::Restore
        });
        session.close(shutdown).await;
        if on_exit == OnExit::Leave {
            file.leave();
        } else {
            let best_env = trial::best(&trials, space.objective.direction)
                .filter(|(_, feasible)| on_exit == OnExit::Best && *feasible)
                .and_then(|(t, _)| t.plan.as_ref().map(|p| p.deploy_env.clone()));
            file.finish(best_env.as_ref()).await?;
            on_event(Event::ServiceRestored { path: &path, is_best: best_env.is_some() });
        }
    }
    session.close(shutdown).await;
    store.end_run(study.id, run, stop.as_str()).await?;
    info!(study = %study.name, stop = stop.as_str(), trials = trials.len(), "study stopped");
    let study = store.study(&study.name).await?.expect("the study exists");
    Ok(Report { study, trials, stop })
}

fn is_finished(t: &Trial) -> bool {
    matches!(t.state, TrialState::Complete | TrialState::Infeasible | TrialState::Pruned)
}

fn best_feasible(trials: &[Trial], space: &Space) -> Option<i64> {
    trial::best(trials, space.objective.direction).filter(|(_, feasible)| *feasible).map(|(t, _)| t.number)
}

/// Params of interrupted trials that no later trial finished, in order: resume retries them.
fn unfinished_params(trials: &[Trial]) -> Vec<Candidate> {
    let mut queue: Vec<Candidate> = Vec::new();
    for t in trials {
        if t.state == TrialState::Interrupted {
            if !queue.contains(&t.params) {
                queue.push(t.params.clone());
            }
        } else if is_finished(t) {
            queue.retain(|c| c != &t.params);
        }
    }
    queue
}

/// The `n` best finished configurations of a study (feasible first, then least violating).
fn top_candidates(trials: &[Trial], study: &Study, n: usize) -> Vec<Candidate> {
    let mut ranked: Vec<&Trial> = trials.iter().filter(|t| is_finished(t) && t.violation.is_some()).collect();
    ranked.sort_by(|a, b| {
        let va = a.violation.expect("filtered");
        let vb = b.violation.expect("filtered");
        va.total_cmp(&vb).then_with(|| {
            let (x, y) = (a.objective.unwrap_or(f64::NAN), b.objective.unwrap_or(f64::NAN));
            match study.direction {
                crate::space::Direction::Maximize => y.total_cmp(&x),
                crate::space::Direction::Minimize => x.total_cmp(&y),
            }
        })
    });
    ranked.into_iter().take(n).map(|t| t.params.clone()).collect()
}

async fn create_study(store: &Store, space: &Space, name: &str, fingerprint: &Fingerprint) -> anyhow::Result<Study> {
    Ok(store
        .create_study(&NewStudy {
            name,
            backend: &space.backend.kind.to_string(),
            strategy: &format!("{:?}", space.strategy).to_lowercase(),
            objective_metric: &space.objective.metric,
            direction: space.objective.direction,
            space_toml: &space.source,
            fingerprint,
        })
        .await?)
}

async fn next_free_name(store: &Store, base: &str) -> anyhow::Result<String> {
    for k in 1.. {
        let name = format!("{base}-{k}");
        if store.study(&name).await?.is_none() {
            return Ok(name);
        }
    }
    unreachable!("some name is free")
}

/// The earlier of `now + max_duration` and the next `until`.
fn deadline(max_duration: Option<Duration>, until: Option<clock::TimeOfDay>) -> Option<SystemTime> {
    let now = SystemTime::now();
    let a = max_duration.map(|d| now + d);
    let b = until.map(|u| clock::next_occurrence(u, now));
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn system_ms(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Lines removed (`-`) and added (`+`), in file order; enough to say what changed.
fn line_diff(old: &str, new: &str) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let out: Vec<String> = similar::capture_diff_slices(similar::Algorithm::Myers, &old_lines, &new_lines)
        .iter()
        .flat_map(|op| op.iter_changes(&old_lines, &new_lines))
        .filter_map(|change| match change.tag() {
            similar::ChangeTag::Delete => Some(format!("- {}", change.value())),
            similar::ChangeTag::Insert => Some(format!("+ {}", change.value())),
            similar::ChangeTag::Equal => None,
        })
        .collect();
    // `lines()` hides line endings and a final newline.
    if out.is_empty() { "(only line endings changed)".into() } else { out.join("\n") }
}

/// Stop server processes recorded by trials a killed daemon left running. Only a process whose
/// command line still names the backend program is touched (PIDs get reused).
fn reap_orphans(pids: &[u32], program: &str) -> Vec<u32> {
    let name = std::path::Path::new(program).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut reaped = Vec::new();
    for &pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let is_ours = !name.is_empty()
            && (cmdline.contains(&name) || cmdline.contains("llama_server") || cmdline.contains("llama-server"));
        if is_ours {
            warn!(pid, "stopping a server left by a killed daemon");
            // SAFETY: kill(2) on the process group the server was started in, then the pid.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            reaped.push(pid);
        }
    }
    reaped
}

/// One trial's result, before it is stored.
struct TrialRun {
    outcome: Outcome,
    plan: Option<LaunchPlan>,
    stages: StageTimes,
    samples: Vec<measure::Sample>,
}

impl TrialRun {
    fn interrupted(plan: Option<LaunchPlan>, stages: StageTimes) -> TrialRun {
        TrialRun { outcome: Outcome::Interrupted, plan, stages, samples: Vec::new() }
    }

    fn infeasible(class: &str, message: String, plan: Option<LaunchPlan>, stages: StageTimes) -> TrialRun {
        info!(class, message = %message, "trial infeasible");
        TrialRun {
            outcome: Outcome::Infeasible { class: class.to_string(), message },
            plan,
            stages,
            samples: Vec::new(),
        }
    }
}

/// Stop a server: SIGTERM and its grace period, or SIGKILL at once after a second signal.
async fn stop_server(server: Server, shutdown: &Shutdown) {
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

/// The server the last trial used, kept for the next one.
struct Running {
    /// The process, in spawn mode; `None` when a service manager runs the server.
    server: Option<Server>,
    /// The plan of the last trial served (what `Launch::between` compares against).
    plan: LaunchPlan,
    base_url: String,
}

/// What lives across trials of one run: the running server (reused when only per-request
/// options change) and, in service mode, the user's env file.
struct Session {
    running: Option<Running>,
    service: Option<ollama::ServiceFile>,
}

impl Session {
    /// A session with no server yet, in spawn mode (compare, validate: fresh starts).
    fn fresh() -> Session {
        Session { running: None, service: None }
    }

    /// Stop the server this session started, if any.
    async fn close(&mut self, shutdown: &Shutdown) {
        if let Some(server) = self.running.take().and_then(|r| r.server) {
            stop_server(server, shutdown).await;
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Launch (or reuse) a server for one configuration and measure it; the server stays up in
/// `session` for the next trial. `record` names the stored trial, whose server PID is recorded
/// so a resume can reap it. `Err` only for infrastructure failures.
async fn run_trial(
    bench: &Bench<'_>,
    session: &mut Session,
    record: Option<(&Store, trial::TrialId)>,
    candidate: &Candidate,
) -> anyhow::Result<TrialRun> {
    let Bench { space, backend, client, prompts, request_slo, shutdown, guard } = bench;
    let guard = guard.as_ref();
    let plan = match backend.plan(candidate) {
        Ok(plan) => plan,
        Err(rejection) => {
            return Ok(TrialRun::infeasible("invalid-combination", rejection.message, None, StageTimes::default()));
        }
    };
    let launch = Launch::between(session.running.as_ref().map(|r| &r.plan), &plan, backend.reload_options());
    let mut stages = StageTimes { launch: Some(launch), ..StageTimes::default() };
    let request_model = backend.request_model(&plan).unwrap_or_else(|| match backend.kind() {
        BackendKind::Ollama => plan.model.clone(),
        _ => model_name(&plan.model),
    });
    let mut vram_before = None;
    if launch == Launch::Restart {
        session.close(shutdown).await;
        // GPU memory in use before this server starts (the previous trial's must have been freed).
        vram_before = if backend.samples_gpu() { measure::gpu::query(&plan.env).await } else { None };
        match session.service.as_mut() {
            Some(file) => {
                // Service mode: the user's file gets this trial's variables; their command restarts.
                file.apply(&plan.env, &candidate.brief()).await?;
                let url = space.backend.ollama.as_ref().expect("service mode is ollama").url.clone();
                let Some(ready) = ollama::wait_url(client, &format!("{url}/"), space.backend.ready_timeout).await
                else {
                    let message = format!(
                        "the service did not answer at '{url}/' within {:?} after the restart",
                        space.backend.ready_timeout
                    );
                    return Ok(TrialRun::infeasible("never-ready", message, Some(plan), stages));
                };
                stages.ready_ms = Some(ms(ready));
                session.running = Some(Running { server: None, plan: plan.clone(), base_url: url });
            }
            None => {
                let port = process::free_port()?;
                let mut spawned = plan.clone();
                spawned.env.extend(backend.bind_env(port));
                let mut server = match Server::spawn(&spawned, &backend.bind_args(port), port) {
                    Ok(server) => server,
                    Err(e) => return Err(e).context("starting the backend (check [backend] command)"),
                };
                let ready = tokio::select! {
                    r = async {
                        let ready = server.wait_ready(client, backend.health_path(), space.backend.ready_timeout).await?;
                        match backend.models_path() {
                            // Ready means the server lists the model too (vLLM /v1/models).
                            Some(path) => wait_model_listed(&mut server, client, path, &request_model, space.backend.ready_timeout).await,
                            None => Ok(ready),
                        }
                    } => r,
                    _ = shutdown.graceful.cancelled() => {
                        stop_server(server, shutdown).await;
                        return Ok(TrialRun::interrupted(Some(plan), stages));
                    }
                };
                match ready {
                    Ok(ready) => stages.ready_ms = Some(ms(ready)),
                    Err(not_ready) => {
                        let exited = matches!(not_ready, NotReady::Exited(_));
                        let log = server.log.clone();
                        stop_server(server, shutdown).await;
                        let failure = backend.classify(&log.text(), exited);
                        return Ok(TrialRun::infeasible(failure.class.as_str(), failure.message, Some(plan), stages));
                    }
                }
                session.running = Some(Running { base_url: server.url(), server: Some(server), plan: plan.clone() });
            }
        }
    }
    let current = session.running.as_mut().expect("a server runs after a restart or a reuse");
    current.plan = plan.clone();
    if let (Some((store, trial_id)), Some(server)) = (record, current.server.as_ref()) {
        store.set_server_pid(trial_id, Some(server.pid())).await?;
    }

    if backend.protocol() == Protocol::Ollama {
        // Load the model with this trial's options before measuring, so the load is timed on
        // its own and a model that cannot load is a classified result, not failed requests.
        let timeout = space.backend.ollama.as_ref().map_or(Duration::from_secs(300), |o| o.load_timeout);
        match workload::ollama::preload(client, &current.base_url, &plan.model, &plan.request_options, timeout).await {
            Ok(load) => stages.load_ms = Some(ms(load)),
            Err(e) => {
                let class = backend::ollama::classify_message(&e.message).unwrap_or(if e.status == 0 {
                    backend::FailureClass::Crashed
                } else {
                    backend::FailureClass::LoadError
                });
                if current.server.as_mut().is_some_and(|s| s.exited().is_some()) {
                    session.close(shutdown).await;
                }
                let message = format!("loading '{}': {}", plan.model, e.message);
                return Ok(TrialRun::infeasible(class.as_str(), message, Some(plan), stages));
            }
        }
    }

    let target = Target {
        protocol: backend.protocol(),
        base_url: current.base_url.clone(),
        model: request_model,
        options: plan.request_options.clone(),
    };
    let version = match backend.version_path() {
        // vLLM answers `{"version": "0.33.0"}`; keep plain text as it is.
        Some(path) => fetch_text(client, &format!("{}{path}", current.base_url)).await.map(|v| {
            serde_json::from_str::<serde_json::Value>(&v)
                .ok()
                .and_then(|d| d["version"].as_str().map(str::to_string))
                .unwrap_or_else(|| v.trim().to_string())
        }),
        None => None,
    };
    let metrics_url = backend.metrics_path().map(|p| format!("{}{p}", current.base_url));
    let metrics_before = match &metrics_url {
        Some(url) => fetch_text(client, url).await.map(|t| measure::prom::VllmSnapshot::from_text(&t)),
        None => None,
    };
    let server_sampler =
        ServerSampler::start(client.clone(), metrics_url.clone(), plan.env.clone(), backend.samples_gpu());
    let cpu_before = system::own_cpu_time();
    let workload_start = Instant::now();
    // Service mode: the process listening on the service's port, when we may see it.
    let pid = match &current.server {
        Some(server) => Some(server.pid()),
        None => reqwest::Url::parse(&current.base_url)
            .ok()
            .and_then(|u| u.port_or_known_default())
            .and_then(ollama::listening_pid),
    };
    let mut sampler = pid.map(system::TreeSampler::new);
    let mut peak_rss = sampler.as_mut().map_or(0, |s| s.rss_bytes());
    let measured = {
        let ttft_limit_ms = space.slos.iter().find(|s| s.metric == "ttft_p95_ms" && s.is_upper_bound).map(|s| s.limit);
        let server = current.server.as_mut();
        // One workload, stopped early once its SLO is certain to fail; or, for `maximize =
        // "capacity"`, a load search on this server, judged by the run at the capacity.
        let workload = async {
            match &space.capacity {
                None => Ok((prune::run(client, &target, prompts, &space.workload, ttft_limit_ms).await, None)),
                Some(spec) => capacity::on_server(client, &target, prompts, space, spec, server, &shutdown.graceful)
                    .await
                    .map(|f| ((f.run, false), Some(f.capacity.figure()))),
            }
        };
        tokio::pin!(workload);
        let mut tick = tokio::time::interval(RSS_INTERVAL);
        loop {
            tokio::select! {
                run = &mut workload => break Some(run),
                _ = tick.tick() => peak_rss = peak_rss.max(sampler.as_mut().map_or(0, |s| s.rss_bytes())),
                _ = shutdown.graceful.cancelled() => break None,
            }
        }
    };
    stages.workload_ms = Some(ms(workload_start.elapsed()));
    let peaks = server_sampler.finish().await;
    let Some(measured) = measured else {
        session.close(shutdown).await;
        return Ok(TrialRun::interrupted(Some(plan), stages));
    };
    let ((run, pruned), capacity_figure) = match measured {
        Ok(m) => m,
        Err(_) if shutdown.graceful.is_cancelled() => {
            session.close(shutdown).await;
            return Ok(TrialRun::interrupted(Some(plan), stages));
        }
        // The capacity search could not measure (e.g. the client fell behind its schedule).
        Err(e) => return Ok(TrialRun::infeasible("capacity-unmeasured", format!("{e:#}"), Some(plan), stages)),
    };
    let client_cpu = system::own_cpu_time().saturating_sub(cpu_before);
    let metrics_after = match &metrics_url {
        Some(url) => fetch_text(client, url).await.map(|t| measure::prom::VllmSnapshot::from_text(&t)),
        None => None,
    };

    // Failed requests may mean the server is dying: give it a moment to show it.
    let settle = if run.samples.iter().any(|s| !s.is_ok()) { Duration::from_millis(500) } else { Duration::ZERO };
    if let Some(server) = current.server.as_mut()
        && let Some(status) = server.exited_within(settle).await
    {
        // Let the reader tasks drain the last log lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let log = server.log.text();
        session.close(shutdown).await;
        let failure = backend.classify(&log, true);
        let message = format!("server exited during the workload ({status}): {}", failure.message);
        return Ok(TrialRun {
            samples: run.samples,
            ..TrialRun::infeasible(failure.class.as_str(), message, Some(plan), stages)
        });
    }
    let answers = match guard {
        Some(g) => Some(g.answers(client, &target, space.workload.request_timeout).await),
        None => None,
    };

    let mut summary = measure::summarize(&run.samples, run.wall, request_slo);
    summary.capacity = capacity_figure;
    summary.quality = guard.zip(answers).map(|(g, a)| g.score(&a));
    summary.peak_rss_bytes = peak_rss;
    summary.client_cpu_ms = client_cpu.as_secs_f64() * 1000.0;
    summary.peak_vram_bytes = peaks.vram_used_mib.map(|mib| (mib * 1024.0 * 1024.0) as u64);
    if metrics_url.is_some() || version.is_some() {
        let mut m = match (&metrics_before, &metrics_after) {
            (Some(b), Some(a)) => measure::prom::ServerMetrics::delta(b, a),
            _ => measure::prom::ServerMetrics::default(),
        };
        m.version = version;
        m.kv_cache_usage_peak = match (m.kv_cache_usage_peak, peaks.kv_cache_usage) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        m.vram_baseline_mb = vram_before.map(|g| g.used_mib);
        m.vram_total_mb = peaks.vram_total_mib.or(vram_before.map(|g| g.total_mib));
        summary.server_metrics = Some(m);
    }
    if backend.protocol() == Protocol::Ollama {
        match workload::ollama::ps(client, &current.base_url, &plan.model).await {
            Ok(Some(loaded)) => {
                summary.model_size_bytes = Some(loaded.size_bytes);
                summary.model_size_vram_bytes = Some(loaded.size_vram_bytes);
            }
            Ok(None) => warn!(model = %plan.model, "model not listed by /api/ps after the workload"),
            Err(e) => warn!(error = %e, "reading /api/ps"),
        }
    }
    if summary.succeeded == 0 && summary.requests > 0 {
        // Nothing was served: the configuration does not work, whatever the server says.
        let (kind, n) =
            summary.errors.iter().max_by_key(|(_, n)| **n).map(|(k, n)| (k.clone(), *n)).unwrap_or_default();
        let example =
            run.samples.iter().filter(|s| !s.is_warmup).find_map(|s| s.error_message.clone()).unwrap_or_default();
        let message = format!("all {} requests failed ({n} x {kind}): {example}", summary.requests);
        // A server that served nothing is not worth keeping for the next trial.
        session.close(shutdown).await;
        return Ok(TrialRun {
            samples: run.samples,
            ..TrialRun::infeasible(&format!("requests-{kind}"), message, Some(plan), stages)
        });
    }
    let verdict = measure::judge(&summary, &space.objective, &space.slos);
    info!(
        ttft_p95_ms = summary.ttft_ms.p95,
        output_tok_per_s = summary.output_tok_per_s,
        success_rate = summary.success_rate,
        violation = verdict.violation,
        launch = launch.as_str(),
        "trial measured"
    );
    Ok(TrialRun {
        outcome: if pruned { Outcome::Pruned { summary, verdict } } else { Outcome::Complete { summary, verdict } },
        plan: Some(plan),
        stages,
        samples: run.samples,
    })
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

/// GET `url` and return the body of a 2xx answer.
async fn fetch_text(client: &reqwest::Client, url: &str) -> Option<String> {
    let resp = client.get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.text().await.ok()
}

/// Peaks seen by [`ServerSampler`] during the workload.
#[derive(Debug, Default)]
struct ServerPeaks {
    vram_used_mib: Option<f64>,
    vram_total_mib: Option<f64>,
    kv_cache_usage: Option<f64>,
}

/// Samples GPU memory (`nvidia-smi`) and the KV-cache gauge (`/metrics`) on its own task, so a
/// slow query never stalls the workload.
struct ServerSampler {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<ServerPeaks>,
}

/// How often GPU memory and the KV-cache gauge are sampled during the workload.
const SERVER_SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

impl ServerSampler {
    fn start(
        client: reqwest::Client,
        metrics_url: Option<String>,
        env: BTreeMap<String, String>,
        gpu: bool,
    ) -> ServerSampler {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut peaks = ServerPeaks::default();
            let max = |a: Option<f64>, b: f64| Some(a.map_or(b, |a| a.max(b)));
            let mut tick = tokio::time::interval(SERVER_SAMPLE_INTERVAL);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if gpu && let Some(g) = measure::gpu::query(&env).await {
                    peaks.vram_used_mib = max(peaks.vram_used_mib, g.used_mib);
                    peaks.vram_total_mib = Some(g.total_mib);
                }
                if let Some(url) = &metrics_url
                    && let Some(text) = fetch_text(&client, url).await
                    && let Some(kv) = measure::prom::VllmSnapshot::from_text(&text).kv_cache_usage
                {
                    peaks.kv_cache_usage = max(peaks.kv_cache_usage, kv);
                }
            }
            peaks
        });
        ServerSampler { stop, task }
    }

    async fn finish(self) -> ServerPeaks {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

/// The model name sent in requests: the model file's stem.
fn model_name(model: &str) -> String {
    std::path::Path::new(model)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| model.to_string())
}
