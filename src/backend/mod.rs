//! Backends: how a `Candidate` becomes a server process, and how a failed start is read.
//!
//! An adapter holds data, not process logic: [`Backend::plan`] is pure and turns a candidate into
//! a [`LaunchPlan`] (program, arguments, environment, per-request options, and the same settings
//! in the form an operator deploys). Where backends differ in what they do around a trial (Ollama
//! pulls models before the study and loads the model before measuring), the adapter answers
//! through the trait, so no caller matches on the kind. [`process::Server`] owns one running
//! process; [`session::ServerSession`] is the one place a server is started, reused or
//! restarted, for every command.

pub mod llamacpp;
pub mod ollama;
pub mod process;
pub mod service;
pub mod session;
pub mod vllm;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::space::{Apply, BackendKind, BackendSpec, Candidate, Param, Value};
use crate::workload::Target;

/// How long a server gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Progress of a model download before a study (Ollama `/api/pull`; sizes in bytes).
#[derive(Debug, Clone, Copy)]
pub struct Pull<'a> {
    pub model: &'a str,
    pub status: &'a str,
    pub completed: Option<u64>,
    pub total: Option<u64>,
}

pub use crate::measure::ModelMemory;

/// What identifies a backend's engine and models, from the backend itself (Ollama: the
/// server's version and each tag's digest).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub engine_version: String,
    /// Digest of each model, keyed by the name the space uses for it.
    pub model_digests: BTreeMap<String, String>,
}

/// The model name a server started from a model file answers to: the file's stem.
pub fn model_file_stem(model: &str) -> String {
    std::path::Path::new(model)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| model.to_string())
}

/// Everything needed to start one configuration, and to deploy it later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchPlan {
    /// Program to run, as given in the space file (a path or a name looked up on PATH).
    pub program: String,
    /// Arguments, without the loopback host/port the tuner adds for itself.
    pub args: Vec<String>,
    /// Environment added to the server process.
    pub env: BTreeMap<String, String>,
    /// The same settings as an env file (e.g. llama-server's `LLAMA_ARG_*`).
    pub deploy_env: BTreeMap<String, String>,
    /// Flags that have no environment form, so an env file cannot carry them.
    pub args_without_env: Vec<String>,
    /// Options sent with every request (no restart needed to change them).
    pub request_options: serde_json::Map<String, serde_json::Value>,
    /// Model path or name the server is started with.
    pub model: String,
}

impl LaunchPlan {
    /// Identity of the server process this plan starts: two plans with the same key can share
    /// one running server.
    pub fn process_key(&self) -> String {
        serde_json::to_string(&(&self.program, &self.args, &self.env)).expect("plain data")
    }
}

/// A candidate the backend refuses before launching (a known-invalid combination).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub message: String,
}

pub use crate::measure::FailureClass;

/// A classified failure with the server's own words.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub class: FailureClass,
    /// The log line(s) that explain it, as the server printed them.
    pub message: String,
}

