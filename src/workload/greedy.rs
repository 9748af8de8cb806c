//! Greedy answers for the quantization quality guard: one prompt at a time, temperature 0,
//! fixed seed, not streamed, the answer text kept (the load workload keeps only timings).
//!
//! One request at a time, because batching several sequences can change a greedy answer in
//! llama.cpp: the guard must compare variants, not batch schedules.

use std::time::Duration;

use serde_json::json;

use super::{Prompt, Protocol, Target, error_chain, truncate};

/// The answer to every prompt, in order; `None` where the request failed.
pub async fn answers(
    client: &reqwest::Client,
    target: &Target,
    prompts: &[Prompt],
    max_tokens: u32,
    seed: u64,
    timeout: Duration,
) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        let answer = match target.protocol {
            Protocol::OpenAi => answer_openai(client, target, prompt, max_tokens, seed, timeout).await,
            Protocol::Ollama => answer_ollama(client, target, prompt, max_tokens, seed, timeout).await,
        };
        if let Err(e) = &answer {
            tracing::warn!(error = %e, "quality prompt failed");
        }
        out.push(answer.ok());
    }
    out
}

fn messages(prompt: &Prompt) -> Vec<serde_json::Value> {
    let mut messages = Vec::new();
    if let Some(system) = &prompt.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": prompt.prompt}));
    messages
}

/// POST `path` with `body`; the parsed JSON answer, or the failure in words.
async fn post_json(
    client: &reqwest::Client,
    url: String,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let resp = client.post(url).json(body).timeout(timeout).send().await.map_err(|e| error_chain(&e))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| error_chain(&e))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", truncate(&text, 200)));
    }
    serde_json::from_str(&text).map_err(|e| format!("{e}: {}", truncate(&text, 120)))
}

/// Ollama `/api/chat`, not streamed; sampling and per-request options go in `options`.
async fn answer_ollama(
    client: &reqwest::Client,
    target: &Target,
    prompt: &Prompt,
    max_tokens: u32,
    seed: u64,
    timeout: Duration,
) -> Result<String, String> {
    let mut options = json!({"temperature": 0, "top_k": 1, "seed": seed, "num_predict": max_tokens});
    let obj = options.as_object_mut().expect("a JSON object literal");
    for (k, v) in &target.options {
        obj.insert(k.clone(), v.clone());
    }
    let body = json!({"model": target.model, "messages": messages(prompt), "stream": false, "options": options});
    let doc = post_json(client, format!("{}/api/chat", target.base_url), &body, timeout).await?;
    doc["message"]["content"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no message.content in '{}'", truncate(&doc.to_string(), 120)))
}

async fn answer_openai(
    client: &reqwest::Client,
    target: &Target,
    prompt: &Prompt,
    max_tokens: u32,
    seed: u64,
    timeout: Duration,
) -> Result<String, String> {
    let mut body = json!({
        "model": target.model,
        "messages": messages(prompt),
        "max_tokens": max_tokens,
        "temperature": 0,
        "top_k": 1,
        "seed": seed,
        "stream": false,
        "cache_prompt": false,
    });
    let obj = body.as_object_mut().expect("a JSON object literal");
    for (k, v) in &target.options {
        obj.insert(k.clone(), v.clone());
    }
    let doc = post_json(client, format!("{}/v1/chat/completions", target.base_url), &body, timeout).await?;
    doc["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no choices[0].message.content in '{}'", truncate(&doc.to_string(), 120)))
}
