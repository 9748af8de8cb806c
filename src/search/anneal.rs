//! The `anneal` strategy: argmin's `SimulatedAnnealing` over the encoded space.
//!
//! argmin has no ask/tell interface: its `Executor` calls `cost()` and waits for the answer. So
//! the executor runs on its own `std::thread`, and `cost()` sends the point over a channel and
//! blocks until `observe` replies with the score; `propose`/`observe` hold the other ends.
//! Dropping the strategy closes the channels, `cost()` errors, and the thread ends. argmin's
//! ctrl-c handling stays off: the daemon owns the signals.
//!
//! Scores are losses scaled by the first finite objective, so the temperature means "relative
//! difference"; an infeasible trial scores the worst loss seen plus its violation (finite, as
//! argmin's acceptance test needs). Points already measured are answered from a cache without a
//! trial. A point measured more than once (a re-measure, issue 16) is scored by its mean over
//! its runs (objective and violation), so the walk accepts by points, not by lucky draws.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use argmin::core::{CostFunction, Error as ArgminError, Executor};
use argmin::solver::simulatedannealing::{Anneal as ArgminAnneal, SATempFunc, SimulatedAnnealing};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::SeedableRng as _;

use super::encode::{Dim, Encoding};
use super::{Strategy, sample_value};
use crate::space::{Candidate, Direction, Space};
use crate::trial::{Trial, TrialState};

/// Initial temperature, in units of relative objective difference.
const INITIAL_TEMPERATURE: f64 = 0.2;
/// Cached answers in a row before the search counts as converged.
const MAX_CACHED_IN_A_ROW: usize = 500;

/// The problem argmin sees: a bridge to the daemon.
struct Bridge {
    dims: Vec<Dim>,
    points: SyncSender<Vec<f64>>,
    scores: Receiver<f64>,
    rng: RefCell<StdRng>,
}

impl CostFunction for Bridge {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, p: &Vec<f64>) -> Result<f64, ArgminError> {
        self.points.send(p.clone()).map_err(|_| ArgminError::msg("strategy dropped"))?;
        self.scores.recv().map_err(|_| ArgminError::msg("strategy dropped"))
    }
}

/// One step to a neighbouring value in one dimension.
fn step(dim: &Dim, x: f64, rng: &mut StdRng) -> f64 {
    let up: bool = rng.random();
    match dim {
        Dim::Ordinal { hi } => {
            let v = x.round() as i64;
            let v = if (up && v < *hi) || v == 0 { v + 1 } else { v - 1 };
            v.clamp(0, *hi) as f64
        }
        // Doubling or halving on a log scale.
        Dim::Log { lo, hi } => (x + if up { 2f64.ln() } else { -(2f64.ln()) }).clamp(*lo, *hi),
        Dim::Cat { n } if *n > 1 => {
            let shift = rng.random_range(1..*n);
            ((x.round() as usize + shift) % n) as f64
        }
        Dim::Cat { .. } => x,
    }
}

impl ArgminAnneal for Bridge {
    type Param = Vec<f64>;
    type Output = Vec<f64>;
    type Float = f64;

    /// Move one parameter (two while the temperature is above half its start) to a neighbour.
    fn anneal(&self, p: &Vec<f64>, extent: f64) -> Result<Vec<f64>, ArgminError> {
        let mut rng = self.rng.borrow_mut();
        let mut next = p.clone();
        let movable: Vec<usize> = (0..self.dims.len())
            .filter(|&d| !matches!(self.dims[d], Dim::Cat { n: 1 } | Dim::Ordinal { hi: 0 }))
            .collect();
        if movable.is_empty() {
            return Ok(next);
        }
        let k = if extent > INITIAL_TEMPERATURE / 2.0 && movable.len() > 1 { 2 } else { 1 };
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < k {
            let d = movable[rng.random_range(0..movable.len())];
            if !chosen.contains(&d) {
                chosen.push(d);
            }
        }
        for d in chosen {
            next[d] = step(&self.dims[d], next[d], &mut rng);
        }
        Ok(next)
    }
}

/// Simulated annealing driven through a channel bridge.
pub struct Anneal {
    encoding: Encoding,
    direction: Direction,
    points: Option<Receiver<Vec<f64>>>,
    scores: Option<SyncSender<f64>>,
    thread: Option<JoinHandle<()>>,
    /// Loss (or penalty) of every point measured, keyed by candidate JSON: of its mean.
    known: HashMap<String, f64>,
    /// Per point: the sum and count of its finite objectives, and of its violations.
    runs: HashMap<String, PointRuns>,
    /// Candidate waiting for its trial (the solver thread blocks until it is observed).
    awaiting: Option<Candidate>,
    scale: Option<f64>,
    worst: f64,
}

