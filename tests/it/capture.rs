//! Issue 17, `infertune capture`: the proxy against an in-test upstream (bytes through
//! unchanged, the recorded line, keyed prefix ids, private files, rotation, an unreachable
//! upstream, a client that leaves mid-stream), and a `bench` run captured on the real engine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infertune::capture::{CaptureOptions, Proxy};
use infertune::shutdown::Shutdown;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{Engine, EngineLock, repo, require_engine, run_cli};

const SSE: &[&str] = &[
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":2,\"total_tokens\":23}}\n\n",
    "data: [DONE]\n\n",
];

const NDJSON: &[&str] = &[
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n",
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"!\"},\"done\":false}\n",
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"prompt_eval_count\":17,\"eval_count\":2}\n",
];

/// What the mock upstream saw: each request's head (lowercased) and body, and how many of its
/// slow streams ended because the reader went away.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, Vec<u8>)>,
    abandoned: usize,
}

/// An upstream on 127.0.0.1:0 (or a given listener): SSE on `/v1/chat/completions`, NDJSON on
/// `/api/chat`, an endless slow SSE stream on `/v1/completions`, `{"data":[]}` elsewhere. Each
/// streamed chunk is a separate write 5 ms apart; every response is close-delimited.
struct Upstream {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

impl Upstream {
    async fn start() -> Upstream {
        Upstream::on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn on(listener: TcpListener) -> Upstream {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(sock, s.clone()));
            }
        });
        Upstream { url, seen }
    }
}

async fn serve(mut sock: TcpStream, seen: Arc<Mutex<Seen>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        let n = sock.read(&mut tmp).await.unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse().unwrap()).unwrap_or(0);
    while buf.len() < head_end + length {
        let n = sock.read(&mut tmp).await.unwrap();
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    let path = head.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap().to_string();
    seen.lock().unwrap().requests.push((head, body));
    let (content_type, chunks, endless): (&str, &[&str], bool) = match path.as_str() {
        "/v1/chat/completions" => ("text/event-stream", SSE, false),
        "/api/chat" => ("application/x-ndjson", NDJSON, false),
        "/v1/completions" => ("text/event-stream", &SSE[1..2], true),
        _ => ("application/json", &["{\"data\":[]}"][..], false),
    };
    let header = format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nx-mock: yes\r\nconnection: close\r\n\r\n");
    sock.write_all(header.as_bytes()).await.unwrap();
    loop {
        for chunk in chunks {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if sock.write_all(chunk.as_bytes()).await.is_err() {
                seen.lock().unwrap().abandoned += 1;
                return;
            }
        }
        if !endless {
            break;
        }
    }
    let _ = sock.shutdown().await;
}

/// A proxy serving in the background, with its trace in its own temp dir.
struct Capture {
    url: String,
    dir: tempfile::TempDir,
    stop: Shutdown,
    serving: tokio::task::JoinHandle<infertune::capture::Summary>,
}

impl Capture {
    async fn start(upstream: &str, tweak: impl FnOnce(&mut CaptureOptions)) -> Capture {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = CaptureOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: upstream.to_string(),
            output: dir.path().join("trace.jsonl"),
            keep_text: false,
            key_file: None,
            rotate_bytes: None,
        };
        tweak(&mut opts);
        let proxy = Proxy::bind(&opts).await.unwrap();
        let url = format!("http://{}", proxy.local_addr());
        let stop = Shutdown::manual();
        let serving = tokio::spawn(proxy.serve(stop.clone()));
        Capture { url, dir, stop, serving }
    }

    fn trace(&self) -> PathBuf {
        self.dir.path().join("trace.jsonl")
    }

    /// The lines written so far.
    fn lines(&self) -> Vec<Value> {
        read_lines(&self.trace())
    }

    /// Wait until `n` lines are written (the line follows the response's end).
    async fn wait_lines(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let lines = self.lines();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} lines: {:?}", self.lines())
    }

    async fn stop(self) -> infertune::capture::Summary {
        self.stop.graceful.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.serving).await.expect("stops promptly").unwrap()
    }
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post(url: &str, body: &Value) -> reqwest::Response {
    client().post(url).header("x-client", "t1").json(body).send().await.unwrap()
}

