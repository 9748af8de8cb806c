//! `infertune record-landscape` (hidden): turn the trials of one or more studies over the same
//! space (typically full grids, run once per repeat by `scripts/record-landscape`) into a
//! landscape file that the replay tests and `bench-search` read.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use crate::search::landscape::Landscape;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct RecordLandscapeArgs {
    /// Studies holding the measurements (one per repeat; all over the same space)
    #[arg(required = true)]
    pub studies: Vec<String>,
    /// Landscape name (default: the first study's name)
    #[arg(long)]
    pub name: Option<String>,
    /// Output file (JSON)
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

/// `record-landscape`: gather the studies' trials by point and write the landscape file.
pub async fn run(store: &Store, args: RecordLandscapeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut trials = Vec::new();
    let mut space_toml: Option<String> = None;
    for name in &args.studies {
        let study = super::find_study(store, name).await?;
        match &space_toml {
            Some(t) if *t != study.space_toml => {
                bail!("study '{name}' has a different space than '{}'", args.studies[0])
            }
            Some(_) => {}
            None => space_toml = Some(study.space_toml.clone()),
        }
        trials.extend(store.trials(study.id).await.with_context(|| format!("reading the trials of '{name}'"))?);
    }
    let name = args.name.clone().unwrap_or_else(|| args.studies[0].clone());
    let landscape = Landscape::from_trials(&name, space_toml.as_deref().unwrap_or_default(), &trials);
    let grid = landscape.space().context("parsing the recorded space")?.grid_size();
    std::fs::write(&args.output, serde_json::to_string_pretty(&landscape)? + "\n")
        .with_context(|| format!("writing '{}'", args.output.display()))?;
    let runs: usize = landscape.points.iter().map(|p| p.runs.len()).sum();
    writeln!(out, "{}: {} of {grid} grid points, {runs} runs", args.output.display(), landscape.points.len())?;
    Ok(())
}