impl Anneal {
    /// Start the solver thread; it begins at the space's default candidate (or a random one).
    pub fn new(space: &Space) -> Anneal {
        let encoding = Encoding::new(space);
        let mut rng = StdRng::seed_from_u64(space.seed);
        let start = space.default_candidate().unwrap_or_else(|| {
            Candidate(space.params.iter().map(|p| (p.name.clone(), sample_value(&p.domain, &mut rng))).collect())
        });
        let x0 = encoding.encode(&start).unwrap_or_else(|| vec![0.0; encoding.dims.len()]);
        let (points_tx, points_rx) = sync_channel(1);
        let (scores_tx, scores_rx) = sync_channel(1);
        let bridge = Bridge {
            dims: encoding.dims.clone(),
            points: points_tx,
            scores: scores_rx,
            rng: RefCell::new(StdRng::seed_from_u64(space.seed ^ 0x5a5a)),
        };
        let seed = space.seed;
        let thread = std::thread::Builder::new()
            .name("anneal".into())
            .spawn(move || {
                let solver = match SimulatedAnnealing::new_with_rng(
                    INITIAL_TEMPERATURE,
                    Xoshiro256PlusPlus::seed_from_u64(seed),
                ) {
                    Ok(s) => s.with_temp_func(SATempFunc::Boltzmann).with_reannealing_best(30),
                    Err(err) => {
                        tracing::error!(error = %err, "simulated annealing could not start");
                        return;
                    }
                };
                // Ends with an error once the strategy is dropped: that is the normal way out.
                let _ = Executor::new(bridge, solver).configure(|s| s.param(x0).max_iters(100_000)).ctrlc(false).run();
            })
            .ok();
        Anneal {
            encoding,
            direction: space.objective.direction,
            points: Some(points_rx),
            scores: Some(scores_tx),
            thread,
            known: HashMap::new(),
            runs: HashMap::new(),
            awaiting: None,
            scale: None,
            worst: 0.0,
        }
    }

    fn score(&mut self, trial: &Trial) -> Option<f64> {
        if matches!(trial.state, TrialState::Running | TrialState::Interrupted | TrialState::Lost) {
            return None;
        }
        let runs = self.runs.entry(trial.params.to_json()).or_default();
        runs.add(trial.objective.filter(|v| v.is_finite()), trial.violation);
        let (objective, violation) = runs.means();
        Some(self.score_of(objective, violation))
    }

    /// The cost of a point with this (mean) objective and (mean) violation.
    fn score_of(&mut self, objective: Option<f64>, violation: f64) -> f64 {
        if let (None, Some(v)) = (self.scale, objective)
            && v != 0.0
        {
            self.scale = Some(v.abs());
        }
        let loss = objective.map(|v| match self.direction {
            Direction::Maximize => -v,
            Direction::Minimize => v,
        });
        let scaled = loss.map(|l| l / self.scale.unwrap_or(1.0));
        if let Some(l) = scaled {
            self.worst = self.worst.max(l);
        }
        match scaled {
            Some(l) if violation == 0.0 => l,
            // Infeasible or missing an SLO: worse than anything feasible, graded by violation.
            _ => self.worst.max(0.0) + 1.0 + violation.min(crate::trial::INFEASIBLE_VIOLATION) / 10.0,
        }
    }
}

/// The runs of one point as anneal scores them.
#[derive(Debug, Default)]
struct PointRuns {
    objective_sum: f64,
    objectives: usize,
    violation_sum: f64,
    runs: usize,
}

impl PointRuns {
    fn add(&mut self, objective: Option<f64>, violation: Option<f64>) {
        if let Some(v) = objective {
            self.objective_sum += v;
            self.objectives += 1;
        }
        self.violation_sum += violation.unwrap_or(crate::trial::INFEASIBLE_VIOLATION);
        self.runs += 1;
    }

    /// Mean objective (over runs that have one) and mean violation.
    fn means(&self) -> (Option<f64>, f64) {
        let objective = (self.objectives > 0).then(|| self.objective_sum / self.objectives as f64);
        (objective, self.violation_sum / self.runs.max(1) as f64)
    }
}

