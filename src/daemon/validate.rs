//! Re-validation of a study's winner against the default configuration (noise protocol,
//! `reference/search-and-measurement.md` §5.1): the top few trials and the default are measured
//! again on fresh server starts, interleaved round by round (default, top 1, top 2, ..., default,
//! ...) so drift hits every arm alike. The winner is the candidate that missed its SLOs in the
//! fewest re-measured runs, then the one with the best lower confidence bound
//! (mean − 1.96·s/√k), and its ratio to the default comes with a bootstrap 95 % confidence
//! interval over the runs.

use anyhow::bail;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::run_trial;
use crate::backend;
use crate::space::{Candidate, Direction, Space};
use crate::store::Validation;
use crate::trial::{Outcome, Trial};

/// Bootstrap resamples for the ratio's confidence interval.
pub const RESAMPLES: usize = 10_000;

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// `mean(b) / mean(a)` and its bootstrap 95 % percentile interval: each resample draws both
/// arms' runs with replacement. Deterministic per `seed`.
pub fn ratio_ci(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> (f64, f64, f64) {
    let ratio = mean(b) / mean(a);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut draws: Vec<f64> = (0..resamples)
        .map(|_| {
            let ma = (0..a.len()).map(|_| a[rng.random_range(0..a.len())]).sum::<f64>() / a.len() as f64;
            let mb = (0..b.len()).map(|_| b[rng.random_range(0..b.len())]).sum::<f64>() / b.len() as f64;
            mb / ma
        })
        .collect();
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    (ratio, at(0.025), at(0.975))
}

/// Lower confidence bound of the mean for a maximised objective (upper bound, negated, for a
/// minimised one), so that larger is better either way: `±(mean ∓ 1.96·s/√k)`.
pub fn confidence_bound(values: &[f64], direction: Direction) -> f64 {
    let k = values.len() as f64;
    let m = mean(values);
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
/// server starts; name the winner by confidence bound and compare it with the baseline.
pub async fn revalidate(
    space: &Space,
    top: &[&Trial],
    baseline: &Candidate,
    rounds: u32,
    cancel: &CancellationToken,
) -> anyhow::Result<Validation> {
    let pairs = rounds;
    if top.is_empty() {
        bail!("no candidate to re-validate");
    }
    if pairs < 3 {
        bail!("re-validation needs at least 3 pairs, got '{pairs}'");
    }
    let backend = backend::from_spec(&space.backend, &space.params);
    let shutdown = super::Shutdown { graceful: cancel.clone(), now: CancellationToken::new() };
    let bench = super::Bench::new(space, backend.as_ref(), &shutdown)?;
    let mut default_values = Vec::new();
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); top.len()];
    let mut misses = vec![0usize; top.len()];
    for pair in 1..=pairs {
        let arms = std::iter::once((None, baseline)).chain(top.iter().enumerate().map(|(i, t)| (Some(i), &t.params)));
        for (arm_index, candidate) in arms {
            let arm = if arm_index.is_some() { "candidate" } else { "default" };
            // A fresh server start for every run.
            let mut session = super::Session::fresh();
            let run = tokio::select! {
                biased;
                _ = cancel.cancelled() => bail!("re-validation interrupted"),
                run = run_trial(&bench, &mut session, None, candidate) => run,
            };
            session.close(&shutdown).await;
            let run = run?;
            let (value, missed) = match run.outcome {
                Outcome::Complete { verdict, .. } | Outcome::Pruned { verdict, .. } => {
                    (verdict.objective, !verdict.is_feasible())
                }
                Outcome::Infeasible { class, message } => {
                    bail!("the {arm} configuration failed on re-validation ({class}): {message}")
                }
                Outcome::Interrupted => bail!("re-validation interrupted"),
            };
            info!(pair, arm, value, missed_slo = missed, "re-validation run");
            match arm_index {
                Some(i) => {
                    values[i].push(value);
                    misses[i] += missed as usize;
                }
                None => default_values.push(value),
            }
        }
    }
    let direction = space.objective.direction;
    let best = pick_winner(&values, &misses, direction);
    for ((t, v), m) in top.iter().zip(&values).zip(&misses) {
        info!(
            trial = t.number,
            mean = mean(v),
            bound = confidence_bound(v, direction),
            missed_slo_runs = m,
            "re-measured candidate"
        );
    }
    let winner = top[best];
    let winner_values = values.swap_remove(best);
    let (ratio, ci_low, ci_high) = ratio_ci(&default_values, &winner_values, RESAMPLES, space.seed);
    Ok(Validation {
        winner_number: winner.number,
        metric: space.objective.metric.clone(),
        baseline: baseline.clone(),
        default_values,
        winner_values,
        ratio,
        ci_low,
        ci_high,
        created_at_ms: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_ci_brackets_the_ratio_and_is_exact_without_spread() {
        let (r, lo, hi) = ratio_ci(&[2.0, 2.0, 2.0], &[3.0, 3.0, 3.0], 1000, 1);
        assert_eq!((r, lo, hi), (1.5, 1.5, 1.5));
        let a = [10.0, 11.0, 9.0, 10.0];
        let b = [12.0, 13.0, 11.0, 12.0];
        let (r, lo, hi) = ratio_ci(&a, &b, RESAMPLES, 7);
        assert_eq!(r, 1.2);
        assert!(lo < r && r < hi && lo > 1.0 && hi < 1.45, "{lo} {hi}");
        assert_eq!(ratio_ci(&a, &b, RESAMPLES, 7), (r, lo, hi));
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
