//! Issue 6 against the real engine: `bench` on a running llama.cpp server (closed and open
//! loop, definitions, cross-check, --save), the quality guard on two quantizations, and
//! `compare` of a trial with itself.

use crate::common::{Engine, EngineLock, engine_space, repo, require_engine, run_cli, trials_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_a_running_engine() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let engine = Engine::start("Q4_0", &["-np", "2", "-fa", "on", "-t", "2", "-c", "4096"]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let dataset = repo().join("prompts/short-qa.jsonl");
    let base = ["--db", db.to_str().unwrap(), "bench", "--url", &engine.1, "--dataset", dataset.to_str().unwrap()];
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain([
            "--requests",
            "8",
            "--warmup",
            "2",
            "--concurrency",
            "2",
            "--max-tokens",
            "16",
            "--json",
            "--save",
            "b1",
        ])
        .collect();
    let doc: serde_json::Value = serde_json::from_str(&run_cli(&args).await.unwrap()).unwrap();
    assert_eq!(doc["requests"], 8, "{doc:#}");
    assert_eq!(doc["success_rate"]["value"], 1.0, "{doc:#}");
    let dists = doc["distributions"].as_array().unwrap();
    for name in ["ttft", "tpot", "itl", "e2e", "prompt_tokens", "output_tokens"] {
        let d = dists.iter().find(|d| d["name"] == name).unwrap_or_else(|| panic!("{name} missing: {doc:#}"));
        assert!(d["definition"].as_str().unwrap().len() > 10, "{d:#}");
        let n = d["n"].as_u64().unwrap() as usize;
        assert!(n >= 8, "{d:#}");
        assert_eq!(d["values"].as_array().unwrap().len(), n);
        let (p50, p95, p99) = (d["p50"].as_f64().unwrap(), d["p95"].as_f64().unwrap(), d["p99"].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{d:#}");
    }
    for key in ["output_tok_per_s", "req_per_s"] {
        assert!(doc[key]["value"].as_f64().unwrap() > 0.0 && doc[key]["definition"].is_string(), "{doc:#}");
    }
    // The client's decode rate and the server's own `timings` are both there, with their ratio.
    let cc = &doc["cross_check"];
    let ratio = cc["decode_agreement"]["value"].as_f64().unwrap();
    assert!((0.5..1.5).contains(&ratio), "{cc:#}");
    assert_eq!(cc["flagged"], (ratio - 1.0).abs() > 0.10);
    // Saved as a one-trial study.
    let trials = trials_json(&db, "b1").await;
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0]["metrics"]["success_rate"], 1.0);

    // Open loop: Poisson arrivals, lateness recorded, latency from the scheduled time.
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--rate", "4", "--requests", "8", "--warmup", "1", "--max-tokens", "8", "--json"])
        .collect();
    let doc: serde_json::Value = serde_json::from_str(&run_cli(&args).await.unwrap()).unwrap();
    assert_eq!(doc["load"]["mode"], "open", "{doc:#}");
    assert_eq!(doc["lateness_ms"]["dist"]["n"], 8, "{doc:#}");
    let bound = infertune::workload::open_loop::max_lateness_p99().as_secs_f64() * 1000.0;
    assert_eq!(doc["valid"], doc["lateness_ms"]["dist"]["p99"].as_f64().unwrap() <= bound);
    assert_eq!(doc["success_rate"]["value"], 1.0, "{doc:#}");

    // Ollama has no model listing to fall back on: the tag must be given.
    let err = run_cli(&["bench", "--url", &engine.1, "--protocol", "ollama"]).await.unwrap_err().to_string();
    assert!(err.contains("--protocol ollama needs --model"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quality_guard_and_compare_with_itself() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let known = dir.path().join("known.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(repo().join("prompts/known-answers.jsonl"))
        .unwrap()
        .lines()
        .take(4)
        .map(str::to_string)
        .collect();
    std::fs::write(&known, lines.join("\n")).unwrap();
    let space = engine_space(
        dir.path(),
        "qg",
        "grid",
        r#"quant = { values = ["Q8_0", "Q4_0"], template = "model" }
parallel = { values = [2], flag = "-np" }"#,
        &format!(
            "[quality]\nknown_answers = \"{}\"\nprompts = \"{}\"\ncount = 4\nmax_tokens = 16\n[slo]\nquality_agreement_min = 0.8\n",
            known.display(),
            repo().join("prompts/short-qa.jsonl").display()
        ),
    );
    let db_s = db.to_str().unwrap();
    run_cli(&["--db", db_s, "tune", space.to_str().unwrap()]).await.unwrap();
    let trials = trials_json(&db, "qg").await;
    assert_eq!(trials.len(), 2);
    let q8 = &trials[0]["quality"];
    // Q8_0 is the reference here: greedy, one request at a time, so its answers repeat exactly.
    assert_eq!(q8["agreement"], 1.0, "{q8:#}");
    assert_eq!(q8["n_compared"], 8, "{q8:#}");
    assert_eq!(q8["n_known"], 4, "{q8:#}");
    // At a threshold between the two: the reference passes, the degraded Q4_0 is rejected.
    assert_eq!(trials[0]["violation"], 0.0, "{:#}", trials[0]);
    assert_eq!(trials[0]["meets_slos"], true, "{:#}", trials[0]);
    let q4 = trials[1]["quality"]["agreement"].as_f64().unwrap();
    eprintln!("Q4_0 agreement with Q8_0: {q4}");
    assert!(q4 < 0.8, "Q4_0 agreed {q4} with Q8_0: the test needs a degraded variant: {:#}", trials[1]);
    let quality_violation = trials[1]["violations"]["quality_agreement"].as_f64();
    assert!(quality_violation.is_some_and(|v| v > 0.0), "{:#}", trials[1]);
    assert_eq!(trials[1]["meets_slos"], false, "{:#}", trials[1]);

    // A trial compared with itself: no difference shown, every CI covers 1.
    let out = run_cli(&[
        "--db",
        db_s,
        "compare",
        "qg",
        "--trial",
        "2",
        "--trial",
        "2",
        "--pairs",
        "2",
        "--space",
        space.to_str().unwrap(),
        "--json",
    ])
    .await
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    for row in doc["rows"].as_array().unwrap() {
        assert_eq!(row["call"], "no difference shown", "{doc:#}");
        assert!(row["lo"].as_f64().unwrap() <= 1.0 && 1.0 <= row["hi"].as_f64().unwrap(), "{doc:#}");
    }
}
