//! `infertune status STUDY`: a study's progress, also while `tune` runs in another process:
//! whether its daemon is alive, the trial in flight, counts by state, the best trial and the
//! budget left. A shared study (PostgreSQL) lists its workers too: host, PID, last heartbeat,
//! trial in flight and trials done.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::json;

use super::output::trial_json;
use super::{StudyArgs, find_study};
use crate::store::{self, Run, Store, Worker};
use crate::trial::{self, Study, Trial, TrialState};

/// `status`: read the study, its trials and latest run once, then print them.
pub(super) async fn run(store: &Store, args: StudyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let study = find_study(store, &args.study).await?;
    let trials = store.trials(study.id).await?;
    let run = store.latest_run(study.id).await?;
    let now_ms = store::now_ms();
    let workers = if store.is_shared() { store.workers(study.id).await? } else { Vec::new() };
    // Checked once, so every line of the output agrees on it. Workers on other hosts are alive
    // while they heartbeat (their PIDs mean nothing here).
    let is_active = match store.is_shared() {
        true => workers.iter().any(|w| is_working(w, now_ms)),
        false => run.as_ref().is_some_and(|r| r.ended_at_ms.is_none() && crate::daemon::lock::is_alive(r.pid)),
    };
    let snapshot = Snapshot { study, trials, run, is_active, now_ms, workers };
    if args.json { write_json(&snapshot, out) } else { write_text(&snapshot, out) }
}

/// What `status` reads from the store, at `now_ms`.
struct Snapshot {
    study: Study,
    trials: Vec<Trial>,
    /// The latest run of the study; `None` if it never ran.
    run: Option<Run>,
    /// Whether `run` has not ended and its process is alive (shared study: whether any worker
    /// works).
    is_active: bool,
    now_ms: i64,
    /// A shared study's workers, oldest first; empty on SQLite.
    workers: Vec<Worker>,
}

/// A worker that heartbeats more rarely than this is reported silent: its trial is about to be
/// lost (the workers' default grace period).
const SILENT_AFTER_MS: i64 = 30_000;

/// Not stopped, and heartbeating.
fn is_working(w: &Worker, now_ms: i64) -> bool {
    w.ended_at_ms.is_none() && now_ms - w.heartbeat_ms < SILENT_AFTER_MS
}

/// `working`, `silent`, or `stopped: REASON`.
fn worker_state(w: &Worker, now_ms: i64) -> String {
    match (&w.ended_at_ms, &w.stop_reason) {
        (Some(_), Some(reason)) => format!("stopped: {reason}"),
        (Some(_), None) => "stopped".to_string(),
        (None, _) if is_working(w, now_ms) => "working".to_string(),
        (None, _) => "silent (killed or cut off; its trial will be lost and retried)".to_string(),
    }
}

impl Snapshot {
    /// The latest run, if it has not ended and its process is alive.
    fn active(&self) -> Option<&Run> {
        self.run.as_ref().filter(|_| self.is_active)
    }

    /// The running trial, when a live daemon runs it.
    fn in_flight(&self) -> Option<&Trial> {
        self.trials.iter().find(|t| t.state == TrialState::Running).filter(|_| self.is_active)
    }

    /// Trial counts by state name.
    fn counts(&self) -> BTreeMap<&'static str, i32> {
        let mut counts = BTreeMap::new();
        for t in &self.trials {
            *counts.entry(t.state.as_str()).or_insert(0) += 1;
        }
        counts
    }

    /// Trials with a result (complete, infeasible, pruned).
    fn finished(&self) -> i64 {
        self.trials
            .iter()
            .filter(|t| matches!(t.state, TrialState::Complete | TrialState::Infeasible | TrialState::Pruned))
            .count() as i64
    }

    /// Trials left in the latest run's budget; `None` without a trial budget.
    fn trials_left(&self) -> Option<i64> {
        self.run.as_ref().and_then(|r| r.max_trials).map(|m| (m - self.finished()).max(0))
    }

    /// Seconds until the active run's deadline; `None` when not running or without one.
    fn time_left_s(&self) -> Option<f64> {
        self.active().and_then(|r| r.deadline_ms).map(|d| ((d - self.now_ms).max(0)) as f64 / 1000.0)
    }

    /// Running (with pid and heartbeat), stopped (with the reason) or never run.
    fn state(&self) -> String {
        let now = self.now_ms;
        match (&self.run, self.active()) {
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
        }
    }
}

fn write_json(s: &Snapshot, out: &mut dyn Write) -> anyhow::Result<()> {
    let now = s.now_ms;
    let doc = json!({
        "study": s.study.name,
        "state": s.state(),
        "is_running": s.active().is_some(),
        "run": s.run,
        "in_flight": s.in_flight().map(|t| json!({"number": t.number, "params": t.params, "elapsed_s": (now - t.started_at_ms) as f64 / 1000.0})),
        "counts": s.counts(),
        "finished": s.finished(),
        "best": trial::best(&s.trials, s.study.direction).map(|(t, feasible)| trial_json(t, feasible)),
        "trials_left": s.trials_left(),
        "time_left_s": s.time_left_s(),
        "workers": s.workers.iter().map(|w| json!({
            "host": w.host,
            "pid": w.pid,
            "state": worker_state(w, now),
            "last_heartbeat_s_ago": (now - w.heartbeat_ms) as f64 / 1000.0,
            "in_flight": w.in_flight,
            "trials_done": w.trials_done,
            "started_at_ms": w.started_at_ms,
        })).collect::<Vec<_>>(),
    });
    writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

fn write_text(s: &Snapshot, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "study     {}", s.study.name)?;
    writeln!(out, "state     {}", s.state())?;
    match s.in_flight() {
        Some(t) => writeln!(
            out,
            "in flight trial {} ({}), {:.0} s so far",
            t.number,
            t.params.brief(),
            (s.now_ms - t.started_at_ms) as f64 / 1000.0
        )?,
        None => writeln!(out, "in flight none")?,
    }
    writeln!(
        out,
        "trials    {} ({})",
        s.trials.len(),
        s.counts().iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
    )?;
    match trial::best(&s.trials, s.study.direction) {
        Some((t, true)) => writeln!(
            out,
            "best      trial {} ({} = {:.3}, meets every SLO)",
            t.number,
            s.study.objective_metric,
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
    let left = match (s.trials_left(), s.time_left_s()) {
        (None, None) => "no budget set".to_string(),
        (t, secs) => [t.map(|t| format!("{t} trials")), secs.map(|s| format!("{:.0} min", s / 60.0))]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
    };
    writeln!(out, "left      {left}")?;
    write_workers(s, out)
}

/// The workers table of a shared study (nothing on SQLite).
fn write_workers(s: &Snapshot, out: &mut dyn Write) -> anyhow::Result<()> {
    if s.workers.is_empty() {
        return Ok(());
    }
    let working = s.workers.iter().filter(|w| is_working(w, s.now_ms)).count();
    writeln!(out, "workers   {} ({working} working)", s.workers.len())?;
    let rows: Vec<Vec<String>> = s
        .workers
        .iter()
        .map(|w| {
            vec![
                w.host.clone().unwrap_or_else(|| "-".into()),
                w.pid.to_string(),
                format!("{} s ago", (s.now_ms - w.heartbeat_ms).max(0) / 1000),
                w.in_flight.map_or("-".to_string(), |n| format!("trial {n}")),
                w.trials_done.to_string(),
                worker_state(w, s.now_ms),
            ]
        })
        .collect();
    write!(out, "{}", super::output::table(&["host", "pid", "last heartbeat", "in flight", "done", "state"], &rows))?;
    Ok(())
}
