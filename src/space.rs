//! Search-space files: the raw TOML shape (`SpaceFile`), its validated form (`Space`), and the
//! points the search proposes (`Candidate`).
//!
//! Validation happens once, in [`Space::from_toml`]. Everything downstream takes a `Space` and can
//! trust it: ranges are ordered, value lists are non-empty, every parameter says how it is applied.
//! Input paths (command, model, dataset) are resolved relative to the space file's folder.
//! This module knows nothing about processes, HTTP or SQL.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a space file was rejected. Every message names the file, the key and the bad value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading search space '{path}'")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("search space '{path}': {message}")]
    Parse { path: String, message: String },
    #[error("search space '{path}': key '{key}': {message}")]
    Invalid { path: String, key: String, message: String },
}

// ---------------------------------------------------------------------------------------------
// Raw file shape. `deny_unknown_fields` everywhere: a typo is an error, not a silent default.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceFile {
    study: StudyFile,
    backend: BackendFile,
    /// Kept as a table so parameters stay in file order (grid order, progress lines).
    params: toml::Table,
    #[serde(default)]
    workload: WorkloadFile,
    #[serde(default)]
    objective: ObjectiveFile,
    #[serde(default)]
    slo: SloFile,
    #[serde(default)]
    output: OutputFile,
    quality: Option<QualityFile>,
    /// `[capacity]`: the load search behind `maximize = "capacity"`.
    capacity: Option<CapacityFile>,
    /// `[ollama]`: Ollama-only settings (service mode, pulling, the default `num_ctx`).
    #[serde(default)]
    ollama: Option<crate::backend::ollama::OllamaFile>,
}

/// `[quality]`: the quantization quality guard's prompt sets (issue 6).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct QualityFile {
    known_answers: String,
    prompts: String,
    count: u32,
    max_tokens: u32,
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
struct StudyFile {
    name: String,
    #[serde(default = "default_strategy")]
    strategy: String,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    budget: BudgetFile,
    #[serde(default)]
    anchor_every: Option<u32>,
    #[serde(default)]
    validate_pairs: u32,
    #[serde(default = "default_validate_top")]
    validate_top: usize,
}

fn default_validate_top() -> usize {
    3
}

fn default_strategy() -> String {
    "tpe".to_string()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetFile {
    trials: Option<u32>,
    duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendFile {
    kind: String,
    command: Vec<String>,
    model: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default = "default_ready_timeout")]
    ready_timeout: String,
    /// `spawn` (default: the tuner starts the server) or `service` (Ollama run by systemd).
    #[serde(default)]
    mode: Option<String>,
}

