//! `infertune tune SPACE`: run (or resume) a study with one progress line per trial, optionally
//! re-validate the winner against the default, and print the best trial at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use super::output::{first_line, print_best, trial_json};
use super::{open_store, parse_duration_arg, parse_time_of_day, parse_window, validate};
use crate::daemon::clock::{TimeOfDay, Window};
use crate::daemon::lock::PidLock;
use crate::daemon::{self, Event, Report, Shutdown};
use crate::measure::CapacityFigure;
use crate::space::{Load, Space};
use crate::store::{Store, Validation};
use crate::trial::{self, Study, Trial, TrialState};

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Search-space file (TOML)
    pub space: PathBuf,
    #[command(flatten)]
    pub budget: BudgetArgs,
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
    /// Drop the values of a model-template parameter whose model file does not exist (said once
    /// at start) instead of refusing to start
    #[arg(long)]
    pub skip_missing: bool,
    /// Service mode: what the service runs after the study (default: the space's
    /// `[ollama] restore`)
    #[arg(long, value_enum, value_name = "WHAT")]
    pub on_exit: Option<daemon::OnExit>,
    /// Spend no trial re-measuring the point about to be named (as `[study] intensify =
    /// false`): every trial is the strategy's, as scripts/record-landscape needs for a full grid
    #[arg(long)]
    pub no_intensify: bool,
    /// Study name, instead of the one in the space file
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Print the final report as JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// On a PostgreSQL database this process is the study's first worker (see `worker`)
    #[command(flatten)]
    pub fleet: super::worker::FleetArgs,
}

/// When a study stops, what answers its trials and its end-of-study validation: the same flags
/// for `tune` and `worker`.
#[derive(Debug, Clone, Args)]
pub struct BudgetArgs {
    /// Stop once the study has this many finished trials (earlier runs count, and in a shared
    /// study every worker's) [default: the space's budget]
    #[arg(long, value_name = "N")]
    pub max_trials: Option<u32>,
    /// Stop starting trials after this long (e.g. 90m, 8h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub max_duration: Option<Duration>,
    /// Stop starting trials at this local time (HH:MM, e.g. 06:30)
    #[arg(long, value_name = "HH:MM", value_parser = parse_time_of_day)]
    pub until: Option<TimeOfDay>,
    /// Answer trials from a recorded landscape (scripts/record-landscape) instead of launching
    /// the backend: try a strategy, budget or SLOs in seconds. Each trial replays one of the
    /// point's recorded runs (seeded by the study's seed), judged against this space's SLOs
    #[arg(long, value_name = "LANDSCAPE.json")]
    pub replay: Option<PathBuf>,
    /// When the study ends on its budget, re-measure its best trials against the default in
    /// this many interleaved rounds on fresh server starts (at least 3; 0 = don't) and store
    /// the ratio with its 95 % CI; in a shared study one worker takes it [default: the
    /// space's `validate_pairs`, else 0]
    #[arg(long, value_name = "PAIRS", value_parser = parse_validate_pairs)]
    pub validate: Option<u32>,
}

impl BudgetArgs {
    /// The loop's budget and replay (loaded against `space`); the other options at their
    /// defaults.
    pub fn options(&self, space: &Space) -> anyhow::Result<daemon::Options> {
        Ok(daemon::Options {
            max_trials: self.max_trials,
            max_duration: self.max_duration,
            until: self.until,
            replay: match &self.replay {
                Some(path) => Some(Arc::new(daemon::replay::Replay::load(path, space)?)),
                None => None,
            },
            ..daemon::Options::default()
        })
    }

    /// The end-of-study validation's rounds: `--validate`, else the space's `validate_pairs`.
    pub fn validate_pairs(&self, space: &Space) -> u32 {
        self.validate.unwrap_or(space.validate_pairs)
    }
}

fn parse_validate_pairs(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n == 0 || n >= 3 => Ok(n),
        Ok(n) => Err(format!("'{n}': re-validation needs at least 3 interleaved rounds (0 = off)")),
        Err(_) => Err(format!("'{s}' is not a number of rounds")),
    }
}

/// `tune`: lock the study, run the loop with progress, re-validate, print the final report.
pub(super) async fn run(db: &Path, args: TuneArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let mut space = Space::load(&args.space)?;
    space.intensify &= !args.no_intensify;
    let name = args.name.clone().unwrap_or_else(|| space.name.clone());
    let store = open_store(db).await?;
    // On a shared database workers coordinate through it; the lock file is for SQLite.
    let _lock = match store.is_shared() {
        true => None,
        false => Some(PidLock::study(db, &name)?),
    };
    let shutdown = Shutdown::listen().context("installing signal handlers")?;
    let options = options(&args, &space)?;
    let (report, run) = run_study(&space, &store, &options, &args.fleet, &shutdown, args.json, out).await?;
    let validation = revalidate(&store, &report, run, &space, &args, &shutdown, out).await?;
    if let Some(Ok(v)) = &validation {
        // What ships is what was validated: `[output]` follows the validated winner (issue 16).
        let trials = store.trials(report.study.id).await?;
        if let Some((number, paths)) =
            daemon::write_named_outputs(&space, &report.study, &trials, Some(v.winner_number))?
            && !args.json
        {
            for p in paths {
                writeln!(out, "  wrote {} (validated winner, trial {number})", p.display())?;
            }
        }
    }
    if args.json {
        print_json(&report, validation.as_ref(), out)?;
    } else {
        print_text(&report, validation.as_ref(), out)?;
    }
    store.close().await;
    if report.stop == daemon::Stop::Drift {
        bail!("the environment changed during the study; resume with --retune-on-drift to start a linked study");
    }
    Ok(())
}

