//! `infertune capture`: a transparent streaming reverse proxy that writes a trace of the traffic
//! it passes, for tuning against real requests (issue 17).
//!
//! Every request goes to the upstream with its method, path, query, headers and body; the
//! response's status, headers and body come back unchanged, frame by frame as they arrive
//! (nothing is buffered, so SSE and NDJSON streams keep their timing). Only hop-by-hop headers
//! (`Connection`, `Keep-Alive`, `Transfer-Encoding`, `TE`, `Trailer`, `Upgrade`, `Proxy-*`) are
//! not forwarded, as RFC 9110 §7.6.1 asks of a proxy, and `Host` names the upstream. HTTP/1.1
//! to an `http://` upstream only.
//!
//! Requests to `/v1/chat/completions`, `/v1/completions`, `/api/chat` and `/api/generate` are
//! recorded; others are only forwarded. What this module owns: the proxy ([`Proxy`]), the
//! trace format (here), the key and block ids (`hash`), the files (`writer`). It does not read
//! traces back: that is `workload::trace`.
//!
//! # The capture format (a superset of Mooncake JSONL)
//!
//! One JSON object per line, written (one `write` call, no user-space buffer) as each request
//! completes, so a killed proxy loses at most the requests in flight. Lines are in completion
//! order, not arrival order: sort by `timestamp` to replay.
//!
//! | field | meaning |
//! |---|---|
//! | `timestamp` | integer ms from the start of the capture to the request's arrival |
//! | `input_length` | prompt tokens: `usage.prompt_tokens` (OpenAI bodies and streams), `prompt_eval_count` (Ollama); `null` when the response did not say (an OpenAI stream without `stream_options.include_usage` on a server that omits it, an error, a disconnect) |
//! | `output_length` | generated tokens: `usage.completion_tokens` or `eval_count`; `null` likewise |
//! | `hash_ids` | prefix block ids (below); `[]` when the body is not the JSON the endpoint takes |
//! | `protocol` | `openai` or `ollama`, from the path |
//! | `endpoint` | the path: `/v1/chat/completions`, `/v1/completions`, `/api/chat` or `/api/generate` |
//! | `model` | the request's `model`, or `null` |
//! | `status` | the upstream's HTTP status; `499` when the client went away before the response ended (a client that leaves after the stream's end marker, `data: [DONE]` or `"done": true`, had it all: upstream status); `502` when the upstream was unreachable or its response broke off |
//! | `ttft_ms` | ms from arrival to the first response chunk carrying generated text (non-streamed: `null` unless the body carried text, then the body's end); `null` when none came |
//! | `e2e_ms` | ms from arrival to the end of the response (or the disconnect) |
//! | `messages` | only with `--keep-text`, chat requests: the `messages` array as sent |
//! | `text_input` | only with `--keep-text`, completion and generate requests: the prompt text |
//!
//! **Block ids.** The prompt text is cut into blocks of 2048 characters (Unicode scalar values;
//! the last block may be shorter), and each block's id is the first 52 bits (big-endian) of
//! HMAC-SHA256(key, all text up to and including that block). Equal leading ids mean equal
//! leading text, and the ids reveal no content to anyone without the key. The prompt text is:
//! for chat requests, each message's role, a newline, its text (a string, or the `text` of each
//! content part) and a newline, in order; for `/v1/completions`, `prompt` (an array of strings
//! joined by newlines); for `/api/generate`, `system` and a newline when present, then `prompt`.
//!
//! **Key.** `--key-file` (default `capture.key` beside the output) holds the key as hex; it is
//! created with 32 random bytes, mode 0600, when missing. Keep it to compare captures.
//!
//! **Files.** Mode 0600. With `--rotate-mb N` the output moves on past N MiB: `trace.jsonl`,
//! then `trace.1.jsonl`, `trace.2.jsonl`, ... (no file is renamed); timestamps run on across
//! files, so reading them in that order gives the whole capture.

mod hash;
mod record;
mod writer;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::shutdown::Shutdown;
pub use hash::{BLOCK_CHARS, Key};
pub use record::{Protocol, Record};
pub use writer::{TraceWriter, rotated_path};

