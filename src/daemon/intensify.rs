//! What runs next: a retry of an interrupted trial, a re-tune's seed, a re-measure of the
//! challenger or the incumbent (intensification), else the strategy's proposal (issue 16).
//!
//! [`next`] reads only the study's stored trials, the strategy and the space: no I/O, and no
//! state of the loop that the trials do not hold, so a worker of a shared study can call it
//! inside the lock where it claims its trial.
//!
//! ## The intensification rule
//!
//! A point is a configuration; its runs are its finished trials with the same params
//! ([`trial::points`]). Runs of one configuration vary (on this machine 29.8 tok/s, then
//! 18.2 tok/s under load), so a single lucky draw must not be named. As SMAC's intensification
//! and irace's racing do:
//!
//! 1. `N`, the runs a point needs, comes from the study's own noise ([`trial::noise`], the
//!    pooled relative spread over points measured twice or more): `⌈(noise / 2.5 %)²⌉`
//!    within 1..=3, 2 while no point has been measured twice and at least 2 until three have
//!    ([`trial::runs_needed`]); and at most `1 + points searched / 5`, since the best-looking
//!    of more points is more likely a lucky draw ([`trial::study_runs_needed`]): the best of
//!    fewer than 5 configurations is named on its runs as they are.
//! 2. The *incumbent* is the feasible point (every run met every SLO) with the most runs,
//!    counted up to `N`, then the better mean ([`trial::incumbent`]).
//! 3. The *challenger* is the feasible point, other than the incumbent, with the best mean that
//!    beats the incumbent's mean and has fewer runs than the incumbent (up to `N`). It is
//!    re-measured, one fresh start at a time, while its mean still beats the incumbent's. Once
//!    it has as many runs and still the better mean, it is the incumbent (rule 2); a run that
//!    misses an SLO makes it infeasible, and it loses.
//! 4. With no challenger, an incumbent with fewer than `N` runs is re-measured.
//! 5. Otherwise the strategy proposes. A point with a trial in flight is never re-measured
//!    twice at once.
//!
//! Re-measures run through the same pipeline as any trial (plan, fresh start, workload) and are
//! stored as their own trials marked `intensify`, so they count toward the budget.

use crate::search::Strategy;
use crate::space::{Candidate, Direction, Space};
use crate::trial::{self, Point, Purpose, Trial, TrialState};

/// The candidate to run next, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    pub candidate: Candidate,
    pub purpose: Purpose,
}

/// What runs next: retries of interrupted trials first (the study was in the middle of them),
/// then `seeds` never tried, then a re-measure ([`remeasure`]), then the strategy's proposal
/// (marked `anchor` when it re-proposes the default the space anchors on). `None` when the
/// strategy has nothing left and nothing needs re-measuring.
pub fn next(trials: &[Trial], strategy: &mut dyn Strategy, space: &Space, seeds: &[Candidate]) -> Option<Next> {
    if let Some(candidate) = retries(trials).into_iter().next() {
        return Some(Next { candidate, purpose: Purpose::Retry });
    }
    if let Some(seed) = seeds.iter().find(|c| !trials.iter().any(|t| &t.params == *c)) {
        return Some(Next { candidate: seed.clone(), purpose: Purpose::Search });
    }
    if let Some(candidate) = remeasure(trials, space.objective.direction) {
        return Some(Next { candidate, purpose: Purpose::Intensify });
    }
    let candidate = strategy.propose(space)?;
    let is_anchor = space.anchor_every.is_some()
        && space.default_candidate().as_ref() == Some(&candidate)
        && trials.iter().any(|t| t.params == candidate && is_finished(t));
    Some(Next { candidate, purpose: if is_anchor { Purpose::Anchor } else { Purpose::Search } })
}

/// The point the rule re-measures next (the challenger, else an incumbent short of its runs),
/// or `None` when the strategy should propose.
pub fn remeasure(trials: &[Trial], direction: Direction) -> Option<Candidate> {
    let points = trial::points(trials);
    let needed = trial::study_runs_needed(trials);
    let incumbent = trial::incumbent(&points, direction, needed)?;
    if let Some(c) = challenger(&points, incumbent, direction, needed) {
        return (!c.is_running).then(|| c.first().params.clone());
    }
    (incumbent.runs.len() < needed && !incumbent.is_running).then(|| incumbent.first().params.clone())
}

/// Rule 3: the best-looking feasible point with fewer runs than the incumbent whose mean beats
/// the incumbent's.
fn challenger<'p, 'a>(
    points: &'p [Point<'a>],
    incumbent: &Point<'a>,
    direction: Direction,
    needed: usize,
) -> Option<&'p Point<'a>> {
    let bar = incumbent.mean().expect("the incumbent is feasible");
    let runs = incumbent.runs.len().min(needed);
    points
        .iter()
        .filter(|p| p.is_feasible() && p.runs.len() < runs && p.first().id != incumbent.first().id)
        .filter(|p| crate::measure::is_better(direction, p.mean().expect("feasible"), bar))
        .reduce(|a, b| {
            let (x, y) = (a.mean().expect("feasible"), b.mean().expect("feasible"));
            if crate::measure::is_better(direction, y, x) { b } else { a }
        })
}

