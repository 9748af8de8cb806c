//! A/B comparison statistics: the ratio B/A of a statistic with a bootstrap 95 % CI, and the
//! plain verdict printed by `compare`.
//!
//! The bootstrap is hierarchical (`search-and-measurement.md` §5.1): each resample draws runs
//! with replacement, then requests with replacement within each drawn run, so run-to-run drift
//! (server restarts, a noisy neighbour) widens the interval instead of hiding in it.

use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// Bootstrap resamples per comparison.
pub const RESAMPLES: usize = 2000;
/// Smallest relative change called a difference, even when the CI excludes 1 (§5.1: 3 %).
pub const MIN_EFFECT: f64 = 0.03;

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
}

/// The plain outcome for B relative to A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Call {
    #[serde(rename = "faster")]
    Faster,
    #[serde(rename = "slower")]
    Slower,
    #[serde(rename = "no difference shown")]
    NoDifference,
}

impl Call {
    pub fn as_str(&self) -> &'static str {
        match self {
            Call::Faster => "faster",
            Call::Slower => "slower",
            Call::NoDifference => "no difference shown",
        }
    }
}

/// Ratio B/A with its bootstrap 95 % CI.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RatioCi {
    pub ratio: f64,
    pub lo: f64,
    pub hi: f64,
}

impl RatioCi {
    pub fn covers_one(&self) -> bool {
        self.lo <= 1.0 && 1.0 <= self.hi
    }

    /// Faster/slower only when the CI excludes 1 and the change is at least [`MIN_EFFECT`].
    pub fn call(&self, better: Better) -> Call {
        self.call_with(better, MIN_EFFECT)
    }

    /// [`RatioCi::call`] with another smallest change (a fraction: 0.03 = 3 %).
    pub fn call_with(&self, better: Better, min_effect: f64) -> Call {
        if self.covers_one() || (self.ratio - 1.0).abs() < min_effect || !self.ratio.is_finite() {
            return Call::NoDifference;
        }
        match (better, self.ratio < 1.0) {
            (Better::Lower, true) | (Better::Higher, false) => Call::Faster,
            _ => Call::Slower,
        }
    }
}

/// Median (linear interpolation); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    super::percentile(&v, 50.0)
}

/// Mean; NaN when empty.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn resample(runs: &[Vec<f64>], rng: &mut rand::rngs::StdRng) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..runs.len() {
        let run = &runs[rng.random_range(0..runs.len())];
        for _ in 0..run.len() {
            out.push(run[rng.random_range(0..run.len())]);
        }
    }
    out
}

/// `stat(B) / stat(A)` over pooled values, with a hierarchical percentile-bootstrap 95 % CI.
/// `a` and `b` hold one value list per run. Seeded, so a report can be reproduced.
pub fn ratio_ci(a: &[Vec<f64>], b: &[Vec<f64>], stat: fn(&[f64]) -> f64, seed: u64) -> RatioCi {
    let pooled = |runs: &[Vec<f64>]| runs.iter().flatten().copied().collect::<Vec<f64>>();
    let ratio = stat(&pooled(b)) / stat(&pooled(a));
    if a.iter().all(Vec::is_empty) || b.iter().all(Vec::is_empty) {
        return RatioCi { ratio: f64::NAN, lo: f64::NAN, hi: f64::NAN };
    }
    let a: Vec<Vec<f64>> = a.iter().filter(|r| !r.is_empty()).cloned().collect();
    let b: Vec<Vec<f64>> = b.iter().filter(|r| !r.is_empty()).cloned().collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| stat(&resample(&b, &mut rng)) / stat(&resample(&a, &mut rng)))
        .filter(|r| r.is_finite())
        .collect();
    ratios.sort_by(f64::total_cmp);
    RatioCi { ratio, lo: super::percentile(&ratios, 2.5), hi: super::percentile(&ratios, 97.5) }
}

/// The 0.975 quantile of Student's t with `freedom` degrees of freedom (two-sided 95 %).
fn t975(freedom: usize) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    StudentsT::new(0.0, 1.0, freedom as f64).expect("freedom is at least 1").inverse_cdf(0.975)
}

