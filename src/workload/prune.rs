//! Early abort: stop a trial's workload as soon as its p95 TTFT SLO is certain to fail.
//!
//! The measured phase runs closed-loop like `workload::run` (same schedule, same `send`), and
//! counts finished requests whose TTFT is over the SLO's limit. With the percentile rule of
//! `measure::percentile` (linear interpolation), p95 of n values is at least the value at rank
//! ⌊0.95·(n−1)⌋, so once `n − ⌊0.95·(n−1)⌋` requests (a little over 5 % of the plan) are over
//! the limit the p95 must be too, whatever the rest do. Then the run stops, in-flight requests
//! are dropped, and the trial is `pruned` with the partial samples (the sampler still learns
//! from it). Warm-up requests never count.

use std::time::Duration;

use crate::measure::Metric;
use crate::space::{Slo, WorkloadSpec};
use crate::workload::{self, Prompt, Target};

/// The limit of an upper-bound `ttft_p95_ms` SLO, the one SLO a workload can prune on.
pub fn ttft_p95_limit_ms(slos: &[Slo]) -> Option<f64> {
    slos.iter().find(|s| s.metric == Metric::TtftP95Ms && s.is_upper_bound).map(|s| s.limit)
}

/// Requests over the limit that make p95 over the limit for `planned` requests.
pub fn misses_to_fail_p95(planned: usize) -> usize {
    if planned <= 1 {
        return 1;
    }
    planned - (0.95 * (planned - 1) as f64).floor() as usize
}

/// `workload::run` with early abort on the p95 TTFT limit (`None`: never abort). The bool
/// says whether the run was cut short.
pub async fn run(
    client: &reqwest::Client,
    target: &Target,
    prompts: &[Prompt],
    spec: &WorkloadSpec,
    ttft_limit_ms: Option<f64>,
) -> (workload::Run, bool) {
    let abort = ttft_limit_ms.map(|ms| workload::Abort {
        ttft_limit: Duration::from_micros((ms * 1000.0) as u64),
        misses: misses_to_fail_p95(spec.requests as usize),
    });
    workload::run_until(client, target, prompts, spec, abort).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::percentile;

    #[test]
    fn misses_to_fail_p95_is_the_exact_threshold() {
        assert_eq!(misses_to_fail_p95(12), 2);
        assert_eq!(misses_to_fail_p95(48), 4);
        assert_eq!(misses_to_fail_p95(200), 11);
        // check against the percentile rule: k misses of n fail p95, k − 1 need not
        for n in 2..300usize {
            let k = misses_to_fail_p95(n);
            let with = |misses: usize| {
                let mut v: Vec<f64> = (0..n).map(|i| if i >= n - misses { 1.0 + 1e-9 } else { 0.0 }).collect();
                v.sort_by(f64::total_cmp);
                percentile(&v, 95.0)
            };
            assert!(with(k) > 1.0, "n={n} k={k}");
            assert!(with(k - 1) <= 1.0 || k == 1, "n={n} k={k}");
        }
    }
}
