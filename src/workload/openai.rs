//! OpenAI chat completions over SSE (`POST /v1/chat/completions`, `stream: true`), as served by
//! llama.cpp, vLLM and Ollama's compatibility layer. TTFT runs to the first chunk carrying
//! content; the last chunk's `usage` and llama.cpp's `timings` are kept.

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{Prompt, Target, error_chain, truncate};
use crate::measure::{ErrorKind, Sample, ServerTimings};
use crate::space::WorkloadSpec;

/// The request body for one prompt: greedy, seeded, streamed, with usage.
pub fn request_body(prompt: &Prompt, target: &Target, spec: &WorkloadSpec) -> Json {
    let mut messages = Vec::new();
    if let Some(system) = &prompt.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": prompt.prompt}));
    let mut body = json!({
        "model": target.model,
        "messages": messages,
        "max_tokens": spec.max_tokens,
        "temperature": 0,
        "seed": spec.seed,
        "stream": true,
        "stream_options": {"include_usage": true},
        // llama.cpp: reuse of cached prefixes is a deliberate workload property (DESIGN.md §5).
        "cache_prompt": spec.prompt_cache,
    });
    let obj = body.as_object_mut().expect("a JSON object literal");
    for (k, v) in &target.options {
        obj.insert(k.clone(), v.clone());
    }
    body
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
    timings: Option<Timings>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    completion_tokens: Option<u32>,
    prompt_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct Timings {
    #[serde(default)]
    prompt_n: u32,
    #[serde(default)]
    prompt_ms: f64,
    #[serde(default)]
    predicted_n: u32,
    #[serde(default)]
    predicted_ms: f64,
    #[serde(default)]
    cache_n: u32,
}

fn has_content(choice: &Choice) -> bool {
    let non_empty = |s: &Option<String>| s.as_deref().is_some_and(|t| !t.is_empty());
    choice.delta.as_ref().is_some_and(|d| non_empty(&d.content) || non_empty(&d.reasoning_content))
        || non_empty(&choice.text)
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
    let on_status = |status: u16, text: String| (ErrorKind::Status, format!("HTTP {status}: {}", truncate(&text, 300)));
    let resp = super::post_stream(client, url, body, sample, on_status).await?;
    let mut events = resp.bytes_stream().eventsource();
    let mut chunks = 0u32;
    let mut last: Option<Duration> = None;
    let mut usage_tokens = None;
    let mut done = false;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| (ErrorKind::Truncated, error_chain(&e)))?;
        let now = origin.elapsed();
        let data = event.data.trim();
        if data.is_empty() {
            continue;
        }
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Chunk =
            serde_json::from_str(data).map_err(|e| (ErrorKind::Malformed, format!("{e}: {}", truncate(data, 120))))?;
        if chunk.choices.iter().any(has_content) {
            chunks += 1;
            if let Some(prev) = last {
                sample.chunk_gaps.push(now.saturating_sub(prev));
            } else {
                sample.first_token = Some(now);
            }
            last = Some(now);
            sample.end = now;
        }
        if let Some(usage) = chunk.usage {
            usage_tokens = usage.completion_tokens.or(usage_tokens);
            sample.prompt_tokens = usage.prompt_tokens.or(sample.prompt_tokens);
        }
        if let Some(t) = chunk.timings {
            sample.server = Some(ServerTimings {
                prompt_tokens: t.prompt_n,
                prompt_ms: t.prompt_ms,
                predicted_tokens: t.predicted_n,
                predicted_ms: t.predicted_ms,
                cached_tokens: t.cache_n,
                ollama: None,
            });
        }
    }
    if chunks == 0 {
        return Err((ErrorKind::Truncated, "stream ended without content".into()));
    }
    if !done && usage_tokens.is_none() {
        return Err((ErrorKind::Truncated, "stream ended before [DONE]".into()));
    }
    sample.output_tokens = usage_tokens.unwrap_or(chunks);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::space::Space;
    use crate::workload::Protocol;

    /// The body sent for a space whose `[workload]` holds `workload_extra`.
    fn body_for(workload_extra: &str) -> Json {
        let text = format!(
            r#"
[study]
name = "t"
strategy = "grid"
[backend]
kind = "llamacpp"
command = ["llama-server"]
model = "m.gguf"
[params]
np = {{ values = [1, 2], flag = "-np" }}
[workload]
max_tokens = 7
{workload_extra}
"#
        );
        let space = Space::from_toml(&text, "t.toml", Path::new("/repo")).unwrap();
        let target = Target {
            protocol: Protocol::OpenAi,
            base_url: "http://127.0.0.1:1".into(),
            model: "m".into(),
            options: serde_json::Map::new(),
        };
        let prompt = Prompt { id: None, system: None, prompt: "hi".into(), answer: None, accept: Vec::new() };
        request_body(&prompt, &target, &space.workload)
    }

    #[test]
    fn requests_carry_cache_prompt_false_unless_the_workload_sets_prompt_cache() {
        // README "Metrics": prompt-cache reuse never depends on trial order.
        let body = body_for("");
        assert_eq!(body["cache_prompt"], json!(false), "{body}");
        assert_eq!(body["max_tokens"], json!(7));
        assert_eq!(body["stream"], json!(true));
        let body = body_for("prompt_cache = true");
        assert_eq!(body["cache_prompt"], json!(true), "{body}");
    }
}
