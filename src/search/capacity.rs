//! Capacity search: the highest load at which one SLO still holds. A 1-D root-finding problem,
//! `f(load) = metric(load) − limit` (sign flipped for lower-bound SLOs), solved with argmin's
//! Brent root finder.
//!
//! The solver's real-valued points are rounded to a level (whole clients, or steps of 1/32 of
//! the rate range) and each level is measured once (a cache answers repeats). argmin's executor
//! runs on its own thread; `cost()` sends the level over a channel and blocks until the async
//! side has measured it. How a level is measured is the caller's: this module knows no server
//! and no workload.

use std::future::Future;

use anyhow::Context;
use argmin::core::{CostFunction, Error as ArgminError, Executor};
use argmin::solver::brent::BrentRoot;
use tokio::sync::mpsc;

use crate::measure;
pub use crate::space::Load;
use crate::space::Slo;

/// Most levels measured in one search (two brackets plus Brent's steps).
pub const MAX_LEVELS: u64 = 12;

impl Load {
    /// The measured level for a solver point in `min..=max`.
    pub fn level(self, x: f64, min: f64, max: f64) -> f64 {
        match self {
            Load::Concurrency => x.round().clamp(min, max),
            Load::Rate => {
                // Step k of 32; the ends exactly, so that `max` is recognised as the top.
                let k = ((x - min) / ((max - min) / 32.0)).round().clamp(0.0, 32.0);
                if k == 32.0 { max } else { min + k * (max - min) / 32.0 }
            }
        }
    }

    /// Brent's tolerance: about one level.
    pub fn tolerance(self, min: f64, max: f64) -> f64 {
        match self {
            Load::Concurrency => 1.0,
            Load::Rate => (max - min) / 32.0,
        }
    }
}

/// What the search found.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub slo: Slo,
    pub load: Load,
    /// Highest level measured that meets the SLO below the lowest one that misses it; `None`
    /// when even the lowest level misses.
    pub found: Option<f64>,
    /// `true` when the top of the range still met the SLO (capacity is at least `max`).
    pub is_at_max: bool,
    /// Every measured level, ascending: (level, metric value).
    pub levels: Vec<(f64, f64)>,
}

impl Capacity {
    /// The form a trial stores: a capacity of 0 when even the lowest level missed the SLO.
    pub fn figure(self) -> measure::CapacityFigure {
        measure::CapacityFigure {
            value: self.found.unwrap_or(0.0),
            load: self.load,
            slo_metric: self.slo.metric,
            is_at_max: self.is_at_max,
            levels: self.levels,
        }
    }
}

/// One level, as the caller measured it.
pub enum Level<R> {
    /// The SLO metric's value at this level, and whatever the caller keeps of the run.
    Measured { value: f64, run: R },
    /// The search cannot go on (e.g. the server exited); `run` is what was measured, if anything.
    Stopped { run: R, reason: String },
}

/// The capacity with the run behind the reported level.
pub struct Found<R> {
    pub capacity: Capacity,
    /// The run at the capacity (or at the lowest level, when even that misses the SLO; or the
    /// run that stopped the search).
    pub run: R,
    /// Why the search stopped early, if it did.
    pub stopped: Option<String>,
}

struct Bridge {
    levels: mpsc::Sender<f64>,
    values: std::sync::Mutex<mpsc::Receiver<f64>>,
}

impl CostFunction for Bridge {
    type Param = f64;
    type Output = f64;

    fn cost(&self, x: &f64) -> Result<f64, ArgminError> {
        self.levels.blocking_send(*x).map_err(|_| ArgminError::msg("capacity search cancelled"))?;
        let mut rx = self.values.lock().map_err(|_| ArgminError::msg("poisoned"))?;
        rx.blocking_recv().ok_or_else(|| ArgminError::msg("capacity search cancelled"))
    }
}

/// `f(load)` from a measured metric: ≤ 0 when the SLO holds.
pub fn slack(slo: &Slo, value: f64) -> f64 {
    if slo.is_upper_bound { value - slo.limit } else { slo.limit - value }
}

/// The capacity from measured levels (ascending): the highest passing level below the lowest
/// failing one.
pub fn capacity_of(slo: &Slo, levels: &[(f64, f64)]) -> Option<f64> {
    let first_fail = levels.iter().find(|(_, v)| slack(slo, *v) > 0.0).map(|(l, _)| *l);
    levels
        .iter()
        .filter(|(l, v)| slack(slo, *v) <= 0.0 && first_fail.is_none_or(|f| *l < f))
        .map(|(l, _)| *l)
        .reduce(f64::max)
}