impl Strategy for Anneal {
    fn name(&self) -> &'static str {
        "anneal"
    }

    fn propose(&mut self, _space: &Space) -> Option<Candidate> {
        // The last trial ended without a score (interrupted): the solver still waits for it.
        if let Some(c) = &self.awaiting {
            return Some(c.clone());
        }
        let points = self.points.as_ref()?;
        for _ in 0..MAX_CACHED_IN_A_ROW {
            let x = points.recv().ok()?;
            let candidate = self.encoding.decode(&x);
            let key = candidate.to_json();
            match self.known.get(&key) {
                Some(&cost) => self.scores.as_ref()?.send(cost).ok()?,
                None => {
                    self.awaiting = Some(candidate.clone());
                    return Some(candidate);
                }
            }
        }
        // The walk keeps revisiting measured points: converged.
        None
    }

    fn observe(&mut self, trial: &Trial) {
        let Some(cost) = self.score(trial) else { return };
        let key = trial.params.to_json();
        self.known.insert(key.clone(), cost);
        if self.awaiting.as_ref().is_some_and(|c| c.to_json() == key) {
            self.awaiting = None;
            if let Some(tx) = &self.scores {
                let _ = tx.send(cost);
            }
        }
    }

    fn pending(&mut self, candidate: &Candidate) {
        // Constant liar: the walk reads a running point as worse than anything measured, so it
        // moves on instead of proposing it (the strategy is rebuilt for each claim, so the lie
        // lasts one proposal).
        let lie = self.worst.max(0.0) + 1.0;
        self.known.entry(candidate.to_json()).or_insert(lie);
    }
}

impl Drop for Anneal {
    fn drop(&mut self) {
        // Closing both channel ends makes the blocked `cost()` fail, which ends the run.
        self.scores.take();
        self.points.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::landscape::Landscape;

    #[test]
    fn starts_at_the_default_moves_to_neighbours_and_ends_on_drop() {
        let l = Landscape::synthetic();
        let space = l.space().unwrap();
        let mut a = Anneal::new(&space);
        let first = a.propose(&space).unwrap();
        assert_eq!(Some(&first), space.default_candidate().as_ref());
        let mut seen = std::collections::HashSet::new();
        for n in 1..=30 {
            let c = if n == 1 { first.clone() } else { a.propose(&space).unwrap() };
            // measured points are answered from the cache, never proposed again
            assert!(seen.insert(c.to_json()), "{c:?}");
            a.observe(&Landscape::trial(n, &c, &l.point(&c).unwrap().runs[0]));
        }
        // Dropping must end the solver thread (join in Drop); a hang fails the test by timeout.
        drop(a);
    }

    /// Issue 16: a re-measured point is scored by its mean over its runs.
    #[test]
    fn a_remeasured_point_scores_its_mean() {
        use crate::search::landscape::Run;
        let l = Landscape::synthetic();
        let space = l.space().unwrap();
        let mut a = Anneal::new(&space);
        let c = a.propose(&space).unwrap();
        a.observe(&Landscape::trial(1, &c, &Run::new(TrialState::Complete, Some(40.0), 0.0)));
        assert_eq!(a.known[&c.to_json()], -1.0, "scaled by the first objective");
        a.observe(&Landscape::trial(2, &c, &Run::new(TrialState::Complete, Some(20.0), 0.0)));
        assert_eq!(a.known[&c.to_json()], -0.75, "mean 30 over the scale 40");
        // a run that missed an SLO makes the point worse than any feasible one
        a.observe(&Landscape::trial(3, &c, &Run::new(TrialState::Complete, Some(30.0), 0.3)));
        assert!(a.known[&c.to_json()] > 0.0);
    }

    #[test]
    fn anneal_moves_one_or_two_dims_to_neighbours() {
        let dims = vec![
            Dim::Ordinal { hi: 15 },
            Dim::Ordinal { hi: 6 },
            Dim::Cat { n: 2 },
            Dim::Cat { n: 3 },
            Dim::Log { lo: 0.0, hi: 5.0 },
        ];
        let (tx, _rx) = sync_channel(1);
        let (_stx, srx) = sync_channel(1);
        let b = Bridge { dims, points: tx, scores: srx, rng: RefCell::new(StdRng::seed_from_u64(3)) };
        let x = vec![5.0, 3.0, 0.0, 1.0, 2.0];
        for extent in [INITIAL_TEMPERATURE, INITIAL_TEMPERATURE / 10.0] {
            for _ in 0..200 {
                let y = b.anneal(&x, extent).unwrap();
                let changed: Vec<usize> = (0..5).filter(|&d| x[d] != y[d]).collect();
                let want = if extent > INITIAL_TEMPERATURE / 2.0 { 2 } else { 1 };
                assert_eq!(changed.len(), want, "{y:?}");
                assert!((y[0] - x[0]).abs() <= 1.0 && (y[1] - x[1]).abs() <= 1.0);
                assert!(y[4] == 2.0 || (y[4] - 2.0).abs() - 2f64.ln() < 1e-12);
            }
        }
    }
}
