//! `infertune capacity STUDY --trial N`: the highest closed-loop concurrency at which an SLO
//! still holds for a stored trial's configuration, measured on the live backend.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::daemon::capacity;
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
    /// Lowest concurrency tried
    #[arg(long, default_value_t = 1)]
    pub min: u32,
    /// Highest concurrency tried
    #[arg(long, default_value_t = 16)]
    pub max: u32,
    /// The study's space file, to resolve its relative paths [default: the stored text,
    /// relative to the current directory]
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub async fn capacity(store: &Store, args: CapacityArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let study = super::find_study(store, &args.study).await?;
    let space = match &args.space {
        Some(path) => Space::load(path)?,
        None => Space::from_toml(&study.space_toml, &study.name, &std::env::current_dir()?)?,
    };
    let trials = store.trials(study.id).await?;
    let trial = trials
        .iter()
        .find(|t| t.number == args.trial)
        .with_context(|| format!("study '{}' has no trial {}", study.name, args.trial))?;
    let slo = match &args.slo {
        Some(m) => space.slos.iter().find(|s| &s.metric == m),
        None => space.slos.first(),
    }
    .with_context(|| format!("the study has no SLO '{}'", args.slo.as_deref().unwrap_or("(any)")))?
    .clone();
    let cancel = CancellationToken::new();
    let found = capacity::search(&space, &trial.params, &slo, args.min, args.max, &cancel).await?;
    if args.json {
        let levels: Vec<_> = found.levels.iter().map(|(c, v)| serde_json::json!({"concurrency": c, "value": v})).collect();
        let doc = serde_json::json!({
            "study": study.name, "trial": args.trial, "slo": slo,
            "concurrency": found.concurrency, "is_at_max": found.is_at_max, "levels": levels,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    let op = if slo.is_upper_bound { "<=" } else { ">=" };
    for (c, v) in &found.levels {
        writeln!(out, "concurrency {c:>4}  {} {v:.1}", slo.metric)?;
    }
    match found.concurrency {
        Some(c) if found.is_at_max => writeln!(out, "capacity: >= {c} (the top of the range still meets {} {op} {})", slo.metric, slo.limit)?,
        Some(c) => writeln!(out, "capacity: {c} concurrent requests with {} {op} {}", slo.metric, slo.limit)?,
        None => writeln!(out, "capacity: none (concurrency {} already misses {} {op} {})", args.min, slo.metric, slo.limit)?,
    }
    Ok(())
}
