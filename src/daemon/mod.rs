//! The study loop: the only place that wires the stages together. It owns resume, budgets,
//! windows, drift, signals and recording; one trial's stages are `pipeline::run_trial`.
//!
//! ```text
//! Strategy::propose ─► pipeline::run_trial (plan → ServerSession::start → Probe + workload
//!   → crash check → grade) ─► Store::finish_trial ─► Strategy::observe
//!   ─► (best changed) output::write_outputs
//! ```
//!
//! A bad configuration is a result: planning refusals, failed starts and crashes become
//! `infeasible` trials. Only infrastructure failures (store, missing program, no port) end a study.

pub mod apply;
pub mod bench;
pub mod capacity;
pub mod clock;
pub mod compare;
mod fingerprint;
pub mod intensify;
pub mod lock;
mod output;
mod pipeline;
mod quality;
mod remeasure;
pub mod replay;
pub mod signal;
pub mod validate;
pub mod watch;
pub mod worker;

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use tracing::{Instrument, info, info_span, warn};

use crate::backend::session::ServerSession;
use crate::backend::{self, Backend, Pull};
use crate::search::{self, Strategy};
use crate::space::{Candidate, Space};
use crate::store::{Finished, NewStudy, RunId, Store};
use crate::trial::{self, Fingerprint, Outcome, Purpose, Study, Trial, TrialState};
use fingerprint::{Watch, check_model_files, drift_before_trial, fingerprint, fingerprint_drift};
use output::write_outputs;
use pipeline::{Bench, TrialRun};

