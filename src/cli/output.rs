//! Output shared by several subcommands: the plain text table, the trial row and its headers,
//! the best-trial summary (`best`, `tune`) and the JSON shape of one trial.

use std::io::Write;

use serde_json::json;

use crate::export;
use crate::measure::Metric;
use crate::report::noise_sentence;
use crate::store;
use crate::trial::{self, Study, Trial, Winner};

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
        "replay": t.summary.as_ref().and_then(|s| s.replay.as_ref()),
        "peak_vram_mb": t.summary.as_ref().and_then(|s| Metric::PeakVramMb.value(s)),
        "samples": t.summary.as_ref().map(|s| json!({"requests": s.requests, "succeeded": s.succeeded, "errors": s.errors, "ttft_n": s.ttft_ms.n, "itl_n": s.itl_ms.n})),
        "started_at_ms": t.started_at_ms,
        "ended_at_ms": t.ended_at_ms,
    })
}

/// Column headers of [`trial_row`].
pub(super) const TRIAL_HEADERS: &[&str] =
    &["#", "state", "params", "ttft p95 ms", "tpot p50 ms", "tok/s", "goodput", "ok %", "rss MB", "violation", "note"];

/// One trial as a row of text cells under [`TRIAL_HEADERS`]; `-` where there is no value.
pub(super) fn trial_row(t: &Trial) -> Vec<String> {
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

pub(super) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n).collect::<String>() + "…" }
}

/// The study's named configuration (`trial::winner` without a validation), as `best` shows it:
/// the end of `tune` and `worker`.
pub(super) fn print_best(study: &Study, trials: &[Trial], out: &mut dyn Write) -> anyhow::Result<()> {
    print_winner(study, trials, trial::winner(trials, study.direction, None), out)
}

/// The named configuration, the rule that named it, its row and its command line.
pub(super) fn print_winner(
    study: &Study,
    trials: &[Trial],
    winner: Option<Winner<'_>>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let Some(w) = winner else {
        writeln!(out, "no finished trials yet in study '{}'", study.name)?;
        return Ok(());
    };
    let t = w.trial;
    if w.feasible {
        writeln!(
            out,
            "named configuration: trial #{} ({} {}: mean {:.3} over {} run{})",
            t.number,
            format!("{:?}", study.direction).to_lowercase(),
            study.objective_metric,
            w.mean.unwrap_or(f64::NAN),
            w.runs,
            if w.runs == 1 { "" } else { "s" }
        )?;
    } else {
        writeln!(
            out,
            "no configuration meets every SLO; least violating: #{} (violation {:.3})",
            t.number,
            t.violation.unwrap_or(f64::NAN)
        )?;
        for (metric, v) in t.violations.iter().filter(|(_, v)| **v > 0.0) {
            writeln!(out, "  misses {metric} by {:.0}%", v * 100.0)?;
        }
    }
    writeln!(out, "named by: {}", w.describe())?;
    writeln!(out, "{}", noise_sentence(trials))?;
    write!(out, "{}", table(TRIAL_HEADERS, &[trial_row(t)]))?;
    if let Some(plan) = &t.plan {
        let words: Vec<String> =
            std::iter::once(&plan.program).chain(&plan.args).map(|w| export::shell_quote(w)).collect();
        writeln!(out, "command: {}", words.join(" "))?;
    }
    Ok(())
}

/// A plain left-aligned text table.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
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

    #[test]
    fn table_aligns_columns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
    }
}
