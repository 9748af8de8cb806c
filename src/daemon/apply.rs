//! `apply`: deploy a trial's configuration to the running service, then keep it only if a
//! canary on the live service holds (issue 19).
//!
//! ```text
//! render (deploy::target) ─► record 'running' ─► backup + atomic write (deploy::file)
//!   ─► restart argv(s) (backend::service::restart) ─► ready ─► canary: the study's workload,
//!   bounded, against the live service (measure_live) ─► deploy::rule::judge vs the study's figure
//!   (the mean over the configuration's runs, with the study's noise)
//!   ─► kept | roll back: restore the backup, restart, ready, one request answered ─► record
//! ```
//!
//! No shell is run: only the argv the user configured. A bad canary is a result (rolled back and
//! recorded); errors are left for what cannot be recorded or undone.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tracing::{info, warn};

use super::pipeline::Bench;
use crate::backend::{self, Backend, LaunchPlan, service};
use crate::deploy::{self, Call, DeployTarget, Judgement, Reference, file};
use crate::measure::probe::{Probe, ProbeSpec, ServerSide};
use crate::shutdown::Shutdown;
use crate::space::Space;
use crate::store::{DeployState, Measured, Store};
use crate::trial::{Study, Trial};
use crate::workload::{self, Target};

/// What to apply, where, and how long the canary may take.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Apply this trial; `None`: the configuration the study names (`trial::winner`, as `best`
    /// and `export`), when it meets every SLO.
    pub trial: Option<i64>,
    pub target: DeployTarget,
    /// Print the diff and the commands; touch nothing.
    pub dry_run: bool,
    /// Upper bound of the canary's workload; a canary still running then is rolled back.
    pub canary_timeout: Duration,
    /// The least worsening called worse, when the operator raised it (`Reference::worse_by`).
    pub worse_by: Option<f64>,
}

/// Progress of an apply, for the CLI.
#[derive(Debug)]
pub enum ApplyEvent<'a> {
    Written { path: &'a Path, backup: Option<&'a Path> },
    Command { shown: &'a str },
    Ready { after: Duration },
    Canary { judgement: &'a Judgement },
    RollingBack { reason: &'a str },
}

/// How an apply ended (or what a dry run would do).
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub trial_number: i64,
    /// The deployment row; `None` for a dry run.
    pub deployment_id: Option<i64>,
    pub state: Option<DeployState>,
    pub reason: String,
    pub judgement: Option<Judgement>,
    /// The file's diff (dry run).
    pub diff: String,
    /// The commands, as typed (dry run).
    pub commands: Vec<String>,
}

/// The trial to apply: `number`, or the configuration the study names, when it meets every SLO.
async fn pick_trial<'a>(
    store: &Store,
    study: &Study,
    trials: &'a [Trial],
    number: Option<i64>,
) -> anyhow::Result<&'a Trial> {
    match number {
        Some(n) => {
            trials.iter().find(|t| t.number == n).with_context(|| format!("study '{}' has no trial {n}", study.name))
        }
        None => match store.named_winner(study, trials).await?.map(|w| (w.trial, w.feasible)) {
            Some((t, true)) => Ok(t),
            Some((t, false)) => bail!(
                "no trial of study '{}' meets every SLO (the least violating is trial {}); name one with --trial to apply it anyway",
                study.name,
                t.number
            ),
            None => bail!("study '{}' has no finished trial to apply", study.name),
        },
    }
}