fn default_ready_timeout() -> String {
    "120s".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamFile {
    values: Option<Vec<toml::Value>>,
    min: Option<i64>,
    max: Option<i64>,
    #[serde(default)]
    log: bool,
    step: Option<i64>,
    default: Option<toml::Value>,
    flag: Option<String>,
    flags: Option<Vec<String>>,
    env: Option<String>,
    option: Option<String>,
    template: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct WorkloadFile {
    dataset: String,
    concurrency: u32,
    requests: u32,
    warmup: u32,
    max_tokens: u32,
    seed: u64,
    request_timeout: String,
    prompt_cache: bool,
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
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectiveFile {
    maximize: Option<String>,
    minimize: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityFile {
    slo: Option<String>,
    load: Option<String>,
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SloFile {
    ttft_p95_ms: Option<f64>,
    tpot_p95_ms: Option<f64>,
    e2e_p95_ms: Option<f64>,
    output_tok_per_s: Option<f64>,
    success_rate: Option<f64>,
    peak_rss_mb: Option<f64>,
    quality_agreement_min: Option<f64>,
    /// Peak GPU memory in use during the workload (MiB, summed over the visible GPUs).
    peak_vram_mb: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputFile {
    env_file: Option<String>,
    args_file: Option<String>,
    json_file: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Validated types.
// ---------------------------------------------------------------------------------------------

/// A parameter value. Serialized untagged, so params JSON reads `{"parallel": 4, "fa": "on"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

/// Where a parameter's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// Integers in `[min, max]`; `log` samples on a log scale; `step` restricts to min + k·step.
    Int { min: i64, max: i64, log: bool, step: Option<i64> },
    /// An explicit, ordered list of values (numbers, strings or booleans).
    Values(Vec<Value>),
}

/// How a parameter reaches the backend. This decides whether a change needs a restart.
#[derive(Debug, Clone, PartialEq)]
pub enum Apply {
    /// Command-line flags, each followed by the value (`-ctk q8_0 -ctv q8_0`). A boolean value
    /// emits the bare flag when true and nothing when false.
    Flags(Vec<String>),
    /// An environment variable of the server process.
    Env(String),
    /// A per-request option, sent with every request (no restart).
    Option(String),
    /// Fills `{name}` in a backend template, e.g. the model path (`template = "model"`).
    Template(String),
}

/// One dimension of the search.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub domain: Domain,
    pub apply: Apply,
    /// The backend's own default, used for the baseline trial; `None` when the file gives none.
    pub default: Option<Value>,
}

/// What the search optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Maximize,
    Minimize,
}

/// The study's objective: one metric and a direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub metric: String,
    pub direction: Direction,
}

/// A service-level objective: a metric and a bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Metric name as in `measure::METRICS` (e.g. `ttft_p95_ms`).
    pub metric: String,
    /// `true`: the metric must be at most `limit`; `false`: at least `limit`.
    pub is_upper_bound: bool,
    pub limit: f64,
}

/// What a capacity search varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Load {
    /// Closed-loop clients.
    Concurrency,
    /// Open-loop Poisson arrivals, in requests per second.
    Rate,
}

impl Load {
    /// The default range searched: 1..16 clients, or 0.25..8 requests/s.
    pub fn default_range(self) -> (f64, f64) {
        match self {
            Load::Concurrency => (1.0, 16.0),
            Load::Rate => (0.25, 8.0),
        }
    }

    /// Why `min..=max` is not a range of this load, if it is not.
    pub fn check_range(self, min: f64, max: f64) -> Result<(), String> {
        let ok = match self {
            Load::Concurrency => min >= 1.0 && min.fract() == 0.0 && max.fract() == 0.0 && min < max,
            Load::Rate => min > 0.0 && min < max && max.is_finite(),
        };
        match (ok, self) {
            (true, _) => Ok(()),
            (false, Load::Concurrency) => {
                Err(format!("concurrency range '{min}..{max}' must be whole numbers with 1 <= min < max"))
            }
            (false, Load::Rate) => Err(format!("rate range '{min}..{max}' must be rates with 0 < min < max")),
        }
    }
}

/// `maximize = "capacity"`: each trial searches for the highest load at which `slo` still
/// holds, on the trial's own server; that load is the trial's objective.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySpec {
    /// One of the study's SLOs.
    pub slo: Slo,
    pub load: Load,
    pub min: f64,
    pub max: f64,
}

/// Search strategy named in `[study] strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    Grid,
    Random,
    /// Constrained multivariate TPE (the default).
    Tpe,
    /// argmin's simulated annealing.
    Anneal,
}

/// Backend adapter named in `[backend] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Llamacpp,
    Ollama,
    Vllm,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Llamacpp => "llamacpp",
            BackendKind::Ollama => "ollama",
            BackendKind::Vllm => "vllm",
        })
    }
}

/// `[backend]`: what to launch. `command[0]` and `model` are resolved paths.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    pub kind: BackendKind,
    pub command: Vec<String>,
    /// Model path; may contain `{param}` placeholders filled by template params.
    pub model: String,
    /// Fixed extra arguments passed to every launch.
    pub args: Vec<String>,
    /// Fixed environment for every launch.
    pub env: BTreeMap<String, String>,
    pub ready_timeout: Duration,
    /// Who runs the server: the tuner (`spawn`) or a service manager (`service`).
    pub mode: BackendMode,
    /// Ollama-only settings; `Some` exactly when `kind` is `ollama`.
    pub ollama: Option<crate::backend::ollama::OllamaSpec>,
}

/// `[backend] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendMode {
    /// The tuner starts the server for each configuration and stops it after.
    #[default]
    Spawn,
    /// The server runs under a service manager; the tuner writes its environment file and runs
    /// the user's restart command.
    Service,
}

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

