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
    /// Why the trial ran: the strategy's proposal, a re-measure of a point already measured
    /// (intensification, the drift anchor), or the retry of an interrupted trial.
    pub purpose: Purpose,
}

/// Why a trial ran. A re-measure is its own trial with the same params (a new number), so it
/// counts toward the budget and the runs of a point are its finished trials with those params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// The strategy's proposal (or a re-tune's seed).
    #[default]
    Search,
    /// A re-measure of the challenger or the incumbent before it can be named (issue 16).
    Intensify,
    /// The drift anchor: the default configuration measured again (`anchor_every`).
    Anchor,
    /// An interrupted trial run again on resume.
    Retry,
}

impl Purpose {
    pub fn as_str(&self) -> &'static str {
        match self {
            Purpose::Search => "search",
            Purpose::Intensify => "intensify",
            Purpose::Anchor => "anchor",
            Purpose::Retry => "retry",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Purpose {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "search" => Purpose::Search,
            "intensify" => Purpose::Intensify,
            "anchor" => Purpose::Anchor,
            "retry" => Purpose::Retry,
            other => return Err(format!("unknown purpose '{other}' (expected search, intensify, anchor or retry)")),
        })
    }
}

impl Trial {
    /// Complete and meeting every SLO.
    pub fn is_feasible(&self) -> bool {
        self.state == TrialState::Complete && self.violation == Some(0.0)
    }
}

/// The runs of one configuration: the finished trials with the same params (issue 16). A point
/// is what a strategy learns from and what a study names, never a single draw.
#[derive(Debug, Clone)]
pub struct Point<'a> {
    /// Its finished trials, in trial order (the first one names the point: "trial 10").
    pub runs: Vec<&'a Trial>,
    /// Whether a trial of it is running now (a re-measure in flight, here or on another worker).
    pub is_running: bool,
}

impl<'a> Point<'a> {
    /// The trial that names the point: its first finished run.
    pub fn first(&self) -> &'a Trial {
        self.runs[0]
    }

    /// Every run complete, meeting every SLO, with a finite objective: a point that missed an
    /// SLO in any run loses.
    pub fn is_feasible(&self) -> bool {
        self.runs.iter().all(|t| t.is_feasible() && t.objective.is_some_and(f64::is_finite))
    }

    /// Feasible, and no later run worse than its first by more than [`FLUKE_FACTOR`] (half the
    /// throughput, twice the latency): a first run that good was a fluke, and the point loses.
    pub fn is_contender(&self, direction: Direction) -> bool {
        if !self.is_feasible() {
            return false;
        }
        let first = self.first().objective.expect("feasible");
        self.values().iter().skip(1).all(|&v| match direction {
            Direction::Maximize => v >= first / FLUKE_FACTOR,
            Direction::Minimize => v <= first * FLUKE_FACTOR,
        })
    }

    /// Mean objective over its first `k` runs (all when it has fewer).
    pub fn mean_of_first(&self, k: usize) -> Option<f64> {
        let v: Vec<f64> = self.values().into_iter().take(k.max(1)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Mean objective over its runs that have one; `None` when none has.
    pub fn mean(&self) -> Option<f64> {
        let v: Vec<f64> = self.values();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Mean graded violation over its runs (0 only when every run met every SLO).
    pub fn mean_violation(&self) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(|t| t.violation).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// The finite objective values of its runs, in trial order.
    pub fn values(&self) -> Vec<f64> {
        self.runs.iter().filter_map(|t| t.objective).filter(|v| v.is_finite()).collect()
    }
}

/// The study's figure for `t`'s configuration: the mean objective over the finished runs of its
/// params (what the study named the point by), else `t`'s own objective.
pub fn figure_of(trials: &[Trial], t: &Trial) -> Option<f64> {
    points(trials).iter().find(|p| p.first().params == t.params).and_then(Point::mean).or(t.objective)
}

/// The study's points (finished trials grouped by params), in order of each point's first run.
pub fn points(trials: &[Trial]) -> Vec<Point<'_>> {
    let mut out: Vec<Point<'_>> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for t in trials {
        let finished = matches!(t.state, TrialState::Complete | TrialState::Infeasible | TrialState::Pruned);
        if !finished && t.state != TrialState::Running {
            continue;
        }
        let i = *index.entry(t.params.to_json()).or_insert_with(|| {
            out.push(Point { runs: Vec::new(), is_running: false });
            out.len() - 1
        });
        match finished {
            true => out[i].runs.push(t),
            false => out[i].is_running = true,
        }
    }
    out.retain(|p| !p.runs.is_empty());
    out
}

