//! Trace replay against the real llama.cpp engine (issue 17): a study with `[workload] trace`
//! runs end to end with the trace's request count and input lengths, and a shared prefix in the
//! trace reaches the server's prompt cache.

use std::path::{Path, PathBuf};

use crate::common::{EngineLock, repo, require_engine, run_cli, trials_json};

/// A one-point llama.cpp space replaying `trace` with `prompt_cache`.
pub(crate) fn trace_space(dir: &Path, name: &str, trace: &Path, prompt_cache: bool, block_size: u32) -> PathBuf {
    trace_space_with(dir, name, trace, prompt_cache, block_size, "")
}

/// [`trace_space`] with more `[workload]` lines (`time_scale`, `window`, ...).
fn trace_space_with(
    dir: &Path,
    name: &str,
    trace: &Path,
    prompt_cache: bool,
    block_size: u32,
    workload: &str,
) -> PathBuf {
    let repo = repo();
    let text = format!(
        r#"[study]
name = "{name}"
strategy = "grid"
seed = 3

[backend]
kind = "llamacpp"
command = ["{launcher}"]
model = "{models}/SmolLM2-135M-Instruct-Q4_0.gguf"
ready_timeout = "60s"

[params]
parallel = {{ values = [1], flag = "-np" }}
threads = {{ values = [1], flag = "-t" }}

[workload]
trace = "{trace}"
block_size = {block_size}
prompt_cache = {prompt_cache}
request_timeout = "60s"
{workload}

[slo]
success_rate = 1.0
"#,
        launcher = repo.join("scripts/llama-server").display(),
        models = repo.join("models").display(),
        trace = trace.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn write_trace(dir: &Path, rows: &[(u64, u32, u32, &[u64])]) -> PathBuf {
    let path = dir.join("trace.jsonl");
    let text: String = rows
        .iter()
        .map(|(ts, isl, osl, ids)| {
            format!(
                "{}\n",
                serde_json::json!({"timestamp": ts, "input_length": isl, "output_length": osl, "hash_ids": ids})
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// The single trial of a `tune --max-trials 1` run of `space`.
async fn tune_one(db: &Path, space: &Path, study: &str) -> serde_json::Value {
    let out =
        run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap(), "--max-trials", "1"]).await.unwrap();
    let trials = trials_json(db, study).await;
    assert_eq!(trials.len(), 1, "{out}");
    trials.into_iter().next().unwrap()
}

/// [`tune_one`] on a fresh database in `dir`, again (at most 3 studies) while the trial is
/// `client-behind`: on this shared 2-core host a late wake-up of the test's own client spoils a
/// replay now and then, twice in a row at times (seen: lateness p99 14.1 ms, then 6.4 ms, while
/// other tests ran their engines). Every spoiled study is printed; the trial returned ran on
/// schedule (p99 within 5 ms), and its database is returned with it.
pub(crate) async fn tune_on_schedule(dir: &Path, space: &Path, study: &str) -> (PathBuf, serde_json::Value) {
    for attempt in 1..=3 {
        let db = dir.join(format!("{study}-{attempt}.db"));
        let t = tune_one(&db, space, study).await;
        if t["error_class"] != "client-behind" || attempt == 3 {
            return (db, t);
        }
        eprintln!("study {attempt} of '{study}' spoiled by the client: {}", t["error_message"]);
    }
    unreachable!("the third attempt returns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_study_replays_the_trace_on_real_engine() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let rows: &[(u64, u32, u32, &[u64])] = &[
        (0, 120, 6, &[1]),
        (400, 300, 4, &[1, 2, 3]),
        (900, 64, 8, &[4]),
        (1300, 200, 5, &[1, 2]),
        (2000, 45, 6, &[5]),
        (2600, 150, 4, &[1, 6]),
    ];
    // A seventh row past the window: the window and the time scale are honoured and shown.
    let rows: Vec<(u64, u32, u32, &[u64])> = rows.iter().copied().chain([(9000, 80, 4, &[7][..])]).collect();
    let trace = write_trace(dir.path(), &rows);
    let window = "time_scale = 0.8\nwindow = { start = \"0s\", duration = \"5s\" }";
    let space = trace_space_with(dir.path(), "trace-e2e", &trace, false, 128, window);
    let (db, t) = tune_on_schedule(dir.path(), &space, "trace-e2e").await;
    assert_eq!(t["state"], "complete", "{t:#}");
    assert_eq!(t["samples"]["requests"], 6, "{t:#}");
    assert_eq!(t["samples"]["succeeded"], 6, "{t:#}");
    let r = &t["replay"];
    assert_eq!((r["requests"].as_u64(), r["format"].as_str()), (Some(6), Some("mooncake")), "{r:#}");
    assert_eq!(r["isl_trace_mean"], 146.5, "{r:#}");
    let measured = r["isl_measured_mean"].as_f64().unwrap();
    assert!((measured - 146.5).abs() / 146.5 < 0.02, "measured ISL {measured} vs the trace's 146.5: {r:#}");
    assert!(r["isl_error_pct"].as_f64().unwrap() < 2.0, "{r:#}");
    // the bound in force (scripts/test loosens it: the client shares 2 cores with the engine)
    let bound = infertune::workload::open_loop::max_lateness_p99().as_secs_f64() * 1000.0;
    assert!(r["is_valid"].as_bool().unwrap() && r["lateness_ms"]["p99"].as_f64().unwrap() <= bound, "{r:#}");
    assert!(r["chat_overhead_tokens"].as_u64().unwrap() > 0, "{r:#}");
    assert_eq!(r["time_scale"], 0.8, "{r:#}");
    let w = &r["window"];
    assert_eq!(
        (w["trace_requests"].as_u64(), w["duration_s"].as_f64(), w["span_s"].as_f64()),
        (Some(7), Some(5.0), Some(2.6)),
        "{r:#}"
    );
    assert_eq!(
        (w["isl"]["n"].as_u64(), w["isl"]["mean"].as_f64(), w["osl"]["max"].as_f64()),
        (Some(6), Some(146.5), Some(8.0)),
        "{r:#}"
    );

    // `best` and the report say what the winner was measured under: source, window, stats, time scale.
    let db_s = db.to_str().unwrap();
    let best = run_cli(&["--db", db_s, "best", "trace-e2e"]).await.unwrap();
    eprintln!("{best}");
    let source = format!("trace replay of '{}' (mooncake)", trace.display());
    for expected in [
        source.as_str(),
        "time scale:    0.8 (arrivals 1.250× as fast as recorded)",
        "window:        from 0s, for 5s of trace time: 6 of the trace's 7 requests",
        "trace stats:   span 2.6s, mean 2.31 req/s (replayed at 2.88 req/s), peak 3 req/s over 1 s (trace time)",
        "ISL:           p50 135, p90 250, p99 295, max 300, mean 146.5 tokens",
        "prefix reuse:",
    ] {
        assert!(best.contains(expected), "best lacks '{expected}':\n{best}");
    }
    let html = dir.path().join("report.html");
    run_cli(&["--db", db_s, "report", "trace-e2e", "-o", html.to_str().unwrap()]).await.unwrap();
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("<section id=\"workload\">"), "{html}");
    for expected in ["trace replay of", "0.8 (arrivals 1.250× as fast as recorded)", "span 2.6s", "ISL sent"] {
        assert!(html.contains(expected), "the report lacks '{expected}'");
    }
}

/// 9 of 10 requests share a 512-token prefix (two 256-token blocks). With the prompt cache on,
/// the server prefills only the tail of each; off, all of it. Fails if the sharing does not
/// reach the server (different bytes per request, or `cache_prompt` not sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_prefix_in_the_trace_reaches_the_prompt_cache() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<(u64, u32, u32, Vec<u64>)> = (0..9).map(|i| (i * 1200, 560, 4, vec![1, 2, 100 + i])).collect();
    rows.insert(4, (4 * 1200 + 600, 560, 4, vec![200, 201, 202]));
    let rows: Vec<(u64, u32, u32, &[u64])> = rows.iter().map(|(a, b, c, d)| (*a, *b, *c, d.as_slice())).collect();
    let trace = write_trace(dir.path(), &rows);
    let mut ttft = Vec::new();
    for cache in [true, false] {
        let name = format!("prefix-cache-{cache}");
        let (_, t) = tune_on_schedule(dir.path(), &trace_space(dir.path(), &name, &trace, cache, 256), &name).await;
        assert_eq!((t["state"].as_str(), t["samples"]["succeeded"].as_u64()), (Some("complete"), Some(10)), "{t:#}");
        assert!(t["replay"]["isl_error_pct"].as_f64().unwrap() < 2.0, "{t:#}");
        ttft.push(t["metrics"]["ttft_p50_ms"].as_f64().unwrap());
    }
    let (on, off) = (ttft[0], ttft[1]);
    eprintln!("ttft p50: prompt cache on {on:.1} ms, off {off:.1} ms");
    assert!(on < 0.7 * off, "prompt cache on {on:.1} ms, off {off:.1} ms: the shared prefix did not reach the cache");
}

/// A mock Ollama `/api/chat` (NOT Ollama: no Ollama binary exists on this machine, and the
/// Ollama-protocol fixture's tokenizer is the real model's). It counts a prompt as 25 template
/// tokens plus one token per 4.3 characters of its messages, reports that as
/// `prompt_eval_count`, streams one content line and a `done` line, and keeps every request body.
struct MockOllama {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl MockOllama {
    async fn start() -> MockOllama {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = bodies.clone();
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                tokio::spawn(mock_ollama_chat(sock, seen.clone()));
            }
        });
        MockOllama { url, bodies }
    }
}

