//! The raw shape of a space file, exactly as TOML gives it: one struct per section, with the
//! file's defaults. `deny_unknown_fields` everywhere, so a typo is an error, not a silent default.
//!
//! Owns only deserialization. Nothing here checks a value; the section validators in the parent
//! module turn these into the validated types (`Space`, `Param`, ...).

use std::collections::BTreeMap;

use serde::Deserialize;
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpaceFile {
    pub(super) study: StudyFile,
    pub(super) backend: BackendFile,
    /// Kept as a table so parameters stay in file order (grid order, progress lines).
    pub(super) params: toml::Table,
    #[serde(default)]
    pub(super) workload: WorkloadFile,
    #[serde(default)]
    pub(super) objective: ObjectiveFile,
    #[serde(default)]
    pub(super) slo: SloFile,
    #[serde(default)]
    pub(super) output: OutputFile,
    pub(super) quality: Option<QualityFile>,
    /// `[capacity]`: the load search behind `maximize = "capacity"`.
    pub(super) capacity: Option<CapacityFile>,
    /// `[ollama]`: Ollama-only settings (service mode, pulling, the default `num_ctx`).
    #[serde(default)]
    pub(super) ollama: Option<super::ollama::OllamaFile>,
}

/// `[quality]`: the quantization quality guard's prompt sets (issue 6).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct QualityFile {
    pub(super) known_answers: String,
    pub(super) prompts: String,
    pub(super) count: u32,
    pub(super) max_tokens: u32,
}

impl Default for QualityFile {
    fn default() -> Self {
        Self {
            known_answers: "../prompts/known-answers.jsonl".to_string(),
            prompts: "../prompts/short-qa.jsonl".to_string(),
            count: 16,
            max_tokens: 32,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StudyFile {
    pub(super) name: String,
    #[serde(default = "default_strategy")]
    pub(super) strategy: String,
    #[serde(default)]
    pub(super) seed: u64,
    #[serde(default)]
    pub(super) budget: BudgetFile,
    #[serde(default)]
    pub(super) anchor_every: Option<u32>,
    #[serde(default)]
    pub(super) validate_pairs: u32,
    #[serde(default = "default_validate_top")]
    pub(super) validate_top: usize,
    #[serde(default = "default_intensify")]
    pub(super) intensify: bool,
}

fn default_intensify() -> bool {
    true
}

fn default_validate_top() -> usize {
    3
}

fn default_strategy() -> String {
    "tpe".to_string()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BudgetFile {
    pub(super) trials: Option<u32>,
    pub(super) duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendFile {
    pub(super) kind: String,
    pub(super) command: Vec<String>,
    pub(super) model: String,
    #[serde(default)]
    pub(super) args: Vec<String>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    #[serde(default = "default_ready_timeout")]
    pub(super) ready_timeout: String,
    /// `spawn` (default: the tuner starts the server) or `service` (Ollama run by systemd).
    #[serde(default)]
    pub(super) mode: Option<String>,
}

fn default_ready_timeout() -> String {
    "120s".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ParamFile {
    pub(super) values: Option<Vec<toml::Value>>,
    pub(super) min: Option<i64>,
    pub(super) max: Option<i64>,
    #[serde(default)]
    pub(super) log: bool,
    pub(super) step: Option<i64>,
    pub(super) default: Option<toml::Value>,
    pub(super) flag: Option<String>,
    pub(super) flags: Option<Vec<String>>,
    pub(super) env: Option<String>,
    pub(super) option: Option<String>,
    pub(super) template: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct WorkloadFile {
    pub(super) dataset: String,
    pub(super) concurrency: u32,
    pub(super) requests: u32,
    pub(super) warmup: u32,
    pub(super) max_tokens: u32,
    pub(super) seed: u64,
    pub(super) request_timeout: String,
    pub(super) prompt_cache: bool,
    /// A trace file to replay on its own schedule instead of `dataset` (issue 17).
    pub(super) trace: Option<String>,
    pub(super) format: Option<String>,
    pub(super) time_scale: f64,
    pub(super) window: Option<TraceWindowFile>,
    pub(super) max_requests: Option<u32>,
    pub(super) block_size: u32,
}

/// `window = { start = "2m", duration = "10m" }`: the part of a trace to replay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TraceWindowFile {
    pub(super) start: Option<String>,
    pub(super) duration: Option<String>,
}

impl Default for WorkloadFile {
    fn default() -> Self {
        Self {
            dataset: "../prompts/chat-mix.jsonl".to_string(),
            concurrency: 4,
            requests: 64,
            warmup: 4,
            max_tokens: 64,
            seed: 42,
            request_timeout: "120s".to_string(),
            prompt_cache: false,
            trace: None,
            format: None,
            time_scale: 1.0,
            window: None,
            max_requests: None,
            block_size: 512,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObjectiveFile {
    pub(super) maximize: Option<String>,
    pub(super) minimize: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CapacityFile {
    pub(super) slo: Option<String>,
    pub(super) load: Option<String>,
    pub(super) min: Option<f64>,
    pub(super) max: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SloFile {
    pub(super) ttft_p95_ms: Option<f64>,
    pub(super) tpot_p95_ms: Option<f64>,
    pub(super) e2e_p95_ms: Option<f64>,
    pub(super) output_tok_per_s: Option<f64>,
    pub(super) success_rate: Option<f64>,
    pub(super) peak_rss_mb: Option<f64>,
    pub(super) quality_agreement_min: Option<f64>,
    /// Peak GPU memory in use during the workload (MiB, summed over the visible GPUs).
    pub(super) peak_vram_mb: Option<f64>,
}

/// `[output]`: one optional path per export format (`<format>_file`; the Modelfile is `modelfile`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutputFile {
    pub(super) env_file: Option<String>,
    pub(super) args_file: Option<String>,
    pub(super) json_file: Option<String>,
    pub(super) systemd_file: Option<String>,
    pub(super) modelfile: Option<String>,
    pub(super) compose_file: Option<String>,
    pub(super) yaml_file: Option<String>,
}
