//! The rule that keeps a canary or rolls it back, and that calls a watch measurement a
//! regression. Written down once, here, and printed by `apply --help`, `watch --help` and the
//! report:
//!
//! 1. every SLO of the study is met by the measurement (the study's own grading, `measure::judge`);
//! 2. the objective is not significantly worse than the reference: the ratio measured/reference
//!    has a 95 % CI from a percentile bootstrap over the measurement's requests (each resample
//!    recomputes the objective from resampled requests; the wall time scales with their summed
//!    duration, so rates vary too), and the
//!    measurement is "worse" only when that CI lies wholly on the worse side of 1 **and** the
//!    ratio is worse by at least 3 % (`measure::ratio::MIN_EFFECT`, as `compare` calls it; the
//!    operator's `--worse-by` when given) and by at least twice the study's run-to-run noise
//!    ([`Reference::min_effect`]).
//!
//! The reference is what the study measured for the configuration, the mean over its runs
//! (apply), or the canary of the deployment in place (watch). It is taken as a fixed number. The
//! bootstrap resamples requests within the one live run, so it cannot see how much whole runs of
//! one configuration vary (a restart, a neighbour's load): on this machine ±10 % and more. The
//! study measured that spread when it re-measured points (`trial::noise`); a change within twice
//! it is what a second run of the same configuration could show, and is not called worse.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::measure::probe::ServerSide;
use crate::measure::ratio::{self, Better, RatioCi};
use crate::measure::{self, RequestSlo, Sample, Summary, Verdict, goal::Objective, goal::Slo};

/// The rule in one paragraph, for help texts and the report.
pub const RULE: &str = "kept only if every SLO of the study is met and the objective is not significantly \
worse than the reference (the study's figure for the configuration, the mean over its runs; for watch, the \
deployment's canary): worse means the 95 % bootstrap CI of measured/reference (requests resampled, 2000 times) \
lies wholly on the worse side of 1 and the ratio is worse by at least 3 % (or --worse-by) and by at least twice \
the run-to-run noise the study measured (the bootstrap sees one run only). The reference counts as exact.";

/// What a live measurement is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// The objective it must not be significantly worse than.
    pub objective: f64,
    /// The study's run-to-run noise (relative SD, `trial::noise`), when it re-measured a point.
    pub noise: Option<f64>,
    /// The operator's least relative change called worse whatever the noise (`--worse-by`: a
    /// machine whose load the study did not see); `None`: 3 %.
    pub worse_by: Option<f64>,
}

impl Reference {
    /// The study's figure for `t`'s configuration (the mean over its runs) and the study's noise.
    pub fn of_trial(trials: &[crate::trial::Trial], t: &crate::trial::Trial) -> Reference {
        Reference::with_study_noise(trials, crate::trial::figure_of(trials, t).unwrap_or(f64::NAN))
    }

    /// `objective`, with the noise the study's trials measured.
    pub fn with_study_noise(trials: &[crate::trial::Trial], objective: f64) -> Reference {
        let noise = crate::trial::noise(trials).map(|n| n.relative_sd);
        Reference { objective, noise, worse_by: None }
    }

    /// This reference with the operator's least change called worse (`--worse-by`), when given.
    pub fn worse_by(self, worse_by: Option<f64>) -> Reference {
        Reference { worse_by: worse_by.or(self.worse_by), ..self }
    }

    /// The least change called worse whatever the noise: `--worse-by`, else 3 %.
    fn floor(&self) -> f64 {
        self.worse_by.unwrap_or(ratio::MIN_EFFECT)
    }

    /// The smallest change called worse: the floor (3 %, or `--worse-by`), or twice the study's
    /// noise when that is more.
    pub fn min_effect(&self) -> f64 {
        self.floor().max(2.0 * self.noise.unwrap_or(0.0))
    }

