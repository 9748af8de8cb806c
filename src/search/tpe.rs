//! Constrained, multivariate TPE (Tree-structured Parzen Estimator), the default strategy.
//!
//! Follows Optuna 5.0's sampler (`optuna/samplers/_tpe/`, notes in
//! `reference/search-and-measurement.md` §3.1–3.2):
//! - 10 startup trials: the space's default candidate first, then its one-parameter neighbours
//!   in random order (the knob-by-knob probe an operator starts with; the reason is below),
//!   then random draws if the neighbours run out;
//! - the finished trials split into a good group of `min(⌈0.1·n⌉, 25)` and a bad group;
//!   feasible trials rank by objective, then SLO-missing, pruned and infeasible ones by graded
//!   violation (never dropped: a crash teaches the sampler where not to go);
//! - running trials go to the bad group (constant liar);
//! - each group is a mixture of product kernels (multivariate) plus a prior kernel, with the
//!   neighbour-gap bandwidth, the "magic clip", truncated (and discretised) normals and
//!   categorical kernels;
//! - 24 candidates drawn from the good mixture l, the argmax of `log l − log g` wins; among
//!   near-ties the candidate that keeps the running server (differs only in per-request
//!   options) is preferred.
//!
//! The startup differs from Optuna's (all random after the default). On the recorded llama.cpp
//! landscapes the best point is a knob or two from a sensible default, and 9 random draws spent
//! there lose to a local search that starts at the default; probing the neighbours first
//! keeps tpe's global model for the rest. `scripts/bench-search` runs each landscape from the
//! space's default and again from a random default per seed, which shows how much of the gain
//! comes from where the default sits.
//!
//! The sampler is hand-written (no TPE crate has constraints, pending trials and a
//! multivariate kernel together); its maths is pure and unit-tested here.

use std::collections::{BTreeMap, HashSet};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use statrs::function::erf::erfc;

use super::encode::{Dim, Encoding};
use super::{Strategy, sample_value};
use crate::space::{Apply, Candidate, Direction, Space};
use crate::trial::{Trial, TrialState};

/// Trials sampled at random (after the default) before the model takes over.
pub const STARTUP_TRIALS: usize = 10;
/// Candidates drawn from l per proposal.
pub const EI_CANDIDATES: usize = 24;
/// Weight of the prior kernel in both mixtures.
const PRIOR_WEIGHT: f64 = 1.0;
/// Score gap (in log l/g) within which a server-reusing candidate beats the argmax.
const REUSE_TOLERANCE: f64 = 0.1;

/// Size of the good group for `n` trials: `min(⌈0.1·n⌉, 25)` (Optuna's single-objective γ).
pub fn n_below(n: usize) -> usize {
    (n as f64 * 0.1).ceil().min(25.0) as usize
}

/// Optuna's `default_weights`: 1 for the newest 25 trials, a linear ramp from 1/n up to 1
/// over the older ones (oldest first).
pub fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                1.0 / n as f64
            } else {
                1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

/// Standard normal mass in `[a, b]`, computed on the side of the tail that keeps precision.
pub fn normal_mass(a: f64, b: f64) -> f64 {
    let s = std::f64::consts::SQRT_2;
    let m = if a >= 0.0 {
        0.5 * (erfc(a / s) - erfc(b / s))
    } else if b <= 0.0 {
        0.5 * (erfc(-b / s) - erfc(-a / s))
    } else {
        1.0 - 0.5 * erfc(-a / s) - 0.5 * erfc(b / s)
    };
    m.max(1e-300)
}

/// Kernels of one dimension; index k runs over observations, the prior kernel last.
#[derive(Debug, Clone)]
enum DimKernels {
    Num { mu: Vec<f64>, sigma: Vec<f64>, lo: f64, hi: f64, discrete: bool },
    Cat { log_p: Vec<Vec<f64>> },
}

/// A mixture of product kernels (Parzen estimator) over encoded points.
#[derive(Debug, Clone)]
pub struct Parzen {
    log_w: Vec<f64>,
    dims: Vec<DimKernels>,
}

/// Bandwidths by the neighbour-gap rule: each sorted observation gets the larger of the gaps to
/// its neighbours (bounds count as neighbours; the outermost use only their inner gap when there
/// are at least two), clipped to `[(hi−lo)/min(100, 1+kernels), hi−lo]`.
pub fn bandwidths(mus: &[f64], lo: f64, hi: f64) -> Vec<f64> {
    let n = mus.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
    let mut ends = Vec::with_capacity(n + 2);
    ends.push(lo);
    ends.extend(order.iter().map(|&i| mus[i]));
    ends.push(hi);
    let mut sorted: Vec<f64> = (0..n).map(|i| (ends[i + 1] - ends[i]).max(ends[i + 2] - ends[i + 1])).collect();
    if n >= 2 {
        sorted[0] = ends[2] - ends[1];
        sorted[n - 1] = ends[n] - ends[n - 1];
    }
    let kernels = n as f64 + 1.0; // observations + prior
    let min_sigma = (hi - lo) / (100f64).min(1.0 + kernels);
    let mut sigma = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        sigma[i] = sorted[rank].clamp(min_sigma, hi - lo);
    }
    sigma
}

