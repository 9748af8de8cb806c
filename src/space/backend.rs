//! The `[backend]` (and `[ollama]`) sections: which engine to launch, how, and who runs it
//! (`BackendSpec`, `BackendKind`, `BackendMode`).
//!
//! Owns the validation of those sections and the resolution of the program and model paths.
//! Launching is not here: the adapters in `crate::backend` turn a `BackendSpec` and a candidate
//! into a launch plan. The Ollama settings themselves are validated by `backend::ollama`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::file::BackendFile;
use super::ollama::{OllamaFile, OllamaSpec};
use super::{Invalid, parse_duration, resolve_path};

/// Backend adapter named in `[backend] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Llamacpp,
    Ollama,
    Vllm,
}

impl BackendKind {
    /// The name in space files and the store (`llamacpp`, `ollama`, `vllm`).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Llamacpp => "llamacpp",
            BackendKind::Ollama => "ollama",
            BackendKind::Vllm => "vllm",
        }
    }

    /// The inverse of [`BackendKind::name`].
    pub fn from_name(name: &str) -> Option<BackendKind> {
        [BackendKind::Llamacpp, BackendKind::Ollama, BackendKind::Vllm].into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[backend]`: what to launch. `command[0]` and `model` are resolved paths.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    pub kind: BackendKind,
    pub command: Vec<String>,
    /// Model path; may contain `{param}` placeholders filled by template params.
    pub model: String,
    /// Fixed extra arguments passed to every launch.
    pub args: Vec<String>,
    /// Fixed environment for every launch.
    pub env: BTreeMap<String, String>,
    pub ready_timeout: Duration,
    /// Who runs the server: the tuner (`spawn`) or a service manager (`service`).
    pub mode: BackendMode,
    /// Ollama-only settings; `Some` exactly when `kind` is `ollama`.
    pub ollama: Option<OllamaSpec>,
}

/// `[backend] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendMode {
    /// The tuner starts the server for each configuration and stops it after.
    #[default]
    Spawn,
    /// The server runs under a service manager; the tuner writes its environment file and runs
    /// the user's restart command.
    Service,
}

/// `[backend]` and `[ollama]`. `base` is the space file's folder, for relative paths.
pub(super) fn validate_backend(
    raw: BackendFile,
    ollama: Option<OllamaFile>,
    base: &Path,
) -> Result<BackendSpec, Invalid> {
    let kind = backend_kind(&raw.kind)?;
    if raw.command.is_empty() || raw.command[0].trim().is_empty() {
        return Err(Invalid::new("backend.command", "must name a program"));
    }
    let mut command = raw.command.clone();
    command[0] = resolve_program(base, &command[0]);
    let mode = backend_mode(raw.mode.as_deref(), kind)?;
    let ollama = ollama_spec(kind, ollama, mode, base)?;
    Ok(BackendSpec {
        kind,
        command,
        // An Ollama model is a tag (`library/qwen2.5:7b`), never a path, even with a '/';
        // vLLM models are usually hub ids (`org/name`): only `./` and `../` paths are local.
        model: if kind == BackendKind::Ollama || (kind == BackendKind::Vllm && !raw.model.starts_with('.')) {
            raw.model.clone()
        } else {
            resolve_program(base, &raw.model)
        },
        mode,
        ollama,
        args: raw.args,
        env: raw.env,
        ready_timeout: parse_duration(&raw.ready_timeout).map_err(|m| Invalid::new("backend.ready_timeout", m))?,
    })
}

fn backend_kind(kind: &str) -> Result<BackendKind, Invalid> {
    match kind {
        "llamacpp" => Ok(BackendKind::Llamacpp),
        "ollama" => Ok(BackendKind::Ollama),
        "vllm" => Ok(BackendKind::Vllm),
        other => {
            Err(Invalid::new("backend.kind", format!("unknown backend '{other}' (expected llamacpp, ollama or vllm)")))
        }
    }
}

/// `spawn` (the default) for every kind; `service` only for Ollama.
fn backend_mode(mode: Option<&str>, kind: BackendKind) -> Result<BackendMode, Invalid> {
    match mode {
        None | Some("spawn") => Ok(BackendMode::Spawn),
        Some("service") if kind == BackendKind::Ollama => Ok(BackendMode::Service),
        Some("service") => {
            Err(Invalid::new("backend.mode", format!("'service' mode is only for kind 'ollama' (got kind '{kind}')")))
        }
        Some(other) => Err(Invalid::new("backend.mode", format!("unknown mode '{other}' (expected spawn or service)"))),
    }
}

/// The `[ollama]` settings: defaulted for an Ollama study, refused for any other.
fn ollama_spec(
    kind: BackendKind,
    raw: Option<OllamaFile>,
    mode: BackendMode,
    base: &Path,
) -> Result<Option<OllamaSpec>, Invalid> {
    match (kind, raw) {
        (BackendKind::Ollama, raw) => Ok(Some(OllamaSpec::from_file(raw.unwrap_or_default(), mode, base)?)),
        (_, Some(_)) => Err(Invalid::new("ollama", format!("an [ollama] section needs kind 'ollama' (got '{kind}')"))),
        (_, None) => Ok(None),
    }
}

/// A bare name (`llama-server`, an Ollama model tag) is kept as it is: a program is looked up
/// on PATH at launch. Anything with a `/` is a path, relative to the space file.
fn resolve_program(base: &Path, program: &str) -> String {
    if program.contains('/') { resolve_path(base, program).to_string_lossy().into_owned() } else { program.to_string() }
}