/// An inference-server adapter.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    /// The `[backend]` section the adapter was built from.
    fn spec(&self) -> &BackendSpec;
    /// Turn a candidate into a launch plan. Pure; `Err` for known-invalid combinations.
    fn plan(&self, candidate: &Candidate) -> Result<LaunchPlan, Rejection>;
    /// Arguments that bind the server to `127.0.0.1:port` (llama-server's and vLLM's flags).
    fn bind_args(&self, port: u16) -> Vec<String> {
        vec!["--host".into(), "127.0.0.1".into(), "--port".into(), port.to_string()]
    }
    /// Environment that binds the server to `127.0.0.1:port` (Ollama's `OLLAMA_HOST`).
    fn bind_env(&self, _port: u16) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Per-request options whose change makes the server reload the model (not restart).
    fn reload_options(&self) -> &'static [&'static str] {
        &[]
    }
    /// The protocol the workload speaks to this server (OpenAI chat completions over SSE).
    fn protocol(&self) -> crate::workload::Protocol {
        crate::workload::Protocol::OpenAi
    }
    /// Path polled for readiness (200 = ready).
    fn health_path(&self) -> &'static str {
        "/health"
    }
    /// Arguments that make the program print its version and exit.
    fn version_args(&self) -> Vec<String> {
        vec!["--version".into()]
    }
    /// Read a failed start or a crash from the server's log tail.
    /// `exited` is false when the server was still running but never got ready.
    fn classify(&self, log_tail: &str, exited: bool) -> Failure;
    /// The model name requests carry (default: the model file's stem).
    fn request_model(&self, plan: &LaunchPlan) -> String {
        model_file_stem(&plan.model)
    }
    /// Whether `model` (the space's template, or a launched model) names a local file or folder,
    /// which must exist before a study starts; `false` for names the server resolves itself
    /// (Ollama tags, hub ids).
    fn is_model_a_file(&self, _model: &str) -> bool {
        false
    }
    /// How the server is made to generate exactly a trace row's output length (default:
    /// `max_tokens` only; the model may stop earlier).
    fn output_control(&self) -> crate::workload::replay::OutputControl {
        crate::workload::replay::OutputControl::MaxTokens
    }
    /// Service mode: where the service answers and how it is restarted; `None` when the tuner
    /// spawns the server itself.
    fn service(&self) -> Option<service::ServiceSpec> {
        None
    }
    /// Before the first trial: check (and fetch) what the space needs, and identify the engine
    /// and its models. `None` = the generic identity (program `--version`, model file hashes).
    fn prepare<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        _on_pull: &'a mut (dyn FnMut(Pull<'_>) + Send),
    ) -> BoxFuture<'a, anyhow::Result<Option<Identity>>> {
        Box::pin(async { Ok(None) })
    }
    /// After the server is ready and before measuring: load the model with the trial's options,
    /// so the load is timed on its own and a model that cannot load is a classified result, not
    /// failed requests. `Ok(None)` for servers that load at start.
    fn preload<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        _target: &'a Target,
        _plan: &'a LaunchPlan,
    ) -> BoxFuture<'a, Result<Option<Duration>, Failure>> {
        Box::pin(async { Ok(None) })
    }
    /// The loaded model's memory after the workload, where the server reports it.
    fn model_memory<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        _target: &'a Target,
    ) -> BoxFuture<'a, Option<ModelMemory>> {
        Box::pin(async { None })
    }
    /// Whether a process with this command line (NUL-separated words joined by spaces) is one of
    /// this backend's servers: resume stops survivors of a killed daemon by their recorded PID,
    /// and PIDs get reused.
    fn is_server_process(&self, cmdline: &str) -> bool {
        is_program_process(&self.spec().command[0], cmdline)
    }
    /// Path (OpenAI `/v1/models`) that must list the request model before the server counts as
    /// ready; `None` when the health check alone decides.
    fn models_path(&self) -> Option<&'static str> {
        None
    }
    /// Path that answers the running server's version, recorded with each trial.
    fn version_path(&self) -> Option<&'static str> {
        None
    }
    /// Prometheus metrics path scraped before and after the workload.
    fn metrics_path(&self) -> Option<&'static str> {
        None
    }
    /// Whether to sample GPU memory (`nvidia-smi`) during the workload.
    fn samples_gpu(&self) -> bool {
        false
    }
}

/// Build the adapter a space file names.
pub fn from_spec(spec: &BackendSpec, params: &[crate::space::Param]) -> Box<dyn Backend> {
    match spec.kind {
        BackendKind::Llamacpp => Box::new(llamacpp::LlamaCpp::new(spec.clone(), params.to_vec())),
        BackendKind::Ollama => Box::new(ollama::Ollama::new(spec.clone(), params.to_vec())),
        BackendKind::Vllm => Box::new(vllm::Vllm::new(spec.clone(), params.to_vec())),
    }
}

/// How a trial got its server, relative to the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Launch {
    /// A new server process (first trial, or the process settings changed).
    Restart,
    /// Same process; the model is loaded again (other model, or a load-time option changed).
    Reload,
    /// Same process, same loaded model: only request-time options differ, or nothing.
    Reuse,
}