use record::{Arrival, Observer};

/// How long an idle upstream connection is kept for the next request.
const UPSTREAM_IDLE: Duration = Duration::from_secs(2);

/// What `capture` was asked to do.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Base URL of the upstream server (`http://host:port`, optionally with a path prefix).
    pub upstream: String,
    /// The trace file (rotations are numbered beside it).
    pub output: PathBuf,
    /// Keep prompt text (`messages` / `text_input`) in the trace.
    pub keep_text: bool,
    /// The HMAC key file; `None`: `capture.key` beside the output.
    pub key_file: Option<PathBuf>,
    /// Move to the next file past this many bytes; `None`: one file.
    pub rotate_bytes: Option<u64>,
}

impl CaptureOptions {
    /// The key file these options use.
    pub fn key_path(&self) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| self.output.with_file_name("capture.key"))
    }
}

/// A bound proxy, not yet serving.
#[derive(Debug)]
pub struct Proxy {
    listener: TcpListener,
    state: Arc<State>,
    /// Whether the key file was created by this start.
    pub is_key_created: bool,
}

/// What a finished capture wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Lines written over all files.
    pub lines: u64,
    /// Lines lost to write errors (each logged).
    pub write_errors: u64,
}

#[derive(Debug)]
struct State {
    /// `scheme://authority[/prefix]`, without a trailing slash.
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    key: Key,
    keep_text: bool,
    start: Instant,
    writer: Mutex<TraceWriter>,
    write_errors: AtomicU64,
}

