//! One trace line: what the request said ([`Prompt`]), what the response reported
//! ([`Observer`]) and what the proxy timed, assembled into a [`Record`].
//!
//! Reading never fails: a body that is not the JSON an endpoint expects gives null lengths and
//! no ids, and the bytes pass through untouched either way.

use serde::Serialize;
use serde_json::Value;

use super::hash::Key;

/// The wire protocol of a recorded endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Openai,
    Ollama,
}

/// Which recorded endpoint a path is, if any (query strings excluded).
pub fn endpoint(path: &str) -> Option<Protocol> {
    match path.trim_end_matches('/') {
        "/v1/chat/completions" | "/v1/completions" => Some(Protocol::Openai),
        "/api/chat" | "/api/generate" => Some(Protocol::Ollama),
        _ => None,
    }
}

/// What a request body says, as far as the trace needs it.
#[derive(Debug, Default)]
pub struct Prompt {
    /// The `model` field; `None` when absent or the body is not JSON.
    pub model: Option<String>,
    /// The text the block ids cover (see the module docs of `capture`); `None` when the body
    /// is not the JSON the endpoint expects.
    pub text: Option<String>,
    /// The chat `messages` as sent (kept only with `--keep-text`).
    pub messages: Option<Value>,
}

impl Prompt {
    /// Read a request body. Chat requests (`messages`) give each message as its role, a
    /// newline, its text and a newline; `/v1/completions` its `prompt` (strings of an array
    /// joined by newlines); `/api/generate` its `system`, a newline, and its `prompt`.
    pub fn parse(body: &[u8]) -> Prompt {
        let Ok(Value::Object(json)) = serde_json::from_slice::<Value>(body) else { return Prompt::default() };
        let model = json.get("model").and_then(Value::as_str).map(str::to_string);
        if let Some(Value::Array(messages)) = json.get("messages") {
            let mut text = String::new();
            for m in messages {
                text.push_str(m.get("role").and_then(Value::as_str).unwrap_or(""));
                text.push('\n');
                content_text(m.get("content"), &mut text);
                text.push('\n');
            }
            return Prompt { model, text: Some(text), messages: Some(Value::Array(messages.clone())) };
        }
        let text = match json.get("prompt") {
            Some(Value::String(p)) => match json.get("system").and_then(Value::as_str) {
                Some(system) => Some(format!("{system}\n{p}")),
                None => Some(p.clone()),
            },
            Some(Value::Array(parts)) if parts.iter().all(Value::is_string) => {
                Some(parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
            }
            _ => None,
        };
        Prompt { model, text, messages: None }
    }
}

/// A message's text: a string, or the `text` of each part of an OpenAI content array.
fn content_text(content: Option<&Value>, out: &mut String) {
    match content {
        Some(Value::String(s)) => out.push_str(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                }
            }
        }
        _ => {}
    }
}

/// Body bytes kept for one JSON (non-streamed) response, to read its `usage` at the end.
const JSON_BODY_LIMIT: usize = 4 << 20;

/// Reads token counts and the first token out of response bytes as they pass, without holding
/// more than the current line (streams) or one JSON body (non-streamed responses).
#[derive(Debug)]
pub struct Observer {
    protocol: Protocol,
    /// A whole JSON body is kept (non-streamed response), else lines are read as they end.
    is_whole_body: bool,
    pending: Vec<u8>,
    /// Prompt tokens, from `usage.prompt_tokens` or `prompt_eval_count`.
    pub input_tokens: Option<u64>,
    /// Output tokens, from `usage.completion_tokens` or `eval_count`.
    pub output_tokens: Option<u64>,
    /// Whether a chunk carrying generated text has been seen.
    pub has_token: bool,
    /// Whether the stream's own end marker passed (`data: [DONE]`, or Ollama's `"done": true`):
    /// a client that leaves after it has the whole answer.
    pub is_complete: bool,
}

