//! Re-measurement and endpoint benchmarks on the fake server fixture: `compare` calls a real
//! difference *faster*/*slower*, standalone `validate` stores its ratio for `best`, and
//! `bench --duration` runs for the time asked.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{fake_space, repo, run_cli};

/// Two configurations about 10× apart in decode speed: 2 ms and 20 ms per token (trials 1
/// and 2); the slow one is the default.
const FAST_AND_SLOW: &str = r#"token_ms = { values = [2, 20], flag = "--token-ms", default = 20 }"#;

/// `compare STUDY --trial a --trial b --pairs 3 --json`, parsed.
async fn compare(db: &str, study: &str, a: &str, b: &str) -> serde_json::Value {
    let out =
        run_cli(&["--db", db, "compare", study, "--trial", a, "--trial", b, "--pairs", "3", "--json"]).await.unwrap();
    serde_json::from_str(&out).unwrap()
}

fn row<'a>(doc: &'a serde_json::Value, metric: &str) -> &'a serde_json::Value {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} row: {doc:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_calls_a_real_difference_faster_or_slower_in_the_right_direction() {
    // README "Measuring an endpoint": a verdict of faster or slower when the CI excludes 1 and
    // the change is at least 3 %.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let db_s = db.to_str().unwrap();
    let space = fake_space(dir.path(), "cmp", "grid", FAST_AND_SLOW, "");
    run_cli(&["--db", db_s, "tune", space.to_str().unwrap()]).await.unwrap();

    // B = the slow trial: its TPOT is higher (worse) and its tok/s lower (worse).
    let doc = compare(db_s, "cmp", "1", "2").await;
    let tpot = row(&doc, "tpot_p50_ms");
    assert_eq!(tpot["call"], "slower", "{doc:#}");
    assert!(tpot["lo"].as_f64().unwrap() > 3.0, "B/A TPOT should be about 10: {tpot:#}");
    assert_eq!(row(&doc, "output_tok_per_s")["call"], "slower", "{doc:#}");
    // B = the fast trial: the same rows call it faster.
    let doc = compare(db_s, "cmp", "2", "1").await;
    let tpot = row(&doc, "tpot_p50_ms");
    assert_eq!(tpot["call"], "faster", "{doc:#}");
    assert!(tpot["hi"].as_f64().unwrap() < 0.33, "B/A TPOT should be about 1/10: {tpot:#}");
    assert_eq!(row(&doc, "output_tok_per_s")["call"], "faster", "{doc:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_validate_prints_and_stores_the_ratio_that_best_then_shows() {
    // README "Using it": `validate STUDY` re-measures the winner against the default,
    // interleaved, with a 95 % CI, shown by `best`.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let db_s = db.to_str().unwrap();
    let space = fake_space(dir.path(), "val", "grid", FAST_AND_SLOW, "");
    // The baseline needs a default for every parameter, the fixture's model template too.
    let text = std::fs::read_to_string(&space).unwrap();
    let with_default = r#"size = { values = ["a"], template = "model", default = "a" }"#;
    std::fs::write(&space, text.replace(r#"size = { values = ["a"], template = "model" }"#, with_default)).unwrap();
    run_cli(&["--db", db_s, "tune", space.to_str().unwrap()]).await.unwrap();
    let best: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db_s, "best", "val", "--json"]).await.unwrap()).unwrap();
    assert!(best["validation"].is_null(), "nothing validated yet: {best:#}");

    let out = run_cli(&["--db", db_s, "validate", "val", "--pairs", "3", "--top", "1"]).await.unwrap();
    let best: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db_s, "best", "val", "--json"]).await.unwrap()).unwrap();
    let v = &best["validation"];
    assert_eq!(v["winner_number"], 1, "{v:#}");
    assert_eq!(v["metric"], "goodput_rps", "{v:#}");
    assert_eq!(v["baseline"]["token_ms"], 20, "{v:#}");
    assert_eq!(v["winner_values"].as_array().unwrap().len(), 3, "{v:#}");
    assert_eq!(v["default_values"].as_array().unwrap().len(), 3, "{v:#}");
    let (ratio, lo, hi) = (v["ratio"].as_f64().unwrap(), v["ci_low"].as_f64().unwrap(), v["ci_high"].as_f64().unwrap());
    // 2 ms against 20 ms per token: the winner serves several times the default's goodput.
    assert!(lo > 1.5 && lo <= ratio && ratio <= hi, "{v:#}");
    // The line printed is the ratio stored, and `best` shows it too.
    let line = format!(
        "re-validated: trial 1 / default goodput_rps = {ratio:.3} (95 % CI {lo:.3}–{hi:.3}, 3 interleaved rounds"
    );
    assert!(out.contains(&line), "{out}\nexpected: {line}");
    let text = run_cli(&["--db", db_s, "best", "val"]).await.unwrap();
    assert!(text.contains(&line), "{text}");
    // Issue 16: once validated, `best` and `export` name the validated winner, and say so.
    assert_eq!(best["named_by"], "validated", "{best:#}");
    assert_eq!(best["number"], v["winner_number"], "{best:#}");
    assert!(text.contains("named by: validated"), "{text}");
    let env = dir.path().join("val.env");
    let wrote =
        run_cli(&["--db", db_s, "export", "val", "--format", "env", "-o", env.to_str().unwrap()]).await.unwrap();
    assert!(wrote.contains("(trial 1; named by validated"), "{wrote}");
}

/// A fake server started by the test; killed on drop.
struct FakeServer {
    child: std::process::Child,
    url: String,
}

impl FakeServer {
    fn start(args: &[&str]) -> FakeServer {
        let mut child = Command::new(repo().join("tests/fixtures/fake-llama-server"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Its first line names the port it bound: "main: server is listening on http://...".
        let mut line = String::new();
        std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        FakeServer { child, url }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_duration_runs_for_the_time_asked() {
    // README "Measuring an endpoint": `--requests N` or `--duration 60s`.
    let server = FakeServer::start(&["--token-ms", "10"]);
    let dataset = repo().join("prompts/short-qa.jsonl");
    let t0 = Instant::now();
    let out = run_cli(&[
        "bench",
        "--url",
        &server.url,
        "--model",
        "fake",
        "--dataset",
        dataset.to_str().unwrap(),
        "--concurrency",
        "2",
        "--duration",
        "2s",
        "--warmup",
        "1",
        "--max-tokens",
        "4",
        "--json",
    ])
    .await
    .unwrap();
    let elapsed = t0.elapsed();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let wall = doc["wall_s"].as_f64().unwrap();
    // Clients stop sending at 2 s and finish what is in flight (a request takes ~50 ms here).
    assert!((2.0..2.5).contains(&wall), "measured wall {wall} s: {doc:#}");
    assert!(elapsed < Duration::from_secs(4), "bench took {elapsed:?}");
    // Sent back to back the whole time: two clients of ~50 ms requests make dozens.
    let requests = doc["requests"].as_u64().unwrap();
    eprintln!("bench --duration 2s: {requests} requests over {wall:.3} s (command: {elapsed:?})");
    assert!(requests >= 20, "{requests} requests in 2 s: {doc:#}");
    assert_eq!(doc["succeeded"], requests, "{doc:#}");
}
