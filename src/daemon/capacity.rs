//! Capacity on the live backend: `search::capacity`'s Brent search over the load, each level
//! measured on one running server. The load is closed-loop concurrency (clients that each wait
//! for their answer) or an open-loop Poisson request rate (`workload::open_loop`: arrivals do not
//! wait, so a slow server builds a queue, as real traffic would).
//!
//! One server serves every level; each level draws its own prompts so the prompt cache does not
//! carry over. Levels are never pruned: a missed SLO is the data the search needs. An open-loop
//! level whose client fell behind its schedule (lateness p99 over 5 ms) is measured once more,
//! and refused if it falls behind again: it measured the client, not the server.

use anyhow::{Context, bail};

use crate::backend::session::{ServerSession, Start};
use crate::measure::{self, RequestSlo};
use crate::search::capacity::{self as brent, Level, MAX_LEVELS};
pub use crate::search::capacity::{Capacity, Found, Load};
use crate::shutdown::Shutdown;
use crate::space::{Candidate, CapacitySpec, Slo, Space, WorkloadSpec};
use crate::workload::{self, Prompt, Target, open_loop};

/// Open-loop levels last at least this many seconds of arrivals.
const MIN_ARRIVAL_SECONDS: f64 = 8.0;

/// Find the capacity of `candidate` for `slo` over `load` levels `min..=max` on a server of its
/// own (`infertune capacity`).
pub async fn search(
    space: &Space,
    candidate: &Candidate,
    slo: &Slo,
    load: Load,
    min: f64,
    max: f64,
    shutdown: &Shutdown,
) -> anyhow::Result<Capacity> {
    load.check_range(min, max).map_err(anyhow::Error::msg)?;
    let backend = crate::backend::from_spec(&space.backend, &space.params);
    let (client, prompts) = (workload::http_client()?, workload::load_dataset(&space.workload.dataset)?);
    let request_slo = RequestSlo::from_slos(&space.slos);
    let shared = Shared { client: &client, prompts: &prompts, request_slo: &request_slo };
    let plan = backend.plan(candidate).map_err(|r| anyhow::anyhow!("configuration rejected: {}", r.message))?;
    let mut session = ServerSession::open(backend.as_ref(), client.clone())?;
    let found = match session.start(&plan, shutdown).await {
        Ok(Start::Ready(ready)) => {
            let spec = CapacitySpec { slo: slo.clone(), load, min, max };
            on_server(shared, &ready.target, &space.workload, &spec, &mut session).await
        }
        Ok(Start::Failed { failure, .. }) => Err(anyhow::anyhow!(
            "the configuration could not be served [{}]: {}",
            failure.class.as_str(),
            failure.message
        )),
        Ok(Start::Interrupted { .. }) => Err(anyhow::anyhow!("interrupted while the server started")),
        Err(e) => Err(e),
    };
    session.finish(shutdown, None, false).await?;
    let found = found?;
    if let Some(reason) = found.stopped {
        bail!("{reason}; levels measured before: {:?}", found.capacity.levels);
    }
    Ok(found.capacity)
}

/// What every level of a load search shares.
#[derive(Clone, Copy)]
pub(super) struct Shared<'a> {
    pub client: &'a reqwest::Client,
    pub prompts: &'a [Prompt],
    pub request_slo: &'a RequestSlo,
}

/// Search `spec`'s load range for the capacity of the server behind `target` (a trial's own
/// server, for `maximize = "capacity"`); the session's server is checked for an exit after each
/// level.
pub(super) async fn on_server(
    shared: Shared<'_>,
    target: &Target,
    workload_spec: &WorkloadSpec,
    spec: &CapacitySpec,
    session: &mut ServerSession<'_>,
) -> anyhow::Result<Found<workload::Run>> {
    let CapacitySpec { slo, load, min, max } = spec;
    let session = std::cell::RefCell::new(session);
    brent::find(slo, *load, *min, *max, |level, k| {
        let session = &session;
        async move {
            let mut level_spec = workload_spec.clone();
            // Each level its own prompts, after the trial's own (one window per level).
            level_spec.draw = workload_spec.draw.wrapping_mul(MAX_LEVELS + 2).wrapping_add(k);
            let run = measure_level(shared, target, level_spec, *load, level).await?;
            if let Some(status) = session.borrow_mut().has_exited() {
                return Ok(Level::Stopped {
                    run,
                    reason: format!("the server exited during the capacity search ({status})"),
                });
            }
            let summary = measure::summarize(&run.samples, run.wall, shared.request_slo);
            if summary.succeeded == 0 {
                // An empty latency distribution reads 0 ms, which would "meet" any limit: a level
                // where nothing was served ends the search instead.
                let errors: Vec<String> = summary.errors.iter().map(|(k, n)| format!("{n} x {k}")).collect();
                let reason = format!("no request succeeded at level {level} ({})", errors.join(", "));
                return Ok(Level::Stopped { run, reason });
            }
            let value =
                slo.metric.value(&summary).with_context(|| format!("metric '{}' is not measured", slo.metric))?;
            Ok(Level::Measured { value, run })
        }
    })
    .await
}

/// One level's workload: `level` closed-loop clients, or Poisson arrivals at `level` req/s
/// (at least [`MIN_ARRIVAL_SECONDS`] of them).
async fn measure_level(
    shared: Shared<'_>,
    target: &Target,
    mut spec: WorkloadSpec,
    load: Load,
    level: f64,
) -> anyhow::Result<workload::Run> {
    let (client, prompts) = (shared.client, shared.prompts);
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
                open_loop::max_lateness_p99().as_millis()
            )
        }
    }
}
