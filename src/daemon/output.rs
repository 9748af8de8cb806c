//! The space's `[output]` files: rewritten atomically whenever the best trial changes, each with
//! the text `infertune export --format X` prints for that trial.

use super::Event;
use crate::export;
use crate::space::Space;
use crate::trial::{Study, Trial};

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
