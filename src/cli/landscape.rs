//! `infertune record-landscape` (hidden): turn the trials of one or more studies over the same
//! space (typically full grids, run once per repeat by `scripts/record-landscape`) into a
//! landscape file that the replay tests and `bench-search` read.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use crate::search::landscape::{Landscape, Provenance};
use crate::store::Store;
use crate::trial::Study;

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
    /// What else ran on the machine while recording (kept in the file's provenance)
    #[arg(long, default_value = "unknown")]
    pub load: String,
    /// The command that recorded the studies (kept in the file's provenance)
    #[arg(long, default_value = "unknown")]
    pub command: String,
    /// An earlier recording: its runs come first at each point, the new studies' runs after
    /// them, and its provenance is kept beside the new one. The studies' points must be points
    /// of its grid (their spaces may be smaller, e.g. to fill points a recording missed)
    #[arg(long, value_name = "LANDSCAPE.json")]
    pub extend: Option<PathBuf>,
}

/// `record-landscape`: gather the studies' trials by point and write the landscape file.
pub async fn run(store: &Store, args: RecordLandscapeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut trials = Vec::new();
    let mut space_toml: Option<String> = None;
    let mut studies = Vec::new();
    for name in &args.studies {
        let study = super::find_study(store, name).await?;
        studies.push(study.clone());
        match &space_toml {
            // Runs added to an earlier recording may come from smaller spaces (a point the
            // earlier studies missed, say): `extended_by` checks that they are its grid points.
            Some(t) if *t != study.space_toml && args.extend.is_none() => {
                bail!("study '{name}' has a different space than '{}'", args.studies[0])
            }
            Some(_) => {}
            None => space_toml = Some(study.space_toml.clone()),
        }
        trials.extend(store.trials(study.id).await.with_context(|| format!("reading the trials of '{name}'"))?);
    }
    let name = args.name.clone().unwrap_or_else(|| args.studies[0].clone());
    let mut landscape = Landscape::from_trials(&name, space_toml.as_deref().unwrap_or_default(), &trials);
    landscape.provenance = Some(provenance(&studies, &args));
    if let Some(path) = &args.extend {
        let earlier = Landscape::load(path)?;
        landscape = earlier.extended_by(landscape).with_context(|| format!("extending '{}'", path.display()))?;
    }
    let space = landscape.space().context("parsing the recorded space")?;
    let refused = crate::search::grid::refused_candidates(&space).into_iter().map(|(c, _)| c);
    let landscape = landscape.with_refused(refused);
    let grid = space.grid_size();
    std::fs::write(&args.output, serde_json::to_string_pretty(&landscape)? + "\n")
        .with_context(|| format!("writing '{}'", args.output.display()))?;
    let runs: usize = landscape.points.iter().map(|p| p.runs.len()).sum();
    writeln!(out, "{}: {} of {grid} grid points, {runs} runs", args.output.display(), landscape.points.len())?;
    Ok(())
}

/// The recording's provenance from the studies' own fingerprints (engine version, host) and
/// start times, with the load and command the caller states.
fn provenance(studies: &[Study], args: &RecordLandscapeArgs) -> Provenance {
    let mut versions: Vec<&str> = studies.iter().map(|s| s.fingerprint.engine_version.as_str()).collect();
    versions.dedup();
    let day = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map_or_else(|_| "unknown".to_string(), |t| t.strftime("%Y-%m-%d").to_string())
    };
    let first = studies.iter().map(|s| s.created_at_ms).min().unwrap_or_default();
    let last = studies.iter().map(|s| s.created_at_ms).max().unwrap_or_default();
    let date = if day(first) == day(last) { day(first) } else { format!("{} to {}", day(first), day(last)) };
    let host = &studies[0].fingerprint.host;
    let physical = host.physical_cores.map_or(String::new(), |p| format!(" ({p} physical)"));
    Provenance {
        engine_version: if versions.is_empty() { "unknown".into() } else { versions.join(" / ") },
        date,
        machine: format!(
            "{}, {} logical cores{physical}, {:.1} GiB RAM, {}",
            host.cpu_model,
            host.logical_cores,
            host.ram_bytes as f64 / (1u64 << 30) as f64,
            host.os
        ),
        load: args.load.clone(),
        command: args.command.clone(),
    }
}