/// `[output]`: files the daemon rewrites whenever the best feasible trial changes.
/// Paths are as given (relative to the working directory of `tune`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputSpec {
    pub env_file: Option<PathBuf>,
    pub args_file: Option<PathBuf>,
    pub json_file: Option<PathBuf>,
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

/// A validated search space: the study, the backend, the parameters and the goals.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub name: String,
    pub strategy: StrategyKind,
    pub seed: u64,
    pub max_trials: Option<u32>,
    /// Re-measure the default configuration every this many trials (drift anchor); `None`: never.
    pub anchor_every: Option<u32>,
    /// When the study ends on its budget (or runs out of candidates), re-measure the best
    /// `validate_top` trials against the default in this many interleaved rounds on fresh
    /// starts (0 = don't; `infertune validate` does it later).
    pub validate_pairs: u32,
    pub validate_top: usize,
    pub max_duration: Option<Duration>,
    pub backend: BackendSpec,
    pub params: Vec<Param>,
    pub workload: WorkloadSpec,
    pub objective: Objective,
    pub slos: Vec<Slo>,
    pub output: OutputSpec,
    /// The quality guard; `Some` when `[quality]` or `slo.quality_agreement_min` is given.
    pub quality: Option<QualitySpec>,
    /// The capacity search; `Some` exactly when the objective is `capacity`.
    pub capacity: Option<CapacitySpec>,
    /// The file's text as read, stored with the study.
    pub source: String,
}

/// One point of the space: a value for every parameter, keyed by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Candidate(pub BTreeMap<String, Value>);

