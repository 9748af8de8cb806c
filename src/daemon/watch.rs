//! `watch`: does the deployed configuration still hold? (issue 19)
//!
//! ```text
//! deployed trial (the last kept apply, else the study's best) ─► fingerprint now vs the study's
//!   ─► the study's workload against the live service (no restart; apply::measure_live)
//!   ─► deploy::rule::judge vs the deployed baseline (the kept apply's canary, else the study's figure)
//!   ─► Store::save_watch (a time series, with the fingerprint of that moment)
//!   ─► deploy::textfile (--textfile) ─► with --retune, on a regression or a changed fingerprint:
//!      a new study warm-started from this one (daemon::tune with Options::warm_start)
//! ```

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tracing::{info, warn};

use super::apply::{judge, live_target, measure_live, target_from_space};
use super::pipeline::Bench;
use super::{Event, Options, clock, fingerprint::fingerprint_drift, take_fingerprint};
use crate::backend;
use crate::deploy::{Call, Judgement, Reference, textfile};
use crate::shutdown::Shutdown;
use crate::space::Space;
use crate::store::{Store, WatchRun};
use crate::trial::{Study, Trial};

/// What a watch run found (also the order of precedence of the exit status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every SLO met, the objective not significantly worse, the fingerprint unchanged.
    Holds,
    /// An SLO missed, the objective significantly worse, or the service could not be measured.
    Regression,
    /// The model files, the engine version or the host differ from the study's.
    FingerprintChanged,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Holds => "ok",
            Status::Regression => "regression",
            Status::FingerprintChanged => "drift",
        }
    }
}

/// What to watch and what to do about it.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// The service's base URL; `None`: the kept apply's, else the space's service block.
    pub url: Option<String>,
    /// Write `infertune_watch_<study>.prom` here.
    pub textfile: Option<PathBuf>,
    /// On a regression or a fingerprint change, start a warm-started study (its trial budget:
    /// `retune_trials`, else the space's).
    pub retune: bool,
    pub retune_trials: Option<u32>,
    /// Upper bound of one measurement.
    pub timeout: Duration,
    /// The least worsening called a regression, when the operator raised it (`Reference::worse_by`).
    pub worse_by: Option<f64>,
}

/// One watch run.
#[derive(Debug, Clone)]
pub struct WatchReport {
    pub status: Status,
    /// The trial taken as deployed.
    pub trial_number: i64,
    pub run: WatchRun,
    pub judgement: Option<Judgement>,
    pub textfile: Option<PathBuf>,
    /// The study a `--retune` ran.
    pub retune: Option<String>,
}

/// The deployed trial, its baseline (the kept apply's canary, else the study's figure for the
/// configuration, with the study's noise), the deployment id and URL (when recorded).
async fn deployed<'a>(
    store: &Store,
    study: &Study,
    trials: &'a [Trial],
) -> anyhow::Result<(&'a Trial, Reference, Option<i64>, Option<String>)> {
    if let Some(d) = store.kept_deployment(study.id).await? {
        let trial = trials.iter().find(|t| t.number == d.trial_number).context("the deployed trial is stored")?;
        let baseline = match &d.canary {
            Some(c) => Reference::with_study_noise(trials, c.objective),
            None => Reference::of_trial(trials, trial),
        };
        return Ok((trial, baseline, Some(d.id), Some(d.url)));
    }
    match store.named_winner(study, trials).await? {
        Some(w) if w.feasible => {
            let t = w.trial;
            warn!(
                trial = t.number,
                "no apply recorded: watching the configuration the study names as the deployed one"
            );
            Ok((t, Reference::of_trial(trials, t), None, None))
        }
        _ => bail!("study '{}' has no kept deployment and no trial meeting every SLO to watch", study.name),
    }
}

