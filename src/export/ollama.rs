//! Ollama's deployment forms: a systemd drop-in for the server's environment and a Modelfile
//! for the per-request options. `render` does not refuse them for other backends (the drop-in
//! is plain systemd; the Modelfile names the model the plan launched).

use super::{header, systemd_drop_in};
use crate::backend::LaunchPlan;
use crate::trial::{Study, Trial};

/// `--format systemd`: the header, how to install the drop-in, then its body.
pub(super) fn systemd(study: &Study, trial: &Trial, plan: &LaunchPlan) -> String {
    header(study, trial)
        + "# install: systemctl edit ollama (paste), or save as \
           /etc/systemd/system/ollama.service.d/infertune.conf; then systemctl daemon-reload && \
           systemctl restart ollama\n"
        + &systemd_drop_in(&plan.deploy_env)
}

/// `--format modelfile`: `FROM <model>` and one `PARAMETER <option> <value>` per request option.
pub(super) fn modelfile(study: &Study, trial: &Trial, plan: &LaunchPlan) -> String {
    let mut out = format!(
        "# infertune study '{}', trial {}: per-request options as Modelfile parameters\n\
         # build: ollama create <name> -f <this file>\nFROM {}\n",
        study.name, trial.number, plan.model
    );
    for (k, v) in &plan.request_options {
        let value = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("PARAMETER {k} {value}\n"));
    }
    out
}