/// The study's own noise: the pooled relative standard deviation of the objective over points
/// measured at least twice (complete runs with a finite, non-zero mean; the drift anchor's
/// re-measures included), with how many repeated points it rests on. `None` until some point
/// has two runs: noise is estimated, never assumed.
pub fn noise(trials: &[Trial]) -> Option<Noise> {
    noise_of(&points(trials))
}

/// [`noise`] over points already grouped.
pub fn noise_of(points: &[Point<'_>]) -> Option<Noise> {
    let (mut sum_sq, mut dof, mut repeated) = (0.0, 0usize, 0usize);
    for p in points {
        let v: Vec<f64> =
            p.runs.iter().filter(|t| t.state == TrialState::Complete).filter_map(|t| t.objective).collect();
        let v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
        if v.len() < 2 {
            continue;
        }
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        if mean == 0.0 {
            continue;
        }
        sum_sq += v.iter().map(|x| ((x - mean) / mean).powi(2)).sum::<f64>();
        dof += v.len() - 1;
        repeated += 1;
    }
    (dof > 0).then(|| Noise { relative_sd: (sum_sq / dof as f64).sqrt(), points: repeated })
}

/// How much runs of one configuration vary in a study.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Noise {
    /// Pooled relative standard deviation of the objective (0.08 = ±8 %).
    pub relative_sd: f64,
    /// Points with at least two complete runs it was estimated from.
    pub points: usize,
}

/// Repeated points before a low noise estimate is trusted enough to name points on one run: a
/// spread from one or two pairs of runs is itself too noisy to stop confirming.
pub const MIN_POINTS_FOR_QUIET: usize = 3;
/// Most runs a point needs before it can be named, however noisy the study: its first run ranks
/// it, the others confirm it (bench-search: more runs cost search trials and, on the noisy
/// synthetic landscape, named worse points).
pub const MAX_RUNS: usize = 2;
/// Relative noise under which a study is quiet: one run tells a point's value to about this
/// fraction (half the 5 % by which configurations are told apart), so points are named on it.
pub const TARGET_RELATIVE_SE: f64 = 0.025;
/// How much worse than its first run a later run may be before that first run counts as a
/// fluke (half the throughput, or twice the latency): far outside the run-to-run spread seen
/// here (±10-25 %), inside what a load spike does (54.8 tok/s, then 3.9 tok/s).
pub const FLUKE_FACTOR: f64 = 2.0;

/// Runs a point needs before it can be named: 1 in a quiet study (noise under 2.5 %, from at
/// least [`MIN_POINTS_FOR_QUIET`] repeated points), else [`MAX_RUNS`]: the first to rank it,
/// the second to confirm that it meets every SLO again and was not a fluke.
pub fn runs_needed(noise: Option<Noise>) -> usize {
    match noise {
        Some(n) if n.points >= MIN_POINTS_FOR_QUIET && n.relative_sd < TARGET_RELATIVE_SE => 1,
        _ => MAX_RUNS,
    }
}

/// Points searched before the named point must be confirmed (see [`study_runs_needed`]).
pub const POINTS_BEFORE_CONFIRMING: usize = 5;

/// Runs a point of this study needs before it can be named: [`runs_needed`] for its noise, and
/// 1 while fewer than 5 points were searched: the best of a few configurations is little
/// of a lucky draw (the winner's curse grows with the candidates), so early incumbents, soon
/// beaten anyway, cost no re-measures.
pub fn study_runs_needed(trials: &[Trial]) -> usize {
    let pts = points(trials);
    runs_needed(noise_of(&pts)).min(1 + pts.len() / POINTS_BEFORE_CONFIRMING)
}

