//! Capacity search: the highest closed-loop concurrency at which one SLO still holds, for one
//! configuration on the live backend.
//!
//! It is a 1-D root-finding problem, `f(c) = metric(c) − limit` (sign flipped for lower-bound
//! SLOs), solved with argmin's Brent root finder. Concurrency is an integer, so the solver's
//! real-valued points are rounded and each level is measured once (a cache answers repeats).
//! argmin's executor runs on its own thread; `cost()` sends the level over a channel and blocks
//! until the async side has measured it. One server serves every level; each level draws its
//! own prompt schedule (seed + level) so the prompt cache does not carry over.
//!
//! Rate-based capacity (open-loop Poisson arrivals, `workload::open_loop`) is not built yet:
//! this searches over closed-loop concurrency only.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use argmin::core::{CostFunction, Error as ArgminError, Executor};
use argmin::solver::brent::BrentRoot;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{STOP_GRACE, model_name};
use crate::backend::{self, process::{self, Server}};
use crate::measure::{self, RequestSlo};
use crate::space::{Candidate, Slo, Space};
use crate::workload::{self, Target};

/// Most levels measured in one search (two brackets plus Brent's steps).
const MAX_LEVELS: u64 = 12;

/// What the search found.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub slo: Slo,
    /// Highest concurrency measured that meets the SLO below the lowest one that misses it;
    /// `None` when even the lowest level misses.
    pub concurrency: Option<u32>,
    /// `true` when the top of the range still met the SLO (capacity is at least `max`).
    pub is_at_max: bool,
    /// Every measured level: concurrency → metric value.
    pub levels: BTreeMap<u32, f64>,
}

struct Bridge {
    levels: mpsc::Sender<u32>,
    values: std::sync::Mutex<mpsc::Receiver<f64>>,
}

impl CostFunction for Bridge {
    type Param = f64;
    type Output = f64;

    fn cost(&self, c: &f64) -> Result<f64, ArgminError> {
        self.levels.blocking_send(c.round().max(1.0) as u32).map_err(|_| ArgminError::msg("capacity search cancelled"))?;
        let mut rx = self.values.lock().map_err(|_| ArgminError::msg("poisoned"))?;
        rx.blocking_recv().ok_or_else(|| ArgminError::msg("capacity search cancelled"))
    }
}

/// `f(c)` from a measured metric: ≤ 0 when the SLO holds.
pub fn slack(slo: &Slo, value: f64) -> f64 {
    if slo.is_upper_bound { value - slo.limit } else { slo.limit - value }
}

/// The capacity from measured levels: the highest passing level below the lowest failing one.
pub fn capacity_of(slo: &Slo, levels: &BTreeMap<u32, f64>) -> Option<u32> {
    let first_fail = levels.iter().find(|(_, v)| slack(slo, **v) > 0.0).map(|(c, _)| *c);
    levels.iter().filter(|(c, v)| slack(slo, **v) <= 0.0 && first_fail.is_none_or(|f| **c < f)).map(|(c, _)| *c).max()
}

