//! `infertune best STUDY`: the configuration the study names (the validated winner, else the
//! intensified incumbent, else the least violating trial; `trial::winner`, the rule `export`,
//! `[output]` and the report use too), which rule named it, how often it was measured, the
//! study's own noise, and the latest stored validation against the default.

use std::io::Write;

use super::output::{print_winner, trial_json};
use super::{StudyArgs, find_study, validate};
use crate::store::Store;
use crate::trial::{self, Trial, Winner};

/// `best`: as a summary and table, or (`--json`) the trial's JSON with its runs, rule, noise
/// and validation.
pub(super) async fn run(store: &Store, args: StudyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let trials = store.trials(study.id).await?;
    let validation = store.latest_validation(study.id).await?;
    let winner = trial::winner(&trials, study.direction, validation.as_ref().map(|v| v.winner_number));
    if args.json {
        let mut doc = match winner {
            Some(w) => winner_json(&w, &trials),
            None => serde_json::Value::Null,
        };
        if let (Some(obj), Some(v)) = (doc.as_object_mut(), &validation) {
            obj.insert("validation".into(), serde_json::to_value(v)?);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    let measured_under = winner.as_ref().map(|w| w.trial);
    print_winner(&study, &trials, winner, out)?;
    super::trace::print_workload(measured_under, &study, out)?;
    if let Some(v) = &validation {
        validate::print(v, out)?;
    }
    validate::print_anchor(&study, &trials, out)?;
    Ok(())
}

/// The trial's JSON plus `runs`, `mean_objective`, `named_by` and the study's `noise`.
fn winner_json(w: &Winner<'_>, trials: &[Trial]) -> serde_json::Value {
    let mut doc = trial_json(w.trial, w.feasible);
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("runs".into(), w.runs.into());
        obj.insert("mean_objective".into(), serde_json::json!(w.mean));
        obj.insert("named_by".into(), serde_json::json!(w.rule));
        obj.insert("noise".into(), serde_json::json!(trial::noise(trials)));
    }
    doc
}
