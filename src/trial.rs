//! What a trial is and how it ended: the domain types shared by the store, the search and the
//! exports, plus the rule that names the best trial.
//!
//! A bad configuration is a result, not an error (DESIGN.md §4): every trial ends `complete`,
//! `infeasible`, `pruned` or `interrupted`, and all of them are kept.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::backend::{FailureClass, LaunchPlan};
use crate::measure::{ErrorKind, Summary, Verdict};
use crate::space::{BackendKind, Candidate, Direction, StrategyKind};

/// How the store and the CLI write a study's backend when there is none: `bench --save` runs.
pub const ENDPOINT_BACKEND: &str = "endpoint";
/// How the store and the CLI write a study's strategy when there is none: `bench --save` runs.
pub const BENCH_STRATEGY: &str = "bench";

impl Study {
    /// The backend as text (`llamacpp`, ..., or `endpoint`).
    pub fn backend_name(&self) -> &'static str {
        self.backend.map_or(ENDPOINT_BACKEND, BackendKind::name)
    }

    /// The strategy as text (`tpe`, ..., or `bench`).
    pub fn strategy_name(&self) -> &'static str {
        self.strategy.map_or(BENCH_STRATEGY, StrategyKind::name)
    }
}

/// Graded violation given to an infeasible trial, so the search learns from it: worse than any
/// measured SLO miss short of total failure.
pub const INFEASIBLE_VIOLATION: f64 = 100.0;

/// Row id of a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StudyId(pub i64);

/// Row id of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrialId(pub i64);

/// Where a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    Running,
    Complete,
    Infeasible,
    Pruned,
    Interrupted,
    /// A worker of a shared study stopped heartbeating while running it (killed, host gone);
    /// another worker noticed and retries its candidate (issue 18).
    Lost,
}

impl TrialState {
    pub fn as_str(&self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Infeasible => "infeasible",
            TrialState::Pruned => "pruned",
            TrialState::Interrupted => "interrupted",
            TrialState::Lost => "lost",
        }
    }
}

impl fmt::Display for TrialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrialState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "running" => TrialState::Running,
            "complete" => TrialState::Complete,
            "infeasible" => TrialState::Infeasible,
            "pruned" => TrialState::Pruned,
            "interrupted" => TrialState::Interrupted,
            "lost" => TrialState::Lost,
            other => {
                return Err(format!(
                    "unknown state '{other}' (expected running, complete, infeasible, pruned, interrupted or lost)"
                ));
            }
        })
    }
}

/// Why a trial could not be measured: the reason class stored with an infeasible trial (text
/// only at the store and CLI boundary: `oom`, `requests-timeout`, `capacity-unmeasured`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum InfeasibleClass {
    /// The server refused the settings, crashed, ran out of memory or never got ready, in the
    /// backend's classification.
    Server(FailureClass),
    /// The server started but answered no request; the requests' most common error kind.
    Requests(ErrorKind),
    /// A capacity trial whose load search could not measure (e.g. the client fell behind).
    CapacityUnmeasured,
    /// A trace replay whose client fell behind the trace's schedule: the figures would describe
    /// the client, not the server (issue 17).
    ClientBehind,
    /// A replayed point the landscape holds no usable run for.
    NotRecorded,
}

impl fmt::Display for InfeasibleClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfeasibleClass::Server(c) => f.write_str(c.as_str()),
            InfeasibleClass::Requests(kind) => write!(f, "requests-{}", kind.as_str()),
            InfeasibleClass::CapacityUnmeasured => f.write_str("capacity-unmeasured"),
            InfeasibleClass::ClientBehind => f.write_str("client-behind"),
            InfeasibleClass::NotRecorded => f.write_str("not-recorded"),
        }
    }
}

impl FromStr for InfeasibleClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(kind) = s.strip_prefix("requests-") {
            return ErrorKind::from_name(kind)
                .map(InfeasibleClass::Requests)
                .ok_or_else(|| format!("unknown request error kind '{kind}' in '{s}'"));
        }
        match s {
            "capacity-unmeasured" => Ok(InfeasibleClass::CapacityUnmeasured),
            "client-behind" => Ok(InfeasibleClass::ClientBehind),
            "not-recorded" => Ok(InfeasibleClass::NotRecorded),
            other => FailureClass::from_name(other)
                .map(InfeasibleClass::Server)
                .ok_or_else(|| format!("unknown failure class '{other}'")),
        }
    }
}

