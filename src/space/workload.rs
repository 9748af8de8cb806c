//! What each trial sends: the `[workload]` section (`WorkloadSpec`) and the prompt sets of the
//! `[quality]` guard (`QualitySpec`), with their validation.
//!
//! Owns the settings only; reading the prompt files and running the load is `workload`'s job,
//! scoring answers is `measure::quality`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{QualityFile, WorkloadFile};
use super::{Invalid, parse_duration, resolve_path};

/// `[workload]`: the streaming load each trial runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    pub dataset: PathBuf,
    /// Closed-loop clients in flight at once.
    pub concurrency: u32,
    /// Measured requests per trial (warm-up not included).
    pub requests: u32,
    /// Warm-up requests, tagged and excluded from the figures.
    pub warmup: u32,
    pub max_tokens: u32,
    pub seed: u64,
    pub request_timeout: Duration,
    /// Whether the server may reuse cached prompt prefixes between requests.
    pub prompt_cache: bool,
    /// Which window of the study's seeded prompt order a run takes (the trial's draw): each
    /// trial sends its own prompts, so a reused server's prompt cache never sees them again.
    /// 0 when the space is loaded; the daemon sets it per trial.
    pub draw: u64,
    /// `trace = "FILE"`: replay a trace on its own schedule instead of sending `dataset` (issue 17).
    pub trace: Option<TraceSpec>,
}

/// `[workload] trace = "FILE"` and its settings: which part of the trace is replayed, how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    pub path: PathBuf,
    /// `mooncake`, `capture`, `azure` or `burstgpt`; `None`: detected from the content.
    pub format: Option<String>,
    /// Multiplies the trace's inter-arrival times: 0.5 replays twice as fast.
    pub time_scale: f64,
    /// Trace time (before scaling) the replay starts at; arrivals before it are left out.
    pub start: Duration,
    /// How much trace time is replayed from `start`; `None`: to the end.
    pub duration: Option<Duration>,
    /// At most this many requests (the first ones of the window).
    pub max_requests: Option<u32>,
    /// Tokens per block of the trace's `hash_ids`.
    pub block_size: u32,
}

/// The names `format` accepts (`workload::trace::Format`).
const TRACE_FORMATS: [&str; 4] = ["mooncake", "capture", "azure", "burstgpt"];

/// The quantization quality guard: greedy answers of each model variant are scored against the
/// highest-precision variant's (see `measure::quality`).
#[derive(Debug, Clone, PartialEq)]
pub struct QualitySpec {
    /// JSONL with `answer` and `accept` per prompt; every line is used.
    pub known_answers: PathBuf,
    /// JSONL of further prompts; the first `count` are used.
    pub prompts: PathBuf,
    pub count: u32,
    pub max_tokens: u32,
}

/// `[workload]`: counts of at least one, the dataset resolved against `base`.
pub(super) fn validate_workload(w: WorkloadFile, base: &Path) -> Result<WorkloadSpec, Invalid> {
    for (key, value) in [
        ("workload.concurrency", w.concurrency),
        ("workload.requests", w.requests),
        ("workload.max_tokens", w.max_tokens),
    ] {
        if value == 0 {
            return Err(Invalid::new(key, "must be at least 1 (got '0')"));
        }
    }
    Ok(WorkloadSpec {
        dataset: resolve_path(base, &w.dataset),
        concurrency: w.concurrency,
        requests: w.requests,
        warmup: w.warmup,
        max_tokens: w.max_tokens,
        seed: w.seed,
        request_timeout: parse_duration(&w.request_timeout).map_err(|m| Invalid::new("workload.request_timeout", m))?,
        prompt_cache: w.prompt_cache,
        draw: 0,
        trace: validate_trace(&w, base)?,
    })
}

/// The trace settings; `None` without `trace`, an error for a trace setting without it.
fn validate_trace(w: &WorkloadFile, base: &Path) -> Result<Option<TraceSpec>, Invalid> {
    let Some(path) = &w.trace else {
        let stray = [
            ("workload.format", w.format.is_some()),
            ("workload.window", w.window.is_some()),
            ("workload.max_requests", w.max_requests.is_some()),
        ];
        if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
            return Err(Invalid::new(*key, "only applies with workload.trace"));
        }
        return Ok(None);
    };
    if let Some(f) = &w.format
        && !TRACE_FORMATS.contains(&f.as_str())
    {
        return Err(Invalid::new(
            "workload.format",
            format!("unknown trace format '{f}' (known: {})", TRACE_FORMATS.join(", ")),
        ));
    }
    if !(w.time_scale.is_finite() && w.time_scale > 0.0) {
        return Err(Invalid::new("workload.time_scale", format!("must be a positive number (got '{}')", w.time_scale)));
    }
    if w.block_size == 0 {
        return Err(Invalid::new("workload.block_size", "must be at least 1 (got '0')"));
    }
    if w.max_requests == Some(0) {
        return Err(Invalid::new("workload.max_requests", "must be at least 1 (got '0')"));
    }
    let window = w.window.as_ref();
    let duration_of =
        |key: &str, v: Option<&String>| v.map(|d| parse_duration(d).map_err(|m| Invalid::new(key, m))).transpose();
    Ok(Some(TraceSpec {
        path: resolve_path(base, path),
        format: w.format.clone(),
        time_scale: w.time_scale,
        start: duration_of("workload.window.start", window.and_then(|x| x.start.as_ref()))?.unwrap_or_default(),
        duration: duration_of("workload.window.duration", window.and_then(|x| x.duration.as_ref()))?,
        max_requests: w.max_requests,
        block_size: w.block_size,
    }))
}

/// `[quality]`: on when the section or `slo.quality_agreement_min` is given (defaults fill the
/// rest). Nothing in it can be wrong once it parsed, hence no `Result`.
pub(super) fn validate_quality(
    raw: Option<QualityFile>,
    agreement_min: Option<f64>,
    base: &Path,
) -> Option<QualitySpec> {
    match (raw, agreement_min) {
        (None, None) => None,
        (q, _) => {
            let q = q.unwrap_or_default();
            Some(QualitySpec {
                known_answers: resolve_path(base, &q.known_answers),
                prompts: resolve_path(base, &q.prompts),
                count: q.count,
                max_tokens: q.max_tokens.max(1),
            })
        }
    }
}
