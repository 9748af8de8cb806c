//! `infertune compare STUDY --trial A --trial B`: re-measure two trials of a study (or one
//! against the default) on fresh servers, interleaved, and print each metric's ratio B/A with a
//! bootstrap 95 % CI.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::output::table;
use crate::daemon::compare::{self, Arm, CompareOptions, Progress};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Study name
    pub study: String,
    /// Trial numbers: A then B (one trial with --default compares it against the default)
    #[arg(long = "trial", value_name = "N", num_args = 1, required = true)]
    pub trials: Vec<i64>,
    /// Compare the trial against the space's default configuration
    #[arg(long)]
    pub default: bool,
    /// A, B pairs of fresh server starts
    #[arg(long, default_value_t = 3)]
    pub pairs: u32,
    /// The study's space file, to resolve relative paths [default: the stored text, relative to the directory of the space file the study was started from]
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `compare`: one progress line per run, then the ratio table (or the JSON report).
pub(super) async fn run(store: &Store, args: CompareArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let (a, b) = match (args.default, args.trials.as_slice()) {
        (true, [b]) => (Arm::Default, Arm::Trial(*b)),
        (false, [a, b]) => (Arm::Trial(*a), Arm::Trial(*b)),
        (true, _) => bail!("with --default, give exactly one --trial"),
        (false, _) => bail!("give two trials (--trial A --trial B), or one with --default"),
    };
    let opts = CompareOptions { study: args.study.clone(), a, b, pairs: args.pairs, space: args.space.clone() };
    let quiet = args.json;
    let mut on_progress = |p: Progress| {
        if quiet {
            return;
        }
        let Progress::RunFinished { arm, pair, output_tok_per_s, ttft_p50_ms } = p;
        let _ = writeln!(out, "pair {pair} {arm}: {output_tok_per_s:.1} tok/s, ttft p50 {ttft_p50_ms:.0} ms");
    };
    let report = compare::compare(store, &opts, &mut on_progress).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    write_table(&report, out)
}

fn write_table(report: &compare::CompareReport, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "B = {} vs A = {}, {} pairs on fresh servers (ratio B/A, bootstrap 95 % CI)",
        report.b, report.a, report.pairs
    )?;
    let rows: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|r| {
            vec![
                r.metric.to_string(),
                format!("{:.2}", r.a),
                format!("{:.2}", r.b),
                format!("{:.3}", r.ci.ratio),
                format!("[{:.3}, {:.3}]", r.ci.lo, r.ci.hi),
                format!("B {}", r.call.as_str()),
            ]
        })
        .collect();
    write!(out, "{}", table(&["metric", "A", "B", "B/A", "95% CI", "verdict"], &rows))?;
    Ok(())
}
