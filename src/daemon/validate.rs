//! Re-validation of a study's winner against the default configuration (noise protocol,
//! `reference/search-and-measurement.md` §5.1): fresh server starts interleaved default,
//! winner, default, winner, ... (so drift hits both arms alike), then the ratio of the mean
//! objectives with a bootstrap 95 % confidence interval over the runs.

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::run_trial;
use crate::backend;
use crate::measure::RequestSlo;
use crate::space::{Candidate, Space};
use crate::store::Validation;
use crate::trial::{Outcome, Trial};
use crate::workload;

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

/// Measure `winner` and `baseline` alternately, `pairs` times each, on fresh server starts.
pub async fn revalidate(
    space: &Space,
    winner: &Trial,
    baseline: &Candidate,
    pairs: u32,
    cancel: &CancellationToken,
) -> anyhow::Result<Validation> {
    if pairs < 3 {
        bail!("re-validation needs at least 3 pairs, got '{pairs}'");
    }
    let backend = backend::from_spec(&space.backend, &space.params);
    let prompts = workload::load_dataset(&space.workload.dataset)?;
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().context("building the HTTP client")?;
    let request_slo = RequestSlo::from_slos(&space.slos);
    let (mut default_values, mut winner_values) = (Vec::new(), Vec::new());
    for pair in 1..=pairs {
        for (arm, candidate) in [("default", baseline), ("winner", &winner.params)] {
            let run = tokio::select! {
                biased;
                _ = cancel.cancelled() => bail!("re-validation interrupted"),
                run = run_trial(space, backend.as_ref(), &client, &prompts, &request_slo, candidate) => run?,
            };
            let value = match run.outcome {
                Outcome::Complete { verdict, .. } | Outcome::Pruned { verdict, .. } => verdict.objective,
                Outcome::Infeasible { class, message } => bail!("the {arm} configuration failed on re-validation ({class}): {message}"),
                Outcome::Interrupted => bail!("re-validation interrupted"),
            };
            info!(pair, arm, value, "re-validation run");
            if arm == "default" { default_values.push(value) } else { winner_values.push(value) }
        }
    }
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
}
