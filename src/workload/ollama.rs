//! Ollama's native API: streamed `/api/chat` (NDJSON) timed like every other protocol, plus the
//! management calls a study needs (`/api/version`, `/api/tags`, `/api/pull`, `/api/ps`, and a
//! preload through `/api/generate`). Field names and units: `reference/backends.md` §A.3.
//!
//! TTFT runs to the first line whose `message.content` is non-empty. The final line's
//! `*_duration` fields (nanoseconds, absent when zero) are kept beside the client's figures.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{Prompt, Target, error_chain, truncate};
use crate::measure::{ErrorKind, FailureClass, OllamaDurations, Sample, ServerTimings};
use crate::space::WorkloadSpec;

/// The `/api/chat` body for one prompt: greedy, seeded, streamed, with the trial's options.
pub fn request_body(prompt: &Prompt, target: &Target, spec: &WorkloadSpec) -> Json {
    let mut messages = Vec::new();
    if let Some(system) = &prompt.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": prompt.prompt}));
    let mut options = serde_json::Map::new();
    options.insert("num_predict".into(), json!(spec.max_tokens));
    options.insert("temperature".into(), json!(0));
    options.insert("seed".into(), json!(spec.seed));
    let mut messages = Json::Array(messages);
    for (k, v) in &target.options {
        // A trace row's own `messages` (replay) replace the prompt; they are no model option.
        if k == "messages" {
            messages = v.clone();
        } else {
            options.insert(k.clone(), v.clone());
        }
    }
    json!({"model": target.model, "messages": messages, "stream": true, "options": options})
}

/// One NDJSON line of `/api/chat` or `/api/generate`.
#[derive(Debug, Default, Deserialize)]
struct Line {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    total_duration: u64,
    #[serde(default)]
    load_duration: u64,
    #[serde(default)]
    prompt_eval_count: u32,
    #[serde(default)]
    prompt_eval_duration: u64,
    #[serde(default)]
    eval_count: u32,
    #[serde(default)]
    eval_duration: u64,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    content: String,
    #[serde(default)]
    thinking: Option<String>,
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

/// Map an Ollama error (status and `error` text) to a request error kind.
pub fn error_kind(status: u16, message: &str) -> ErrorKind {
    use crate::measure::FailureClass as F;
    match classify_message(message) {
        Some(F::LoadError) => ErrorKind::ModelNotFound,
        Some(F::Oom) => ErrorKind::Oom,
        Some(F::NeverReady) => ErrorKind::LoadTimeout,
        Some(F::Crashed) => ErrorKind::RunnerCrashed,
        _ if status == 404 => ErrorKind::ModelNotFound,
        _ if status == 503 => ErrorKind::Busy,
        _ => ErrorKind::Status,
    }
}

/// The `error` field of an Ollama error body, else the body itself.
fn error_text(body: &str) -> String {
    serde_json::from_str::<Json>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| truncate(body, 300))
}