impl Candidate {
    /// The value of parameter `name`; `None` if the candidate does not set it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Canonical JSON (keys sorted), the form stored and hashed.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("candidate values always serialize")
    }

    /// Short `k=v k=v` form for progress lines.
    pub fn brief(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

/// Objective metrics a study may name, with their aliases.
const OBJECTIVE_METRICS: &[&str] = &[
    "goodput_rps",
    "output_tok_per_s",
    "req_per_s",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p95_ms",
    "e2e_p50_ms",
    "e2e_p95_ms",
    "capacity",
];

/// Parse a duration like `90s`, `15m`, `8h`, `1h30m`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("'{text}' lacks a unit (ms, s, m, h)"))?;
        if digits == 0 {
            return Err(format!("'{text}' is not a duration (like 90s, 15m, 8h)"));
        }
        let number: f64 =
            rest[..digits].parse().map_err(|_| format!("'{text}' is not a duration (like 90s, 15m, 8h)"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "d" => number * 86400.0,
            other => return Err(format!("'{text}' has an unknown unit '{other}'")),
        };
        total += Duration::try_from_secs_f64(secs).map_err(|e| format!("'{text}': {e}"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

impl Space {
    /// Read and validate a space file.
    pub fn load(path: &Path) -> Result<Space, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
        // Absolute, so launch plans and exported files name real paths wherever they are used.
        let base = std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).to_path_buf());
        Space::from_toml(&text, &path.display().to_string(), &base)
    }

    /// Validate space text. `origin` names the file in errors; `base` resolves relative paths.
    pub fn from_toml(text: &str, origin: &str, base: &Path) -> Result<Space, Error> {
        let file: SpaceFile = toml::from_str(text)
            .map_err(|e| Error::Parse { path: origin.to_string(), message: e.to_string().trim_end().to_string() })?;
        let invalid =
            |key: &str, message: String| Error::Invalid { path: origin.to_string(), key: key.to_string(), message };

        if file.study.name.trim().is_empty() {
            return Err(invalid("study.name", "must not be empty".into()));
        }
        let strategy = match file.study.strategy.as_str() {
            "grid" => StrategyKind::Grid,
            "random" => StrategyKind::Random,
            "tpe" => StrategyKind::Tpe,
            "anneal" => StrategyKind::Anneal,
            other => {
                return Err(invalid(
                    "study.strategy",
                    format!("unknown strategy '{other}' (expected grid, random, tpe or anneal)"),
                ));
            }
        };
        if matches!(file.study.validate_pairs, 1 | 2) {
            return Err(invalid(
                "study.validate_pairs",
                format!(
                    "got '{}': re-validation needs at least 3 interleaved rounds (0 = off)",
                    file.study.validate_pairs
                ),
            ));
        }
        if file.study.validate_top == 0 {
            return Err(invalid("study.validate_top", "got '0': must be at least 1".to_string()));
        }
        if file.study.budget.trials == Some(0) {
            return Err(invalid("study.budget.trials", "must be at least 1".to_string()));
        }
        let max_duration = match &file.study.budget.duration {
            Some(d) => Some(parse_duration(d).map_err(|m| invalid("study.budget.duration", m))?),
            None => None,
        };

        let kind = match file.backend.kind.as_str() {
            "llamacpp" => BackendKind::Llamacpp,
            "ollama" => BackendKind::Ollama,
            "vllm" => BackendKind::Vllm,
            other => {
                return Err(invalid(
                    "backend.kind",
                    format!("unknown backend '{other}' (expected llamacpp, ollama or vllm)"),
                ));
            }
        };
        if file.backend.command.is_empty() || file.backend.command[0].trim().is_empty() {
            return Err(invalid("backend.command", "must name a program".into()));
        }
        let mut command = file.backend.command.clone();
        command[0] = resolve_program(base, &command[0]);
        let mode = match file.backend.mode.as_deref() {
            None | Some("spawn") => BackendMode::Spawn,
            Some("service") if kind == BackendKind::Ollama => BackendMode::Service,
            Some("service") => {
                return Err(invalid(
                    "backend.mode",
                    format!("'service' mode is only for kind 'ollama' (got kind '{kind}')"),
                ));
            }
            Some(other) => {
                return Err(invalid("backend.mode", format!("unknown mode '{other}' (expected spawn or service)")));
            }
        };
        let ollama = match (kind, file.ollama) {
            (BackendKind::Ollama, raw) => Some(
                crate::backend::ollama::OllamaSpec::from_file(raw.unwrap_or_default(), mode, base)
                    .map_err(|(key, m)| invalid(&key, m))?,
            ),
            (_, Some(_)) => {
                return Err(invalid("ollama", format!("an [ollama] section needs kind 'ollama' (got '{kind}')")));
            }
            (_, None) => None,
        };
        let backend = BackendSpec {
            kind,
            command,
            // An Ollama model is a tag (`library/qwen2.5:7b`), never a path, even with a '/';
            // vLLM models are usually hub ids (`org/name`): only `./` and `../` paths are local.
            model: if kind == BackendKind::Ollama || (kind == BackendKind::Vllm && !file.backend.model.starts_with('.'))
            {
                file.backend.model.clone()
            } else {
                resolve_program(base, &file.backend.model)
            },
            mode,
            ollama,
            args: file.backend.args,
            env: file.backend.env,
            ready_timeout: parse_duration(&file.backend.ready_timeout)
                .map_err(|m| invalid("backend.ready_timeout", m))?,
        };

        if file.params.is_empty() {
            return Err(invalid("params", "at least one parameter is needed".into()));
        }
        let mut params = Vec::new();
        for (name, raw) in &file.params {
            let raw = ParamFile::deserialize(raw.clone())
                .map_err(|e| invalid(&format!("params.{name}"), e.to_string().trim_end().to_string()))?;
            params.push(validate_param(name, &raw, &backend, &invalid)?);
        }
        if backend.kind == BackendKind::Ollama {
            crate::backend::ollama::validate_space(&backend, &params).map_err(|(key, m)| invalid(&key, m))?;
        }

        let w = file.workload;
        for (key, value) in [
            ("workload.concurrency", w.concurrency),
            ("workload.requests", w.requests),
            ("workload.max_tokens", w.max_tokens),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1 (got '0')".to_string()));
            }
        }
        let workload = WorkloadSpec {
            dataset: resolve_path(base, &w.dataset),
            concurrency: w.concurrency,
            requests: w.requests,
            warmup: w.warmup,
            max_tokens: w.max_tokens,
            seed: w.seed,
            request_timeout: parse_duration(&w.request_timeout).map_err(|m| invalid("workload.request_timeout", m))?,
            prompt_cache: w.prompt_cache,
            draw: 0,
        };

        let objective = match (file.objective.maximize, file.objective.minimize) {
            (Some(_), Some(_)) => {
                return Err(invalid("objective", "give either 'maximize' or 'minimize', not both".into()));
            }
            (Some(m), None) => Objective {
                metric: canonical_metric(&m)
                    .ok_or_else(|| invalid("objective.maximize", unknown_metric_message(&m)))?,
                direction: Direction::Maximize,
            },
            (None, Some(m)) => Objective {
                metric: canonical_metric(&m)
                    .ok_or_else(|| invalid("objective.minimize", unknown_metric_message(&m)))?,
                direction: Direction::Minimize,
            },
            (None, None) => Objective { metric: "goodput_rps".into(), direction: Direction::Maximize },
        };

        let mut slos = Vec::new();
        let s = file.slo;
        for (metric, limit, is_upper_bound) in [
            ("ttft_p95_ms", s.ttft_p95_ms, true),
            ("tpot_p95_ms", s.tpot_p95_ms, true),
            ("e2e_p95_ms", s.e2e_p95_ms, true),
            ("output_tok_per_s", s.output_tok_per_s, false),
            ("success_rate", s.success_rate, false),
            ("peak_rss_mb", s.peak_rss_mb, true),
            ("quality_agreement", s.quality_agreement_min, false),
            ("peak_vram_mb", s.peak_vram_mb, true),
        ] {
            let Some(limit) = limit else { continue };
            if !limit.is_finite() || limit < 0.0 {
                return Err(invalid(
                    &format!("slo.{metric}"),
                    format!("must be a non-negative number (got '{limit}')"),
                ));
            }
            if metric == "quality_agreement" && limit > 1.0 {
                return Err(invalid(
                    "slo.quality_agreement_min",
                    format!("is a fraction between 0 and 1 (got '{limit}')"),
                ));
            }
            if metric == "success_rate" && limit > 1.0 {
                return Err(invalid("slo.success_rate", format!("is a fraction between 0 and 1 (got '{limit}')")));
            }
            slos.push(Slo { metric: metric.to_string(), is_upper_bound, limit });
        }

        let capacity = match (objective.metric == "capacity", file.capacity) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(invalid("capacity", "is only read with '[objective] maximize = \"capacity\"'".into()));
            }
            (true, _) if objective.direction == Direction::Minimize => {
                return Err(invalid("objective.minimize", "'capacity' can only be maximized".into()));
            }
            (true, c) => {
                let c = c.unwrap_or_default();
                let names = || slos.iter().map(|s| s.metric.as_str()).collect::<Vec<_>>().join(", ");
                let slo = match &c.slo {
                    Some(m) => slos.iter().find(|s| &s.metric == m).ok_or_else(|| {
                        invalid("capacity.slo", format!("'{m}' is not one of this file's [slo] limits ({})", names()))
                    })?,
                    None => slos.iter().find(|s| s.metric == "ttft_p95_ms").or(slos.first()).ok_or_else(|| {
                        invalid(
                            "capacity.slo",
                            "maximize = \"capacity\" needs an [slo] limit to hold (e.g. ttft_p95_ms)".into(),
                        )
                    })?,
                }
                .clone();
                let load = match c.load.as_deref().unwrap_or("concurrency") {
                    "concurrency" => Load::Concurrency,
                    "rate" => Load::Rate,
                    other => {
                        return Err(invalid(
                            "capacity.load",
                            format!("unknown load '{other}' (expected concurrency or rate)"),
                        ));
                    }
                };
                let (min, max) = load.default_range();
                let (min, max) = (c.min.unwrap_or(min), c.max.unwrap_or(max));
                load.check_range(min, max).map_err(|m| invalid("capacity.min", m))?;
                Some(CapacitySpec { slo, load, min, max })
            }
        };

        let output = OutputSpec {
            env_file: file.output.env_file.map(PathBuf::from),
            args_file: file.output.args_file.map(PathBuf::from),
            json_file: file.output.json_file.map(PathBuf::from),
        };

        let quality = match (file.quality, s.quality_agreement_min) {
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
        };

        Ok(Space {
            name: file.study.name,
            strategy,
            seed: file.study.seed,
            max_trials: file.study.budget.trials,
            anchor_every: file.study.anchor_every.filter(|m| *m > 0),
            validate_pairs: file.study.validate_pairs,
            validate_top: file.study.validate_top,
            max_duration,
            backend,
            params,
            workload,
            objective,
            slos,
            output,
            quality,
            capacity,
            source: text.to_string(),
        })
    }

    /// The candidate made of every parameter's default; `None` if some parameter has none.
    pub fn default_candidate(&self) -> Option<Candidate> {
        let mut values = BTreeMap::new();
        for p in &self.params {
            values.insert(p.name.clone(), p.default.clone()?);
        }
        Some(Candidate(values))
    }

    /// Number of points on the full grid (saturating).
    pub fn grid_size(&self) -> u64 {
        self.params.iter().map(|p| p.domain.grid_points().len() as u64).fold(1u64, |acc, n| acc.saturating_mul(n))
    }
}

