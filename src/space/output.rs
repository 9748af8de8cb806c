//! The `[output]` section: which files the daemon rewrites whenever the best feasible trial
//! changes (`OutputSpec`), and its validation.
//!
//! Owns the keys only. The text of each file is `export::render`'s, and so is the rule of which
//! format fits which backend: a format `export` would refuse for this backend is refused here,
//! when the space is loaded, not after the first good trial. Writing is `daemon::output`'s job.

use std::path::PathBuf;

use super::BackendKind;
use super::Invalid;
use super::file::OutputFile;
use crate::export::Format;

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
