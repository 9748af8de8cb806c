//! The Ollama adapter: `OLLAMA_*` server variables (fixed at `ollama serve` start, so a change
//! means a restart), per-request `options` (sent with every request; the load-time ones make
//! Ollama reload the model, never restart), and quantization as a model tag
//! (`qwen2.5:7b-instruct-{quant}`). Facts: `reference/backends.md` §A.
//!
//! Pure, like every adapter: it validates names and values, turns a candidate into a
//! [`LaunchPlan`] and reads failure messages. The HTTP side lives in `workload::ollama`, the
//! service-mode file handling in `backend::service`; `prepare` checks and pulls the models a
//! study needs. Nothing here goes through a shell.

mod prepare;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use futures_util::future::BoxFuture;

use super::{Backend, Failure, FailureClass, LaunchPlan, ModelMemory, Pull, Rejection, find_lines, last_lines};
use crate::space::{Apply, BackendKind, BackendMode, BackendSpec, Candidate, Domain, Param};
use crate::trial::Fingerprint;
use crate::workload::Target;

/// How an `OLLAMA_*` value is parsed by `envconfig/config.go`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvType {
    /// Go `strconv.ParseBool`; an unparseable value silently counts as true, so we refuse it.
    Bool,
    /// Unsigned integer; an unparseable one silently falls back to the default.
    Uint,
    /// Go duration (`5m`, `1h30m`, `-1`) or integer seconds.
    Duration,
    /// A llama.cpp KV cache type, lowercased by Ollama and passed on unvalidated.
    KvType,
    /// Free text (addresses, paths, device lists).
    Text,
}

/// Server variables `ollama serve` reads (v0.33, `envconfig/config.go`). Others are refused:
/// a typo would otherwise be ignored by Ollama and the trial would measure the default.
const SERVER_ENV: &[(&str, EnvType)] = &[
    ("OLLAMA_NUM_PARALLEL", EnvType::Uint),
    ("OLLAMA_MAX_LOADED_MODELS", EnvType::Uint),
    ("OLLAMA_MAX_QUEUE", EnvType::Uint),
    ("OLLAMA_FLASH_ATTENTION", EnvType::Bool),
    ("OLLAMA_KV_CACHE_TYPE", EnvType::KvType),
    ("OLLAMA_CONTEXT_LENGTH", EnvType::Uint),
    ("OLLAMA_KEEP_ALIVE", EnvType::Duration),
    ("OLLAMA_LOAD_TIMEOUT", EnvType::Duration),
    ("OLLAMA_SCHED_SPREAD", EnvType::Bool),
    ("OLLAMA_GPU_OVERHEAD", EnvType::Uint),
    ("OLLAMA_LLM_LIBRARY", EnvType::Text),
    ("OLLAMA_DEBUG", EnvType::Uint),
    ("OLLAMA_NOPRUNE", EnvType::Bool),
    ("OLLAMA_MODELS", EnvType::Text),
    ("OLLAMA_ORIGINS", EnvType::Text),
    ("OLLAMA_MAX_TRANSFER_STREAMS", EnvType::Uint),
    ("OLLAMA_NO_CLOUD", EnvType::Bool),
    ("OLLAMA_VULKAN", EnvType::Bool),
    ("LLAMA_ARG_FIT", EnvType::Text),
    ("LLAMA_ARG_FIT_TARGET", EnvType::Uint),
    ("CUDA_VISIBLE_DEVICES", EnvType::Text),
    ("HIP_VISIBLE_DEVICES", EnvType::Text),
    ("ROCR_VISIBLE_DEVICES", EnvType::Text),
    ("GGML_VK_VISIBLE_DEVICES", EnvType::Text),
    ("GPU_DEVICE_ORDINAL", EnvType::Text),
    ("HSA_OVERRIDE_GFX_VERSION", EnvType::Text),
];

/// `OLLAMA_HOST` is the tuner's own: it binds the spawned server to a free loopback port.
pub const HOST_ENV: &str = "OLLAMA_HOST";

