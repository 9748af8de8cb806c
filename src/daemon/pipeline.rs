//! One trial, as a chain of stages: plan → start (or reuse/reload) and preload → measure →
//! check for a crash → grade. Each stage returns its value or the trial's outcome; an early
//! `return` carries a result (a bad configuration is data), never an error. `Err` is kept for
//! infrastructure failures: the backend program cannot be run, no port, the store.

use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::info;

use super::{capacity, quality};
use crate::backend::session::{Ready, ServerSession, Start};
use crate::backend::{Backend, Failure, FailureClass, LaunchPlan};
use crate::measure::probe::{Probe, ProbeSpec, ServerSide};
use crate::measure::{self, CapacityFigure, ErrorKind, RequestSlo, TrialParts, gpu};
use crate::shutdown::Shutdown;
use crate::space::{Candidate, Space};
use crate::store::Store;
use crate::trial::{InfeasibleClass, Outcome, StageTimes, TrialId};
use crate::workload::replay::Prepared;
use crate::workload::trace::Trace;
use crate::workload::{self, Prompt, Target, prune};

/// The parts every trial of a command shares.
pub(super) struct Bench<'a> {
    pub space: &'a Space,
    pub backend: &'a dyn Backend,
    pub client: reqwest::Client,
    pub prompts: Vec<Prompt>,
    pub request_slo: RequestSlo,
    pub shutdown: &'a Shutdown,
    /// The quantization quality guard, when the study runs one.
    pub guard: Option<quality::Guard>,
    /// Whether a workload may stop early once its TTFT SLO is certain to fail. Only the search
    /// prunes; re-measurement (compare, validate) never does: a missed SLO is data there.
    pub prune: bool,
    /// The `[workload] trace`, read once; `None` for a dataset workload.
    pub trace: Option<Trace>,
    /// The server's tokenizer words and chat overhead for trace replay, found once per server
    /// start (reused while the server is).
    pub prepared: tokio::sync::Mutex<Option<Prepared>>,
}

impl<'a> Bench<'a> {
    /// The HTTP client, prompts and per-request SLOs for `space`; no quality guard, no pruning.
    pub fn new(space: &'a Space, backend: &'a dyn Backend, shutdown: &'a Shutdown) -> anyhow::Result<Bench<'a>> {
        Ok(Bench {
            space,
            backend,
            client: workload::http_client()?,
            // A trace replay sends the trace's own prompts; only the capacity search still needs the dataset.
            prompts: if space.workload.trace.is_some() && space.capacity.is_none() {
                Vec::new()
            } else {
                workload::load_dataset(&space.workload.dataset)?
            },
            request_slo: RequestSlo::from_slos(&space.slos),
            shutdown,
            guard: None,
            prune: false,
            trace: space.workload.trace.as_ref().map(workload::replay::load).transpose()?,
            prepared: tokio::sync::Mutex::new(None),
        })
    }
}

impl Bench<'_> {
    /// What a capacity search's levels share with the trial.
    fn shared(&self) -> capacity::Shared<'_> {
        capacity::Shared { client: &self.client, prompts: &self.prompts, request_slo: &self.request_slo }
    }
}

/// One trial's result, before it is stored.
pub(super) struct TrialRun {
    pub outcome: Outcome,
    pub plan: Option<LaunchPlan>,
    pub stages: StageTimes,
    pub samples: Vec<measure::Sample>,
}

impl TrialRun {
    pub fn interrupted(plan: Option<LaunchPlan>, stages: StageTimes) -> TrialRun {
        TrialRun { outcome: Outcome::Interrupted, plan, stages, samples: Vec::new() }
    }

    pub fn infeasible(
        class: InfeasibleClass,
        message: String,
        plan: Option<LaunchPlan>,
        stages: StageTimes,
    ) -> TrialRun {
        info!(%class, message = %message, "trial infeasible");
        TrialRun { outcome: Outcome::Infeasible { class, message }, plan, stages, samples: Vec::new() }
    }