impl Domain {
    /// The points a grid search visits: every listed value; for ranges, every `step`, or powers
    /// of two from `min` when `log`, or five evenly spaced integers otherwise. Always includes
    /// both ends of a range.
    pub fn grid_points(&self) -> Vec<Value> {
        match self {
            Domain::Values(values) => values.clone(),
            Domain::Int { min, max, log, step } => {
                let mut points: Vec<i64> = if let Some(step) = step {
                    (0..).map(|k| min + k * step).take_while(|v| v <= max).collect()
                } else if *log {
                    let mut v = (*min).max(1);
                    let mut out = vec![*min];
                    while v * 2 <= *max {
                        v *= 2;
                        out.push(v);
                    }
                    out
                } else {
                    (0..5).map(|k| min + (max - min) * k / 4).collect()
                };
                points.push(*max);
                points.sort_unstable();
                points.dedup();
                points.into_iter().map(Value::Int).collect()
            }
        }
    }

    /// Whether `value` lies in this domain.
    pub fn contains(&self, value: &Value) -> bool {
        match (self, value) {
            (Domain::Values(values), v) => values.contains(v),
            (Domain::Int { min, max, step, .. }, Value::Int(v)) => {
                v >= min && v <= max && step.is_none_or(|s| (v - min) % s == 0 || v == max)
            }
            _ => false,
        }
    }
}

