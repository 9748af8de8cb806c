//! The streaming workload: prompts from a JSONL dataset, a closed-loop scheduler with N clients,
//! and the protocol clients (`openai`: chat completions over SSE) that timestamp every content
//! chunk.
//!
//! One `Sample` per request; a failed request is a sample with an error kind, never an abort.
//! Knows nothing about backends or configurations: it gets a base URL and request options.

pub mod greedy;
pub mod ollama;
pub mod open_loop;
pub mod openai;
pub mod prune;
pub mod replay;
pub mod timed;
pub mod trace;

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::measure::Sample;
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
    Line { path: String, line: usize, message: String },
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
    /// Accepted spellings of `answer` (whole words, any case), for the quality guard.
    #[serde(default)]
    pub accept: Vec<String>,
}

/// Read a JSONL dataset: one `{"prompt": ..., "system"?: ..., "id"?: ...}` object per line.
pub fn load_dataset(path: &Path) -> Result<Vec<Prompt>, Error> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: shown.clone(), source })?;
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

/// The order of prompt indices for one run: `warmup` indices, then `requests` indices. The
/// dataset is shuffled once per `seed` (the study's), and run number `draw` takes the next
/// `warmup + requests` prompts of that order, wrapping around: prompts are distinct within a run
/// while the dataset lasts, and two consecutive draws share none while the dataset holds both.
pub fn schedule(n_prompts: usize, warmup: usize, requests: usize, seed: u64, draw: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n_prompts).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let per_run = warmup + requests;
    let start = (draw % n_prompts as u64) as usize * (per_run % n_prompts) % n_prompts;
    (0..per_run).map(|i| order[(start + i) % n_prompts]).collect()
}

/// The HTTP client every command measures with: no proxy for loopback, and a fresh connection
/// per request (~0.1 ms): servers close kept-alive connections on their own schedule
/// (cpp-httplib after a few requests), and a request sent on a connection the server just
/// closed would fail without reaching it.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    use anyhow::Context;
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().context("building the HTTP client")
}

/// What one workload run produced.
#[derive(Debug, Clone)]
pub struct Run {
    /// Warm-up samples first (tagged), then measured ones.
    pub samples: Vec<Sample>,
    /// Wall time of the measured phase.
    pub wall: Duration,
}

/// The wire protocol of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OpenAI `POST /v1/chat/completions` with `stream: true` (SSE).
    #[default]
    OpenAi,
    /// Ollama `POST /api/chat` with `stream: true` (NDJSON), options in `options`.
    Ollama,
}

/// Where and how to send requests.
#[derive(Debug, Clone)]
pub struct Target {
    pub protocol: Protocol,
    pub base_url: String,
    pub model: String,
    /// Extra fields merged into every request body (per-request options).
    pub options: serde_json::Map<String, Json>,
}

/// Run warm-up, then the measured phase, each closed-loop with `spec.concurrency` clients.
pub async fn run(client: &reqwest::Client, target: &Target, prompts: &[Prompt], spec: &WorkloadSpec) -> Run {
    run_until(client, target, prompts, spec, None).await.0
}

/// When to cut a run short: once `misses` measured requests had a TTFT above `ttft_limit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Abort {
    pub ttft_limit: Duration,
    pub misses: usize,
}

/// [`run`], stopping the measured phase early under `abort` (in-flight requests are dropped).
/// The bool says whether the run was cut short. Warm-up requests never count.
pub async fn run_until(
    client: &reqwest::Client,
    target: &Target,
    prompts: &[Prompt],
    spec: &WorkloadSpec,
    abort: Option<Abort>,
) -> (Run, bool) {
    let order = schedule(prompts.len(), spec.warmup as usize, spec.requests as usize, spec.seed, spec.draw);
    let (warm, measured) = order.split_at(spec.warmup as usize);
    let origin = Instant::now();
    let (mut samples, _) = closed_loop(client, target, prompts, spec, warm, origin, true, None).await;
    let start = Instant::now();
    let (rest, is_cut) = closed_loop(client, target, prompts, spec, measured, origin, false, abort).await;
    samples.extend(rest);
    (Run { samples, wall: start.elapsed() }, is_cut)
}

