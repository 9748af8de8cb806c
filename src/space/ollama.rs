//! The `[ollama]` section and Ollama's own names: which `OLLAMA_*` server variables and request
//! options exist, how Ollama parses each (so values it would silently misread are refused when
//! the space is loaded), what a model tag may look like, and service-mode settings. The adapter
//! that turns a candidate into a launch plan is `backend::ollama`. Facts:
//! `reference/backends.md` §A.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Apply, BackendMode, BackendSpec, Domain, Param};

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

/// Every model tag `template` gives over the template parameters' values, in grid order.
pub fn expand_tags(template: &str, params: &[Param]) -> Vec<String> {
    super::model_variants(template, params).into_iter().map(|v| v.model).collect()
}
