//! The `[output]` section: which files the daemon rewrites whenever the best feasible trial
//! changes (`OutputSpec`), and its validation.
//!
//! Owns the keys only. The text of each file is `export::render`'s; writing is
//! `daemon::output`'s job.

use std::path::PathBuf;

use super::file::OutputFile;

/// `[output]`: files the daemon rewrites whenever the best feasible trial changes.
/// Paths are as given (relative to the working directory of `tune`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputSpec {
    pub env_file: Option<PathBuf>,
    pub args_file: Option<PathBuf>,
    pub json_file: Option<PathBuf>,
}

/// `[output]`: any path is accepted as given.
pub(super) fn validate_output(raw: OutputFile) -> OutputSpec {
    OutputSpec {
        env_file: raw.env_file.map(PathBuf::from),
        args_file: raw.args_file.map(PathBuf::from),
        json_file: raw.json_file.map(PathBuf::from),
    }
}
