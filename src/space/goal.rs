//! What a study aims for: the `[objective]`, the `[slo]` limits and the `[capacity]` load search
//! (`CapacitySpec`), and the validation of those sections. The goal types themselves
//! (`Objective`, `Direction`, `Slo`, `Load`) are `measure::goal`'s, which judges against them.
//!
//! Owns which metrics a study may name and their bounds. The metrics themselves (names,
//! aliases, how each is measured) are `measure::Metric`; grading a trial against these goals is
//! `trial`'s, and running a capacity search is `search::capacity`'s.

use super::Invalid;
use super::file::{CapacityFile, ObjectiveFile, SloFile};
use crate::measure::Metric;
pub use crate::measure::goal::{Direction, Load, Objective, Slo};

/// `maximize = "capacity"`: each trial searches for the highest load at which `slo` still
/// holds, on the trial's own server; that load is the trial's objective.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySpec {
    /// One of the study's SLOs.
    pub slo: Slo,
    pub load: Load,
    pub min: f64,
    pub max: f64,
}

/// Objective metrics a study may name (also by `Metric::from_name`'s aliases), in the order the
/// error message lists them.
const OBJECTIVE_METRICS: &[Metric] = &[
    Metric::GoodputRps,
    Metric::OutputTokPerS,
    Metric::ReqPerS,
    Metric::TtftP50Ms,
    Metric::TtftP95Ms,
    Metric::TtftP99Ms,
    Metric::TpotP50Ms,
    Metric::TpotP95Ms,
    Metric::E2eP50Ms,
    Metric::E2eP95Ms,
    Metric::Capacity,
];

/// `[objective]`: one of `maximize` or `minimize`; maximize goodput when neither is given.
pub(super) fn validate_objective(raw: ObjectiveFile) -> Result<Objective, Invalid> {
    match (raw.maximize, raw.minimize) {
        (Some(_), Some(_)) => Err(Invalid::new("objective", "give either 'maximize' or 'minimize', not both")),
        (Some(m), None) => Ok(Objective {
            metric: objective_metric(&m)
                .ok_or_else(|| Invalid::new("objective.maximize", unknown_metric_message(&m)))?,
            direction: Direction::Maximize,
        }),
        (None, Some(m)) => Ok(Objective {
            metric: objective_metric(&m)
                .ok_or_else(|| Invalid::new("objective.minimize", unknown_metric_message(&m)))?,
            direction: Direction::Minimize,
        }),
        (None, None) => Ok(Objective { metric: Metric::GoodputRps, direction: Direction::Maximize }),
    }
}

/// `[slo]`: every limit given, as non-negative numbers (fractions for the rates).
pub(super) fn validate_slos(raw: &SloFile) -> Result<Vec<Slo>, Invalid> {
    let mut slos = Vec::new();
    for (metric, limit, is_upper_bound) in [
        (Metric::TtftP95Ms, raw.ttft_p95_ms, true),
        (Metric::TpotP95Ms, raw.tpot_p95_ms, true),
        (Metric::E2eP95Ms, raw.e2e_p95_ms, true),
        (Metric::OutputTokPerS, raw.output_tok_per_s, false),
        (Metric::SuccessRate, raw.success_rate, false),
        (Metric::PeakRssMb, raw.peak_rss_mb, true),
        (Metric::QualityAgreement, raw.quality_agreement_min, false),
        (Metric::PeakVramMb, raw.peak_vram_mb, true),
    ] {
        let Some(limit) = limit else { continue };
        if !limit.is_finite() || limit < 0.0 {
            return Err(Invalid::new(
                format!("slo.{metric}"),
                format!("must be a non-negative number (got '{limit}')"),
            ));
        }
        if metric == Metric::QualityAgreement && limit > 1.0 {
            return Err(Invalid::new(
                "slo.quality_agreement_min",
                format!("is a fraction between 0 and 1 (got '{limit}')"),
            ));
        }
        if metric == Metric::SuccessRate && limit > 1.0 {
            return Err(Invalid::new("slo.success_rate", format!("is a fraction between 0 and 1 (got '{limit}')")));
        }
        slos.push(Slo { metric, is_upper_bound, limit });
    }
    Ok(slos)
}

/// `[capacity]`: read exactly when the objective is to maximize capacity.
pub(super) fn validate_capacity(
    raw: Option<CapacityFile>,
    objective: &Objective,
    slos: &[Slo],
) -> Result<Option<CapacitySpec>, Invalid> {
    match (objective.metric == Metric::Capacity, raw) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(Invalid::new("capacity", "is only read with '[objective] maximize = \"capacity\"'")),
        (true, _) if objective.direction == Direction::Minimize => {
            Err(Invalid::new("objective.minimize", "'capacity' can only be maximized"))
        }
        (true, c) => {
            let c = c.unwrap_or_default();
            let slo = capacity_slo(c.slo.as_deref(), slos)?;
            let load = match c.load.as_deref().unwrap_or("concurrency") {
                "concurrency" => Load::Concurrency,
                "rate" => Load::Rate,
                other => {
                    return Err(Invalid::new(
                        "capacity.load",
                        format!("unknown load '{other}' (expected concurrency or rate)"),
                    ));
                }
            };
            let (min, max) = load.default_range();
            let (min, max) = (c.min.unwrap_or(min), c.max.unwrap_or(max));
            load.check_range(min, max).map_err(|m| Invalid::new("capacity.min", m))?;
            Ok(Some(CapacitySpec { slo, load, min, max }))
        }
    }
}

/// The SLO a capacity search holds: the one named, else TTFT p95, else the first given.
fn capacity_slo(name: Option<&str>, slos: &[Slo]) -> Result<Slo, Invalid> {
    let names = || slos.iter().map(|s| s.metric.name()).collect::<Vec<_>>().join(", ");
    let slo = match name {
        // The exact name, not an alias: `slo = "throughput"` names no [slo] key.
        Some(m) => slos.iter().find(|s| s.metric.name() == m).ok_or_else(|| {
            Invalid::new("capacity.slo", format!("'{m}' is not one of this file's [slo] limits ({})", names()))
        })?,
        None => slos.iter().find(|s| s.metric == Metric::TtftP95Ms).or(slos.first()).ok_or_else(|| {
            Invalid::new("capacity.slo", "maximize = \"capacity\" needs an [slo] limit to hold (e.g. ttft_p95_ms)")
        })?,
    };
    Ok(slo.clone())
}

/// The objective metric `name` (or an alias) stands for, if a study may optimise it.
fn objective_metric(name: &str) -> Option<Metric> {
    Metric::from_name(name).filter(|m| OBJECTIVE_METRICS.contains(m))
}

fn unknown_metric_message(name: &str) -> String {
    let names: Vec<&str> = OBJECTIVE_METRICS.iter().map(|m| m.name()).collect();
    format!("unknown metric '{name}' (expected one of: {})", names.join(", "))
}
