//! The study report: one self-contained static HTML file (inline CSS, inline SVG plots, no
//! script, no URL) that an operator opens in the morning or attaches to a ticket.
//!
//! Reads only store types ([`Study`], [`Trial`], [`trial::best`]) plus the stored space text for
//! the budget and the default configuration, and [`export::render`] for the env file. Plots are in
//! [`plot`]. Everything taken from the database is HTML-escaped. A report of a study that is
//! still running shows the trials stored at the moment it is written.

pub mod plot;
pub mod workload;

use std::fmt::Write as _;
use std::path::Path;

use crate::export::{self, Format};
use crate::space::{Candidate, Direction, Space};
use crate::store::Validation;
use crate::trial::{self, Study, Trial, TrialState};
use plot::{HistoryPoint, Mark, ParetoPoint};

/// Escape text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` for unix milliseconds (proleptic Gregorian, no leap seconds).
pub fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Order trials as the report's table lists them: feasible trials by objective (best first),
/// then measured trials missing an SLO by violation, then infeasible ones, then trials without a
/// result (running, interrupted). Ties keep trial order.
pub fn ranked(trials: &[Trial], direction: Direction) -> Vec<&Trial> {
    let group = |t: &Trial| match (t.is_feasible(), t.state) {
        (true, _) => 0,
        (false, TrialState::Complete | TrialState::Pruned) => 1,
        (false, TrialState::Infeasible) => 2,
        _ => 3,
    };
    let mut out: Vec<&Trial> = trials.iter().collect();
    out.sort_by(|a, b| {
        group(a).cmp(&group(b)).then_with(|| {
            let key = |t: &Trial| match group(t) {
                0 => {
                    let v = t.objective.unwrap_or(f64::NAN);
                    if direction == Direction::Maximize { -v } else { v }
                }
                1 => t.violation.unwrap_or(f64::INFINITY),
                _ => 0.0,
            };
            key(a).total_cmp(&key(b)).then(a.number.cmp(&b.number))
        })
    });
    out
}

/// The stored space, when it still parses (paths are not checked; only values are read).
fn stored_space(study: &Study) -> Option<Space> {
    Space::from_toml(&study.space_toml, "stored space", Path::new(".")).ok()
}

/// The measured trial whose parameters are every parameter's declared default, if one ran.
pub fn default_trial<'a>(trials: &'a [Trial], default: &Candidate) -> Option<&'a Trial> {
    trials
        .iter()
        .filter(|t| t.params == *default)
        .find(|t| t.summary.is_some())
        .or_else(|| trials.iter().find(|t| t.params == *default))
}

fn mark(t: &Trial) -> Mark {
    match t.state {
        _ if t.is_feasible() => Mark::Feasible,
        TrialState::Complete => Mark::Missed,
        TrialState::Pruned => Mark::Pruned,
        _ => Mark::Infeasible,
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite()).map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "–".into())
}

fn count(trials: &[Trial], state: TrialState) -> usize {
    trials.iter().filter(|t| t.state == state).count()
}

