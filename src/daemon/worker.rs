//! Workers of a shared study (issue 18): several processes, on one host or many, run one study
//! stored in PostgreSQL. `infertune worker STUDY` joins a study; `tune` on a PostgreSQL database
//! creates (or joins) it and is the first worker.
//!
//! ```text
//! claim_next (one transaction under the study's advisory lock: mark lost → read trials →
//!   decide: budget, retry, or propose with every running trial pending → insert `running`)
//!   ─► measure (live session or replay) while a heartbeat task beats
//!   ─► Store::finish_trial (retried with backoff while the database is away) ─► next claim
//! ```
//!
//! A trial whose worker stopped heartbeating for longer than the grace period is marked `lost`
//! by the next worker that claims, and its candidate is retried. The budget is study-wide: no
//! claim is made while finished + running trials reach it, so `--max-trials 40` ends at exactly
//! 40 finished trials however many workers share it.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use tracing::{info, warn};

use super::fingerprint::{check_model_files, fingerprint_drift};
use super::intensify::{self, Next};
use super::pipeline::{self, Bench, TrialRun};
use super::{
    Event, Options, Report, Source, Stop, best_feasible, check_space_unchanged, create_study, deadline, is_finished,
    quality, stored_space, system_ms, take_fingerprint, write_outputs,
};
use crate::backend;
use crate::backend::session::ServerSession;
use crate::search;
use crate::shutdown::Shutdown;
use crate::space::{Candidate, Space};
use crate::store::{self, Finished, RunId, Store};
use crate::trial::{Fingerprint, Outcome, Purpose, Study, Trial, TrialId, TrialState};

/// How a worker takes part in a shared study.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// How often the worker says it is alive.
    pub heartbeat: Duration,
    /// A running trial whose worker has been silent this long is lost (and retried).
    pub grace: Duration,
    /// How long a worker waits before asking again when every remaining trial of the budget
    /// is running elsewhere.
    pub poll: Duration,
    /// Replay only: each trial takes its recorded duration divided by this; `None`: at once.
    pub replay_speed: Option<f64>,
    /// This host's class: a study that declares one admits hosts of that class whose hardware
    /// differs from the first host's.
    pub host_class: Option<String>,
}

impl Default for Fleet {
    fn default() -> Fleet {
        Fleet {
            heartbeat: Duration::from_secs(5),
            grace: Duration::from_secs(30),
            poll: Duration::from_millis(250),
            replay_speed: None,
            host_class: None,
        }
    }
}

/// What a worker's run ended with: the loop's report and the worker's row (the one that takes
/// the end-of-study validation claims it with this).
#[derive(Debug)]
pub struct WorkerReport {
    pub report: Report,
    pub run: RunId,
}

