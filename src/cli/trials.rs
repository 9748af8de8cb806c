//! `infertune trials STUDY`: list a study's trials, optionally filtered by state and sorted by
//! a metric, as a table or JSON. Each row says how many finished runs its configuration has
//! (`runs`: a re-measure is its own trial with the same params) and why it ran (`why`: search,
//! intensify, anchor or retry).

use std::cmp::Ordering;
use std::io::Write;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};

use super::find_study;
use super::output::{TRIAL_HEADERS, table, trial_json, trial_row};
use crate::measure::Metric;
use crate::measure::ratio::Better;
use crate::space::Direction;
use crate::store::{self, Store};
use crate::trial::{Trial, TrialState};

#[derive(Debug, Args)]
pub struct TrialsArgs {
    /// Study name
    pub study: String,
    /// Sort by this column (best first for throughput-like metrics, lowest first otherwise)
    #[arg(
        long,
        value_name = "METRIC",
        value_parser = PossibleValuesParser::new(store::sortable()).map(|name| SortColumn::from_name(&name))
    )]
    pub sort: Option<SortColumn>,
    /// Only trials in this state
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub state: Option<TrialState>,
    /// Print JSON instead of a table (each trial with its configuration's `runs` and its `purpose`)
    #[arg(long)]
    pub json: bool,
}

fn parse_state(s: &str) -> Result<TrialState, String> {
    s.parse()
}

/// A column `--sort` orders by: one of [`store::sortable`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SortColumn {
    Number,
    Objective,
    Violation,
    Metric(Metric),
}

impl SortColumn {
    /// The column of a name from [`store::sortable`] (clap checked it, so it is one).
    fn from_name(name: &str) -> SortColumn {
        match name {
            "number" => SortColumn::Number,
            "objective" => SortColumn::Objective,
            "violation" => SortColumn::Violation,
            other => SortColumn::Metric(
                Metric::from_name(other).expect("store::sortable names only metrics past the trial's own columns"),
            ),
        }
    }
}

/// `trials`: the study's trials in `--state`, in trial order or by `--sort`.
pub(super) async fn run(store: &Store, args: TrialsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let all = store.trials(study.id).await?;
    let mut trials: Vec<Trial> = all.iter().filter(|t| args.state.is_none_or(|s| t.state == s)).cloned().collect();
    if let Some(column) = args.sort {
        sort(&mut trials, column, study.direction);
    }
    let runs = run_counts(&all);
    let runs_of = |t: &Trial| runs.get(&t.params.to_json()).copied().unwrap_or(0);
    if args.json {
        let rows: Vec<_> = trials
            .iter()
            .map(|t| {
                let mut doc = trial_json(t, t.is_feasible());
                if let Some(obj) = doc.as_object_mut() {
                    obj.insert("runs".into(), runs_of(t).into());
                    obj.insert("purpose".into(), serde_json::json!(t.purpose));
                }
                doc
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let headers: Vec<&str> = TRIAL_HEADERS.iter().copied().chain(["runs", "why"]).collect();
    let rows: Vec<Vec<String>> = trials
        .iter()
        .map(|t| {
            let mut row = trial_row(t);
            row.extend([runs_of(t).to_string(), t.purpose.to_string()]);
            row
        })
        .collect();
    write!(out, "{}", table(&headers, &rows))?;
    Ok(())
}

/// Finished runs of each point (by params JSON): a point's runs are its finished trials with
/// the same params (issue 16).
fn run_counts(trials: &[Trial]) -> std::collections::HashMap<String, usize> {
    crate::trial::points(trials).iter().map(|p| (p.first().params.to_json(), p.runs.len())).collect()
}

/// Sort by `column`, best first: higher first for metrics where higher is better (and the
/// objective of a maximized study), lower first for latencies and the rest; unmeasured trials
/// last.
fn sort(trials: &mut [Trial], column: SortColumn, direction: Direction) {
    let descending = is_descending(column, direction);
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

/// Whether higher values of `column` come first.
fn is_descending(column: SortColumn, direction: Direction) -> bool {
    match column {
        SortColumn::Metric(m) => m.better() == Some(Better::Higher),
        SortColumn::Objective => direction == Direction::Maximize,
        SortColumn::Number | SortColumn::Violation => false,
    }
}

fn sort_key(t: &Trial, column: SortColumn) -> Option<f64> {
    match column {
        SortColumn::Number => Some(t.number as f64),
        SortColumn::Objective => t.objective,
        SortColumn::Violation => t.violation,
        SortColumn::Metric(m) => t.summary.as_ref().and_then(|s| m.value(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: the direction now comes from `Metric::better`; it must match the list of
    /// names the sort used before.
    #[test]
    fn every_sortable_column_parses_and_sorts_as_before() {
        for name in store::sortable() {
            let column = SortColumn::from_name(name);
            let before = matches!(name, "output_tok_per_s" | "req_per_s" | "success_rate" | "goodput_rps");
            assert_eq!(is_descending(column, Direction::Minimize), before, "{name}");
        }
        assert!(is_descending(SortColumn::Objective, Direction::Maximize));
        assert_eq!(SortColumn::from_name("peak_rss_bytes"), SortColumn::Metric(Metric::PeakRssBytes));
    }
}
