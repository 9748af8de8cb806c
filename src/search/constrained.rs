//! Known constraints: a candidate the backend refuses before launch (`Backend::plan` errs, e.g.
//! llama.cpp's quantized V cache without flash attention) never becomes a trial. The wrapped
//! strategy is told it was infeasible, as it would be by a crash, so it learns to stay away, and
//! is asked again. A refusal takes no time and no budget: every stored trial is a launch.

use super::Strategy;
use crate::space::{Candidate, Space};
use crate::trial::{INFEASIBLE_VIOLATION, InfeasibleClass, StageTimes, Trial, TrialId, TrialState};

/// Refusals in a row before the space counts as exhausted (every proposal is refused).
const MAX_REFUSALS: usize = 10_000;

/// Why a candidate cannot be launched, or `None` when it can.
pub type Check = Box<dyn Fn(&Candidate) -> Option<String> + Send>;

/// A strategy that never proposes a candidate `check` refuses.
pub struct Constrained {
    inner: Box<dyn Strategy>,
    check: Check,
    refused: usize,
}

impl Constrained {
    pub fn new(inner: Box<dyn Strategy>, check: Check) -> Constrained {
        Constrained { inner, check, refused: 0 }
    }
}

/// The finished trial a refused candidate stands for (number 0: it is never stored).
pub fn refused_trial(candidate: &Candidate, message: String) -> Trial {
    Trial {
        id: TrialId(0),
        number: 0,
        state: TrialState::Infeasible,
        params: candidate.clone(),
        plan: None,
        objective: None,
        violation: Some(INFEASIBLE_VIOLATION),
        violations: Default::default(),
        summary: None,
        error_class: Some(InfeasibleClass::Server(crate::backend::FailureClass::InvalidCombination)),
        error_message: Some(message),
        stages: StageTimes::default(),
        started_at_ms: 0,
        ended_at_ms: None,
        purpose: crate::trial::Purpose::Search,
    }
}

impl Strategy for Constrained {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn propose(&mut self, space: &Space) -> Option<Candidate> {
        for _ in 0..MAX_REFUSALS {
            let candidate = self.inner.propose(space)?;
            match (self.check)(&candidate) {
                None => return Some(candidate),
                Some(message) => {
                    self.refused += 1;
                    tracing::debug!(candidate = %candidate.brief(), %message, "refused before launch (not a trial)");
                    self.inner.observe(&refused_trial(&candidate, message));
                }
            }
        }
        None
    }

    fn observe_prior(&mut self, trial: &Trial, weight: f64) {
        self.inner.observe_prior(trial, weight);
    }

    fn observe(&mut self, trial: &Trial) {
        self.inner.observe(trial);
    }

    fn pending(&mut self, candidate: &Candidate) {
        self.inner.pending(candidate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::landscape::Landscape;
    use crate::space::StrategyKind;

    /// Every strategy, wrapped, only proposes launchable points, and still covers the rest.
    #[test]
    fn refused_candidates_never_reach_the_caller() {
        let l = Landscape::synthetic();
        for kind in [StrategyKind::Grid, StrategyKind::Random, StrategyKind::Anneal, StrategyKind::Tpe] {
            let mut space = l.space().unwrap();
            space.strategy = kind;
            let mut s = crate::search::from_space(&space);
            for n in 1..=80 {
                let c = s.propose(&space).expect("launchable points remain");
                let refused = c.get("flash_attn").map(|v| v.to_string()) == Some("off".into())
                    && c.get("kv_cache").map(|v| v.to_string()) != Some("f16".into());
                assert!(!refused, "{kind:?} proposed a refused point: {}", c.brief());
                s.observe(&Landscape::trial(n, &c, &l.point(&c).unwrap().runs[0]));
            }
        }
    }

    #[test]
    fn a_space_where_everything_is_refused_is_exhausted() {
        let l = Landscape::synthetic();
        let space = l.space().unwrap();
        let inner = crate::search::grid::Grid::new(&space);
        let mut s = Constrained::new(Box::new(inner), Box::new(|_| Some("no".into())));
        assert!(s.propose(&space).is_none());
        assert_eq!(s.refused, 2016, "each point is refused once, then the space is exhausted");
    }
}
