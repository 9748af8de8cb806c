//! The study loop: the only place that wires the stages together.
//!
//! ```text
//! Strategy::propose → Backend::plan → Server::spawn/wait_ready → workload::run (+ RSS sampler)
//!   → measure::summarize → measure::judge → Store::finish_trial → Strategy::observe
//!   → (best changed) export::write_atomic
//! ```
//!
//! A bad configuration is a result: planning refusals, failed starts and crashes become
//! `infeasible` trials. Only infrastructure failures (store, missing program, no port) end a study.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use crate::backend::{self, Backend, LaunchPlan, process::{self, NotReady, Server}};
use crate::export;
use crate::measure::{self, RequestSlo, system};
use crate::search;
use crate::space::{Apply, Candidate, Space, Value};
use crate::store::{Finished, NewStudy, Store};
use crate::trial::{self, Fingerprint, Outcome, StageTimes, Study, Trial};
use crate::workload::{self, Prompt, Target};

/// How long a server gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often peak RSS is sampled during the workload.
const RSS_INTERVAL: Duration = Duration::from_millis(250);

/// Limits given on the command line; they narrow the space file's budget.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stop after this many finished trials in the study (counting earlier runs).
    pub max_trials: Option<u32>,
    /// Stop starting new trials after this long.
    pub max_duration: Option<Duration>,
    /// Override the study name from the space file.
    pub study_name: Option<String>,
}

/// Why a run of the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The trial budget is spent.
    Budget,
    /// The time budget is spent.
    Deadline,
    /// The strategy has nothing left to propose.
    Exhausted,
    /// Stopped by a signal.
    Interrupted,
}

impl Stop {
    pub fn as_str(&self) -> &'static str {
        match self {
            Stop::Budget => "budget",
            Stop::Deadline => "deadline",
            Stop::Exhausted => "exhausted",
            Stop::Interrupted => "interrupted",
        }
    }
}