#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    client: &reqwest::Client,
    target: &Target,
    prompts: &[Prompt],
    spec: &WorkloadSpec,
    order: &[usize],
    origin: Instant,
    is_warmup: bool,
    abort: Option<Abort>,
) -> (Vec<Sample>, bool) {
    let next = AtomicUsize::new(0);
    let misses = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let done: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    let stopped = tokio::sync::Notify::new();
    let workers = (0..spec.concurrency.max(1)).map(|_| async {
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&prompt_index) = order.get(i) else { break };
            let mut sample = send(client, target, &prompts[prompt_index], spec, origin).await;
            sample.prompt_index = prompt_index;
            sample.is_warmup = is_warmup;
            if let Some(abort) = abort
                && sample.ttft().is_some_and(|t| t > abort.ttft_limit)
                && misses.fetch_add(1, Ordering::Relaxed) + 1 >= abort.misses
            {
                stop.store(true, Ordering::Relaxed);
                stopped.notify_one();
            }
            done.lock().expect("no panics while holding").push(sample);
        }
    });
    let all = futures_util::future::join_all(workers);
    let is_cut = tokio::select! {
        _ = all => stop.load(Ordering::Relaxed),
        // Dropping the workers cancels their in-flight requests.
        _ = stopped.notified() => true,
    };
    let mut samples = std::mem::take(&mut *done.lock().expect("no panics while holding"));
    samples.sort_by_key(|s| s.sent);
    (samples, is_cut)
}

/// Send one request in the target's protocol and time it. Never fails: errors become the
/// sample's kind.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    prompt: &Prompt,
    spec: &WorkloadSpec,
    origin: Instant,
) -> Sample {
    let (path, body) = match target.protocol {
        Protocol::OpenAi => ("/v1/chat/completions", openai::request_body(prompt, target, spec)),
        Protocol::Ollama => ("/api/chat", ollama::request_body(prompt, target, spec)),
    };
    let url = format!("{}{path}", target.base_url);
    let mut sample = blank_sample(origin.elapsed());
    let read = async {
        match target.protocol {
            Protocol::OpenAi => openai::read_stream(client, &url, &body, origin, &mut sample).await,
            Protocol::Ollama => ollama::read_stream(client, &url, &body, origin, &mut sample).await,
        }
    };
    let outcome = tokio::time::timeout(spec.request_timeout, read).await;
    settle(sample, outcome, spec.request_timeout, origin)
}

/// A request's sample before anything has arrived: sent at `sent`, no tokens, no status.
fn blank_sample(sent: Duration) -> Sample {
    Sample {
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
    }
}

/// Record how a protocol client's read ended: a failure or a timeout becomes the sample's
/// error kind and message, stamped with the time it was seen. Shared by every protocol.
fn settle(
    mut sample: Sample,
    outcome: Result<Result<(), (crate::measure::ErrorKind, String)>, tokio::time::error::Elapsed>,
    timeout: Duration,
    origin: Instant,
) -> Sample {
    let (kind, message) = match outcome {
        Ok(Ok(())) => return sample,
        Ok(Err(failure)) => failure,
        Err(_) => (crate::measure::ErrorKind::Timeout, format!("no complete response within {timeout:?}")),
    };
    sample.error = Some(kind);
    sample.error_message = Some(message);
    sample.end = origin.elapsed();
    sample
}

/// POST `body` to `url` for a streamed answer, noting the status in `sample`; a non-2xx answer
/// becomes an error through the protocol's `on_status(status, body text)`.
async fn post_stream(
    client: &reqwest::Client,
    url: &str,
    body: &Json,
    sample: &mut Sample,
    on_status: fn(u16, String) -> (crate::measure::ErrorKind, String),
) -> Result<reqwest::Response, (crate::measure::ErrorKind, String)> {
    let resp =
        client.post(url).json(body).send().await.map_err(|e| (crate::measure::ErrorKind::Connect, error_chain(&e)))?;
    sample.status = resp.status().as_u16();
    if !resp.status().is_success() {
        return Err(on_status(sample.status, resp.text().await.unwrap_or_default()));
    }
    Ok(resp)
}

/// An error and its causes, `a: b: c` (reqwest's top-level message alone hides the cause).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n).collect::<String>() + "…" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_distinct_and_seeded() {
        let a = schedule(100, 4, 60, 7, 0);
        assert_eq!(a.len(), 64);
        let mut d = a.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 64, "no prompt repeats while the dataset lasts");
        assert_eq!(a, schedule(100, 4, 60, 7, 0));
        assert_ne!(a, schedule(100, 4, 60, 8, 0));
        assert_eq!(schedule(3, 0, 7, 1, 0).len(), 7);
    }

    /// Issue 13 item 5: each trial of a study sends its own prompts, so a reused server's prompt
    /// cache never sees a trial's prompts again.
    #[test]
    fn consecutive_draws_send_disjoint_prompts() {
        for draw in 0..3u64 {
            let (a, b) = (schedule(480, 4, 64, 3, draw), schedule(480, 4, 64, 3, draw + 1));
            assert!(a.iter().all(|i| !b.contains(i)), "draws {draw} and {} overlap", draw + 1);
        }
        // and the whole dataset is used before any prompt comes back
        let seen: std::collections::BTreeSet<usize> = (0..7).flat_map(|d| schedule(480, 4, 64, 3, d)).collect();
        assert_eq!(seen.len(), 7 * 68);
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