fn chat(system: &str, user: &str) -> Value {
    json!({"model": "m", "stream": true, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]})
}

#[tokio::test]
async fn capture_passes_sse_and_ndjson_through_unchanged_and_records_counts() {
    let up = Upstream::start().await;
    let cap = Capture::start(&up.url, |_| {}).await;

    let res = post(&format!("{}/v1/chat/completions?trace=1", cap.url), &chat("be brief", "hello")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["x-mock"], "yes");
    assert_eq!(res.bytes().await.unwrap(), SSE.concat().as_bytes());

    let res = post(&format!("{}/api/chat", cap.url), &chat("be brief", "hi")).await;
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    assert_eq!(res.bytes().await.unwrap(), NDJSON.concat().as_bytes());

    // Not a recorded endpoint: forwarded only.
    let res = client().get(format!("{}/v1/models", cap.url)).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "{\"data\":[]}");

    // The upstream got the method, path, query, the client's headers and the body as sent.
    {
        let seen = up.seen.lock().unwrap();
        let (head, body) = &seen.requests[0];
        assert!(head.starts_with("post /v1/chat/completions?trace=1 http/1.1\r\n"), "{head}");
        assert!(head.contains("x-client: t1\r\n"), "{head}");
        assert_eq!(serde_json::from_slice::<Value>(body).unwrap(), chat("be brief", "hello"));
    }

    let lines = cap.wait_lines(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let sse = lines.iter().find(|l| l["protocol"] == "openai").unwrap();
    assert_eq!((sse["input_length"].as_u64(), sse["output_length"].as_u64()), (Some(21), Some(2)), "{sse}");
    assert_eq!(sse["endpoint"], "/v1/chat/completions");
    assert_eq!(sse["model"], "m");
    assert_eq!(sse["status"], 200);
    assert_eq!(sse["hash_ids"].as_array().unwrap().len(), 1);
    let (ttft, e2e) = (sse["ttft_ms"].as_f64().unwrap(), sse["e2e_ms"].as_f64().unwrap());
    // The first token is the second chunk (the first is the role), 10 ms in; the end 25 ms in.
    assert!(ttft >= 9.0 && e2e >= 24.0 && ttft < e2e, "{sse}");
    assert!(sse["timestamp"].is_u64());
    let nd = lines.iter().find(|l| l["protocol"] == "ollama").unwrap();
    assert_eq!((nd["input_length"].as_u64(), nd["output_length"].as_u64()), (Some(17), Some(2)), "{nd}");
    // No text without --keep-text, anywhere in the file.
    let text = std::fs::read_to_string(cap.trace()).unwrap();
    assert!(!text.contains("be brief") && !text.contains("hello") && !text.contains("messages"), "{text}");
    assert_eq!(cap.stop().await.lines, 2);
}

