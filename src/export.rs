//! Deployable files for a trial: an env file, a command line, or JSON. Pure formatting of store
//! types, plus one atomic writer (temp file in the same folder, fsync, rename).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::trial::{Study, Trial};

pub mod vllm;

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The server's environment variables (`LLAMA_ARG_*` for llama-server).
    Env,
    /// The server's command line.
    Args,
    /// Parameters, launch plan and metrics as JSON.
    Json,
    /// A systemd drop-in: `[Service]` and one `Environment="KEY=value"` line per server
    /// variable (for `systemctl edit ollama`).
    Systemd,
    /// Ollama Modelfile lines: `FROM <tag>` and `PARAMETER <option> <value>` per request option.
    Modelfile,
    /// A docker-compose service snippet (`command:` and `environment:`); vLLM studies.
    Compose,
    /// vLLM's `--config` YAML file (long flag names as keys); vLLM studies.
    Yaml,
}

/// Why a trial cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("trial {0} has no launch plan (it was never planned)")]
    NoPlan(i64),
    #[error("format '{format}' is only for vLLM studies (study backend is '{backend}')")]
    Unsupported { format: String, backend: String },
    #[error("trial {trial} cannot be written as YAML: {message}")]
    Yaml { trial: i64, message: String },
    #[error("writing '{path}'")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Render `trial` of `study` in `format`.
pub fn render(study: &Study, trial: &Trial, format: Format) -> Result<String, Error> {
    let plan = trial.plan.as_ref().ok_or(Error::NoPlan(trial.number))?;
    Ok(match format {
        Format::Env => {
            let mut out = format!(
                "# infertune study '{}', trial {} ({})\n# {}\n",
                study.name,
                trial.number,
                if trial.is_feasible() { "meets every SLO" } else { "does NOT meet every SLO" },
                trial.params.brief()
            );
            for flag in &plan.args_without_env {
                out.push_str(&format!("# '{flag}' has no environment form; pass it on the command line\n"));
            }
            for (k, v) in &plan.deploy_env {
                out.push_str(&format!("{k}={}\n", shell_quote(v)));
            }
            out
        }
        Format::Args => {
            let words: Vec<String> = std::iter::once(&plan.program).chain(&plan.args).map(|w| shell_quote(w)).collect();
            let env: Vec<String> = plan.env.iter().map(|(k, v)| format!("{k}={}", shell_quote(v))).collect();
            let mut line = env;
            line.extend(words);
            line.join(" ") + "\n"
        }
        Format::Compose | Format::Yaml if study.backend != "vllm" => {
            return Err(Error::Unsupported {
                format: format!("{format:?}").to_lowercase(),
                backend: study.backend.clone(),
            });
        }
        Format::Compose | Format::Yaml => {
            let header = format!(
                "# infertune study '{}', trial {} ({})\n# {}\n",
                study.name,
                trial.number,
                if trial.is_feasible() { "meets every SLO" } else { "does NOT meet every SLO" },
                trial.params.brief()
            );
            if format == Format::Compose {
                vllm::compose(&header, plan)
            } else {
                vllm::yaml(&header, plan).map_err(|e| Error::Yaml { trial: trial.number, message: e.0 })?
            }
        }
        Format::Json => {
            let doc = json!({
                "study": study.name,
                "backend": study.backend,
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
        Format::Systemd => {
            let header = format!(
                "# infertune study '{}', trial {} ({})\n# {}\n# install: systemctl edit ollama (paste), or save as \
                 /etc/systemd/system/ollama.service.d/infertune.conf; then systemctl daemon-reload && \
                 systemctl restart ollama\n",
                study.name,
                trial.number,
                if trial.is_feasible() { "meets every SLO" } else { "does NOT meet every SLO" },
                trial.params.brief()
            );
            header + &systemd_drop_in(&plan.deploy_env)
        }
        Format::Modelfile => {
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
    })
}

/// A systemd drop-in body: `[Service]`, then `Environment="KEY=value"` per variable in name
/// order. Values must need no escaping (the Ollama adapter only admits `[A-Za-z0-9._:/,+-]`).
pub fn systemd_drop_in(env: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = String::from("[Service]\n");
    for (k, v) in env {
        out.push_str(&format!("Environment=\"{k}={v}\"\n"));
    }
    out
}

/// `KEY=value` lines (an `EnvironmentFile=`), quoted for POSIX shells where needed.
pub fn env_lines(env: &std::collections::BTreeMap<String, String>) -> String {
    env.iter().map(|(k, v)| format!("{k}={}\n", shell_quote(v))).collect()
}

/// Quote for POSIX shells and env files: bare when safe, else single quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:@%+,=".contains(c));
    if safe { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// Write `contents` to `path` atomically: readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, contents: &str) -> Result<(), Error> {
    let err = |source| Error::Write { path: path.display().to_string(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("q8_0"), "q8_0");
        assert_eq!(shell_quote("/a b/m.gguf"), "'/a b/m.gguf'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn systemd_and_env_bodies() {
        let env: std::collections::BTreeMap<String, String> =
            [("OLLAMA_NUM_PARALLEL", "4"), ("OLLAMA_FLASH_ATTENTION", "1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(
            systemd_drop_in(&env),
            "[Service]\nEnvironment=\"OLLAMA_FLASH_ATTENTION=1\"\nEnvironment=\"OLLAMA_NUM_PARALLEL=4\"\n"
        );
        assert_eq!(env_lines(&env), "OLLAMA_FLASH_ATTENTION=1\nOLLAMA_NUM_PARALLEL=4\n");
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("best.env");
        write_atomic(&p, "A=1\n").unwrap();
        write_atomic(&p, "B=2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "B=2\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }
}
