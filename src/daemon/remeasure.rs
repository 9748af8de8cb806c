//! Re-measurement: configurations measured again on fresh server starts, interleaved round by
//! round and counterbalanced (A, B, C, then C, B, A, ...; RMIT-style,
//! `reference/search-and-measurement.md` §5.1) so drift and order effects hit every arm alike.
//! The one routine behind `compare` and `validate`.
//!
//! Re-measurement never prunes: a configuration that misses its SLO is exactly what a user wants
//! compared, so a missed SLO is data here. A configuration that cannot be served at all is an
//! error naming the arm, its failure class and the server's words, in one line.

use anyhow::bail;
use tracing::info;

use super::pipeline::{Bench, run_fresh};
use crate::measure::{Sample, Summary, Verdict};
use crate::shutdown::Shutdown;
use crate::space::{Candidate, Space};
use crate::trial::Outcome;

/// One arm: its label (for messages) and configuration.
pub struct Arm<'a> {
    pub label: String,
    pub candidate: &'a Candidate,
}

/// One measured run of an arm.
#[derive(Debug, Clone)]
pub struct ArmRun {
    pub summary: Summary,
    pub verdict: Verdict,
    /// Measured requests that succeeded (warm-up excluded).
    pub samples: Vec<Sample>,
}

/// A run just measured, for progress lines: arm index, round (1-based) and the run.
pub struct Progress<'a> {
    pub arm: usize,
    pub round: u32,
    pub run: &'a ArmRun,
}

/// Measure every arm once per round, `rounds` rounds, each run on a fresh server, in reverse order
/// every other round; `runs[i]` holds arm `i`'s runs in round order. Within a round every arm sends the same prompts; each round
/// draws its own.
pub async fn interleaved(
    space: &Space,
    arms: &[Arm<'_>],
    rounds: u32,
    shutdown: &Shutdown,
    on_run: &mut (dyn FnMut(Progress<'_>) + Send),
) -> anyhow::Result<Vec<Vec<ArmRun>>> {
    let backend = crate::backend::from_spec(&space.backend, &space.params);
    let bench = Bench::new(space, backend.as_ref(), shutdown)?;
    let mut runs: Vec<Vec<ArmRun>> = arms.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        // Counterbalanced: every other round runs the arms in reverse order (A, B, then B, A), so
        // an order effect (the second run of a round slower, say) cancels instead of reading as
        // a difference between the arms.
        let order: Vec<usize> =
            if round % 2 == 1 { (0..arms.len()).collect() } else { (0..arms.len()).rev().collect() };
        for i in order {
            let arm = &arms[i];
            if shutdown.is_requested() {
                bail!("re-measurement interrupted");
            }
            let run = run_fresh(&bench, arm.candidate, u64::from(round)).await?;
            let measured = match run.outcome {
                Outcome::Complete { summary, verdict } | Outcome::Pruned { summary, verdict } => {
                    let samples = run.samples.into_iter().filter(|s| !s.is_warmup && s.is_ok()).collect();
                    ArmRun { summary, verdict, samples }
                }
                Outcome::Infeasible { class, message } => {
                    let first = message.lines().next().unwrap_or("");
                    bail!("round {round}: the {} configuration could not be served [{class}]: {first}", arm.label)
                }
                Outcome::Interrupted => bail!("re-measurement interrupted"),
            };
            info!(round, arm = %arm.label, objective = measured.verdict.objective, missed_slo = !measured.verdict.is_feasible(), "re-measured");
            on_run(Progress { arm: i, round, run: &measured });
            runs[i].push(measured);
        }
    }
    Ok(runs)
}