fn canonical_metric(name: &str) -> Option<String> {
    let name = match name {
        "goodput" => "goodput_rps",
        "throughput" | "tok_per_s" => "output_tok_per_s",
        other => other,
    };
    OBJECTIVE_METRICS.contains(&name).then(|| name.to_string())
}

fn unknown_metric_message(name: &str) -> String {
    format!("unknown metric '{name}' (expected one of: {})", OBJECTIVE_METRICS.join(", "))
}

fn toml_to_value(v: &toml::Value) -> Option<Value> {
    match v {
        toml::Value::Boolean(b) => Some(Value::Bool(*b)),
        toml::Value::Integer(i) => Some(Value::Int(*i)),
        toml::Value::Float(f) => Some(Value::Float(*f)),
        toml::Value::String(s) => Some(Value::Str(s.clone())),
        _ => None,
    }
}

fn validate_param(
    name: &str,
    raw: &ParamFile,
    backend: &BackendSpec,
    invalid: &dyn Fn(&str, String) -> Error,
) -> Result<Param, Error> {
    let key = |field: &str| format!("params.{name}.{field}");
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(invalid(&format!("params.{name}"), "parameter names use letters, digits, '_' and '-'".into()));
    }
    let domain = match (&raw.values, raw.min, raw.max) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(invalid(&format!("params.{name}"), "give either 'values' or 'min'/'max', not both".into()));
        }
        (Some(values), None, None) => {
            if values.is_empty() {
                return Err(invalid(&key("values"), "must list at least one value (got '[]')".into()));
            }
            let mut out = Vec::new();
            for v in values {
                let value = toml_to_value(v).ok_or_else(|| {
                    invalid(&key("values"), format!("values must be numbers, strings or booleans (got '{v}')"))
                })?;
                if out.contains(&value) {
                    return Err(invalid(&key("values"), format!("'{value}' is listed twice")));
                }
                if let Some(first) = out.first()
                    && std::mem::discriminant(first) != std::mem::discriminant(&value)
                {
                    return Err(invalid(
                        &key("values"),
                        format!("all values must have one type ('{first}' and '{value}' differ)"),
                    ));
                }
                out.push(value);
            }
            Domain::Values(out)
        }
        (None, Some(min), Some(max)) => {
            if min > max {
                return Err(invalid(&key("min"), format!("min '{min}' is greater than max '{max}'")));
            }
            if raw.log && min <= 0 {
                return Err(invalid(&key("min"), format!("a log range needs min > 0 (got '{min}')")));
            }
            if let Some(step) = raw.step
                && step <= 0
            {
                return Err(invalid(&key("step"), format!("must be positive (got '{step}')")));
            }
            Domain::Int { min, max, log: raw.log, step: raw.step }
        }
        (None, Some(_), None) => return Err(invalid(&key("max"), "missing (min is given)".into())),
        (None, None, Some(_)) => return Err(invalid(&key("min"), "missing (max is given)".into())),
        (None, None, None) => {
            return Err(invalid(&format!("params.{name}"), "needs 'values = [...]' or 'min'/'max'".into()));
        }
    };
    if (raw.log || raw.step.is_some()) && matches!(domain, Domain::Values(_)) {
        return Err(invalid(&key(if raw.log { "log" } else { "step" }), "only applies to a 'min'/'max' range".into()));
    }

    let ways =
        [raw.flag.is_some(), raw.flags.is_some(), raw.env.is_some(), raw.option.is_some(), raw.template.is_some()];
    let apply = match ways.iter().filter(|w| **w).count() {
        0 => {
            return Err(invalid(
                &format!("params.{name}"),
                "says how it is applied: one of 'flag', 'flags', 'env', 'option' or 'template'".into(),
            ));
        }
        1 => {
            if let Some(flag) = &raw.flag {
                Apply::Flags(vec![check_flag(flag, &key("flag"), invalid)?])
            } else if let Some(flags) = &raw.flags {
                if flags.is_empty() {
                    return Err(invalid(&key("flags"), "must list at least one flag".into()));
                }
                let mut out = Vec::new();
                for f in flags {
                    out.push(check_flag(f, &key("flags"), invalid)?);
                }
                Apply::Flags(out)
            } else if let Some(env) = &raw.env {
                if env.is_empty() || !env.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                    return Err(invalid(
                        &key("env"),
                        format!("'{env}' is not an environment variable name (A-Z, 0-9, _)"),
                    ));
                }
                Apply::Env(env.clone())
            } else if let Some(option) = &raw.option {
                Apply::Option(option.clone())
            } else {
                let target = raw.template.clone().expect("one way is set");
                if target != "model" {
                    return Err(invalid(
                        &key("template"),
                        format!("unknown template target '{target}' (expected 'model')"),
                    ));
                }
                let placeholder = format!("{{{name}}}");
                if !backend.model.contains(&placeholder) {
                    return Err(invalid(
                        &key("template"),
                        format!("backend.model '{}' has no '{placeholder}' placeholder", backend.model),
                    ));
                }
                Apply::Template(target)
            }
        }
        _ => {
            return Err(invalid(
                &format!("params.{name}"),
                "give only one of 'flag', 'flags', 'env', 'option' or 'template'".into(),
            ));
        }
    };

    let default = match &raw.default {
        None => None,
        Some(v) => {
            let value = toml_to_value(v)
                .filter(|value| domain.contains(value))
                .ok_or_else(|| invalid(&key("default"), format!("'{v}' is not in the domain")))?;
            Some(value)
        }
    };

    Ok(Param { name: name.to_string(), domain, apply, default })
}