/// What the loop reports as it goes (the CLI turns these into progress lines).
#[derive(Debug)]
pub enum Event<'a> {
    /// A study was created or resumed (`resumed` = trials already stored).
    Started { study: &'a Study, resumed: usize, interrupted: u64 },
    /// A trial is about to launch.
    TrialStarted { number: i64, candidate: &'a Candidate, planned: Option<u32> },
    /// A trial is stored.
    TrialFinished { trial: &'a Trial, elapsed: Duration, is_new_best: bool },
    /// An output file was rewritten because the best trial changed.
    OutputWritten { path: &'a std::path::Path },
}

/// The result of one run of the loop.
#[derive(Debug)]
pub struct Report {
    pub study: Study,
    pub trials: Vec<Trial>,
    pub stop: Stop,
}

/// Run (or resume) the study described by `space` until a budget ends, the space is exhausted,
/// or `cancel` fires.
pub async fn tune(
    space: &Space,
    store: &Store,
    options: &Options,
    cancel: &CancellationToken,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<Report> {
    let backend = backend::from_spec(&space.backend, &space.params);
    let prompts = workload::load_dataset(&space.workload.dataset)?;
    let name = options.study_name.clone().unwrap_or_else(|| space.name.clone());
    let fingerprint = fingerprint(space, backend.as_ref()).await?;

    let study = match store.study(&name).await? {
        Some(existing) => {
            if existing.space_toml != space.source {
                bail!(
                    "study '{name}' already exists with a different search space; \
                     pick another name with --name, or restore the original file"
                );
            }
            existing
        }
        None => {
            store
                .create_study(&NewStudy {
                    name: &name,
                    backend: &space.backend.kind.to_string(),
                    strategy: &format!("{:?}", space.strategy).to_lowercase(),
                    objective_metric: &space.objective.metric,
                    direction: space.objective.direction,
                    space_toml: &space.source,
                    fingerprint: &fingerprint,
                })
                .await?
        }
    };
    let interrupted = store.mark_interrupted(study.id).await?;
    let mut trials = store.trials(study.id).await?;
    let mut strategy = search::from_space(space);
    for t in &trials {
        strategy.observe(t);
    }
    on_event(Event::Started { study: &study, resumed: trials.len(), interrupted });

    let max_trials = options.max_trials.or(space.max_trials);
    let max_duration = options.max_duration.or(space.max_duration);
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .no_proxy()
        // A fresh loopback connection per request (~0.1 ms): servers close kept-alive
        // connections on their own schedule (cpp-httplib after a few requests), and a request
        // sent on a connection the server just closed would fail without ever reaching it.
        .pool_max_idle_per_host(0)
        .build()
        .context("building the HTTP client")?;
    let request_slo = RequestSlo::from_slos(&space.slos);
    let mut best_number = trial::best(&trials, space.objective.direction)
        .filter(|(_, feasible)| *feasible)
        .map(|(t, _)| t.number);

    let stop = loop {
        let finished = trials.iter().filter(|t| t.ended_at_ms.is_some() && t.state != trial::TrialState::Interrupted).count();
        if max_trials.is_some_and(|m| finished >= m as usize) {
            break Stop::Budget;
        }
        if max_duration.is_some_and(|d| started.elapsed() >= d) {
            break Stop::Deadline;
        }
        if cancel.is_cancelled() {
            break Stop::Interrupted;
        }
        let Some(candidate) = strategy.propose(space) else {
            break Stop::Exhausted;
        };

        let (trial_id, number) = store.begin_trial(study.id, &candidate).await?;
        on_event(Event::TrialStarted { number, candidate: &candidate, planned: max_trials });
        let t0 = Instant::now();
        let span = info_span!("trial", study = %study.name, number, backend = %backend.kind());
        let run = async {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Ok(TrialRun::interrupted()),
                run = run_trial(space, backend.as_ref(), &client, &prompts, &request_slo, &candidate) => run,
            }
        }
        .instrument(span)
        .await?;

        store
            .finish_trial(
                trial_id,
                &Finished {
                    outcome: &run.outcome,
                    plan: run.plan.as_ref(),
                    stages: run.stages,
                    samples: &run.samples,
                },
            )
            .await
            .with_context(|| format!("recording trial {number} of study '{}'", study.name))?;
        trials = store.trials(study.id).await?;
        let stored = trials
            .iter()
            .find(|t| t.id == trial_id)
            .expect("a trial just written is readable")
            .clone();
        strategy.observe(&stored);

        let new_best = trial::best(&trials, space.objective.direction)
            .filter(|(_, feasible)| *feasible)
            .map(|(t, _)| t.number);
        let is_new_best = new_best.is_some() && new_best != best_number;
        on_event(Event::TrialFinished { trial: &stored, elapsed: t0.elapsed(), is_new_best });
        if is_new_best {
            best_number = new_best;
            write_outputs(space, &study, &stored, on_event)?;
        }
        if matches!(run.outcome, Outcome::Interrupted) {
            break Stop::Interrupted;
        }
    };
    store.set_stop_reason(study.id, stop.as_str()).await?;
    info!(study = %study.name, stop = stop.as_str(), trials = trials.len(), "study stopped");
    let study = store.study(&study.name).await?.expect("the study exists");
    Ok(Report { study, trials, stop })
}

/// One trial's result, before it is stored.
struct TrialRun {
    outcome: Outcome,
    plan: Option<LaunchPlan>,
    stages: StageTimes,
    samples: Vec<measure::Sample>,
}

impl TrialRun {
    fn interrupted() -> TrialRun {
        TrialRun { outcome: Outcome::Interrupted, plan: None, stages: StageTimes::default(), samples: Vec::new() }
    }

    fn infeasible(class: &str, message: String, plan: Option<LaunchPlan>, stages: StageTimes) -> TrialRun {
        warn!(class, message = %message, "trial infeasible");
        TrialRun {
            outcome: Outcome::Infeasible { class: class.to_string(), message },
            plan,
            stages,
            samples: Vec::new(),
        }
    }
}

/// Launch, measure and stop one configuration. `Err` only for infrastructure failures.
async fn run_trial(
    space: &Space,
    backend: &dyn Backend,
    client: &reqwest::Client,
    prompts: &[Prompt],
    request_slo: &RequestSlo,
    candidate: &Candidate,
) -> anyhow::Result<TrialRun> {
    let plan = match backend.plan(candidate) {
        Ok(plan) => plan,
        Err(rejection) => {
            return Ok(TrialRun::infeasible("invalid-combination", rejection.message, None, StageTimes::default()));
        }
    };
    // GPU memory in use before this server starts (the previous trial's must have been freed).
    let vram_before = if backend.samples_gpu() { measure::gpu::query(&plan.env).await } else { None };
    let port = process::free_port()?;
    let mut server = match Server::spawn(&plan, &backend.bind_args(port), port) {
        Ok(server) => server,
        Err(e) => return Err(e).context("starting the backend (check [backend] command)"),
    };
    let mut stages = StageTimes::default();
    let request_model = backend.request_model(&plan).unwrap_or_else(|| model_name(&plan.model));
    let ready = match server.wait_ready(client, backend.health_path(), space.backend.ready_timeout).await {
        Ok(ready) => match backend.models_path() {
            Some(path) => wait_model_listed(&mut server, client, path, &request_model, space.backend.ready_timeout).await,
            None => Ok(ready),
        },
        Err(not_ready) => Err(not_ready),
    };
    match ready {
        Ok(ready) => stages.ready_ms = Some(ready.as_secs_f64() * 1000.0),
        Err(not_ready) => {
            let exited = matches!(not_ready, NotReady::Exited(_));
            let log = server.log.clone();
            server.stop(STOP_GRACE).await;
            let failure = backend.classify(&log.text(), exited);
            return Ok(TrialRun::infeasible(failure.class.as_str(), failure.message, Some(plan), stages));
        }
    }

    let target = Target {
        protocol: backend.protocol(),
        base_url: server.url(),
        model: request_model,
        options: plan.request_options.clone(),
    };
    let version = match backend.version_path() {
        // vLLM answers `{"version": "0.33.0"}`; keep plain text as it is.
        Some(path) => fetch_text(client, &format!("{}{path}", server.url())).await.map(|v| {
            serde_json::from_str::<serde_json::Value>(&v)
                .ok()
                .and_then(|d| d["version"].as_str().map(str::to_string))
                .unwrap_or_else(|| v.trim().to_string())
        }),
        None => None,
    };
    let metrics_url = backend.metrics_path().map(|p| format!("{}{p}", server.url()));
    let metrics_before = match &metrics_url {
        Some(url) => fetch_text(client, url).await.map(|t| measure::prom::VllmSnapshot::from_text(&t)),
        None => None,
    };
    let server_sampler = ServerSampler::start(client.clone(), metrics_url.clone(), plan.env.clone(), backend.samples_gpu());
    let cpu_before = system::own_cpu_time();
    let workload_start = Instant::now();
    let mut sampler = system::TreeSampler::new(server.pid());
    let mut peak_rss = sampler.rss_bytes();
    let run = {
        let workload = workload::run(client, &target, prompts, &space.workload);
        tokio::pin!(workload);
        let mut tick = tokio::time::interval(RSS_INTERVAL);
        loop {
            tokio::select! {
                run = &mut workload => break run,
                _ = tick.tick() => peak_rss = peak_rss.max(sampler.rss_bytes()),
            }
        }
    };
    stages.workload_ms = Some(workload_start.elapsed().as_secs_f64() * 1000.0);
    let client_cpu = system::own_cpu_time().saturating_sub(cpu_before);

    let peaks = server_sampler.finish().await;
    let metrics_after = match &metrics_url {
        Some(url) => fetch_text(client, url).await.map(|t| measure::prom::VllmSnapshot::from_text(&t)),
        None => None,
    };
    if let Some(status) = server.exited() {
        let log = server.log.text();
        let failure = backend.classify(&log, true);
        let message = format!("server exited during the workload ({status}): {}", failure.message);
        return Ok(TrialRun { samples: run.samples, ..TrialRun::infeasible(failure.class.as_str(), message, Some(plan), stages) });
    }
    server.stop(STOP_GRACE).await;

    let mut summary = measure::summarize(&run.samples, run.wall, request_slo);
    summary.peak_rss_bytes = peak_rss;
    summary.client_cpu_ms = client_cpu.as_secs_f64() * 1000.0;
    summary.peak_vram_bytes = peaks.vram_used_mib.map(|mib| (mib * 1024.0 * 1024.0) as u64);
    if metrics_url.is_some() || version.is_some() {
        let mut m = match (&metrics_before, &metrics_after) {
            (Some(b), Some(a)) => measure::prom::ServerMetrics::delta(b, a),
            _ => measure::prom::ServerMetrics::default(),
        };
        m.version = version;
        m.kv_cache_usage_peak = match (m.kv_cache_usage_peak, peaks.kv_cache_usage) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        m.vram_baseline_mb = vram_before.map(|g| g.used_mib);
        m.vram_total_mb = peaks.vram_total_mib.or(vram_before.map(|g| g.total_mib));
        summary.server_metrics = Some(m);
    }
    let verdict = measure::judge(&summary, &space.objective, &space.slos);
    info!(
        ttft_p95_ms = summary.ttft_ms.p95,
        output_tok_per_s = summary.output_tok_per_s,
        success_rate = summary.success_rate,
        violation = verdict.violation,
        "trial measured"
    );
    Ok(TrialRun {
        outcome: Outcome::Complete { summary, verdict },
        plan: Some(plan),
        stages,
        samples: run.samples,
    })
}

/// After `/health`, poll `path` (OpenAI `/v1/models`) until it lists `model`, under the same
/// deadline as the health check; a server that serves another model never counts as ready.
async fn wait_model_listed(
    server: &mut Server,
    client: &reqwest::Client,
    path: &str,
    model: &str,
    deadline: Duration,
) -> Result<Duration, NotReady> {
    let url = format!("{}{path}", server.url());
    loop {
        if let Some(status) = server.exited() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(NotReady::Exited(status.code()));
        }
        if let Some(text) = fetch_text(client, &url).await
            && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text)
            && doc["data"].as_array().is_some_and(|d| d.iter().any(|m| m["id"] == model))
        {
            return Ok(server.started.elapsed());
        }
        if server.started.elapsed() >= deadline {
            warn!(model, url = %url, "the server never listed the model");
            return Err(NotReady::Timeout(deadline));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GET `url` and return the body of a 2xx answer.
async fn fetch_text(client: &reqwest::Client, url: &str) -> Option<String> {
    let resp = client.get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.text().await.ok()
}

/// Peaks seen by [`ServerSampler`] during the workload.
#[derive(Debug, Default)]
struct ServerPeaks {
    vram_used_mib: Option<f64>,
    vram_total_mib: Option<f64>,
    kv_cache_usage: Option<f64>,
}

/// Samples GPU memory (`nvidia-smi`) and the KV-cache gauge (`/metrics`) on its own task, so a
/// slow query never stalls the workload.
struct ServerSampler {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<ServerPeaks>,
}

/// How often GPU memory and the KV-cache gauge are sampled during the workload.
const SERVER_SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

impl ServerSampler {
    fn start(client: reqwest::Client, metrics_url: Option<String>, env: BTreeMap<String, String>, gpu: bool) -> ServerSampler {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut peaks = ServerPeaks::default();
            let max = |a: Option<f64>, b: f64| Some(a.map_or(b, |a| a.max(b)));
            let mut tick = tokio::time::interval(SERVER_SAMPLE_INTERVAL);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if gpu && let Some(g) = measure::gpu::query(&env).await {
                    peaks.vram_used_mib = max(peaks.vram_used_mib, g.used_mib);
                    peaks.vram_total_mib = Some(g.total_mib);
                }
                if let Some(url) = &metrics_url
                    && let Some(text) = fetch_text(&client, url).await
                    && let Some(kv) = measure::prom::VllmSnapshot::from_text(&text).kv_cache_usage
                {
                    peaks.kv_cache_usage = max(peaks.kv_cache_usage, kv);
                }
            }
            peaks
        });
        ServerSampler { stop, task }
    }

    async fn finish(self) -> ServerPeaks {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

/// The model name sent in requests: the model file's stem.
fn model_name(model: &str) -> String {
    std::path::Path::new(model)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| model.to_string())
}

/// Rewrite the space's `[output]` files for the new best trial, atomically.
fn write_outputs(
    space: &Space,
    study: &Study,
    best: &Trial,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<()> {
    let files = [
        (&space.output.env_file, export::Format::Env),
        (&space.output.args_file, export::Format::Args),
        (&space.output.json_file, export::Format::Json),
    ];
    for (path, format) in files {
        let Some(path) = path else { continue };
        let text = export::render(study, best, format)?;
        export::write_atomic(path, &text)?;
        on_event(Event::OutputWritten { path });
    }
    Ok(())
}

/// Engine version, model file hashes and host facts.
async fn fingerprint(space: &Space, backend: &dyn Backend) -> anyhow::Result<Fingerprint> {
    let program = &space.backend.command[0];
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(program)
            .args(&space.backend.command[1..])
            .args(backend.version_args())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("'{program} --version' did not answer within 30 s"))?
    .with_context(|| format!("backend program '{program}' could not be run (check [backend] command)"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let engine_version = text
        .lines()
        .find(|l| l.to_ascii_lowercase().contains("version"))
        .or_else(|| text.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("unknown")
        .trim()
        .to_string();

    let mut model_sha256 = BTreeMap::new();
    for path in model_paths(space) {
        let hash = match tokio::fs::read(&path).await {
            Ok(bytes) => tokio::task::spawn_blocking(move || crate::store::sha256_hex(&bytes)).await?,
            Err(_) => "missing".to_string(),
        };
        model_sha256.insert(path, hash);
    }
    Ok(Fingerprint { engine_version, model_sha256, host: system::host() })
}

/// Every model path the space's template parameters can produce.
fn model_paths(space: &Space) -> Vec<String> {
    let mut paths = vec![space.backend.model.clone()];
    for p in &space.params {
        if let Apply::Template(_) = p.apply {
            let placeholder = format!("{{{}}}", p.name);
            let values: Vec<Value> = p.domain.grid_points();
            paths = paths
                .iter()
                .flat_map(|path| values.iter().map(|v| path.replace(&placeholder, &v.to_string())).collect::<Vec<_>>())
                .collect();
        }
    }
    paths
}
