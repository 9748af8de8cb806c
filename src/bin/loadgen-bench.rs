//! Load-generator overhead benchmark, the Rust half (driven by `scripts/bench-client`).
//!
//! `loadgen-bench mock [--interval-ms 10] [--chunks 100]`: a mock OpenAI SSE server on
//! 127.0.0.1 (port printed on stdout) that answers every POST with `chunks` chat-completion
//! chunks, one every `interval-ms`, each carrying its send time (unix ns) as content, then a
//! `usage` + `timings` chunk and `[DONE]`, as llama.cpp does with `include_usage`.
//! `GET /stats` answers the content chunks written so far; `GET /sendlog` hands over (and
//! forgets) the send times of every chunk of requests whose prompt starts with `lag `.
//!
//! `loadgen-bench client --url URL --streams N --seconds S`: infertune's shipped request path,
//! `workload::run` (closed loop, N clients) over `workload::http_client()` with
//! `Target { protocol: OpenAi, .. }`, on a multi-thread tokio runtime as `main.rs` builds it:
//! SSE parsing, chunk gaps, usage/timings and the request timeout all included. Prints one JSON
//! line: events (content chunks the client parsed), lag p50/p99, CPU µs per event, events/s.
//!
//! Lag comes from what the shipped `Sample` records (first-token time and chunk gaps, relative
//! to the run's origin) against the mock's send log: receive time = a wall-clock stamp taken
//! just before `workload::run` + the sample's offsets. `workload::run` takes its origin after
//! shuffling the prompt order, so that stamp precedes the true origin by the shuffle's time
//! (`align_us` in the output, timed here on the same input); lag is understated by at most that.
//!
//! Raw TCP for the mock keeps the dependency tree as it is (no HTTP server crate).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use infertune::space::WorkloadSpec;
use infertune::workload::{self, Prompt, Protocol, Target};

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as u64
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills a plain struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Load-generator overhead benchmark, the Rust half (driven by `scripts/bench-client`).
#[derive(clap::Parser)]
#[command(name = "loadgen-bench")]
enum Cli {
    /// Serve a mock OpenAI SSE endpoint on 127.0.0.1 (prints `port N` on stdout): every POST gets
    /// `chunks` chat-completion chunks, one every `interval-ms`, each carrying its send time.
    Mock {
        /// Milliseconds between chunks of one stream.
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
        /// Chunks per response.
        #[arg(long, default_value_t = 100)]
        chunks: u32,
    },
    /// Run infertune's own request path (`workload::run`) against URL for about `seconds`;
    /// prints one JSON line (events, lag p50/p99, CPU µs per event, events per second).
    Client {
        /// Base URL of the server (`http://127.0.0.1:PORT`).
        #[arg(long)]
        url: String,
        /// Concurrent streams (closed-loop clients).
        #[arg(long, default_value_t = 16)]
        streams: u32,
        /// How long to run, in seconds: streams × seconds ÷ response time requests are sent.
        #[arg(long, default_value_t = 8.0)]
        seconds: f64,
        /// How long one response of the mock takes (chunks × interval), in milliseconds.
        #[arg(long, default_value_t = 1000)]
        response_ms: u64,
    },
}

fn main() {
    let cli = <Cli as clap::Parser>::parse();
    match cli {
        Cli::Mock { interval_ms, chunks } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(mock(interval_ms, chunks)),
        // As main.rs builds it: the runtime `tune` and `bench` measure on.
        Cli::Client { url, streams, seconds, response_ms } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(client(url, streams, seconds, response_ms)),
    }
}

/// Send times (unix ns) of every content chunk, by the request's prompt (only `lag …` prompts).
type SendLog = Arc<Mutex<HashMap<String, Vec<u64>>>>;

async fn mock(interval_ms: u64, chunks: u32) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    println!("port {}", listener.local_addr().expect("bound").port());
    // Content chunks written so far, answered on `GET /stats`: the event count for clients that
    // cannot report their own (AIPerf), and a cross-check for ours.
    let sent = Arc::new(AtomicU64::new(0));
    let log: SendLog = Arc::default();
    loop {
        let Ok((sock, _)) = listener.accept().await else { continue };
        sock.set_nodelay(true).ok();
        let (sent, log) = (sent.clone(), log.clone());
        tokio::spawn(serve(sock, sent, log, interval_ms, chunks));
    }
}