    /// Which of the two set [`Reference::min_effect`], for the reason text.
    fn min_effect_source(&self) -> String {
        match (self.noise, self.worse_by) {
            (Some(n), _) if 2.0 * n > self.floor() => format!(": twice the study's ±{:.1} % noise", n * 100.0),
            (_, Some(_)) => ": --worse-by".to_string(),
            _ => String::new(),
        }
    }
}

/// What a measurement is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Call {
    /// Every SLO met and the objective not significantly worse.
    Holds,
    /// An SLO of the study was missed.
    MissedSlo,
    /// The objective is significantly worse than the reference.
    Worse,
}

/// A measurement judged against the study's SLOs and a reference objective.
#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    pub call: Call,
    /// The measured objective.
    pub objective: f64,
    /// The objective it is compared with (`NaN` when there is none).
    pub reference: f64,
    /// The smallest change that was called worse (0.03 = 3 %; [`Reference::min_effect`]).
    pub min_effect: f64,
    /// measured/reference with its bootstrap 95 % CI.
    pub ci: RatioCi,
    /// Summed graded SLO violation (0 = every SLO met).
    pub violation: f64,
    /// The measurement's figures.
    #[serde(skip)]
    pub summary: Summary,
    /// Why, in one line.
    pub reason: String,
}

/// Bootstrap resamples of the objective.
const RESAMPLES: usize = 2000;

/// The figures of a measurement: the client's requests over `wall`, with the probe's side.
pub fn summarize(samples: &[Sample], wall: Duration, server: &ServerSide, request_slo: &RequestSlo) -> Summary {
    let parts = measure::TrialParts {
        samples,
        wall,
        server: server.clone(),
        capacity: None,
        quality: None,
        model_memory: None,
    };
    measure::summarize_trial(parts, request_slo)
}

/// Judge a measurement (`samples` over `wall`) by [`RULE`] against `reference`.
pub fn judge(
    samples: &[Sample],
    wall: Duration,
    server: &ServerSide,
    goal: (&Objective, &[Slo], &RequestSlo),
    reference: Reference,
    seed: u64,
) -> Judgement {
    let (objective, slos, request_slo) = goal;
    let summary = summarize(samples, wall, server, request_slo);
    let verdict = measure::judge(&summary, objective, slos);
    let ci = bootstrap(samples, wall, server, goal, reference.objective, seed);
    let better = objective.metric.better().unwrap_or(Better::Higher);
    let (call, reason) = call(&verdict, &ci, better, reference);
    Judgement {
        call,
        objective: verdict.objective,
        reference: reference.objective,
        min_effect: reference.min_effect(),
        ci,
        violation: verdict.violation,
        summary,
        reason,
    }
}

fn call(verdict: &Verdict, ci: &RatioCi, better: Better, reference: Reference) -> (Call, String) {
    let shown = format!(
        "objective {:.4} vs {:.4} (ratio {:.3}, 95 % CI {:.3}..{:.3}; worse means by {:.0} % or more{})",
        verdict.objective,
        reference.objective,
        ci.ratio,
        ci.lo,
        ci.hi,
        reference.min_effect() * 100.0,
        reference.min_effect_source(),
    );
    if !verdict.is_feasible() {
        let missed: Vec<String> = verdict
            .violations
            .iter()
            .filter(|(_, v)| **v > 0.0)
            .map(|(k, v)| format!("{k} (off by {:.0} %)", v * 100.0))
            .collect();
        return (Call::MissedSlo, format!("missed SLO: {}; {shown}", missed.join(", ")));
    }
    match ci.call_with(better, reference.min_effect()) {
        ratio::Call::Slower => (Call::Worse, format!("significantly worse: {shown}")),
        _ => (Call::Holds, format!("every SLO met, not significantly worse: {shown}")),
    }
}

