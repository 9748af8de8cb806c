//! `infertune space check FILE`: validate a search-space file and summarise it (study, backend,
//! parameters, grid size, combinations the backend refuses before launch, objective, SLOs).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::space::{Load, Space};

#[derive(Debug, Subcommand)]
pub enum SpaceCommand {
    /// Validate a search-space file and summarise it
    Check {
        /// Search-space file (TOML)
        file: PathBuf,
    },
}

/// `space check`: load `file` (the same validation `tune` applies) and describe it.
pub(super) fn check(file: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let space = Space::load(file)?;
    writeln!(out, "{}: ok", file.display())?;
    writeln!(out, "study     {} (strategy {:?}, seed {})", space.name, space.strategy, space.seed)?;
    writeln!(out, "backend   {} {}", space.backend.kind, space.backend.command.join(" "))?;
    writeln!(out, "model     {}", space.backend.model)?;
    for p in &space.params {
        let points = p.domain.grid_points();
        writeln!(
            out,
            "param     {:<14} {:<40} via {:?}",
            p.name,
            points.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
            p.apply
        )?;
    }
    writeln!(out, "grid      {} points", space.grid_size())?;
    if let Some((refused, example)) = crate::search::grid::refused_points(&space) {
        writeln!(
            out,
            "refused   {refused} of {} grid points before launch (never tried): {example}",
            space.grid_size()
        )?;
    }
    writeln!(out, "objective {:?} {}", space.objective.direction, space.objective.metric)?;
    if let Some(c) = &space.capacity {
        let op = if c.slo.is_upper_bound { "<=" } else { ">=" };
        let unit = if c.load == Load::Rate { " requests/s (Poisson arrivals)" } else { " clients" };
        writeln!(
            out,
            "capacity  highest load with {} {op} {}, over {}..{}{unit}, searched per trial",
            c.slo.metric, c.slo.limit, c.min, c.max
        )?;
    }
    for slo in &space.slos {
        writeln!(out, "slo       {} {} {}", slo.metric, if slo.is_upper_bound { "<=" } else { ">=" }, slo.limit)?;
    }
    Ok(())
}
