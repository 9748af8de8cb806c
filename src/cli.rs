//! Command-line interface: clap types, one handler per subcommand, and the table/JSON output.
//!
//! Handlers write to `&mut dyn Write` so tests can capture them. Errors carry context naming
//! the object at fault; `main` prints the whole chain.

mod capacity;
mod landscape;
mod validate;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::daemon::clock::{TimeOfDay, Window};
use crate::daemon::lock::StudyLock;
use crate::daemon::{self, Event, Shutdown};
use crate::export::{self, Format};
use crate::space::{Space, parse_duration};
use crate::store::{self, Store};
use crate::trial::{self, Study, Trial, TrialState};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

/// Tune the serving configuration of an LLM inference server (llama.cpp, Ollama, vLLM).
///
/// A study searches a space of server settings (parallel slots, context, flash attention,
/// KV-cache type, quantization, batch sizes, threads), applies each trial to the live server,
/// measures it under a streaming workload, and keeps every trial in SQLite. The best
/// configuration that meets the SLOs is exported as the file an operator deploys.
#[derive(Debug, Parser)]
#[command(name = "infertune", version, propagate_version = true)]
pub struct Cli {
    /// SQLite database file [default: $XDG_DATA_HOME/infertune/infertune.db]
    #[arg(long, global = true, env = "INFERTUNE_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Log format on stderr (level from INFERTUNE_LOG, default info)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run (or resume) a study: one progress line per trial, the best trial at the end
    ///
    /// Ctrl-C (SIGINT) or SIGTERM stops the running trial's server, records the trial as
    /// interrupted and exits; a second signal stops at once. Running tune again resumes.
    Tune(TuneArgs),
    /// Show a study's progress, also while `tune` runs: trial in flight, counts, best, time left
    Status(StudyArgs),
    /// List studies with their trial counts
    Studies(JsonArg),
    /// List the trials of a study
    Trials(TrialsArgs),
    /// Show the best trial meeting every SLO (or the least-violating one)
    Best(StudyArgs),
    /// Write the best trial (or --trial N) as an env file, command line or JSON
    Export(ExportArgs),
    /// Search-space files
    #[command(subcommand)]
    Space(SpaceCommand),
    /// Write a self-contained HTML report of a study (plots, best vs default, all trials)
    Report(ReportArgs),
    /// Measure one running endpoint (no tuning), like `vllm bench serve`
    Bench(BenchArgs),
    /// Re-measure two trials of a study on fresh servers, interleaved, with a ratio and 95 % CI
    Compare(CompareArgs),
    /// Highest concurrency (or --rate: request rate) at which an SLO holds for a trial's configuration (live backend)
    Capacity(capacity::CapacityArgs),
    /// Re-measure the best trial against the default (interleaved, fresh starts) and store the ratio
    Validate(validate::ValidateArgs),
    /// Write the trials of grid studies as a landscape file (for replay and bench-search)
    #[command(hide = true)]
    RecordLandscape(landscape::RecordLandscapeArgs),
}

