//! `infertune apply STUDY [--trial N]`: deploy a configuration to the running service, check it
//! with a canary, and roll back when the canary fails (`daemon::apply`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde_json::json;

use super::{ExitStatus, find_study, parse_duration_arg};
use crate::backend::service::EnvFileFormat;
use crate::daemon::apply::{self, ApplyEvent, ApplyOptions, ApplyReport};
use crate::deploy::DeployTarget;
use crate::shutdown::Shutdown;
use crate::space::Space;
use crate::store::{DeployState, Store};

/// Exit status of an apply whose canary failed and that was rolled back.
pub const EXIT_ROLLED_BACK: u8 = 2;

#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Targets (one of):\n",
    "  --unit NAME              systemd: writes /etc/systemd/system/NAME.service.d/infertune.conf\n",
    "                           (--user: ~/.config/systemd/user/...), then runs `systemctl daemon-reload`\n",
    "                           and `systemctl restart NAME`\n",
    "  --env-file PATH -- CMD   an env file (KEY=value lines) that your own CMD reads on restart\n",
    "  --drop-in PATH -- CMD    a systemd drop-in written as is, then your CMD\n",
    "  (none)                   the space's service block (Ollama: [backend] mode = \"service\")\n",
    "CMD is an argv run without a shell. The file is replaced atomically (temp file, fsync, rename) with\n",
    "the owner and mode of the file it replaces; the previous file is kept as PATH.infertune-backup.\n\n",
    "Canary rule: the study's workload runs against the live service after the restart; the new\n",
    "configuration is kept only if every SLO of the study is met and the objective is not significantly\n",
    "worse than what the study measured for the trial: worse means the 95 % bootstrap CI of\n",
    "canary/study (requests resampled 2000 times) lies wholly below 1 (above, for a minimised metric)\n",
    "and the ratio is worse by at least 3 % (--worse-by) and by at least twice the run-to-run noise the\n",
    "study measured. Otherwise the backup is restored, the service restarted, and\n",
    "one request must be answered by the old configuration.\n\n",
    "Exit status: 0 kept (or --dry-run), 2 rolled back, 1 error (including a failed rollback)."
))]
pub struct ApplyArgs {
    /// Study name
    pub study: String,
    /// Apply this trial [default: the configuration the study names, as `best` and `export`]
    #[arg(long, value_name = "N")]
    pub trial: Option<i64>,
    /// A systemd unit: write its drop-in, reload systemd and restart the unit
    #[arg(long, value_name = "NAME", conflicts_with_all = ["env_file", "drop_in"])]
    pub unit: Option<String>,
    /// With --unit: the user's systemd instance (`systemctl --user`)
    #[arg(long, requires = "unit")]
    pub user: bool,
    /// An env file (KEY=value lines) read by the restart command given after `--`
    #[arg(long, value_name = "PATH", conflicts_with = "drop_in")]
    pub env_file: Option<PathBuf>,
    /// A systemd drop-in written as is; the restart command follows `--`
    #[arg(long, value_name = "PATH")]
    pub drop_in: Option<PathBuf>,
    /// Base URL of the running service [default: the space's service URL]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Print the file's diff and the commands; write and run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// The least worsening of the objective that rolls back [default: 3 %]; twice the study's
    /// run-to-run noise counts when that is more. Raise it on a machine shared with other load.
    #[arg(long, value_parser = super::parse_percent, value_name = "PCT")]
    pub worse_by: Option<f64>,
    /// Longest the canary may run; a canary still running then counts as failed
    #[arg(long, value_parser = parse_duration_arg, default_value = "10m", value_name = "DURATION")]
    pub canary_timeout: Duration,
    /// The study's space file, to resolve its relative paths [default: the stored text]
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    /// The restart command (argv, no shell), after `--`
    #[arg(last = true, value_name = "CMD")]
    pub restart: Vec<String>,
}

