//! The space's `[output]` files: rewritten atomically whenever the named configuration changes,
//! each with the text `infertune export --format X` prints for it. The configuration is
//! `trial::winner`'s, the one rule `best`, `export` and the report use: during the study the
//! intensified incumbent, after the end-of-study validation the validated winner.

use super::Event;
use crate::export;
use crate::space::Space;
use crate::trial::{self, Study, Trial};

/// Rewrite the space's `[output]` files for the new best trial, atomically.
pub(super) fn write_outputs(
    space: &Space,
    study: &Study,
    best: &Trial,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<()> {
    for (format, path) in &space.output.files {
        let text = export::render(study, best, *format)?;
        export::write_atomic(path, &text)?;
        on_event(Event::OutputWritten { path });
    }
    Ok(())
}

/// Rewrite the `[output]` files for the configuration the study names (`validated` = the trial
/// number a validation picked); returns the named trial's number and the files written, or
/// `None` when nothing meets every SLO (the files keep what they had).
pub fn write_named_outputs(
    space: &Space,
    study: &Study,
    trials: &[Trial],
    validated: Option<i64>,
) -> anyhow::Result<Option<(i64, Vec<std::path::PathBuf>)>> {
    let Some(w) = trial::winner(trials, study.direction, validated).filter(|w| w.feasible) else { return Ok(None) };
    let mut written = Vec::new();
    write_outputs(space, study, w.trial, &mut |e| {
        if let Event::OutputWritten { path } = e {
            written.push(path.to_path_buf());
        }
    })?;
    Ok(Some((w.trial.number, written)))
}
