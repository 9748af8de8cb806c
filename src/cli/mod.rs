//! Command-line interface: the clap types, dispatch to one handler per subcommand, and the
//! helpers several handlers share (opening the store, finding a study, value parsers).
//!
//! Each subcommand lives in its own file with its args struct and handler; shared table and
//! JSON output is in `output`. Handlers write to `&mut dyn Write` so tests can capture them.
//! Errors carry context naming the object at fault; `main` prints the whole chain.

mod apply;
mod bench;
mod best;
mod capacity;
mod capture;
mod compare;
mod db;
mod deployments;
mod export;
mod landscape;
mod output;
mod report;
mod space;
mod status;
mod studies;
mod trace;
mod trials;
mod tune;
mod validate;
mod watch;
mod worker;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::daemon::clock::{TimeOfDay, Window};
use crate::store::{self, Store};
use crate::trial::Study;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

pub use bench::{BenchArgs, ProtocolArg};
pub use compare::CompareArgs;
pub use export::ExportArgs;
pub use output::trial_json;
pub use report::ReportArgs;
pub use space::SpaceCommand;
pub use trials::TrialsArgs;
pub use tune::TuneArgs;

/// Tune the serving configuration of an LLM inference server (llama.cpp, Ollama, vLLM).
///
/// A study searches a space of server settings (parallel slots, context, flash attention,
/// KV-cache type, quantization, batch sizes, threads), applies each trial to the live server,
/// measures it under a streaming workload, and keeps every trial in SQLite. The best
/// configuration that meets the SLOs is exported as the file an operator deploys.
#[derive(Debug, Parser)]
#[command(name = "infertune", version, propagate_version = true)]
pub struct Cli {
    /// SQLite database file, or a PostgreSQL URL for a study shared by workers on several hosts
    /// (postgres://user@host/db?sslmode=require; the password from PGPASSWORD or ~/.pgpass
    /// rather than the URL) [default: $XDG_DATA_HOME/infertune/infertune.db]
    #[arg(long, global = true, env = "INFERTUNE_DB", hide_env_values = true, value_name = "PATH|URL")]
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
    /// Proxy an OpenAI or Ollama server and write a trace of its traffic (lengths, prefix ids, timing)
    Capture(capture::CaptureArgs),
    /// Trace files (Mooncake, capture, Azure, BurstGPT): `trace stats FILE`
    #[command(subcommand)]
    Trace(trace::TraceCommand),
    /// Work on a shared study from this host (--db postgres://...): claim trials, run them
    /// here, heartbeat; start one per host. `tune SPACE --db postgres://...` creates the study
    Worker(worker::WorkerArgs),
    /// Databases: `db copy FROM TO` moves studies between SQLite and PostgreSQL
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Write the trials of grid studies as a landscape file (for replay and bench-search)
    #[command(hide = true)]
    RecordLandscape(landscape::RecordLandscapeArgs),
    /// Deploy a trial to the running service; keep it only if a canary on the live service holds
    Apply(apply::ApplyArgs),
    /// List a study's applies (canary figures, kept or rolled back, why) and watch runs
    Deployments(deployments::DeploymentsArgs),
    /// Check that the deployed configuration still holds on the live service (once, or --every)
    Watch(watch::WatchArgs),
}

/// A command that finished and asks for this exit status (`apply` rolled back, `watch` found a
/// regression); `main` exits with it and prints nothing more (the command printed its result).
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct ExitStatus(pub u8);

/// Arguments of subcommands that take only `--json` (`studies`).
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Arguments of subcommands about one study (`status`, `best`).
#[derive(Debug, Args)]
pub struct StudyArgs {
    /// Study name
    pub study: String,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::space::parse_duration(s)
}

fn parse_time_of_day(s: &str) -> Result<TimeOfDay, String> {
    s.parse()
}

fn parse_window(s: &str) -> Result<Window, String> {
    s.parse()
}

/// `--worse-by`: a percentage ("30%", "30 %" or "30"), as a fraction, in (0, 1000] %.
fn parse_percent(s: &str) -> Result<f64, String> {
    let number = s.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1000.0 => Ok(p / 100.0),
        _ => Err(format!("'{s}' is not a percentage between 0 and 1000 (e.g. 30%)")),
    }
}

/// Run a parsed command line.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let db = cli.db.clone().unwrap_or_else(store::default_path);
    match cli.command {
        Command::Space(SpaceCommand::Check { file }) => space::check(&file, out),
        Command::Tune(args) => tune::run(&db, args, out).await,
        Command::Status(args) => status::run(&open_store(&db).await?, args, out).await,
        Command::Studies(args) => studies::run(&open_store(&db).await?, args.json, out).await,
        Command::Trials(args) => trials::run(&open_store(&db).await?, args, out).await,
        Command::Best(args) => best::run(&open_store(&db).await?, args, out).await,
        Command::Export(args) => export::run(&open_store(&db).await?, args, out).await,
        Command::Report(args) => report::run(&open_store(&db).await?, args, out).await,
        Command::Bench(args) => bench::run(&db, args, out).await,
        Command::Compare(args) => compare::run(&open_store(&db).await?, args, out).await,
        Command::Capacity(args) => capacity::run(&open_store(&db).await?, args, out).await,
        Command::Validate(args) => validate::run(&open_store(&db).await?, args, out).await,
        Command::Capture(args) => capture::run(args, out).await,
        Command::Trace(command) => trace::run(command, out),
        Command::Db(command) => db::run(command, out).await,
        Command::Worker(args) => worker::run(&open_store(&db).await?, args, out).await,
        Command::RecordLandscape(args) => landscape::run(&open_store(&db).await?, args, out).await,
        Command::Apply(args) => apply::run(&open_store(&db).await?, args, out).await,
        Command::Deployments(args) => deployments::run(&open_store(&db).await?, args, out).await,
        Command::Watch(args) => watch::run(&open_store(&db).await?, args, out).await,
    }
}

/// Open `--db`: a SQLite file, or a PostgreSQL URL (named without its password).
async fn open_store(db: &Path) -> anyhow::Result<Store> {
    let location = store::Location::from_arg(db);
    Store::open_location(&location).await.with_context(|| format!("opening the database '{location}'"))
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
        let err = Cli::try_parse_from(["infertune", "apply", "s", "--worse-by=-5%"]).unwrap_err().to_string();
        assert!(err.contains("'-5%' is not a percentage"), "{err}");
    }

    #[test]
    fn worse_by_takes_a_percentage_with_or_without_its_sign() {
        assert_eq!(parse_percent("30%"), Ok(0.3));
        assert_eq!(parse_percent("30 %"), Ok(0.3));
        assert_eq!(parse_percent("100"), Ok(1.0));
        assert!(parse_percent("0").is_err() && parse_percent("lots").is_err() && parse_percent("2000%").is_err());
    }
}