pub use fingerprint::SkippedModel;
pub use output::write_named_outputs;
pub use signal::Shutdown;

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
    /// Directory of the space file, stored with the study so that commands re-reading its
    /// space resolve relative paths from any working directory.
    pub space_dir: Option<std::path::PathBuf>,
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
    /// Warm-start from this stored study (`watch --retune`, issue 19): its best configurations
    /// run first, and its finished trials prime the strategy as prior observations.
    pub warm_start: Option<String>,
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
    /// A trial is about to launch, and why (a proposal, a re-measure, the anchor, a retry).
    TrialStarted { number: i64, candidate: &'a Candidate, planned: Option<u32>, purpose: Purpose },
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

/// Run (or resume) the study described by `space` until a budget ends, the space is exhausted,
/// the fingerprint drifts, or `shutdown` is requested. A store failure (a full disk, a read-only
/// file) ends the study with an error naming the database file.
pub async fn tune(
    space: &Space,
    store: &Store,
    options: &Options,
    shutdown: &Shutdown,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<Report> {
    // A shared database: this process is one worker of the study (issue 18).
    let result = match store.is_shared() {
        true => {
            worker::tune(space, store, options, &worker::Fleet::default(), shutdown, on_event).await.map(|w| w.report)
        }
        false => tune_study(space, store, options, shutdown, on_event).await,
    };
    result.map_err(|e| {
        if e.chain().any(|cause| cause.downcast_ref::<crate::store::Error>().is_some()) {
            e.context(format!("using the database '{}'", store.path()))
        } else {
            e
        }
    })
}

async fn tune_study(
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
    let mut bench = Bench::new(space, backend.as_ref(), shutdown)?;
    bench.prune = true;
    let fingerprint = match replay {
        Some(replay) => replay.fingerprint(),
        None => take_fingerprint(space, backend.as_ref(), &bench.client, store, on_event).await?,
    };
    let (study, mut seeds) = open_study(store, space, options, &fingerprint, on_event).await?;
    let prior = warm_start(store, options, &mut seeds).await?;
    let resumed = resume(store, &study, backend.as_ref(), space, (seeds, prior), on_event).await?;
    let max_trials = options.max_trials.or(space.max_trials);
    let deadline = deadline(options.max_duration.or(space.max_duration), options.until);
    let interrupted = resumed.interrupted;
    on_event(Event::Started { study: &study, resumed: resumed.trials.len(), interrupted, planned: max_trials });
    let run = store.begin_run(study.id, std::process::id(), max_trials, deadline.map(system_ms)).await?;
    let mut source = match replay {
        Some(replay) => Source::Replay(replay),
        None => {
            bench.guard = quality::prepare(space, backend.as_ref(), &bench.client, shutdown).await?;
            Source::Live(Box::new(ServerSession::open(backend.as_ref(), bench.client.clone())?))
        }
    };
    let study_loop = StudyLoop { bench: &bench, store, study: &study, options, run, max_trials, deadline, fingerprint };
    let result = study_loop.run(&mut source, resumed, on_event).await;
    let finished = finish_source(source, space, options, result.as_ref().ok(), shutdown, on_event).await;
    let (stop, trials) = result?;
    finished?;
    store.end_run(study.id, run, stop.as_str()).await?;
    info!(study = %study.name, stop = stop.as_str(), trials = trials.len(), "study stopped");
    let study = store.study(&study.name).await?.expect("the study exists");
    Ok(Report { study, trials, stop })
}

/// The backend's own identification (Ollama: server version and model digests, after pulling
/// what is missing), else the generic one: program version and model file hashes.
async fn take_fingerprint(
    space: &Space,
    backend: &dyn Backend,
    client: &reqwest::Client,
    store: &Store,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<Fingerprint> {
    let mut on_pull = |p: Pull<'_>| {
        on_event(Event::Pulling { model: p.model, status: p.status, completed: p.completed, total: p.total })
    };
    match backend.prepare(client, &mut on_pull).await? {
        Some(id) => Ok(Fingerprint {
            engine_version: id.engine_version,
            model_sha256: id.model_digests,
            host: crate::measure::system::host(),
        }),
        None => fingerprint(space, backend, store).await,
    }
}

/// The stored study of this name, checked against the space and the fingerprint; or a new one.
/// A drifted environment with `--retune-on-drift` opens a linked study and returns the old
/// study's best configurations to try first.
async fn open_study(
    store: &Store,
    space: &Space,
    options: &Options,
    fingerprint: &Fingerprint,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<(Study, Vec<Candidate>)> {
    let (study, seeds) = open_or_create_study(store, space, options, fingerprint, on_event).await?;
    if let Some(dir) = &options.space_dir {
        store.set_space_dir(study.id, dir).await?;
    }
    let study = store.study(&study.name).await?.expect("the study exists");
    Ok((study, seeds))
}

async fn open_or_create_study(
    store: &Store,
    space: &Space,
    options: &Options,
    fingerprint: &Fingerprint,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<(Study, Vec<Candidate>)> {
    let name = options.study_name.clone().unwrap_or_else(|| space.name.clone());
    let Some(existing) = store.study(&name).await? else {
        return Ok((create_study(store, space, &name, fingerprint).await?, Vec::new()));
    };
    check_space_unchanged(&existing, space, options.force, "resume", on_event)?;
    let drift = fingerprint_drift(&existing.fingerprint, fingerprint);
    if drift.is_empty() {
        return Ok((existing, Vec::new()));
    }
    let what = drift.join("; ");
    if !options.retune_on_drift {
        bail!(
            "the environment changed since study '{name}' started ({what}); its \
             figures would not be comparable. Re-run with --retune-on-drift to start a \
             linked study seeded with its best configurations"
        );
    }
    on_event(Event::Drift { what: &what });
    let seeds = top_candidates(&store.trials(existing.id).await?, &existing, 5);
    let new_name = next_free_name(store, &format!("{name}-retune")).await?;
    Ok((create_study(store, space, &new_name, fingerprint).await?, seeds))
}

/// Where a study picks up: its trials, a strategy that has observed the finished ones, and the
/// seeds of a re-tune (interrupted trials are retried by `intensify::next`, from the trials).
struct Resumed {
    trials: Vec<Trial>,
    strategy: Box<dyn Strategy>,
    /// The old study's best configurations, run before the strategy's proposals.
    seeds: Vec<Candidate>,
    interrupted: u64,
}

/// Stop servers a killed daemon left, mark its `running` trials interrupted, and replay the
/// finished trials into a fresh strategy.
async fn resume(
    store: &Store,
    study: &Study,
    backend: &dyn Backend,
    space: &Space,
    (seeds, prior): (Vec<Candidate>, Vec<Trial>),
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<Resumed> {
    let orphans = store.orphan_server_pids(study.id).await?;
    let reaped = reap_orphans(&orphans, backend);
    if !reaped.is_empty() {
        on_event(Event::OrphansReaped { pids: &reaped });
    }
    let interrupted = store.mark_interrupted(study.id).await?;
    let trials = store.trials(study.id).await?;
    let mut strategy = search::from_space(space);
    for t in &prior {
        strategy.observe_prior(t, search::PRIOR_WEIGHT);
    }
    for t in trials.iter().filter(|t| is_finished(t)) {
        strategy.observe(t);
    }
    Ok(Resumed { trials, strategy, seeds, interrupted })
}

/// Where trials get their answers: the live backend through a server session, or a recorded
/// landscape (`tune --replay`).
enum Source<'a> {
    Live(Box<ServerSession<'a>>),
    Replay(&'a replay::Replay),
}

/// The run of the loop: what every iteration reads.
struct StudyLoop<'a> {
    bench: &'a Bench<'a>,
    store: &'a Store,
    study: &'a Study,
    options: &'a Options,
    run: RunId,
    max_trials: Option<u32>,
    deadline: Option<SystemTime>,
    fingerprint: Fingerprint,
}

impl StudyLoop<'_> {
    /// Propose, run and record trials until a stop; returns why, with the study's trials.
    async fn run(
        &self,
        source: &mut Source<'_>,
        resumed: Resumed,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> anyhow::Result<(Stop, Vec<Trial>)> {
        let Resumed { mut trials, mut strategy, seeds, .. } = resumed;
        let space = self.bench.space;
        let mut best_number = best_feasible(&trials, space);
        let mut watch = Watch::snapshot(space);
        let stop = loop {
            if let Some(stop) = self.stop_before_trial(&trials) {
                break stop;
            }
            if self.pause_outside_window(on_event).await? {
                continue;
            }
            if let Source::Live(_) = source
                && let Some(what) =
                    drift_before_trial(space, self.bench.backend, &self.fingerprint, &mut watch, self.store).await?
            {
                on_event(Event::Drift { what: &what });
                break Stop::Drift;
            }
            // A re-measure of the challenger or incumbent, else the strategy's proposal.
            let Some(next) = intensify::next(&trials, strategy.as_mut(), space, &seeds) else {
                break Stop::Exhausted;
            };
            let (stored, result) = self.trial(source, &next.candidate, next.purpose, on_event).await?;
            trials = self.store.trials(self.study.id).await?;
            if is_finished(&stored) {
                strategy.observe(&stored);
            }
            let new_best = best_feasible(&trials, space);
            let is_new_best = new_best.is_some() && new_best != best_number;
            on_event(Event::TrialFinished { trial: &stored, elapsed: result.1, is_new_best });
            if is_new_best {
                best_number = new_best;
                let named = trials.iter().find(|t| Some(t.number) == new_best).expect("the best is a stored trial");
                write_outputs(space, self.study, named, on_event)?;
            }
            if matches!(result.0, Outcome::Interrupted) {
                break Stop::Interrupted;
            }
        };
        Ok((stop, trials))
    }

    /// A budget, the deadline or a signal, checked before each trial.
    fn stop_before_trial(&self, trials: &[Trial]) -> Option<Stop> {
        let finished = trials.iter().filter(|t| is_finished(t)).count();
        if self.max_trials.is_some_and(|m| finished >= m as usize) {
            return Some(Stop::Budget);
        }
        if self.deadline.is_some_and(|d| SystemTime::now() >= d) {
            return Some(Stop::Deadline);
        }
        self.bench.shutdown.is_requested().then_some(Stop::Interrupted)
    }

    /// Outside `--window`: wait (at most a tick) and say so; `true` when it waited.
    async fn pause_outside_window(&self, on_event: &mut (dyn FnMut(Event<'_>) + Send)) -> anyhow::Result<bool> {
        let Some(window) = self.options.window else { return Ok(false) };
        let wait = window.until_open(clock::local_minutes(SystemTime::now()).0);
        if wait.is_zero() {
            return Ok(false);
        }
        on_event(Event::Paused { wait, window });
        self.store.heartbeat(self.run).await?;
        tokio::select! {
            _ = tokio::time::sleep(wait.min(PAUSE_TICK)) => {},
            _ = self.bench.shutdown.graceful.cancelled() => {},
        }
        Ok(true)
    }

    /// Begin, run and record one trial; returns the stored trial, its outcome and how long it took.
    async fn trial(
        &self,
        source: &mut Source<'_>,
        candidate: &Candidate,
        purpose: Purpose,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> anyhow::Result<(Trial, (Outcome, Duration))> {
        let (trial_id, number) = self
            .store
            .begin_trial_for(self.study.id, candidate, purpose)
            .await
            .with_context(|| format!("recording the start of a trial of study '{}'", self.study.name))?;
        self.store.heartbeat(self.run).await?;
        on_event(Event::TrialStarted { number, candidate, planned: self.max_trials, purpose });
        let t0 = Instant::now();
        let span = info_span!("trial", study = %self.study.name, number, backend = %self.bench.backend.kind());
        let result: TrialRun = match source {
            Source::Replay(replay) => replay.answer(self.bench.space, self.bench.backend, candidate),
            // The trial's number picks its own prompts (a reused server never sees them again).
            Source::Live(session) => {
                pipeline::run_trial(self.bench, session, candidate, number as u64, Some((self.store, trial_id)))
                    .instrument(span)
                    .await?
            }
        };
        // Persist now: a later crash must not lose this trial.
        let finished = Finished {
            outcome: &result.outcome,
            plan: result.plan.as_ref(),
            stages: result.stages,
            samples: &result.samples,
        };
        self.store
            .finish_trial(trial_id, &finished)
            .await
            .with_context(|| format!("recording trial {number} of study '{}'", self.study.name))?;
        let stored = self
            .store
            .trials(self.study.id)
            .await?
            .into_iter()
            .find(|t| t.id == trial_id)
            .expect("a trial just written is readable");
        Ok((stored, (result.outcome, t0.elapsed())))
    }
}

/// Stop the live source's server; in service mode, put the service back as `--on-exit` (or the
/// space's `restore`) says.
async fn finish_source(
    source: Source<'_>,
    space: &Space,
    options: &Options,
    result: Option<&(Stop, Vec<Trial>)>,
    shutdown: &Shutdown,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<()> {
    let Source::Live(session) = source else { return Ok(()) };
    let restore_best = space.backend.ollama.as_ref().is_some_and(|o| o.restore_best);
    let on_exit = options.on_exit.unwrap_or(if restore_best { OnExit::Best } else { OnExit::Restore });
    let best_env = result
        .and_then(|(_, trials)| trial::best(trials, space.objective.direction))
        .filter(|(_, feasible)| on_exit == OnExit::Best && *feasible)
        .and_then(|(t, _)| t.plan.as_ref().map(|p| p.deploy_env.clone()));
    if let Some(path) = session.finish(shutdown, best_env.as_ref(), on_exit == OnExit::Leave).await? {
        on_event(Event::ServiceRestored { path: &path, is_best: best_env.is_some() });
    }
    Ok(())
}

/// A stored study's space against the one given (`verb`: what the caller does, "resume" or
/// "join"): refused with the line diff unless `force`, else the diff is reported.
fn check_space_unchanged(
    study: &Study,
    space: &Space,
    force: bool,
    verb: &str,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<()> {
    if study.space_toml == space.source {
        return Ok(());
    }
    let diff = line_diff(&study.space_toml, &space.source);
    if !force {
        bail!(
            "study '{}' was started with a different search space; \
             {verb} with --force to accept the changes, or pick another name with --name\n{diff}",
            study.name
        );
    }
    on_event(Event::SpaceChanged { diff: &diff });
    Ok(())
}

fn is_finished(t: &Trial) -> bool {
    matches!(t.state, TrialState::Complete | TrialState::Infeasible | TrialState::Pruned)
}

fn best_feasible(trials: &[Trial], space: &Space) -> Option<i64> {
    trial::best(trials, space.objective.direction).filter(|(_, feasible)| *feasible).map(|(t, _)| t.number)
}

/// `Options::warm_start`: the old study's five best configurations join the seeds (the best
/// first), and its finished trials are returned as priors.
async fn warm_start(store: &Store, options: &Options, seeds: &mut Vec<Candidate>) -> anyhow::Result<Vec<Trial>> {
    let Some(name) = &options.warm_start else { return Ok(Vec::new()) };
    let old = store.study(name).await?.with_context(|| format!("no study named '{name}' to warm-start from"))?;
    let trials: Vec<Trial> = store.trials(old.id).await?.into_iter().filter(is_finished).collect();
    for c in top_candidates(&trials, &old, 5) {
        if !seeds.contains(&c) {
            seeds.push(c);
        }
    }
    Ok(trials)
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
            backend: Some(space.backend.kind),
            strategy: Some(space.strategy),
            objective_metric: space.objective.metric.name(),
            direction: space.objective.direction,
            space_toml: &space.source,
            fingerprint,
        })
        .await?)
}

/// A stored study's search space, its relative paths resolved against the directory of the file
/// it was started from (else the working directory, for studies stored before it was kept).
pub fn stored_space(study: &Study) -> anyhow::Result<Space> {
    let base = match &study.space_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("reading the working directory")?,
    };
    Space::from_toml(&study.space_toml, &format!("the space stored with study '{}'", study.name), &base).with_context(
        || format!("loading the search space of study '{}' (relative paths from '{}')", study.name, base.display()),
    )
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
    deadline_from(SystemTime::now(), max_duration, until)
}

fn deadline_from(
    now: SystemTime,
    max_duration: Option<Duration>,
    until: Option<clock::TimeOfDay>,
) -> Option<SystemTime> {
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

/// Stop server processes recorded by trials a killed daemon left running. Only a process the
/// backend recognises as one of its servers is touched (PIDs get reused).
fn reap_orphans(pids: &[u32], backend: &dyn Backend) -> Vec<u32> {
    let mut reaped = Vec::new();
    for &pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if backend.is_server_process(&cmdline) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `--until HH:MM` and `--max-duration` both stop starting trials; the earlier one wins
    /// (README "Budgets and windows").
    #[test]
    fn the_deadline_is_the_earlier_of_until_and_max_duration() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (minutes, _) = clock::local_minutes(now);
        let in_ten_minutes = clock::TimeOfDay { minutes: (minutes + 10) % 1440 };
        let until = deadline_from(now, None, Some(in_ten_minutes)).unwrap();
        let wait = until.duration_since(now).unwrap();
        assert!(wait > Duration::from_secs(9 * 60) && wait <= Duration::from_secs(10 * 60), "{wait:?}");
        assert_eq!(
            deadline_from(now, Some(Duration::from_secs(60)), Some(in_ten_minutes)),
            Some(now + Duration::from_secs(60))
        );
        assert_eq!(deadline_from(now, Some(Duration::from_secs(3600)), Some(in_ten_minutes)), Some(until));
        assert_eq!(deadline_from(now, None, None), None);
    }
}