/// Whether `a` ranks before `b` as candidates to name, both contenders ([`Point::is_contender`])
/// with at least `k` runs compared on the mean of their first `k`: equal terms, so a point with
/// more runs is never judged against another's single lucky draw. Ties go to the earlier point.
fn ranks_before(a: &Point<'_>, b: &Point<'_>, k: usize, direction: Direction) -> bool {
    let (x, y) = (a.mean_of_first(k).expect("contender"), b.mean_of_first(k).expect("contender"));
    crate::measure::is_better(direction, x, y) || (x == y && a.first().number < b.first().number)
}

/// The intensified incumbent among `points` (rule 2 of `daemon::intensify`): of the confirmed
/// contenders (at least `needed` runs), the best mean over their first `needed` runs; with none
/// confirmed, the contender with the best first run (named as it stands, and re-measured next).
pub fn incumbent<'p, 'a>(points: &'p [Point<'a>], direction: Direction, needed: usize) -> Option<&'p Point<'a>> {
    let best = |k: usize, min_runs: usize| {
        points
            .iter()
            .filter(|p| p.runs.len() >= min_runs && p.is_contender(direction))
            .reduce(|a, b| if ranks_before(b, a, k, direction) { b } else { a })
    };
    best(needed, needed).or_else(|| best(1, 1))
}

/// The challenger to `incumbent` (rule 3 of `daemon::intensify`): the unconfirmed contender (fewer
/// than `needed` runs) whose first run is best and beats the incumbent's first run.
pub fn challenger<'p, 'a>(
    points: &'p [Point<'a>],
    incumbent: &Point<'a>,
    direction: Direction,
    needed: usize,
) -> Option<&'p Point<'a>> {
    points
        .iter()
        .filter(|p| p.runs.len() < needed && p.is_contender(direction) && p.first().id != incumbent.first().id)
        .filter(|p| ranks_before(p, incumbent, 1, direction))
        .reduce(|a, b| if ranks_before(b, a, 1, direction) { b } else { a })
}

/// Which rule named a study's winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WinnerRule {
    /// The end-of-study validation re-measured the top trials against the default and picked it.
    Validated,
    /// The intensified incumbent: confirmed by a second run where the study is noisy, then the
    /// best mean over its first runs (`daemon::intensify`).
    Intensified,
    /// No point met every SLO: the least violating trial.
    LeastViolating,
}

/// The configuration a study names: what `best`, `export`, `[output]` and the report ship.
#[derive(Debug, Clone, Copy)]
pub struct Winner<'a> {
    /// The trial that names it (the point's first run); its plan is what is exported.
    pub trial: &'a Trial,
    /// Finished runs of its params.
    pub runs: usize,
    /// Mean objective over those runs.
    pub mean: Option<f64>,
    pub feasible: bool,
    pub rule: WinnerRule,
}

impl Winner<'_> {
    /// How the CLI and the report say which rule named it. An intensified incumbent with one
    /// run was not re-measured (a quiet or short study, or `intensify = false`): it says so.
    pub fn describe(&self) -> &'static str {
        match self.rule {
            WinnerRule::Validated => "validated: re-measured against the default, best confidence bound",
            WinnerRule::Intensified if self.runs >= 2 => {
                "intensified incumbent: confirmed by a re-measure (every SLO met again), then the best mean on equal runs"
            }
            WinnerRule::Intensified => {
                "the best single run: not re-measured (a quiet or short study, or intensification off)"
            }
            WinnerRule::LeastViolating => "no configuration met every SLO: the least violating trial",
        }
    }
}

/// Name the study's winner: the validated winner (`validated` = the trial number a stored
/// validation picked, when it is a trial of this study), else the intensified incumbent, else
/// the least violating trial.
pub fn winner(trials: &[Trial], direction: Direction, validated: Option<i64>) -> Option<Winner<'_>> {
    let pts = points(trials);
    fn of<'a>(p: &Point<'a>, rule: WinnerRule) -> Winner<'a> {
        Winner { trial: p.first(), runs: p.runs.len(), mean: p.mean(), feasible: p.is_feasible(), rule }
    }
    if let Some(n) = validated
        && let Some(p) = pts.iter().find(|p| p.runs.iter().any(|t| t.number == n))
    {
        return Some(of(p, WinnerRule::Validated));
    }
    if let Some(p) = incumbent(&pts, direction, study_runs_needed(trials)) {
        return Some(of(p, WinnerRule::Intensified));
    }
    trials
        .iter()
        .filter(|t| t.violation.is_some())
        .reduce(|a, b| if b.violation.expect("filtered") < a.violation.expect("filtered") { b } else { a })
        .map(|t| {
            let runs = pts.iter().find(|p| p.first().params == t.params).map_or(1, |p| p.runs.len());
            Winner { trial: t, runs, mean: t.objective, feasible: false, rule: WinnerRule::LeastViolating }
        })
}