/// Measure the live service once and record what was found (see the module docs).
pub async fn watch_once(
    store: &Store,
    study: &Study,
    space: &Space,
    options: &WatchOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<WatchReport> {
    let trials = store.trials(study.id).await?;
    let (trial, baseline, deployment_id, recorded_url) = deployed(store, study, &trials).await?;
    let baseline = baseline.worse_by(options.worse_by);
    let url = match options.url.clone().or(recorded_url) {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => target_from_space(space)?.url,
    };
    let backend = backend::from_spec(&space.backend, &space.params);
    let bench = Bench::new(space, backend.as_ref(), shutdown)?;
    let now = take_fingerprint(space, backend.as_ref(), &bench.client, store, &mut |_: Event<'_>| {}).await?;
    let drift = fingerprint_drift(&study.fingerprint, &now);
    let plan = trial.plan.as_ref().context("the deployed trial has a launch plan")?;
    let target = live_target(backend.as_ref(), plan, &url);
    let draw = 2_000_000 + crate::store::now_ms() as u64 % 1_000_000;
    let judgement = match measure_live(&bench, &target, draw, options.timeout).await {
        Ok((run, server)) => Ok(judge(&bench, &run, &server, baseline, draw)),
        Err(e) => Err(format!("{e:#}")),
    };
    let (status, reason) = verdict(&judgement, &drift);
    info!(study = %study.name, status = status.as_str(), reason = %reason, "watch run");
    let judged = judgement.as_ref().ok();
    let mut run = WatchRun {
        id: 0,
        deployment_id,
        at_ms: crate::store::now_ms(),
        status: status.as_str().to_string(),
        reason,
        measured: judged.map(super::apply::measured),
        baseline: Some(baseline.objective).filter(|b| b.is_finite()),
        drift: (!drift.is_empty()).then(|| drift.join("; ")),
        fingerprint: now,
        retune_study: None,
    };
    run.id = store.save_watch(study.id, &run).await?;
    let textfile = match &options.textfile {
        Some(dir) => Some(write_textfile(dir, study, space, &run, judged, status)?),
        None => None,
    };
    let judgement = judgement.ok();
    Ok(WatchReport { status, trial_number: trial.number, run, judgement, textfile, retune: None })
}

/// The status and its reason, from the judgement (or why nothing was measured) and the drift.
fn verdict(judgement: &Result<Judgement, String>, drift: &[String]) -> (Status, String) {
    let figures = match judgement {
        Ok(j) if j.call == Call::Holds => (Status::Holds, format!("holds: {}", j.reason)),
        Ok(j) => (Status::Regression, format!("regression: {}", j.reason)),
        Err(e) => (Status::Regression, format!("regression: the live service could not be measured: {e}")),
    };
    match drift.is_empty() {
        true => figures,
        false => (Status::FingerprintChanged, format!("fingerprint changed: {}; {}", drift.join("; "), figures.1)),
    }
}

fn write_textfile(
    dir: &std::path::Path,
    study: &Study,
    space: &Space,
    run: &WatchRun,
    judgement: Option<&Judgement>,
    status: Status,
) -> anyhow::Result<PathBuf> {
    let figures = textfile::WatchFigures {
        study: &study.name,
        metric: space.objective.metric.name(),
        objective: judgement.map_or(f64::NAN, |j| j.objective),
        baseline: run.baseline.unwrap_or(f64::NAN),
        ratio_lo: judgement.map_or(f64::NAN, |j| j.ci.lo),
        ratio_hi: judgement.map_or(f64::NAN, |j| j.ci.hi),
        is_slo_met: judgement.is_some_and(|j| j.violation == 0.0),
        is_regression: judgement.is_none_or(|j| j.call != Call::Holds),
        is_fingerprint_changed: status == Status::FingerprintChanged,
        at_ms: run.at_ms,
    };
    textfile::write(dir, &figures).with_context(|| format!("writing the textfile into '{}'", dir.display()))
}

/// With `--retune`, after a run that did not hold: a new study `<name>-retune-<k>` of the same
/// space, warm-started from this one (its best configurations first, its trials as priors).
pub async fn retune(
    store: &Store,
    study: &Study,
    space: &Space,
    report: &mut WatchReport,
    max_trials: Option<u32>,
    shutdown: &Shutdown,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<Option<super::Report>> {
    if report.status == Status::Holds {
        return Ok(None);
    }
    let name = super::next_free_name(store, &format!("{}-retune", study.name)).await?;
    let options = Options {
        study_name: Some(name.clone()),
        warm_start: Some(study.name.clone()),
        max_trials,
        space_dir: study.space_dir.clone(),
        ..Options::default()
    };
    store.set_watch_retune(report.run.id, &name).await?;
    report.retune = Some(name);
    Ok(Some(super::tune(space, store, &options, shutdown, on_event).await?))
}

/// How long until the next run: `every` after the last start, then (with a window) until the
/// window opens.
pub fn next_wait(every: Duration, window: Option<clock::Window>, elapsed: Duration) -> Duration {
    let wait = every.saturating_sub(elapsed);
    match window {
        None => wait,
        Some(w) => {
            let at = SystemTime::now() + wait;
            wait + w.until_open(clock::local_minutes(at).0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_run_is_every_after_the_last_start_then_inside_the_window() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(next_wait(h(24), None, h(1)), h(23));
        assert_eq!(next_wait(h(1), None, h(2)), Duration::ZERO, "a run longer than --every starts the next at once");
        // A window that opens 2 h after the due time: wait until it opens.
        let due = SystemTime::now() + h(23);
        let (m, _) = clock::local_minutes(due);
        let start = clock::TimeOfDay { minutes: (m + 120) % 1440 };
        let end = clock::TimeOfDay { minutes: (m + 180) % 1440 };
        let wait = next_wait(h(24), Some(clock::Window { start, end }), h(1));
        // 23 h to the due time, then 2 h until the window opens (a minute less if the clock's
        // minute turned between the two readings).
        assert!(wait <= h(25) && wait >= h(25) - Duration::from_secs(60), "{wait:?}");
    }

    #[test]
    fn a_changed_fingerprint_wins_and_keeps_the_figures_reason() {
        let drift = vec!["model '/m/a.gguf' sha256 aa -> bb".to_string()];
        let (status, reason) = verdict(&Err("connection refused".into()), &drift);
        assert_eq!(status, Status::FingerprintChanged);
        assert_eq!(
            reason,
            "fingerprint changed: model '/m/a.gguf' sha256 aa -> bb; regression: the live service could not be measured: connection refused"
        );
        let (status, reason) = verdict(&Err("timeout".into()), &[]);
        assert_eq!(
            (status, reason.as_str()),
            (Status::Regression, "regression: the live service could not be measured: timeout")
        );
    }
}
