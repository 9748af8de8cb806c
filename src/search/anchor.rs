//! Drift anchor: every M trials the default configuration is measured again, so that a machine
//! that got slower (thermal throttling, another tenant) shows up as a moving anchor instead of
//! silently skewing the ranking (`reference/search-and-measurement.md` §5.1).
//!
//! `Anchored` wraps any strategy; anchor re-measures are ordinary trials (stored, and told to
//! the inner strategy too). `drift` reads the anchor's history back from the trials.

use super::Strategy;
use crate::space::{Candidate, Space};
use crate::trial::Trial;

/// Relative change of the anchor that counts as drift.
pub const DRIFT_LIMIT: f64 = 0.05;

/// A strategy that interleaves the default configuration every `every` trials.
pub struct Anchored {
    inner: Box<dyn Strategy>,
    every: usize,
    anchor: Candidate,
    proposed: usize,
    /// First measured objective of the anchor.
    first: Option<f64>,
}

impl Anchored {
    pub fn new(inner: Box<dyn Strategy>, every: u32, anchor: Candidate) -> Anchored {
        Anchored { inner, every: every.max(1) as usize, anchor, proposed: 0, first: None }
    }
}

impl Strategy for Anchored {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn propose(&mut self, space: &Space) -> Option<Candidate> {
        self.proposed += 1;
        // Trial 1 is usually the default already (tpe, anneal); re-measure after every M more.
        if self.proposed > 1 && (self.proposed - 1).is_multiple_of(self.every + 1) {
            return Some(self.anchor.clone());
        }
        self.inner.propose(space)
    }

    fn observe_prior(&mut self, trial: &Trial, weight: f64) {
        self.inner.observe_prior(trial, weight);
    }

    fn observe(&mut self, trial: &Trial) {
        // Resume replays stored trials: keep the anchor's rhythm by trial number.
        self.proposed = self.proposed.max(trial.number as usize);
        if trial.params == self.anchor
            && trial.state == crate::trial::TrialState::Complete
            && let Some(v) = trial.objective
        {
            match self.first {
                None => self.first = Some(v),
                Some(first) if first != 0.0 && ((v - first) / first).abs() > DRIFT_LIMIT => {
                    tracing::warn!(
                        trial = trial.number,
                        first,
                        now = v,
                        "anchor drifted by more than 5 %: figures of this period are suspect"
                    );
                }
                Some(_) => {}
            }
        }
        self.inner.observe(trial);
    }

    fn pending(&mut self, candidate: &Candidate) {
        // A running trial took a number: keep the anchor's rhythm.
        self.proposed += 1;
        self.inner.pending(candidate);
    }
}

/// The anchor's history in `trials`: how often `anchor` was measured (complete, with an
/// objective) and its largest relative change from the first measurement.
pub fn drift(trials: &[Trial], anchor: &Candidate) -> Option<(usize, f64)> {
    let values: Vec<f64> = trials
        .iter()
        .filter(|t| &t.params == anchor && t.state == crate::trial::TrialState::Complete)
        .filter_map(|t| t.objective)
        .collect();
    let first = *values.first()?;
    if first == 0.0 {
        return None;
    }
    let max = values.iter().map(|v| ((v - first) / first).abs()).fold(0.0, f64::max);
    Some((values.len(), max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::landscape::{Landscape, Run};
    use crate::trial::TrialState;

    #[test]
    fn anchors_every_m_trials_and_measures_drift() {
        let l = Landscape::synthetic();
        let mut space = l.space().unwrap();
        space.strategy = crate::space::StrategyKind::Random;
        space.anchor_every = Some(3);
        let anchor = space.default_candidate().unwrap();
        let mut s = super::super::from_space(&space);
        let mut trials = Vec::new();
        for n in 1..=12i64 {
            let c = s.propose(&space).unwrap();
            let objective = if c == anchor { 100.0 + n as f64 } else { 1.0 };
            let t = Landscape::trial(n, &c, &Run::new(TrialState::Complete, Some(objective), 0.0));
            s.observe(&t);
            trials.push(t);
        }
        let at: Vec<i64> = trials.iter().filter(|t| t.params == anchor).map(|t| t.number).collect();
        assert_eq!(at, vec![5, 9]);
        // 105 then 109: drift 4/105
        let (n, d) = drift(&trials, &anchor).unwrap();
        assert_eq!(n, 2);
        assert!((d - 4.0 / 105.0).abs() < 1e-12);
    }
}
