//! `infertune db copy FROM TO`: move studies between databases (a SQLite file and a PostgreSQL
//! server, either way), with every run, trial, sample and validation. Idempotent: what the
//! target already holds is kept, so a copy can be repeated (e.g. to bring a shared study home
//! as it grows).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::store::{self, Location, Store};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy every study from FROM into TO (each a SQLite file or a postgres:// URL); studies,
    /// runs, trials (by number), samples and validations that TO already has are kept as they are
    Copy {
        /// Source database (SQLite file or postgres:// URL)
        from: PathBuf,
        /// Target database, created and migrated if needed
        to: PathBuf,
        /// Print what was copied as JSON
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(command: DbCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let DbCommand::Copy { from, to, json } = command;
    let (from, to) = (Location::from_arg(&from), Location::from_arg(&to));
    let source = Store::open_location(&from).await.with_context(|| format!("opening the source database '{from}'"))?;
    let target = Store::open_location(&to).await.with_context(|| format!("opening the target database '{to}'"))?;
    let report = store::copy(&source, &target).await.with_context(|| format!("copying '{from}' into '{to}'"))?;
    source.close().await;
    target.close().await;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        writeln!(
            out,
            "copied {} studies ({} already there), {} runs, {} trials ({} already there), {} samples, {} validations into '{to}'",
            report.studies,
            report.studies_present,
            report.runs,
            report.trials,
            report.trials_present,
            report.samples,
            report.validations
        )?;
    }
    Ok(())
}