/// Params of interrupted trials that no later trial finished or is running, in order: resume
/// retries them.
pub fn retries(trials: &[Trial]) -> Vec<Candidate> {
    let mut queue: Vec<Candidate> = Vec::new();
    for t in trials {
        if matches!(t.state, TrialState::Interrupted | TrialState::Lost) {
            if !queue.contains(&t.params) {
                queue.push(t.params.clone());
            }
        } else {
            queue.retain(|c| c != &t.params);
        }
    }
    queue
}

fn is_finished(t: &Trial) -> bool {
    matches!(t.state, TrialState::Complete | TrialState::Infeasible | TrialState::Pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::landscape::{Landscape, Run};
    use crate::space::Value;

    fn point(k: i64) -> Candidate {
        Candidate([("k".to_string(), Value::Int(k))].into())
    }

    /// Trials from `(point, objective, violation)`, numbered from 1.
    fn study(runs: &[(i64, f64, f64)]) -> Vec<Trial> {
        runs.iter()
            .enumerate()
            .map(|(i, &(k, v, violation))| {
                Landscape::trial(i as i64 + 1, &point(k), &Run::new(TrialState::Complete, Some(v), violation))
            })
            .collect()
    }

    const MAX: Direction = Direction::Maximize;

    /// `runs` after 30 poor single-run points (value 1): enough points searched that the bar
    /// is the noise's `N` (up to 3; the ramp allows 1 + 30/5 = 7).
    fn searched(runs: &[(i64, f64, f64)]) -> Vec<(i64, f64, f64)> {
        (100..130).map(|k| (k, 1.0, 0.0)).chain(runs.iter().copied()).collect()
    }

    #[test]
    fn an_unrepeated_incumbent_is_measured_again_before_it_is_named() {
        // five points, no repeat yet: N = 2, so the single run of the best point is not enough
        let five = [(1, 10.0, 0.0), (2, 8.0, 0.0), (3, 7.0, 0.0), (4, 6.0, 0.0), (5, 5.0, 0.0)];
        assert_eq!(remeasure(&study(&five), MAX), Some(point(1)));
        // the best of fewer than five is named on its runs as they are (little winner's curse)
        assert_eq!(remeasure(&study(&five[..4]), MAX), None);
    }

    #[test]
    fn a_challenger_races_the_incumbent_until_equal_runs() {
        // incumbent 1: 3 runs around 10 (±10 %)
        let base = [(1, 10.0, 0.0), (1, 11.0, 0.0), (1, 9.0, 0.0)];
        // noise = 10 % → N = 3, which the incumbent has; the newcomer's 14 challenges it
        let mut runs = searched(&base);
        runs.push((2, 14.0, 0.0));
        let trials = study(&runs);
        assert_eq!(trial::study_runs_needed(&trials), 3);
        assert_eq!(remeasure(&trials, MAX), Some(point(2)), "the challenger is re-measured");
        // its second run falls behind the incumbent's mean: it is dropped, the strategy proposes
        runs.push((2, 5.0, 0.0));
        let trials = study(&runs);
        assert_eq!(remeasure(&trials, MAX), None);
        assert_eq!(trial::winner(&trials, MAX, None).unwrap().trial.params, point(1));
        // a challenger that keeps its lead up to equal runs becomes the incumbent
        let mut runs = searched(&base);
        runs.extend([(2, 12.0, 0.0), (2, 11.0, 0.0), (2, 11.5, 0.0)]);
        let trials = study(&runs);
        let pts = trial::points(&trials);
        let inc = trial::incumbent(&pts, MAX, trial::study_runs_needed(&trials)).unwrap();
        assert_eq!(inc.first().params, point(2));
        assert_eq!(trial::winner(&trials, MAX, None).unwrap().trial.number, 34);
    }

    #[test]
    fn a_challenger_that_misses_an_slo_in_any_run_loses() {
        let runs = [(1, 10.0, 0.0), (1, 10.5, 0.0), (2, 20.0, 0.0), (2, 21.0, 0.3)];
        let trials = study(&runs);
        assert_eq!(trial::winner(&trials, MAX, None).unwrap().trial.params, point(1));
        // and it is not raced any further
        assert_eq!(remeasure(&trials, MAX), None);
    }

    #[test]
    fn a_lucky_single_run_is_not_named_over_a_measured_point() {
        // point 1 measured 3 times at ~10 (±10 %); point 2 seen once at 13: a challenger, not
        // the winner, until it has as many runs
        let trials = study(&searched(&[(1, 10.0, 0.0), (1, 11.0, 0.0), (1, 9.0, 0.0), (2, 13.0, 0.0)]));
        let w = trial::winner(&trials, MAX, None).unwrap();
        assert_eq!((w.trial.number, w.runs, w.rule), (31, 3, trial::WinnerRule::Intensified));
        assert_eq!(w.mean, Some(10.0));
        // a stored validation names its own pick
        let w = trial::winner(&trials, MAX, Some(34)).unwrap();
        assert_eq!((w.trial.number, w.rule), (34, trial::WinnerRule::Validated));
    }

    #[test]
    fn quiet_studies_name_points_on_one_run() {
        // three points measured twice, identically: noise 0 → N = 1; the better single run wins
        let quiet = [(1, 10.0, 0.0), (1, 10.0, 0.0), (2, 9.0, 0.0), (2, 9.0, 0.0), (3, 8.0, 0.0), (3, 8.0, 0.0)];
        let mut runs = quiet.to_vec();
        runs.push((4, 12.0, 0.0));
        let trials = study(&runs);
        assert_eq!(trial::runs_needed(trial::noise(&trials)), 1);
        assert_eq!(remeasure(&trials, MAX), None);
        assert_eq!(trial::winner(&trials, MAX, None).unwrap().trial.params, point(4));
        // one identical pair is not enough to call a study quiet: the challenger is re-measured
        let trials = study(&searched(&[(1, 10.0, 0.0), (1, 10.0, 0.0), (2, 12.0, 0.0)]));
        assert_eq!(trial::runs_needed(trial::noise(&trials)), 2);
        assert_eq!(remeasure(&trials, MAX), Some(point(2)));
    }

    #[test]
    fn the_bar_rises_with_the_points_searched() {
        // noisy (±7 %), but only 3 points so far: the best is named on its runs
        let base = [(1, 10.0, 0.0), (1, 11.0, 0.0), (2, 5.0, 0.0), (3, 4.0, 0.0)];
        let trials = study(&base);
        assert_eq!((trial::runs_needed(trial::noise(&trials)), trial::study_runs_needed(&trials)), (3, 1));
        assert_eq!(remeasure(&trials, MAX), None);
        // 5 points: 2 runs, which point 1 has
        let mut five = base.to_vec();
        five.extend([(4, 3.0, 0.0), (5, 2.0, 0.0)]);
        assert_eq!(trial::study_runs_needed(&study(&five)), 2);
        assert_eq!(remeasure(&study(&five), MAX), None, "point 1 has its 2 runs");
        // 30 more points searched: it needs 3
        let trials = study(&searched(&base));
        assert_eq!(trial::study_runs_needed(&trials), 3);
        assert_eq!(remeasure(&trials, MAX), Some(point(1)));
    }

    #[test]
    fn a_point_in_flight_is_not_remeasured_twice_and_retries_come_first() {
        let mut trials = study(&searched(&[(1, 10.0, 0.0)]));
        assert_eq!(remeasure(&trials, MAX), Some(point(1)), "it needs a second run");
        let mut running = Landscape::trial(32, &point(1), &Run::new(TrialState::Complete, None, 0.0));
        running.state = TrialState::Running;
        trials.push(running);
        assert_eq!(remeasure(&trials, MAX), None, "its re-measure is already running");
        let mut interrupted = Landscape::trial(33, &point(7), &Run::new(TrialState::Complete, None, 0.0));
        interrupted.state = TrialState::Interrupted;
        trials.push(interrupted);
        assert_eq!(retries(&trials), vec![point(7)]);
        let finished = Landscape::trial(34, &point(7), &Run::new(TrialState::Complete, Some(1.0), 0.0));
        trials.push(finished);
        assert!(retries(&trials).is_empty());
    }

    #[test]
    fn noise_is_the_pooled_relative_spread_of_repeated_points() {
        // point 1: 9, 11 (mean 10, s² = 2 → rel 0.02); point 2: 18, 22 (rel var 0.02); 3 once
        let trials = study(&[(1, 9.0, 0.0), (1, 11.0, 0.0), (2, 18.0, 0.0), (2, 22.0, 0.0), (3, 5.0, 0.0)]);
        let n = trial::noise(&trials).unwrap();
        assert_eq!(n.points, 2);
        assert!((n.relative_sd - 0.02f64.sqrt()).abs() < 1e-12, "{n:?}");
        assert!(trial::noise(&study(&[(1, 9.0, 0.0), (2, 11.0, 0.0)])).is_none(), "estimated, never assumed");
        // ±14 % → (0.1414/0.025)² = 32 → capped at 3; 2 % → 1 (once 3 points were repeated)
        assert_eq!(trial::runs_needed(Some(n)), 3);
        assert_eq!(trial::runs_needed(Some(trial::Noise { relative_sd: 0.02, points: 3 })), 1);
        assert_eq!(trial::runs_needed(Some(trial::Noise { relative_sd: 0.02, points: 1 })), 2, "one pair says little");
        assert_eq!(trial::runs_needed(Some(trial::Noise { relative_sd: 0.04, points: 3 })), 3);
        assert_eq!(trial::runs_needed(None), 2);
    }
}
