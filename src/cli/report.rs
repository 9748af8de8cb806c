//! `infertune report STUDY`: write the self-contained HTML report of a study (see
//! [`crate::report`]) to stdout or atomically to a file.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::find_study;
use crate::export;
use crate::store::{self, Store};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Study name
    pub study: String,
    /// Write to this file (atomically) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `report`: render the study as stored now.
pub(super) async fn run(store: &Store, args: ReportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let trials = store.trials(study.id).await?;
    let validation = store.latest_validation(study.id).await?;
    let html = crate::report::render(&study, &trials, validation.as_ref(), store::now_ms());
    let (deployments, watches) = (store.deployments(study.id).await?, store.watches(study.id).await?);
    let html = crate::report::with_operations(html, &deployments, &watches, &study.objective_metric);
    match &args.output {
        Some(path) => {
            export::write_atomic(path, &html)?;
            writeln!(out, "wrote {} ({} trials)", path.display(), trials.len())?;
        }
        None => write!(out, "{html}")?,
    }
    Ok(())
}