/// Search `min..=max` for the highest `load` level at which `slo` holds; `measure(level, k)`
/// measures level number `k` (0-based) once. An `Err` from `measure` ends the search with it.
pub async fn find<R, F, Fut>(slo: &Slo, load: Load, min: f64, max: f64, mut measure: F) -> anyhow::Result<Found<R>>
where
    F: FnMut(f64, u64) -> Fut,
    Fut: Future<Output = anyhow::Result<Level<R>>>,
{
    load.check_range(min, max).map_err(anyhow::Error::msg)?;
    let (level_tx, mut level_rx) = mpsc::channel::<f64>(1);
    let (value_tx, value_rx) = mpsc::channel::<f64>(1);
    let bridge = Bridge { levels: level_tx, values: std::sync::Mutex::new(value_rx) };
    let tol = load.tolerance(min, max);
    let solver_thread = std::thread::Builder::new()
        .name("capacity".into())
        .spawn(move || {
            // Stop once the bracket is about one level wide.
            let solver = BrentRoot::new(min, max, tol);
            Executor::new(bridge, solver).configure(|s| s.max_iters(MAX_LEVELS)).ctrlc(false).run().map(|_| ())
        })
        .context("starting the capacity solver thread")?;
    let mut levels: Vec<(f64, f64)> = Vec::new();
    let mut runs: Vec<(f64, R)> = Vec::new();
    let mut outcome: anyhow::Result<Option<String>> = Ok(None);
    while let Some(x) = level_rx.recv().await {
        let level = load.level(x, min, max);
        let value = match levels.iter().find(|(l, _)| *l == level) {
            Some((_, v)) => *v,
            None => match measure(level, runs.len() as u64).await {
                Ok(Level::Measured { value, run }) => {
                    tracing::info!(?load, level, value, metric = %slo.metric, "capacity level measured");
                    levels.push((level, value));
                    levels.sort_by(|a, b| a.0.total_cmp(&b.0));
                    runs.push((level, run));
                    value
                }
                Ok(Level::Stopped { run, reason }) => {
                    runs.push((level, run));
                    outcome = Ok(Some(reason));
                    break;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            },
        };
        if value_tx.send(slack(slo, value)).await.is_err() {
            break;
        }
    }
    drop(value_tx);
    drop(level_rx);
    // WrongSign (both ends pass or both fail) is an answer, not an error: read it off the levels.
    let _ = solver_thread.join();
    let stopped = outcome?;
    let is_at_max = levels.last().is_some_and(|(l, v)| *l == max && slack(slo, *v) <= 0.0);
    let found = capacity_of(slo, &levels);
    // The run at the capacity, else the one that ended the search, else the lowest.
    let pick = match (found, &stopped) {
        (Some(f), None) => runs.iter().position(|(l, _)| *l == f),
        (_, Some(_)) => runs.len().checked_sub(1),
        (None, None) => runs.iter().enumerate().min_by(|a, b| a.1.0.total_cmp(&b.1.0)).map(|(i, _)| i),
    }
    .context("the capacity search measured no level")?;
    let run = runs.swap_remove(pick).1;
    Ok(Found { capacity: Capacity { slo: slo.clone(), load, found, is_at_max, levels }, run, stopped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Metric;

    fn ttft(limit: f64) -> Slo {
        Slo { metric: Metric::TtftP95Ms, is_upper_bound: true, limit }
    }

    #[test]
    fn capacity_is_the_last_pass_before_the_first_fail() {
        let slo = ttft(1000.0);
        let levels = [(1.0, 200.0), (4.0, 600.0), (5.0, 900.0), (6.0, 1200.0), (9.0, 800.0), (16.0, 4000.0)];
        // 9 passes again (noise), but lies above the first failing level 6
        assert_eq!(capacity_of(&slo, &levels), Some(5.0));
        assert_eq!(capacity_of(&slo, &[(1.0, 1500.0)]), None);
        let rate = Slo { metric: Metric::SuccessRate, is_upper_bound: false, limit: 1.0 };
        assert_eq!(slack(&rate, 0.9), 1.0 - 0.9);
        assert_eq!(capacity_of(&rate, &[(1.0, 1.0), (8.0, 1.0)]), Some(8.0));
    }

    #[test]
    fn levels_are_whole_clients_or_steps_of_the_rate_range() {
        assert_eq!(Load::Concurrency.level(3.4, 1.0, 16.0), 3.0);
        assert_eq!(Load::Concurrency.level(0.2, 1.0, 16.0), 1.0);
        // rate steps of (8 - 0) / 32 = 0.25 req/s
        assert_eq!(Load::Rate.level(2.3, 0.0, 8.0), 2.25);
        assert_eq!(Load::Rate.level(8.1, 0.0, 8.0), 8.0);
        assert_eq!(Load::Rate.tolerance(0.0, 8.0), 0.25);
        assert_eq!(Load::Rate.level(0.99, 0.1, 1.0), 1.0);
        assert_eq!(Load::Rate.level(0.0, 0.1, 1.0), 0.1);
    }

    /// Brent over the channel bridge finds the step of a monotone function in a few levels:
    /// TTFT grows by 100 ms per concurrent request, so the capacity at 1000 ms is 10.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn brent_finds_the_step_and_keeps_the_run_at_the_capacity() {
        let slo = ttft(1000.0);
        let found = find(&slo, Load::Concurrency, 1.0, 64.0, |level, _| async move {
            Ok(Level::Measured { value: 100.0 * level, run: level })
        })
        .await
        .unwrap();
        assert_eq!(found.capacity.found, Some(10.0), "{:?}", found.capacity.levels);
        assert_eq!(found.run, 10.0);
        assert!(found.capacity.levels.len() <= MAX_LEVELS as usize + 2, "{:?}", found.capacity.levels);
        assert!(!found.capacity.is_at_max && found.stopped.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_level_ends_the_search_with_its_run() {
        let slo = ttft(1000.0);
        let found = find(&slo, Load::Concurrency, 1.0, 16.0, |level, k| async move {
            if k == 1 {
                Ok(Level::Stopped { run: level, reason: "server exited".into() })
            } else {
                Ok(Level::Measured { value: 10.0 * level, run: level })
            }
        })
        .await
        .unwrap();
        assert_eq!(found.stopped.as_deref(), Some("server exited"));
        assert_eq!(found.capacity.levels.len(), 1);
    }
}