/// The loop's options from the flags; loads the `--replay` landscape against `space`.
fn options(args: &TuneArgs, space: &Space) -> anyhow::Result<daemon::Options> {
    Ok(daemon::Options {
        window: args.window,
        study_name: args.name.clone(),
        force: args.force,
        space_dir: args
            .space
            .parent()
            .map(|d| std::path::absolute(if d.as_os_str().is_empty() { std::path::Path::new(".") } else { d }))
            .transpose()
            .context("resolving the space file's directory")?,
        retune_on_drift: args.retune_on_drift,
        skip_missing: args.skip_missing,
        on_exit: args.on_exit,
        warm_start: None,
        ..args.budget.options(space)?
    })
}

/// Run the daemon loop, showing its events as they come (nothing when `is_quiet`).
async fn run_study(
    space: &Space,
    store: &Store,
    options: &daemon::Options,
    fleet: &super::worker::FleetArgs,
    shutdown: &Shutdown,
    is_quiet: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<(Report, Option<crate::store::RunId>)> {
    let mut progress = Progress::new(is_quiet);
    let mut on_event = |event: Event<'_>| progress.show(&event, out);
    // A shared database: the first worker of the study (issue 18); its run claims validation.
    if store.is_shared() {
        let done = daemon::worker::tune(space, store, options, &fleet.fleet(), shutdown, &mut on_event).await;
        let run = done.as_ref().ok().map(|d| d.run);
        return Ok((progress.finish(done.map(|d| d.report))?, run));
    }
    let report = daemon::tune(space, store, options, shutdown, &mut on_event).await;
    Ok((progress.finish(report)?, None))
}

/// Where progress goes: in a terminal, a progress bar on stderr with the lines printed above it;
/// elsewhere (logs, pipes, tests) plain lines.
struct Progress {
    is_quiet: bool,
    bar: Option<indicatif::ProgressBar>,
    /// The first error writing a progress line; the loop is not stopped for it, `finish` returns it.
    error: Option<std::io::Error>,
}

impl Progress {
    fn new(is_quiet: bool) -> Self {
        let bar = (!is_quiet && std::io::IsTerminal::is_terminal(&std::io::stdout())).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] trial {pos}/{len} {wide_msg}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { is_quiet, bar, error: None }
    }

    /// Move the bar and print the event's line to `out`.
    fn show(&mut self, event: &Event<'_>, out: &mut dyn Write) {
        if self.is_quiet {
            return;
        }
        if let Some(bar) = &self.bar {
            match event {
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
        let printed = print_event(event, &mut text).and_then(|()| match &self.bar {
            Some(bar) => bar.suspend(|| out.write_all(&text)),
            None => out.write_all(&text),
        });
        if let Err(e) = printed {
            self.error.get_or_insert(e);
        }
    }

    /// Clear the bar; the loop's error first, then a progress line that could not be written.
    fn finish(self, report: anyhow::Result<Report>) -> anyhow::Result<Report> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let report = report?;
        if let Some(e) = self.error {
            return Err(e.into());
        }
        Ok(report)
    }
}

/// The winner against the default on fresh starts, when the study ran to its end and
/// re-validation is asked for (`--validate`, else the space's `validate_pairs`). A failed
/// re-validation is a result to print, not an error: the study is kept.
async fn revalidate(
    store: &Store,
    report: &Report,
    worker: Option<crate::store::RunId>,
    space: &Space,
    args: &TuneArgs,
    shutdown: &Shutdown,
    out: &mut dyn Write,
) -> anyhow::Result<Option<anyhow::Result<Validation>>> {
    let pairs = args.budget.validate_pairs(space);
    let ran_to_end = matches!(report.stop, daemon::Stop::Budget | daemon::Stop::Deadline | daemon::Stop::Exhausted);
    // (A replayed study has no server to re-measure.)
    if pairs == 0 || !ran_to_end || args.budget.replay.is_some() || shutdown.graceful.is_cancelled() {
        return Ok(None);
    }
    // A shared study is validated once: by the worker that claims it.
    if let Some(run) = worker
        && !store.claim_validation(report.study.id, run).await?
    {
        return Ok(None);
    }
    if !args.json {
        writeln!(
            out,
            "re-validating the best {} trial(s) against the default: {pairs} interleaved rounds on fresh starts",
            space.validate_top
        )?;
    }
    Ok(Some(validate::validate_study(store, &report.study, space, pairs, space.validate_top, &shutdown.graceful).await))
}

/// `tune --json`: stop reason, trial count, best trial, decode agreement and validation.
fn print_json(
    report: &Report,
    validation: Option<&anyhow::Result<Validation>>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let best = trial::best(&report.trials, report.study.direction);
    let doc = json!({
        "study": report.study.name,
        "stop": report.stop.as_str(),
        "trials": report.trials.len(),
        "best": best.map(|(t, feasible)| trial_json(t, feasible)),
        "decode_agreement_median": trial::decode_agreement_median(&report.trials).map(|(m, n)| json!({"median": m, "trials": n})),
        "validation": match validation {
            Some(Ok(v)) => serde_json::to_value(v)?,
            Some(Err(e)) => json!({"error": format!("{e:#}")}),
            None => serde_json::Value::Null,
        },
    });
    writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

/// The final report as text: why it stopped, decode agreement, the best trial, validation.
fn print_text(
    report: &Report,
    validation: Option<&anyhow::Result<Validation>>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    writeln!(out, "stopped: {} ({} trials in the study)", report.stop.as_str(), report.trials.len())?;
    if let Some((median, n)) = trial::decode_agreement_median(&report.trials) {
        writeln!(out, "client/server decode rate agreement: median {median:.3} over {n} trials")?;
    }
    print_best(&report.study, &report.trials, out)?;
    match validation {
        Some(Ok(v)) => validate::print(v, out)?,
        Some(Err(e)) => writeln!(out, "re-validation failed: {e:#} (the study is kept; `infertune validate` retries)")?,
        None => {}
    }
    Ok(())
}

/// One progress line (or a few) for a loop event.
pub(super) fn print_event(event: &Event<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    match event {
        Event::Started { study, resumed, interrupted, .. } => {
            writeln!(out, "{}", started_line(study, *resumed, *interrupted))
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
        Event::ModelsSkipped { skipped } => {
            for s in skipped.iter() {
                writeln!(out, "skipping {} = '{}': model file '{}' not found", s.param, s.value, s.path)?;
            }
            Ok(())
        }
        Event::TrialStarted { number, candidate, planned, purpose } => {
            let of = planned.map(|p| format!("/{p}")).unwrap_or_default();
            let why = match purpose {
                crate::trial::Purpose::Search => "",
                crate::trial::Purpose::Retry => " (retry of an interrupted trial)",
                crate::trial::Purpose::Intensify => " (re-measure before it can be named)",
                crate::trial::Purpose::Anchor => " (drift anchor: the default again)",
            };
            writeln!(out, "trial {number}{of}: {}{why}", candidate.brief())?;
            out.flush()
        }
        Event::TrialFinished { trial, elapsed, is_new_best } => {
            writeln!(out, "{}", finished_line(trial, *elapsed, *is_new_best))?;
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
    }
}

/// A new study with its objective, or a resumed one with what is already stored.
fn started_line(study: &Study, resumed: usize, interrupted: u64) -> String {
    if resumed > 0 {
        format!("resuming study '{}' ({} trials stored, {} interrupted)", study.name, resumed, interrupted)
    } else {
        format!(
            "study '{}' (objective: {} {})",
            study.name,
            format!("{:?}", study.direction).to_lowercase(),
            study.objective_metric
        )
    }
}

/// A stored trial's figures (state, latencies, throughput, memory, SLO verdict, time taken),
/// or why it has none.
fn finished_line(trial: &Trial, elapsed: Duration, is_new_best: bool) -> String {
    let star = if is_new_best { "  * new best" } else { "" };
    match (&trial.summary, trial.state) {
        (Some(s), TrialState::Complete | TrialState::Pruned) => format!(
            "  {}{} | ttft p95 {:.0} ms | tpot p50 {:.1} ms | {:.1} tok/s | goodput {:.2} req/s | ok {:.0}% | rss {} MB | slo {} | {:.1} s{star}",
            trial.state,
            s.capacity.as_ref().map_or(String::new(), capacity_note),
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
            trial.error_class.map_or("?".to_string(), |c| c.to_string()),
            first_line(trial.error_message.as_deref().unwrap_or("")),
            elapsed.as_secs_f64()
        ),
        (_, state) => format!("  {state} | {:.1} s", elapsed.as_secs_f64()),
    }
}

/// ` | capacity N clients (K levels; ...)` for a trial whose objective is its capacity.
fn capacity_note(c: &CapacityFigure) -> String {
    let unit = if c.load == Load::Rate { "req/s" } else { "clients" };
    let at_least = if c.is_at_max { ">= " } else { "" };
    format!(" | capacity {at_least}{} {unit} ({} levels; figures at that level)", c.value, c.levels.len())
}