/// `tune` on a shared database: create the study from `space` (or join it) and work on it.
pub async fn tune(
    space: &Space,
    store: &Store,
    options: &Options,
    fleet: &Fleet,
    shutdown: &Shutdown,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<WorkerReport> {
    let name = options.study_name.clone().unwrap_or_else(|| space.name.clone());
    work(space, store, Join::Create(&name), options, fleet, shutdown, on_event).await
}

/// `worker STUDY`: join a stored study and work on it with the space stored with it.
pub async fn join(
    study: &Study,
    store: &Store,
    options: &Options,
    fleet: &Fleet,
    shutdown: &Shutdown,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<WorkerReport> {
    let space = stored_space(study)?;
    work(&space, store, Join::Existing(study), options, fleet, shutdown, on_event).await
}

/// How the worker finds its study.
enum Join<'a> {
    /// By name, created from the space if missing (`tune`).
    Create(&'a str),
    /// Already read (`worker`).
    Existing(&'a Study),
}

async fn work(
    space: &Space,
    store: &Store,
    join: Join<'_>,
    options: &Options,
    fleet: &Fleet,
    shutdown: &Shutdown,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<WorkerReport> {
    let replay = options.replay.as_deref();
    let (checked, _) = match replay {
        Some(_) => (std::borrow::Cow::Borrowed(space), Vec::new()),
        None => check_model_files(space, false)?,
    };
    let space: &Space = &checked;
    let backend = backend::from_spec(&space.backend, &space.params);
    let mut bench = Bench::new(space, backend.as_ref(), shutdown)?;
    bench.prune = true;
    let fingerprint = match replay {
        Some(replay) => replay.fingerprint(),
        None => take_fingerprint(space, backend.as_ref(), &bench.client, store, on_event).await?,
    };
    let study = match join {
        Join::Create(name) => open_or_create(store, space, name, options, &fingerprint, on_event).await?,
        Join::Existing(study) => study.clone(),
    };
    if let (Join::Create(_), Some(class)) = (&join, &fleet.host_class)
        && store.host_class(study.id).await?.is_none()
    {
        store.set_host_class(study.id, class).await?;
    }
    admit(store, &study, &fingerprint, fleet.host_class.as_deref()).await?;
    let max_trials = options.max_trials.or(space.max_trials);
    let deadline = deadline(options.max_duration.or(space.max_duration), options.until);
    let stored = store.trials(study.id).await?.len();
    on_event(Event::Started { study: &study, resumed: stored, interrupted: 0, planned: max_trials });
    let host = host_name();
    let pid = std::process::id();
    let run = store.begin_worker(study.id, pid, &host, &fingerprint, max_trials, deadline.map(system_ms)).await?;
    info!(study = %study.name, %host, pid, run = run.0, "worker joined");
    let mut source = match replay {
        Some(replay) => Source::Replay(replay),
        None => {
            bench.guard = quality::prepare(space, backend.as_ref(), &bench.client, shutdown).await?;
            Source::Live(Box::new(ServerSession::open(backend.as_ref(), bench.client.clone())?))
        }
    };
    let beat = Heartbeat::start(store.clone(), run, fleet.heartbeat);
    let worker = Worker { bench: &bench, store, study: &study, run, max_trials, deadline, fleet };
    let result = worker.run(&mut source, on_event).await;
    let finished = super::finish_source(source, space, options, result.as_ref().ok(), shutdown, on_event).await;
    drop(beat);
    let (stop, trials) = result?;
    finished?;
    retry("recording the worker's stop", shutdown, || store.end_run(study.id, run, stop.as_str())).await?;
    info!(study = %study.name, stop = stop.as_str(), trials = trials.len(), "worker stopped");
    let study = store.study(&study.name).await?.expect("the study exists");
    Ok(WorkerReport { report: Report { study, trials, stop }, run })
}

/// The study named `name`, checked against the space; or a new one (two first workers racing
/// to create it: the loser reads the winner's).
async fn open_or_create(
    store: &Store,
    space: &Space,
    name: &str,
    options: &Options,
    fingerprint: &Fingerprint,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<Study> {
    let study = match store.study(name).await? {
        Some(s) => s,
        None => match create_study(store, space, name, fingerprint).await {
            Ok(s) => s,
            Err(e) => store.study(name).await?.ok_or(e)?,
        },
    };
    check_space_unchanged(&study, space, options.force, "join", on_event)?;
    if let Some(dir) = &options.space_dir
        && study.space_dir.is_none()
    {
        store.set_space_dir(study.id, dir).await?;
    }
    Ok(store.study(name).await?.expect("the study exists"))
}

/// Refuse a worker whose fingerprint differs from the study's, naming the differences. A study
/// that declares a host class admits a host of that class whose hardware differs; the engine
/// and the model files must match in any case, or the figures would not be comparable.
async fn admit(
    store: &Store,
    study: &Study,
    fingerprint: &Fingerprint,
    host_class: Option<&str>,
) -> anyhow::Result<()> {
    let drift = fingerprint_drift(&study.fingerprint, fingerprint);
    if drift.is_empty() {
        return Ok(());
    }
    let declared = store.host_class(study.id).await?;
    let hardware_only = Fingerprint { host: study.fingerprint.host.clone(), ..fingerprint.clone() };
    let is_same_class = declared.is_some() && declared.as_deref() == host_class;
    if is_same_class && fingerprint_drift(&study.fingerprint, &hardware_only).is_empty() {
        info!(differences = %drift.join("; "), class = ?declared, "host differs from the study's first host; same class");
        return Ok(());
    }
    let class_note = match (&declared, host_class) {
        (None, _) => "the study declares no host class (tune --host-class NAME) to admit other hardware".to_string(),
        (Some(d), Some(h)) if d == h => "the host class matches, but engine and model files must too".to_string(),
        (Some(d), h) => format!("the study's host class is '{d}', this worker's is '{}'", h.unwrap_or("none")),
    };
    bail!("this host is not comparable with study '{}': {}; {class_note}", study.name, drift.join("; "))
}

/// This machine's name, as `status` shows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Beats the worker's heartbeat on its own task until dropped. A beat that fails (the database
/// is away) is logged; the next one tries again.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(store: Store, run: RunId, every: Duration) -> Heartbeat {
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = store.heartbeat(run).await {
                    warn!(error = %e, "heartbeat not recorded (database unreachable?)");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the claim decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run this candidate, for this purpose (a retry of a lost or interrupted trial, a
    /// re-measure, a proposal).
    Run { candidate: Candidate, purpose: Purpose },
    /// Nothing to start now: every remaining trial of the budget (or the last candidates) is
    /// running elsewhere and may still be lost and need a retry.
    Wait,
    /// Nothing more to do.
    Stop(Stop),
}

/// A trial this worker claimed.
struct Claimed {
    id: TrialId,
    number: i64,
    candidate: Candidate,
    purpose: Purpose,
}

/// Claim the next trial in one transaction under the study's lock: trials of silent workers
/// become lost, then [`decide`] picks from every stored and running trial, and the pick is
/// inserted as `running` with the next number. `Err(decision)`: nothing was claimed.
async fn claim_next(
    store: &Store,
    study: &Study,
    run: RunId,
    space: &Space,
    max_trials: Option<u32>,
    grace: Duration,
) -> Result<Result<Claimed, Decision>, store::Error> {
    let mut claim = store.begin_claim(study.id).await?;
    let lost = claim.mark_lost(store::now_ms() - grace.as_millis() as i64).await?;
    if !lost.is_empty() {
        warn!(study = %study.name, trials = ?lost, "trials lost: their workers stopped heartbeating; retrying them");
    }
    let trials = claim.trials().await?;
    let decision = decide(&trials, space, max_trials);
    let Decision::Run { candidate, purpose } = decision else {
        claim.commit().await?;
        return Ok(Err(decision));
    };
    let (id, number) = claim.begin_trial(&candidate, run, purpose).await?;
    claim.commit().await?;
    Ok(Ok(Claimed { id, number, candidate, purpose }))
}

/// What to do next, from every trial of the study: stop on the budget; wait while the rest of
/// the budget is running; retry a lost or interrupted candidate nobody runs; else propose.
pub fn decide(trials: &[Trial], space: &Space, max_trials: Option<u32>) -> Decision {
    let finished = trials.iter().filter(|t| is_finished(t)).count();
    let running: Vec<&Candidate> =
        trials.iter().filter(|t| t.state == TrialState::Running).map(|t| &t.params).collect();
    if max_trials.is_some_and(|m| finished >= m as usize) {
        return Decision::Stop(Stop::Budget);
    }
    if max_trials.is_some_and(|m| finished + running.len() >= m as usize) {
        return Decision::Wait;
    }
    if let Some(candidate) = intensify::retries(trials).into_iter().find(|c| !running.contains(&c)) {
        return Decision::Run { candidate, purpose: Purpose::Retry };
    }
    match next(trials, space) {
        Some(Next { candidate, purpose }) if !running.contains(&&candidate) => Decision::Run { candidate, purpose },
        _ if !running.is_empty() => Decision::Wait,
        _ => Decision::Stop(Stop::Exhausted),
    }
}

/// Propose the next candidate: the space's strategy rebuilt from the stored trials (finished
/// ones observed in number order, as resume does), with every running trial pending.
pub fn propose(trials: &[Trial], space: &Space) -> Option<Candidate> {
    next(trials, space).map(|n| n.candidate)
}

/// What the study loop would run next ([`intensify::next`]: a re-measure of the challenger or
/// the incumbent, else the proposal), decided from the stored trials alone.
fn next(trials: &[Trial], space: &Space) -> Option<Next> {
    let mut strategy = search::from_space(space);
    for t in trials.iter().filter(|t| is_finished(t)) {
        strategy.observe(t);
    }
    for t in trials.iter().filter(|t| t.state == TrialState::Running) {
        strategy.pending(&t.params);
    }
    intensify::next(trials, strategy.as_mut(), space, &[])
}

/// Call the store until it answers, waiting 0.2 s, 0.4 s, ... up to 5 s between tries while the
/// database is out of reach; a failure that is not about reaching it is returned. Only "stop
/// now" (a second signal) gives up waiting.
async fn retry<T, F, Fut>(what: &str, shutdown: &Shutdown, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, store::Error>>,
{
    let mut wait = Duration::from_millis(200);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && !shutdown.now.is_cancelled() => {
                warn!(error = %e, "database unreachable while {what}; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {},
                    _ = shutdown.now.cancelled() => {},
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e).with_context(|| what.to_string()),
        }
    }
}

/// One worker's loop: what every iteration reads.
struct Worker<'a> {
    bench: &'a Bench<'a>,
    store: &'a Store,
    study: &'a Study,
    run: RunId,
    max_trials: Option<u32>,
    deadline: Option<SystemTime>,
    fleet: &'a Fleet,
}

impl Worker<'_> {
    /// Claim, run and record trials until a stop; returns why, with the study's trials.
    async fn run(
        &self,
        source: &mut Source<'_>,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> anyhow::Result<(Stop, Vec<Trial>)> {
        let shutdown = self.bench.shutdown;
        let space = self.bench.space;
        let mut best_number = best_feasible(&self.store.trials(self.study.id).await?, space);
        let stop = loop {
            if shutdown.is_requested() {
                break Stop::Interrupted;
            }
            if self.deadline.is_some_and(|d| SystemTime::now() >= d) {
                break Stop::Deadline;
            }
            let claimed = retry("claiming a trial", shutdown, || {
                claim_next(self.store, self.study, self.run, space, self.max_trials, self.fleet.grace)
            })
            .await?;
            let claimed = match claimed {
                Ok(c) => c,
                Err(Decision::Stop(stop)) => break stop,
                Err(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.fleet.poll) => {},
                        _ = shutdown.graceful.cancelled() => {},
                    }
                    continue;
                }
            };
            let (number, candidate) = (claimed.number, &claimed.candidate);
            on_event(Event::TrialStarted { number, candidate, planned: self.max_trials, purpose: claimed.purpose });
            let t0 = Instant::now();
            let result = self.measure(source, &claimed).await?;
            let stored = self.record(claimed.id, number, &result).await?;
            let trials = retry("reading the trials", shutdown, || self.store.trials(self.study.id)).await?;
            // Other workers move the named winner too (a point's first trial names it, so a
            // re-measure can make an earlier trial the winner): this trial is news when it is
            // the winner now, or made its point the winner.
            let new_best = best_feasible(&trials, space);
            let named = trials.iter().find(|t| Some(t.number) == new_best);
            let is_new_best = new_best != best_number && named.is_some_and(|t| t.params == stored.params);
            best_number = new_best;
            on_event(Event::TrialFinished { trial: &stored, elapsed: t0.elapsed(), is_new_best });
            if let Some(named) = named.filter(|_| is_new_best) {
                write_outputs(space, self.study, named, on_event)?;
            }
            if matches!(result.outcome, Outcome::Interrupted) {
                break Stop::Interrupted;
            }
        };
        let trials = retry("reading the trials", shutdown, || self.store.trials(self.study.id)).await?;
        Ok((stop, trials))
    }

    /// Run the claimed trial: on the live backend, or from the recording (taking the recorded
    /// workload time divided by `replay_speed`, so several workers overlap as they would live).
    async fn measure(&self, source: &mut Source<'_>, claimed: &Claimed) -> anyhow::Result<TrialRun> {
        let bench = self.bench;
        match source {
            Source::Replay(replay) => {
                let answer = replay.answer(bench.space, bench.backend, &claimed.candidate);
                let Some(speed) = self.fleet.replay_speed.filter(|s| *s > 0.0) else { return Ok(answer) };
                let took = Duration::try_from_secs_f64(recorded_seconds(&answer) / speed).unwrap_or_default();
                tokio::select! {
                    _ = tokio::time::sleep(took) => Ok(answer),
                    _ = bench.shutdown.graceful.cancelled() => Ok(TrialRun { outcome: Outcome::Interrupted, ..answer }),
                }
            }
            // The server's PID is not recorded: the trial must go on while the database is away,
            // and a killed worker's server dies with it (PR_SET_PDEATHSIG); its trial is lost.
            Source::Live(session) => {
                pipeline::run_trial(bench, session, &claimed.candidate, claimed.number as u64, None).await
            }
        }
    }

    /// Write the trial (waiting out a database that went away: the measurement is not lost)
    /// and read it back.
    async fn record(&self, id: TrialId, number: i64, result: &TrialRun) -> anyhow::Result<Trial> {
        let finished = Finished {
            outcome: &result.outcome,
            plan: result.plan.as_ref(),
            stages: result.stages,
            samples: &result.samples,
        };
        let shutdown = self.bench.shutdown;
        let what = format!("recording trial {number} of study '{}'", self.study.name);
        retry(&what, shutdown, || self.store.finish_trial(id, &finished)).await?;
        let trials = retry(&what, shutdown, || self.store.trials(self.study.id)).await?;
        Ok(trials.into_iter().find(|t| t.id == id).expect("a trial just written is readable"))
    }
}

/// Seconds the recorded run took: its workload's wall time; a run that never got to a workload
/// (a failed start) counts as one second.
fn recorded_seconds(run: &TrialRun) -> f64 {
    match &run.outcome {
        Outcome::Complete { summary, .. } | Outcome::Pruned { summary, .. } => summary.wall_s.max(0.0),
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::landscape::Landscape;

    fn trial(number: i64, state: TrialState, params: &Candidate) -> Trial {
        let mut t = crate::search::constrained::refused_trial(params, String::new());
        t.number = number;
        t.state = state;
        if state != TrialState::Infeasible {
            t.error_class = None;
            t.violation = matches!(state, TrialState::Complete).then_some(0.0);
            t.objective = matches!(state, TrialState::Complete).then_some(1.0);
        }
        t
    }

    /// The budget counts running trials of every worker, and a lost candidate is retried unless
    /// it runs (or ran) elsewhere.
    #[test]
    fn decide_keeps_the_budget_study_wide_and_retries_lost_candidates() {
        let space = Landscape::synthetic().space().unwrap();
        let a = propose(&[], &space).unwrap();
        let b = propose(&[trial(1, TrialState::Running, &a)], &space).unwrap();
        assert_ne!(a, b, "a running candidate is pending: never proposed again");
        let running = [trial(1, TrialState::Complete, &a), trial(2, TrialState::Running, &b)];
        assert_eq!(decide(&running, &space, Some(2)), Decision::Wait);
        assert!(matches!(decide(&running, &space, Some(3)), Decision::Run { purpose: Purpose::Search, .. }));
        let done = [trial(1, TrialState::Complete, &a), trial(2, TrialState::Complete, &b)];
        assert_eq!(decide(&done, &space, Some(2)), Decision::Stop(Stop::Budget));
        let lost = [trial(1, TrialState::Complete, &a), trial(2, TrialState::Lost, &b)];
        assert_eq!(decide(&lost, &space, Some(2)), Decision::Run { candidate: b.clone(), purpose: Purpose::Retry });
        let retried = [trial(1, TrialState::Lost, &a), trial(2, TrialState::Running, &a)];
        match decide(&retried, &space, None) {
            Decision::Run { candidate, purpose } => {
                assert!(candidate != a && purpose != Purpose::Retry, "{candidate:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// A host that differs is refused with the differences named; a study that declares a host
    /// class admits a host of that class whose hardware differs, never one whose engine does.
    #[tokio::test]
    async fn a_different_host_is_refused_unless_its_class_matches() {
        let store = Store::open_in_memory().await.unwrap();
        let fp = Fingerprint {
            engine_version: "engine 1".into(),
            model_sha256: [("m.gguf".to_string(), "aa".to_string())].into(),
            host: crate::measure::system::host(),
        };
        let space = Landscape::synthetic().space().unwrap();
        let study = create_study(&store, &space, "s", &fp).await.unwrap();
        assert!(admit(&store, &study, &fp, None).await.is_ok());
        let mut other = fp.clone();
        other.host.cpu_model = "Other CPU".into();
        other.host.logical_cores += 6;
        let err = admit(&store, &study, &other, Some("cpu")).await.unwrap_err().to_string();
        assert!(err.contains("-> 'Other CPU'") && err.contains("cores"), "{err}");
        assert!(err.contains("declares no host class"), "{err}");
        store.set_host_class(study.id, "cpu").await.unwrap();
        assert!(admit(&store, &study, &other, Some("cpu")).await.is_ok());
        let err = admit(&store, &study, &other, Some("gpu")).await.unwrap_err().to_string();
        assert!(err.contains("the study's host class is 'cpu', this worker's is 'gpu'"), "{err}");
        let newer = Fingerprint { engine_version: "engine 2".into(), ..other };
        let err = admit(&store, &study, &newer, Some("cpu")).await.unwrap_err().to_string();
        assert!(err.contains("engine version 'engine 1' -> 'engine 2'"), "{err}");
    }

    /// One worker takes the end-of-study validation; the others are told no.
    #[tokio::test]
    async fn validation_is_claimed_once() {
        let store = Store::open_in_memory().await.unwrap();
        let fp = Fingerprint {
            engine_version: "e".into(),
            model_sha256: Default::default(),
            host: crate::measure::system::host(),
        };
        let study = create_study(&store, &Landscape::synthetic().space().unwrap(), "s", &fp).await.unwrap();
        let a = store.begin_worker(study.id, 1, "a", &fp, None, None).await.unwrap();
        let b = store.begin_worker(study.id, 2, "b", &fp, None, None).await.unwrap();
        assert!(store.claim_validation(study.id, b).await.unwrap());
        assert!(!store.claim_validation(study.id, a).await.unwrap());
        assert!(!store.claim_validation(study.id, b).await.unwrap());
    }

    /// Proposals never repeat a finished or running candidate, and re-measures never a running
    /// one, for every strategy rebuilt from the stored trials as a claim does.
    #[test]
    fn rebuilt_strategies_never_repeat_a_candidate() {
        let l = Landscape::synthetic();
        for kind in [
            crate::space::StrategyKind::Grid,
            crate::space::StrategyKind::Random,
            crate::space::StrategyKind::Tpe,
            crate::space::StrategyKind::Anneal,
        ] {
            let mut space = l.space().unwrap();
            space.strategy = kind;
            let mut trials: Vec<Trial> = Vec::new();
            for n in 1..=25 {
                let Next { candidate: c, purpose } = next(&trials, &space).expect("points remain");
                // A proposal is new; a re-measure (intensification) repeats a finished point on
                // purpose, never one that is running.
                match purpose {
                    Purpose::Intensify => assert!(
                        trials.iter().all(|t| t.params != c || t.state != TrialState::Running),
                        "{kind:?} re-measured a running point {}",
                        c.brief()
                    ),
                    _ => assert!(trials.iter().all(|t| t.params != c), "{kind:?} repeated {}", c.brief()),
                }
                // Every third trial stays running (another worker's).
                let state = if n % 3 == 0 { TrialState::Running } else { TrialState::Complete };
                let mut t = Landscape::trial(n, &c, &l.point(&c).unwrap().runs[0]);
                if state == TrialState::Running {
                    t.state = state;
                }
                trials.push(t);
            }
        }
    }
}