/// The target the arguments name, else the space's service block.
pub(super) fn target(
    space: &Space,
    unit: Option<(&str, bool)>,
    file: (Option<&PathBuf>, Option<&PathBuf>),
    url: Option<&str>,
    restart: &[String],
) -> anyhow::Result<DeployTarget> {
    let mut target = match (unit, file) {
        (Some((name, user)), _) => {
            if !restart.is_empty() {
                bail!("--unit runs `systemctl restart`; give no command after `--`");
            }
            DeployTarget::systemd_unit(name, user, url.unwrap_or_default())
        }
        (None, (Some(path), _) | (_, Some(path))) => {
            if restart.is_empty() {
                bail!("--env-file and --drop-in need the restart command after `--` (e.g. -- systemctl restart llama)");
            }
            let format = if file.0.is_some() { EnvFileFormat::Env } else { EnvFileFormat::Systemd };
            let commands = vec![restart.to_vec()];
            DeployTarget { path: path.clone(), format, commands, url: url.unwrap_or_default().to_string() }
        }
        (None, (None, None)) => apply::target_from_space(space)?,
    };
    if let Some(url) = url {
        target.url = url.trim_end_matches('/').to_string();
    }
    if target.url.is_empty() {
        bail!("name the service's base URL with --url (e.g. --url http://127.0.0.1:8080)");
    }
    Ok(target)
}

pub(super) async fn run(store: &Store, args: ApplyArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let space = match &args.space {
        Some(path) => Space::load(path)?,
        None => crate::daemon::stored_space(&study)?,
    };
    let unit = args.unit.as_deref().map(|u| (u, args.user));
    let target =
        target(&space, unit, (args.env_file.as_ref(), args.drop_in.as_ref()), args.url.as_deref(), &args.restart)?;
    let options = ApplyOptions {
        trial: args.trial,
        target,
        dry_run: args.dry_run,
        canary_timeout: args.canary_timeout,
        worse_by: args.worse_by,
    };
    let shutdown = Shutdown::manual();
    let json = args.json;
    let mut lines: Vec<String> = Vec::new();
    let mut on_event = |e: ApplyEvent<'_>| lines.push(event_line(&e));
    let report = apply::apply(store, &study, &space, &options, &shutdown, &mut on_event).await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report_json(&report))?)?;
    } else {
        for line in &lines {
            writeln!(out, "{line}")?;
        }
        print(&report, out)?;
    }
    match report.state {
        Some(DeployState::RolledBack) => Err(ExitStatus(EXIT_ROLLED_BACK).into()),
        Some(DeployState::Failed) => bail!("apply of trial {} failed: {}", report.trial_number, report.reason),
        _ => Ok(()),
    }
}

fn event_line(e: &ApplyEvent<'_>) -> String {
    match e {
        ApplyEvent::Written { path, backup: Some(b) } => {
            format!("wrote {} (previous kept as {})", path.display(), b.display())
        }
        ApplyEvent::Written { path, backup: None } => format!("wrote {} (there was no file before)", path.display()),
        ApplyEvent::Command { shown } => format!("ran: {shown}"),
        ApplyEvent::Ready { after } => format!("service ready after {:.1} s", after.as_secs_f64()),
        ApplyEvent::Canary { judgement: j } => format!(
            "canary: {} = {:.4} (study {:.4}; ratio {:.3}, 95 % CI {:.3}..{:.3}), SLO violation {:.3}",
            "objective", j.objective, j.reference, j.ci.ratio, j.ci.lo, j.ci.hi, j.violation
        ),
        ApplyEvent::RollingBack { reason } => format!("rolling back: {reason}"),
    }
}

fn print(report: &ApplyReport, out: &mut dyn Write) -> anyhow::Result<()> {
    match report.state {
        None => {
            write!(out, "{}", report.diff)?;
            for c in &report.commands {
                writeln!(out, "would run: {c}")?;
            }
            writeln!(out, "dry run: trial {} would be applied; nothing written, nothing run", report.trial_number)?;
        }
        Some(state) => writeln!(out, "{}: trial {}: {}", state.as_str(), report.trial_number, report.reason)?,
    }
    Ok(())
}

fn report_json(r: &ApplyReport) -> serde_json::Value {
    json!({
        "trial": r.trial_number,
        "deployment": r.deployment_id,
        "state": r.state,
        "reason": r.reason,
        "canary": r.judgement.as_ref().map(|j| json!({
            "call": j.call, "objective": j.objective, "reference": j.reference, "ratio": j.ci.ratio,
            "ci_low": j.ci.lo, "ci_high": j.ci.hi, "min_effect": j.min_effect, "violation": j.violation,
        })),
        "diff": r.diff,
        "commands": r.commands,
    })
}
