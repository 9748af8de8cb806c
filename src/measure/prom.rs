//! Prometheus text exposition, and vLLM's engine metrics read from it (reference/backends.md §B.5).
//!
//! [`parse`] reads the text format (`name{label="v",...} value`), skipping `#` lines.
//! [`VllmSnapshot`] sums one scrape over its label sets (engines, models), accepting both the
//! 0.33 names and the older ones (`gpu_cache_usage_perc`, `gpu_prefix_cache_*`,
//! `time_per_output_token_seconds`, counters without `_total`). [`ServerMetrics::delta`] takes
//! the difference of two scrapes: counters and histogram `_sum`/`_count` are cumulative, so a
//! trial's share is after − before. Pure functions; the daemon does the HTTP.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parse Prometheus text exposition (version 0.0.4). Malformed lines are skipped.
pub fn parse(text: &str) -> Vec<PromSample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<PromSample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) if open < line.find(' ').unwrap_or(usize::MAX) => {
            let (labels, len) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, &line[open + 1 + len..])
        }
        _ => {
            let sp = line.find(' ')?;
            (&line[..sp], BTreeMap::new(), &line[sp..])
        }
    };
    // Value, then an optional timestamp.
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(PromSample { name: name.to_string(), labels, value })
}

/// Labels after the `{`; returns them and the bytes consumed including the closing `}`.
fn parse_labels(text: &str) -> Option<(BTreeMap<String, String>, usize)> {
    let mut labels = BTreeMap::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut consumed = 0; // in bytes
    loop {
        while i < bytes.len() && (bytes[i] == ',' || bytes[i] == ' ') {
            consumed += bytes[i].len_utf8();
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        if bytes[i] == '}' {
            return Some((labels, consumed + 1));
        }
        let mut key = String::new();
        while i < bytes.len() && bytes[i] != '=' {
            key.push(bytes[i]);
            consumed += bytes[i].len_utf8();
            i += 1;
        }
        // `="`
        if bytes.get(i) != Some(&'=') || bytes.get(i + 1) != Some(&'"') {
            return None;
        }
        consumed += 2;
        i += 2;
        let mut value = String::new();
        loop {
            let c = *bytes.get(i)?;
            consumed += c.len_utf8();
            i += 1;
            match c {
                '\\' => {
                    let e = *bytes.get(i)?;
                    consumed += e.len_utf8();
                    i += 1;
                    value.push(match e {
                        'n' => '\n',
                        other => other,
                    });
                }
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_string(), value);
    }
}

/// The vLLM figures of one scrape, summed over label sets. `None` = not exposed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VllmSnapshot {
    pub ttft_sum_s: Option<f64>,
    pub ttft_count: Option<f64>,
    pub itl_sum_s: Option<f64>,
    pub itl_count: Option<f64>,
    pub e2e_sum_s: Option<f64>,
    pub e2e_count: Option<f64>,
    pub queue_sum_s: Option<f64>,
    pub queue_count: Option<f64>,
    pub preemptions: Option<f64>,
    pub prefix_queries: Option<f64>,
    pub prefix_hits: Option<f64>,
    pub prompt_tokens: Option<f64>,
    pub generation_tokens: Option<f64>,
    pub requests_finished: Option<f64>,
    /// Highest `kv_cache_usage_perc` over engines (1.0 = full).
    pub kv_cache_usage: Option<f64>,
    /// `num_gpu_blocks` label of `vllm:cache_config_info`.
    pub num_gpu_blocks: Option<f64>,
}

impl VllmSnapshot {
    pub fn from_text(text: &str) -> VllmSnapshot {
        let samples = parse(text);
        // The first of `names` that the scrape has, summed over its label sets.
        let sum = |names: &[&str]| -> Option<f64> {
            names.iter().find_map(|n| {
                let v: Vec<f64> = samples.iter().filter(|s| s.name == *n).map(|s| s.value).collect();
                (!v.is_empty()).then(|| v.iter().sum())
            })
        };
        // Histograms: `<base>_sum` / `<base>_count`, first base present wins.
        let hist = |bases: &[&str]| -> (Option<f64>, Option<f64>) {
            for b in bases {
                let (s, c) = (sum(&[&format!("{b}_sum")]), sum(&[&format!("{b}_count")]));
                if s.is_some() || c.is_some() {
                    return (s, c);
                }
            }
            (None, None)
        };
        let counter = |bases: &[&str]| -> Option<f64> {
            let names: Vec<String> = bases.iter().flat_map(|b| [format!("{b}_total"), b.to_string()]).collect();
            sum(&names.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let (ttft_sum_s, ttft_count) = hist(&["vllm:time_to_first_token_seconds"]);
        let (itl_sum_s, itl_count) = hist(&["vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"]);
        let (e2e_sum_s, e2e_count) = hist(&["vllm:e2e_request_latency_seconds"]);
        let (queue_sum_s, queue_count) = hist(&["vllm:request_queue_time_seconds"]);
        let kv_cache_usage = ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]
            .iter()
            .find_map(|n| samples.iter().filter(|s| s.name == *n).map(|s| s.value).reduce(f64::max));
        let num_gpu_blocks = samples
            .iter()
            .filter(|s| s.name == "vllm:cache_config_info")
            .filter_map(|s| s.labels.get("num_gpu_blocks")?.parse::<f64>().ok())
            .reduce(|a, b| a + b);
        VllmSnapshot {
            ttft_sum_s,
            ttft_count,
            itl_sum_s,
            itl_count,
            e2e_sum_s,
            e2e_count,
            queue_sum_s,
            queue_count,
            preemptions: counter(&["vllm:num_preemptions"]),
            prefix_queries: counter(&["vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries"]),
            prefix_hits: counter(&["vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits"]),
            prompt_tokens: counter(&["vllm:prompt_tokens"]),
            generation_tokens: counter(&["vllm:generation_tokens"]),
            requests_finished: counter(&["vllm:request_success"]),
            kv_cache_usage,
            num_gpu_blocks,
        }
    }
}

/// Server-side figures of one trial, from `/metrics` deltas (stored in the trial's summary).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServerMetrics {
    /// Server version (`GET /version`), when the server answers it.
    pub version: Option<String>,
    /// Mean server-side TTFT over the trial's requests (histogram Δsum/Δcount), in ms.
    pub ttft_mean_ms: Option<f64>,
    /// Mean inter-token latency, in ms.
    pub itl_mean_ms: Option<f64>,
    /// Mean end-to-end request latency, in ms.
    pub e2e_mean_ms: Option<f64>,
    /// Mean time requests waited in the queue, in ms.
    pub queue_mean_ms: Option<f64>,
    /// Requests counted by the TTFT histogram during the trial.
    pub requests: Option<f64>,
    /// Preemptions during the trial (KV pressure).
    pub preemptions: Option<f64>,
    /// Prefix-cache hits / queries during the trial (0..1).
    pub prefix_cache_hit_rate: Option<f64>,
    pub prompt_tokens: Option<f64>,
    pub generation_tokens: Option<f64>,
    /// Highest KV-cache usage seen in scrapes during the workload (1.0 = full).
    pub kv_cache_usage_peak: Option<f64>,
    /// KV blocks the server allocated (`vllm:cache_config_info`).
    pub num_gpu_blocks: Option<f64>,
    /// GPU memory in use before the server started, in MiB (visible GPUs summed).
    pub vram_baseline_mb: Option<f64>,
    /// Total GPU memory of the visible GPUs, in MiB.
    pub vram_total_mb: Option<f64>,
}

impl ServerMetrics {
    /// The trial's share: `after − before` for counters and histograms.
    pub fn delta(before: &VllmSnapshot, after: &VllmSnapshot) -> ServerMetrics {
        let d = |a: Option<f64>, b: Option<f64>| Some(a? - b.unwrap_or(0.0));
        let mean_ms = |s_a: Option<f64>, s_b: Option<f64>, c_a: Option<f64>, c_b: Option<f64>| {
            let (s, c) = (d(s_a, s_b)?, d(c_a, c_b)?);
            (c > 0.0).then(|| s / c * 1000.0)
        };
        let queries = d(after.prefix_queries, before.prefix_queries);
        let hits = d(after.prefix_hits, before.prefix_hits);
        ServerMetrics {
            ttft_mean_ms: mean_ms(after.ttft_sum_s, before.ttft_sum_s, after.ttft_count, before.ttft_count),
            itl_mean_ms: mean_ms(after.itl_sum_s, before.itl_sum_s, after.itl_count, before.itl_count),
            e2e_mean_ms: mean_ms(after.e2e_sum_s, before.e2e_sum_s, after.e2e_count, before.e2e_count),
            queue_mean_ms: mean_ms(after.queue_sum_s, before.queue_sum_s, after.queue_count, before.queue_count),
            requests: d(after.ttft_count, before.ttft_count),
            preemptions: d(after.preemptions, before.preemptions),
            prefix_cache_hit_rate: match (hits, queries) {
                (Some(h), Some(q)) if q > 0.0 => Some(h / q),
                _ => None,
            },
            prompt_tokens: d(after.prompt_tokens, before.prompt_tokens),
            generation_tokens: d(after.generation_tokens, before.generation_tokens),
            kv_cache_usage_peak: match (before.kv_cache_usage, after.kv_cache_usage) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            num_gpu_blocks: after.num_gpu_blocks,
            ..ServerMetrics::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// vLLM 0.33 exposition, reconstructed from §B.5's names and types (prometheus_client
    /// output: HELP/TYPE lines, `_total` counters, `_created` samples, histogram buckets).
    const V033_BEFORE: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.0
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 1000.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 100.0
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 2.0
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 1000.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 500.0
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="length",model_name="Qwen/Qwen2.5-7B-Instruct"} 3.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="Qwen/Qwen2.5-7B-Instruct"} 7.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen2.5-7B-Instruct"} 10.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 10.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.5
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen2.5-7B-Instruct"} 490.0
vllm:inter_token_latency_seconds_count{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 490.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 4.9
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",engine="0",gpu_memory_utilization="0.9",num_gpu_blocks="27000"} 1.0
"#;

    fn after() -> String {
        V033_BEFORE
            .replace(
                "prefix_cache_queries_total{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 1000.0",
                "prefix_cache_queries_total{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 3000.0",
            )
            .replace(
                "prefix_cache_hits_total{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 100.0",
                "prefix_cache_hits_total{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 600.0",
            )
            .replace(
                "num_preemptions_total{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 2.0",
                "num_preemptions_total{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 5.0",
            )
            .replace(
                "seconds_count{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 10.0",
                "seconds_count{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 30.0",
            )
            .replace(
                "first_token_seconds_sum{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 0.5",
                "first_token_seconds_sum{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 2.5",
            )
            .replace(
                "latency_seconds_count{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 490.0",
                "latency_seconds_count{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 1490.0",
            )
            .replace(
                "latency_seconds_sum{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 4.9",
                "latency_seconds_sum{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 24.9",
            )
            .replace(
                "kv_cache_usage_perc{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 0.0",
                "kv_cache_usage_perc{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 0.25",
            )
    }

    #[test]
    fn parses_samples_and_labels() {
        let s =
            parse("# HELP x y\nm{a=\"1\",b=\"q\\\"x\"} 2.5 1700000000\nn 3\nbad line\nh_bucket{le=\"+Inf\"} +Inf\n");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "m");
        assert_eq!(s[0].labels["b"], "q\"x");
        assert_eq!(s[0].value, 2.5);
        assert_eq!((s[1].name.as_str(), s[1].value), ("n", 3.0));
        assert_eq!(s[2].value, f64::INFINITY);
    }

    #[test]
    fn reads_vllm_033_snapshot() {
        let snap = VllmSnapshot::from_text(V033_BEFORE);
        assert_eq!(snap.ttft_sum_s, Some(0.5));
        assert_eq!(snap.ttft_count, Some(10.0));
        assert_eq!(snap.requests_finished, Some(10.0));
        assert_eq!(snap.num_gpu_blocks, Some(27000.0));
        assert_eq!(snap.prefix_hits, Some(100.0));
    }

    #[test]
    fn delta_of_two_scrapes() {
        let m = ServerMetrics::delta(&VllmSnapshot::from_text(V033_BEFORE), &VllmSnapshot::from_text(&after()));
        assert_eq!(m.requests, Some(20.0));
        assert_eq!(m.ttft_mean_ms, Some(100.0)); // (2.5 - 0.5) / 20 s
        assert_eq!(m.itl_mean_ms, Some(20.0)); // (24.9 - 4.9) / 1000 s
        assert_eq!(m.preemptions, Some(3.0));
        assert_eq!(m.prefix_cache_hit_rate, Some(0.25)); // 500 / 2000
        assert_eq!(m.kv_cache_usage_peak, Some(0.25));
        assert_eq!(m.prompt_tokens, Some(0.0));
        assert_eq!(m.e2e_mean_ms, None);
    }

    #[test]
    fn accepts_older_metric_names() {
        let old = "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n\
                   vllm:gpu_prefix_cache_queries_total{model_name=\"m\"} 40\n\
                   vllm:gpu_prefix_cache_hits_total{model_name=\"m\"} 10\n\
                   vllm:num_preemptions{model_name=\"m\"} 4\n\
                   vllm:time_per_output_token_seconds_sum{model_name=\"m\"} 1.0\n\
                   vllm:time_per_output_token_seconds_count{model_name=\"m\"} 50\n";
        let snap = VllmSnapshot::from_text(old);
        assert_eq!(snap.kv_cache_usage, Some(0.5));
        assert_eq!(snap.preemptions, Some(4.0));
        let m = ServerMetrics::delta(&VllmSnapshot::default(), &snap);
        assert_eq!(m.prefix_cache_hit_rate, Some(0.25));
        assert_eq!(m.itl_mean_ms, Some(20.0));
    }

    #[test]
    fn sums_over_engines() {
        let two = "vllm:num_preemptions_total{engine=\"0\"} 1\nvllm:num_preemptions_total{engine=\"1\"} 2\n";
        assert_eq!(VllmSnapshot::from_text(two).preemptions, Some(3.0));
    }
}