impl Parzen {
    /// Build from encoded observations and their weights, per the rules in the module docs.
    pub fn build(obs: &[Vec<f64>], weights: &[f64], dims: &[Dim]) -> Parzen {
        let n = obs.len();
        let k = n + 1;
        let mut w: Vec<f64> = weights.to_vec();
        w.push(PRIOR_WEIGHT);
        let total: f64 = w.iter().sum();
        let log_w = w.iter().map(|x| (x / total).ln()).collect();
        let kernels = dims
            .iter()
            .enumerate()
            .map(|(d, dim)| match dim {
                Dim::Cat { n: choices } => {
                    let mut log_p = Vec::with_capacity(k);
                    for o in obs {
                        let mut p = vec![PRIOR_WEIGHT / k as f64; *choices];
                        p[o[d] as usize] += 1.0;
                        let s: f64 = p.iter().sum();
                        log_p.push(p.iter().map(|x| (x / s).ln()).collect());
                    }
                    log_p.push(vec![(1.0 / *choices as f64).ln(); *choices]);
                    DimKernels::Cat { log_p }
                }
                _ => {
                    let (lo, hi, discrete) = match dim {
                        Dim::Ordinal { hi } => (-0.5, *hi as f64 + 0.5, true),
                        Dim::Log { lo, hi } => (*lo, *hi, false),
                        Dim::Cat { .. } => unreachable!("handled above"),
                    };
                    let mut mu: Vec<f64> = obs.iter().map(|o| o[d]).collect();
                    let mut sigma = bandwidths(&mu, lo, hi);
                    mu.push(0.5 * (lo + hi));
                    sigma.push(hi - lo);
                    DimKernels::Num { mu, sigma, lo, hi, discrete }
                }
            })
            .collect();
        Parzen { log_w, dims: kernels }
    }

    /// `log p(x)` under the mixture.
    pub fn log_pdf(&self, x: &[f64]) -> f64 {
        let mut terms = self.log_w.clone();
        for (d, dim) in self.dims.iter().enumerate() {
            match dim {
                DimKernels::Cat { log_p } => {
                    for (t, p) in terms.iter_mut().zip(log_p) {
                        *t += p[x[d] as usize];
                    }
                }
                DimKernels::Num { mu, sigma, lo, hi, discrete } => {
                    for ((t, &m), &s) in terms.iter_mut().zip(mu).zip(sigma) {
                        let z = normal_mass((lo - m) / s, (hi - m) / s).ln();
                        *t += if *discrete {
                            normal_mass((x[d] - 0.5 - m) / s, (x[d] + 0.5 - m) / s).ln() - z
                        } else {
                            let u = (x[d] - m) / s;
                            -0.5 * u * u - s.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() - z
                        };
                    }
                }
            }
        }
        let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
    }

