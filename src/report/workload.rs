//! What a trial was measured under, in words: the trace a replay came from (source, format,
//! window, time scale), what that part of the trace asks of a server (requests, span, rates,
//! ISL/OSL, prefix reuse) and how faithfully it was sent (issue 17). `best` prints these lines,
//! the report shows them as a section.
//!
//! Reads only the trial's stored replay record and the stored space; a dataset workload gets a
//! one-line description from the space.

use std::fmt::Write as _;

use super::{escape, fmt_opt};
use crate::measure::ReplayFigure;
use crate::measure::stamp::Lengths;
use crate::space::Space;
use crate::trial::Trial;

/// `label: text` lines describing the workload `trial` was measured under; empty when neither
/// the trial's replay record nor the space says anything.
pub fn lines(trial: Option<&Trial>, space: Option<&Space>) -> Vec<(&'static str, String)> {
    if let Some(figure) = trial.and_then(|t| t.summary.as_ref()?.replay.as_ref()) {
        return replay_lines(figure);
    }
    let Some(w) = space.map(|s| &s.workload) else { return Vec::new() };
    match &w.trace {
        Some(t) => vec![
            ("workload", format!("trace replay of '{}' (no trial replayed it yet)", t.path.display())),
            ("time scale", time_scale(t.time_scale)),
        ],
        None => vec![(
            "workload",
            format!(
                "dataset '{}': {} requests per trial ({} warm-up), {} concurrent clients, max_tokens {}",
                w.dataset.display(),
                w.requests,
                w.warmup,
                w.concurrency,
                w.max_tokens
            ),
        )],
    }
}

fn time_scale(scale: f64) -> String {
    format!("{scale} (arrivals {:.3}× as fast as recorded)", 1.0 / scale)
}

fn lengths(l: &Lengths) -> String {
    format!("p50 {:.0}, p90 {:.0}, p99 {:.0}, max {:.0}, mean {:.1} tokens", l.p50, l.p90, l.p99, l.max, l.mean)
}

/// The replay record of a trial, line by line.
fn replay_lines(f: &ReplayFigure) -> Vec<(&'static str, String)> {
    let mut out = vec![("workload", format!("trace replay of '{}' ({})", f.source, f.format))];
    out.push(("time scale", time_scale(f.time_scale)));
    match &f.window {
        Some(w) => {
            let window = match (w.duration_s, w.max_requests) {
                (None, None) => format!("from {}s of trace time to the end", w.start_s),
                (d, m) => [
                    Some(format!("from {}s", w.start_s)),
                    d.map(|d| format!("for {d}s of trace time")),
                    m.map(|m| format!("at most {m} requests")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
            };
            out.push(("window", format!("{window}: {} of the trace's {} requests", f.requests, w.trace_requests)));
            let rate = match w.mean_rate_per_s {
                Some(r) => format!("mean {r:.2} req/s (replayed at {:.2} req/s)", r / f.time_scale),
                None => "all at one instant".to_string(),
            };
            out.push((
                "trace stats",
                format!("span {:.1}s, {rate}, peak {:.0} req/s over 1 s (trace time)", w.span_s, w.peak_rate_1s_per_s),
            ));
            out.push(("ISL", lengths(&w.isl)));
            out.push(("OSL", lengths(&w.osl)));
            if let Some(reuse) = w.prefix_reuse {
                out.push((
                    "prefix reuse",
                    format!("{:.1} % of {}-token blocks seen before", reuse * 100.0, w.block_size),
                ));
            }
        }
        None => out.push(("window", format!("{} requests (no window recorded for this trial)", f.requests))),
    }
    out.push((
        "ISL sent",
        format!(
            "server counted mean {:.1} tokens against the trace's {:.1} ({:.2} % off per request)",
            f.isl_measured_mean, f.isl_trace_mean, f.isl_error_pct
        ),
    ));
    out.push(("prompts", f.prompts.clone()));
    out.push((
        "send lateness",
        format!(
            "p50 {} ms, p99 {} ms over {} requests{}",
            fmt_opt(Some(f.lateness_ms.p50), 2),
            fmt_opt(Some(f.lateness_ms.p99), 2),
            f.lateness_ms.n,
            if f.is_valid { "" } else { " (client fell behind: invalid)" }
        ),
    ));
    out
}

/// The report's workload section: [`lines`] as a definition list; empty without lines.
pub(super) fn section(trial: Option<&Trial>, space: Option<&Space>) -> String {
    let lines = lines(trial, space);
    if lines.is_empty() {
        return String::new();
    }
    let mut h = String::from("<section id=\"workload\">\n<h2>Workload</h2>\n");
    if let Some(t) = trial.filter(|t| t.summary.as_ref().is_some_and(|s| s.replay.is_some())) {
        let _ = writeln!(h, "<p>As replayed in trial #{}, the best trial.</p>", t.number);
    }
    h.push_str("<dl class=\"facts\">\n");
    for (k, v) in lines {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
    }
    h.push_str("</dl>\n</section>\n");
    h
}