/// Per-request options (`api/types.go` `Options` and `Runner`, v0.33).
pub const OPTIONS: &[&str] = &[
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "num_thread",
    "draft_num_predict",
    "num_keep",
    "num_predict",
    "seed",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_last_n",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "stop",
];

/// Options whose change makes Ollama reload the model (`server/sched.go` `needsReload`).
pub const RELOAD_OPTIONS: &[&str] =
    &["num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict"];

/// KV cache types llama.cpp accepts (`-ctk`/`-ctv`, reference §C.1).
const KV_TYPES: &[&str] = &["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"];

/// `[ollama]` as written in the space file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OllamaFile {
    /// Service mode: where the running Ollama answers.
    url: String,
    /// Service mode: an `EnvironmentFile=` file (`KEY=value` lines) the tuner rewrites.
    env_file: Option<String>,
    /// Service mode: a systemd drop-in (`[Service]` + `Environment="K=V"`) the tuner rewrites.
    drop_in: Option<String>,
    /// Service mode: argv run after each rewrite, never through a shell.
    restart_command: Vec<String>,
    /// Pull missing tags through `/api/pull`; when false a missing tag stops the study.
    pull: bool,
    /// `num_ctx` sent when no parameter sets it (always sent: reference §A.5).
    num_ctx: u32,
    /// Service mode, on exit: `original` restores the file found; `best` writes the best trial.
    restore: String,
    /// How long a model load may take (the preload request's timeout).
    load_timeout: String,
}

impl Default for OllamaFile {
    fn default() -> Self {
        OllamaFile {
            url: "http://127.0.0.1:11434".into(),
            env_file: None,
            drop_in: None,
            restart_command: Vec::new(),
            pull: true,
            num_ctx: 4096,
            restore: "original".into(),
            load_timeout: "5m".into(),
        }
    }
}

/// The format of the file service mode rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFileFormat {
    /// `KEY=value` lines, for `EnvironmentFile=`.
    Env,
    /// A systemd drop-in: `[Service]` and one `Environment="KEY=value"` line per variable.
    Systemd,
}

/// Validated `[ollama]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OllamaSpec {
    /// Base URL of the running service (service mode).
    pub url: String,
    /// The file service mode rewrites, and its format; `None` in spawn mode.
    pub env_file: Option<(PathBuf, EnvFileFormat)>,
    /// Service mode: argv that restarts the service.
    pub restart_command: Vec<String>,
    pub pull: bool,
    pub num_ctx: u32,
    /// On exit, write the best trial's settings instead of restoring the original file.
    pub restore_best: bool,
    pub load_timeout: Duration,
}

impl OllamaSpec {
    /// Validate `[ollama]`; `Err((key, message))`. Paths are relative to the space file.
    pub fn from_file(raw: OllamaFile, mode: BackendMode, base: &Path) -> Result<OllamaSpec, (String, String)> {
        let err = |k: &str, m: String| (format!("ollama.{k}"), m);
        let url = raw.url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err("url", format!("'{}' is not an http(s) URL", raw.url)));
        }
        if raw.num_ctx < 4 {
            return Err(err("num_ctx", format!("must be at least 4 (got '{}')", raw.num_ctx)));
        }
        let restore_best = match raw.restore.as_str() {
            "original" => false,
            "best" => true,
            other => return Err(err("restore", format!("unknown value '{other}' (expected original or best)"))),
        };
        let load_timeout = crate::space::parse_duration(&raw.load_timeout).map_err(|m| err("load_timeout", m))?;
        let env_file = match (&raw.env_file, &raw.drop_in) {
            (Some(_), Some(_)) => return Err(err("env_file", "give either 'env_file' or 'drop_in', not both".into())),
            (Some(p), None) => Some((crate::space::resolve_path(base, p), EnvFileFormat::Env)),
            (None, Some(p)) => Some((crate::space::resolve_path(base, p), EnvFileFormat::Systemd)),
            (None, None) => None,
        };
        match mode {
            BackendMode::Service => {
                if env_file.is_none() {
                    return Err(err(
                        "env_file",
                        "service mode needs 'env_file' or 'drop_in' (the file the tuner rewrites)".into(),
                    ));
                }
                if raw.restart_command.is_empty() || raw.restart_command[0].trim().is_empty() {
                    return Err(err(
                        "restart_command",
                        "service mode needs the restart command as an argv list, e.g. [\"systemctl\", \"restart\", \"ollama\"]".into(),
                    ));
                }
            }
            BackendMode::Spawn => {
                if env_file.is_some() || !raw.restart_command.is_empty() {
                    return Err(err(
                        "restart_command",
                        "'env_file', 'drop_in' and 'restart_command' are for mode = \"service\"".into(),
                    ));
                }
            }
        }
        let mut restart_command = raw.restart_command;
        if let Some(first) = restart_command.first_mut()
            && first.contains('/')
        {
            *first = crate::space::resolve_path(base, first).to_string_lossy().into_owned();
        }
        Ok(OllamaSpec {
            url,
            env_file,
            restart_command,
            pull: raw.pull,
            num_ctx: raw.num_ctx,
            restore_best,
            load_timeout,
        })
    }
}