    /// Draw one point: a kernel by weight, then each dimension from that kernel.
    pub fn sample(&self, rng: &mut StdRng) -> Vec<f64> {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let mut k = self.log_w.len() - 1;
        for (i, lw) in self.log_w.iter().enumerate() {
            acc += lw.exp();
            if u < acc {
                k = i;
                break;
            }
        }
        self.dims
            .iter()
            .map(|dim| match dim {
                DimKernels::Cat { log_p } => {
                    let u: f64 = rng.random();
                    let mut acc = 0.0;
                    let p = &log_p[k];
                    for (i, lp) in p.iter().enumerate() {
                        acc += lp.exp();
                        if u < acc {
                            return i as f64;
                        }
                    }
                    (p.len() - 1) as f64
                }
                DimKernels::Num { mu, sigma, lo, hi, discrete } => {
                    // Rejection from the normal; the kernel's mean lies inside the bounds and
                    // its width is at most the range, so acceptance is at least about a third.
                    let mut x = None;
                    for _ in 0..64 {
                        let z: f64 = StandardNormal.sample(rng);
                        let v = mu[k] + sigma[k] * z;
                        if (*lo..=*hi).contains(&v) {
                            x = Some(v);
                            break;
                        }
                    }
                    let x = x.unwrap_or_else(|| rng.random_range(*lo..*hi));
                    if *discrete { x.round().clamp(lo + 0.5, hi - 0.5) } else { x }
                }
            })
            .collect()
    }
}

/// A measured point as the sampler keeps it: one observation however often it was measured
/// (issue 16), with the mean over its runs.
#[derive(Debug, Clone)]
struct Observation {
    /// The point's first trial.
    number: i64,
    point: Vec<f64>,
    /// 0 when every run met every SLO, else the mean graded violation over its runs.
    violation: f64,
    /// Mean objective over its runs, as a loss (lower is better); infinite when no run has one.
    loss: f64,
    /// 1 for this study's trials; less for a prior study's (`Strategy::observe_prior`).
    weight: f64,
    /// Runs of the point, and the sums the means come from.
    runs: usize,
    violation_sum: f64,
    loss_sum: f64,
    loss_runs: usize,
}

/// Trial numbers of prior observations are shifted below every trial of the study, so that the
/// age ramp of [`default_weights`] treats them as the oldest.
const PRIOR_NUMBER_OFFSET: i64 = 1 << 40;

/// Optuna's age weights for `obs` (in trial-number order), times each observation's own weight.
fn weights(obs: &[&Observation]) -> Vec<f64> {
    default_weights(obs.len()).iter().zip(obs).map(|(w, o)| w * o.weight).collect()
}

impl Observation {
    fn new(number: i64, point: Vec<f64>, violation: f64, loss: f64, weight: f64) -> Observation {
        let mut o = Observation {
            number,
            point,
            violation: 0.0,
            loss: f64::INFINITY,
            weight,
            runs: 0,
            violation_sum: 0.0,
            loss_sum: 0.0,
            loss_runs: 0,
        };
        o.add_run(violation, loss);
        o
    }

    /// Another run of the same point: the means move, the observation stays one.
    fn add_run(&mut self, violation: f64, loss: f64) {
        self.runs += 1;
        self.violation_sum += violation;
        if loss.is_finite() {
            self.loss_sum += loss;
            self.loss_runs += 1;
        }
        self.violation = self.violation_sum / self.runs as f64;
        self.loss = if self.loss_runs > 0 { self.loss_sum / self.loss_runs as f64 } else { f64::INFINITY };
    }
}

/// The constrained multivariate TPE sampler.
pub struct Tpe {
    rng: StdRng,
    encoding: Encoding,
    direction: Direction,
    observations: Vec<Observation>,
    /// Index into `observations` by candidate JSON: a re-measure joins its point.
    by_key: std::collections::HashMap<String, usize>,
    /// Proposed but not yet observed (running): constant liar.
    pending: BTreeMap<String, Vec<f64>>,
    seen: HashSet<String>,
    /// Params whose change needs no restart (per-request options).
    reusable: HashSet<String>,
    last: Option<Candidate>,
    proposed: usize,
    /// Startup queue: the default's neighbours not yet proposed (next one last).
    neighbours: Vec<Candidate>,
    /// Observed candidates that were refused before launch (trial number 0): not trials, so
    /// they do not use up the startup.
    refused: usize,
}