impl Observer {
    /// `content_type` of the response decides whether it is read line by line (SSE, NDJSON)
    /// or as one JSON body.
    pub fn new(protocol: Protocol, content_type: &str) -> Observer {
        let is_whole_body = content_type.contains("json") && !content_type.contains("ndjson");
        Observer {
            protocol,
            is_whole_body,
            pending: Vec::new(),
            input_tokens: None,
            output_tokens: None,
            has_token: false,
            is_complete: false,
        }
    }

    /// Look at the next chunk of body bytes. Returns whether this chunk carried the first token.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.is_whole_body {
            if self.pending.len() + chunk.len() <= JSON_BODY_LIMIT {
                self.pending.extend_from_slice(chunk);
            }
            return false;
        }
        let had_token = self.has_token;
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if self.pending.is_empty() {
                self.line(&rest[..nl]);
            } else {
                self.pending.extend_from_slice(&rest[..nl]);
                let line = std::mem::take(&mut self.pending);
                self.line(&line);
            }
            rest = &rest[nl + 1..];
        }
        self.pending.extend_from_slice(rest);
        !had_token && self.has_token
    }

    /// The body has ended: read what is left (the last line without a newline, or the JSON
    /// body).
    pub fn finish(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.line(&rest);
        }
    }

    /// One SSE line or NDJSON line (or a whole JSON body). Only lines that can matter are
    /// parsed: until the first token, and those naming a count.
    fn line(&mut self, line: &[u8]) {
        let line = line.strip_prefix(b"data:").unwrap_or(line).trim_ascii();
        if line == b"[DONE]" {
            self.is_complete = true;
        }
        if line.first() != Some(&b'{') {
            return;
        }
        let names_counts = contains(line, b"\"usage\"") || contains(line, b"eval_count\"");
        if self.has_token && !names_counts {
            return;
        }
        let Ok(json) = serde_json::from_slice::<Value>(line) else { return };
        if !self.has_token && carries_token(self.protocol, &json) {
            self.has_token = true;
        }
        let (input, output) = match self.protocol {
            Protocol::Openai => (&json["usage"]["prompt_tokens"], &json["usage"]["completion_tokens"]),
            Protocol::Ollama => (&json["prompt_eval_count"], &json["eval_count"]),
        };
        if let Some(n) = input.as_u64() {
            self.input_tokens = Some(n);
        }
        if let Some(n) = output.as_u64() {
            self.output_tokens = Some(n);
        }
        if self.protocol == Protocol::Ollama && json["done"] == Value::Bool(true) {
            self.is_complete = true;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether a streamed chunk carries generated text (content, reasoning or completion text).
fn carries_token(protocol: Protocol, json: &Value) -> bool {
    let non_empty = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
    match protocol {
        Protocol::Openai => {
            let choice = &json["choices"][0];
            non_empty(&choice["delta"]["content"])
                || non_empty(&choice["delta"]["reasoning_content"])
                || non_empty(&choice["text"])
                || non_empty(&choice["message"]["content"])
        }
        Protocol::Ollama => {
            non_empty(&json["message"]["content"])
                || non_empty(&json["message"]["thinking"])
                || non_empty(&json["response"])
        }
    }
}

/// One line of the capture file; see the module docs of `capture` for every field.
#[derive(Debug, Serialize)]
pub struct Record {
    pub timestamp: u64,
    pub input_length: Option<u64>,
    pub output_length: Option<u64>,
    pub hash_ids: Vec<u64>,
    pub protocol: Protocol,
    pub endpoint: String,
    pub model: Option<String>,
    pub status: u16,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_input: Option<String>,
}

/// What is known of a request when it arrives.
#[derive(Debug)]
pub struct Arrival {
    /// Milliseconds since the capture started.
    pub timestamp_ms: u64,
    pub protocol: Protocol,
    pub endpoint: String,
    /// The request body as sent; read only when the line is written, off the request's path.
    pub body: hyper::body::Bytes,
}

impl Arrival {
    /// The line for this request once its response has ended (or broken off).
    pub fn into_record(
        self,
        key: &Key,
        keep_text: bool,
        observer: Option<&Observer>,
        status: u16,
        ttft_ms: Option<f64>,
        e2e_ms: f64,
    ) -> Record {
        let prompt = Prompt::parse(&self.body);
        let hash_ids = prompt.text.as_deref().map(|t| key.block_ids(t)).unwrap_or_default();
        let (messages, text_input) = match (keep_text, prompt.messages) {
            (false, _) => (None, None),
            (true, Some(m)) => (Some(m), None),
            (true, None) => (None, prompt.text),
        };
        Record {
            timestamp: self.timestamp_ms,
            input_length: observer.and_then(|o| o.input_tokens),
            output_length: observer.and_then(|o| o.output_tokens),
            hash_ids,
            protocol: self.protocol,
            endpoint: self.endpoint,
            model: prompt.model,
            status,
            ttft_ms: ttft_ms.map(round_us),
            e2e_ms: round_us(e2e_ms),
            messages,
            text_input,
        }
    }
}

/// Milliseconds to three decimals (microseconds): the proxy's own clock is no finer.
fn round_us(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_recognised() {
        assert_eq!(endpoint("/v1/chat/completions"), Some(Protocol::Openai));
        assert_eq!(endpoint("/v1/completions/"), Some(Protocol::Openai));
        assert_eq!(endpoint("/api/generate"), Some(Protocol::Ollama));
        assert_eq!(endpoint("/v1/models"), None);
        assert_eq!(endpoint("/health"), None);
    }

    #[test]
    fn prompts_read_chat_completion_and_generate_bodies() {
        let p = Prompt::parse(
            br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
        );
        assert_eq!(p.model.as_deref(), Some("m"));
        assert_eq!(p.text.as_deref(), Some("system\nbe brief\nuser\nhi\n"));
        assert!(p.messages.is_some());
        let p = Prompt::parse(br#"{"model":"m","prompt":["a","b"]}"#);
        assert_eq!(p.text.as_deref(), Some("a\nb"));
        let p = Prompt::parse(br#"{"model":"m","system":"s","prompt":"p"}"#);
        assert_eq!(p.text.as_deref(), Some("s\np"));
        let p = Prompt::parse(b"{not json");
        assert!(p.model.is_none() && p.text.is_none());
    }

    #[test]
    fn observer_reads_sse_usage_split_across_chunks() {
        let mut o = Observer::new(Protocol::Openai, "text/event-stream");
        assert!(!o.feed(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"));
        assert!(!o.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"He"));
        assert!(!o.has_token, "not before the line ends");
        assert!(o.feed(b"llo\"}}]}\n\n"));
        assert!(o.has_token);
        o.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n");
        assert!(!o.is_complete);
        o.feed(b"data: [DONE]\n\n");
        assert!(o.is_complete);
        assert_eq!((o.input_tokens, o.output_tokens), (Some(12), Some(3)));
    }

    #[test]
    fn observer_reads_ndjson_and_whole_json_bodies() {
        let mut o = Observer::new(Protocol::Ollama, "application/x-ndjson");
        o.feed(b"{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"done\":true,\"prompt_eval_count\":7,");
        o.feed(b"\"eval_count\":2}");
        o.finish();
        assert_eq!((o.input_tokens, o.output_tokens, o.has_token, o.is_complete), (Some(7), Some(2), true, true));
        let mut o = Observer::new(Protocol::Openai, "application/json");
        o.feed(b"{\"choices\":[{\"message\":{\"content\":\"x\"}}],\n \"usage\": {\"prompt_tokens\": 5,");
        o.feed(b" \"completion_tokens\": 1}}");
        o.finish();
        assert_eq!((o.input_tokens, o.output_tokens), (Some(5), Some(1)));
    }
}