/// Find the capacity of `candidate` for `slo` over concurrency `min..=max`.
pub async fn search(
    space: &Space,
    candidate: &Candidate,
    slo: &Slo,
    min: u32,
    max: u32,
    cancel: &CancellationToken,
) -> anyhow::Result<Capacity> {
    if min == 0 || min >= max {
        bail!("concurrency range '{min}..{max}' must have 1 <= min < max");
    }
    let backend = backend::from_spec(&space.backend, &space.params);
    let prompts = workload::load_dataset(&space.workload.dataset)?;
    let plan = backend.plan(candidate).map_err(|r| anyhow::anyhow!("configuration rejected: {}", r.message))?;
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().context("building the HTTP client")?;
    let port = process::free_port()?;
    let mut server = Server::spawn(&plan, &backend.bind_args(port), port).context("starting the backend (check [backend] command)")?;
    if let Err(e) = server.wait_ready(&client, backend.health_path(), space.backend.ready_timeout).await {
        let log = server.log.text();
        server.stop(STOP_GRACE).await;
        bail!("the configuration never got ready ({e:?}): {}", backend.classify(&log, true).message);
    }
    let target = Target { protocol: backend.protocol(), base_url: server.url(), model: model_name(&plan.model), options: plan.request_options.clone() };
    let request_slo = RequestSlo::from_slos(&space.slos);

    let (level_tx, mut level_rx) = mpsc::channel::<u32>(1);
    let (value_tx, value_rx) = mpsc::channel::<f64>(1);
    let bridge = Bridge { levels: level_tx, values: std::sync::Mutex::new(value_rx) };
    let (lo, hi) = (min as f64, max as f64);
    let solver_thread = std::thread::Builder::new()
        .name("capacity".into())
        .spawn(move || {
            // tol 1: stop once the bracket is about one level wide.
            Executor::new(bridge, BrentRoot::new(lo, hi, 1.0)).configure(|s| s.max_iters(MAX_LEVELS)).ctrlc(false).run().map(|_| ())
        })
        .context("starting the capacity solver thread")?;

    let mut levels: BTreeMap<u32, f64> = BTreeMap::new();
    let mut failure: Option<anyhow::Error> = None;
    while let Some(level) = level_rx.recv().await {
        let value = match levels.get(&level) {
            Some(v) => *v,
            None => {
                let mut spec = space.workload.clone();
                spec.concurrency = level;
                spec.requests = spec.requests.max(4 * level);
                spec.seed = spec.seed.wrapping_add(level as u64);
                let run = tokio::select! {
                    _ = cancel.cancelled() => { failure = Some(anyhow::anyhow!("interrupted")); break; }
                    run = workload::run(&client, &target, &prompts, &spec) => run,
                };
                if let Some(status) = server.exited() {
                    failure = Some(anyhow::anyhow!("server exited at concurrency {level} ({status})"));
                    break;
                }
                let summary = measure::summarize(&run.samples, run.wall, &request_slo);
                let Some(v) = summary.metric(&slo.metric) else {
                    failure = Some(anyhow::anyhow!("metric '{}' is not measured", slo.metric));
                    break;
                };
                info!(concurrency = level, value = v, metric = %slo.metric, "capacity level measured");
                levels.insert(level, v);
                v
            }
        };
        if value_tx.send(slack(slo, value)).await.is_err() {
            break;
        }
    }
    drop(value_tx);
    drop(level_rx);
    server.stop(STOP_GRACE).await;
    // WrongSign (both ends pass or both fail) is an answer, not an error: read it off the levels.
    let _ = solver_thread.join();
    if let Some(e) = failure {
        return Err(e);
    }
    let is_at_max = levels.get(&max).is_some_and(|v| slack(slo, *v) <= 0.0);
    Ok(Capacity { slo: slo.clone(), concurrency: capacity_of(slo, &levels), is_at_max, levels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_the_last_pass_before_the_first_fail() {
        let slo = Slo { metric: "ttft_p95_ms".into(), is_upper_bound: true, limit: 1000.0 };
        let levels = BTreeMap::from([(1, 200.0), (4, 600.0), (6, 1200.0), (5, 900.0), (9, 800.0), (16, 4000.0)]);
        // 9 passes again (noise), but lies above the first failing level 6
        assert_eq!(capacity_of(&slo, &levels), Some(5));
        assert_eq!(capacity_of(&slo, &BTreeMap::from([(1, 1500.0)])), None);
        let rate = Slo { metric: "success_rate".into(), is_upper_bound: false, limit: 1.0 };
        assert_eq!(slack(&rate, 0.9), 1.0 - 0.9);
        assert_eq!(capacity_of(&rate, &BTreeMap::from([(1, 1.0), (8, 1.0)])), Some(8));
    }

    /// Brent over the channel bridge finds the step of a monotone function in a few levels.
    #[test]
    fn brent_bridge_brackets_the_step() {
        let (level_tx, mut level_rx) = mpsc::channel::<u32>(1);
        let (value_tx, value_rx) = mpsc::channel::<f64>(1);
        let bridge = Bridge { levels: level_tx, values: std::sync::Mutex::new(value_rx) };
        let t = std::thread::spawn(move || {
            let _ = Executor::new(bridge, BrentRoot::new(1.0, 64.0, 1.0)).configure(|s| s.max_iters(MAX_LEVELS)).ctrlc(false).run();
        });
        let slo = Slo { metric: "ttft_p95_ms".into(), is_upper_bound: true, limit: 1000.0 };
        let mut levels = BTreeMap::new();
        // ttft grows linearly: 100 ms per concurrent request, so the capacity is 10
        while let Some(c) = level_rx.blocking_recv() {
            let v = 100.0 * c as f64;
            levels.insert(c, v);
            if value_tx.blocking_send(slack(&slo, v)).is_err() {
                break;
            }
        }
        t.join().unwrap();
        assert_eq!(capacity_of(&slo, &levels), Some(10), "{levels:?}");
        assert!(levels.len() <= MAX_LEVELS as usize + 2, "{levels:?}");
    }
}
