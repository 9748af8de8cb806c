//! The streaming workload: prompts from a JSONL dataset, a closed-loop scheduler with N clients,
//! and an OpenAI chat-completions SSE client that timestamps every content chunk.
//!
//! One `Sample` per request; a failed request is a sample with an error kind, never an abort.
//! Knows nothing about backends or configurations: it gets a base URL and request options.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::measure::{ErrorKind, Sample, ServerTimings};
use crate::space::WorkloadSpec;

/// Problems with the dataset file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading dataset '{path}'")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dataset '{path}' line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("dataset '{path}' has no prompts")]
    Empty { path: String },
}

/// One prompt of the dataset.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    pub prompt: String,
    /// Known answer, for quality checks; unused by the load itself.
    #[serde(default)]
    pub answer: Option<String>,
}

/// Read a JSONL dataset: one `{"prompt": ..., "system"?: ..., "id"?: ...}` object per line.
pub fn load_dataset(path: &Path) -> Result<Vec<Prompt>, Error> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: shown.clone(),
        source,
    })?;
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let prompt: Prompt = serde_json::from_str(line).map_err(|e| Error::Line {
            path: shown.clone(),
            line: i + 1,
            message: e.to_string(),
        })?;
        prompts.push(prompt);
    }
    if prompts.is_empty() {
        return Err(Error::Empty { path: shown });
    }
    Ok(prompts)
}

/// The order of prompt indices for one run: `warmup` indices, then `requests` indices, all
/// distinct while the dataset lasts. Seeded, so every trial of a study sends the same prompts
/// (common random numbers) and no request of a run repeats another's prompt by accident.
pub fn schedule(n_prompts: usize, warmup: usize, requests: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(warmup + requests);
    while out.len() < warmup + requests {
        let mut round: Vec<usize> = (0..n_prompts).collect();
        round.shuffle(&mut rng);
        out.extend(round);
    }
    out.truncate(warmup + requests);
    out
}

/// What one workload run produced.
#[derive(Debug, Clone)]
pub struct Run {
    /// Warm-up samples first (tagged), then measured ones.
    pub samples: Vec<Sample>,
    /// Wall time of the measured phase.
    pub wall: Duration,
}

/// Where and how to send requests.
#[derive(Debug, Clone)]
pub struct Target {
    pub base_url: String,
    pub model: String,
    /// Extra fields merged into every request body (per-request options).
    pub options: serde_json::Map<String, Json>,
}

/// Run warm-up, then the measured phase, each closed-loop with `spec.concurrency` clients.
pub async fn run(
    client: &reqwest::Client,
    target: &Target,
    prompts: &[Prompt],
    spec: &WorkloadSpec,
) -> Run {
    let order = schedule(
        prompts.len(),
        spec.warmup as usize,
        spec.requests as usize,
        spec.seed,
    );
    let (warm, measured) = order.split_at(spec.warmup as usize);
    let origin = Instant::now();
    let mut samples = closed_loop(client, target, prompts, spec, warm, origin, true).await;
    let start = Instant::now();
    samples.extend(closed_loop(client, target, prompts, spec, measured, origin, false).await);
    Run {
        samples,
        wall: start.elapsed(),
    }
}

async fn closed_loop(
    client: &reqwest::Client,
    target: &Target,
    prompts: &[Prompt],
    spec: &WorkloadSpec,
    order: &[usize],
    origin: Instant,
    is_warmup: bool,
) -> Vec<Sample> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..spec.concurrency.max(1)).map(|_| {
        let next = next.clone();
        async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&prompt_index) = order.get(i) else {
                    break;
                };
                let body = request_body(&prompts[prompt_index], target, spec);
                let mut sample = stream_chat(client, &target.base_url, &body, spec.request_timeout, origin).await;
                sample.prompt_index = prompt_index;
                sample.is_warmup = is_warmup;
                out.push(sample);
            }
            out
        }
    });
    let mut samples: Vec<Sample> = futures_util::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    samples.sort_by_key(|s| s.sent);
    samples
}

fn request_body(prompt: &Prompt, target: &Target, spec: &WorkloadSpec) -> Json {
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
    choice
        .delta
        .as_ref()
        .is_some_and(|d| non_empty(&d.content) || non_empty(&d.reasoning_content))
        || non_empty(&choice.text)
}

/// Send one streaming chat request and time it. Never fails: errors become the sample's kind.
pub async fn stream_chat(
    client: &reqwest::Client,
    base_url: &str,
    body: &Json,
    timeout: Duration,
    origin: Instant,
) -> Sample {
    let sent = origin.elapsed();
    let mut sample = Sample {
        prompt_index: 0,
        is_warmup: false,
        sent,
        first_token: None,
        end: sent,
        chunk_gaps: Vec::new(),
        output_tokens: 0,
        prompt_tokens: None,
        status: 0,
        error: None,
        error_message: None,
        server: None,
    };
    let url = format!("{base_url}/v1/chat/completions");
    let outcome = tokio::time::timeout(timeout, read_stream(client, &url, body, origin, &mut sample)).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err((kind, message))) => {
            sample.error = Some(kind);
            sample.error_message = Some(message);
            sample.end = origin.elapsed();
        }
        Err(_) => {
            sample.error = Some(ErrorKind::Timeout);
            sample.error_message = Some(format!("no complete response within {timeout:?}"));
            sample.end = origin.elapsed();
        }
    }
    sample
}

async fn read_stream(
    client: &reqwest::Client,
    url: &str,
    body: &Json,
    origin: Instant,
    sample: &mut Sample,
) -> Result<(), (ErrorKind, String)> {
    let resp = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| (ErrorKind::Connect, error_chain(&e)))?;
    sample.status = resp.status().as_u16();
    if !resp.status().is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err((ErrorKind::Status, format!("HTTP {}: {}", sample.status, truncate(&text, 300))));
    }
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
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| (ErrorKind::Malformed, format!("{e}: {}", truncate(data, 120))))?;
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

/// An error and its causes, `a: b: c` (reqwest's top-level message alone hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_distinct_and_seeded() {
        let a = schedule(100, 4, 60, 7);
        assert_eq!(a.len(), 64);
        let mut d = a.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 64, "no prompt repeats while the dataset lasts");
        assert_eq!(a, schedule(100, 4, 60, 7));
        assert_ne!(a, schedule(100, 4, 60, 8));
        assert_eq!(schedule(3, 0, 7, 1).len(), 7);
    }

    #[test]
    fn dataset_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, "{\"prompt\":\"hi\"}\n{\"promt\":\"x\"}\n").unwrap();
        let e = load_dataset(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("d.jsonl"), "{e}");
    }
}
