//! Re-validation of a study's winner against the default configuration (noise protocol,
//! `reference/search-and-measurement.md` §5.1): the top few trials and the default are measured
//! again on fresh server starts, interleaved round by round and counterbalanced (default, top 1,
//! top 2, then top 2, top 1, default, ...) so drift and order effects hit every arm alike. The winner is the candidate that missed its SLOs in the
//! fewest re-measured runs, then the one with the best lower confidence bound
//! (mean − 1.96·s/√k), and its ratio to the default comes with a bootstrap 95 % confidence
//! interval over the runs.

use anyhow::bail;
use tracing::info;

use super::remeasure::{self, Arm};
use crate::measure::ratio;
use crate::shutdown::Shutdown;
use crate::space::{Candidate, Direction, Space};
use crate::store::Validation;
use crate::trial::Trial;

/// Lower confidence bound of the mean for a maximised objective (upper bound, negated, for a
/// minimised one), so that larger is better either way: `±(mean ∓ 1.96·s/√k)`.
pub fn confidence_bound(values: &[f64], direction: Direction) -> f64 {
    let k = values.len() as f64;
    let m = ratio::mean(values);
    let sd =
        if values.len() > 1 { (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (k - 1.0)).sqrt() } else { 0.0 };
    match direction {
        Direction::Maximize => m - 1.96 * sd / k.sqrt(),
        Direction::Minimize => -(m + 1.96 * sd / k.sqrt()),
    }
}

/// The winning arm: fewest runs that missed an SLO, then the best confidence bound; ties go to
/// the earlier arm (the better one as first observed). `values[i]` are arm i's objectives and
/// `misses[i]` its runs that missed an SLO.
pub fn pick_winner(values: &[Vec<f64>], misses: &[usize], direction: Direction) -> usize {
    (0..values.len())
        .min_by(|&a, &b| {
            misses[a]
                .cmp(&misses[b])
                .then(confidence_bound(&values[b], direction).total_cmp(&confidence_bound(&values[a], direction)))
                .then(a.cmp(&b))
        })
        .expect("at least one arm")
}

/// Measure `baseline` and each of `top` (best first) once per round, `rounds` rounds, on fresh
/// server starts; name the winner (fewest SLO misses, then the confidence bound) and compare it
/// with the baseline.
pub async fn revalidate(
    space: &Space,
    top: &[&Trial],
    baseline: &Candidate,
    rounds: u32,
    shutdown: &Shutdown,
) -> anyhow::Result<Validation> {
    if top.is_empty() {
        bail!("no candidate to re-validate");
    }
    if rounds < 3 {
        bail!("re-validation needs at least 3 pairs, got '{rounds}'");
    }
    let arms: Vec<Arm<'_>> = std::iter::once(Arm { label: "default".into(), candidate: baseline })
        .chain(top.iter().map(|t| Arm { label: format!("trial {}", t.number), candidate: &t.params }))
        .collect();
    let mut runs = remeasure::interleaved(space, &arms, rounds, shutdown, &mut |_| {}).await?;
    let default_values: Vec<f64> = runs.remove(0).iter().map(|r| r.verdict.objective).collect();
    let values: Vec<Vec<f64>> = runs.iter().map(|r| r.iter().map(|run| run.verdict.objective).collect()).collect();
    let misses: Vec<usize> = runs.iter().map(|r| r.iter().filter(|run| !run.verdict.is_feasible()).count()).collect();
    let direction = space.objective.direction;
    for ((t, v), m) in top.iter().zip(&values).zip(&misses) {
        let (mean, bound) = (ratio::mean(v), confidence_bound(v, direction));
        info!(trial = t.number, mean, bound, missed_slo_runs = m, "re-measured candidate");
    }
    let best = pick_winner(&values, &misses, direction);
    let winner_values = values[best].clone();
    let one_per_run = |v: &[f64]| v.iter().map(|x| vec![*x]).collect::<Vec<_>>();
    let ci = ratio::ratio_ci(&one_per_run(&default_values), &one_per_run(&winner_values), ratio::mean, space.seed);
    Ok(Validation {
        winner_number: top[best].number,
        metric: space.objective.metric.name().to_string(),
        baseline: baseline.clone(),
        default_values,
        winner_values,
        ratio: ci.ratio,
        ci_low: ci.lo,
        ci_high: ci.hi,
        created_at_ms: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The winner's ratio uses the one bootstrap of `measure::ratio`, with one value per run.
    #[test]
    fn ratio_ci_brackets_the_ratio_and_is_exact_without_spread() {
        let runs = |v: &[f64]| v.iter().map(|x| vec![*x]).collect::<Vec<_>>();
        let ci = ratio::ratio_ci(&runs(&[2.0, 2.0, 2.0]), &runs(&[3.0, 3.0, 3.0]), ratio::mean, 1);
        assert_eq!((ci.ratio, ci.lo, ci.hi), (1.5, 1.5, 1.5));
        let a = runs(&[10.0, 11.0, 9.0, 10.0]);
        let b = runs(&[12.0, 13.0, 11.0, 12.0]);
        let ci = ratio::ratio_ci(&a, &b, ratio::mean, 7);
        assert!((ci.ratio - 1.2).abs() < 1e-12);
        assert!(ci.lo < ci.ratio && ci.ratio < ci.hi && ci.lo > 1.0 && ci.hi < 1.45, "{ci:?}");
        assert_eq!(ratio::ratio_ci(&a, &b, ratio::mean, 7), ci);
    }

    #[test]
    fn confidence_bound_penalises_spread() {
        // mean 10, s = 2, k = 4: 10 − 1.96·2/2 = 8.04
        let noisy = [8.0, 12.0, 8.0, 12.0];
        assert!(
            (confidence_bound(&noisy, Direction::Maximize) - (10.0 - 1.96 * (16.0f64 / 3.0).sqrt() / 2.0)).abs()
                < 1e-12
        );
        assert_eq!(confidence_bound(&[9.0, 9.0, 9.0], Direction::Maximize), 9.0);
        // a steady 9 beats a noisy 10 by the bound
        assert!(confidence_bound(&[9.0; 4], Direction::Maximize) > confidence_bound(&noisy, Direction::Maximize));
        assert_eq!(confidence_bound(&[5.0, 5.0], Direction::Minimize), -5.0);
    }

    #[test]
    fn the_winner_holds_its_slos_first_then_the_bound() {
        let steady = vec![25.0, 25.5, 25.2];
        let faster_but_missed = vec![27.0, 26.0, 27.5];
        // One SLO miss in three runs loses to a slower arm that met them every time.
        assert_eq!(pick_winner(&[faster_but_missed.clone(), steady.clone()], &[1, 0], Direction::Maximize), 1);
        // With no misses, the bound decides.
        assert_eq!(pick_winner(&[steady.clone(), faster_but_missed.clone()], &[0, 0], Direction::Maximize), 1);
        assert_eq!(pick_winner(&[steady.clone(), steady], &[0, 0], Direction::Maximize), 0, "ties go to the first");
    }
}
