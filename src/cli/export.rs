//! `infertune export STUDY --format F`: write the configuration the study names (or `--trial N`)
//! as an env file, a command line, JSON or a systemd drop-in, to stdout or atomically to a file.
//! The named configuration is `trial::winner`'s, as `best`, `[output]` and the report name it:
//! the validated winner, else the intensified incumbent, else the least violating trial.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::find_study;
use crate::export::{self, Format};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Study name
    pub study: String,
    /// What to write
    #[arg(long, value_enum)]
    pub format: Format,
    /// Write to this file (atomically) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Export this trial instead of the named one (the validated winner, else the intensified
    /// incumbent, else the least violating trial; `best` says which)
    #[arg(long, value_name = "N")]
    pub trial: Option<i64>,
}

/// `export`: render the chosen trial and write it.
pub(super) async fn run(store: &Store, args: ExportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let trials = store.trials(study.id).await?;
    let (trial, rule) = match args.trial {
        Some(n) => (
            trials
                .iter()
                .find(|t| t.number == n)
                .with_context(|| format!("study '{}' has no trial {n}", study.name))?,
            "--trial",
        ),
        None => {
            let w = store
                .named_winner(&study, &trials)
                .await?
                .with_context(|| format!("study '{}' has no finished trial to export", study.name))?;
            if !w.feasible {
                eprintln!("warning: no trial meets every SLO; exporting the least violating, trial {}", w.trial.number);
            }
            (w.trial, w.describe())
        }
    };
    let text = export::render(&study, trial, args.format)?;
    match &args.output {
        Some(path) => {
            export::write_atomic(path, &text)?;
            writeln!(out, "wrote {} (trial {}; named by {rule})", path.display(), trial.number)?;
        }
        None => write!(out, "{text}")?,
    }
    Ok(())
}
