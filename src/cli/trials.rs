//! `infertune trials STUDY`: list a study's trials, optionally filtered by state and sorted by
//! a metric, as a table or JSON.

use std::cmp::Ordering;
use std::io::Write;

use clap::Args;

use super::find_study;
use super::output::{TRIAL_HEADERS, table, trial_json, trial_row};
use crate::space::Direction;
use crate::store::{self, Store};
use crate::trial::{Trial, TrialState};

#[derive(Debug, Args)]
pub struct TrialsArgs {
    /// Study name
    pub study: String,
    /// Sort by this column (best first for throughput-like metrics, lowest first otherwise)
    #[arg(long, value_name = "METRIC", value_parser = clap::builder::PossibleValuesParser::new(store::SORTABLE))]
    pub sort: Option<String>,
    /// Only trials in this state
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub state: Option<TrialState>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

fn parse_state(s: &str) -> Result<TrialState, String> {
    s.parse()
}

/// `trials`: the study's trials in `--state`, in trial order or by `--sort`.
pub(super) async fn run(store: &Store, args: TrialsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let mut trials: Vec<Trial> =
        store.trials(study.id).await?.into_iter().filter(|t| args.state.is_none_or(|s| t.state == s)).collect();
    if let Some(column) = &args.sort {
        sort(&mut trials, column, study.direction);
    }
    if args.json {
        let rows: Vec<_> = trials.iter().map(|t| trial_json(t, t.is_feasible())).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = trials.iter().map(trial_row).collect();
    write!(out, "{}", table(TRIAL_HEADERS, &rows))?;
    Ok(())
}

/// Sort by `column`, best first: higher first for throughput-like columns (and the objective of
/// a maximized study), lower first for latencies and the rest; unmeasured trials last.
fn sort(trials: &mut [Trial], column: &str, direction: Direction) {
    let descending = matches!(column, "output_tok_per_s" | "req_per_s" | "success_rate" | "goodput_rps")
        || (column == "objective" && direction == Direction::Maximize);
    trials.sort_by(|a, b| {
        let (x, y) = (sort_key(a, column), sort_key(b, column));
        match (x, y) {
            (Some(x), Some(y)) if descending => y.total_cmp(&x),
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less, // unmeasured trials last
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.number.cmp(&b.number),
        }
    });
}

fn sort_key(t: &Trial, column: &str) -> Option<f64> {
    match column {
        "number" => Some(t.number as f64),
        "objective" => t.objective,
        "violation" => t.violation,
        other => t.summary.as_ref().and_then(|s| s.metric(other)),
    }
}