fn note(out: &mut String, text: &str) {
    let _ = writeln!(out, r#"<p class="note">{}</p>"#, escape(text));
}

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; padding: 0 16px; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
table { border-collapse: collapse; font-size: 14px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.feasible td:first-child { border-left: 4px solid #1f77b4; }
tr.infeasible { color: #a00; } tr.missed { color: #8a4b00; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 8px 12px; }
.legend span { margin-right: 16px; font-size: 14px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 4px; }
figure { margin: 8px 0; } .effects { display: flex; flex-wrap: wrap; gap: 8px 24px; }
.effects figcaption { font-weight: 600; }
pre { background: #f6f6f6; padding: 12px; overflow-x: auto; border: 1px solid #ddd; }
svg { max-width: 100%; height: auto; }
"#;

const LEGEND: &str = r#"<p class="legend"><span><i class="swatch" style="background:#1f77b4"></i>meets every SLO</span><span><i class="swatch" style="border:2px solid #e67e22;width:7px;height:7px"></i>misses an SLO</span><span><i class="swatch" style="background:#7f7f7f;border-radius:0"></i>pruned</span><span style="color:#c82828">&#x2715; infeasible (no value, drawn on the bottom edge)</span><span><i class="swatch" style="background:#2ca02c;height:3px;border-radius:0"></i>best so far / Pareto front</span></p>"#;

/// What every section reads: the study and its trials, plus what is derived from them once.
struct Input<'a> {
    study: &'a Study,
    trials: &'a [Trial],
    /// The stored space; `None` when its text no longer parses.
    space: Option<Space>,
    /// The best trial and whether it meets every SLO; `None` before any trial finished.
    best: Option<(&'a Trial, bool)>,
    /// The named winner (`trial::winner`, as `best` and `export` name it) behind `best`.
    winner: Option<trial::Winner<'a>>,
    is_max: bool,
    /// `maximize` or `minimize`.
    direction: &'static str,
    metric: &'a str,
}

impl<'a> Input<'a> {
    fn new(study: &'a Study, trials: &'a [Trial], validation: Option<&Validation>) -> Self {
        let is_max = study.direction == Direction::Maximize;
        let winner = trial::winner(trials, study.direction, validation.map(|v| v.winner_number));
        Input {
            study,
            trials,
            space: stored_space(study),
            best: winner.map(|w| (w.trial, w.feasible)),
            winner,
            is_max,
            direction: if is_max { "maximize" } else { "minimize" },
            metric: study.objective_metric.as_str(),
        }
    }
}

/// Render the report of `study` with its `trials` as they are stored at `now_ms`.
pub fn render(study: &Study, trials: &[Trial], validation: Option<&Validation>, now_ms: i64) -> String {
    let input = Input::new(study, trials, validation);
    let html = [
        head(study),
        header_section(&input, now_ms),
        best_section(&input, validation),
        workload::section(input.best.map(|(t, _)| t), input.space.as_ref()),
        history_section(&input),
        pareto_section(trials),
        effects_section(&input),
        trials_section(study, trials),
        env_section(&input),
        "</body>\n</html>\n".to_string(),
    ]
    .concat();
    // Text from the database (server messages, paths) may hold URLs; the file must fetch nothing
    // and contain none. An entity for the slashes reads the same in the browser.
    html.replace("://", ":&#47;&#47;")
}

/// The document up to `<body>`: title and the inline style sheet.
fn head(study: &Study) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>infertune report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&study.name)
    )
}

/// The title and a definition list of facts: objective, model, budget, SLOs, state, trial
/// counts and the fingerprint (engine, host, model files).
fn header_section(input: &Input<'_>, now_ms: i64) -> String {
    let mut h = format!("<header id=\"summary\">\n<h1>Study {}</h1>\n", escape(&input.study.name));
    h.push_str("<dl class=\"facts\">\n");
    for (k, v) in facts(input, now_ms) {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
    }
    h.push_str("</dl>\n</header>\n");
    h
}

/// The header's facts in display order.
fn facts(input: &Input<'_>, now_ms: i64) -> Vec<(&'static str, String)> {
    let (study, trials) = (input.study, input.trials);
    let fp = &study.fingerprint;
    let mut facts: Vec<(&str, String)> = vec![
        ("backend", study.backend_name().to_string()),
        ("strategy", study.strategy_name().to_string()),
        ("objective", format!("{} {}", input.direction, input.metric)),
    ];
    match &input.space {
        Some(s) => facts.extend(space_facts(study, s)),
        None => facts.push(("model", fp.model_sha256.keys().cloned().collect::<Vec<_>>().join(", "))),
    }
    facts.push(("state", state_line(study, trials, now_ms)));
    facts.push((
        "trials",
        format!(
            "{} total: {} complete ({} meet every SLO), {} infeasible, {} pruned, {} interrupted",
            trials.len(),
            count(trials, TrialState::Complete),
            trials.iter().filter(|t| t.is_feasible()).count(),
            count(trials, TrialState::Infeasible),
            count(trials, TrialState::Pruned),
            count(trials, TrialState::Interrupted)
        ),
    ));
    facts.push(("engine", fp.engine_version.clone()));
    facts.push((
        "host",
        format!(
            "{}, {} logical cores, {:.1} GiB RAM, {}",
            fp.host.cpu_model,
            fp.host.logical_cores,
            fp.host.ram_bytes as f64 / (1u64 << 30) as f64,
            fp.host.os
        ),
    ));
    for (path, sha) in &fp.model_sha256 {
        facts.push(("model file", format!("{path} (sha256 {})", &sha[..sha.len().min(16)])));
    }
    facts.push(("created", utc_time(study.created_at_ms)));
    facts.push(("report written", utc_time(now_ms)));
    facts
}

/// Model, budget and SLOs, as the stored space declares them.
fn space_facts(study: &Study, s: &Space) -> Vec<(&'static str, String)> {
    // The model as written in the space file, not resolved against the report's folder.
    let model = study
        .space_toml
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("backend")?.get("model")?.as_str().map(str::to_string))
        .unwrap_or_else(|| s.backend.model.clone());
    let budget = match (s.max_trials, s.max_duration) {
        (None, None) => "none set (runs until the space is exhausted or interrupted)".to_string(),
        (t, d) => [t.map(|t| format!("{t} trials")), d.map(|d| format!("{} min", d.as_secs() / 60))]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut facts = vec![("model", model), ("budget", budget)];
    if !s.slos.is_empty() {
        let slos = s
            .slos
            .iter()
            .map(|slo| format!("{} {} {}", slo.metric, if slo.is_upper_bound { "≤" } else { "≥" }, slo.limit))
            .collect::<Vec<_>>()
            .join(", ");
        facts.push(("SLOs", slos));
    }
    facts
}

/// Running, stopped (with the stored reason) or unfinished.
fn state_line(study: &Study, trials: &[Trial], now_ms: i64) -> String {
    match (&study.stop_reason, count(trials, TrialState::Running)) {
        (_, n) if n > 0 => {
            format!("running: {n} trial(s) in progress; this report shows the study as of {}", utc_time(now_ms))
        }
        (Some(r), _) => format!("stopped: {r}"),
        (None, _) => format!("not finished (no stop recorded); this report shows the study as of {}", utc_time(now_ms)),
    }
}

/// The best trial's settings and figures beside the default trial's, the single-run ratio and
/// the stored validation (or a note that there is none).
fn best_section(input: &Input<'_>, validation: Option<&Validation>) -> String {
    let mut h = String::from("<section id=\"best\">\n<h2>Best configuration against the default</h2>\n");
    let Some((b, feasible)) = input.best else {
        note(&mut h, "No trial has finished yet: there is no best configuration.");
        h.push_str("</section>\n");
        return h;
    };
    if feasible {
        let _ = writeln!(h, "<p>Trial #{} is the best trial that meets every SLO.</p>", b.number);
        h.push_str(&winner_line(input));
    } else {
        note(
            &mut h,
            &format!(
                "No trial meets every SLO. Trial #{} is the least violating (violation {}).",
                b.number,
                fmt_opt(b.violation, 3)
            ),
        );
    }
    let default_candidate = input.space.as_ref().and_then(Space::default_candidate);
    let default = default_candidate.as_ref().and_then(|d| default_trial(input.trials, d));
    match (&default_candidate, default) {
        (None, _) => {
            note(&mut h, "The search space declares no default for every parameter, so no default trial was measured.")
        }
        (Some(d), None) => note(&mut h, &format!("No default trial was measured (default: {}).", d.brief())),
        (Some(_), Some(d)) if d.number == b.number => {
            let _ = writeln!(h, "<p>The best trial is the default configuration.</p>");
        }
        _ => {}
    }
    let d = default.filter(|d| d.number != b.number);
    h.push_str(&best_table(b, d));
    if let (Some(d), Some(bo), Some(dobj)) = (d, b.objective, d.and_then(|d| d.objective))
        && dobj != 0.0
    {
        let _ = writeln!(
            h,
            "<p>Single-run ratio best/default on {}: {:.2}× (trial #{} vs #{}).</p>",
            escape(input.metric),
            bo / dobj,
            b.number,
            d.number
        );
    }
    h.push_str(&validation_line(validation));
    h.push_str("</section>\n");
    h
}

/// Which rule named the winner, its runs and mean, and the study's own noise (issue 16).
fn winner_line(input: &Input<'_>) -> String {
    let mut h = String::new();
    if let Some(w) = input.winner {
        let _ = writeln!(
            h,
            "<p>Named by the rule: {} ({} run{} of this configuration, mean {} {}).</p>",
            escape(w.describe()),
            w.runs,
            if w.runs == 1 { "" } else { "s" },
            escape(input.metric),
            fmt_opt(w.mean, 3),
        );
    }
    let _ = writeln!(h, "<p>{}</p>", escape(&noise_sentence(input.trials)));
    h.push_str(&remeasured_table(input));
    h
}

/// Every configuration measured more than once (re-measures, the anchor): its runs and spread.
fn remeasured_table(input: &Input<'_>) -> String {
    let points = trial::points(input.trials);
    let repeated: Vec<&trial::Point<'_>> = points.iter().filter(|p| p.runs.len() > 1).collect();
    if repeated.is_empty() {
        return String::new();
    }
    let mut h = format!(
        "<table>\n<tr><th>first #</th><th>params</th><th>runs (trial numbers)</th><th>mean {}</th><th>min</th><th>max</th><th>every run meets the SLOs</th></tr>\n",
        escape(input.metric)
    );
    for p in repeated {
        let values = p.values();
        let numbers: Vec<String> = p.runs.iter().map(|t| t.number.to_string()).collect();
        let (min, max) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.first().number,
            escape(&p.first().params.brief()),
            p.runs.len(),
            numbers.join(", "),
            fmt_opt(p.mean(), 3),
            fmt_opt(values.first().map(|_| min), 3),
            fmt_opt(values.first().map(|_| max), 3),
            if p.is_feasible() { "yes" } else { "no" },
        );
    }
    h.push_str("</table>\n");
    h
}

/// "Runs of one configuration vary by ±x % here", from the study's repeated runs, or why not.
pub fn noise_sentence(trials: &[Trial]) -> String {
    let repeats = trial::points(trials).iter().filter(|p| p.runs.len() > 1).count();
    match trial::noise(trials) {
        Some(n) => format!(
            "Runs of one configuration vary by ±{:.1} % here (pooled relative standard deviation over {} configuration{} measured more than once); a challenger needs {} run{} before it can be named.",
            n.relative_sd * 100.0,
            n.points,
            if n.points == 1 { "" } else { "s" },
            trial::study_runs_needed(trials),
            if trial::study_runs_needed(trials) == 1 { "" } else { "s" },
        ),
        None if repeats == 0 => {
            "Noise unknown: no configuration was measured twice, so every figure here is a single run.".to_string()
        }
        None => "Noise unknown: no configuration has two complete runs.".to_string(),
    }
}

/// Settings, then figures, of the best trial `b` and (when another trial) the default `d`.
fn best_table(b: &Trial, d: Option<&Trial>) -> String {
    let mut h = String::new();
    let mut cols = vec![format!("best (#{})", b.number)];
    if let Some(d) = d {
        cols.push(format!("default (#{})", d.number));
    }
    let _ = write!(h, "<table>\n<tr><th>setting</th>");
    for c in &cols {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr>\n");
    for name in b.params.0.keys() {
        let value = |t: &Trial| escape(&t.params.get(name).map(|v| v.to_string()).unwrap_or_default());
        let _ = write!(h, "<tr><td>{}</td><td>{}</td>", escape(name), value(b));
        if let Some(d) = d {
            let _ = write!(h, "<td>{}</td>", value(d));
        }
        h.push_str("</tr>\n");
    }
    type Cell = fn(&Trial) -> String;
    let rows: [(&str, Cell); 9] = [
        ("objective", |t| fmt_opt(t.objective, 3)),
        ("TTFT p95 (ms)", |t| fmt_opt(t.summary.as_ref().map(|s| s.ttft_ms.p95), 0)),
        ("TPOT p50 (ms)", |t| fmt_opt(t.summary.as_ref().map(|s| s.tpot_ms.p50), 1)),
        ("output tok/s", |t| fmt_opt(t.summary.as_ref().map(|s| s.output_tok_per_s), 1)),
        ("goodput (req/s)", |t| fmt_opt(t.summary.as_ref().map(|s| s.goodput_rps), 3)),
        ("success rate (%)", |t| fmt_opt(t.summary.as_ref().map(|s| s.success_rate * 100.0), 0)),
        ("peak RSS (MB)", |t| fmt_opt(t.summary.as_ref().map(|s| s.peak_rss_bytes as f64 / 1048576.0), 0)),
        ("SLO violation", |t| fmt_opt(t.violation, 3)),
        ("state", |t| t.state.to_string()),
    ];
    for (label, f) in rows {
        let _ = write!(h, "<tr><th>{}</th><td class=\"num\">{}</td>", escape(label), escape(&f(b)));
        if let Some(d) = d {
            let _ = write!(h, "<td class=\"num\">{}</td>", escape(&f(d)));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

/// The stored A/B re-measurement of the winner against the default, or a note that there is none.
fn validation_line(validation: Option<&Validation>) -> String {
    let mut h = String::new();
    match validation {
        Some(v) => {
            let _ = writeln!(
                h,
                "<p>Validated: trial #{} against the default on {} interleaved pairs of fresh starts: {} ratio {:.3}× (95 % CI {:.3}–{:.3}).</p>",
                v.winner_number,
                v.winner_values.len().min(v.default_values.len()),
                escape(&v.metric),
                v.ratio,
                v.ci_low,
                v.ci_high
            );
        }
        None => note(
            &mut h,
            "Validation: not validated (no interleaved A/B re-measurement of the winner against the default is stored; run `infertune validate STUDY`), so the figures above are single runs without a confidence interval.",
        ),
    }
    h
}

/// The objective per finished trial with the best-so-far line, or a note when none has a value.
fn history_section(input: &Input<'_>) -> String {
    let metric = input.metric;
    let mut h = String::from("<section id=\"history\">\n<h2>Trial history</h2>\n");
    let history: Vec<HistoryPoint> = input
        .trials
        .iter()
        .filter(|t| !matches!(t.state, TrialState::Running | TrialState::Interrupted | TrialState::Lost))
        .map(|t| HistoryPoint { number: t.number, objective: t.objective.filter(|v| v.is_finite()), mark: mark(t) })
        .collect();
    if history.iter().any(|p| p.objective.is_some()) {
        let _ = writeln!(
            h,
            "<p>{} per trial ({}); the green line is the best value so far among trials that meet every SLO.</p>",
            escape(metric),
            input.direction
        );
        let _ = writeln!(h, "<figure>{}</figure>\n{LEGEND}", plot::history(&history, metric, input.is_max));
    } else {
        note(
            &mut h,
            &format!(
                "No trial produced a {metric} value yet ({} finished without one), so there is no history to plot.",
                history.len()
            ),
        );
    }
    h.push_str("</section>\n");
    h
}

/// TTFT p95 against output tok/s of the complete trials that served a request, with the front.
fn pareto_section(trials: &[Trial]) -> String {
    let mut h = String::from("<section id=\"pareto\">\n<h2>Latency against throughput (Pareto front)</h2>\n");
    let pareto: Vec<ParetoPoint> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| {
            let s = t.summary.as_ref()?;
            (s.succeeded > 0 && s.ttft_ms.p95.is_finite() && s.output_tok_per_s.is_finite()).then(|| ParetoPoint {
                number: t.number,
                ttft_p95_ms: s.ttft_ms.p95,
                output_tok_per_s: s.output_tok_per_s,
                is_feasible: t.is_feasible(),
            })
        })
        .collect();
    if pareto.is_empty() {
        note(&mut h, "No complete trial served a request, so there is no latency or throughput to plot.");
    } else {
        h.push_str("<p>Each complete trial by TTFT p95 and output tok/s. The green line joins the trials no other trial beats on both (among those meeting every SLO, if any do).</p>\n");
        let _ = writeln!(h, "<figure>{}</figure>\n{LEGEND}", plot::pareto(&pareto));
    }
    h.push_str("</section>\n");
    h
}

/// One strip plot per parameter that took two or more values among the measured trials; the
/// parameters held at one value are listed instead.
fn effects_section(input: &Input<'_>) -> String {
    let metric = input.metric;
    let mut h = String::from("<section id=\"effects\">\n<h2>Parameter effects</h2>\n");
    let measured: Vec<&Trial> = input.trials.iter().filter(|t| t.objective.is_some_and(f64::is_finite)).collect();
    if measured.is_empty() {
        note(
            &mut h,
            &format!("No trial produced a {metric} value yet, so there is nothing to compare across parameter values."),
        );
        h.push_str("</section>\n");
        return h;
    }
    let _ = writeln!(
        h,
        "<p>{} of each measured trial, grouped by each parameter's value.</p>\n<div class=\"effects\">",
        escape(metric)
    );
    let names = param_names(input.space.as_ref(), &measured);
    let mut held = Vec::new();
    for name in &names {
        let cats = categories(input.space.as_ref(), name, &measured);
        if cats.len() < 2 {
            held.push(format!("{name} = {}", cats.first().map(String::as_str).unwrap_or("unset")));
            continue;
        }
        let points: Vec<(usize, f64, Mark)> = measured
            .iter()
            .filter_map(|t| {
                let v = t.params.get(name)?.to_string();
                Some((cats.iter().position(|c| *c == v)?, t.objective?, mark(t)))
            })
            .collect();
        let _ = writeln!(
            h,
            "<figure><figcaption>{}</figcaption>{}</figure>",
            escape(name),
            plot::effect(&cats, &points, metric)
        );
    }
    h.push_str("</div>\n");
    if held.len() == names.len() {
        note(&mut h, "Every measured trial used the same value of every parameter, so there is no effect to show.");
    }
    if !held.is_empty() {
        let _ = writeln!(h, "<p>Held at one value in every measured trial: {}.</p>", escape(&held.join(", ")));
    }
    h.push_str(LEGEND);
    h.push_str("</section>\n");
    h
}

/// Parameter names in the space's order, then any name only the measured trials know.
fn param_names(space: Option<&Space>, measured: &[&Trial]) -> Vec<String> {
    let mut names: Vec<String> = space.map(|s| s.params.iter().map(|p| p.name.clone()).collect()).unwrap_or_default();
    for t in measured {
        for k in t.params.0.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    names
}

/// The values of parameter `name` that measured trials used: in the space's own order, then
/// any value only the trials know.
fn categories(space: Option<&Space>, name: &str, measured: &[&Trial]) -> Vec<String> {
    let mut cats: Vec<String> = space
        .and_then(|s| s.params.iter().find(|p| p.name == name))
        .map(|p| p.domain.grid_points().iter().map(|v| v.to_string()).collect())
        .unwrap_or_default();
    let tried: Vec<String> = measured.iter().filter_map(|t| t.params.get(name).map(|v| v.to_string())).collect();
    for v in &tried {
        if !cats.contains(v) {
            cats.push(v.clone());
        }
    }
    cats.retain(|c| tried.contains(c));
    cats
}

/// Every trial, best first (see [`ranked`]), with its figures and first error line.
fn trials_section(study: &Study, trials: &[Trial]) -> String {
    let mut h = String::from("<section id=\"trials\">\n<h2>All trials</h2>\n");
    if trials.is_empty() {
        note(&mut h, "The study has no trials yet.");
    } else {
        h.push_str("<p>Sorted best first: trials meeting every SLO by objective, then trials missing an SLO by violation, then infeasible trials, then trials without a result.</p>\n");
        h.push_str("<table>\n<tr><th>rank</th><th>#</th><th>state</th><th>reason</th><th>params</th><th>objective</th><th>TTFT p95 ms</th><th>TPOT p50 ms</th><th>tok/s</th><th>goodput</th><th>ok %</th><th>RSS MB</th><th>violation</th><th>message</th></tr>\n");
        for (rank, t) in ranked(trials, study.direction).into_iter().enumerate() {
            h.push_str(&trial_row(rank + 1, t));
        }
        h.push_str("</table>\n");
    }
    h.push_str("</section>\n");
    h
}

/// One `<tr>` of the trial table; `rank` counts from 1.
fn trial_row(rank: usize, t: &Trial) -> String {
    let s = t.summary.as_ref();
    let class = match mark(t) {
        Mark::Feasible => "feasible",
        Mark::Missed => "missed",
        Mark::Pruned => "pruned",
        Mark::Infeasible => "infeasible",
    };
    let reason = match (&t.error_class, t.state) {
        (Some(c), _) => c.to_string(),
        (None, TrialState::Complete | TrialState::Pruned) if !t.is_feasible() => {
            let missed: Vec<&str> = t.violations.iter().filter(|(_, v)| **v > 0.0).map(|(k, _)| k.as_str()).collect();
            format!("slo: {}", missed.join(", "))
        }
        _ => String::new(),
    };
    let message = t.error_message.as_deref().unwrap_or("");
    let first = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let cells = [
        rank.to_string(),
        t.number.to_string(),
        t.state.to_string(),
        reason,
        t.params.brief(),
        fmt_opt(t.objective, 3),
        fmt_opt(s.map(|s| s.ttft_ms.p95), 0),
        fmt_opt(s.map(|s| s.tpot_ms.p50), 1),
        fmt_opt(s.map(|s| s.output_tok_per_s), 1),
        fmt_opt(s.map(|s| s.goodput_rps), 3),
        fmt_opt(s.map(|s| s.success_rate * 100.0), 0),
        fmt_opt(s.map(|s| s.peak_rss_bytes as f64 / 1048576.0), 0),
        fmt_opt(t.violation, 2),
    ];
    let mut h = format!("<tr class=\"{class}\">");
    for (i, c) in cells.iter().enumerate() {
        let num = if matches!(i, 0 | 1 | 5..=12) { " class=\"num\"" } else { "" };
        let _ = write!(h, "<td{num}>{}</td>", escape(c));
    }
    let _ = writeln!(h, "<td title=\"{}\">{}</td></tr>", escape(message), escape(first));
    h
}

/// The env file of the best trial, as `infertune export --format env` writes it.
fn env_section(input: &Input<'_>) -> String {
    let mut h = String::from("<section id=\"env\">\n<h2>Env file of the best configuration</h2>\n");
    match input.best {
        None => note(&mut h, "No trial has finished yet, so there is nothing to export."),
        Some((b, _)) => match export::render(input.study, b, Format::Env) {
            Ok(text) => {
                let _ = writeln!(
                    h,
                    "<p>The same as <code>infertune export {} --format env</code>.</p>\n<pre>{}</pre>",
                    escape(&input.study.name),
                    escape(&text)
                );
            }
            Err(e) => note(&mut h, &format!("Cannot export trial #{}: {e}", b.number)),
        },
    }
    h.push_str("</section>\n");
    h
}

/// The "Deployments and watch" section (issue 19), inserted before `</body>` of a rendered
/// report: every apply (kept or rolled back, the canary against the study's figure, why), and
/// the watch series as a plot of the objective over time with the deploys marked, then a table
/// with the SLO violation and fingerprint changes. `html` is [`render`]'s output.
pub fn with_operations(
    html: String,
    deployments: &[crate::store::Deployment],
    watches: &[crate::store::WatchRun],
    metric: &str,
) -> String {
    if deployments.is_empty() && watches.is_empty() {
        return html;
    }
    let f = |v: Option<f64>| v.filter(|x| x.is_finite()).map_or("-".to_string(), |x| format!("{x:.4}"));
    let ci = |m: Option<&crate::store::Measured>| {
        m.map_or("-".into(), |m| format!("{:.3} [{:.3}, {:.3}]", m.ratio, m.ci_low, m.ci_high))
    };
    let mut h = String::from("<section id=\"operations\">\n<h2>Deployments and watch</h2>\n");
    let _ = writeln!(h, "<p>Rule: {}</p>", escape(crate::deploy::rule::RULE));
    if !watches.is_empty() {
        h.push_str(&operations_plot(deployments, watches, metric));
    }
    h.push_str("<table>\n<tr><th>when (UTC)</th><th>event</th><th>trial</th><th>state</th><th>study</th><th>measured</th><th>ratio [95 % CI]</th><th>violation</th><th>fingerprint change / why</th></tr>\n");
    let mut rows: Vec<(i64, String)> = deployments
        .iter()
        .map(|d| {
            let c = d.canary.as_ref();
            let row = format!(
                "<tr><td>{}</td><td>apply</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                utc_time(d.started_at_ms), d.trial_number, d.state.as_str(), f(d.study_objective), f(c.map(|c| c.objective)),
                ci(c), f(c.map(|c| c.violation)), escape(d.reason.as_deref().unwrap_or(""))
            );
            (d.started_at_ms, row)
        })
        .collect();
    rows.extend(watches.iter().map(|w| {
        let m = w.measured.as_ref();
        let why = w.drift.clone().unwrap_or_else(|| w.reason.clone());
        let row = format!(
            "<tr><td>{}</td><td>watch</td><td></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            utc_time(w.at_ms), escape(&w.status), f(w.baseline), f(m.map(|m| m.objective)), ci(m), f(m.map(|m| m.violation)), escape(&why)
        );
        (w.at_ms, row)
    }));
    rows.sort_by_key(|(at, _)| *at);
    rows.into_iter().for_each(|(_, r)| h.push_str(&r));
    h.push_str("</table>\n</section>\n");
    html.replacen("</body>", &(h.replace("://", ":&#47;&#47;") + "</body>"), 1)
}

/// The watch series as a small inline SVG: objective over time (green: holds, orange:
/// regression, red: fingerprint changed), a dashed line at each apply (kept or rolled back).
fn operations_plot(
    deployments: &[crate::store::Deployment],
    watches: &[crate::store::WatchRun],
    metric: &str,
) -> String {
    let (w, h, pad) = (720.0, 220.0, 40.0);
    let times: Vec<i64> = watches.iter().map(|w| w.at_ms).chain(deployments.iter().map(|d| d.started_at_ms)).collect();
    let (t0, t1) = (*times.iter().min().expect("watches"), *times.iter().max().expect("watches"));
    let values: Vec<f64> =
        watches.iter().filter_map(|w| w.measured.as_ref().map(|m| m.objective)).filter(|v| v.is_finite()).collect();
    let (lo, hi) = plot::padded_range(values.iter().copied());
    let x = |t: i64| pad + (w - 2.0 * pad) * if t1 > t0 { (t - t0) as f64 / (t1 - t0) as f64 } else { 0.5 };
    let y = |v: f64| h - pad - (h - 2.0 * pad) * if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    let mut svg = format!(
        "<svg xmlns=\"http:&#47;&#47;www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"watch series\">\n"
    );
    let _ = writeln!(
        svg,
        "<text x=\"4\" y=\"14\" font-size=\"12\">{} (watch runs); dashed: applies</text>",
        escape(metric)
    );
    for d in deployments {
        let color = if d.state == crate::store::DeployState::Kept { "#2ca02c" } else { "#d62728" };
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1}\" y2=\"{2}\" stroke=\"{color}\" stroke-dasharray=\"4 3\"/><text x=\"{0:.1}\" y=\"{3}\" font-size=\"11\">trial {4} {5}</text>",
            x(d.started_at_ms),
            pad,
            h - pad,
            h - 8.0,
            d.trial_number,
            d.state.as_str()
        );
    }
    for r in watches {
        let Some(v) = r.measured.as_ref().map(|m| m.objective).filter(|v| v.is_finite()) else { continue };
        let color = match r.status.as_str() {
            "ok" => "#2ca02c",
            "regression" => "#ff7f0e",
            _ => "#d62728",
        };
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{color}\"><title>{} {} {}</title></circle>",
            x(r.at_ms),
            y(v),
            utc_time(r.at_ms),
            escape(&r.status),
            plot::tick(v)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"4\" y=\"{:.1}\" font-size=\"11\">{}</text><text x=\"4\" y=\"{:.1}\" font-size=\"11\">{}</text>",
        y(hi),
        plot::tick(hi),
        y(lo),
        plot::tick(lo)
    );
    svg + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LaunchPlan;
    use crate::measure::{Dist, Summary, Verdict};
    use crate::space::Value;
    use crate::store::{Finished, NewStudy, Store};
    use crate::trial::{Fingerprint, Outcome, StageTimes};

    const SPACE: &str = r#"
[study]
name = "syn"
strategy = "grid"
budget = { trials = 6, duration = "30m" }
[backend]
kind = "llamacpp"
command = ["llama-server"]
model = "models/m-{quant}.gguf"
[params]
parallel = { values = [1, 2, 4], flag = "-np", default = 4 }
quant = { values = ["Q4_0", "Q4_1"], template = "model", default = "Q4_1" }
[objective]
maximize = "goodput_rps"
[slo]
ttft_p95_ms = 1000
"#;

    enum Kind {
        Ok(f64, f64, f64),
        Missed(f64, f64, f64),
        Infeasible(&'static str, &'static str),
    }

    fn summary(goodput: f64, ttft: f64, tok_s: f64) -> Summary {
        Summary {
            requests: 8,
            succeeded: 8,
            ttft_ms: Dist { n: 8, p95: ttft, ..Default::default() },
            tpot_ms: Dist { n: 8, p50: 20.0, ..Default::default() },
            output_tok_per_s: tok_s,
            goodput_rps: goodput,
            success_rate: 1.0,
            peak_rss_bytes: 300 << 20,
            ..Default::default()
        }
    }

    /// An in-memory study with trials `(parallel, quant, kind)` stored through the real store.
    async fn study_with(trials: &[(i64, &str, Kind)]) -> (Study, Vec<Trial>) {
        let store = Store::open_in_memory().await.unwrap();
        let fingerprint = Fingerprint {
            engine_version: "xllamacpp <test>".into(),
            model_sha256: [("models/m-Q4_0.gguf".to_string(), "ab".repeat(32))].into(),
            host: crate::measure::system::Host {
                cpu_model: "Test CPU".into(),
                logical_cores: 2,
                physical_cores: Some(2),
                ram_bytes: 8 << 30,
                os: "Linux".into(),
            },
        };
        let study = store
            .create_study(&NewStudy {
                name: "syn",
                backend: Some(crate::space::BackendKind::Llamacpp),
                strategy: Some(crate::space::StrategyKind::Grid),
                objective_metric: "goodput_rps",
                direction: Direction::Maximize,
                space_toml: SPACE,
                fingerprint: &fingerprint,
            })
            .await
            .unwrap();
        for (np, quant, kind) in trials {
            let params = Candidate(
                [("parallel".to_string(), Value::Int(*np)), ("quant".to_string(), Value::Str(quant.to_string()))]
                    .into(),
            );
            let (id, _) = store.begin_trial(study.id, &params).await.unwrap();
            let outcome = match kind {
                Kind::Ok(g, t, s) | Kind::Missed(g, t, s) => {
                    let violation = if matches!(kind, Kind::Ok(..)) { 0.0 } else { 0.5 };
                    Outcome::Complete {
                        summary: summary(*g, *t, *s),
                        verdict: Verdict {
                            objective: *g,
                            violations: [("ttft_p95_ms".to_string(), violation)].into(),
                            violation,
                        },
                    }
                }
                Kind::Infeasible(class, message) => {
                    Outcome::Infeasible { class: class.parse().unwrap(), message: message.to_string() }
                }
            };
            let plan = LaunchPlan {
                program: "llama-server".into(),
                args: vec!["-np".into(), np.to_string()],
                env: Default::default(),
                deploy_env: [("LLAMA_ARG_N_PARALLEL".to_string(), np.to_string())].into(),
                args_without_env: vec![],
                request_options: Default::default(),
                model: format!("models/m-{quant}.gguf"),
            };
            store
                .finish_trial(
                    id,
                    &Finished { outcome: &outcome, plan: Some(&plan), stages: StageTimes::default(), samples: &[] },
                )
                .await
                .unwrap();
        }
        let trials = store.trials(study.id).await.unwrap();
        (study, trials)
    }

    /// Issue 16: a lucky single run is not the named configuration; the report names the
    /// re-measured one, says which rule named it, shows its runs and the study's noise.
    #[tokio::test]
    async fn the_report_names_the_intensified_winner_with_its_runs_and_the_noise() {
        let (study, trials) = study_with(&[
            (4, "Q4_1", Kind::Ok(1.0, 500.0, 20.0)),
            (4, "Q4_1", Kind::Ok(1.1, 500.0, 20.0)),
            (2, "Q4_0", Kind::Ok(1.5, 500.0, 20.0)),
            (1, "Q4_0", Kind::Ok(0.5, 500.0, 20.0)),
            (1, "Q4_1", Kind::Ok(0.4, 500.0, 20.0)),
            (2, "Q4_1", Kind::Ok(0.3, 500.0, 20.0)),
        ])
        .await;
        // five configurations compared: the single 1.5 is a challenger that needs a second run
        let html = render(&study, &trials, None, 0);
        assert!(html.contains("Trial #1 is the best trial that meets every SLO"), "{html}");
        assert!(html.contains("intensified incumbent"), "{html}");
        assert!(html.contains("2 runs of this configuration, mean goodput_rps 1.050"), "{html}");
        // runs 1.0 and 1.1: ±0.05/1.05 each, one degree of freedom: √(2·0.0476²) = 6.7 %
        assert!(html.contains("Runs of one configuration vary by ±6.7 % here"), "{html}");
        assert!(html.contains("<td>2 (1, 2)</td>"), "{html}");
        // env section exports the same configuration
        assert!(html.contains("LLAMA_ARG_N_PARALLEL=4"), "{html}");
    }

    fn svg_count(html: &str) -> usize {
        html.matches("<svg").count()
    }

    #[test]
    fn escaping_and_times() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[tokio::test]
    async fn full_report_has_every_section_with_data() {
        let (study, trials) = study_with(&[
            (1, "Q4_0", Kind::Ok(1.0, 500.0, 30.0)),
            (2, "Q4_0", Kind::Ok(2.0, 700.0, 50.0)),
            (4, "Q4_1", Kind::Missed(2.5, 1500.0, 60.0)),
            (4, "Q4_0", Kind::Infeasible("oom", "out of memory <see http://example.invalid/x>")),
            (2, "Q4_1", Kind::Ok(1.5, 600.0, 40.0)),
        ])
        .await;
        let html = render(&study, &trials, None, 1_709_210_096_000);
        for id in ["summary", "best", "history", "pareto", "effects", "trials", "env"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "section {id} missing");
        }
        // History, Pareto, and one strip plot per parameter that took two values.
        assert_eq!(svg_count(&html), 4, "{html}");
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(html.contains("&lt;see http:&#47;&#47;example.invalid/x&gt;"), "message kept, escaped");
        assert!(html.contains("<dt>budget</dt><dd>6 trials, 30 min</dd>"), "{html}");
        assert!(html.contains("<dt>model</dt><dd>models/m-{quant}.gguf</dd>"));
        assert!(html.contains("stopped") || html.contains("not finished"));
        // Best is #2 (goodput 2.0, meets SLOs); default parallel=4 quant=Q4_1 is #3, which
        // misses an SLO, and the ratio compares the two.
        assert!(html.contains("Trial #2 is the best trial that meets every SLO"));
        assert!(html.contains("<th>default (#3)</th>"));
        assert!(html.contains("best/default on goodput_rps: 0.80×"), "{html}");
        assert!(html.contains("not validated"));
        // Table order: feasible by objective (2, 5, 1), then SLO misses (3), then infeasible (4).
        let order: Vec<usize> = [
            "<td class=\"num\">2</td><td>complete",
            "<td class=\"num\">5</td><td>complete",
            "<td class=\"num\">1</td><td>complete",
            "<td class=\"num\">3</td><td>complete",
            "<td class=\"num\">4</td><td>infeasible",
        ]
        .iter()
        .map(|s| html.find(s).unwrap_or_else(|| panic!("row {s} missing")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert!(html.contains("<td>oom</td>") && html.contains("<td>slo: ttft_p95_ms</td>"));
        assert!(html.contains("<pre># infertune study &#39;syn&#39;, trial 2 (meets every SLO)"), "{html}");
        assert!(html.contains("LLAMA_ARG_N_PARALLEL=2"));
    }

    #[tokio::test]
    async fn infeasible_only_study_gives_notes_not_empty_plots() {
        let (study, trials) = study_with(&[
            (1, "Q4_0", Kind::Infeasible("invalid-combination", "V cache quantization requires flash_attn")),
            (2, "Q4_1", Kind::Infeasible("never-ready", "timeout")),
        ])
        .await;
        let html = render(&study, &trials, None, 0);
        assert_eq!(svg_count(&html), 0, "{html}");
        assert!(html.contains("No trial produced a goodput_rps value yet (2 finished without one)"));
        assert!(html.contains("No complete trial served a request"));
        assert!(html.contains("No trial meets every SLO. Trial #1 is the least violating"));
        assert!(html.contains("<td>invalid-combination</td>") && html.contains("<td>never-ready</td>"));
        assert!(html.contains("does NOT meet every SLO"), "env of the least violating trial, flagged");
        assert!(!html.contains("http://"));
    }

    #[tokio::test]
    async fn single_trial_study_plots_one_point_and_notes_the_rest() {
        let (study, trials) = study_with(&[(4, "Q4_1", Kind::Ok(1.25, 400.0, 33.0))]).await;
        let html = render(&study, &trials, None, 0);
        // History and Pareto each with the one point; no strip plot with a single value.
        assert_eq!(svg_count(&html), 2, "{html}");
        assert_eq!(html.matches("<circle").count(), 2);
        assert!(html.contains("Held at one value in every measured trial: parallel = 4, quant = Q4_1."));
        assert!(html.contains("The best trial is the default configuration."));
        assert!(!html.contains("viewBox=\"0 0 0"), "plots have a size");
    }

    #[tokio::test]
    async fn empty_study_and_running_state() {
        let (mut study, trials) = study_with(&[]).await;
        study.stop_reason = None;
        let html = render(&study, &trials, None, 60_000);
        assert_eq!(svg_count(&html), 0);
        assert!(html.contains("The study has no trials yet."));
        assert!(html.contains("as of 1970-01-01 00:01:00 UTC"));
    }

    #[test]
    fn no_default_declared_is_said() {
        let t = |n: i64, v: i64| Trial {
            id: crate::trial::TrialId(n),
            number: n,
            state: TrialState::Complete,
            params: Candidate([("p".to_string(), Value::Int(v))].into()),
            plan: None,
            objective: Some(v as f64),
            violation: Some(0.0),
            violations: Default::default(),
            summary: None,
            error_class: None,
            error_message: None,
            stages: StageTimes::default(),
            started_at_ms: 0,
            ended_at_ms: None,
            purpose: crate::trial::Purpose::Search,
        };
        let trials = [t(1, 3), t(2, 7)];
        assert_eq!(default_trial(&trials, &trials[1].params).map(|t| t.number), Some(2));
        let ranked: Vec<i64> = ranked(&trials, Direction::Minimize).iter().map(|t| t.number).collect();
        assert_eq!(ranked, [1, 2]);
    }
}