/// Apply a trial of `study` (see the module docs).
pub async fn apply(
    store: &Store,
    study: &Study,
    space: &Space,
    options: &ApplyOptions,
    shutdown: &Shutdown,
    on_event: &mut (dyn FnMut(ApplyEvent<'_>) + Send),
) -> anyhow::Result<ApplyReport> {
    let trials = store.trials(study.id).await?;
    let trial = pick_trial(store, study, &trials, options.trial).await?;
    if space.capacity.is_some() && !options.dry_run {
        // Refused before anything is written: the canary could not judge it.
        bail!(
            "study '{}' searches capacity, and apply's canary would have to load the live service to its limit to \
             measure it; deploy `infertune export {} --trial {}` yourself",
            study.name,
            study.name,
            trial.number
        );
    }
    let reference = Reference::of_trial(&trials, trial).worse_by(options.worse_by);
    let plan = trial.plan.clone().with_context(|| format!("trial {} was never started", trial.number))?;
    let target = &options.target;
    let text = deploy::target::render(study, trial, target.format)?;
    let path = &target.path;
    let _lock = match options.dry_run {
        true => None,
        false => Some(super::lock::PidLock::apply(path)?),
    };
    let found = file::read(path).with_context(|| format!("reading '{}'", path.display()))?;
    let old_text = found.as_ref().map(|(b, _)| String::from_utf8_lossy(b).into_owned());
    let mut report = ApplyReport {
        trial_number: trial.number,
        deployment_id: None,
        state: None,
        reason: String::new(),
        judgement: None,
        diff: file::diff(path, old_text.as_deref(), &text),
        commands: target.shown_commands(),
    };
    if options.dry_run {
        report.reason = "dry run: nothing written, nothing run".into();
        return Ok(report);
    }
    if !trial.is_feasible() {
        warn!(trial = trial.number, "applying a trial that did not meet every SLO in the study");
    }
    let id = store
        .begin_deployment(
            study.id,
            trial.number,
            (&path.display().to_string(), &target.url),
            Some(reference.objective).filter(|v| v.is_finite()),
        )
        .await?;
    report.deployment_id = Some(id);
    let previous = previous_file(path, found, text.as_bytes())?;
    let deployment =
        Deployment { space, target, plan: &plan, reference, shutdown, id, canary_timeout: options.canary_timeout };
    let (state, reason, judgement) = deployment.run(&text, &previous, on_event).await?;
    let canary = judgement.as_ref().map(measured);
    store.finish_deployment(id, state, &reason, canary.as_ref()).await?;
    info!(trial = trial.number, state = state.as_str(), reason = %reason, "apply finished");
    Ok(ApplyReport { state: Some(state), reason, judgement, ..report })
}

/// The stored form of a canary's judgement.
pub(super) fn measured(j: &Judgement) -> Measured {
    Measured {
        objective: j.objective,
        ratio: j.ci.ratio,
        ci_low: j.ci.lo,
        ci_high: j.ci.hi,
        violation: j.violation,
        summary: Some(j.summary.clone()),
    }
}

/// The file a rollback restores, with its metadata; `None`: there was no file. Saves the backup.
/// When the file already holds the new text (a rerun after a killed apply), the backup written
/// by the first run is the file before.
fn previous_file(
    path: &Path,
    found: Option<(Vec<u8>, std::fs::Metadata)>,
    new: &[u8],
) -> anyhow::Result<Option<(Vec<u8>, std::fs::Metadata)>> {
    let Some(found) = found else { return Ok(None) };
    let backup = file::backup_path(path);
    if found.0 == new
        && let Some(kept) = file::read(&backup).with_context(|| format!("reading '{}'", backup.display()))?
    {
        return Ok(Some(kept));
    }
    file::save_backup(path, &found, new).with_context(|| format!("writing the backup '{}'", backup.display()))?;
    Ok(Some(found))
}

/// One apply in progress: what it writes, where, and how it checks.
struct Deployment<'a> {
    space: &'a Space,
    target: &'a DeployTarget,
    plan: &'a LaunchPlan,
    /// What the canary is judged against.
    reference: Reference,
    shutdown: &'a Shutdown,
    id: i64,
    canary_timeout: Duration,
}

impl Deployment<'_> {
    /// Write, restart, canary, and roll back when it fails: the final state and why.
    async fn run(
        &self,
        text: &str,
        previous: &Option<(Vec<u8>, std::fs::Metadata)>,
        on_event: &mut (dyn FnMut(ApplyEvent<'_>) + Send),
    ) -> anyhow::Result<(DeployState, String, Option<Judgement>)> {
        let path = &self.target.path;
        let like = previous.as_ref().map(|(_, m)| m);
        file::write_atomic(path, text.as_bytes(), like).with_context(|| format!("writing '{}'", path.display()))?;
        let backup = file::backup_path(path);
        on_event(ApplyEvent::Written { path, backup: previous.as_ref().map(|_| backup.as_path()) });
        let backend = backend::from_spec(&self.space.backend, &self.space.params);
        let failure = match self.restart(backend.as_ref(), on_event).await {
            Err(e) => Some(format!("{e:#}")),
            Ok(()) => None,
        };
        let judgement = match failure {
            Some(_) => None,
            None => match self.canary(backend.as_ref()).await {
                Ok(j) => Some(j),
                Err(e) => return self.give_up(backend.as_ref(), previous, format!("{e:#}"), on_event).await,
            },
        };
        if let Some(j) = &judgement {
            on_event(ApplyEvent::Canary { judgement: j });
            if j.call == Call::Holds {
                return Ok((DeployState::Kept, format!("canary held: {}", j.reason), judgement));
            }
        }
        let why = failure.unwrap_or_else(|| format!("canary failed: {}", judgement.as_ref().expect("judged").reason));
        let (state, reason, _) = self.give_up(backend.as_ref(), previous, why, on_event).await?;
        Ok((state, reason, judgement))
    }

    /// Roll back for `why`: the final state and the reason recorded.
    async fn give_up(
        &self,
        backend: &dyn Backend,
        previous: &Option<(Vec<u8>, std::fs::Metadata)>,
        why: String,
        on_event: &mut (dyn FnMut(ApplyEvent<'_>) + Send),
    ) -> anyhow::Result<(DeployState, String, Option<Judgement>)> {
        on_event(ApplyEvent::RollingBack { reason: &why });
        match self.roll_back(backend, previous, on_event).await {
            Ok(check) => Ok((DeployState::RolledBack, format!("{why}; rolled back: {check}"), None)),
            Err(e) => Ok((DeployState::Failed, format!("{why}; the rollback failed too: {e:#}"), None)),
        }
    }

    /// Run the target's commands, then wait until the service answers its health path.
    async fn restart(
        &self,
        backend: &dyn Backend,
        on_event: &mut (dyn FnMut(ApplyEvent<'_>) + Send),
    ) -> anyhow::Result<()> {
        for (argv, shown) in self.target.commands.iter().zip(self.target.shown_commands()) {
            on_event(ApplyEvent::Command { shown: &shown });
            service::restart(argv).await?;
        }
        let deadline = self.space.backend.ready_timeout;
        let url = format!("{}{}", self.target.url, backend.health_path());
        let Some(after) = service::wait_url(&workload::http_client()?, &url, deadline).await else {
            bail!("the service did not answer '{url}' within {deadline:?} after the restart");
        };
        on_event(ApplyEvent::Ready { after });
        Ok(())
    }

    /// The study's workload against the live service, judged against the study's figure.
    async fn canary(&self, backend: &dyn Backend) -> anyhow::Result<Judgement> {
        let bench = Bench::new(self.space, backend, self.shutdown)?;
        // Prompts the study's trials did not send: the server's prompt cache must not flatter it.
        let draw = 1_000_000 + self.id as u64;
        let live = live_target(backend, self.plan, &self.target.url);
        let (run, server) = measure_live(&bench, &live, draw, self.canary_timeout).await?;
        Ok(judge(&bench, &run, &server, self.reference, self.id as u64))
    }

    /// Put the previous file back (or remove the new one when there was none), restart, and
    /// check that the old configuration answers a request.
    async fn roll_back(
        &self,
        backend: &dyn Backend,
        previous: &Option<(Vec<u8>, std::fs::Metadata)>,
        on_event: &mut (dyn FnMut(ApplyEvent<'_>) + Send),
    ) -> anyhow::Result<String> {
        let path = &self.target.path;
        match previous {
            Some((bytes, meta)) => file::write_atomic(path, bytes, Some(meta)),
            None => std::fs::remove_file(path)
                .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }),
        }
        .with_context(|| format!("restoring '{}'", path.display()))?;
        self.restart(backend, on_event).await?;
        answers(backend, self.space, self.plan, &self.target.url, self.shutdown).await?;
        Ok(match previous {
            Some((_, meta)) => format!("'{}' restored ({} bytes), the service answers", path.display(), meta.size()),
            None => format!("'{}' removed (there was none), the service answers", path.display()),
        })
    }
}

/// The request target of the live service at `url` for `plan`'s model and per-request options.
pub(super) fn live_target(backend: &dyn Backend, plan: &LaunchPlan, url: &str) -> Target {
    Target {
        protocol: backend.protocol(),
        base_url: url.trim_end_matches('/').to_string(),
        model: backend.request_model(plan),
        options: plan.request_options.clone(),
    }
}

/// The study's workload (warm-up, then its requests; or its trace, replayed on its schedule)
/// against the live service, with the probe around it (RSS of the process listening on the
/// service's port, `/metrics`), within `limit`. Never prunes and never restarts: a missed SLO is
/// the figure wanted here.
pub(super) async fn measure_live(
    bench: &Bench<'_>,
    target: &Target,
    draw: u64,
    limit: Duration,
) -> anyhow::Result<(workload::Run, ServerSide)> {
    if bench.space.capacity.is_some() {
        bail!(
            "measuring a live service is implemented for dataset and trace workloads, not for a capacity search (it would load the service to its limit)"
        );
    }
    let port = reqwest::Url::parse(&target.base_url).ok().and_then(|u| u.port_or_known_default());
    let spec = ProbeSpec {
        base_url: target.base_url.clone(),
        version_path: bench.backend.version_path(),
        metrics_path: bench.backend.metrics_path(),
        memory_pid: port.and_then(crate::measure::system::listening_pid),
        gpu_env: None,
        gpu_baseline: None,
    };
    let probe = Probe::start(&bench.client, spec).await;
    let mut workload_spec = bench.space.workload.clone();
    workload_spec.draw = draw;
    let started = Instant::now();
    let run = tokio::select! {
        r = tokio::time::timeout(limit, live_workload(bench, target, &workload_spec)) => r,
        _ = bench.shutdown.graceful.cancelled() => {
            probe.finish().await;
            bail!("interrupted while measuring the live service");
        }
    };
    let server = probe.finish().await;
    match run {
        Ok(run) => Ok((run?, server)),
        Err(_) => bail!("the measurement did not finish within {limit:?} (stopped after {:?})", started.elapsed()),
    }
}

/// One run of the study's workload against the live service: its dataset requests, or its
/// trace replayed as a trial replays it (the service's tokenizer asked first: it was restarted
/// or is not known to this process). A client that fell behind the trace's schedule twice is an
/// error: the figures would describe the client.
async fn live_workload(
    bench: &Bench<'_>,
    target: &Target,
    spec: &crate::space::WorkloadSpec,
) -> anyhow::Result<workload::Run> {
    match bench.trace {
        Some(_) => super::pipeline::replay(bench, target, true, spec).await.map(|(run, _)| run),
        None => Ok(workload::run(&bench.client, target, &bench.prompts, spec).await),
    }
}

/// A live measurement judged by `deploy::rule` against `reference`.
pub(super) fn judge(
    bench: &Bench<'_>,
    run: &workload::Run,
    server: &ServerSide,
    reference: Reference,
    seed: u64,
) -> Judgement {
    let space = bench.space;
    let goal = (&space.objective, space.slos.as_slice(), &bench.request_slo);
    deploy::rule::judge(&run.samples, run.wall, server, goal, reference, seed)
}

/// One request of the study's dataset answered by the service at `url` (named by `plan`'s
/// model, without its per-request options: the restored configuration's are not known).
async fn answers(
    backend: &dyn Backend,
    space: &Space,
    plan: &LaunchPlan,
    url: &str,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let bench = Bench::new(space, backend, shutdown)?;
    let target = Target { options: Default::default(), ..live_target(backend, plan, url) };
    let prompt = bench.prompts.first().context("the study's dataset has no prompt")?;
    let sample = workload::send(&bench.client, &target, prompt, &space.workload, Instant::now()).await;
    match sample.error {
        None => Ok(()),
        Some(kind) => bail!(
            "the restored configuration did not answer a request at '{url}' ({}: {})",
            kind.as_str(),
            sample.error_message.unwrap_or_default()
        ),
    }
}

/// Where `apply` and `watch` find the target when the command line names none: the space's
/// service block (Ollama's service mode); else an error saying which options name one.
pub fn target_from_space(space: &Space) -> anyhow::Result<DeployTarget> {
    let backend = backend::from_spec(&space.backend, &space.params);
    match backend.service() {
        Some(spec) => Ok(DeployTarget::from_service(&spec)),
        None => bail!(
            "the study's space has no service block ([backend] mode = \"service\"); name the target: --unit NAME, or --env-file/--drop-in PATH with --url URL and the restart command after `--`"
        ),
    }
}