impl Tpe {
    pub fn new(space: &Space) -> Tpe {
        Tpe {
            rng: StdRng::seed_from_u64(space.seed),
            encoding: Encoding::new(space),
            direction: space.objective.direction,
            observations: Vec::new(),
            by_key: std::collections::HashMap::new(),
            pending: BTreeMap::new(),
            seen: HashSet::new(),
            reusable: space
                .params
                .iter()
                .filter(|p| matches!(p.apply, Apply::Option(_)))
                .map(|p| p.name.clone())
                .collect(),
            last: None,
            proposed: 0,
            neighbours: Vec::new(),
            refused: 0,
        }
    }

    /// The default's one-parameter neighbours, shuffled.
    fn default_neighbours(&mut self, default: &Candidate) -> Vec<Candidate> {
        let Some(x) = self.encoding.encode(default) else { return Vec::new() };
        let mut out: Vec<Candidate> = self.encoding.neighbours(&x).iter().map(|y| self.encoding.decode(y)).collect();
        for i in (1..out.len()).rev() {
            let j = self.rng.random_range(0..=i);
            out.swap(i, j);
        }
        out
    }

    fn next_neighbour(&mut self) -> Option<Candidate> {
        while let Some(c) = self.neighbours.pop() {
            if !self.seen.contains(&c.to_json()) {
                return Some(c);
            }
        }
        None
    }

    fn random_unseen(&mut self, space: &Space) -> Option<Candidate> {
        for _ in 0..1000 {
            let c = Candidate(
                space.params.iter().map(|p| (p.name.clone(), sample_value(&p.domain, &mut self.rng))).collect(),
            );
            if !self.seen.contains(&c.to_json()) {
                return Some(c);
            }
        }
        None
    }

    fn keeps_server(&self, c: &Candidate) -> bool {
        let Some(last) = &self.last else { return false };
        c.0.iter().all(|(k, v)| self.reusable.contains(k) || last.get(k) == Some(v))
    }

    /// The good and the bad group, each in trial-number order. The good group is the best
    /// `n_below(n)` observations, `n` counting running trials: feasible before infeasible, then
    /// by violation, by loss, and the older trial first.
    fn split(&self) -> (Vec<&Observation>, Vec<&Observation>) {
        let n = self.observations.len() + self.pending.len();
        let below_n = n_below(n).min(self.observations.len());
        let mut ranked: Vec<&Observation> = self.observations.iter().collect();
        ranked.sort_by(|a, b| {
            (a.violation > 0.0)
                .cmp(&(b.violation > 0.0))
                .then(a.violation.total_cmp(&b.violation))
                .then(a.loss.total_cmp(&b.loss))
                .then(a.number.cmp(&b.number))
        });
        let mut below: Vec<&Observation> = ranked[..below_n].to_vec();
        let mut above: Vec<&Observation> = ranked[below_n..].to_vec();
        below.sort_by_key(|o| o.number);
        above.sort_by_key(|o| o.number);
        (below, above)
    }

    /// The model's pick: `None` when every drawn candidate was already tried.
    fn model_pick(&mut self) -> Option<Candidate> {
        let (below, above) = self.split();
        let mut above_pts: Vec<Vec<f64>> = above.iter().map(|o| o.point.clone()).collect();
        // Running trials are the newest: they take the full weight at the end.
        above_pts.extend(self.pending.values().cloned());
        let mut above_weights = default_weights(above_pts.len());
        above_weights.iter_mut().zip(&above).for_each(|(w, o)| *w *= o.weight);
        let below_pts: Vec<Vec<f64>> = below.iter().map(|o| o.point.clone()).collect();
        let l = Parzen::build(&below_pts, &weights(&below), &self.encoding.dims);
        let g = Parzen::build(&above_pts, &above_weights, &self.encoding.dims);
        for _round in 0..8 {
            let mut scored: Vec<(f64, Candidate)> = Vec::with_capacity(EI_CANDIDATES);
            for _ in 0..EI_CANDIDATES {
                let x = l.sample(&mut self.rng);
                let c = self.encoding.decode(&x);
                if self.seen.contains(&c.to_json()) {
                    continue;
                }
                // Score the decoded point, so rounding cannot favour a point off the grid.
                let x = self.encoding.encode(&c).unwrap_or(x);
                scored.push((l.log_pdf(&x) - g.log_pdf(&x), c));
            }
            let Some(top) = scored.iter().map(|s| s.0).reduce(f64::max) else { continue };
            let pick = scored
                .iter()
                .filter(|(s, c)| *s >= top - REUSE_TOLERANCE && self.keeps_server(c))
                .chain(scored.iter().filter(|(s, _)| *s == top))
                .next()
                .map(|(_, c)| c.clone());
            if pick.is_some() {
                return pick;
            }
        }
        None
    }
}

