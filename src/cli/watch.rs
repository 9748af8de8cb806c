//! `infertune watch STUDY`: measure the deployed configuration on the live service (no restart)
//! and say whether it still holds; once (for a systemd timer, see `contrib/`) or `--every`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use super::{ExitStatus, find_study, parse_duration_arg, parse_window};
use crate::daemon::clock::Window;
use crate::daemon::watch::{self, Status, WatchOptions, WatchReport};
use crate::daemon::{Event, Shutdown};
use crate::space::Space;
use crate::store::Store;

/// Exit status of a one-shot watch whose measurement regressed.
pub const EXIT_REGRESSION: u8 = 2;
/// Exit status of a one-shot watch that found the fingerprint changed (with or without a
/// regression; the output says which).
pub const EXIT_FINGERPRINT: u8 = 3;

#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Each run measures the live service with the study's workload (no restart), takes the fingerprint\n",
    "(model file hashes, engine version, host), and stores both as a time series (`deployments STUDY`,\n",
    "`report`). The deployed configuration is the last apply that was kept (else the study's best trial);\n",
    "its baseline is that apply's canary (else the study's figure).\n\n",
    "Regression: an SLO of the study is missed, the service cannot be measured, or the objective is\n",
    "significantly worse than the baseline: the 95 % bootstrap CI of measured/baseline (requests\n",
    "resampled 2000 times) lies wholly on the worse side of 1 and the ratio is worse by at least 3 %\n",
    "(--worse-by) and by at least twice the run-to-run noise the study measured.\n\n",
    "Exit status (one-shot runs): 0 holds, 2 regression, 3 fingerprint changed (figures may or may not\n",
    "have regressed; the output says), 1 error. With --every the command runs until SIGINT/SIGTERM and\n",
    "exits 0; use the log, the database or --textfile to alert.\n\n",
    "--textfile DIR writes DIR/infertune_watch_STUDY.prom atomically for the node exporter's textfile\n",
    "collector (--collector.textfile.directory=DIR): objective, baseline, ratio CI, slo_met, regression,\n",
    "fingerprint_changed, last_run_timestamp_seconds."
))]
pub struct WatchArgs {
    /// Study name
    pub study: String,
    /// Base URL of the service [default: the last kept apply's, else the space's service URL]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Write a Prometheus textfile-collector file into this directory
    #[arg(long, value_name = "DIR")]
    pub textfile: Option<PathBuf>,
    /// Run again this long after each run starts, until stopped (e.g. 24h)
    #[arg(long, value_parser = parse_duration_arg, value_name = "DURATION")]
    pub every: Option<Duration>,
    /// With --every: run only inside this daily local-time window (e.g. 02:00-04:00)
    #[arg(long, value_parser = parse_window, requires = "every", value_name = "HH:MM-HH:MM")]
    pub window: Option<Window>,
    /// On a regression or a fingerprint change, start a new study warm-started from this one
    /// (its best configurations first, its trials as priors for tpe)
    #[arg(long)]
    pub retune: bool,
    /// Trial budget of a --retune study [default: the space's]
    #[arg(long, requires = "retune", value_name = "N")]
    pub retune_trials: Option<u32>,
    /// The least worsening of the objective called a regression [default: 3 %]; twice the
    /// study's run-to-run noise counts when that is more
    #[arg(long, value_parser = super::parse_percent, value_name = "PCT")]
    pub worse_by: Option<f64>,
    /// Longest one measurement may take
    #[arg(long, value_parser = parse_duration_arg, default_value = "10m", value_name = "DURATION")]
    pub timeout: Duration,
    /// The study's space file, to resolve its relative paths [default: the stored text]
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// Print each run as JSON
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(store: &Store, args: WatchArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    if study.strategy.is_none() {
        bail!("study '{}' is a saved bench run; watch needs a tuning study", study.name);
    }
    let space = match &args.space {
        Some(path) => Space::load(path)?,
        None => crate::daemon::stored_space(&study)?,
    };
    let options = WatchOptions {
        url: args.url.clone(),
        textfile: args.textfile.clone(),
        retune: args.retune,
        retune_trials: args.retune_trials,
        timeout: args.timeout,
        worse_by: args.worse_by,
    };
    let shutdown =
        Shutdown::listen_saying("signal: stopping after this watch run").context("installing signal handlers")?;
    let Some(every) = args.every else {
        let report = once(store, &study, &space, &options, &shutdown, args.json, out).await?;
        return match report.status {
            Status::Holds => Ok(()),
            Status::Regression => Err(ExitStatus(EXIT_REGRESSION).into()),
            Status::FingerprintChanged => Err(ExitStatus(EXIT_FINGERPRINT).into()),
        };
    };
    while !shutdown.is_requested() {
        let started = Instant::now();
        if let Some(w) = args.window {
            let wait = watch::next_wait(Duration::ZERO, Some(w), Duration::ZERO);
            if !wait.is_zero() {
                writeln!(out, "outside {}-{}: next run in {} min", w.start, w.end, wait.as_secs() / 60)?;
                sleep_or_stop(wait, &shutdown).await;
                continue;
            }
        }
        once(store, &study, &space, &options, &shutdown, args.json, out).await?;
        sleep_or_stop(watch::next_wait(every, args.window, started.elapsed()), &shutdown).await;
    }
    Ok(())
}

async fn sleep_or_stop(wait: Duration, shutdown: &Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {},
        _ = shutdown.graceful.cancelled() => {},
    }
}

/// One watch run, its output, and a re-tune when asked for.
async fn once(
    store: &Store,
    study: &crate::trial::Study,
    space: &Space,
    options: &WatchOptions,
    shutdown: &Shutdown,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<WatchReport> {
    let mut report = watch::watch_once(store, study, space, options, shutdown).await?;
    if !json {
        writeln!(out, "{}: trial {}: {}", report.status.as_str(), report.trial_number, report.run.reason)?;
        if let Some(p) = &report.textfile {
            writeln!(out, "wrote {}", p.display())?;
        }
    }
    let mut first_trial = None;
    if options.retune && report.status != Status::Holds {
        let mut on_event = |e: Event<'_>| {
            if let Event::TrialFinished { trial, .. } = e
                && trial.number == 1
            {
                first_trial = Some(trial.params.brief());
            }
        };
        let tuned =
            watch::retune(store, study, space, &mut report, options.retune_trials, shutdown, &mut on_event).await?;
        if let (Some(tuned), false) = (tuned, json) {
            let first = first_trial.clone().unwrap_or_default();
            writeln!(out, "re-tune: study '{}', {} trials, trial 1 = {first}", tuned.study.name, tuned.trials.len())?;
        }
    }
    if json {
        let doc = json!({
            "status": report.status.as_str(), "trial": report.trial_number, "run": report.run,
            "textfile": report.textfile, "retune_study": report.retune, "retune_first_trial": first_trial,
        });
        writeln!(out, "{}", serde_json::to_string(&doc)?)?;
    }
    Ok(report)
}
