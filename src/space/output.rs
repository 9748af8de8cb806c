//! The `[output]` section: which files the daemon rewrites whenever the best feasible trial
//! changes (`OutputSpec`), and its validation.
//!
//! Owns the keys and the [`Format`] they name, with the rule of which format fits which backend
//! (`export::render` refuses the same ones): a format that does not fit is refused when the
//! space is loaded, not after the first good trial. The text of each file is `export`'s;
//! writing is `daemon::output`'s job.

use std::path::PathBuf;

use super::BackendKind;
use super::Invalid;
use super::file::OutputFile;

/// A deployable file format: `export --format`, and the `[output]` keys that name files.
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

impl Format {
    /// Whether this format can be written for a study on `backend` (`llamacpp`, `ollama`,
    /// `vllm`); `export::render` refuses the same formats, and `[output]` is checked against
    /// this when the space is loaded.
    pub fn check_backend(self, backend: &str) -> Result<(), String> {
        match self {
            Format::Compose | Format::Yaml if backend != "vllm" => Err(format!(
                "format '{}' is only for vLLM studies (study backend is '{backend}')",
                format!("{self:?}").to_lowercase()
            )),
            _ => Ok(()),
        }
    }
}

/// `[output]`: files the daemon rewrites whenever the best feasible trial changes.
/// Paths are as given (relative to the working directory of `tune`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputSpec {
    /// One file per format named in the section, in `Format` order, each format at most once.
    pub files: Vec<(Format, PathBuf)>,
}

/// `[output]`: every file named, with a format that applies to the study's backend.
pub(super) fn validate_output(raw: OutputFile, backend: BackendKind) -> Result<OutputSpec, Invalid> {
    let keys = [
        ("env_file", Format::Env, raw.env_file),
        ("args_file", Format::Args, raw.args_file),
        ("json_file", Format::Json, raw.json_file),
        ("systemd_file", Format::Systemd, raw.systemd_file),
        ("modelfile", Format::Modelfile, raw.modelfile),
        ("compose_file", Format::Compose, raw.compose_file),
        ("yaml_file", Format::Yaml, raw.yaml_file),
    ];
    let mut files = Vec::new();
    for (key, format, path) in keys {
        let Some(path) = path else { continue };
        format
            .check_backend(&backend.to_string())
            .map_err(|e| Invalid::new(format!("output.{key}"), format!("cannot write '{path}': {e}")))?;
        files.push((format, PathBuf::from(path)));
    }
    Ok(OutputSpec { files })
}
