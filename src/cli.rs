//! Command-line interface: clap types, one handler per subcommand, and the table/JSON output.
//!
//! Handlers write to `&mut dyn Write` so tests can capture them. Errors carry context naming
//! the object at fault; `main` prints the whole chain.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::daemon::{self, Event};
use crate::export::{self, Format};
use crate::space::{Space, parse_duration};
use crate::store::{self, Store};
use crate::trial::{self, Study, Trial, TrialState};

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
    Tune(TuneArgs),
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

fn parse_state(s: &str) -> Result<TrialState, String> {
    s.parse()
}

/// Run a parsed command line.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let db = cli.db.clone().unwrap_or_else(store::default_path);
    match cli.command {
        Command::Space(SpaceCommand::Check { file }) => space_check(&file, out),
        Command::Tune(args) => tune(&db, args, out).await,
        Command::Studies(args) => studies(&open_store(&db).await?, args.json, out).await,
        Command::Trials(args) => trials(&open_store(&db).await?, args, out).await,
        Command::Best(args) => best(&open_store(&db).await?, args, out).await,
        Command::Export(args) => export_cmd(&open_store(&db).await?, args, out).await,
    }
}

async fn open_store(db: &Path) -> anyhow::Result<Store> {
    Store::open(db)
        .await
        .with_context(|| format!("opening the database '{}'", db.display()))
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
    writeln!(
        out,
        "objective {:?} {}",
        space.objective.direction, space.objective.metric
    )?;
    for slo in &space.slos {
        writeln!(
            out,
            "slo       {} {} {}",
            slo.metric,
            if slo.is_upper_bound { "<=" } else { ">=" },
            slo.limit
        )?;
    }
    Ok(())
}

async fn tune(db: &Path, args: TuneArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let space = Space::load(&args.space)?;
    let store = open_store(db).await?;
    let cancel = CancellationToken::new();
    let signal_cancel = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupt: stopping the running trial and recording it as interrupted");
            signal_cancel.cancel();
        }
    });
    let options = daemon::Options {
        max_trials: args.max_trials,
        max_duration: args.max_duration,
        study_name: args.name.clone(),
    };
    let quiet = args.json;
    let mut progress_error = None;
    let mut on_event = |event: Event<'_>| {
        if quiet {
            return;
        }
        if let Err(e) = print_event(&event, &mut *out) {
            progress_error.get_or_insert(e);
        }
    };
    let report = daemon::tune(&space, &store, &options, &cancel, &mut on_event).await?;
    if let Some(e) = progress_error {
        return Err(e.into());
    }
    if args.json {
        let best = trial::best(&report.trials, report.study.direction);
        let doc = json!({
            "study": report.study.name,
            "stop": report.stop.as_str(),
            "trials": report.trials.len(),
            "best": best.map(|(t, feasible)| trial_json(t, feasible)),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(out, "stopped: {} ({} trials in the study)", report.stop.as_str(), report.trials.len())?;
        print_best(&report.study, &report.trials, out)?;
    }
    store.close().await;
    Ok(())
}

fn print_event(event: &Event<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    match event {
        Event::Started { study, resumed, interrupted } => {
            if *resumed > 0 {
                writeln!(
                    out,
                    "resuming study '{}' ({} trials stored, {} interrupted)",
                    study.name, resumed, interrupted
                )
            } else {
                writeln!(out, "study '{}' (objective: {:?} {})", study.name, study.direction, study.objective_metric)
            }
        }
        Event::TrialStarted { number, candidate, planned } => {
            let of = planned.map(|p| format!("/{p}")).unwrap_or_default();
            writeln!(out, "trial {number}{of}: {}", candidate.brief())?;
            out.flush()
        }
        Event::TrialFinished { trial, elapsed, is_new_best } => {
            let star = if *is_new_best { "  * new best" } else { "" };
            let line = match (&trial.summary, trial.state) {
                (Some(s), _) => format!(
                    "  {} | ttft p95 {:.0} ms | tpot p50 {:.1} ms | {:.1} tok/s | goodput {:.2} req/s | ok {:.0}% | rss {} MB | slo {} | {:.1} s{star}",
                    trial.state,
                    s.ttft_ms.p95,
                    s.tpot_ms.p50,
                    s.output_tok_per_s,
                    s.goodput_rps,
                    s.success_rate * 100.0,
                    s.peak_rss_bytes / (1024 * 1024),
                    if trial.violation == Some(0.0) { "met".to_string() } else { format!("missed ({:.2})", trial.violation.unwrap_or(f64::NAN)) },
                    elapsed.as_secs_f64()
                ),
                (None, TrialState::Infeasible) => format!(
                    "  infeasible [{}] {} | {:.1} s",
                    trial.error_class.as_deref().unwrap_or("?"),
                    first_line(trial.error_message.as_deref().unwrap_or("")),
                    elapsed.as_secs_f64()
                ),
                (None, state) => format!("  {state} | {:.1} s", elapsed.as_secs_f64()),
            };
            writeln!(out, "{line}")?;
            out.flush()
        }
        Event::OutputWritten { path } => writeln!(out, "  wrote {}", path.display()),
        Event::Pulling { model, status, completed, total } => match (completed, total) {
            (Some(c), Some(t)) if *t > 0 => {
                writeln!(out, "pulling '{model}': {status} {:.0}% of {} MB", *c as f64 * 100.0 / *t as f64, t / 1_000_000)
            }
            _ => writeln!(out, "pulling '{model}': {status}"),
        },
        Event::ServiceRestored { path, is_best } => writeln!(
            out,
            "{} '{}' and restarted the service",
            if *is_best { "wrote the best trial to" } else { "restored" },
            path.display()
        ),
    }
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
            "total_ms": s.server_total_ms,
            "client_e2e_ms": s.e2e_ms,
            "load_ms": s.server_load_ms,
            "model_size_bytes": s.model_size_bytes,
            "model_size_vram_bytes": s.model_size_vram_bytes,
        })),
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
    let mut trials: Vec<Trial> = store
        .trials(study.id)
        .await?
        .into_iter()
        .filter(|t| args.state.is_none_or(|s| t.state == s))
        .collect();
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

const TRIAL_HEADERS: &[&str] = &[
    "#", "state", "params", "ttft p95 ms", "tpot p50 ms", "tok/s", "goodput", "ok %", "rss MB", "violation", "note",
];

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
                writeln!(out, "best trial meeting every SLO: #{} ({} {} = {:.3})", t.number, format!("{:?}", study.direction).to_lowercase(), study.objective_metric, t.objective.unwrap_or(f64::NAN))?;
            } else {
                writeln!(out, "no trial meets every SLO; least violating: #{} (violation {:.3})", t.number, t.violation.unwrap_or(f64::NAN))?;
                for (metric, v) in t.violations.iter().filter(|(_, v)| **v > 0.0) {
                    writeln!(out, "  misses {metric} by {:.0}%", v * 100.0)?;
                }
            }
            write!(out, "{}", table(TRIAL_HEADERS, &[trial_row(t)]))?;
            if let Some(plan) = &t.plan {
                writeln!(out, "command: {}", std::iter::once(&plan.program).chain(&plan.args).map(|w| export::shell_quote(w)).collect::<Vec<_>>().join(" "))?;
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
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    print_best(&study, &trials, out)
}

async fn export_cmd(store: &Store, args: ExportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let trials = store.trials(study.id).await?;
    let trial = match args.trial {
        Some(n) => trials
            .iter()
            .find(|t| t.number == n)
            .with_context(|| format!("study '{}' has no trial {n}", study.name))?,
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

/// A plain left-aligned text table.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
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
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
    }
}
