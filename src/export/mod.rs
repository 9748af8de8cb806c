//! Deployable files for a trial: pure formatting of store types, one function per [`Format`],
//! plus one atomic writer (temp file in the same folder, fsync, rename) and the shell quoting
//! the text forms share.
//!
//! This file holds the format list, [`render`] (a plain dispatch) and which format fits which
//! backend; the formats themselves live in `shell` (env, args), `json`, `ollama` (systemd,
//! Modelfile) and `vllm` (compose, YAML, and readers for every form). Choosing the trial to
//! export is the caller's job.

use std::path::Path;

use crate::envfile;
use crate::trial::{Study, Trial};

mod json;
mod ollama;
mod shell;
pub mod vllm;

pub use crate::envfile::{env_lines, shell_quote, systemd_drop_in};

/// Output formats of `export`: defined with the `[output]` section that names them.
pub use crate::space::Format;

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
    format.check_backend(study.backend_name()).map_err(|_| Error::Unsupported {
        format: format!("{format:?}").to_lowercase(),
        backend: study.backend_name().to_string(),
    })?;
    Ok(match format {
        Format::Env => shell::env(study, trial, plan),
        Format::Args => shell::args(plan),
        Format::Json => json::json(study, trial, plan),
        Format::Systemd => ollama::systemd(study, trial, plan),
        Format::Modelfile => ollama::modelfile(study, trial, plan),
        Format::Compose => vllm::compose(&header(study, trial), plan),
        Format::Yaml => {
            vllm::yaml(&header(study, trial), plan).map_err(|e| Error::Yaml { trial: trial.number, message: e.0 })?
        }
    })
}

/// The two comment lines most formats open with: study, trial, whether it meets every SLO, and
/// its parameters.
fn header(study: &Study, trial: &Trial) -> String {
    format!(
        "# infertune study '{}', trial {} ({})\n# {}\n",
        study.name,
        trial.number,
        if trial.is_feasible() { "meets every SLO" } else { "does NOT meet every SLO" },
        trial.params.brief()
    )
}

/// Write `contents` to `path` atomically (readers see the old file or the new one).
pub fn write_atomic(path: &Path, contents: &str) -> Result<(), Error> {
    envfile::write_atomic(path, contents).map_err(|source| Error::Write { path: path.display().to_string(), source })
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