/// Percentile bootstrap of objective/reference over the measured requests (warm-up excluded),
/// seeded so a decision can be reproduced from the stored samples. A resample's wall time is the
/// run's, scaled by its summed request time over the run's (closed loop: wall ≈ Σ e2e /
/// concurrency): rates (tokens/s, goodput) then carry the spread of request durations instead of
/// a fixed wall time that would make their interval a point.
fn bootstrap(
    samples: &[Sample],
    wall: Duration,
    server: &ServerSide,
    goal: (&Objective, &[Slo], &RequestSlo),
    reference: f64,
    seed: u64,
) -> RatioCi {
    let (objective, _, request_slo) = goal;
    let value =
        |s: &[Sample], w: Duration| objective.metric.value(&summarize(s, w, server, request_slo)).unwrap_or(f64::NAN);
    let measured: Vec<Sample> = samples.iter().filter(|s| !s.is_warmup).cloned().collect();
    let point = value(&measured, wall) / reference;
    let busy = |s: &[Sample]| s.iter().map(|x| x.e2e().as_secs_f64()).sum::<f64>();
    let total = busy(&measured);
    if measured.is_empty() || !point.is_finite() || total <= 0.0 {
        return RatioCi { ratio: point, lo: f64::NAN, hi: f64::NAN };
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .filter_map(|_| {
            let draw: Vec<Sample> =
                (0..measured.len()).map(|_| measured[rng.random_range(0..measured.len())].clone()).collect();
            let w = Duration::try_from_secs_f64(wall.as_secs_f64() * busy(&draw) / total).ok()?;
            Some(value(&draw, w) / reference)
        })
        .filter(|r| r.is_finite())
        .collect();
    ratios.sort_by(f64::total_cmp);
    RatioCi { ratio: point, lo: measure::percentile(&ratios, 2.5), hi: measure::percentile(&ratios, 97.5) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Metric;
    use crate::space::Direction;

    /// A request sent at `at` ms whose first token came `ttft` ms later and that streamed 10
    /// tokens over 90 ms more.
    fn sample(at: u64, ttft: u64) -> Sample {
        let ms = Duration::from_millis;
        Sample {
            prompt_index: 0,
            is_warmup: false,
            sent: ms(at),
            first_token: Some(ms(at + ttft)),
            end: ms(at + ttft + 90),
            chunk_gaps: vec![ms(10); 9],
            output_tokens: 10,
            prompt_tokens: None,
            status: 200,
            error: None,
            error_message: None,
            server: None,
        }
    }

    fn goal(limit_ms: f64) -> (Objective, Vec<Slo>) {
        let objective = Objective { metric: Metric::OutputTokPerS, direction: Direction::Maximize };
        (objective, vec![Slo { metric: Metric::TtftP95Ms, is_upper_bound: true, limit: limit_ms }])
    }

    /// A reference from a study that re-measured nothing.
    fn exact(objective: f64) -> Reference {
        Reference { objective, noise: None, worse_by: None }
    }

    fn run(n: u64, ttft: u64) -> Vec<Sample> {
        (0..n).map(|i| sample(i * 100, ttft + i % 3)).collect()
    }

    /// 20 requests of 10 tokens over 2 s (100 tok/s, TTFT about 50 ms, every SLO met) judged
    /// against `reference`.
    fn judge_100_tok_s(reference: Reference) -> Judgement {
        let (objective, slos) = goal(5000.0);
        let rs = RequestSlo::from_slos(&slos);
        judge(&run(20, 50), Duration::from_secs(2), &ServerSide::default(), (&objective, &slos, &rs), reference, 1)
    }

    #[test]
    fn steady_figures_hold_and_a_missed_slo_is_named() {
        let (objective, slos) = goal(500.0);
        let rs = RequestSlo::from_slos(&slos);
        let samples = run(20, 50);
        let wall = Duration::from_secs(2);
        // 200 tokens over 2 s = 100 tok/s; equal to the reference: holds, CI brackets 1.
        let j = judge(&samples, wall, &ServerSide::default(), (&objective, &slos, &rs), exact(100.0), 1);
        assert_eq!(j.call, Call::Holds, "{}", j.reason);
        assert!((j.ci.ratio - 1.0).abs() < 1e-9 && j.ci.lo <= 1.0 && j.ci.hi >= 1.0, "{:?}", j.ci);
        let (objective, slos) = goal(20.0);
        let j = judge(&samples, wall, &ServerSide::default(), (&objective, &slos, &rs), exact(100.0), 1);
        assert_eq!(j.call, Call::MissedSlo);
        assert!(j.reason.starts_with("missed SLO: ttft_p95_ms (off by"), "{}", j.reason);
    }

    #[test]
    fn a_clearly_lower_objective_is_worse_and_a_small_dip_is_not() {
        // Measured 100 tok/s against a study figure of 150: ratio 0.667.
        let j = judge_100_tok_s(exact(150.0));
        assert_eq!(j.call, Call::Worse, "{}", j.reason);
        assert!(j.ci.hi < 1.0, "{:?}", j.ci);
        // 2 % below: under the 3 % minimum effect, whatever the CI says.
        let j = judge_100_tok_s(exact(102.0));
        assert_eq!(j.call, Call::Holds, "{}", j.reason);
    }

    #[test]
    fn a_drop_within_twice_the_study_noise_is_not_called_worse() {
        let at = |noise| Reference { objective: 150.0, noise: Some(noise), worse_by: None };
        // 100 tok/s against 150: 33 % worse. With ±10 % run-to-run noise that is past twice it.
        let j = judge_100_tok_s(at(0.10));
        assert_eq!(j.call, Call::Worse, "{}", j.reason);
        assert!(
            (j.min_effect - 0.20).abs() < 1e-12 && j.reason.contains("twice the study's ±10.0 % noise"),
            "{}",
            j.reason
        );
        // With ±20 % a second run of the same configuration could show as much: it holds.
        let j = judge_100_tok_s(at(0.20));
        assert_eq!(j.call, Call::Holds, "{}", j.reason);
        // A quiet study keeps the 3 % floor.
        assert_eq!(at(0.01).min_effect(), crate::measure::ratio::MIN_EFFECT);
    }

    #[test]
    fn the_operator_s_worse_by_raises_the_floor_and_is_named() {
        // 100 tok/s against 150 (33 % worse) is worse at 3 %, and holds under --worse-by 50 %.
        assert_eq!(judge_100_tok_s(exact(150.0)).call, Call::Worse);
        let lenient = exact(150.0).worse_by(Some(0.5));
        let j = judge_100_tok_s(lenient);
        assert_eq!(j.call, Call::Holds, "{}", j.reason);
        assert!(j.reason.contains("worse means by 50 % or more: --worse-by"), "{}", j.reason);
        // The study's noise still wins when twice it is more; none given keeps the 3 %.
        let noisy = Reference { noise: Some(0.4), ..lenient };
        assert!((noisy.min_effect() - 0.8).abs() < 1e-12);
        assert_eq!(exact(150.0).worse_by(None).min_effect(), crate::measure::ratio::MIN_EFFECT);
    }

    #[test]
    fn a_noisy_measurement_gets_a_wide_interval() {
        let (_, slos) = goal(5000.0);
        let objective = Objective { metric: Metric::TtftP50Ms, direction: Direction::Minimize };
        let rs = RequestSlo::from_slos(&slos);
        let mut samples = run(10, 50);
        samples.extend((10..20).map(|i| sample(i * 100, 400)));
        let j =
            judge(&samples, Duration::from_secs(2), &ServerSide::default(), (&objective, &slos, &rs), exact(60.0), 3);
        // Half the requests at ~50 ms, half at 400 ms: the median's CI spans both clusters.
        assert!(j.ci.lo < 1.2 && j.ci.hi > 5.0, "{:?}", j.ci);
        assert_eq!(j.call, Call::Holds, "not shown to be worse: {}", j.reason);
    }
}
