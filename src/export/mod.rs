//! Deployable files for a trial: pure formatting of store types, one function per [`Format`],
//! plus one atomic writer (temp file in the same folder, fsync, rename) and the shell quoting
//! the text forms share.
//!
//! This file holds the format list, [`render`] (a plain dispatch) and which format fits which
//! backend; the formats themselves live in `shell` (env, args), `json`, `ollama` (systemd,
//! Modelfile) and `vllm` (compose, YAML, and readers for every form). Choosing the trial to
//! export is the caller's job.

use std::io::Write;
use std::path::Path;

use crate::trial::{Study, Trial};

mod json;
mod ollama;
mod shell;
pub mod vllm;

pub use ollama::systemd_drop_in;

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
    format.check_backend(&study.backend).map_err(|_| Error::Unsupported {
        format: format!("{format:?}").to_lowercase(),
        backend: study.backend.clone(),
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