/// One connection: `GET /stats`, `GET /sendlog`, or a chat request answered with `chunks`
/// timestamped content chunks every `interval_ms`, then usage and timings as llama.cpp ends.
async fn serve(mut sock: tokio::net::TcpStream, sent: Arc<AtomicU64>, log: SendLog, interval_ms: u64, chunks: u32) {
    let Some(body) = read_request(&mut sock, &sent, &log).await else { return };
    // The last message's text names the request in the send log (`lag …` prompts only).
    let key = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|b| b["messages"].as_array()?.last()?["content"].as_str().map(str::to_string))
        .filter(|k| k.starts_with("lag "));
    let mut sends = Vec::with_capacity(if key.is_some() { chunks as usize } else { 0 });
    let header =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
    if sock.write_all(header.as_bytes()).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    for i in 0..chunks {
        tick.tick().await;
        let at = now_ns();
        let line = format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{at}\"}}}}],\"seq\":{i}}}\n\n"
        );
        if sock.write_all(line.as_bytes()).await.is_err() {
            break;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        if key.is_some() {
            sends.push(at);
        }
    }
    if let Some(key) = key {
        log.lock().expect("no panics while holding").insert(key, sends);
    }
    let tail = format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{{\"prompt_tokens\":8,\"completion_tokens\":{chunks},\"total_tokens\":{}}},\"timings\":{{\"prompt_n\":8,\"prompt_ms\":1.0,\"predicted_n\":{chunks},\"predicted_ms\":{},\"cache_n\":0}}}}\n\ndata: [DONE]\n\n",
        chunks + 8,
        chunks as u64 * interval_ms
    );
    let _ = sock.write_all(tail.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// Read one request; answer the two `GET`s here (`None`), else return the chat request's body.
async fn read_request(sock: &mut tokio::net::TcpStream, sent: &AtomicU64, log: &SendLog) -> Option<Vec<u8>> {
    // Read headers and the body (Content-Length), then stream.
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let body_start = loop {
        let Ok(n) = sock.read(&mut tmp).await else { return None };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
    let reply_json = |body: String| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if head.starts_with("get /stats") {
        let body = format!("{{\"events\":{}}}", sent.load(Ordering::Relaxed));
        let _ = sock.write_all(reply_json(body).as_bytes()).await;
        return None;
    }
    if head.starts_with("get /sendlog") {
        let taken = std::mem::take(&mut *log.lock().expect("no panics while holding"));
        let body = serde_json::to_string(&taken).expect("a map of numbers");
        let _ = sock.write_all(reply_json(body).as_bytes()).await;
        return None;
    }
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < body_start + len {
        let Ok(n) = sock.read(&mut tmp).await else { return None };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    Some(buf[body_start..body_start + len].to_vec())
}

async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url).send().await.expect("the mock answers").json().await.expect("the mock answers JSON")
}

async fn client(url: String, streams: u32, seconds: f64, response_ms: u64) {
    let http = workload::http_client().expect("the HTTP client");
    let target = Target {
        protocol: Protocol::OpenAi,
        base_url: url.clone(),
        model: "mock".into(),
        options: serde_json::Map::new(),
    };
    // Closed loop: each client sends its next request when the last one ended, so about
    // streams × seconds ÷ response time requests fill the time asked for.
    let requests = ((streams as f64 * seconds * 1000.0 / response_ms.max(1) as f64).ceil() as u32).max(streams);
    let prompts: Vec<Prompt> = (0..requests)
        .map(|k| Prompt { id: None, system: None, prompt: format!("lag {k}"), answer: None, accept: Vec::new() })
        .collect();
    let spec = WorkloadSpec {
        dataset: std::path::PathBuf::from("(in memory)"),
        concurrency: streams,
        requests,
        warmup: 0,
        max_tokens: 128,
        seed: 1,
        request_timeout: Duration::from_secs(120),
        prompt_cache: false,
        draw: 0,
        trace: None,
    };
    // How long `workload::run` spends before taking its origin (the prompt-order shuffle).
    let shuffled = Instant::now();
    std::hint::black_box(workload::schedule(prompts.len(), 0, requests as usize, spec.seed, 0));
    let align = shuffled.elapsed();
    let events_before = get_json(&http, &format!("{url}/stats")).await["events"].as_u64().unwrap_or(0);
    let cpu0 = cpu_time();
    let wall0 = now_ns();
    let t0 = Instant::now();
    let run = workload::run(&http, &target, &prompts, &spec).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu0).as_secs_f64();
    let events_mock = get_json(&http, &format!("{url}/stats")).await["events"].as_u64().unwrap_or(0) - events_before;
    let sendlog: HashMap<String, Vec<u64>> =
        serde_json::from_value(get_json(&http, &format!("{url}/sendlog")).await).expect("the send log");
    // Events as every client counts them: content chunks parsed.
    let mut events = 0u64;
    let mut lag = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let failed = run.samples.iter().filter(|s| !s.is_ok()).count();
    for s in &run.samples {
        let Some(first) = s.first_token else { continue };
        events += 1 + s.chunk_gaps.len() as u64;
        let sends = sendlog.get(&prompts[s.prompt_index].prompt);
        let mut at = first;
        for (i, gap) in std::iter::once(Duration::ZERO).chain(s.chunk_gaps.iter().copied()).enumerate() {
            at += gap;
            if let Some(&sent) = sends.and_then(|v| v.get(i)) {
                let recv = wall0 + at.as_nanos() as u64;
                lag.saturating_record((recv.saturating_sub(sent) / 1000).max(1));
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "client": "infertune workload::run (rust)",
            "streams": streams,
            "events": events,
            "events_mock": events_mock,
            "failed_requests": failed,
            "seconds": wall,
            "events_per_s": events as f64 / wall,
            "cpu_us_per_event": cpu * 1e6 / events.max(1) as f64,
            "lag_p50_ms": lag.value_at_quantile(0.5) as f64 / 1000.0,
            "lag_p99_ms": lag.value_at_quantile(0.99) as f64 / 1000.0,
            "align_us": align.as_secs_f64() * 1e6,
        })
    );
}
