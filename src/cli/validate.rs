//! `infertune validate STUDY`: re-measure the best trial against the default configuration on
//! fresh server starts, interleaved (≥ 3 pairs), and store the ratio with its 95 % CI; `best`
//! shows the latest one.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::daemon::validate;
use crate::shutdown::Shutdown;
use crate::space::Space;
use crate::store::{Store, Validation};
use crate::trial;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Study name
    pub study: String,
    /// Rounds to run, each measuring the default and every candidate once (at least 3)
    #[arg(long, default_value_t = 3)]
    pub pairs: u32,
    /// Re-measure this many of the best feasible trials and pick the winner by lower
    /// confidence bound
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// The study's space file, to resolve its relative paths [default: the stored text,
    /// relative to the directory of the space file the study was started from]
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
}

pub async fn run(store: &Store, args: ValidateArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let study = super::find_study(store, &args.study).await?;
    let space = match &args.space {
        Some(path) => Space::load(path)?,
        None => crate::daemon::stored_space(&study)?,
    };
    let v = validate_study(store, &study, &space, args.pairs, args.top, &CancellationToken::new()).await?;
    print(&v, out)?;
    Ok(())
}

/// Re-validate the study's `top` best feasible trials against the space's default in `pairs`
/// interleaved rounds, and store the result (`validate`, and `tune` when the space asks).
pub async fn validate_study(
    store: &Store,
    study: &trial::Study,
    space: &Space,
    pairs: u32,
    top: usize,
    cancel: &CancellationToken,
) -> anyhow::Result<Validation> {
    let trials = store.trials(study.id).await?;
    let feasible = trial::top_feasible(&trials, study.direction, top.max(1));
    if feasible.is_empty() {
        bail!("study '{}' has no trial meeting every SLO", study.name);
    }
    let baseline =
        space.default_candidate().context("the space gives no default for some parameter, so there is no baseline")?;
    let v = validate::revalidate(space, &feasible, &baseline, pairs, &Shutdown::following(cancel)).await?;
    store.save_validation(study.id, &v).await?;
    Ok(v)
}

/// One line: the winner against the default.
pub fn print(v: &Validation, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "re-validated: trial {} / default {} = {:.3} (95 % CI {:.3}–{:.3}, {} interleaved rounds on fresh starts)",
        v.winner_number,
        v.metric,
        v.ratio,
        v.ci_low,
        v.ci_high,
        v.winner_values.len().min(v.default_values.len())
    )
}

/// The drift anchor's history, when the default was measured more than once.
pub fn print_anchor(study: &crate::trial::Study, trials: &[trial::Trial], out: &mut dyn Write) -> anyhow::Result<()> {
    let Ok(space) = Space::from_toml(&study.space_toml, &study.name, std::path::Path::new("/")) else { return Ok(()) };
    let Some(default) = space.default_candidate() else { return Ok(()) };
    if let Some((n, drift)) = crate::search::anchor::drift(trials, &default)
        && n > 1
    {
        let flag = if drift > crate::search::anchor::DRIFT_LIMIT {
            " (over 5 %: the machine drifted; compare trials with care)"
        } else {
            ""
        };
        writeln!(out, "anchor: default measured {n} times, largest drift {:.1} %{flag}", drift * 100.0)?;
    }
    Ok(())
}
