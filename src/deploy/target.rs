//! Where `apply` deploys a configuration: the file it writes (an env file read by the user's own
//! restart command, or a systemd drop-in), the commands that restart the service (argv, never a
//! shell), and the URL the service answers at. Plus the text of that file for a trial.

use std::path::PathBuf;

use crate::backend::service::{EnvFileFormat, ServiceSpec};
use crate::envfile;
use crate::trial::{Study, Trial};

/// A service `apply` deploys to and `watch` measures.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployTarget {
    /// The env file or drop-in written.
    pub path: PathBuf,
    pub format: EnvFileFormat,
    /// Run in order after the file is written (and after a rollback restores it).
    pub commands: Vec<Vec<String>>,
    /// Base URL of the running service (no trailing `/`).
    pub url: String,
}

impl DeployTarget {
    /// A systemd unit: the drop-in `/etc/systemd/system/UNIT.service.d/infertune.conf` (with
    /// `user`, `~/.config/systemd/user/...`), then `systemctl daemon-reload` and `systemctl
    /// restart UNIT` (`--user` for both with `user`).
    pub fn systemd_unit(unit: &str, user: bool, url: &str) -> DeployTarget {
        let unit = if unit.contains('.') { unit.to_string() } else { format!("{unit}.service") };
        let base = match user {
            true => std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .unwrap_or_else(|| PathBuf::from(".config"))
                .join("systemd/user"),
            false => PathBuf::from("/etc/systemd/system"),
        };
        let systemctl = |args: &[&str]| {
            let mut argv = vec!["systemctl".to_string()];
            if user {
                argv.push("--user".into());
            }
            argv.extend(args.iter().map(|a| a.to_string()));
            argv
        };
        DeployTarget {
            path: base.join(format!("{unit}.d")).join("infertune.conf"),
            format: EnvFileFormat::Systemd,
            commands: vec![systemctl(&["daemon-reload"]), systemctl(&["restart", &unit])],
            url: url.trim_end_matches('/').to_string(),
        }
    }

    /// The service block of a space (Ollama's service mode): its file, restart command and URL.
    pub fn from_service(spec: &ServiceSpec) -> DeployTarget {
        DeployTarget {
            path: spec.env_file.clone(),
            format: spec.format,
            commands: vec![spec.restart_command.clone()],
            url: spec.url.trim_end_matches('/').to_string(),
        }
    }

    /// The commands as a user would type them (for `--dry-run` and messages).
    pub fn shown_commands(&self) -> Vec<String> {
        self.commands
            .iter()
            .map(|argv| argv.iter().map(|w| envfile::shell_quote(w)).collect::<Vec<_>>().join(" "))
            .collect()
    }
}

/// Why a trial cannot be deployed to a file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("trial {0} has no launch plan (it was never started), so there is nothing to deploy")]
    NoPlan(i64),
    #[error(
        "trial {trial} sets flags with no environment form ({flags}); an env file or drop-in cannot carry them: add them to the service's command line, or deploy with `infertune export --format args`"
    )]
    FlagsWithoutEnv { trial: i64, flags: String },
    #[error("trial {trial}: value of '{key}' ('{value}') cannot be written into a systemd drop-in line")]
    Unquotable { trial: i64, key: String, value: String },
}

/// The file `apply` writes for `trial`: a header naming the study and trial, then the server's
/// deployment variables (`LLAMA_ARG_*`, `OLLAMA_*`, ...) in `format`.
pub fn render(study: &Study, trial: &Trial, format: EnvFileFormat) -> Result<String, Error> {
    let plan = trial.plan.as_ref().ok_or(Error::NoPlan(trial.number))?;
    if !plan.args_without_env.is_empty() {
        return Err(Error::FlagsWithoutEnv { trial: trial.number, flags: plan.args_without_env.join(", ") });
    }
    let header = format!(
        "# written by infertune apply: study '{}', trial {} ({})\n# {}\n",
        study.name,
        trial.number,
        if trial.is_feasible() { "meets every SLO" } else { "does NOT meet every SLO" },
        trial.params.brief()
    );
    let body = match format {
        EnvFileFormat::Env => envfile::env_lines(&plan.deploy_env),
        EnvFileFormat::Systemd => {
            if let Some((k, v)) = plan.deploy_env.iter().find(|(_, v)| v.contains(['"', '\\', '\n', '%', '$'])) {
                return Err(Error::Unquotable { trial: trial.number, key: k.clone(), value: v.clone() });
            }
            envfile::systemd_drop_in(&plan.deploy_env)
        }
    };
    Ok(header + &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_means_a_drop_in_a_reload_and_a_restart() {
        let t = DeployTarget::systemd_unit("llama", false, "http://127.0.0.1:8080/");
        assert_eq!(t.path, PathBuf::from("/etc/systemd/system/llama.service.d/infertune.conf"));
        assert_eq!(t.format, EnvFileFormat::Systemd);
        assert_eq!(t.shown_commands(), ["systemctl daemon-reload", "systemctl restart llama.service"]);
        assert_eq!(t.url, "http://127.0.0.1:8080");
        let u = DeployTarget::systemd_unit("ollama.service", true, "http://h:1");
        assert!(u.path.ends_with("systemd/user/ollama.service.d/infertune.conf"), "{:?}", u.path);
        assert_eq!(u.shown_commands(), ["systemctl --user daemon-reload", "systemctl --user restart ollama.service"]);
    }

    #[test]
    fn a_space_service_block_is_a_target_as_it_stands() {
        let spec = ServiceSpec {
            url: "http://127.0.0.1:11434/".into(),
            env_file: PathBuf::from("/etc/systemd/system/ollama.service.d/infertune.conf"),
            format: EnvFileFormat::Systemd,
            restart_command: vec!["systemctl".into(), "restart".into(), "ollama".into()],
        };
        let t = DeployTarget::from_service(&spec);
        assert_eq!(
            (t.path.clone(), t.format, t.url.as_str()),
            (spec.env_file.clone(), EnvFileFormat::Systemd, "http://127.0.0.1:11434")
        );
        assert_eq!(t.shown_commands(), ["systemctl restart ollama"]);
        let odd = DeployTarget { commands: vec![vec!["/opt/my tools/restart".into(), "it's".into()]], ..t };
        assert_eq!(odd.shown_commands(), [r"'/opt/my tools/restart' 'it'\''s'"]);
    }
}
