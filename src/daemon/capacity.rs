//! Capacity search: the highest load at which one SLO still holds, for one configuration on the
//! live backend. The load is closed-loop concurrency (clients that each wait for their answer)
//! or an open-loop Poisson request rate (`workload::open_loop`: arrivals do not wait, so a slow
//! server builds a queue, as real traffic would).
//!
//! It is a 1-D root-finding problem, `f(load) = metric(load) − limit` (sign flipped for
//! lower-bound SLOs), solved with argmin's Brent root finder. The solver's real-valued points are
//! rounded to a level (whole clients, or steps of 1/32 of the rate range) and each level is
//! measured once (a cache answers repeats). argmin's executor runs on its own thread; `cost()`
//! sends the level over a channel and blocks until the async side has measured it. One server
//! serves every level; each level draws its own prompt schedule (seed + level) so the prompt
//! cache does not carry over. An open-loop level whose client fell behind its schedule (lateness
//! p99 over 5 ms) is measured once more, and refused if it falls behind again: it measured the
//! client, not the server.

use anyhow::{Context, bail};
use argmin::core::{CostFunction, Error as ArgminError, Executor};
use argmin::solver::brent::BrentRoot;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{STOP_GRACE, model_name};
use crate::backend::{
    self,
    process::{self, Server},
};
use crate::measure::{self, RequestSlo};
pub use crate::space::Load;
use crate::space::{Candidate, Slo, Space};
use crate::workload::{self, Target, open_loop};

/// Most levels measured in one search (two brackets plus Brent's steps).
const MAX_LEVELS: u64 = 12;

/// Open-loop levels last at least this many seconds of arrivals.
const MIN_ARRIVAL_SECONDS: f64 = 8.0;

