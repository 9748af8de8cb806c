//! `infertune studies`: list the studies in the database with their trial counts.

use std::io::Write;

use serde_json::json;

use super::output::table;
use crate::store::{Store, StudyOverview};

/// `studies`: one row (or JSON object) per study.
pub(super) async fn run(store: &Store, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let studies = store.studies().await?;
    if json { write_json(&studies, out) } else { write_table(&studies, out) }
}

fn write_json(studies: &[StudyOverview], out: &mut dyn Write) -> anyhow::Result<()> {
    let rows: Vec<_> = studies
        .iter()
        .map(|o| {
            json!({
                "name": o.study.name,
                "backend": o.study.backend_name(),
                "strategy": o.study.strategy_name(),
                "objective": {"metric": o.study.objective_metric, "direction": o.study.direction},
                "trials": o.trials,
                "complete": o.complete,
                "infeasible": o.infeasible,
                "created_at_ms": o.study.created_at_ms,
                "stop_reason": o.study.stop_reason,
                "fingerprint": o.study.fingerprint,
            })
        })
        .collect();
    writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    Ok(())
}

fn write_table(studies: &[StudyOverview], out: &mut dyn Write) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = studies
        .iter()
        .map(|o| {
            vec![
                o.study.name.clone(),
                o.study.backend_name().to_string(),
                o.study.strategy_name().to_string(),
                format!("{:?} {}", o.study.direction, o.study.objective_metric).to_lowercase(),
                o.trials.to_string(),
                o.complete.to_string(),
                o.infeasible.to_string(),
                o.study.stop_reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(&["study", "backend", "strategy", "objective", "trials", "complete", "infeasible", "stopped"], &rows)
    )?;
    Ok(())
}