/// Ratio of per-run values from interleaved pairs (`a[i]` and `b[i]` ran in the same round, in either order): the
/// geometric mean of the pair ratios b/a, with a Student-t 95 % CI on their logs. Used for
/// figures that exist once per run (throughput), where a bootstrap over two or three runs
/// cannot show its own uncertainty. One pair gives the interval (0, ∞): nothing is shown.
pub fn paired_ratio_ci(a: &[f64], b: &[f64]) -> RatioCi {
    let logs: Vec<f64> = a.iter().zip(b).filter(|(x, y)| **x > 0.0 && **y > 0.0).map(|(x, y)| (y / x).ln()).collect();
    let k = logs.len();
    if k == 0 {
        return RatioCi { ratio: f64::NAN, lo: f64::NAN, hi: f64::NAN };
    }
    let m = mean(&logs);
    if k == 1 {
        return RatioCi { ratio: m.exp(), lo: 0.0, hi: f64::INFINITY };
    }
    let sd = (logs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt();
    let t = t975(k - 1);
    let half = t * sd / (k as f64).sqrt();
    RatioCi { ratio: m.exp(), lo: (m - half).exp(), hi: (m + half).exp() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_values_give_an_exact_interval() {
        let a = vec![vec![10.0; 5], vec![10.0; 3]];
        let b = vec![vec![20.0; 4], vec![20.0; 4]];
        let r = ratio_ci(&a, &b, median, 1);
        assert_eq!((r.ratio, r.lo, r.hi), (2.0, 2.0, 2.0));
        assert_eq!(r.call(Better::Lower), Call::Slower);
        assert_eq!(r.call(Better::Higher), Call::Faster);
    }

    #[test]
    fn same_distribution_covers_one() {
        let run = |k: f64| (0..20).map(|i| 100.0 + k + f64::from(i) * 3.0).collect::<Vec<_>>();
        let a = vec![run(0.0), run(2.0)];
        let b = vec![run(1.0), run(-1.0)];
        let r = ratio_ci(&a, &b, median, 7);
        assert!(r.covers_one(), "{r:?}");
        assert_eq!(r.call(Better::Lower), Call::NoDifference);
    }

    #[test]
    fn paired_ratio_exact_values() {
        let r = paired_ratio_ci(&[10.0, 10.0], &[20.0, 20.0]);
        assert!((r.ratio - 2.0).abs() < 1e-12 && (r.lo - 2.0).abs() < 1e-12 && (r.hi - 2.0).abs() < 1e-12, "{r:?}");
        // Pair ratios 1.1 and 0.9: log mean -0.005025, se 0.100335, t(1) = 12.706.
        let r = paired_ratio_ci(&[10.0, 10.0], &[11.0, 9.0]);
        assert!((r.ratio - 0.994987).abs() < 1e-6, "{r:?}");
        assert!((r.lo - (-0.005025 - 12.706 * 0.100335f64).exp()).abs() < 1e-3, "{r:?}");
        assert!(r.covers_one());
        let one = paired_ratio_ci(&[10.0], &[30.0]);
        assert_eq!((one.lo, one.hi), (0.0, f64::INFINITY));
        assert_eq!(one.call(Better::Higher), Call::NoDifference);
    }

    #[test]
    fn t_quantiles_match_the_printed_table() {
        // Two-sided 95 % values as printed in t tables (3 decimals).
        for (freedom, t) in [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042), (60, 2.000), (120, 1.980)] {
            assert!((t975(freedom) - t).abs() < 5e-4, "t975({freedom}) = {}", t975(freedom));
        }
    }

    #[test]
    fn small_effects_are_not_called() {
        let r = RatioCi { ratio: 1.02, lo: 1.01, hi: 1.03 };
        assert_eq!(r.call(Better::Higher), Call::NoDifference);
        let r = RatioCi { ratio: 0.8, lo: 0.7, hi: 0.9 };
        assert_eq!(r.call(Better::Lower), Call::Faster);
    }
}
