//! `infertune deployments STUDY`: every apply of a study (when, which trial, where, the canary's
//! figures, kept or rolled back and why), then its watch runs.

use std::io::Write;

use clap::Args;
use serde_json::json;

use super::find_study;
use super::output::table;
use crate::report::utc_time;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct DeploymentsArgs {
    /// Study name
    pub study: String,
    /// Print JSON ({"deployments": [...], "watches": [...]}) instead of tables
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(store: &Store, args: DeploymentsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let deployments = store.deployments(study.id).await?;
    let watches = store.watches(study.id).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&json!({"deployments": deployments, "watches": watches}))?)?;
        return Ok(());
    }
    let f = |v: Option<f64>, d: usize| v.filter(|x| x.is_finite()).map_or("-".to_string(), |x| format!("{x:.d$}"));
    if deployments.is_empty() {
        writeln!(out, "study '{}' has no deployments (infertune apply {} ...)", study.name, study.name)?;
    } else {
        let rows: Vec<Vec<String>> = deployments
            .iter()
            .map(|d| {
                let c = d.canary.as_ref();
                vec![
                    d.id.to_string(),
                    utc_time(d.started_at_ms),
                    d.trial_number.to_string(),
                    d.state.as_str().to_string(),
                    f(d.study_objective, 3),
                    f(c.map(|c| c.objective), 3),
                    c.map_or("-".into(), |c| format!("{:.3} [{:.3}, {:.3}]", c.ratio, c.ci_low, c.ci_high)),
                    f(c.map(|c| c.violation), 2),
                    d.target_path.clone(),
                    d.reason.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let headers =
            ["#", "when (UTC)", "trial", "state", "study", "canary", "ratio [95 % CI]", "violation", "file", "why"];
        write!(out, "{}", table(&headers, &rows))?;
    }
    if !watches.is_empty() {
        writeln!(out, "\nwatch runs:")?;
        let rows: Vec<Vec<String>> = watches
            .iter()
            .map(|w| {
                let m = w.measured.as_ref();
                vec![
                    utc_time(w.at_ms),
                    w.status.clone(),
                    f(m.map(|m| m.objective), 3),
                    f(w.baseline, 3),
                    m.map_or("-".into(), |m| format!("{:.3} [{:.3}, {:.3}]", m.ratio, m.ci_low, m.ci_high)),
                    w.drift.clone().unwrap_or_else(|| "-".into()),
                    w.retune_study.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let headers =
            ["when (UTC)", "status", "objective", "baseline", "ratio [95 % CI]", "fingerprint change", "re-tune"];
        write!(out, "{}", table(&headers, &rows))?;
    }
    Ok(())
}
