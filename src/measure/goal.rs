//! What a trial is judged against: the study's objective (`Objective`, `Direction`), its SLO
//! limits (`Slo`), and what a capacity search varies (`Load`). Plain data; the space file's
//! `[objective]`, `[slo]` and `[capacity]` sections are parsed into these by `space`.

use serde::{Deserialize, Serialize};

use super::Metric;

/// What the search optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Maximize,
    Minimize,
}

/// The study's objective: one metric and a direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub metric: Metric,
    pub direction: Direction,
}

/// A service-level objective: a metric and a bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// The bounded metric (serialized as its name, e.g. `ttft_p95_ms`).
    pub metric: Metric,
    /// `true`: the metric must be at most `limit`; `false`: at least `limit`.
    pub is_upper_bound: bool,
    pub limit: f64,
}

/// What a capacity search varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Load {
    /// Closed-loop clients.
    Concurrency,
    /// Open-loop Poisson arrivals, in requests per second.
    Rate,
}

impl Load {
    /// The default range searched: 1..16 clients, or 0.25..8 requests/s.
    pub fn default_range(self) -> (f64, f64) {
        match self {
            Load::Concurrency => (1.0, 16.0),
            Load::Rate => (0.25, 8.0),
        }
    }

    /// Why `min..=max` is not a range of this load, if it is not.
    pub fn check_range(self, min: f64, max: f64) -> Result<(), String> {
        let ok = match self {
            Load::Concurrency => min >= 1.0 && min.fract() == 0.0 && max.fract() == 0.0 && min < max,
            Load::Rate => min > 0.0 && min < max && max.is_finite(),
        };
        match (ok, self) {
            (true, _) => Ok(()),
            (false, Load::Concurrency) => {
                Err(format!("concurrency range '{min}..{max}' must be whole numbers with 1 <= min < max"))
            }
            (false, Load::Rate) => Err(format!("rate range '{min}..{max}' must be rates with 0 < min < max")),
        }
    }
}
