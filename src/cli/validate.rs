//! `infertune validate STUDY`: re-measure the best trial against the default configuration on
//! fresh server starts, interleaved (≥ 3 pairs), and store the ratio with its 95 % CI; `best`
//! shows the latest one.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::daemon::validate;
use crate::space::Space;
use crate::store::{Store, Validation};
use crate::trial;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Study name
    pub study: String,
    /// Default/winner pairs to run (at least 3)
    #[arg(long, default_value_t = 3)]
    pub pairs: u32,
    /// The study's space file, to resolve its relative paths [default: the stored text,
    /// relative to the current directory]
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
}

pub async fn run(store: &Store, args: ValidateArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let study = super::find_study(store, &args.study).await?;
    let space = match &args.space {
        Some(path) => Space::load(path)?,
        None => Space::from_toml(&study.space_toml, &study.name, &std::env::current_dir()?)?,
    };
    let trials = store.trials(study.id).await?;
    let (winner, _) = trial::best(&trials, study.direction)
        .filter(|(_, feasible)| *feasible)
        .with_context(|| format!("study '{}' has no trial meeting every SLO", study.name))?;
    let baseline = space.default_candidate().context("the space gives no default for some parameter, so there is no baseline")?;
    let v = validate::revalidate(&space, winner, &baseline, args.pairs, &CancellationToken::new()).await?;
    store.save_validation(study.id, &v).await?;
    print(&v, out)?;
    Ok(())
}

/// One line: the winner against the default.
pub fn print(v: &Validation, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "re-validated: trial {} / default {} = {:.3} (95 % CI {:.3}–{:.3}, {} interleaved pairs on fresh starts)",
        v.winner_number,
        v.metric,
        v.ratio,
        v.ci_low,
        v.ci_high,
        v.winner_values.len().min(v.default_values.len())
    )
}