    fn failed(failure: Failure, plan: LaunchPlan, stages: StageTimes) -> TrialRun {
        TrialRun::infeasible(InfeasibleClass::Server(failure.class), failure.message, Some(plan), stages)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Serve `candidate` on `session`'s server (started, reused or reloaded as the plan needs) and
/// measure it. The server stays up in `session` for the next trial. `draw` picks the trial's own
/// prompts (DESIGN.md §5: prompt reuse is never an accident of trial order). `record` names the
/// stored trial, whose server PID is recorded so a resume can reap it.
pub(super) async fn run_trial(
    bench: &Bench<'_>,
    session: &mut ServerSession<'_>,
    candidate: &Candidate,
    draw: u64,
    record: Option<(&Store, TrialId)>,
) -> anyhow::Result<TrialRun> {
    let plan = match bench.backend.plan(candidate) {
        Ok(plan) => plan,
        Err(r) => {
            let class = InfeasibleClass::Server(FailureClass::InvalidCombination);
            return Ok(TrialRun::infeasible(class, r.message, None, StageTimes::default()));
        }
    };
    let gpu_baseline = gpu_before_start(bench, session, &plan).await;
    let ready = match session.start(&plan, bench.shutdown).await? {
        Start::Ready(ready) => ready,
        Start::Failed { failure, launch, ready_ms } => {
            let stages = StageTimes { launch: Some(launch), ready_ms, ..StageTimes::default() };
            return Ok(TrialRun::failed(failure, plan, stages));
        }
        Start::Interrupted { launch } => {
            return Ok(TrialRun::interrupted(Some(plan), StageTimes { launch: Some(launch), ..StageTimes::default() }));
        }
    };
    let mut stages = StageTimes {
        launch: Some(ready.launch),
        ready_ms: ready.ready_ms,
        load_ms: ready.load_ms,
        ..StageTimes::default()
    };
    if let (Some((store, trial_id)), Some(pid)) = (record, session.spawned_pid()) {
        store.set_server_pid(trial_id, Some(pid)).await?;
    }
    let started = Instant::now();
    let measured = measure(bench, session, &ready, &plan, draw, gpu_baseline).await;
    stages.workload_ms = Some(ms(started.elapsed()));
    let measured = match measured {
        Measured::Done(m) => *m,
        Measured::Interrupted => {
            session.close(bench.shutdown).await;
            return Ok(TrialRun::interrupted(Some(plan), stages));
        }
        // The capacity search or a trace replay could not measure (e.g. the client fell behind its schedule).
        Measured::Unmeasured(class, e) => {
            return Ok(TrialRun::infeasible(class, e, Some(plan), stages));
        }
        Measured::Failed(e) => {
            session.close(bench.shutdown).await;
            return Err(e);
        }
    };
    // Failed requests may mean the server is dying: give it a moment to show it.
    let settle =
        if measured.run.samples.iter().any(|s| !s.is_ok()) { Duration::from_millis(500) } else { Duration::ZERO };
    if let Some(failure) = session.crash_after_workload(settle, bench.shutdown).await {
        return Ok(TrialRun { samples: measured.run.samples, ..TrialRun::failed(failure, plan, stages) });
    }
    Ok(grade(bench, session, &ready.target, measured, plan, stages).await)
}

/// GPU memory in use before a restart (the previous trial's must have been freed).
async fn gpu_before_start(bench: &Bench<'_>, session: &ServerSession<'_>, plan: &LaunchPlan) -> Option<gpu::GpuMemory> {
    let restarts = session.launch_for(plan) == crate::backend::Launch::Restart;
    if bench.backend.samples_gpu() && restarts { gpu::query(&plan.env).await } else { None }
}

/// What the measure stage produced.
enum Measured {
    Done(Box<Workload>),
    Interrupted,
    Unmeasured(InfeasibleClass, String),
    /// The workload could not be built (e.g. the server's tokenizer for a trace): not a result.
    Failed(anyhow::Error),
}

/// A trace replay whose client fell behind its schedule twice: the trial is `client-behind`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ClientBehind(String);

/// A workload run with the probe's figures around it.
struct Workload {
    run: workload::Run,
    is_pruned: bool,
    capacity: Option<CapacityFigure>,
    server: ServerSide,
    replay: Option<measure::ReplayFigure>,
}

/// Probe start → workload (or, for `maximize = "capacity"`, a load search on this server) →
/// probe finish.
async fn measure(
    bench: &Bench<'_>,
    session: &mut ServerSession<'_>,
    ready: &Ready,
    plan: &LaunchPlan,
    draw: u64,
    gpu_baseline: Option<gpu::GpuMemory>,
) -> Measured {
    let backend = bench.backend;
    let spec = ProbeSpec {
        base_url: ready.target.base_url.clone(),
        version_path: backend.version_path(),
        metrics_path: backend.metrics_path(),
        memory_pid: session.memory_pid(),
        gpu_env: backend.samples_gpu().then(|| plan.env.clone()),
        gpu_baseline,
    };
    let probe = Probe::start(&bench.client, spec).await;
    let mut workload_spec = bench.space.workload.clone();
    workload_spec.draw = draw;
    let space = bench.space;
    let result = tokio::select! {
        r = async {
            match &space.capacity {
                None if bench.trace.is_some() => {
                    let fresh = ready.launch != crate::backend::Launch::Reuse;
                    replay(bench, &ready.target, fresh, &workload_spec).await.map(|(run, figure)| (run, false, None, Some(figure)))
                }
                None => {
                    let ttft_limit_ms = if bench.prune { prune::ttft_p95_limit_ms(&space.slos) } else { None };
                    let (run, is_pruned) =
                        prune::run(&bench.client, &ready.target, &bench.prompts, &workload_spec, ttft_limit_ms).await;
                    Ok((run, is_pruned, None, None))
                }
                Some(capacity) => capacity::on_server(bench.shared(), &ready.target, &workload_spec, capacity, session)
                    .await
                    .map(|found| (found.run, false, Some(found.capacity.figure()), None)),
            }
        } => Some(r),
        _ = bench.shutdown.graceful.cancelled() => None,
    };
    let server = probe.finish().await;
    match result {
        None => Measured::Interrupted,
        Some(Err(_)) if bench.shutdown.is_requested() => Measured::Interrupted,
        Some(Err(e)) if space.capacity.is_some() => {
            Measured::Unmeasured(InfeasibleClass::CapacityUnmeasured, format!("{e:#}"))
        }
        Some(Err(e)) if e.downcast_ref::<ClientBehind>().is_some() => {
            Measured::Unmeasured(InfeasibleClass::ClientBehind, format!("{e:#}"))
        }
        Some(Err(e)) => Measured::Failed(e),
        Some(Ok((run, is_pruned, capacity, replay))) => {
            Measured::Done(Box::new(Workload { run, is_pruned, capacity, server, replay }))
        }
    }
}

/// Replay the study's trace on the server at `target` (`fresh`: started anew since the last
/// replay): the tokenizer's words once per server start, then the trace's requests on their
/// schedule. As for open-loop capacity levels, a late wake-up of the client (a busy host) spoils
/// one run, so a run that fell behind is replayed once more on fresh prompts; a client that
/// falls behind twice is an error (the trial is `client-behind`), never a slower result.
pub(super) async fn replay(
    bench: &Bench<'_>,
    target: &Target,
    fresh: bool,
    spec: &crate::space::WorkloadSpec,
) -> anyhow::Result<(workload::Run, measure::ReplayFigure)> {
    let trace = bench.trace.as_ref().expect("replay runs only with a trace");
    let mut prepared = bench.prepared.lock().await;
    let needs_tokenizer = trace.requests.iter().any(|r| r.text.is_none());
    if needs_tokenizer && (prepared.is_none() || fresh) {
        *prepared = Some(Prepared::on(&bench.client, target, spec).await.context("preparing trace prompts")?);
    }
    let control = bench.backend.output_control();
    let mut lateness = Vec::new();
    for attempt in 0..2u64 {
        let mut spec = spec.clone();
        // The second run draws fresh prompt blocks: the first run's prefixes must not flatter it.
        spec.draw = spec.draw.wrapping_add(attempt << 32);
        let (open, figure) =
            workload::replay::run(&bench.client, target, &spec, trace, prepared.as_ref(), control).await?;
        if open.is_valid {
            return Ok((open.run, figure));
        }
        lateness.push(format!("{:.1} ms", open.lateness_ms.p99));
    }
    Err(ClientBehind(format!(
        "the client fell behind the trace's schedule in two runs (lateness p99 {}, > {} ms): the figures would describe the client, not the server; raise time_scale or shorten the window",
        lateness.join(" and "),
        workload::open_loop::max_lateness_p99().as_millis()
    ))
    .into())
}

/// Quality answers (before the server is touched again), the summary from its parts, and the
/// verdict against the space's objective and SLOs. A server that served no request at all gets
/// an infeasible outcome, whatever it says.
async fn grade(
    bench: &Bench<'_>,
    session: &mut ServerSession<'_>,
    target: &Target,
    measured: Workload,
    plan: LaunchPlan,
    stages: StageTimes,
) -> TrialRun {
    let space = bench.space;
    let quality = match &bench.guard {
        Some(guard) => Some(guard.score(&guard.answers(&bench.client, target, space.workload.request_timeout).await)),
        None => None,
    };
    let model_memory = bench.backend.model_memory(&bench.client, target).await;
    let Workload { run, is_pruned, capacity, server, replay } = measured;
    let parts = TrialParts { samples: &run.samples, wall: run.wall, server, capacity, quality, model_memory };
    let mut summary = measure::summarize_trial(parts, &bench.request_slo);
    summary.replay = replay;
    if summary.succeeded == 0 && summary.requests > 0 {
        // Nothing was served: the configuration does not work. Not worth keeping for the next trial.
        session.close(bench.shutdown).await;
        let (kind, message) = all_failed(&summary, &run.samples);
        return TrialRun {
            samples: run.samples,
            ..TrialRun::infeasible(InfeasibleClass::Requests(kind), message, Some(plan), stages)
        };
    }
    let verdict = measure::judge(&summary, &space.objective, &space.slos);
    info!(
        ttft_p95_ms = summary.ttft_ms.p95,
        output_tok_per_s = summary.output_tok_per_s,
        success_rate = summary.success_rate,
        violation = verdict.violation,
        launch = stages.launch.map_or("-", |l| l.as_str()),
        "trial measured"
    );
    let outcome = if is_pruned { Outcome::Pruned { summary, verdict } } else { Outcome::Complete { summary, verdict } };
    TrialRun { outcome, plan: Some(plan), stages, samples: run.samples }
}

/// The most common error kind and a one-line message for a run whose every request failed.
fn all_failed(summary: &measure::Summary, samples: &[measure::Sample]) -> (ErrorKind, String) {
    let (name, n) = summary.errors.iter().max_by_key(|(_, n)| **n).map(|(k, n)| (k.clone(), *n)).unwrap_or_default();
    let kind = ErrorKind::from_name(&name).expect("summary errors are keyed by error kind names");
    let example = samples.iter().filter(|s| !s.is_warmup).find_map(|s| s.error_message.clone()).unwrap_or_default();
    let message = format!("all {} requests failed ({n} x {name}): {example}", summary.requests);
    (kind, message)
}

/// Run `candidate` once on a fresh server and stop it: re-measurement (compare, validate) and
/// anything else that must not inherit a warm server or a prompt cache.
pub(super) async fn run_fresh(bench: &Bench<'_>, candidate: &Candidate, draw: u64) -> anyhow::Result<TrialRun> {
    let mut session = ServerSession::open(bench.backend, bench.client.clone()).context("opening a server session")?;
    let run = run_trial(bench, &mut session, candidate, draw, None).await;
    session.finish(bench.shutdown, None, false).await?;
    run
}

#[cfg(test)]
mod tests {
    //! `run_trial`'s real path (plan → session start → probe + workload → crash check → grade)
    //! without an engine: the llama.cpp adapter launches the fake llama-server test fixture (a
    //! Python stdlib script that starts in tens of milliseconds and misbehaves on request).

    use super::*;
    use crate::space::Value;

    fn space(dir: &std::path::Path) -> Space {
        let text = format!(
            r#"[study]
name = "pipeline"
strategy = "grid"

[backend]
kind = "llamacpp"
command = ["{fake}"]
model = "{dir}/fake.gguf"
ready_timeout = "3s"

[params]
fault = {{ values = ["none", "crash-mid", "exit-at-start", "never-ready"], flag = "--fault" }}
kv = {{ values = ["f16", "q8_0"], flags = ["-ctk", "-ctv"], default = "f16" }}
fa = {{ values = ["on", "off"], flag = "-fa", default = "on" }}

[workload]
dataset = "{prompts}"
concurrency = 2
requests = 6
warmup = 0
max_tokens = 4
request_timeout = "2s"

[slo]
ttft_p95_ms = 60000
"#,
            fake = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-llama-server"),
            dir = dir.display(),
            prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/prompts/short-qa.jsonl"),
        );
        Space::from_toml(&text, "pipeline test", dir).unwrap()
    }

    fn candidate(fault: &str, kv: &str, fa: &str) -> Candidate {
        let pairs = [("fault", fault), ("kv", kv), ("fa", fa)];
        Candidate(pairs.iter().map(|(k, v)| (k.to_string(), Value::Str(v.to_string()))).collect())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stages_end_in_the_outcome_each_failure_calls_for() {
        let dir = tempfile::tempdir().unwrap();
        let space = space(dir.path());
        let backend = crate::backend::from_spec(&space.backend, &space.params);
        let shutdown = Shutdown::manual();
        let bench = Bench::new(&space, backend.as_ref(), &shutdown).unwrap();
        let mut session = ServerSession::open(backend.as_ref(), bench.client.clone()).unwrap();
        let mut run = async |c: Candidate| run_trial(&bench, &mut session, &c, 1, None).await.unwrap();

        // planned, started, measured, graded; the server stays up for the next trial
        let ok = run(candidate("none", "f16", "on")).await;
        let Outcome::Complete { summary, verdict } = &ok.outcome else { panic!("{:?}", ok.outcome) };
        assert_eq!((summary.requests, summary.succeeded), (6, 6));
        assert!(verdict.is_feasible() && summary.peak_rss_bytes > 0, "{summary:?}");
        assert_eq!(ok.stages.launch, Some(crate::backend::Launch::Restart));
        assert_eq!(ok.samples.len(), 6);
        // the plan stage refuses a known-invalid combination: no server is started
        let refused = run(candidate("none", "q8_0", "off")).await;
        assert!(
            matches!(&refused.outcome, Outcome::Infeasible { class, .. } if class.to_string() == "invalid-combination")
        );
        assert_eq!((refused.plan.is_none(), refused.stages.launch), (true, None));
        // the start stage classifies a server that exits or never gets ready
        let exited = run(candidate("exit-at-start", "f16", "on")).await;
        assert!(
            matches!(&exited.outcome, Outcome::Infeasible { class, .. } if class.to_string() == "crashed"),
            "{:?}",
            exited.outcome
        );
        let never = run(candidate("never-ready", "f16", "on")).await;
        assert!(
            matches!(&never.outcome, Outcome::Infeasible { class, .. } if class.to_string() == "never-ready"),
            "{:?}",
            never.outcome
        );
        // the crash check after the workload reads the server's last words
        let crashed = run(candidate("crash-mid", "f16", "on")).await;
        let Outcome::Infeasible { class, message } = &crashed.outcome else { panic!("{:?}", crashed.outcome) };
        assert_eq!(class.to_string(), "crashed");
        assert!(message.contains("server exited during the workload") && message.contains("GGML_ASSERT"), "{message}");
        assert!(!crashed.samples.is_empty(), "the samples of a crashed run are kept");
        session.finish(&shutdown, None, false).await.unwrap();
    }

    /// Re-measurement never prunes (issue 13 item 3): with a TTFT limit every request misses,
    /// the search's workload stops early and is `pruned`, while a re-measure runs to the end and
    /// is a complete run that misses its SLO.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_search_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let mut space = space(dir.path());
        space.slos[0].limit = 0.001;
        let backend = crate::backend::from_spec(&space.backend, &space.params);
        let shutdown = Shutdown::manual();
        let mut bench = Bench::new(&space, backend.as_ref(), &shutdown).unwrap();
        let fine = candidate("none", "f16", "on");
        let remeasured = run_fresh(&bench, &fine, 1).await.unwrap();
        let Outcome::Complete { summary, verdict } = &remeasured.outcome else { panic!("{:?}", remeasured.outcome) };
        assert_eq!(summary.requests, 6);
        assert!(!verdict.is_feasible());
        bench.prune = true;
        let searched = run_fresh(&bench, &fine, 1).await.unwrap();
        let Outcome::Pruned { summary, .. } = &searched.outcome else { panic!("{:?}", searched.outcome) };
        assert!(summary.requests < 6, "{summary:?}");
    }
}