/// Whether `tag` is a plausible Ollama model name: `[namespace/]name[:tag]` of letters, digits
/// and `._-`. Spaces, quotes and shell characters are refused.
pub fn is_valid_tag(tag: &str) -> bool {
    let (name, version) = match tag.rsplit_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (tag, None),
    };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 128
            && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            && !p.starts_with(['.', '-'])
    };
    !name.is_empty() && name.split('/').all(part_ok) && version.is_none_or(part_ok)
}

/// Check an env value against how Ollama parses that variable; `Err(message)`.
pub fn check_env_value(name: &str, value: &str) -> Result<(), String> {
    let Some((_, ty)) = SERVER_ENV.iter().find(|(n, _)| *n == name) else {
        if name == HOST_ENV {
            return Err(format!("'{HOST_ENV}' is set by infertune itself (spawn mode binds a free loopback port)"));
        }
        return Err(format!(
            "unknown Ollama server variable '{name}' (known: {})",
            SERVER_ENV.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ));
    };
    // Written into systemd drop-ins and env files: keep to characters that need no quoting.
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || "._-:/,+".contains(c)) {
        return Err(format!("'{name}' value '{value}' has characters other than letters, digits and '._-:/,+'"));
    }
    let ok = match ty {
        EnvType::Bool => {
            ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"].contains(&value)
        }
        EnvType::Uint => value.parse::<u64>().is_ok(),
        EnvType::Duration => {
            value.parse::<i64>().is_ok()
                || value == "-1"
                || crate::space::parse_duration(value.trim_start_matches('-')).is_ok()
        }
        EnvType::KvType => KV_TYPES.contains(&value.to_ascii_lowercase().as_str()),
        EnvType::Text => true,
    };
    if ok {
        Ok(())
    } else {
        let expected = match ty {
            EnvType::Bool => "a boolean (1, 0, true, false)",
            EnvType::Uint => "a non-negative integer",
            EnvType::Duration => "a duration (5m, 1h) or seconds",
            EnvType::KvType => "a KV cache type (f16, q8_0, q4_0, ...)",
            EnvType::Text => "text",
        };
        Err(format!("'{name}' value '{value}' is not {expected}"))
    }
}

