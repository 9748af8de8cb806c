//! Load-generator overhead benchmark, the Rust half (driven by `scripts/bench-client`).
//!
//! `loadgen-bench mock [--interval-ms 10] [--chunks 100]`: a mock OpenAI SSE server on
//! 127.0.0.1 (port printed on stdout) that answers every POST with `chunks` chat-completion
//! chunks, one every `interval-ms`, each carrying its send time (unix ns) as content.
//!
//! `loadgen-bench client --url URL --streams N --seconds S`: infertune's client stack (reqwest
//! `bytes_stream` + eventsource-stream + serde_json, as in `workload::openai`) on a
//! current-thread runtime, N closed-loop streams for S seconds; prints one JSON line: events,
//! lag (receive − send) p50/p99 from an HDR histogram, CPU µs per event, events per second.
//!
//! Raw TCP for the mock keeps the dependency tree as it is (no HTTP server crate).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos()
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
    /// Run infertune's client stack against URL: closed-loop streams for a fixed time; prints one
    /// JSON line (events, lag p50/p99, CPU µs per event, events per second).
    Client {
        /// Base URL of the server (`http://127.0.0.1:PORT`).
        #[arg(long)]
        url: String,
        /// Concurrent streams.
        #[arg(long, default_value_t = 16)]
        streams: u32,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 8.0)]
        seconds: f64,
    },
}

fn main() {
    let cli = <Cli as clap::Parser>::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    match cli {
        Cli::Mock { interval_ms, chunks } => rt.block_on(mock(interval_ms, chunks)),
        Cli::Client { url, streams, seconds } => rt.block_on(client(url, streams, seconds)),
    }
}

async fn mock(interval_ms: u64, chunks: u32) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    println!("port {}", listener.local_addr().expect("bound").port());
    // Chunks written so far, answered on `GET /stats`: the event count for clients that cannot
    // report their own (AIPerf).
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        sock.set_nodelay(true).ok();
        let sent = sent.clone();
        tokio::spawn(async move {
            // Read headers and the body (Content-Length), then stream.
            let mut buf = Vec::new();
            let mut tmp = [0u8; 4096];
            let body_start = loop {
                let Ok(n) = sock.read(&mut tmp).await else { return };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&tmp[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
            if head.starts_with("get /stats") {
                let body = format!("{{\"events\":{}}}", sent.load(std::sync::atomic::Ordering::Relaxed));
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                return;
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < body_start + len {
                let Ok(n) = sock.read(&mut tmp).await else { return };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let header = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
            if sock.write_all(header.as_bytes()).await.is_err() {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
            for i in 0..chunks {
                tick.tick().await;
                let line = format!(
                    "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}],\"seq\":{i}}}\n\n",
                    now_ns()
                );
                if sock.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = sock.write_all(b"data: [DONE]\n\n").await;
            let _ = sock.shutdown().await;
        });
    }
}

#[derive(serde::Deserialize)]
struct Chunk {
    choices: Vec<Choice>,
}
#[derive(serde::Deserialize)]
struct Choice {
    delta: Delta,
}
#[derive(serde::Deserialize)]
struct Delta {
    content: Option<String>,
}

async fn client(url: String, streams: u32, seconds: f64) {
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().expect("client");
    let body = serde_json::json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let deadline =
        Instant::now() + Duration::try_from_secs_f64(seconds).expect("--seconds is a finite, non-negative number");
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let workers = (0..streams).map(|_| {
        let (http, body, url) = (http.clone(), body.clone(), url.clone());
        async move {
            let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
            let mut events = 0u64;
            'outer: while Instant::now() < deadline {
                let Ok(resp) = http.post(format!("{url}/v1/chat/completions")).json(&body).send().await else { break };
                let mut stream = resp.bytes_stream().eventsource();
                while let Some(Ok(ev)) = stream.next().await {
                    let recv = now_ns();
                    if ev.data == "[DONE]" {
                        break;
                    }
                    let Ok(chunk) = serde_json::from_str::<Chunk>(&ev.data) else { continue };
                    if let Some(sent) = chunk
                        .choices
                        .first()
                        .and_then(|c| c.delta.content.as_deref())
                        .and_then(|s| s.parse::<u128>().ok())
                    {
                        h.saturating_record((recv.saturating_sub(sent) / 1000).max(1) as u64);
                        events += 1;
                    }
                    if Instant::now() >= deadline {
                        break 'outer;
                    }
                }
            }
            (h, events)
        }
    });
    let results = futures_util::future::join_all(workers).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu0).as_secs_f64();
    let mut all = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let mut events = 0;
    for (h, e) in results {
        all.add(&h).expect("same bounds");
        events += e;
    }
    println!(
        "{}",
        serde_json::json!({
            "client": "infertune (rust)",
            "streams": streams,
            "events": events,
            "seconds": wall,
            "events_per_s": events as f64 / wall,
            "cpu_us_per_event": cpu * 1e6 / events.max(1) as f64,
            "lag_p50_ms": all.value_at_quantile(0.5) as f64 / 1000.0,
            "lag_p99_ms": all.value_at_quantile(0.99) as f64 / 1000.0,
        })
    );
}
