//! `infertune best STUDY`: the best trial meeting every SLO (or the least violating one), with
//! the latest stored validation against the default.

use std::io::Write;

use super::output::{print_best, trial_json};
use super::{StudyArgs, find_study, validate};
use crate::store::Store;
use crate::trial;

/// `best`: as a summary and table, or (`--json`) the trial's JSON with its validation.
pub(super) async fn run(store: &Store, args: StudyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let trials = store.trials(study.id).await?;
    if args.json {
        let mut doc = match trial::best(&trials, study.direction) {
            Some((t, feasible)) => trial_json(t, feasible),
            None => serde_json::Value::Null,
        };
        if let (Some(obj), Some(v)) = (doc.as_object_mut(), store.latest_validation(study.id).await?) {
            obj.insert("validation".into(), serde_json::to_value(&v)?);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    print_best(&study, &trials, out)?;
    super::trace::print_workload(trial::best(&trials, study.direction).map(|(t, _)| t), &study, out)?;
    if let Some(v) = store.latest_validation(study.id).await? {
        validate::print(&v, out)?;
    }
    validate::print_anchor(&study, &trials, out)?;
    Ok(())
}