impl Proxy {
    /// Check the upstream URL, load or create the key, create the trace file and bind.
    pub async fn bind(opts: &CaptureOptions) -> anyhow::Result<Proxy> {
        let upstream = upstream_base(&opts.upstream)?;
        let (key, is_key_created) = Key::load_or_create(&opts.key_path())?;
        let writer = TraceWriter::create(&opts.output, opts.rotate_bytes)?;
        let listener =
            TcpListener::bind(opts.listen).await.with_context(|| format!("listening on '{}'", opts.listen))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        // Upstream servers close idle kept-alive connections on their own clock (5 s in
        // llama.cpp's cpp-httplib and in uvicorn under vLLM); a request sent on one just as it
        // closes would fail with a 502 the upstream never saw. Drop ours well before.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_IDLE)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        let state = State {
            upstream,
            client,
            key,
            keep_text: opts.keep_text,
            start: Instant::now(),
            writer: Mutex::new(writer),
            write_errors: AtomicU64::new(0),
        };
        Ok(Proxy { listener, state: Arc::new(state), is_key_created })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serve until `shutdown.graceful`; then stop accepting, let requests in flight finish
    /// (their lines are written) unless `shutdown.now` comes first.
    pub async fn serve(self, shutdown: Shutdown) -> Summary {
        let tracker = TaskTracker::new();
        loop {
            let (sock, _peer) = tokio::select! {
                biased;
                _ = shutdown.graceful.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, and keep serving.
                        tracing::warn!(error = %e, "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            sock.set_nodelay(true).ok();
            tracker.spawn(serve_connection(sock, self.state.clone(), shutdown.clone()));
        }
        drop(self.listener);
        tracker.close();
        if !tracker.is_empty() {
            tracing::info!(
                connections = tracker.len(),
                "waiting for the requests in flight (signal again to stop now)"
            );
        }
        tokio::select! {
            _ = tracker.wait() => {},
            _ = shutdown.now.cancelled() => {},
        }
        Summary {
            lines: self.state.writer.lock().expect("no panics while writing").lines(),
            write_errors: self.state.write_errors.load(Ordering::Relaxed),
        }
    }
}

/// One client connection: HTTP/1.1 with keep-alive, closed gracefully on shutdown.
async fn serve_connection(sock: tokio::net::TcpStream, state: Arc<State>, shutdown: Shutdown) {
    let service = hyper::service::service_fn(move |req| forward(state.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(sock), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        res = conn.as_mut() => res,
        _ = shutdown.graceful.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                res = conn.as_mut() => res,
                _ = shutdown.now.cancelled() => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended");
    }
}

/// `http://host:port[/prefix]` checked and without a trailing slash.
fn upstream_base(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url.parse().with_context(|| format!("'{url}' is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("upstream '{url}': only http:// is supported, not '{other}://'"),
        None => bail!("upstream '{url}' has no scheme (e.g. http://127.0.0.1:8080)"),
    }
    if uri.authority().is_none() {
        bail!("upstream '{url}' has no host")
    }
    if uri.query().is_some() {
        bail!("upstream '{url}' has a query; give the base URL only")
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), plus those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// One request: read its body, send it upstream, and relay the answer as it comes.
async fn forward(state: Arc<State>, req: Request<Incoming>) -> Result<Response<RelayBody>, Infallible> {
    let arrived = Instant::now();
    let (mut parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        // The client went away or sent a broken body: nothing went upstream, nothing to record.
        Err(e) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                "client_body",
                &format!("reading the request body: {e}"),
            ));
        }
    };
    let mut recording = record::endpoint(parts.uri.path()).map(|protocol| Recording {
        state: state.clone(),
        arrived,
        arrival: Some(Arrival {
            timestamp_ms: arrived.duration_since(state.start).as_millis() as u64,
            protocol,
            endpoint: parts.uri.path().to_string(),
            body: body.clone(),
        }),
        observer: None,
        status: 0,
        ttft: None,
    });
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    parts.uri = match format!("{}{path}", state.upstream).parse() {
        Ok(uri) => uri,
        Err(e) => return Ok(error_response(StatusCode::BAD_REQUEST, "bad_path", &format!("'{path}': {e}"))),
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    // The body is already read (hyper answered any `100-continue`), so there is nothing to wait for.
    parts.headers.remove(header::EXPECT);
    parts.version = hyper::Version::HTTP_11;
    let response = match state.client.request(Request::from_parts(parts, Full::new(body))).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(upstream = %state.upstream, error = %error_chain(&e), "upstream unreachable");
            if let Some(mut r) = recording.take() {
                r.finish(502);
            }
            let message = format!("infertune capture: upstream '{}' unreachable: {}", state.upstream, error_chain(&e));
            return Ok(error_response(StatusCode::BAD_GATEWAY, "upstream_unreachable", &message));
        }
    };
    let (mut parts, upstream_body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(r) = recording.as_mut() {
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let protocol = r.arrival.as_ref().expect("taken only at finish").protocol;
        r.observer = Some(Observer::new(protocol, content_type));
        r.status = parts.status.as_u16();
    }
    Ok(Response::from_parts(parts, RelayBody::Relay { upstream: upstream_body, recording }))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// An error the proxy itself answers, in the OpenAI error shape.
fn error_response(status: StatusCode, kind: &str, message: &str) -> Response<RelayBody> {
    let body = serde_json::json!({ "error": { "message": message, "type": kind, "code": status.as_u16() } });
    let mut response = Response::new(RelayBody::Full(Some(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A recorded request in flight: written once, when its response ends, breaks off, or is
/// dropped (the client went away: `status` is still 499 then).
#[derive(Debug)]
struct Recording {
    state: Arc<State>,
    arrived: Instant,
    /// `None` once written.
    arrival: Option<Arrival>,
    /// Set when the response headers arrive.
    observer: Option<Observer>,
    /// The upstream's status, once its headers arrive.
    status: u16,
    ttft: Option<Duration>,
}

impl Recording {
    fn observe(&mut self, chunk: &[u8]) {
        if let Some(o) = self.observer.as_mut()
            && o.feed(chunk)
        {
            self.ttft = Some(self.arrived.elapsed());
        }
    }

    fn finish(&mut self, status: u16) {
        let Some(arrival) = self.arrival.take() else { return };
        let e2e = self.arrived.elapsed();
        if let Some(o) = self.observer.as_mut() {
            o.finish();
            // A non-streamed body is read at its end: its text came then.
            if self.ttft.is_none() && o.has_token {
                self.ttft = Some(e2e);
            }
        }
        let state = &self.state;
        let ttft_ms = self.ttft.map(|d| d.as_secs_f64() * 1e3);
        let record = arrival.into_record(
            &state.key,
            state.keep_text,
            self.observer.as_ref(),
            status,
            ttft_ms,
            e2e.as_secs_f64() * 1e3,
        );
        tracing::trace!(status, e2e_ms = record.e2e_ms, "request recorded");
        let line = serde_json::to_vec(&record).expect("a record serializes");
        let written = state.writer.lock().expect("no panics while writing").append(&line);
        if let Err(e) = written {
            state.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %format!("{e:#}"), "a trace line was lost");
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        // Not finished by the body's end: the client went away (or the proxy was stopped now).
        // Clients often close as soon as they read the stream's end marker, before the
        // transfer's own end: that answer was whole, so it keeps the upstream's status.
        let is_complete = self.observer.as_ref().is_some_and(|o| o.is_complete);
        self.finish(if is_complete { self.status } else { 499 });
    }
}

/// The response body: the upstream's frames passed on as they arrive (observed on the way), or
/// the proxy's own error body.
#[derive(Debug)]
enum RelayBody {
    /// An answer of the proxy's own.
    Full(Option<Bytes>),
    /// The upstream's body.
    Relay { upstream: Incoming, recording: Option<Recording> },
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RelayBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RelayBody::Relay { upstream, recording } => match Pin::new(upstream).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(data), Some(r)) = (frame.data_ref(), recording.as_mut()) {
                        r.observe(data);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    if let Some(mut r) = recording.take() {
                        r.finish(502);
                    }
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Ready(None) => {
                    if let Some(mut r) = recording.take() {
                        let status = r.status;
                        r.finish(status);
                    }
                    Poll::Ready(None)
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RelayBody::Full(bytes) => bytes.is_none(),
            // A recorded body is polled to its end, so the line is written then.
            RelayBody::Relay { upstream, recording } => recording.is_none() && upstream.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RelayBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            RelayBody::Full(None) => SizeHint::with_exact(0),
            RelayBody::Relay { upstream, .. } => upstream.size_hint(),
        }
    }
}

/// Where the default key goes and what `capture` prints at start; shared with the CLI.
pub fn describe_start(opts: &CaptureOptions, addr: SocketAddr, is_key_created: bool) -> Vec<String> {
    let mut lines = vec![format!(
        "capture: listening on {addr}, forwarding to '{}', writing '{}'",
        opts.upstream,
        opts.output.display()
    )];
    let key = opts.key_path();
    lines.push(format!(
        "capture: block ids keyed by '{}'{}",
        key.display(),
        if is_key_created { " (created)" } else { "" }
    ));
    if !addr.ip().is_loopback() {
        lines.push(format!(
            "capture: NOT loopback: anyone who can reach {addr} can use the upstream through this proxy"
        ));
    }
    if opts.keep_text {
        lines.push("capture: --keep-text: prompts are written to the trace".to_string());
    }
    lines
}

/// Whether `path`'s directory exists (for a clear error before binding).
pub fn check_output_dir(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("the output directory '{}' does not exist", dir.display())
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(listen: &str) -> CaptureOptions {
        CaptureOptions {
            listen: listen.parse().unwrap(),
            upstream: "http://127.0.0.1:8080".into(),
            output: PathBuf::from("/t/trace.jsonl"),
            keep_text: false,
            key_file: None,
            rotate_bytes: None,
        }
    }

    #[test]
    fn a_listen_address_beyond_loopback_is_announced() {
        let o = opts("127.0.0.1:8081");
        let quiet = describe_start(&o, o.listen, false).join("\n");
        assert!(!quiet.contains("NOT loopback") && quiet.contains("'/t/capture.key'"), "{quiet}");
        let o = opts("0.0.0.0:8081");
        assert!(describe_start(&o, o.listen, true).join("\n").contains("NOT loopback"));
    }

    #[test]
    fn upstreams_are_checked() {
        assert_eq!(upstream_base("http://h:1/").unwrap(), "http://h:1");
        for (bad, says) in [("https://h", "only http://"), ("h:1", "no scheme"), ("http://h/?a=1", "query")] {
            let err = upstream_base(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        for (k, v) in
            [("connection", "close, x-hop"), ("x-hop", "1"), ("transfer-encoding", "chunked"), ("x-keep", "1")]
        {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }
}