fn check_flag(flag: &str, key: &str, invalid: &dyn Fn(&str, String) -> Error) -> Result<String, Error> {
    if !flag.starts_with('-') || flag.contains(char::is_whitespace) {
        return Err(invalid(
            key,
            format!("'{flag}' is not a command-line flag (it starts with '-' and has no spaces)"),
        ));
    }
    Ok(flag.to_string())
}

/// A bare name (`llama-server`, an Ollama model tag) is kept as it is: a program is looked up
/// on PATH at launch. Anything with a `/` is a path, relative to the space file.
fn resolve_program(base: &Path, program: &str) -> String {
    if program.contains('/') { resolve_path(base, program).to_string_lossy().into_owned() } else { program.to_string() }
}

pub(crate) fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        let joined = base.join(p);
        // Tidy `a/b/../c` without touching the filesystem (the file may not exist yet).
        let mut out = PathBuf::new();
        for part in joined.components() {
            match part {
                std::path::Component::ParentDir
                    if out.components().next_back().is_some_and(|c| matches!(c, std::path::Component::Normal(_))) =>
                {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[study]
name = "t"
strategy = "grid"
[backend]
kind = "llamacpp"
command = ["../scripts/llama-server"]
model = "../models/m-{quant}.gguf"
[params]
parallel = { values = [1, 2, 4], flag = "-np", default = 4 }
ctx = { min = 1024, max = 8192, log = true, flag = "-c" }
quant = { values = ["Q4_0", "Q8_0"], template = "model" }
kv = { values = ["f16", "q8_0"], flags = ["-ctk", "-ctv"] }
"#;

    fn parse(text: &str) -> Result<Space, Error> {
        Space::from_toml(text, "t.toml", Path::new("/repo/search-spaces"))
    }

    #[test]
    fn minimal_space_parses_and_resolves_paths() {
        let space = parse(MINIMAL).unwrap();
        assert_eq!(space.backend.command[0], "/repo/scripts/llama-server");
        assert_eq!(space.backend.model, "/repo/models/m-{quant}.gguf");
        assert_eq!(space.params.len(), 4);
        assert_eq!(space.workload.dataset, PathBuf::from("/repo/prompts/chat-mix.jsonl"));
        assert_eq!(space.objective.metric, "goodput_rps");
        // grid: 3 parallel × ctx {1024,2048,4096,8192} × 2 quant × 2 kv
        assert_eq!(space.grid_size(), 3 * 4 * 2 * 2);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn grid_points_of_ranges() {
        let d = Domain::Int { min: 1, max: 10, log: false, step: Some(3) };
        assert_eq!(d.grid_points(), vec![1, 4, 7, 10].into_iter().map(Value::Int).collect::<Vec<_>>());
        let d = Domain::Int { min: 1000, max: 5000, log: true, step: None };
        assert_eq!(d.grid_points(), vec![1000, 2000, 4000, 5000].into_iter().map(Value::Int).collect::<Vec<_>>());
    }

    fn err_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = err_of(&MINIMAL.replace("min = 1024", "min = \"big\""));
        assert!(e.contains("t.toml") && e.contains("min"), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e =
            err_of(&MINIMAL.replace("[params]", "[params]\nparalel = { values = [1], flag = \"-np\", colour = 1 }"));
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn empty_value_list_names_the_key() {
        let e =
            err_of(&MINIMAL.replace("values = [1, 2, 4], flag = \"-np\", default = 4", "values = [], flag = \"-np\""));
        assert!(e.contains("params.parallel.values") && e.contains("at least one"), "{e}");
    }

    #[test]
    fn min_above_max_names_the_key_and_values() {
        let e = err_of(&MINIMAL.replace("min = 1024, max = 8192", "min = 9000, max = 8192"));
        assert!(e.contains("params.ctx.min") && e.contains("'9000'") && e.contains("'8192'"), "{e}");
    }

    #[test]
    fn template_without_placeholder_is_rejected() {
        let e = err_of(&MINIMAL.replace("m-{quant}.gguf", "m.gguf"));
        assert!(e.contains("params.quant.template") && e.contains("{quant}"), "{e}");
    }

    #[test]
    fn default_outside_domain_is_rejected() {
        let e = err_of(&MINIMAL.replace("default = 4", "default = 3"));
        assert!(e.contains("params.parallel.default") && e.contains("'3'"), "{e}");
    }
}
