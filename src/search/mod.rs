//! Search strategies: which candidate to try next, learning from finished trials.
//!
//! A strategy never sees processes, HTTP or SQL: it gets the `Space`, proposes `Candidate`s and
//! observes `Trial`s. Resume replays stored trials through `observe` in number order.

pub mod anchor;
pub mod anneal;
pub mod capacity;
pub mod constrained;
pub mod encode;
pub mod grid;
pub mod landscape;
pub mod random;
pub mod tpe;

use crate::space::{Candidate, Domain, Space, StrategyKind, Value};
use crate::trial::Trial;

/// A search strategy (propose / observe).
pub trait Strategy: Send {
    fn name(&self) -> &'static str;
    /// Next point to try; `None` when the space is exhausted. Must be cheap.
    fn propose(&mut self, space: &Space) -> Option<Candidate>;
    /// Learn from a finished trial. Resume replays stored trials through this.
    fn observe(&mut self, trial: &Trial);
    /// A trial of `candidate` is running (another worker of a shared study runs it): never
    /// propose it again, and count it as not-yet-good (TPE's constant liar). Called after the
    /// finished trials were observed, before `propose`.
    fn pending(&mut self, candidate: &Candidate) {
        let _ = candidate;
    }

    /// Learn from a trial of an earlier, related study (a re-tune's warm start, issue 19), counted
    /// at `weight` (0..1) of one of this study's trials. Strategies without a model of the space
    /// (grid, random, anneal) ignore it; `tpe` keeps it in its densities at that weight.
    fn observe_prior(&mut self, trial: &Trial, weight: f64) {
        let _ = (trial, weight);
    }
}

/// The weight of a prior trial (`Strategy::observe_prior`) when a re-tune is warm-started: an
/// older environment's measurement counts a quarter of a new one (`scripts/bench-warmstart`:
/// chosen among 0.1, 0.25, 0.5 and 1 on its default shift, checked on `--slots-scale 16`).
pub const PRIOR_WEIGHT: f64 = 0.25;

/// Build the strategy a space names: it never proposes what the space's backend refuses before
/// launch (`constrained`), and it is anchored on the default when `anchor_every` is set.
pub fn from_space(space: &Space) -> Box<dyn Strategy> {
    let backend = crate::backend::from_spec(&space.backend, &space.params);
    let check: constrained::Check = Box::new(move |c| backend.plan(c).err().map(|r| r.message));
    let inner = Box::new(constrained::Constrained::new(base_strategy(space), check));
    match (space.anchor_every, space.default_candidate()) {
        (Some(every), Some(default)) => Box::new(anchor::Anchored::new(inner, every, default)),
        _ => inner,
    }
}

fn base_strategy(space: &Space) -> Box<dyn Strategy> {
    match space.strategy {
        StrategyKind::Grid => Box::new(grid::Grid::new(space)),
        StrategyKind::Random => Box::new(random::Random::new(space.seed)),
        StrategyKind::Tpe => Box::new(tpe::Tpe::new(space)),
        StrategyKind::Anneal => Box::new(anneal::Anneal::new(space)),
    }
}

/// Draw one value of `domain` uniformly (log-uniformly for `log` ranges).
pub fn sample_value(domain: &Domain, rng: &mut impl rand::RngExt) -> Value {
    match domain {
        Domain::Values(values) => values[rng.random_range(0..values.len())].clone(),
        Domain::Int { min, max, log, step } => {
            let v = if *log {
                let (lo, hi) = ((*min as f64).ln(), (*max as f64 + 1.0).ln());
                (rng.random_range(lo..hi).exp().floor() as i64).clamp(*min, *max)
            } else {
                rng.random_range(*min..=*max)
            };
            let v = match step {
                Some(s) => (min + ((v - min) as f64 / *s as f64).round() as i64 * s).min(*max),
                None => v,
            };
            Value::Int(v)
        }
    }
}