/// The wire protocol of `bench --url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// OpenAI chat completions over SSE (llama.cpp, vLLM, Ollama's /v1)
    Openai,
    /// Ollama /api/chat over NDJSON
    Ollama,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of the running server (e.g. http://127.0.0.1:8080)
    #[arg(long)]
    pub url: String,
    /// Wire protocol
    #[arg(long, value_enum, default_value_t = ProtocolArg::Openai)]
    pub protocol: ProtocolArg,
    /// Model name sent in requests [default: the first of GET /v1/models]
    #[arg(long)]
    pub model: Option<String>,
    /// Prompt set: prompts/chat-mix.jsonl, prompts/short-qa.jsonl, prompts/long-rag.jsonl or your JSONL
    #[arg(long, default_value = "prompts/chat-mix.jsonl")]
    pub dataset: PathBuf,
    /// Closed loop: clients in flight at once
    #[arg(long, default_value_t = 4, conflicts_with = "rate")]
    pub concurrency: u32,
    /// Open loop: Poisson arrivals at this many requests per second
    #[arg(long, value_name = "REQ_PER_S")]
    pub rate: Option<f64>,
    /// Measured requests
    #[arg(long, default_value_t = 64, conflicts_with = "duration")]
    pub requests: u32,
    /// Measure for this long instead of a request count (e.g. 60s)
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    /// Warm-up requests, excluded from the figures
    #[arg(long, default_value_t = 4)]
    pub warmup: u32,
    /// Output tokens per request
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Seed of the prompt order and the arrival schedule
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Per-request timeout
    #[arg(long, default_value = "120s", value_parser = parse_duration_arg)]
    pub request_timeout: Duration,
    /// Let the server reuse cached prompt prefixes (llama.cpp cache_prompt)
    #[arg(long)]
    pub prompt_cache: bool,
    /// Store the run in the database as a one-trial study with this name
    #[arg(long, value_name = "STUDY")]
    pub save: Option<String>,
    /// Print JSON (every metric with its definition, sample count and raw values)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Study name
    pub study: String,
    /// Trial numbers: A then B (one trial with --default compares it against the default)
    #[arg(long = "trial", value_name = "N", num_args = 1, required = true)]
    pub trials: Vec<i64>,
    /// Compare the trial against the space's default configuration
    #[arg(long)]
    pub default: bool,
    /// A, B pairs of fresh server starts
    #[arg(long, default_value_t = 3)]
    pub pairs: u32,
    /// The study's space file, to resolve relative paths [default: the stored text, relative to the working directory]
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Study name
    pub study: String,
    /// Write to this file (atomically) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Search-space file (TOML)
    pub space: PathBuf,
    /// Stop after this many finished trials in the study (earlier runs count)
    #[arg(long, value_name = "N")]
    pub max_trials: Option<u32>,
    /// Stop starting trials after this long (e.g. 90m, 8h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub max_duration: Option<Duration>,
    /// Stop starting trials at this local time (HH:MM, e.g. 06:30)
    #[arg(long, value_name = "HH:MM", value_parser = parse_time_of_day)]
    pub until: Option<TimeOfDay>,
    /// Start trials only inside this daily local window (e.g. 22:00-06:30); pause outside it
    #[arg(long, value_name = "HH:MM-HH:MM", value_parser = parse_window)]
    pub window: Option<Window>,
    /// Resume a study even though its space file changed (the changes are printed)
    #[arg(long)]
    pub force: bool,
    /// If the engine, model files or host changed since the study started, start a new linked
    /// study seeded with its best configurations instead of stopping
    #[arg(long)]
    pub retune_on_drift: bool,
    /// Service mode: what the service runs after the study (default: the space's
    /// `[ollama] restore`)
    #[arg(long, value_enum, value_name = "WHAT")]
    pub on_exit: Option<daemon::OnExit>,
    /// When the study ends on its budget, re-measure its best trials against the default in
    /// this many interleaved rounds on fresh server starts (at least 3; 0 = don't) and store
    /// the ratio with its 95 % CI [default: the space's `validate_pairs`, else 0]
    #[arg(long, value_name = "PAIRS", value_parser = parse_validate_pairs)]
    pub validate: Option<u32>,
    /// Answer trials from a recorded landscape (scripts/record-landscape) instead of launching
    /// the backend: try a strategy, budget or SLOs in seconds. Each trial replays one of the
    /// point's recorded runs (seeded by the study's seed), judged against this space's SLOs
    #[arg(long, value_name = "LANDSCAPE.json")]
    pub replay: Option<PathBuf>,
    /// Study name, instead of the one in the space file
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Print the final report as JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StudyArgs {
    /// Study name
    pub study: String,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TrialsArgs {
    /// Study name
    pub study: String,
    /// Sort by this column (best first for throughput-like metrics, lowest first otherwise)
    #[arg(long, value_name = "METRIC", value_parser = clap::builder::PossibleValuesParser::new(store::SORTABLE))]
    pub sort: Option<String>,
    /// Only trials in this state
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub state: Option<TrialState>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Study name
    pub study: String,
    /// What to write
    #[arg(long, value_enum)]
    pub format: Format,
    /// Write to this file (atomically) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Export this trial instead of the best one
    #[arg(long, value_name = "N")]
    pub trial: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum SpaceCommand {
    /// Validate a search-space file and summarise it
    Check {
        /// Search-space file (TOML)
        file: PathBuf,
    },
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

fn parse_validate_pairs(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n == 0 || n >= 3 => Ok(n),
        Ok(n) => Err(format!("'{n}': re-validation needs at least 3 interleaved rounds (0 = off)")),
        Err(_) => Err(format!("'{s}' is not a number of rounds")),
    }
}

fn parse_time_of_day(s: &str) -> Result<TimeOfDay, String> {
    s.parse()
}

fn parse_window(s: &str) -> Result<Window, String> {
    s.parse()
}

fn parse_state(s: &str) -> Result<TrialState, String> {
    s.parse()
}

/// Run a parsed command line.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let db = cli.db.clone().unwrap_or_else(store::default_path);
    match cli.command {
        Command::Space(SpaceCommand::Check { file }) => space_check(&file, out),
        Command::Tune(args) => tune(&db, args, out).await,
        Command::Status(args) => status(&open_store(&db).await?, args, out).await,
        Command::Studies(args) => studies(&open_store(&db).await?, args.json, out).await,
        Command::Trials(args) => trials(&open_store(&db).await?, args, out).await,
        Command::Best(args) => best(&open_store(&db).await?, args, out).await,
        Command::Export(args) => export_cmd(&open_store(&db).await?, args, out).await,
        Command::Report(args) => report_cmd(&open_store(&db).await?, args, out).await,
        Command::Bench(args) => bench(&db, args, out).await,
        Command::Compare(args) => compare(&open_store(&db).await?, args, out).await,
        Command::Capacity(args) => capacity::capacity(&open_store(&db).await?, args, out).await,
        Command::Validate(args) => validate::run(&open_store(&db).await?, args, out).await,
        Command::RecordLandscape(args) => landscape::record(&open_store(&db).await?, args, out).await,
    }
}

async fn open_store(db: &Path) -> anyhow::Result<Store> {
    Store::open(db).await.with_context(|| format!("opening the database '{}'", db.display()))
}

fn space_check(file: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let space = Space::load(file)?;
    writeln!(out, "{}: ok", file.display())?;
    writeln!(out, "study     {} (strategy {:?}, seed {})", space.name, space.strategy, space.seed)?;
    writeln!(out, "backend   {} {}", space.backend.kind, space.backend.command.join(" "))?;
    writeln!(out, "model     {}", space.backend.model)?;
    for p in &space.params {
        let points = p.domain.grid_points();
        writeln!(
            out,
            "param     {:<14} {:<40} via {:?}",
            p.name,
            points.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
            p.apply
        )?;
    }
    writeln!(out, "grid      {} points", space.grid_size())?;
    if let Some((refused, example)) = refused_points(&space) {
        writeln!(
            out,
            "refused   {refused} of {} grid points before launch (never tried): {example}",
            space.grid_size()
        )?;
    }
    writeln!(out, "objective {:?} {}", space.objective.direction, space.objective.metric)?;
    if let Some(c) = &space.capacity {
        let op = if c.slo.is_upper_bound { "<=" } else { ">=" };
        let unit = if c.load == crate::space::Load::Rate { " requests/s (Poisson arrivals)" } else { " clients" };
        writeln!(
            out,
            "capacity  highest load with {} {op} {}, over {}..{}{unit}, searched per trial",
            c.slo.metric, c.slo.limit, c.min, c.max
        )?;
    }
    for slo in &space.slos {
        writeln!(out, "slo       {} {} {}", slo.metric, if slo.is_upper_bound { "<=" } else { ">=" }, slo.limit)?;
    }
    Ok(())
}

/// How many grid points the backend refuses before launch (known-invalid combinations), with
/// the first refusal's message; `None` when none is refused or the grid is too large to walk.
fn refused_points(space: &Space) -> Option<(u64, String)> {
    if space.grid_size() > 100_000 {
        return None;
    }
    let backend = crate::backend::from_spec(&space.backend, &space.params);
    let mut grid = crate::search::grid::Grid::new(space);
    let mut refused = 0;
    let mut example = None;
    while let Some(c) = crate::search::Strategy::propose(&mut grid, space) {
        if let Err(r) = backend.plan(&c) {
            refused += 1;
            example.get_or_insert_with(|| format!("{} ({})", r.message.lines().next().unwrap_or(""), c.brief()));
        }
    }
    example.map(|e| (refused, e))
}

async fn tune(db: &Path, args: TuneArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let space = Space::load(&args.space)?;
    let name = args.name.clone().unwrap_or_else(|| space.name.clone());
    let store = open_store(db).await?;
    let _lock = StudyLock::acquire(db, &name)?;
    let shutdown = Shutdown::listen().context("installing signal handlers")?;
    let options = daemon::Options {
        max_trials: args.max_trials,
        max_duration: args.max_duration,
        until: args.until,
        window: args.window,
        study_name: args.name.clone(),
        force: args.force,
        retune_on_drift: args.retune_on_drift,
        on_exit: args.on_exit,
        // TODO(lead): `tune --skip-missing` (crates branch report); false keeps today's refusal.
        skip_missing: false,
        replay: match &args.replay {
            Some(path) => Some(std::sync::Arc::new(daemon::replay::Replay::load(path, &space)?)),
            None => None,
        },
    };
    let quiet = args.json;
    // In a terminal, a progress bar on stderr; elsewhere (logs, pipes, tests) plain lines.
    let bar = (!quiet && std::io::IsTerminal::is_terminal(&std::io::stdout())).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] trial {pos}/{len} {wide_msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut progress_error = None;
    let mut on_event = |event: Event<'_>| {
        if quiet {
            return;
        }
        if let Some(bar) = &bar {
            match &event {
                Event::Started { resumed, planned, .. } => {
                    bar.set_length(planned.map_or(0, u64::from));
                    bar.set_position(*resumed as u64);
                }
                Event::TrialStarted { number, candidate, .. } => {
                    bar.set_position(*number as u64 - 1);
                    bar.set_message(candidate.brief());
                }
                Event::TrialFinished { trial, .. } => bar.set_position(trial.number as u64),
                _ => {}
            }
        }
        let mut text = Vec::new();
        let printed = print_event(&event, &mut text).and_then(|()| match &bar {
            Some(bar) => bar.suspend(|| out.write_all(&text)),
            None => out.write_all(&text),
        });
        if let Err(e) = printed {
            progress_error.get_or_insert(e);
        }
    };
    let report = daemon::tune(&space, &store, &options, &shutdown, &mut on_event).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report?;
    if let Some(e) = progress_error {
        return Err(e.into());
    }
    // The winner against the default on fresh starts, when the study ran to its end.
    let pairs = args.validate.unwrap_or(space.validate_pairs);
    let ran_to_end = matches!(report.stop, daemon::Stop::Budget | daemon::Stop::Deadline | daemon::Stop::Exhausted);
    // (A replayed study has no server to re-measure.)
    let validation = if pairs > 0 && ran_to_end && args.replay.is_none() && !shutdown.graceful.is_cancelled() {
        if !quiet {
            writeln!(
                out,
                "re-validating the best {} trial(s) against the default: {pairs} interleaved rounds on fresh starts",
                space.validate_top
            )?;
        }
        Some(
            validate::validate_study(&store, &report.study, &space, pairs, space.validate_top, &shutdown.graceful)
                .await,
        )
    } else {
        None
    };
    if args.json {
        let best = trial::best(&report.trials, report.study.direction);
        let doc = json!({
            "study": report.study.name,
            "stop": report.stop.as_str(),
            "trials": report.trials.len(),
            "best": best.map(|(t, feasible)| trial_json(t, feasible)),
            "decode_agreement_median": decode_agreement_median(&report.trials).map(|(m, n)| json!({"median": m, "trials": n})),
            "validation": match &validation {
                Some(Ok(v)) => serde_json::to_value(v)?,
                Some(Err(e)) => json!({"error": format!("{e:#}")}),
                None => serde_json::Value::Null,
            },
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(out, "stopped: {} ({} trials in the study)", report.stop.as_str(), report.trials.len())?;
        if let Some((median, n)) = decode_agreement_median(&report.trials) {
            writeln!(out, "client/server decode rate agreement: median {median:.3} over {n} trials")?;
        }
        print_best(&report.study, &report.trials, out)?;
        match &validation {
            Some(Ok(v)) => validate::print(v, out)?,
            Some(Err(e)) => {
                writeln!(out, "re-validation failed: {e:#} (the study is kept; `infertune validate` retries)")?
            }
            None => {}
        }
    }
    store.close().await;
    if report.stop == daemon::Stop::Drift {
        bail!("the environment changed during the study; resume with --retune-on-drift to start a linked study");
    }
    Ok(())
}

fn print_event(event: &Event<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    match event {
        Event::Started { study, resumed, interrupted, .. } => {
            if *resumed > 0 {
                writeln!(
                    out,
                    "resuming study '{}' ({} trials stored, {} interrupted)",
                    study.name, resumed, interrupted
                )
            } else {
                writeln!(
                    out,
                    "study '{}' (objective: {} {})",
                    study.name,
                    format!("{:?}", study.direction).to_lowercase(),
                    study.objective_metric
                )
            }
        }
        Event::SpaceChanged { diff } => {
            writeln!(out, "the space file changed since the study started (--force):\n{diff}")
        }
        Event::OrphansReaped { pids } => writeln!(out, "stopped server processes left by a killed daemon: {pids:?}"),
        Event::Paused { wait, window } => writeln!(
            out,
            "outside the window {}-{}: paused (next check in {} s)",
            window.start,
            window.end,
            wait.as_secs().min(30)
        ),
        Event::Drift { what } => writeln!(out, "environment changed: {what}"),
        Event::TrialStarted { number, candidate, planned, is_retry } => {
            let of = planned.map(|p| format!("/{p}")).unwrap_or_default();
            let retry = if *is_retry { " (retry of an interrupted trial)" } else { "" };
            writeln!(out, "trial {number}{of}: {}{retry}", candidate.brief())?;
            out.flush()
        }
        Event::TrialFinished { trial, elapsed, is_new_best } => {
            let star = if *is_new_best { "  * new best" } else { "" };
            let line = match (&trial.summary, trial.state) {
                (Some(s), TrialState::Complete | TrialState::Pruned) => format!(
                    "  {}{} | ttft p95 {:.0} ms | tpot p50 {:.1} ms | {:.1} tok/s | goodput {:.2} req/s | ok {:.0}% | rss {} MB | slo {} | {:.1} s{star}",
                    trial.state,
                    s.capacity.as_ref().map_or(String::new(), |c| {
                        let unit = if c.load == crate::space::Load::Rate { "req/s" } else { "clients" };
                        let at_least = if c.is_at_max { ">= " } else { "" };
                        format!(
                            " | capacity {at_least}{} {unit} ({} levels; figures at that level)",
                            c.value,
                            c.levels.len()
                        )
                    }),
                    s.ttft_ms.p95,
                    s.tpot_ms.p50,
                    s.output_tok_per_s,
                    s.goodput_rps,
                    s.success_rate * 100.0,
                    s.peak_rss_bytes / (1024 * 1024),
                    if trial.violation == Some(0.0) {
                        "met".to_string()
                    } else {
                        format!("missed ({:.2})", trial.violation.unwrap_or(f64::NAN))
                    },
                    elapsed.as_secs_f64()
                ),
                (_, TrialState::Infeasible) => format!(
                    "  infeasible [{}] {} | {:.1} s",
                    trial.error_class.as_deref().unwrap_or("?"),
                    first_line(trial.error_message.as_deref().unwrap_or("")),
                    elapsed.as_secs_f64()
                ),
                (_, state) => format!("  {state} | {:.1} s", elapsed.as_secs_f64()),
            };
            writeln!(out, "{line}")?;
            out.flush()
        }
        Event::OutputWritten { path } => writeln!(out, "  wrote {}", path.display()),
        Event::Pulling { model, status, completed, total } => match (completed, total) {
            (Some(c), Some(t)) if *t > 0 => {
                writeln!(
                    out,
                    "pulling '{model}': {status} {:.0}% of {} MB",
                    *c as f64 * 100.0 / *t as f64,
                    t / 1_000_000
                )
            }
            _ => writeln!(out, "pulling '{model}': {status}"),
        },
        Event::ServiceRestored { path, is_best } => writeln!(
            out,
            "{} '{}' and restarted the service",
            if *is_best { "wrote the best trial to" } else { "restored" },
            path.display()
        ),
        Event::ModelsSkipped { skipped } => {
            for s in skipped.iter() {
                writeln!(out, "skipping {} = '{}': model file '{}' not found", s.param, s.value, s.path)?;
            }
            Ok(())
        }
    }
}

async fn status(store: &Store, args: StudyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let trials = store.trials(study.id).await?;
    let run = store.latest_run(study.id).await?;
    let now = store::now_ms();
    let is_alive = |pid: i64| pid > 0 && Path::new(&format!("/proc/{pid}")).exists();
    let active = run.as_ref().filter(|r| r.ended_at_ms.is_none() && is_alive(r.pid));
    let in_flight = trials.iter().find(|t| t.state == TrialState::Running).filter(|_| active.is_some());
    let mut counts = std::collections::BTreeMap::new();
    for t in &trials {
        *counts.entry(t.state.as_str()).or_insert(0) += 1;
    }
    let finished = trials
        .iter()
        .filter(|t| matches!(t.state, TrialState::Complete | TrialState::Infeasible | TrialState::Pruned))
        .count() as i64;
    let best = trial::best(&trials, study.direction);
    let trials_left = run.as_ref().and_then(|r| r.max_trials).map(|m| (m - finished).max(0));
    let time_left_s = active.and_then(|r| r.deadline_ms).map(|d| ((d - now).max(0)) as f64 / 1000.0);
    let state = match (&run, active) {
        (_, Some(r)) => format!(
            "running (pid {}, since {} s, last heartbeat {} s ago)",
            r.pid,
            (now - r.started_at_ms) / 1000,
            (now - r.heartbeat_ms) / 1000
        ),
        (Some(r), None) => match &r.stop_reason {
            Some(reason) => format!("stopped: {reason}"),
            None => format!("not running (pid {} died without recording a stop)", r.pid),
        },
        (None, None) => "never run".to_string(),
    };
    if args.json {
        let doc = json!({
            "study": study.name,
            "state": state,
            "is_running": active.is_some(),
            "run": run,
            "in_flight": in_flight.map(|t| json!({"number": t.number, "params": t.params, "elapsed_s": (now - t.started_at_ms) as f64 / 1000.0})),
            "counts": counts,
            "finished": finished,
            "best": best.map(|(t, feasible)| trial_json(t, feasible)),
            "trials_left": trials_left,
            "time_left_s": time_left_s,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    writeln!(out, "study     {}", study.name)?;
    writeln!(out, "state     {state}")?;
    match in_flight {
        Some(t) => writeln!(
            out,
            "in flight trial {} ({}), {:.0} s so far",
            t.number,
            t.params.brief(),
            (now - t.started_at_ms) as f64 / 1000.0
        )?,
        None => writeln!(out, "in flight none")?,
    }
    writeln!(
        out,
        "trials    {} ({})",
        trials.len(),
        counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
    )?;
    match best {
        Some((t, true)) => writeln!(
            out,
            "best      trial {} ({} = {:.3}, meets every SLO)",
            t.number,
            study.objective_metric,
            t.objective.unwrap_or(f64::NAN)
        )?,
        Some((t, false)) => writeln!(
            out,
            "best      none meets every SLO; least violating: trial {} (violation {:.3})",
            t.number,
            t.violation.unwrap_or(f64::NAN)
        )?,
        None => writeln!(out, "best      none yet")?,
    }
    let left = match (trials_left, time_left_s) {
        (None, None) => "no budget set".to_string(),
        (t, s) => [t.map(|t| format!("{t} trials")), s.map(|s| format!("{:.0} min", s / 60.0))]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
    };
    writeln!(out, "left      {left}")?;
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

async fn find_study(store: &Store, name: &str) -> anyhow::Result<Study> {
    match store.study(name).await? {
        Some(s) => Ok(s),
        None => {
            let known: Vec<String> = store.studies().await?.into_iter().map(|o| o.study.name).collect();
            if known.is_empty() {
                bail!("no study named '{name}' (the database has no studies yet)")
            }
            bail!("no study named '{name}' (known: {})", known.join(", "))
        }
    }
}

async fn studies(store: &Store, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let studies = store.studies().await?;
    if json {
        let rows: Vec<_> = studies
            .iter()
            .map(|o| {
                json!({
                    "name": o.study.name,
                    "backend": o.study.backend,
                    "strategy": o.study.strategy,
                    "objective": {"metric": o.study.objective_metric, "direction": o.study.direction},
                    "trials": o.trials,
                    "complete": o.complete,
                    "infeasible": o.infeasible,
                    "created_at_ms": o.study.created_at_ms,
                    "stop_reason": o.study.stop_reason,
                    "fingerprint": o.study.fingerprint,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = studies
        .iter()
        .map(|o| {
            vec![
                o.study.name.clone(),
                o.study.backend.clone(),
                o.study.strategy.clone(),
                format!("{:?} {}", o.study.direction, o.study.objective_metric).to_lowercase(),
                o.trials.to_string(),
                o.complete.to_string(),
                o.infeasible.to_string(),
                o.study.stop_reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(&["study", "backend", "strategy", "objective", "trials", "complete", "infeasible", "stopped"], &rows)
    )?;
    Ok(())
}

/// The JSON shape of one trial (also used by `best --json` and `tune --json`).
pub fn trial_json(t: &Trial, meets_slos: bool) -> serde_json::Value {
    json!({
        "number": t.number,
        "state": t.state,
        "meets_slos": meets_slos,
        "params": t.params,
        "metrics": store::trial_metrics(t),
        "objective": t.objective,
        "violation": t.violation,
        "violations": t.violations,
        "error_class": t.error_class,
        "error_message": t.error_message,
        "ready_ms": t.stages.ready_ms,
        "workload_ms": t.stages.workload_ms,
        "launch": t.stages.launch,
        "load_ms": t.stages.load_ms,
        "server": t.summary.as_ref().map(|s| json!({
            "prompt_tok_per_s": s.server_prompt_tok_per_s,
            "decode_tok_per_s": s.server_decode_tok_per_s,
            "client_decode_tok_per_s": s.client_decode_tok_per_s,
            "decode_agreement": s.decode_agreement,
            "cross_check_flagged": s.is_cross_check_flagged,
            "total_ms": s.server_total_ms,
            "client_e2e_ms": s.e2e_ms,
            "load_ms": s.server_load_ms,
            "model_size_bytes": s.model_size_bytes,
            "model_size_vram_bytes": s.model_size_vram_bytes,
        })),
        "quality": t.summary.as_ref().and_then(|s| s.quality),
        "server_metrics": t.summary.as_ref().and_then(|s| s.server_metrics.as_ref()),
        "capacity": t.summary.as_ref().and_then(|s| s.capacity.as_ref()),
        "peak_vram_mb": t.summary.as_ref().and_then(|s| s.metric("peak_vram_mb")),
        "samples": t.summary.as_ref().map(|s| json!({"requests": s.requests, "succeeded": s.succeeded, "errors": s.errors, "ttft_n": s.ttft_ms.n, "itl_n": s.itl_ms.n})),
        "started_at_ms": t.started_at_ms,
        "ended_at_ms": t.ended_at_ms,
    })
}

fn sort_key(t: &Trial, column: &str) -> Option<f64> {
    match column {
        "number" => Some(t.number as f64),
        "objective" => t.objective,
        "violation" => t.violation,
        other => t.summary.as_ref().and_then(|s| s.metric(other)),
    }
}

async fn trials(store: &Store, args: TrialsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let mut trials: Vec<Trial> =
        store.trials(study.id).await?.into_iter().filter(|t| args.state.is_none_or(|s| t.state == s)).collect();
    if let Some(column) = &args.sort {
        // Higher is better for throughput-like columns; lower for latencies and the rest.
        let descending = matches!(column.as_str(), "output_tok_per_s" | "req_per_s" | "success_rate" | "goodput_rps")
            || (column == "objective" && study.direction == crate::space::Direction::Maximize);
        trials.sort_by(|a, b| {
            let (x, y) = (sort_key(a, column), sort_key(b, column));
            match (x, y) {
                (Some(x), Some(y)) if descending => y.total_cmp(&x),
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less, // unmeasured trials last
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.number.cmp(&b.number),
            }
        });
    }
    if args.json {
        let rows: Vec<_> = trials.iter().map(|t| trial_json(t, t.is_feasible())).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = trials.iter().map(trial_row).collect();
    write!(out, "{}", table(TRIAL_HEADERS, &rows))?;
    Ok(())
}

const TRIAL_HEADERS: &[&str] =
    &["#", "state", "params", "ttft p95 ms", "tpot p50 ms", "tok/s", "goodput", "ok %", "rss MB", "violation", "note"];

fn trial_row(t: &Trial) -> Vec<String> {
    let f = |v: Option<f64>, digits: usize| v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "-".into());
    let s = t.summary.as_ref();
    vec![
        t.number.to_string(),
        t.state.to_string(),
        t.params.brief(),
        f(s.map(|s| s.ttft_ms.p95), 0),
        f(s.map(|s| s.tpot_ms.p50), 1),
        f(s.map(|s| s.output_tok_per_s), 1),
        f(s.map(|s| s.goodput_rps), 2),
        f(s.map(|s| s.success_rate * 100.0), 0),
        f(s.map(|s| s.peak_rss_bytes as f64 / 1048576.0), 0),
        f(t.violation, 2),
        match (&t.error_class, &t.error_message) {
            (Some(c), Some(m)) => format!("[{c}] {}", truncate(first_line(m), 60)),
            _ => String::new(),
        },
    ]
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n).collect::<String>() + "…" }
}

fn print_best(study: &Study, trials: &[Trial], out: &mut dyn Write) -> anyhow::Result<()> {
    match trial::best(trials, study.direction) {
        None => writeln!(out, "no finished trials yet in study '{}'", study.name)?,
        Some((t, feasible)) => {
            if feasible {
                writeln!(
                    out,
                    "best trial meeting every SLO: #{} ({} {} = {:.3})",
                    t.number,
                    format!("{:?}", study.direction).to_lowercase(),
                    study.objective_metric,
                    t.objective.unwrap_or(f64::NAN)
                )?;
            } else {
                writeln!(
                    out,
                    "no trial meets every SLO; least violating: #{} (violation {:.3})",
                    t.number,
                    t.violation.unwrap_or(f64::NAN)
                )?;
                for (metric, v) in t.violations.iter().filter(|(_, v)| **v > 0.0) {
                    writeln!(out, "  misses {metric} by {:.0}%", v * 100.0)?;
                }
            }
            write!(out, "{}", table(TRIAL_HEADERS, &[trial_row(t)]))?;
            if let Some(plan) = &t.plan {
                writeln!(
                    out,
                    "command: {}",
                    std::iter::once(&plan.program)
                        .chain(&plan.args)
                        .map(|w| export::shell_quote(w))
                        .collect::<Vec<_>>()
                        .join(" ")
                )?;
            }
        }
    }
    Ok(())
}

async fn best(store: &Store, args: StudyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let trials = store.trials(study.id).await?;
    if args.json {
        let doc = match trial::best(&trials, study.direction) {
            Some((t, feasible)) => trial_json(t, feasible),
            None => serde_json::Value::Null,
        };
        let mut doc = doc;
        if let (Some(obj), Some(v)) = (doc.as_object_mut(), store.latest_validation(study.id).await?) {
            obj.insert("validation".into(), serde_json::to_value(&v)?);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    print_best(&study, &trials, out)?;
    if let Some(v) = store.latest_validation(study.id).await? {
        validate::print(&v, out)?;
    }
    validate::print_anchor(&study, &trials, out)?;
    Ok(())
}

async fn export_cmd(store: &Store, args: ExportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let trials = store.trials(study.id).await?;
    let trial = match args.trial {
        Some(n) => {
            trials.iter().find(|t| t.number == n).with_context(|| format!("study '{}' has no trial {n}", study.name))?
        }
        None => {
            let (t, feasible) = trial::best(&trials, study.direction)
                .with_context(|| format!("study '{}' has no finished trial to export", study.name))?;
            if !feasible {
                eprintln!("warning: no trial meets every SLO; exporting the least violating, trial {}", t.number);
            }
            t
        }
    };
    let text = export::render(&study, trial, args.format)?;
    match &args.output {
        Some(path) => {
            export::write_atomic(path, &text)?;
            writeln!(out, "wrote {} (trial {})", path.display(), trial.number)?;
        }
        None => write!(out, "{text}")?,
    }
    Ok(())
}

async fn report_cmd(store: &Store, args: ReportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let trials = store.trials(study.id).await?;
    let validation = store.latest_validation(study.id).await?;
    let html = crate::report::render(&study, &trials, validation.as_ref(), store::now_ms());
    match &args.output {
        Some(path) => {
            export::write_atomic(path, &html)?;
            writeln!(out, "wrote {} ({} trials)", path.display(), trials.len())?;
        }
        None => write!(out, "{html}")?,
    }
    Ok(())
}

async fn bench(db: &Path, args: BenchArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    use daemon::bench::{Amount, BenchOptions, Load};
    let protocol = match args.protocol {
        ProtocolArg::Openai => crate::workload::Protocol::OpenAi,
        ProtocolArg::Ollama => crate::workload::Protocol::Ollama,
    };
    let opts = BenchOptions {
        url: args.url.clone(),
        protocol,
        model: args.model.clone(),
        dataset: args.dataset.clone(),
        load: match args.rate {
            Some(rate_per_s) => Load::Open { rate_per_s },
            None => Load::Closed { concurrency: args.concurrency.max(1) },
        },
        amount: match args.duration {
            Some(d) => Amount::Duration(d),
            None => Amount::Requests(args.requests),
        },
        warmup: args.warmup,
        max_tokens: args.max_tokens,
        seed: args.seed,
        request_timeout: args.request_timeout,
        prompt_cache: args.prompt_cache,
    };
    let report = daemon::bench::bench(&opts).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&daemon::bench::to_json(&opts, &report))?)?;
    } else {
        daemon::bench::write_table(&opts, &report, out)?;
    }
    if let Some(name) = &args.save {
        let store = open_store(db).await?;
        daemon::bench::save(&store, name, &opts, &report).await?;
        if !args.json {
            writeln!(out, "saved as study '{name}'")?;
        }
        store.close().await;
    }
    Ok(())
}

async fn compare(store: &Store, args: CompareArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    use daemon::compare::{Arm, CompareOptions, Progress};
    let (a, b) = match (args.default, args.trials.as_slice()) {
        (true, [b]) => (Arm::Default, Arm::Trial(*b)),
        (false, [a, b]) => (Arm::Trial(*a), Arm::Trial(*b)),
        (true, _) => bail!("with --default, give exactly one --trial"),
        (false, _) => bail!("give two trials (--trial A --trial B), or one with --default"),
    };
    let opts = CompareOptions { study: args.study.clone(), a, b, pairs: args.pairs, space: args.space.clone() };
    let quiet = args.json;
    let mut on_progress = |p: Progress| {
        if quiet {
            return;
        }
        let Progress::RunFinished { arm, pair, output_tok_per_s, ttft_p50_ms } = p;
        let _ = writeln!(out, "pair {pair} {arm}: {output_tok_per_s:.1} tok/s, ttft p50 {ttft_p50_ms:.0} ms");
    };
    let report = daemon::compare::compare(store, &opts, &mut on_progress).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "B = {} vs A = {}, {} pairs on fresh servers (ratio B/A, bootstrap 95 % CI)",
        report.b, report.a, report.pairs
    )?;
    let rows: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|r| {
            vec![
                r.metric.to_string(),
                format!("{:.2}", r.a),
                format!("{:.2}", r.b),
                format!("{:.3}", r.ci.ratio),
                format!("[{:.3}, {:.3}]", r.ci.lo, r.ci.hi),
                format!("B {}", r.call.as_str()),
            ]
        })
        .collect();
    write!(out, "{}", table(&["metric", "A", "B", "B/A", "95% CI", "verdict"], &rows))?;
    Ok(())
}

/// Median over a study's trials of client/server decode-rate agreement, with the trial count.
fn decode_agreement_median(trials: &[Trial]) -> Option<(f64, usize)> {
    let v: Vec<f64> = trials.iter().filter_map(|t| t.summary.as_ref()?.decode_agreement).collect();
    (!v.is_empty()).then(|| (crate::measure::ratio::median(&v), v.len()))
}

/// A plain left-aligned text table.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
            + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_cli_values_are_rejected() {
        assert!(Cli::try_parse_from(["infertune", "tune", "x.toml", "--max-duration", "-1h"]).is_err());
        assert!(Cli::try_parse_from(["infertune", "trials", "s", "--sort", "colour"]).is_err());
        assert!(Cli::try_parse_from(["infertune", "trials", "s", "--state", "done"]).is_err());
        assert!(Cli::try_parse_from(["infertune", "tune", "x.toml", "--max-duration", "90m"]).is_ok());
        let err = Cli::try_parse_from(["infertune", "tune", "x.toml", "--until", "25:00"]).unwrap_err().to_string();
        assert!(err.contains("'25:00' is not a time of day"), "{err}");
        let err = Cli::try_parse_from(["infertune", "tune", "x.toml", "--window", "22:00"]).unwrap_err().to_string();
        assert!(err.contains("'22:00' is not a window"), "{err}");
        let err = Cli::try_parse_from(["infertune", "tune", "x.toml", "--max-duration=-1h"]).unwrap_err().to_string();
        assert!(err.contains("'-1h' is not a duration"), "{err}");
        assert!(
            Cli::try_parse_from(["infertune", "tune", "x.toml", "--until", "06:30", "--window", "22:00-06:30"]).is_ok()
        );
        assert!(Cli::try_parse_from(["infertune", "tune", "x.toml", "--on-exit", "leave"]).is_ok());
        let err = Cli::try_parse_from(["infertune", "tune", "x.toml", "--on-exit", "maybe"]).unwrap_err().to_string();
        assert!(err.contains("'maybe'") && err.contains("restore") && err.contains("best"), "{err}");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
    }
}