impl Launch {
    pub fn as_str(&self) -> &'static str {
        match self {
            Launch::Restart => "restart",
            Launch::Reload => "reload",
            Launch::Reuse => "reuse",
        }
    }

    /// The inverse of [`Launch::as_str`].
    pub fn from_name(text: &str) -> Option<Launch> {
        [Launch::Restart, Launch::Reload, Launch::Reuse].into_iter().find(|l| l.as_str() == text)
    }

    /// What moving from `previous` (the running server's plan) to `next` needs.
    /// `reload_options` are the request options that make the server reload the model.
    pub fn between(previous: Option<&LaunchPlan>, next: &LaunchPlan, reload_options: &[&str]) -> Launch {
        let Some(prev) = previous else { return Launch::Restart };
        if prev.process_key() != next.process_key() {
            return Launch::Restart;
        }
        let load_changed = reload_options.iter().any(|o| prev.request_options.get(*o) != next.request_options.get(*o));
        if prev.model != next.model || load_changed { Launch::Reload } else { Launch::Reuse }
    }
}

/// A candidate's values sorted by how each parameter is applied: the model with its template
/// filled in, flag settings in parameter order (each flag of a `flags = [..]` parameter with the
/// value), the server environment (the space's fixed `env` plus `env =` parameters) and the
/// per-request options. Each adapter turns this into its own command line.
pub(crate) struct Applied<'a> {
    pub model: String,
    pub flags: Vec<(&'a str, &'a Value)>,
    pub env: BTreeMap<String, String>,
    pub request_options: serde_json::Map<String, serde_json::Value>,
}

/// Walk `params` over `candidate` once, for every adapter.
pub(crate) fn apply<'a>(
    spec: &BackendSpec,
    params: &'a [Param],
    candidate: &'a Candidate,
) -> Result<Applied<'a>, Rejection> {
    let mut applied = Applied {
        model: spec.model.clone(),
        flags: Vec::new(),
        env: spec.env.clone(),
        request_options: serde_json::Map::new(),
    };
    for param in params {
        let value = candidate
            .get(&param.name)
            .ok_or_else(|| Rejection { message: format!("candidate has no value for '{}'", param.name) })?;
        match &param.apply {
            Apply::Flags(flags) => applied.flags.extend(flags.iter().map(|f| (f.as_str(), value))),
            Apply::Env(name) => {
                applied.env.insert(name.clone(), value.to_string());
            }
            Apply::Option(name) => {
                applied.request_options.insert(name.clone(), serde_json::to_value(value).expect("values serialize"));
            }
            Apply::Template(_) => {
                applied.model = applied.model.replace(&format!("{{{}}}", param.name), &value.to_string())
            }
        }
    }
    Ok(applied)
}

/// Whether `cmdline` runs `program`: one of its words is the program's path or file name
/// (`/usr/bin/python3 /usr/local/bin/vllm serve ...` runs `vllm`).
pub fn is_program_process(program: &str, cmdline: &str) -> bool {
    let Some(name) = std::path::Path::new(program).file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return false;
    };
    cmdline.split_whitespace().any(|word| word == program || word == name || word.ends_with(&format!("/{name}")))
}

/// Classify a failed start or crash by the first class whose patterns match the log tail (most
/// specific first); else `crashed` if the process exited, `never-ready` if it still runs. The
/// message is the matching lines, or the log's last lines.
pub(crate) fn classify_by(log_tail: &str, exited: bool, classes: &[(FailureClass, &[&str])]) -> Failure {
    for (class, patterns) in classes {
        if let Some(message) = find_lines(log_tail, patterns) {
            return Failure { class: *class, message };
        }
    }
    Failure {
        class: if exited { FailureClass::Crashed } else { FailureClass::NeverReady },
        message: last_lines(log_tail, 5),
    }
}

/// Pick the log lines matching the first pattern found, most specific first; else the last lines.
pub(crate) fn find_lines(log_tail: &str, patterns: &[&str]) -> Option<String> {
    for pattern in patterns {
        let lines: Vec<&str> =
            log_tail.lines().filter(|l| l.to_ascii_lowercase().contains(&pattern.to_ascii_lowercase())).collect();
        if !lines.is_empty() {
            return Some(lines.iter().take(3).copied().collect::<Vec<_>>().join("\n"));
        }
    }
    None
}

/// The last `n` non-empty lines of a log.
pub(crate) fn last_lines(log_tail: &str, n: usize) -> String {
    let lines: Vec<&str> = log_tail.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