async fn mock_ollama_chat(
    mut sock: tokio::net::TcpStream,
    seen: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut buf, mut tmp) = (Vec::new(), [0u8; 16384]);
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
    let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).unwrap().trim().parse().unwrap();
    while buf.len() < head_end + length {
        let n = sock.read(&mut tmp).await.unwrap();
        buf.extend_from_slice(&tmp[..n]);
    }
    let body: serde_json::Value = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();
    let chars: usize =
        body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().chars().count()).sum();
    let prompt_eval_count = 25 + (chars as f64 / 4.3).ceil() as u64;
    let eval_count = body["options"]["num_predict"].as_u64().unwrap();
    seen.lock().unwrap().push(body);
    let lines = [
        serde_json::json!({"model": "m", "message": {"role": "assistant", "content": "ok"}, "done": false}),
        serde_json::json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true,
            "done_reason": "length", "prompt_eval_count": prompt_eval_count, "eval_count": eval_count,
            "prompt_eval_duration": 1_000_000, "eval_duration": 2_000_000, "total_duration": 4_000_000}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = sock.write_all(response.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// Ollama has no tokenize endpoint: replay calibrates characters per token from
/// `prompt_eval_count`, builds prompts of the trace's lengths from it, keeps shared `hash_ids`
/// byte-identical, and says how the prompts were made in the trial's replay record.
#[tokio::test]
async fn ollama_replay_calibrates_characters_per_token_from_prompt_eval_count() {
    use infertune::workload::{Protocol, Target, replay};
    let mock = MockOllama::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rows: &[(u64, u32, u32, &[u64])] =
        &[(0, 700, 5, &[1, 2]), (100, 900, 3, &[1, 2, 3]), (200, 300, 4, &[9]), (300, 1500, 2, &[1, 4, 5])];
    let path = write_trace(dir.path(), rows);
    let space = trace_space(dir.path(), "ollama-mock", &path, false, 256);
    let mut spec = infertune::space::Space::load(&space).unwrap().workload;
    spec.request_timeout = std::time::Duration::from_secs(10);
    let trace = replay::load(spec.trace.as_ref().unwrap()).unwrap();
    let target = Target {
        protocol: Protocol::Ollama,
        base_url: mock.url.clone(),
        model: "m".into(),
        options: Default::default(),
    };
    let client = infertune::workload::http_client().unwrap();
    let prepared = replay::Prepared::on(&client, &target, &spec).await.unwrap();
    let cpt = prepared.chars_per_token().unwrap();
    assert!((cpt - 4.3).abs() < 0.05, "calibrated {cpt} characters per token, the mock counts 4.3");
    let calibration = mock.bodies.lock().unwrap().len();
    assert_eq!(calibration, 3, "a primer and two calibration requests");

    let (open, figure) =
        replay::run(&client, &target, &spec, &trace, Some(&prepared), replay::OutputControl::MaxTokens).await.unwrap();
    assert_eq!((open.run.samples.len(), figure.requests), (4, 4));
    assert!(open.run.samples.iter().all(|s| s.is_ok()), "{:?}", open.run.samples);
    eprintln!("mock Ollama replay: ISL {:.2} % off, {}", figure.isl_error_pct, figure.prompts);
    assert!(figure.isl_error_pct < 2.0, "{figure:#?}");
    assert_eq!(figure.chars_per_token, Some(cpt));
    // 25 template tokens, plus up to one from the mock's rounding up of the text's tokens
    assert!(matches!(figure.chat_overhead_tokens, Some(25 | 26)), "{figure:#?}");
    assert!(
        figure.prompts.contains("characters per token, calibrated from the server's prompt_eval_count"),
        "{}",
        figure.prompts
    );
    // num_predict carries each row's output length; the shared two blocks are the same bytes.
    let bodies = mock.bodies.lock().unwrap()[calibration..].to_vec();
    let by_len = |n: u64| {
        bodies.iter().find(|b| b["options"]["num_predict"] == n).unwrap()["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (a, b, d) = (by_len(5), by_len(3), by_len(2));
    let common = |x: &str, y: &str| x.bytes().zip(y.bytes()).take_while(|(p, q)| p == q).count();
    let block_chars = 256.0 * cpt;
    assert!(common(&a, &b) as f64 >= 2.0 * block_chars - 4.0, "{} common bytes", common(&a, &b));
    let one = common(&a, &d) as f64;
    assert!(one >= block_chars - 4.0 && one < 2.0 * block_chars - 4.0, "{one} common bytes");
}

/// The same calibration on the Ollama-protocol fixture (NOT Ollama: it speaks Ollama's API and
/// generates with the real llama.cpp engine, so `prompt_eval_count` is the real tokenizer's
/// count). A study with `trace =` runs end to end, and the trace's lengths reach the server
/// within what a characters-per-token estimate allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_fixture_study_replays_a_trace_with_calibrated_prompts() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let rows: &[(u64, u32, u32, &[u64])] = &[
        (0, 300, 4, &[1]),
        (700, 420, 4, &[2, 3]),
        (1500, 180, 4, &[4]),
        (2200, 360, 4, &[5, 6]),
        (3000, 240, 4, &[7]),
    ];
    let trace = write_trace(dir.path(), rows);
    let fixture = repo().join("tests/fixtures/ollama/ollama");
    let text = format!(
        r#"[study]
name = "ollama-trace"
strategy = "grid"
seed = 3

[backend]
kind = "ollama"
model = "smollm2:135m-instruct-{{quant}}"
ready_timeout = "60s"
command = ["{fixture}", "serve"]
env = {{ OLLAMA_MODELS = "{store}" }}

[params]
quant = {{ values = ["q4_0"], template = "model" }}
parallel = {{ values = [1], env = "OLLAMA_NUM_PARALLEL" }}

[workload]
trace = "{trace}"
block_size = 128
request_timeout = "60s"

[slo]
success_rate = 1.0
"#,
        fixture = fixture.display(),
        store = dir.path().join("models").display(),
        trace = trace.display(),
    );
    let space = dir.path().join("ollama-trace.toml");
    std::fs::write(&space, text).unwrap();
    let (_, t) = tune_on_schedule(dir.path(), &space, "ollama-trace").await;
    assert_eq!((t["state"].as_str(), t["samples"]["succeeded"].as_u64()), (Some("complete"), Some(5)), "{t:#}");
    let r = &t["replay"];
    let cpt = r["chars_per_token"].as_f64().unwrap();
    eprintln!(
        "Ollama fixture replay: {cpt:.2} characters per token, template {} tokens, ISL trace {} measured {} ({:.2} % off per request), lateness p99 {:.2} ms",
        r["chat_overhead_tokens"],
        r["isl_trace_mean"],
        r["isl_measured_mean"],
        r["isl_error_pct"].as_f64().unwrap(),
        r["lateness_ms"]["p99"].as_f64().unwrap()
    );
    assert!((2.0..10.0).contains(&cpt), "{r:#}");
    assert!(r["prompts"].as_str().unwrap().contains("calibrated from the server's prompt_eval_count"), "{r:#}");
    assert_eq!(r["isl_trace_mean"], 300.0, "{r:#}");
    // No shared blocks here: the fixture, like Ollama, counts only the tokens it evaluates, so a
    // prefix served from its cache would read as a shorter prompt (measured: a trace sharing
    // 128-token blocks on two of five rows read 251 tokens against 300, the cached ones).
    // A word-length estimate is not a tokenizer: 5 % per request is what this holds it to.
    assert!(r["isl_error_pct"].as_f64().unwrap() < 5.0, "{r:#}");
}