#[tokio::test]
async fn capture_hash_ids_share_prefixes_depend_on_the_key_and_text_needs_keep_text() {
    let up = Upstream::start().await;
    let system = "You answer questions about the attached manual. ".repeat(100); // 4900 chars
    let a = Capture::start(&up.url, |_| {}).await;
    let b = Capture::start(&up.url, |o| o.keep_text = true).await;
    for (cap, user) in [(&a, "first question"), (&a, "second, different question"), (&b, "first question")] {
        post(&format!("{}/v1/chat/completions", cap.url), &chat(&system, user)).await.bytes().await.unwrap();
    }
    // A malformed body is forwarded untouched and recorded with null lengths and no ids.
    let res = client().post(format!("{}/api/generate", a.url)).body("{not json").send().await.unwrap();
    res.bytes().await.unwrap();
    assert_eq!(up.seen.lock().unwrap().requests.last().unwrap().1, b"{not json");

    let lines_a = a.wait_lines(3).await;
    let ids = |l: &Value| l["hash_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect::<Vec<u64>>();
    let (first, second) = (ids(&lines_a[0]), ids(&lines_a[1]));
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(first[..2], second[..2], "the shared system prompt fills two blocks");
    assert_ne!(first[2], second[2]);
    assert!(first.iter().all(|&i| i < 1 << 52));
    let malformed = &lines_a[2];
    assert_eq!(malformed["protocol"], "ollama");
    assert!(malformed["input_length"].is_null() && malformed["output_length"].is_null(), "{malformed}");
    assert_eq!(malformed["hash_ids"], json!([]));

    let lines_b = b.wait_lines(1).await;
    let other_key = ids(&lines_b[0]);
    assert!(first.iter().zip(&other_key).all(|(x, y)| x != y), "another key, other ids");
    assert_eq!(lines_b[0]["messages"], chat(&system, "first question")["messages"]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn capture_files_are_private_and_rotate_by_size() {
    let up = Upstream::start().await;
    let cap = Capture::start(&up.url, |o| o.rotate_bytes = Some(600)).await;
    for i in 0..6 {
        post(&format!("{}/v1/chat/completions", cap.url), &chat("s", &format!("q{i}"))).await.bytes().await.unwrap();
        cap.wait_lines(1).await;
    }
    let dir = cap.dir.path().to_path_buf();
    cap.stop.graceful.cancel();
    assert_eq!(cap.serving.await.unwrap().lines, 6);
    let key = std::fs::metadata(dir.join("capture.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let (mut total, mut files) = (0, 0);
    loop {
        let path = dir.join(infertune::capture::rotated_path(Path::new("trace.jsonl"), files));
        let Ok(meta) = std::fs::metadata(&path) else { break };
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", path.display());
        assert!(meta.len() <= 600 && meta.len() > 0, "{}: {} bytes", path.display(), meta.len());
        total += read_lines(&path).len();
        files += 1;
    }
    assert!(files >= 2, "{files} files");
    assert_eq!(total, 6);
}

#[tokio::test]
async fn capture_answers_502_for_an_unreachable_upstream_and_keeps_serving() {
    // A port with nothing behind it, taken by the upstream once the first request has failed.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let upstream = format!("http://127.0.0.1:{port}");
    let cap = Capture::start(&upstream, |_| {}).await;
    let res = post(&format!("{}/v1/chat/completions", cap.url), &chat("s", "q")).await;
    assert_eq!(res.status(), 502);
    let err: Value = res.json().await.unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("upstream '{upstream}' unreachable")), "{err}");
    assert_eq!(err["error"]["type"], "upstream_unreachable");

    let _up = Upstream::on(TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    let res = post(&format!("{}/v1/chat/completions", cap.url), &chat("s", "q")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap(), SSE.concat().as_bytes());
    let lines = cap.wait_lines(2).await;
    assert_eq!(lines[0]["status"], 502);
    assert_eq!(lines[1]["status"], 200);
    cap.stop().await;
}

#[tokio::test]
async fn capture_records_a_client_that_leaves_mid_stream_and_stops_the_upstream() {
    let up = Upstream::start().await;
    let cap = Capture::start(&up.url, |_| {}).await;
    let mut res =
        post(&format!("{}/v1/completions", cap.url), &json!({"model": "m", "prompt": "go on", "stream": true})).await;
    for _ in 0..3 {
        assert!(res.chunk().await.unwrap().is_some());
    }
    drop(res);
    let lines = cap.wait_lines(1).await;
    assert_eq!(lines[0]["status"], 499, "{:?}", lines[0]);
    assert!(lines[0]["ttft_ms"].as_f64().is_some());
    // The upstream's endless stream was cut (its next write failed).
    for _ in 0..100 {
        if up.seen.lock().unwrap().abandoned == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(up.seen.lock().unwrap().abandoned, 1, "the upstream request was stopped");
    // And the proxy still serves.
    let res = post(&format!("{}/v1/chat/completions", cap.url), &chat("s", "q")).await;
    assert_eq!(res.bytes().await.unwrap(), SSE.concat().as_bytes());
    assert_eq!(cap.wait_lines(2).await[1]["status"], 200);
    cap.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_of_a_bench_run_on_the_real_engine_has_every_request() {
    require_engine();
    let _lock = EngineLock::acquire().await;
    let engine = Engine::start("Q4_0", &["-c", "2048", "-np", "2", "-t", "2"]);
    let cap = Capture::start(&engine.1, |_| {}).await;
    let dataset = repo().join("prompts/short-qa.jsonl");
    let args = ["bench", "--url", &cap.url, "--dataset", dataset.to_str().unwrap()];
    let args: Vec<&str> = args
        .into_iter()
        .chain(["--requests", "8", "--warmup", "2", "--concurrency", "2", "--max-tokens", "16", "--json"])
        .collect();
    let doc: Value = serde_json::from_str(&run_cli(&args).await.unwrap()).unwrap();
    assert_eq!(doc["requests"], 8, "{doc:#}");
    assert_eq!(doc["success_rate"]["value"], 1.0, "{doc:#}");
    // Stopping waits for the lines of requests whose client has closed but the proxy not yet.
    let trace = cap.trace();
    let (dir, stop, serving) = (cap.dir, cap.stop, cap.serving);
    stop.graceful.cancel();
    assert_eq!(serving.await.unwrap().lines, 10);
    let lines = read_lines(&trace);
    drop(engine);
    // Warm-up requests pass through the proxy too.
    assert_eq!(lines.len(), 8 + 2, "{lines:?}");
    for l in &lines {
        assert_eq!(l["status"], 200, "{l}");
        assert!(l["input_length"].as_u64().unwrap() > 0, "{l}");
        assert!((1..=16).contains(&l["output_length"].as_u64().unwrap()), "{l}");
        assert!(!l["hash_ids"].as_array().unwrap().is_empty(), "{l}");
        assert!(l["ttft_ms"].as_f64().unwrap() <= l["e2e_ms"].as_f64().unwrap(), "{l}");
    }
    let mut stamps: Vec<u64> = lines.iter().map(|l| l["timestamp"].as_u64().unwrap()).collect();
    stamps.sort();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));

    // Issue 17's proof: the captured trace replays with its request count, its input lengths
    // (the server's own count, within 2 %) and the client on schedule.
    let space = crate::trace::trace_space(dir.path(), "captured", &trace, false, 512);
    let (_, t) = crate::trace::tune_on_schedule(dir.path(), &space, "captured").await;
    assert_eq!(t["state"], "complete", "{t:#}");
    let r = &t["replay"];
    eprintln!(
        "captured bench run replayed: {} requests, ISL trace {} measured {} ({:.2} % off), lateness p50 {:.2} ms p99 {:.2} ms",
        r["requests"],
        r["isl_trace_mean"],
        r["isl_measured_mean"],
        r["isl_error_pct"].as_f64().unwrap(),
        r["lateness_ms"]["p50"].as_f64().unwrap(),
        r["lateness_ms"]["p99"].as_f64().unwrap()
    );
    assert_eq!((r["requests"].as_u64(), r["format"].as_str()), (Some(lines.len() as u64), Some("capture")), "{r:#}");
    assert_eq!(t["samples"]["succeeded"].as_u64(), Some(lines.len() as u64), "{t:#}");
    let want = lines.iter().map(|l| l["input_length"].as_f64().unwrap()).sum::<f64>() / lines.len() as f64;
    assert_eq!(r["isl_trace_mean"].as_f64(), Some(want), "{r:#}");
    assert!(r["isl_error_pct"].as_f64().unwrap() < 2.0, "{r:#}");
    assert!(r["is_valid"].as_bool().unwrap() && r["lateness_ms"]["p99"].as_f64().unwrap() <= 5.0, "{r:#}");
}