/// Ollama-specific checks of a space: env names and values, option names, model tags.
/// `Err((key, message))`.
pub fn validate_space(backend: &BackendSpec, params: &[Param]) -> Result<(), (String, String)> {
    for (name, value) in &backend.env {
        check_env_value(name, value).map_err(|m| (format!("backend.env.{name}"), m))?;
    }
    // Every tag the template can produce must be a valid tag.
    if let Some(bad) = expand_tags(&backend.model, params).iter().find(|t| !is_valid_tag(t)) {
        return Err((
            "backend.model".into(),
            format!("'{bad}' is not an Ollama model tag (letters, digits, '._-', one ':' and '/' between parts)"),
        ));
    }
    for p in params {
        let key = |f: &str| format!("params.{}.{f}", p.name);
        match &p.apply {
            Apply::Env(name) => {
                let values = match &p.domain {
                    Domain::Values(v) => v.clone(),
                    Domain::Int { .. } => p.domain.grid_points(),
                };
                if !SERVER_ENV.iter().any(|(n, _)| n == name) {
                    // The name alone is wrong: report it under `env`, not under the values.
                    let m = check_env_value(name, "1").expect_err("an unknown name is refused");
                    return Err((key("env"), m));
                }
                for v in values {
                    check_env_value(name, &v.to_string()).map_err(|m| (key("values"), m))?;
                }
            }
            Apply::Option(name) => {
                if !OPTIONS.contains(&name.as_str()) {
                    return Err((
                        key("option"),
                        format!("unknown Ollama option '{name}' (known: {})", OPTIONS.join(", ")),
                    ));
                }
            }
            Apply::Flags(_) => {
                return Err((
                    format!("params.{}", p.name),
                    "Ollama takes no command-line flags; use 'env' (server variable) or 'option' (per-request)".into(),
                ));
            }
            Apply::Template(_) => {}
        }
    }
    Ok(())
}

/// Adapter for Ollama (`ollama serve`, or a service).
pub struct Ollama {
    spec: BackendSpec,
    params: Vec<Param>,
}

impl Ollama {
    pub fn new(spec: BackendSpec, params: Vec<Param>) -> Ollama {
        Ollama { spec, params }
    }

    /// The validated `[ollama]` settings.
    pub fn settings(&self) -> &OllamaSpec {
        self.spec.ollama.as_ref().expect("an ollama space always has [ollama] settings")
    }

    /// Every tag the space can ask for, in grid order.
    pub fn tags(&self) -> Vec<String> {
        expand_tags(&self.spec.model, &self.params)
    }
}

/// Every model tag `template` gives over the template parameters' values, in grid order.
fn expand_tags(template: &str, params: &[Param]) -> Vec<String> {
    let mut tags = vec![template.to_string()];
    for p in params.iter().filter(|p| matches!(p.apply, Apply::Template(_))) {
        let placeholder = format!("{{{}}}", p.name);
        let values = p.domain.grid_points();
        tags = tags
            .iter()
            .flat_map(|t| values.iter().map(|v| t.replace(&placeholder, &v.to_string())).collect::<Vec<_>>())
            .collect();
    }
    tags
}

/// Classify an Ollama error message (API `{"error": ...}` or log line) into a failure class.
pub fn classify_message(message: &str) -> Option<FailureClass> {
    let m = message.to_ascii_lowercase();
    let any = |pats: &[&str]| pats.iter().any(|p| m.contains(p));
    if any(&[
        "out-of-memory",
        "out of memory",
        "cudamalloc failed",
        "failed to allocate",
        "not enough memory",
        "insufficient memory",
    ]) {
        Some(FailureClass::Oom)
    } else if any(&["quantized v cache", "requires flash attention", "requires flash_attn"]) {
        Some(FailureClass::InvalidCombination)
    } else if any(&["timed out waiting for llama-server", "timed out waiting for llama runner"]) {
        Some(FailureClass::NeverReady)
    } else if any(&["not found, try pulling", "file does not exist", "pull model manifest"]) {
        Some(FailureClass::LoadError)
    } else if any(&["process has terminated", "unexpectedly stopped", "runner process"]) {
        Some(FailureClass::Crashed)
    } else if any(&["address already in use"]) {
        Some(FailureClass::PortInUse)
    } else {
        None
    }
}