impl From<InfeasibleClass> for String {
    fn from(c: InfeasibleClass) -> String {
        c.to_string()
    }
}

impl TryFrom<String> for InfeasibleClass {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// How a trial ended, as the daemon hands it to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Measured to the end.
    Complete { summary: Summary, verdict: Verdict },
    /// Could not be served: the server refused, crashed or never got ready.
    Infeasible { class: InfeasibleClass, message: String },
    /// Stopped early because an SLO was certain to fail; the figures are partial.
    Pruned { summary: Summary, verdict: Verdict },
    /// The daemon stopped mid-trial; resume retries it.
    Interrupted,
}

impl Outcome {
    pub fn state(&self) -> TrialState {
        match self {
            Outcome::Complete { .. } => TrialState::Complete,
            Outcome::Infeasible { .. } => TrialState::Infeasible,
            Outcome::Pruned { .. } => TrialState::Pruned,
            Outcome::Interrupted => TrialState::Interrupted,
        }
    }
}

/// Timing of the trial's stages, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StageTimes {
    /// Spawn → ready (health 200); `None` when the server was not started.
    pub ready_ms: Option<f64>,
    /// Workload, including warm-up.
    pub workload_ms: Option<f64>,
    /// How the trial got its server: `restart`, `reload` or `reuse` (`backend::Launch`);
    /// `None` when no server was started.
    #[serde(default)]
    pub launch: Option<crate::backend::Launch>,
    /// Model load the trial waited for (Ollama's preload `load_duration`); `None` for servers
    /// that load at start.
    #[serde(default)]
    pub load_ms: Option<f64>,
}

/// A stored trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    pub id: TrialId,
    /// 1-based number within the study.
    pub number: i64,
    pub state: TrialState,
    pub params: Candidate,
    /// How the configuration was launched; `None` if planning failed.
    pub plan: Option<LaunchPlan>,
    /// Objective value; `None` unless measured (complete or pruned).
    pub objective: Option<f64>,
    /// Summed graded SLO violation (0 = every SLO met); `INFEASIBLE_VIOLATION` for infeasible
    /// trials; `None` for running and interrupted ones.
    pub violation: Option<f64>,
    pub violations: BTreeMap<String, f64>,
    pub summary: Option<Summary>,
    pub error_class: Option<InfeasibleClass>,
    pub error_message: Option<String>,
    pub stages: StageTimes,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

impl Trial {
    /// Complete and meeting every SLO.
    pub fn is_feasible(&self) -> bool {
        self.state == TrialState::Complete && self.violation == Some(0.0)
    }
}

/// The best trial: the best objective among feasible trials; if none is feasible, the least
/// violating finished trial. Ties go to the earlier trial. The bool says whether it is feasible.
pub fn best(trials: &[Trial], direction: Direction) -> Option<(&Trial, bool)> {
    let feasible =
        trials.iter().filter(|t| t.is_feasible() && t.objective.is_some_and(f64::is_finite)).reduce(|a, b| {
            let (x, y) = (a.objective.expect("filtered"), b.objective.expect("filtered"));
            if crate::measure::is_better(direction, y, x) { b } else { a }
        });
    if let Some(t) = feasible {
        return Some((t, true));
    }
    trials
        .iter()
        .filter(|t| t.violation.is_some())
        .reduce(|a, b| if b.violation.expect("filtered") < a.violation.expect("filtered") { b } else { a })
        .map(|t| (t, false))
}

/// Median over a study's trials of the client/server decode-rate agreement, with the trial count;
/// `None` when no trial has server timings.
pub fn decode_agreement_median(trials: &[Trial]) -> Option<(f64, usize)> {
    let v: Vec<f64> = trials.iter().filter_map(|t| t.summary.as_ref()?.decode_agreement).collect();
    (!v.is_empty()).then(|| (crate::measure::ratio::median(&v), v.len()))
}