/// The best trial: the named winner without a validation (the intensified incumbent's first
/// run; with one run a point, the best objective among feasible trials), else the least
/// violating finished trial. Ties go to the earlier trial. The bool says whether it is feasible.
pub fn best(trials: &[Trial], direction: Direction) -> Option<(&Trial, bool)> {
    winner(trials, direction, None).map(|w| (w.trial, w.feasible))
}

/// Median over a study's trials of the client/server decode-rate agreement, with the trial count;
/// `None` when no trial has server timings.
pub fn decode_agreement_median(trials: &[Trial]) -> Option<(f64, usize)> {
    let v: Vec<f64> = trials.iter().filter_map(|t| t.summary.as_ref()?.decode_agreement).collect();
    (!v.is_empty()).then(|| (crate::measure::ratio::median(&v), v.len()))
}

/// The `n` best contenders ([`Point::is_contender`]), each by its first trial: the intensified
/// incumbent, then the others by their first run (equal terms: one run each; ties: the earlier
/// trial). The candidates re-validation measures again.
pub fn top_feasible(trials: &[Trial], direction: Direction, n: usize) -> Vec<&Trial> {
    let pts = points(trials);
    let Some(first) = incumbent(&pts, direction, study_runs_needed(trials)) else { return Vec::new() };
    let mut others: Vec<&Point<'_>> =
        pts.iter().filter(|p| p.first().id != first.first().id && p.is_contender(direction)).collect();
    others.sort_by(|a, b| {
        if ranks_before(a, b, 1, direction) {
            std::cmp::Ordering::Less
        } else if ranks_before(b, a, 1, direction) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    std::iter::once(first).chain(others).take(n).map(|p| p.first()).collect()
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
            // one point a trial: runs of one point share their params (see `points`)
            params: Candidate([("k".to_string(), crate::space::Value::Int(number))].into()),
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
            purpose: Purpose::Search,
        }
    }

    #[test]
    fn a_configuration_s_figure_is_the_mean_over_its_runs() {
        let mut rerun = trial(3, TrialState::Complete, Some(20.0), Some(0.0));
        rerun.params = trial(1, TrialState::Complete, None, None).params;
        let trials = vec![
            trial(1, TrialState::Complete, Some(30.0), Some(0.0)),
            trial(2, TrialState::Complete, Some(9.0), Some(0.0)),
            rerun,
        ];
        // trial 1's lucky 30 and its re-measure's 20: the study's figure for it is 25
        assert_eq!(figure_of(&trials, &trials[0]), Some(25.0));
        assert_eq!(figure_of(&trials, &trials[2]), Some(25.0), "any run of the point says the same");
        assert_eq!(figure_of(&trials, &trials[1]), Some(9.0));
        // a trial that is not among the finished ones keeps its own figure
        let running = trial(4, TrialState::Running, Some(7.0), None);
        assert_eq!(figure_of(&trials, &running), Some(7.0));
    }

    #[test]
    fn a_winner_named_on_one_run_does_not_claim_a_re_measure() {
        let mut rerun = trial(3, TrialState::Complete, Some(28.0), Some(0.0));
        rerun.params = trial(1, TrialState::Complete, None, None).params;
        let once = vec![trial(1, TrialState::Complete, Some(30.0), Some(0.0))];
        let w = winner(&once, Direction::Maximize, None).unwrap();
        assert_eq!((w.rule, w.runs), (WinnerRule::Intensified, 1));
        assert!(w.describe().starts_with("the best single run: not re-measured"), "{}", w.describe());
        let twice = vec![once[0].clone(), rerun];
        let w = winner(&twice, Direction::Maximize, None).unwrap();
        assert!(w.describe().contains("confirmed by a re-measure"), "{}", w.describe());
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
