//! `infertune worker STUDY --db postgres://...`: one host's worker on a shared study. It claims
//! trials one at a time (the study's lock serializes proposals, so every worker's running trial
//! is seen), runs them on this host, heartbeats, and retries the candidates of workers that
//! went silent. `tune SPACE --db postgres://...` creates the study and is its first worker.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use super::output::{print_best, trial_json};
use super::{find_study, parse_duration_arg, validate};
use crate::daemon::worker::{self, Fleet, WorkerReport};
use crate::daemon::{self, Shutdown};
use crate::store::Store;
use crate::trial;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Study to work on (created by `tune SPACE --db postgres://...`)
    pub study: String,
    #[command(flatten)]
    pub budget: super::tune::BudgetArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Print the final report as JSON
    #[arg(long)]
    pub json: bool,
}

/// How a process takes part in a shared study (`worker`, and `tune` on PostgreSQL).
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// How often this worker records that it is alive
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "5s")]
    pub heartbeat: Duration,
    /// A running trial whose worker has been silent this long is marked lost and its
    /// candidate retried by another worker
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "30s")]
    pub grace: Duration,
    /// With --replay: each trial takes its recorded workload time divided by this (e.g. 20),
    /// so workers overlap as they would live [default: answer at once]
    #[arg(long, value_name = "FACTOR", value_parser = parse_speed)]
    pub replay_speed: Option<f64>,
    /// This host's class. `tune --host-class NAME` declares it for a new study; workers of
    /// the same class are admitted although their CPU, cores or memory differ from the
    /// first host's (engine and model files must match in any case)
    #[arg(long, value_name = "NAME")]
    pub host_class: Option<String>,
}

impl FleetArgs {
    pub fn fleet(&self) -> Fleet {
        Fleet {
            heartbeat: self.heartbeat,
            grace: self.grace,
            replay_speed: self.replay_speed,
            host_class: self.host_class.clone(),
            ..Fleet::default()
        }
    }
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive speed-up factor")),
    }
}

/// `worker`: join the study, work until its budget, a deadline or a signal; validate if this
/// worker takes the validation; print the report.
pub(super) async fn run(store: &Store, args: WorkerArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    if !store.is_shared() {
        bail!(
            "'worker' needs a shared database (--db postgres://...); on SQLite one process runs a \
             study: use 'tune'"
        );
    }
    let study = find_study(store, &args.study).await?;
    let space = daemon::stored_space(&study)?;
    let options = args.budget.options(&space)?;
    let shutdown = Shutdown::listen().context("installing signal handlers")?;
    let mut on_event = |event: daemon::Event<'_>| {
        if !args.json {
            let _ = super::tune::print_event(&event, out);
        }
    };
    let done = worker::join(&study, store, &options, &args.fleet.fleet(), &shutdown, &mut on_event).await?;
    let pairs = args.budget.validate_pairs(&space);
    let validation = validate_once(store, &done, &space, pairs, args.budget.replay.is_some(), &shutdown).await?;
    print_report(&done, validation.as_ref(), args.json, out)
}

/// The end-of-study validation, if the study ran to its end, asks for one, and this worker is
/// the one that takes it (the others just stop).
pub(super) async fn validate_once(
    store: &Store,
    done: &WorkerReport,
    space: &crate::space::Space,
    pairs: u32,
    is_replay: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<anyhow::Result<crate::store::Validation>>> {
    let report = &done.report;
    let ran_to_end = matches!(report.stop, daemon::Stop::Budget | daemon::Stop::Exhausted | daemon::Stop::Deadline);
    if pairs == 0 || !ran_to_end || is_replay || shutdown.graceful.is_cancelled() {
        return Ok(None);
    }
    if !store.claim_validation(report.study.id, done.run).await? {
        return Ok(None);
    }
    let top = space.validate_top;
    Ok(Some(validate::validate_study(store, &report.study, space, pairs, top, &shutdown.graceful).await))
}

fn print_report(
    done: &WorkerReport,
    validation: Option<&anyhow::Result<crate::store::Validation>>,
    is_json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let report = &done.report;
    if is_json {
        let best = trial::best(&report.trials, report.study.direction);
        let doc = json!({
            "study": report.study.name,
            "worker": done.run.0,
            "stop": report.stop.as_str(),
            "trials": report.trials.len(),
            "best": best.map(|(t, feasible)| trial_json(t, feasible)),
            "validation": match validation {
                Some(Ok(v)) => serde_json::to_value(v)?,
                Some(Err(e)) => json!({"error": format!("{e:#}")}),
                None => serde_json::Value::Null,
            },
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    writeln!(out, "worker stopped: {} ({} trials in the study)", report.stop.as_str(), report.trials.len())?;
    print_best(&report.study, &report.trials, out)?;
    match validation {
        Some(Ok(v)) => validate::print(v, out)?,
        Some(Err(e)) => writeln!(out, "re-validation failed: {e:#} (the study is kept; `infertune validate` retries)")?,
        None => {}
    }
    Ok(())
}