/// The `n` best trials that met every SLO with a finite objective, best first (ties: the
/// earlier trial): the candidates re-validation measures again.
pub fn top_feasible(trials: &[Trial], direction: Direction, n: usize) -> Vec<&Trial> {
    let mut feasible: Vec<&Trial> =
        trials.iter().filter(|t| t.is_feasible() && t.objective.is_some_and(f64::is_finite)).collect();
    feasible.sort_by(|a, b| {
        let (x, y) = (a.objective.expect("filtered"), b.objective.expect("filtered"));
        if crate::measure::is_better(direction, x, y) {
            std::cmp::Ordering::Less
        } else if x == y {
            a.number.cmp(&b.number)
        } else {
            std::cmp::Ordering::Greater
        }
    });
    feasible.truncate(n);
    feasible
}

/// Facts that make a study's figures comparable; a change means the figures no longer are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// What the backend program printed for its version (first line).
    pub engine_version: String,
    /// SHA-256 of each model file the space can launch, keyed by path.
    pub model_sha256: BTreeMap<String, String>,
    pub host: crate::measure::system::Host,
}

/// A stored study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Study {
    pub id: StudyId,
    pub name: String,
    /// The backend the tuner drove; `None` for an endpoint measured by `bench --save`.
    pub backend: Option<BackendKind>,
    /// How trials were chosen; `None` for a saved bench run (one trial, no search).
    pub strategy: Option<StrategyKind>,
    pub objective_metric: String,
    pub direction: Direction,
    pub space_toml: String,
    pub fingerprint: Fingerprint,
    pub created_at_ms: i64,
    /// Why the last run of the study stopped; `None` while running or never finished.
    pub stop_reason: Option<String>,
    /// Directory of the space file the study was started from (its relative paths resolve
    /// against it); `None` for studies stored before it was kept, and for saved bench runs.
    pub space_dir: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(number: i64, state: TrialState, objective: Option<f64>, violation: Option<f64>) -> Trial {
        Trial {
            id: TrialId(number),
            number,
            state,
            params: Candidate::default(),
            plan: None,
            objective,
            violation,
            violations: BTreeMap::new(),
            summary: None,
            error_class: None,
            error_message: None,
            stages: StageTimes::default(),
            started_at_ms: 0,
            ended_at_ms: None,
        }
    }

    #[test]
    fn infeasible_classes_read_back_as_written() {
        for text in [
            "oom",
            "invalid-combination",
            "kv-too-small",
            "requests-timeout",
            "requests-model_not_found",
            "capacity-unmeasured",
            "not-recorded",
        ] {
            let class: InfeasibleClass = text.parse().unwrap();
            assert_eq!(class.to_string(), text);
        }
        assert_eq!("requests-connect".parse(), Ok(InfeasibleClass::Requests(ErrorKind::Connect)));
        assert!("crashed-twice".parse::<InfeasibleClass>().unwrap_err().contains("'crashed-twice'"));
    }

    #[test]
    fn best_prefers_feasible_then_least_violating() {
        let trials = vec![
            trial(1, TrialState::Complete, Some(5.0), Some(0.3)),
            trial(2, TrialState::Complete, Some(2.0), Some(0.0)),
            trial(3, TrialState::Complete, Some(3.0), Some(0.0)),
            trial(4, TrialState::Infeasible, None, Some(INFEASIBLE_VIOLATION)),
        ];
        let (b, ok) = best(&trials, Direction::Maximize).unwrap();
        assert_eq!((b.number, ok), (3, true));
        let (b, ok) = best(&trials, Direction::Minimize).unwrap();
        assert_eq!((b.number, ok), (2, true));
        let infeasible_only = vec![trials[0].clone(), trials[3].clone()];
        let (b, ok) = best(&infeasible_only, Direction::Maximize).unwrap();
        assert_eq!((b.number, ok), (1, false));
        assert!(best(&[trial(1, TrialState::Interrupted, None, None)], Direction::Maximize).is_none());
    }
}
