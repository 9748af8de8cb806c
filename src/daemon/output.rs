//! The space's `[output]` files: rewritten atomically whenever the best trial changes.

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
    let files = [
        (&space.output.env_file, export::Format::Env),
        (&space.output.args_file, export::Format::Args),
        (&space.output.json_file, export::Format::Json),
    ];
    for (path, format) in files {
        let Some(path) = path else { continue };
        let text = export::render(study, best, format)?;
        export::write_atomic(path, &text)?;
        on_event(Event::OutputWritten { path });
    }
    Ok(())
}
