//! The replay backend (`tune --replay LANDSCAPE`): trials are answered from a recorded landscape
//! instead of a live server, so a strategy, a budget or a different set of SLOs can be tried in
//! seconds, and the daemon loop can be tested without an engine.
//!
//! Each answer is one of the point's recorded runs, taken in an order drawn per point from the
//! study's seed ([`Draws`]): a re-measure gets a different recorded run while
//! one remains, so a replay carries the recording's own noise and repeats exactly per seed. A run's
//! stored summary is judged again against *this* space's objective and SLOs (figures of a run
//! that was pruned while recording are partial, as they were then).

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, bail};

use super::TrialRun;
use crate::backend::Backend;
use crate::measure::{self, system};
use crate::search::landscape::{Draws, Landscape};
use crate::space::{Candidate, Space};
use crate::trial::{Fingerprint, InfeasibleClass, Outcome, StageTimes, TrialState};

/// A loaded recording and the study's draws from it.
#[derive(Debug)]
pub struct Replay {
    pub landscape: Landscape,
    path: String,
    sha256: String,
    draws: Mutex<Draws>,
}

impl Replay {
    /// Read `path` for a study over `space`: the parameter names must be the recording's.
    pub fn load(path: &Path, space: &Space) -> anyhow::Result<Replay> {
        let bytes = std::fs::read(path).with_context(|| format!("reading landscape '{}'", path.display()))?;
        let landscape = Landscape::from_json(&bytes, path)?;
        let recorded = landscape.space()?;
        let names = |s: &Space| s.params.iter().map(|p| p.name.clone()).collect::<std::collections::BTreeSet<_>>();
        if names(&recorded) != names(space) {
            bail!(
                "landscape '{}' covers parameters {:?}, the space has {:?}",
                path.display(),
                names(&recorded),
                names(space)
            );
        }
        if !landscape.points.iter().flat_map(|p| &p.runs).any(|r| r.summary.is_some()) {
            bail!(
                "landscape '{}' stores no per-run figures (it was recorded before they were kept); \
                 record it again with scripts/record-landscape",
                path.display()
            );
        }
        Ok(Replay {
            landscape,
            path: path.display().to_string(),
            sha256: crate::store::sha256_hex(&bytes),
            draws: Mutex::new(Draws::new(space.seed)),
        })
    }

    /// The study's fingerprint: the recording's file in place of an engine and models.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            engine_version: format!("replay of landscape '{}'", self.landscape.name),
            model_sha256: [(self.path.clone(), self.sha256.clone())].into(),
            host: system::host(),
        }
    }

    /// One recorded run of `candidate`, judged against `space`. The plan is the backend's own,
    /// so `export` of a replayed study writes what the operator would deploy.
    pub(super) fn answer(&self, space: &Space, backend: &dyn Backend, candidate: &Candidate) -> TrialRun {
        let plan = backend.plan(candidate).ok();
        let run = {
            let mut draws = self.draws.lock().expect("the replay's draws are only locked here");
            draws.next(&self.landscape, candidate).map(|(_, run)| run.clone())
        };
        let Some(run) = run else {
            let message = format!("landscape '{}' has no run for {}", self.landscape.name, candidate.brief());
            return TrialRun::infeasible(InfeasibleClass::NotRecorded, message, plan, StageTimes::default());
        };
        let summary = match (run.state, run.summary) {
            (TrialState::Complete | TrialState::Pruned, Some(summary)) => summary,
            (TrialState::Complete | TrialState::Pruned, None) => {
                let message = format!("the recorded run of {} kept no figures", candidate.brief());
                return TrialRun::infeasible(InfeasibleClass::NotRecorded, message, plan, StageTimes::default());
            }
            _ => {
                let class = run.error_class.unwrap_or(InfeasibleClass::NotRecorded);
                let message = format!("recorded as infeasible ({class}) in landscape '{}'", self.landscape.name);
                return TrialRun::infeasible(class, message, plan, StageTimes::default());
            }
        };
        let verdict = measure::judge(&summary, &space.objective, &space.slos);
        let outcome = match run.state {
            TrialState::Pruned => Outcome::Pruned { summary, verdict },
            _ => Outcome::Complete { summary, verdict },
        };
        TrialRun { outcome, plan, stages: StageTimes::default(), samples: Vec::new() }
    }
}
