//! The POSIX-shell forms of a trial: an env file (`KEY=value` lines) and a command line.
//! Quoting is the parent module's `shell_quote`.

use super::{header, shell_quote};
use crate::backend::LaunchPlan;
use crate::trial::{Study, Trial};

/// `--format env`: the header, a comment per flag that has no environment form, then the
/// server's deployment variables.
pub(super) fn env(study: &Study, trial: &Trial, plan: &LaunchPlan) -> String {
    let mut out = header(study, trial);
    for flag in &plan.args_without_env {
        out.push_str(&format!("# '{flag}' has no environment form; pass it on the command line\n"));
    }
    for (k, v) in &plan.deploy_env {
        out.push_str(&format!("{k}={}\n", shell_quote(v)));
    }
    out
}

/// `--format args`: one line, `KEY=value` words for the launch environment, then the program
/// and its arguments.
pub(super) fn args(plan: &LaunchPlan) -> String {
    let words: Vec<String> = std::iter::once(&plan.program).chain(&plan.args).map(|w| shell_quote(w)).collect();
    let env: Vec<String> = plan.env.iter().map(|(k, v)| format!("{k}={}", shell_quote(v))).collect();
    let mut line = env;
    line.extend(words);
    line.join(" ") + "\n"
}