/// Read one streaming chat answer at `url` into `sample`, timestamping content chunks
/// against `origin`. `Err` carries the error kind and message.
pub(super) async fn read_stream(
    client: &reqwest::Client,
    url: &str,
    body: &Json,
    origin: Instant,
    sample: &mut Sample,
) -> Result<(), (ErrorKind, String)> {
    let on_status = |status: u16, body: String| {
        let text = error_text(&body);
        (error_kind(status, &text), format!("HTTP {status}: {text}"))
    };
    let resp = super::post_stream(client, url, body, sample, on_status).await?;
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunks = 0u32;
    let mut last: Option<Duration> = None;
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.map_err(|e| (ErrorKind::Truncated, error_chain(&e)))?;
        let now = origin.elapsed();
        buf.extend_from_slice(&bytes);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&raw);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(text)
                .map_err(|e| (ErrorKind::Malformed, format!("{e}: {}", truncate(text, 120))))?;
            if let Some(error) = line.error {
                // A mid-stream error arrives as a last line with HTTP 200 (reference §A.3).
                return Err((error_kind(200, &error), error));
            }
            let content = line
                .message
                .as_ref()
                .map(|m| !m.content.is_empty() || m.thinking.as_deref().is_some_and(|t| !t.is_empty()));
            if content.unwrap_or(false) || line.response.as_deref().is_some_and(|r| !r.is_empty()) {
                chunks += 1;
                match last {
                    Some(prev) => sample.chunk_gaps.push(now.saturating_sub(prev)),
                    None => sample.first_token = Some(now),
                }
                last = Some(now);
                sample.end = now;
            }
            if line.done {
                if chunks == 0 {
                    return Err((
                        ErrorKind::Truncated,
                        format!("done ('{}') without content", line.done_reason.unwrap_or_default()),
                    ));
                }
                sample.output_tokens = if line.eval_count > 0 { line.eval_count } else { chunks };
                sample.prompt_tokens = Some(line.prompt_eval_count);
                sample.server = Some(ServerTimings {
                    prompt_tokens: line.prompt_eval_count,
                    prompt_ms: line.prompt_eval_duration as f64 / 1e6,
                    predicted_tokens: line.eval_count,
                    predicted_ms: line.eval_duration as f64 / 1e6,
                    cached_tokens: 0,
                    ollama: Some(OllamaDurations {
                        total_duration_ns: line.total_duration,
                        load_duration_ns: line.load_duration,
                        prompt_eval_duration_ns: line.prompt_eval_duration,
                        eval_duration_ns: line.eval_duration,
                    }),
                });
                return Ok(());
            }
        }
    }
    Err((
        ErrorKind::Truncated,
        if chunks == 0 { "stream ended without content".into() } else { "stream ended before done".into() },
    ))
}

/// A failed management call: the HTTP status (0 = no response) and Ollama's error text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

