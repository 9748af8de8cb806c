//! `infertune capacity STUDY --trial N [--rate]`: the highest closed-loop concurrency (or, with
//! `--rate`, open-loop Poisson request rate) at which an SLO still holds for a stored trial's
//! configuration, measured on the live backend.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::daemon::capacity::{self, Load};
use crate::shutdown::Shutdown;
use crate::space::Space;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// Study name
    pub study: String,
    /// Trial number whose configuration to load
    #[arg(long, value_name = "N")]
    pub trial: i64,
    /// SLO metric to hold (one of the study's SLOs) [default: the first]
    #[arg(long, value_name = "METRIC")]
    pub slo: Option<String>,
    /// Search over an open-loop Poisson request rate (requests/s, arrivals that do not wait for
    /// answers) instead of closed-loop concurrency
    #[arg(long)]
    pub rate: bool,
    /// Lowest level tried [default: 1 client, or 0.25 req/s with --rate]
    #[arg(long)]
    pub min: Option<f64>,
    /// Highest level tried [default: 16 clients, or 8 req/s with --rate]
    #[arg(long)]
    pub max: Option<f64>,
    /// The study's space file, to resolve its relative paths [default: the stored text,
    /// relative to the directory of the space file the study was started from]
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `capacity`: search the load at which the SLO still holds for the trial's configuration.
pub async fn run(store: &Store, args: CapacityArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let study = super::find_study(store, &args.study).await?;
    let space = match &args.space {
        Some(path) => Space::load(path)?,
        None => crate::daemon::stored_space(&study)?,
    };
    let trials = store.trials(study.id).await?;
    let trial = trials
        .iter()
        .find(|t| t.number == args.trial)
        .with_context(|| format!("study '{}' has no trial {}", study.name, args.trial))?;
    let slo = match &args.slo {
        Some(m) => space.slos.iter().find(|s| s.metric.name() == m),
        None => space.slos.first(),
    }
    .with_context(|| format!("the study has no SLO '{}'", args.slo.as_deref().unwrap_or("(any)")))?
    .clone();
    let load = if args.rate { Load::Rate } else { Load::Concurrency };
    let (min, max) = load.default_range();
    let (min, max) = (args.min.unwrap_or(min), args.max.unwrap_or(max));
    let cancel = CancellationToken::new();
    let found = capacity::search(&space, &trial.params, &slo, load, min, max, &Shutdown::following(&cancel)).await?;
    if args.json {
        let levels: Vec<_> = found.levels.iter().map(|(l, v)| serde_json::json!({"level": l, "value": v})).collect();
        let doc = serde_json::json!({
            "study": study.name, "trial": args.trial, "slo": slo, "load": load,
            "unit": if load == Load::Rate { "requests/s" } else { "clients" },
            "capacity": found.found, "is_at_max": found.is_at_max, "levels": levels,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    let op = if slo.is_upper_bound { "<=" } else { ">=" };
    let level = |l: f64| match load {
        Load::Concurrency => format!("concurrency {l:>4}"),
        Load::Rate => format!("rate {l:>6.2} req/s"),
    };
    let amount = |l: f64| match load {
        Load::Concurrency => format!("{l} concurrent requests"),
        Load::Rate => format!("{l:.2} requests/s (Poisson arrivals)"),
    };
    for (l, v) in &found.levels {
        writeln!(out, "{}  {} {v:.1}", level(*l), slo.metric)?;
    }
    match found.found {
        Some(l) if found.is_at_max => writeln!(
            out,
            "capacity: >= {} (the top of the range still meets {} {op} {})",
            amount(l),
            slo.metric,
            slo.limit
        )?,
        Some(l) => writeln!(out, "capacity: {} with {} {op} {}", amount(l), slo.metric, slo.limit)?,
        None => writeln!(
            out,
            "capacity: none (the lowest level, {}, already misses {} {op} {})",
            level(min),
            slo.metric,
            slo.limit
        )?,
    }
    Ok(())
}
