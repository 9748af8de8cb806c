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
}

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
    })
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