fn api_err(e: reqwest::Error) -> ApiError {
    ApiError { status: 0, message: error_chain(&e) }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Json, ApiError> {
    let resp = client.get(url).timeout(Duration::from_secs(10)).send().await.map_err(api_err)?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(api_err)?;
    if !(200..300).contains(&status) {
        return Err(ApiError { status, message: error_text(&text) });
    }
    serde_json::from_str(&text).map_err(|e| ApiError { status, message: format!("{e}: {}", truncate(&text, 200)) })
}

/// `GET /api/version` → the version string.
pub async fn version(client: &reqwest::Client, base_url: &str) -> Result<String, ApiError> {
    let v = get_json(client, &format!("{base_url}/api/version")).await?;
    Ok(v["version"].as_str().unwrap_or("unknown").to_string())
}

/// `GET /api/tags` → installed `(name, digest)` pairs.
pub async fn tags(client: &reqwest::Client, base_url: &str) -> Result<Vec<(String, String)>, ApiError> {
    let v = get_json(client, &format!("{base_url}/api/tags")).await?;
    Ok(v["models"]
        .as_array()
        .map(|models| {
            models
                .iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap_or_default().to_string(),
                        m["digest"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Memory of a loaded model per `/api/ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub size_bytes: u64,
    pub size_vram_bytes: u64,
    /// Per-slot context after capping (`context_length`).
    pub context_length: Option<u64>,
}

/// `GET /api/ps` → the entry for `model`, if it is loaded.
pub async fn ps(client: &reqwest::Client, base_url: &str, model: &str) -> Result<Option<Loaded>, ApiError> {
    let v = get_json(client, &format!("{base_url}/api/ps")).await?;
    Ok(v["models"].as_array().and_then(|models| {
        models.iter().find(|m| m["name"] == model || m["model"] == model).map(|m| Loaded {
            size_bytes: m["size"].as_u64().unwrap_or(0),
            size_vram_bytes: m["size_vram"].as_u64().unwrap_or(0),
            context_length: m["context_length"].as_u64(),
        })
    }))
}

/// Progress callback of [`pull`]: `(status, completed bytes, total bytes)`.
pub type PullProgress<'a> = dyn FnMut(&str, Option<u64>, Option<u64>) + Send + 'a;

/// `POST /api/pull` streaming: calls `progress(status, completed, total)` per line.
pub async fn pull(
    client: &reqwest::Client,
    base_url: &str,
    model: &str,
    progress: &mut PullProgress<'_>,
) -> Result<(), ApiError> {
    let resp = client
        .post(format!("{base_url}/api/pull"))
        .json(&json!({"model": model, "stream": true}))
        .send()
        .await
        .map_err(api_err)?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        return Err(ApiError { status, message: error_text(&resp.text().await.unwrap_or_default()) });
    }
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut success = false;
    while let Some(bytes) = stream.next().await {
        buf.extend_from_slice(&bytes.map_err(api_err)?);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(line) = serde_json::from_slice::<Json>(&raw) else { continue };
            if let Some(e) = line["error"].as_str() {
                return Err(ApiError { status, message: e.to_string() });
            }
            let s = line["status"].as_str().unwrap_or_default();
            success |= s == "success";
            progress(s, line["completed"].as_u64(), line["total"].as_u64());
        }
    }
    if success { Ok(()) } else { Err(ApiError { status, message: "pull ended without 'success'".into() }) }
}

/// Load `model` with `options` (`POST /api/generate` without a prompt, reference §D): returns
/// Ollama's `load_duration`. Errors carry Ollama's text (not found, OOM, load timeout...).
pub async fn preload(
    client: &reqwest::Client,
    base_url: &str,
    model: &str,
    options: &serde_json::Map<String, Json>,
    timeout: Duration,
) -> Result<Duration, ApiError> {
    let resp = client
        .post(format!("{base_url}/api/generate"))
        .json(&json!({"model": model, "options": options, "stream": false}))
        .timeout(timeout)
        .send()
        .await
        .map_err(api_err)?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(api_err)?;
    if !(200..300).contains(&status) {
        return Err(ApiError { status, message: error_text(&text) });
    }
    let line: Line = serde_json::from_str(text.trim())
        .map_err(|e| ApiError { status, message: format!("{e}: {}", truncate(&text, 200)) })?;
    if let Some(error) = line.error {
        return Err(ApiError { status, message: error });
    }
    Ok(Duration::from_nanos(line.load_duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_kinds() {
        assert_eq!(error_kind(404, "model \"x\" not found, try pulling it first"), ErrorKind::ModelNotFound);
        assert_eq!(
            error_kind(503, "server busy, please try again.  maximum pending requests exceeded"),
            ErrorKind::Busy
        );
        assert_eq!(
            error_kind(500, "timed out waiting for llama-server to start - progress 0.00"),
            ErrorKind::LoadTimeout
        );
        assert_eq!(error_kind(500, "llama-server reported out-of-memory during startup: x"), ErrorKind::Oom);
        assert_eq!(
            error_kind(200, "model runner has unexpectedly stopped, this may be due to resource limitations"),
            ErrorKind::RunnerCrashed
        );
        assert_eq!(error_kind(400, "invalid options"), ErrorKind::Status);
        assert_eq!(error_text(r#"{"error":"boom"}"#), "boom");
    }

    #[test]
    fn body_always_carries_the_options() {
        let target = Target {
            protocol: super::super::Protocol::Ollama,
            base_url: String::new(),
            model: "m:q4_0".into(),
            options: [("num_ctx".to_string(), json!(2048))].into_iter().collect(),
        };
        let spec = crate::space::WorkloadSpec {
            dataset: "x".into(),
            concurrency: 1,
            requests: 1,
            warmup: 0,
            max_tokens: 16,
            seed: 7,
            request_timeout: Duration::from_secs(1),
            prompt_cache: false,
            draw: 0,
            trace: None,
        };
        let body = request_body(
            &Prompt { id: None, system: None, prompt: "hi".into(), answer: None, accept: Vec::new() },
            &target,
            &spec,
        );
        assert_eq!(
            body,
            json!({"model": "m:q4_0", "messages": [{"role": "user", "content": "hi"}], "stream": true,
                   "options": {"num_predict": 16, "temperature": 0, "seed": 7, "num_ctx": 2048}})
        );
        // A replayed trace row's messages go to the top level, not into the options.
        let mut with_messages = target.clone();
        let turn = json!([{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"}]);
        with_messages.options.insert("messages".into(), turn.clone());
        let blank = Prompt { id: None, system: None, prompt: String::new(), answer: None, accept: Vec::new() };
        let body = request_body(&blank, &with_messages, &spec);
        assert_eq!((&body["messages"], body["options"].get("messages")), (&turn, None));
    }
}