impl Load {
    /// The measured level for a solver point in `min..=max`.
    fn level(self, x: f64, min: f64, max: f64) -> f64 {
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
    fn tolerance(self, min: f64, max: f64) -> f64 {
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

/// Find the capacity of `candidate` for `slo` over `load` levels `min..=max` on a server of its
/// own (`infertune capacity`).
pub async fn search(
    space: &Space,
    candidate: &Candidate,
    slo: &Slo,
    load: Load,
    min: f64,
    max: f64,
    cancel: &CancellationToken,
) -> anyhow::Result<Capacity> {
    load.check_range(min, max).map_err(anyhow::Error::msg)?;
    let backend = backend::from_spec(&space.backend, &space.params);
    let prompts = workload::load_dataset(&space.workload.dataset)?;
    let plan = backend.plan(candidate).map_err(|r| anyhow::anyhow!("configuration rejected: {}", r.message))?;
    let client =
        reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().context("building the HTTP client")?;
    let port = process::free_port()?;
    let mut server = Server::spawn(&plan, &backend.bind_args(port), port)
        .context("starting the backend (check [backend] command)")?;
    if let Err(e) = server.wait_ready(&client, backend.health_path(), space.backend.ready_timeout).await {
        let log = server.log.text();
        server.stop(STOP_GRACE).await;
        bail!("the configuration never got ready ({e:?}): {}", backend.classify(&log, true).message);
    }
    let target = Target {
        protocol: backend.protocol(),
        base_url: server.url(),
        model: model_name(&plan.model),
        options: plan.request_options.clone(),
    };
    let spec = crate::space::CapacitySpec { slo: slo.clone(), load, min, max };
    let found = on_server(&client, &target, &prompts, space, &spec, Some(&mut server), cancel).await;
    server.stop(STOP_GRACE).await;
    let found = found?;
    if let Some(status) = found.server_exit {
        bail!(
            "the server exited during the capacity search ({status}); levels measured before: {:?}",
            found.capacity.levels
        );
    }
    Ok(found.capacity)
}

/// A capacity search on a running server, with the run behind the reported level.
pub struct Found {
    pub capacity: Capacity,
    /// The workload at the capacity (or at the lowest level, when even that misses the SLO):
    /// the figures the trial is judged by.
    pub run: workload::Run,
    /// Set when the server exited during a level; the search stopped there.
    pub server_exit: Option<String>,
}

/// Search `spec`'s load range for the capacity of the server behind `target` (a trial's own
/// server, for `maximize = "capacity"`). `server`, when the tuner owns the process, is checked
/// for an exit after each level.
pub async fn on_server(
    client: &reqwest::Client,
    target: &Target,
    prompts: &[workload::Prompt],
    space: &Space,
    spec: &crate::space::CapacitySpec,
    mut server: Option<&mut Server>,
    cancel: &CancellationToken,
) -> anyhow::Result<Found> {
    let crate::space::CapacitySpec { slo, load, min, max } = spec.clone();
    let request_slo = RequestSlo::from_slos(&space.slos);
    let (level_tx, mut level_rx) = mpsc::channel::<f64>(1);
    let (value_tx, value_rx) = mpsc::channel::<f64>(1);
    let bridge = Bridge { levels: level_tx, values: std::sync::Mutex::new(value_rx) };
    let tol = load.tolerance(min, max);
    let solver_thread = std::thread::Builder::new()
        .name("capacity".into())
        .spawn(move || {
            // Stop once the bracket is about one level wide.
            Executor::new(bridge, BrentRoot::new(min, max, tol))
                .configure(|s| s.max_iters(MAX_LEVELS))
                .ctrlc(false)
                .run()
                .map(|_| ())
        })
        .context("starting the capacity solver thread")?;

    let mut levels: Vec<(f64, f64)> = Vec::new();
    let mut runs: Vec<(f64, workload::Run)> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    let mut server_exit = None;
    while let Some(x) = level_rx.recv().await {
        let level = load.level(x, min, max);
        let value = match levels.iter().find(|(l, _)| *l == level) {
            Some((_, v)) => *v,
            None => {
                let mut workload_spec = space.workload.clone();
                workload_spec.seed = workload_spec.seed.wrapping_add(level.to_bits());
                let measured = tokio::select! {
                    _ = cancel.cancelled() => { failure = Some(anyhow::anyhow!("interrupted")); break; }
                    run = measure_level(client, target, prompts, workload_spec, load, level) => run,
                };
                let run = match measured {
                    Ok(run) => run,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                if let Some(status) = server.as_mut().and_then(|s| s.exited()) {
                    server_exit = Some(status.to_string());
                    runs.push((level, run));
                    break;
                }
                let summary = measure::summarize(&run.samples, run.wall, &request_slo);
                let Some(v) = summary.metric(&slo.metric) else {
                    failure = Some(anyhow::anyhow!("metric '{}' is not measured", slo.metric));
                    break;
                };
                info!(?load, level, value = v, metric = %slo.metric, "capacity level measured");
                levels.push((level, v));
                levels.sort_by(|a, b| a.0.total_cmp(&b.0));
                runs.push((level, run));
                v
            }
        };
        if value_tx.send(slack(&slo, value)).await.is_err() {
            break;
        }
    }
    drop(value_tx);
    drop(level_rx);
    // WrongSign (both ends pass or both fail) is an answer, not an error: read it off the levels.
    let _ = solver_thread.join();
    if let Some(e) = failure {
        return Err(e);
    }
    let is_at_max = levels.last().is_some_and(|(l, v)| *l == max && slack(&slo, *v) <= 0.0);
    let found = capacity_of(&slo, &levels);
    // The run at the capacity, else the one that ended the search (a crash), else the lowest.
    let pick = match (found, &server_exit) {
        (Some(f), None) => runs.iter().position(|(l, _)| *l == f),
        (_, Some(_)) => Some(runs.len() - 1),
        (None, None) => runs.iter().enumerate().min_by(|a, b| a.1.0.total_cmp(&b.1.0)).map(|(i, _)| i),
    }
    .context("the capacity search measured no level")?;
    let run = runs.swap_remove(pick).1;
    Ok(Found { capacity: Capacity { slo, load, found, is_at_max, levels }, run, server_exit })
}

/// One level's workload: `level` closed-loop clients, or Poisson arrivals at `level` req/s
/// (at least [`MIN_ARRIVAL_SECONDS`] of them).
async fn measure_level(
    client: &reqwest::Client,
    target: &Target,
    prompts: &[workload::Prompt],
    mut spec: crate::space::WorkloadSpec,
    load: Load,
    level: f64,
) -> anyhow::Result<workload::Run> {
    match load {
        Load::Concurrency => {
            spec.concurrency = level as u32;
            spec.requests = spec.requests.max(4 * spec.concurrency);
            Ok(workload::run(client, target, prompts, &spec).await)
        }
        Load::Rate => {
            spec.requests = spec.requests.max((level * MIN_ARRIVAL_SECONDS).ceil() as u32);
            // A late wake-up of the client (a busy host) spoils one run; a client that cannot
            // keep the schedule spoils both, and then the level is refused.
            let mut lateness = Vec::new();
            for _ in 0..2 {
                let open = open_loop::run(client, target, prompts, &spec, level).await?;
                if open.is_valid {
                    return Ok(open.run);
                }
                lateness.push(format!("{:.1} ms", open.lateness_ms.p99));
            }
            bail!(
                "the client fell behind its schedule at {level:.2} req/s (lateness p99 {} in two runs, > {} ms): the figures would describe the client, not the server",
                lateness.join(" and "),
                open_loop::MAX_LATENESS_P99.as_millis()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_the_last_pass_before_the_first_fail() {
        let slo = Slo { metric: "ttft_p95_ms".into(), is_upper_bound: true, limit: 1000.0 };
        let levels = [(1.0, 200.0), (4.0, 600.0), (5.0, 900.0), (6.0, 1200.0), (9.0, 800.0), (16.0, 4000.0)];
        // 9 passes again (noise), but lies above the first failing level 6
        assert_eq!(capacity_of(&slo, &levels), Some(5.0));
        assert_eq!(capacity_of(&slo, &[(1.0, 1500.0)]), None);
        let rate = Slo { metric: "success_rate".into(), is_upper_bound: false, limit: 1.0 };
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

    /// Brent over the channel bridge finds the step of a monotone function in a few levels.
    #[test]
    fn brent_bridge_brackets_the_step() {
        let (level_tx, mut level_rx) = mpsc::channel::<f64>(1);
        let (value_tx, value_rx) = mpsc::channel::<f64>(1);
        let bridge = Bridge { levels: level_tx, values: std::sync::Mutex::new(value_rx) };
        let t = std::thread::spawn(move || {
            let _ = Executor::new(bridge, BrentRoot::new(1.0, 64.0, 1.0))
                .configure(|s| s.max_iters(MAX_LEVELS))
                .ctrlc(false)
                .run();
        });
        let slo = Slo { metric: "ttft_p95_ms".into(), is_upper_bound: true, limit: 1000.0 };
        let mut levels: Vec<(f64, f64)> = Vec::new();
        // ttft grows linearly: 100 ms per concurrent request, so the capacity is 10
        while let Some(x) = level_rx.blocking_recv() {
            let c = Load::Concurrency.level(x, 1.0, 64.0);
            let v = 100.0 * c;
            if !levels.iter().any(|(l, _)| *l == c) {
                levels.push((c, v));
                levels.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            if value_tx.blocking_send(slack(&slo, v)).is_err() {
                break;
            }
        }
        t.join().unwrap();
        assert_eq!(capacity_of(&slo, &levels), Some(10.0), "{levels:?}");
        assert!(levels.len() <= MAX_LEVELS as usize + 2, "{levels:?}");
    }
}