impl Backend for Ollama {
    fn kind(&self) -> BackendKind {
        BackendKind::Ollama
    }

    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn plan(&self, candidate: &Candidate) -> Result<LaunchPlan, Rejection> {
        let mut model = self.spec.model.clone();
        let mut env = self.spec.env.clone();
        let mut request_options = serde_json::Map::new();
        for param in &self.params {
            let value = candidate
                .get(&param.name)
                .ok_or_else(|| Rejection { message: format!("candidate has no value for '{}'", param.name) })?;
            match &param.apply {
                Apply::Env(name) => {
                    let text = value.to_string();
                    check_env_value(name, &text).map_err(|message| Rejection { message })?;
                    env.insert(name.clone(), text);
                }
                Apply::Option(name) => {
                    request_options.insert(name.clone(), serde_json::to_value(value).expect("values serialize"));
                }
                Apply::Template(_) => model = model.replace(&format!("{{{}}}", param.name), &value.to_string()),
                Apply::Flags(_) => {
                    return Err(Rejection { message: format!("'{}': Ollama takes no command-line flags", param.name) });
                }
            }
        }
        if !is_valid_tag(&model) {
            return Err(Rejection { message: format!("'{model}' is not an Ollama model tag") });
        }
        // Always explicit: the server's own default depends on VRAM (reference §A.5).
        request_options.entry("num_ctx").or_insert_with(|| serde_json::Value::from(self.settings().num_ctx));
        Ok(LaunchPlan {
            program: self.spec.command[0].clone(),
            args: self.spec.command[1..].iter().cloned().chain(self.spec.args.iter().cloned()).collect(),
            deploy_env: env.clone(),
            env,
            args_without_env: Vec::new(),
            request_options,
            model,
        })
    }

    fn bind_args(&self, _port: u16) -> Vec<String> {
        Vec::new()
    }

    fn bind_env(&self, port: u16) -> Vec<(String, String)> {
        vec![(HOST_ENV.to_string(), format!("127.0.0.1:{port}"))]
    }