impl Strategy for Tpe {
    fn name(&self) -> &'static str {
        "tpe"
    }

    fn propose(&mut self, space: &Space) -> Option<Candidate> {
        let started = self.observations.len() - self.refused + self.pending.len();
        let default = if self.proposed == 0 { space.default_candidate() } else { None };
        if let Some(d) = &default {
            self.neighbours = self.default_neighbours(d);
        }
        let candidate = if started == 0 && self.proposed == 0 {
            default.filter(|c| !self.seen.contains(&c.to_json())).or_else(|| self.random_unseen(space))
        } else if started < STARTUP_TRIALS {
            self.next_neighbour().or_else(|| self.random_unseen(space))
        } else {
            self.model_pick().or_else(|| self.random_unseen(space))
        }?;
        self.proposed += 1;
        let key = candidate.to_json();
        self.seen.insert(key.clone());
        if let Some(x) = self.encoding.encode(&candidate) {
            self.pending.insert(key, x);
        }
        self.last = Some(candidate.clone());
        Some(candidate)
    }

    fn observe(&mut self, trial: &Trial) {
        let key = trial.params.to_json();
        self.pending.remove(&key);
        self.seen.insert(key.clone());
        let Some((point, violation, loss)) = self.graded(trial) else { return };
        if let Some(&i) = self.by_key.get(&key) {
            self.observations[i].add_run(violation, loss);
            return;
        }
        self.refused += (trial.number == 0) as usize;
        self.by_key.insert(key, self.observations.len());
        self.observations.push(Observation::new(trial.number, point, violation, loss, 1.0));
    }

    /// A prior study's trial: in the densities at `weight`, one observation per prior trial (never
    /// merged with this study's runs of the point), and not `seen`: the new environment may
    /// measure the point again.
    fn observe_prior(&mut self, trial: &Trial, weight: f64) {
        let Some((point, violation, loss)) = self.graded(trial) else { return };
        let number = trial.number - PRIOR_NUMBER_OFFSET;
        self.observations.push(Observation::new(number, point, violation, loss, weight.clamp(0.0, 1.0)));
    }

    fn pending(&mut self, candidate: &Candidate) {
        let key = candidate.to_json();
        self.seen.insert(key.clone());
        if let Some(x) = self.encoding.encode(candidate) {
            self.pending.insert(key, x);
        }
    }
}

