//! Stamped figures for reports: every metric carries its definition, its unit, its sample count,
//! percentiles read from an HDR histogram, and the raw per-request values it came from (for
//! bootstrap and re-analysis outside infertune).
//!
//! `Dist::of` (exact, linear interpolation) stays the stored summary; this module adds the HDR
//! view used by `bench` output. The histogram records microseconds with 3 significant digits
//! (relative error ≤ 0.1 %), from 1 µs to 10 min (`search-and-measurement.md` §6.1).

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Dist, Sample};

/// Highest value the histogram records, in µs (10 min); larger values are clamped.
const HDR_MAX_US: u64 = 600_000_000;

/// Percentiles of values in milliseconds, read from an HDR histogram. Mean and max are exact.
pub fn hdr_dist(values_ms: &[f64]) -> Dist {
    if values_ms.is_empty() {
        return Dist::default();
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, HDR_MAX_US, 3).expect("static bounds are valid");
    for v in values_ms {
        let us = (v * 1000.0).round().clamp(1.0, HDR_MAX_US as f64) as u64;
        h.saturating_record(us);
    }
    let at = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Dist {
        n: values_ms.len(),
        mean: values_ms.iter().sum::<f64>() / values_ms.len() as f64,
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: values_ms.iter().copied().fold(f64::MIN, f64::max),
    }
}

/// One metric as printed and stored by `bench`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stamped {
    pub name: &'static str,
    pub definition: &'static str,
    pub unit: &'static str,
    #[serde(flatten)]
    pub dist: Dist,
    /// The raw per-request (or per-gap) values, in `unit`.
    pub values: Vec<f64>,
}

impl Stamped {
    fn new(name: &'static str, definition: &'static str, unit: &'static str, values: Vec<f64>) -> Stamped {
        Stamped { name, definition, unit, dist: hdr_dist(&values), values }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The latency and length distributions of the measured, successful samples.
pub fn stamp(samples: &[Sample]) -> Vec<Stamped> {
    let ok: Vec<&Sample> = samples.iter().filter(|s| !s.is_warmup && s.is_ok()).collect();
    vec![
        Stamped::new("ttft", TTFT, "ms", ok.iter().filter_map(|s| s.ttft()).map(ms).collect()),
        Stamped::new("tpot", TPOT, "ms", ok.iter().filter_map(|s| s.tpot()).map(ms).collect()),
        Stamped::new("itl", ITL, "ms", ok.iter().flat_map(|s| s.chunk_gaps.iter().copied().map(ms)).collect()),
        Stamped::new("e2e", E2E, "ms", ok.iter().map(|s| ms(s.e2e())).collect()),
        Stamped::new(
            "prompt_tokens",
            "prompt tokens per request, from the server's usage; requests that report it",
            "tokens",
            ok.iter().filter_map(|s| s.prompt_tokens).map(f64::from).collect(),
        ),
        Stamped::new(
            "output_tokens",
            "output tokens per request: usage.completion_tokens, else content chunks",
            "tokens",
            ok.iter().map(|s| f64::from(s.output_tokens)).collect(),
        ),
    ]
}

/// Percentiles of a length (tokens); linear interpolation between closest ranks
/// ([`super::percentile`]). All zero with `n = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, serde::Deserialize)]
pub struct Lengths {
    /// Requests the length is known for.
    pub n: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Lengths {
    pub fn of(values: impl Iterator<Item = u32>) -> Lengths {
        let mut sorted: Vec<f64> = values.map(f64::from).collect();
        if sorted.is_empty() {
            return Lengths::default();
        }
        sorted.sort_by(f64::total_cmp);
        let p = |q| super::percentile(&sorted, q);
        Lengths {
            n: sorted.len(),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            p50: p(50.0),
            p90: p(90.0),
            p99: p(99.0),
            max: *sorted.last().expect("non-empty"),
        }
    }
}

/// The part of a trace a trial replayed and what it asks of a server (issue 17), stored with the
/// trial's replay record so `best` and the report can say what the winner was measured under.
/// Times are trace time (before `time_scale`), as `trace stats` prints them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize)]
pub struct TraceWindow {
    /// Requests in the whole trace file (failed rows of the original service left out).
    pub trace_requests: usize,
    /// `window.start`, in seconds of trace time.
    pub start_s: f64,
    /// `window.duration`, in seconds of trace time; `None`: to the end of the trace.
    pub duration_s: Option<f64>,
    /// `max_requests`; `None`: no cap.
    pub max_requests: Option<u32>,
    /// First to last replayed arrival, in seconds of trace time.
    pub span_s: f64,
    /// Replayed requests over `span_s`, per second of trace time; `None` for a single instant.
    pub mean_rate_per_s: Option<f64>,
    /// Most replayed arrivals in any 1 s window of trace time.
    pub peak_rate_1s_per_s: f64,
    /// Prompt tokens the replayed rows ask for.
    pub isl: Lengths,
    /// Output tokens the replayed rows ask for.
    pub osl: Lengths,
    /// Share of the replayed rows' prefix blocks seen earlier in the window; `None` without `hash_ids`.
    pub prefix_reuse: Option<f64>,
    /// Tokens per `hash_ids` block.
    pub block_size: u32,
}

/// TTFT as measured here (AIPerf/inference-perf style; vLLM also counts an empty first chunk).
pub const TTFT: &str = "send (scheduled send in open loop) -> first streamed chunk with non-empty content";
/// TPOT as in `vllm bench serve` (GuideLLM's includes the first token; this one does not).
pub const TPOT: &str = "(e2e - ttft) / (output tokens - 1); requests with >= 2 output tokens";
/// ITL, pooled like `vllm bench serve` (one gap per content chunk, not per token).
pub const ITL: &str = "gaps between successive content chunks, pooled over requests";
/// End-to-end latency.
pub const E2E: &str = "send (scheduled send in open loop) -> last content chunk";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdr_percentiles_within_a_tenth_of_a_percent() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect(); // 1..1000 ms
        let d = hdr_dist(&values);
        assert_eq!(d.n, 1000);
        assert_eq!(d.mean, 500.5);
        assert_eq!(d.max, 1000.0);
        // Exact ranks: p50 = 500, p95 = 950, p99 = 990; HDR reports the bucket's top value.
        assert!((d.p50 - 500.0).abs() <= 0.5, "{d:?}");
        assert!((d.p95 - 950.0).abs() <= 0.95, "{d:?}");
        assert!((d.p99 - 990.0).abs() <= 0.99, "{d:?}");
        assert_eq!(hdr_dist(&[]), Dist::default());
        assert_eq!(hdr_dist(&[0.25]).p50, 0.25);
    }
}
