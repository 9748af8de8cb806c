//! The JSON form of a trial: parameters, launch plan and metrics, for scripts.

use serde_json::json;

use crate::backend::LaunchPlan;
use crate::trial::{Study, Trial};

/// `--format json`: one pretty-printed document and a final newline.
pub(super) fn json(study: &Study, trial: &Trial, plan: &LaunchPlan) -> String {
    let doc = json!({
        "study": study.name,
        "backend": study.backend_name(),
        "trial": trial.number,
        "state": trial.state,
        "meets_slos": trial.is_feasible(),
        "params": trial.params,
        "objective": {"metric": study.objective_metric, "value": trial.objective},
        "violations": trial.violations,
        "metrics": crate::store::trial_metrics(trial),
        "plan": plan,
    });
    serde_json::to_string_pretty(&doc).expect("plain data") + "\n"
}
