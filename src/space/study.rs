//! The `[study]` section: name, strategy, seed, budget and re-validation settings
//! (`StrategyKind`), validated into the study fields of `Space`.
//!
//! Owns the settings only; the strategies themselves live in `search`, the budget is enforced
//! by `daemon`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::file::StudyFile;
use super::{Invalid, parse_duration};

/// Search strategy named in `[study] strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    Grid,
    Random,
    /// Constrained multivariate TPE (the default).
    Tpe,
    /// argmin's simulated annealing.
    Anneal,
}

impl StrategyKind {
    /// The name in space files and the store (`grid`, `random`, `tpe`, `anneal`).
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Grid => "grid",
            StrategyKind::Random => "random",
            StrategyKind::Tpe => "tpe",
            StrategyKind::Anneal => "anneal",
        }
    }

    /// The inverse of [`StrategyKind::name`].
    pub fn from_name(name: &str) -> Option<StrategyKind> {
        [StrategyKind::Grid, StrategyKind::Random, StrategyKind::Tpe, StrategyKind::Anneal]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// The validated `[study]` section; `Space` holds these fields flat.
pub(super) struct StudySettings {
    pub name: String,
    pub strategy: StrategyKind,
    pub seed: u64,
    pub max_trials: Option<u32>,
    pub anchor_every: Option<u32>,
    pub validate_pairs: u32,
    pub validate_top: usize,
    pub max_duration: Option<Duration>,
    pub intensify: bool,
}

/// `[study]`: a name, a known strategy, a usable budget and re-validation settings.
pub(super) fn validate_study(study: StudyFile) -> Result<StudySettings, Invalid> {
    if study.name.trim().is_empty() {
        return Err(Invalid::new("study.name", "must not be empty"));
    }
    let strategy = match study.strategy.as_str() {
        "grid" => StrategyKind::Grid,
        "random" => StrategyKind::Random,
        "tpe" => StrategyKind::Tpe,
        "anneal" => StrategyKind::Anneal,
        other => {
            return Err(Invalid::new(
                "study.strategy",
                format!("unknown strategy '{other}' (expected grid, random, tpe or anneal)"),
            ));
        }
    };
    if matches!(study.validate_pairs, 1 | 2) {
        return Err(Invalid::new(
            "study.validate_pairs",
            format!("got '{}': re-validation needs at least 3 interleaved rounds (0 = off)", study.validate_pairs),
        ));
    }
    if study.validate_top == 0 {
        return Err(Invalid::new("study.validate_top", "got '0': must be at least 1"));
    }
    if study.budget.trials == Some(0) {
        return Err(Invalid::new("study.budget.trials", "must be at least 1"));
    }
    let max_duration = match &study.budget.duration {
        Some(d) => Some(parse_duration(d).map_err(|m| Invalid::new("study.budget.duration", m))?),
        None => None,
    };
    Ok(StudySettings {
        name: study.name,
        strategy,
        seed: study.seed,
        max_trials: study.budget.trials,
        anchor_every: study.anchor_every.filter(|m| *m > 0),
        validate_pairs: study.validate_pairs,
        validate_top: study.validate_top,
        max_duration,
        intensify: study.intensify,
    })
}