impl Tpe {
    /// A finished trial's encoded point, graded violation and loss; `None` for unfinished ones.
    fn graded(&self, trial: &Trial) -> Option<(Vec<f64>, f64, f64)> {
        let point = self.encoding.encode(&trial.params)?;
        let violation = match trial.state {
            TrialState::Running | TrialState::Interrupted | TrialState::Lost => return None,
            _ => trial.violation.unwrap_or(crate::trial::INFEASIBLE_VIOLATION),
        };
        let loss = match (trial.objective, self.direction) {
            (Some(v), Direction::Maximize) if v.is_finite() => -v,
            (Some(v), Direction::Minimize) if v.is_finite() => v,
            _ => f64::INFINITY,
        };
        // A trial without a usable objective can't rank as feasible.
        let violation =
            if loss.is_infinite() && violation == 0.0 { crate::trial::INFEASIBLE_VIOLATION } else { violation };
        Some((point, violation, loss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::landscape::Landscape;
    use crate::trial::INFEASIBLE_VIOLATION;

    /// Trials until the incumbent (by observed value) is within 5 % of the optimum.
    fn trials_to_within5(
        landscape: &Landscape,
        space: &Space,
        mut s: Box<dyn Strategy>,
        budget: usize,
    ) -> Option<usize> {
        let opt = landscape.optimum(Direction::Maximize).unwrap();
        let mut best = f64::NEG_INFINITY;
        for n in 1..=budget {
            let c = s.propose(space)?;
            let run = &landscape.point(&c).unwrap().runs[0];
            if run.violation == 0.0 {
                best = best.max(run.objective.unwrap());
            }
            if best >= 0.95 * opt {
                return Some(n);
            }
            s.observe(&Landscape::trial(n as i64, &c, run));
        }
        None
    }

    /// §3.5: on the synthetic landscape TPE beats random search by at least 2x.
    #[test]
    fn beats_random_on_the_synthetic_landscape() {
        let l = Landscape::synthetic();
        let mut space = l.space().unwrap();
        let (mut tpe_hits, mut random_hits) = (0, 0);
        for seed in 0..10 {
            space.seed = seed;
            tpe_hits += trials_to_within5(&l, &space, Box::new(Tpe::new(&space)), 60).is_some() as usize;
            random_hits += trials_to_within5(&l, &space, Box::new(crate::search::random::Random::new(seed)), 60)
                .is_some() as usize;
        }
        assert!(tpe_hits >= 9, "tpe reached 5 % in {tpe_hits}/10 seeds");
        assert!(tpe_hits >= 2 * random_hits, "tpe {tpe_hits} vs random {random_hits}");
    }

    #[test]
    fn default_first_then_distinct_and_crashes_rarely_after_startup() {
        let l = Landscape::synthetic();
        let space = l.space().unwrap();
        let mut tpe = Tpe::new(&space);
        let mut seen = HashSet::new();
        let mut infeasible_after_startup = 0;
        for n in 1..=60i64 {
            let c = tpe.propose(&space).unwrap();
            if n == 1 {
                assert_eq!(Some(&c), space.default_candidate().as_ref());
            }
            assert!(seen.insert(c.to_json()), "proposed twice: {c:?}");
            let run = &l.point(&c).unwrap().runs[0];
            if n as usize > STARTUP_TRIALS && run.violation >= INFEASIBLE_VIOLATION {
                infeasible_after_startup += 1;
            }
            tpe.observe(&Landscape::trial(n, &c, run));
        }
        // a third of the grid crashes; the sampler learns to stay away
        assert!(infeasible_after_startup <= 10, "{infeasible_after_startup} of 50 crashed");
    }

    #[test]
    fn startup_probes_the_defaults_neighbours_first() {
        let l = Landscape::synthetic();
        let space = l.space().unwrap();
        let default = space.default_candidate().unwrap();
        let mut tpe = Tpe::new(&space);
        let mut seen = HashSet::new();
        for n in 1..=STARTUP_TRIALS as i64 {
            let c = tpe.propose(&space).unwrap();
            let moved = space.params.iter().filter(|p| c.get(&p.name) != default.get(&p.name)).count();
            // slots 3/5, ctx 2048/8192, flash attention on, quant q4_K_M/f16, KV q8_0/q4_0
            assert_eq!(moved, if n == 1 { 0 } else { 1 }, "trial {n}: {}", c.brief());
            assert!(seen.insert(c.to_json()));
            tpe.observe(&Landscape::trial(n, &c, &l.point(&c).unwrap().runs[0]));
        }
        // A candidate refused before launch (number 0) does not use up the startup.
        let mut tpe = Tpe::new(&space);
        let first = tpe.propose(&space).unwrap();
        tpe.observe(&Landscape::trial(1, &first, &l.point(&first).unwrap().runs[0]));
        for _ in 0..20 {
            let c = tpe.propose(&space).unwrap();
            tpe.observe(&crate::search::constrained::refused_trial(&c, "no".into()));
        }
        assert_eq!(tpe.observations.len() - tpe.refused, 1);
    }

    #[test]
    fn split_ranks_feasible_then_by_violation_and_running_trials_count_as_bad() {
        let l = Landscape::synthetic();
        let space = l.space().unwrap();
        let mut tpe = Tpe::new(&space);
        for n in 1..=12 {
            let c = tpe.propose(&space).unwrap();
            let run = crate::search::landscape::Run::new(
                TrialState::Complete,
                Some(n as f64),
                if n % 2 == 0 { 0.0 } else { n as f64 },
            );
            tpe.observe(&Landscape::trial(n, &c, &run));
        }
        let c = tpe.propose(&space).unwrap();
        assert_eq!(tpe.pending.len(), 1, "the proposal is pending (constant liar)");
        assert!(tpe.pending.contains_key(&c.to_json()));
        // 12 observed + 1 running: n_below(13) = 2, the two best feasible (objective 12, 10).
        let (below, above) = tpe.split();
        let numbers = |group: &[&Observation]| group.iter().map(|o| o.number).collect::<Vec<i64>>();
        assert_eq!(numbers(&below), [10, 12]);
        assert_eq!(numbers(&above), [1, 2, 3, 4, 5, 6, 7, 8, 9, 11]);
    }

    /// Each case breaks one rule of the split's order: (violation, loss) per trial number from 1,
    /// running trials, and the good group expected.
    #[test]
    fn split_keeps_the_best_by_feasibility_violation_loss_then_age() {
        /// Why, (violation, loss) per trial from 1, running trials, the good group expected.
        type Case = (&'static str, Vec<(f64, f64)>, usize, Vec<i64>);
        let cases: [Case; 6] = [
            (
                "feasible beats an infeasible trial with a far better loss",
                [(0.3, -100.0), (0.0, -1.0)].into_iter().chain([(0.0, 0.0); 8]).collect(),
                0,
                vec![2],
            ),
            (
                "among infeasible trials the smaller violation wins, whatever the loss",
                [(0.9, -100.0), (0.2, 50.0)].into_iter().chain([(0.5, 0.0); 8]).collect(),
                0,
                vec![2],
            ),
            (
                "among feasible trials the lower loss wins",
                (1..=10).map(|i| (0.0, -f64::from(i % 7))).collect(),
                0,
                vec![6],
            ),
            ("ties go to the older trial", vec![(0.0, -1.0); 10], 0, vec![1]),
            (
                "a running trial counts in n: n_below(11) = 2",
                (1..=10).map(|i| (0.0, -f64::from(i))).collect(),
                1,
                vec![9, 10],
            ),
            (
                "the good group comes back in trial order, not rank order",
                (1..=20)
                    .map(|i| {
                        (
                            0.0,
                            if i == 7 {
                                -50.0
                            } else if i == 3 {
                                -40.0
                            } else {
                                0.0
                            },
                        )
                    })
                    .collect(),
                0,
                vec![3, 7],
            ),
        ];
        let space = Landscape::synthetic().space().unwrap();
        for (why, trials, running, expect) in cases {
            let mut tpe = Tpe::new(&space);
            for (i, &(violation, loss)) in trials.iter().enumerate() {
                tpe.observations.push(Observation::new(i as i64 + 1, Vec::new(), violation, loss, 1.0));
            }
            for r in 0..running {
                tpe.pending.insert(format!("running {r}"), Vec::new());
            }
            let (below, above) = tpe.split();
            let below: Vec<i64> = below.iter().map(|o| o.number).collect();
            let above: Vec<i64> = above.iter().map(|o| o.number).collect();
            assert_eq!(below, expect, "{why}");
            let rest: Vec<i64> = (1..=trials.len() as i64).filter(|n| !expect.contains(n)).collect();
            assert_eq!(above, rest, "{why}");
        }
    }

    /// Issue 16: a re-measured point is one observation, ranked by its mean over its runs; a run
    /// that misses an SLO makes the whole point violating.
    #[test]
    fn a_remeasured_point_is_one_observation_with_its_mean() {
        let space = Landscape::synthetic().space().unwrap();
        let mut tpe = Tpe::new(&space);
        let (a, b) = (tpe.propose(&space).unwrap(), tpe.propose(&space).unwrap());
        let run = |v: f64, violation: f64| crate::search::landscape::Run::new(TrialState::Complete, Some(v), violation);
        tpe.observe(&Landscape::trial(1, &a, &run(30.0, 0.0)));
        tpe.observe(&Landscape::trial(2, &b, &run(20.0, 0.0)));
        // a's lucky 30 is re-measured at 6: mean 18, now behind b
        tpe.observe(&Landscape::trial(3, &a, &run(6.0, 0.0)));
        assert_eq!(tpe.observations.len(), 2, "one observation a point");
        let first = &tpe.observations[0];
        assert_eq!((first.number, first.runs, first.loss), (1, 2, -18.0));
        for n in 4..=11 {
            let c = tpe.propose(&space).unwrap();
            tpe.observe(&Landscape::trial(n, &c, &run(1.0, 0.0)));
        }
        let (below, _) = tpe.split();
        assert_eq!(below.iter().map(|o| o.number).collect::<Vec<_>>(), [2], "b's 20 beats a's mean 18");
        // b misses an SLO on its re-measure: the point is violating, a leads again
        tpe.observe(&Landscape::trial(12, &b, &run(25.0, 0.4)));
        assert!((tpe.observations[1].violation - 0.2).abs() < 1e-12);
        let (below, _) = tpe.split();
        assert_eq!(below.iter().map(|o| o.number).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn gamma_and_weights_match_optuna() {
        assert_eq!(n_below(0), 0);
        assert_eq!(n_below(10), 1);
        assert_eq!(n_below(11), 2);
        assert_eq!(n_below(200), 20);
        assert_eq!(n_below(1000), 25);
        assert_eq!(default_weights(3), vec![1.0; 3]);
        let w = default_weights(27);
        assert_eq!(w.len(), 27);
        assert!((w[0] - 1.0 / 27.0).abs() < 1e-12);
        assert_eq!(w[1], 1.0);
        assert_eq!(&w[2..], &[1.0; 25]);
    }

    #[test]
    fn normal_mass_is_accurate_in_both_tails() {
        assert!((normal_mass(-1.0, 1.0) - 0.682689492).abs() < 1e-6);
        assert!((normal_mass(0.0, f64::INFINITY) - 0.5).abs() < 1e-7);
        // far tail: 1 − Φ(6) = 9.8659e-10
        assert!((normal_mass(6.0, 50.0) / 9.865876e-10 - 1.0).abs() < 1e-4);
        assert!((normal_mass(-50.0, -6.0) / 9.865876e-10 - 1.0).abs() < 1e-4);
    }

    #[test]
    fn bandwidths_use_neighbour_gaps_and_clip() {
        // sorted 2, 3, 7 on [0, 10]: inner gaps for the ends (1, 4), max(1, 4) = 4 in the middle;
        // clip min = 10 / min(100, 5) = 2
        assert_eq!(bandwidths(&[7.0, 2.0, 3.0], 0.0, 10.0), vec![4.0, 2.0, 4.0]);
        // one observation: the larger bound gap
        assert_eq!(bandwidths(&[2.0], 0.0, 10.0), vec![8.0]);
    }

    #[test]
    fn parzen_density_sums_to_one_over_a_discrete_grid() {
        let dims = [Dim::Ordinal { hi: 5 }, Dim::Cat { n: 3 }];
        let p = Parzen::build(&[vec![1.0, 0.0], vec![4.0, 2.0]], &[1.0, 1.0], &dims);
        let total: f64 = (0..=5)
            .flat_map(|a| (0..3).map(move |b| (a, b)))
            .map(|(a, b)| p.log_pdf(&[a as f64, b as f64]).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        // the observed points are more likely than their opposite corners
        assert!(p.log_pdf(&[1.0, 0.0]) > p.log_pdf(&[5.0, 1.0]));
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let x = p.sample(&mut rng);
            assert!((0.0..=5.0).contains(&x[0]) && x[0].fract() == 0.0 && (0.0..3.0).contains(&x[1]));
        }
    }

    #[test]
    fn continuous_density_integrates_to_one() {
        let dims = [Dim::Log { lo: 0.0, hi: 2.0 }];
        let p = Parzen::build(&[vec![0.3], vec![1.5]], &[1.0, 1.0], &dims);
        let steps = 2000;
        let total: f64 =
            (0..steps).map(|i| p.log_pdf(&[(i as f64 + 0.5) * 2.0 / steps as f64]).exp() * 2.0 / steps as f64).sum();
        assert!((total - 1.0).abs() < 1e-3, "{total}");
    }
}