    fn reload_options(&self) -> &'static [&'static str] {
        RELOAD_OPTIONS
    }

    fn request_model(&self, plan: &LaunchPlan) -> String {
        plan.model.clone()
    }

    fn service(&self) -> Option<super::service::ServiceSpec> {
        let settings = self.settings();
        let (env_file, format) = settings.env_file.clone()?;
        (self.spec.mode == BackendMode::Service).then(|| super::service::ServiceSpec {
            url: settings.url.clone(),
            env_file,
            format,
            restart_command: settings.restart_command.clone(),
        })
    }

    fn prepare<'a>(
        &'a self,
        client: &'a reqwest::Client,
        on_pull: &'a mut (dyn FnMut(Pull<'_>) + Send),
    ) -> BoxFuture<'a, anyhow::Result<Option<Fingerprint>>> {
        Box::pin(async move { prepare::prepare(self, client, on_pull).await.map(Some) })
    }

    fn preload<'a>(
        &'a self,
        client: &'a reqwest::Client,
        target: &'a Target,
        plan: &'a LaunchPlan,
    ) -> BoxFuture<'a, Result<Option<Duration>, Failure>> {
        Box::pin(async move {
            let timeout = self.settings().load_timeout;
            match crate::workload::ollama::preload(
                client,
                &target.base_url,
                &plan.model,
                &plan.request_options,
                timeout,
            )
            .await
            {
                Ok(load) => Ok(Some(load)),
                Err(e) => {
                    let fallback = if e.status == 0 { FailureClass::Crashed } else { FailureClass::LoadError };
                    let class = classify_message(&e.message).unwrap_or(fallback);
                    Err(Failure { class, message: format!("loading '{}': {}", plan.model, e.message) })
                }
            }
        })
    }

    fn model_memory<'a>(
        &'a self,
        client: &'a reqwest::Client,
        target: &'a Target,
    ) -> BoxFuture<'a, Option<ModelMemory>> {
        Box::pin(async move {
            match crate::workload::ollama::ps(client, &target.base_url, &target.model).await {
                Ok(Some(loaded)) => {
                    Some(ModelMemory { size_bytes: loaded.size_bytes, size_vram_bytes: loaded.size_vram_bytes })
                }
                Ok(None) => {
                    tracing::warn!(model = %target.model, "model not listed by /api/ps after the workload");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "reading /api/ps");
                    None
                }
            }
        })
    }

    fn protocol(&self) -> crate::workload::Protocol {
        crate::workload::Protocol::Ollama
    }

    fn health_path(&self) -> &'static str {
        "/"
    }

    fn version_args(&self) -> Vec<String> {
        vec!["--version".into()]
    }

    fn classify(&self, log_tail: &str, exited: bool) -> Failure {
        const PATTERNS: &[(FailureClass, &[&str])] = &[
            (FailureClass::Oom, &["out-of-memory", "out of memory", "failed to allocate", "not enough memory"]),
            (FailureClass::InvalidCombination, &["quantized V cache", "requires flash"]),
            (FailureClass::PortInUse, &["address already in use"]),
            (FailureClass::NeverReady, &["timed out waiting for llama-server"]),
            (FailureClass::Crashed, &["process has terminated", "unexpectedly stopped"]),
        ];
        for (class, patterns) in PATTERNS {
            if let Some(message) = find_lines(log_tail, patterns) {
                return Failure { class: *class, message };
            }
        }
        Failure {
            class: if exited { FailureClass::Crashed } else { FailureClass::NeverReady },
            message: last_lines(log_tail, 5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Space, Value};

    const SPACE: &str = r#"
[study]
name = "o"
[backend]
kind = "ollama"
command = ["ollama", "serve"]
model = "library/qwen2.5:7b-instruct-{quant}"
[params]
parallel = { values = [1, 4], env = "OLLAMA_NUM_PARALLEL" }
fa = { values = [1, 0], env = "OLLAMA_FLASH_ATTENTION" }
quant = { values = ["q4_K_M", "q8_0"], template = "model" }
batch = { values = [256, 512], option = "num_batch" }
"#;

    fn parse(text: &str) -> Result<Space, String> {
        Space::from_toml(text, "o.toml", Path::new("/s")).map_err(|e| e.to_string())
    }

    fn cand(pairs: &[(&str, Value)]) -> Candidate {
        Candidate(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn plan_puts_env_in_the_server_and_options_in_requests() {
        let space = parse(SPACE).unwrap();
        assert_eq!(space.backend.model, "library/qwen2.5:7b-instruct-{quant}", "a tag is not a path");
        let b = Ollama::new(space.backend.clone(), space.params.clone());
        let plan = b
            .plan(&cand(&[
                ("parallel", Value::Int(4)),
                ("fa", Value::Int(1)),
                ("quant", Value::Str("q8_0".into())),
                ("batch", Value::Int(256)),
            ]))
            .unwrap();
        assert_eq!(plan.program, "ollama");
        assert_eq!(plan.args, ["serve"]);
        assert_eq!(plan.model, "library/qwen2.5:7b-instruct-q8_0");
        let env: Vec<String> = plan.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["OLLAMA_FLASH_ATTENTION=1", "OLLAMA_NUM_PARALLEL=4"]);
        assert_eq!(
            serde_json::Value::Object(plan.request_options.clone()),
            serde_json::json!({"num_batch": 256, "num_ctx": 4096})
        );
        assert_eq!(b.bind_env(5000), [("OLLAMA_HOST".to_string(), "127.0.0.1:5000".to_string())]);
        assert_eq!(b.tags(), ["library/qwen2.5:7b-instruct-q4_K_M", "library/qwen2.5:7b-instruct-q8_0"]);
    }

    #[test]
    fn hostile_and_unknown_values_are_refused() {
        let e = parse(&SPACE.replace("\"q8_0\"]", "\"q8_0; rm -rf /\"]")).unwrap_err();
        assert!(
            e.contains("backend.model") && e.contains("q8_0; rm -rf /") && e.contains("not an Ollama model tag"),
            "{e}"
        );
        let e = parse(&SPACE.replace("OLLAMA_NUM_PARALLEL", "OLLAMA_NUM_PARALEL")).unwrap_err();
        assert!(
            e.contains("params.parallel.env") && e.contains("unknown Ollama server variable 'OLLAMA_NUM_PARALEL'"),
            "{e}"
        );
        let e = parse(&SPACE.replace("values = [1, 0], env", "values = [\"yes\", \"no\"], env")).unwrap_err();
        assert!(e.contains("params.fa.values") && e.contains("'yes' is not a boolean"), "{e}");
        let e = parse(&SPACE.replace("option = \"num_batch\"", "option = \"num_bach\"")).unwrap_err();
        assert!(e.contains("unknown Ollama option 'num_bach'"), "{e}");
        let e = parse(&SPACE.replace("[params]", "[backend.env]\nOLLAMA_HOST = \"0.0.0.0\"\n[params]")).unwrap_err();
        assert!(e.contains("set by infertune"), "{e}");
        let e = parse(&SPACE.replace("kind = \"ollama\"", "kind = \"ollama\"\nmode = \"service\"")).unwrap_err();
        assert!(e.contains("ollama.env_file") && e.contains("service mode needs"), "{e}");
        let svc = SPACE.replace("kind = \"ollama\"", "kind = \"ollama\"\nmode = \"service\"")
            + "[ollama]\ndrop_in = \"/etc/systemd/system/ollama.service.d/infertune.conf\"\n";
        let e = parse(&svc).unwrap_err();
        assert!(e.contains("restart_command"), "{e}");
        let ok = parse(&(svc + "restart_command = [\"systemctl\", \"restart\", \"ollama\"]\n")).unwrap();
        let o = ok.backend.ollama.unwrap();
        assert_eq!(o.env_file.unwrap().1, EnvFileFormat::Systemd);
        assert_eq!(o.restart_command, ["systemctl", "restart", "ollama"]);
    }

    #[test]
    fn env_restarts_load_options_reload_sampling_reuses() {
        use crate::backend::Launch;
        let space =
            parse(&SPACE.replace("[params]", "[params]\ntop_k = { values = [40, 1], option = \"top_k\" }")).unwrap();
        let b = Ollama::new(space.backend.clone(), space.params.clone());
        let plan = |p: i64, q: &str, batch: i64, k: i64| {
            b.plan(&cand(&[
                ("parallel", Value::Int(p)),
                ("fa", Value::Int(1)),
                ("quant", Value::Str(q.into())),
                ("batch", Value::Int(batch)),
                ("top_k", Value::Int(k)),
            ]))
            .unwrap()
        };
        let base = plan(1, "q8_0", 256, 40);
        let between = |next: &LaunchPlan| Launch::between(Some(&base), next, b.reload_options());
        assert_eq!(Launch::between(None, &base, RELOAD_OPTIONS), Launch::Restart);
        assert_eq!(between(&plan(4, "q8_0", 256, 40)), Launch::Restart);
        assert_eq!(between(&plan(1, "q8_0", 512, 40)), Launch::Reload);
        assert_eq!(between(&plan(1, "q4_K_M", 256, 40)), Launch::Reload);
        assert_eq!(between(&plan(1, "q8_0", 256, 1)), Launch::Reuse);
        assert_eq!(between(&base), Launch::Reuse);
    }

    #[test]
    fn tags() {
        for ok in ["qwen2.5:7b-instruct-q4_K_M", "library/qwen2.5:7b", "smollm2:135m-instruct-q4_0", "llama3"] {
            assert!(is_valid_tag(ok), "{ok}");
        }
        for bad in ["", "a b:c", "x:$(id)", "x;y", "a:b:c", "x:", ":x", "-x", "a//b", "q`id`"] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn messages_classify() {
        let c = |m: &str| classify_message(m);
        assert_eq!(c("model \"x\" not found, try pulling it first"), Some(FailureClass::LoadError));
        assert_eq!(c("llama-server reported out-of-memory during startup: boom"), Some(FailureClass::Oom));
        assert_eq!(c("timed out waiting for llama-server to start - progress 0.00"), Some(FailureClass::NeverReady));
        assert_eq!(c("llama-server process has terminated: exit status 1"), Some(FailureClass::Crashed));
        assert_eq!(c("something else"), None);
    }
}
