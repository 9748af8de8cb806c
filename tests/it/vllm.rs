//! The vLLM adapter end to end, against the vLLM-protocol TEST FIXTURE in tests/fixtures/vllm/
//! (real `vllm serve` flags and failure lines, a fake GPU memory model, the real llama.cpp engine
//! behind vLLM's API). No GPU or vLLM exists on this machine; the GPU test at the bottom is
//! ignored here and runs on a GPU host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use infertune::backend::FailureClass;
use infertune::backend::vllm::{ServeArgs, candidate_from_args, classify_log};
use infertune::export::vllm::{read_args, read_compose, read_env, read_yaml};
use infertune::space::{Candidate, Space};

use crate::common::{EngineLock, repo, require_engine, run_cli, trials_json};

fn fixture_dir() -> PathBuf {
    repo().join("tests/fixtures/vllm")
}

/// A TOML basic string holding `s` exactly.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A model path with spaces and shell characters: it must reach the fixture as one argv item
/// (the fixture's `/v1/models` then lists it verbatim, and readiness requires that).
fn awkward_model(dir: &Path) -> String {
    let folder = dir.join("my models");
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join("Smol $(touch pwned); 'q' & x.gguf");
    std::os::unix::fs::symlink(repo().join("models/SmolLM2-135M-Instruct-Q4_0.gguf"), &path).unwrap();
    path.to_str().unwrap().to_string()
}

fn fixture_space(dir: &Path, model: &str) -> PathBuf {
    let path_env = format!("{}:{}", fixture_dir().display(), std::env::var("PATH").unwrap_or_default());
    let text = format!(
        r#"[study]
name = "vllm-fixture"
strategy = "grid"

[backend]
kind = "vllm"
command = [{command}]
model = {model}
args = ["--no-enable-chunked-prefill"]
env = {{ VLLM_FIXTURE_GPU_MIB = "560", VLLM_FIXTURE_GPU_STATE = {state}, PATH = {path}, VLLM_NO_USAGE_STATS = "1" }}
ready_timeout = "90s"

[params]
dtype = {{ values = ["bfloat16", "float32"], flag = "--dtype" }}
max_model_len = {{ values = [2048, 8192], flag = "--max-model-len" }}
max_num_batched_tokens = {{ values = [1024, 8192], flag = "--max-num-batched-tokens" }}
gpu_memory_utilization = {{ values = [0.9], flag = "--gpu-memory-utilization" }}
enable_prefix_caching = {{ values = [true], flag = "--enable-prefix-caching" }}
max_num_seqs = {{ values = [2], flag = "--max-num-seqs" }}

[workload]
dataset = {prompts}
concurrency = 2
requests = 8
warmup = 2
max_tokens = 16

[slo]
ttft_p95_ms = 60000
success_rate = 1.0
peak_vram_mb = 600
"#,
        command = toml_str(fixture_dir().join("vllm").to_str().unwrap()),
        model = toml_str(model),
        state = toml_str(dir.join("gpu-state").to_str().unwrap()),
        path = toml_str(&path_env),
        prompts = toml_str(repo().join("prompts/chat-mix.jsonl").to_str().unwrap()),
    );
    let path = dir.join("vllm-fixture.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn by_class<'a>(trials: &'a [serde_json::Value], class: &str) -> Vec<&'a serde_json::Value> {
    trials.iter().filter(|t| t["error_class"] == class).collect()
}

/// Parameter values read back from `vllm serve` words and env, checked against the space.
fn round_trip(space: &Space, words: &[String], env: &BTreeMap<String, String>) -> Candidate {
    let args = ServeArgs::parse(words).unwrap_or_else(|e| panic!("{e}: {words:?}"));
    candidate_from_args(&space.params, &space.backend.model, &args, env).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_study_on_fixture_records_each_infeasible_route_and_exports_round_trip() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let model = awkward_model(dir.path());
    let space_path = fixture_space(dir.path(), &model);
    let space = Space::load(&space_path).unwrap();
    let db = dir.path().join("t.db");
    let db_s = db.to_str().unwrap();
    // Pre-launch: batched tokens below max-model-len with chunked prefill off. `space check`
    // counts them; the study never launches or stores them.
    let check = run_cli(&["space", "check", space_path.to_str().unwrap()]).await.unwrap();
    assert!(
        check.contains("refused   4 of 8 grid points before launch (never tried): max_num_batched_tokens (1024) is smaller than max_model_len"),
        "{check}"
    );
    let out = run_cli(&["--db", db_s, "tune", space_path.to_str().unwrap()]).await.unwrap();
    assert!(out.contains("stopped: exhausted"), "{out}");

    let trials = trials_json(&db, "vllm-fixture").await;
    assert_eq!(trials.len(), 4, "{out}");
    assert!(by_class(&trials, "invalid-combination").is_empty(), "{trials:#?}");
    assert!(trials.iter().all(|t| t["params"]["max_num_batched_tokens"] != 1024), "{trials:#?}");
    // OOM at load: float32 weights exceed the fake GPU's budget.
    let oom = by_class(&trials, "oom");
    assert_eq!(oom.len(), 2, "{trials:#?}");
    for t in &oom {
        assert_eq!(t["params"]["dtype"], "float32");
        assert!(
            t["error_message"].as_str().unwrap().starts_with("torch.OutOfMemoryError: CUDA out of memory"),
            "{t:#}"
        );
    }
    // KV cache too small for max-model-len 8192.
    let kv = by_class(&trials, "kv-too-small");
    assert_eq!(kv.len(), 1, "{trials:#?}");
    assert_eq!(kv[0]["params"]["max_model_len"], 8192);
    assert!(
        kv[0]["error_message"].as_str().unwrap().contains("the estimated maximum model length is 2512"),
        "{:#}",
        kv[0]
    );

    // The feasible one, measured through the real engine behind vLLM's API.
    let done: Vec<_> = trials.iter().filter(|t| t["state"] == "complete").collect();
    assert_eq!(done.len(), 1, "{trials:#?}");
    let t = done[0];
    eprintln!("feasible trial on the fixture: {t:#}");
    assert_eq!(t["meets_slos"], true, "{t:#}");
    assert_eq!(t["metrics"]["success_rate"], 1.0);
    // The fixture's memory varies: it holds 456 MiB, and the whole budget 0.9 x 560 = 504 MiB
    // (read through the fake nvidia-smi) only from its 5th to its 9th request, in the middle of
    // the measured run. The first or the last sample would show 456.
    assert_eq!(t["peak_vram_mb"], 504.0, "the peak, not an idle sample: {t:#}");
    let m = &t["server_metrics"];
    assert_eq!(m["version"], "0.33.0+fixture", "{m:#}");
    assert_eq!(m["vram_baseline_mb"], 0.0);
    assert_eq!(m["vram_total_mb"], 560.0);
    assert_eq!(m["requests"], 10.0, "8 measured + 2 warm-up requests between the scrapes: {m:#}");
    assert_eq!(m["preemptions"], 0.0);
    assert_eq!(m["num_gpu_blocks"], 157.0, "2522 KV tokens / block size 16: {m:#}");
    let ttft = m["ttft_mean_ms"].as_f64().unwrap();
    assert!(ttft > 0.0 && ttft < 60_000.0, "{m:#}");
    assert!(m["itl_mean_ms"].as_f64().unwrap() > 0.0, "{m:#}");
    assert!(m["generation_tokens"].as_f64().unwrap() >= 10.0, "{m:#}");
    let hit = m["prefix_cache_hit_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&hit), "{m:#}");
    let kv_peak = m["kv_cache_usage_peak"].as_f64().unwrap();
    assert!(kv_peak > 0.0 && kv_peak <= 1.0, "{m:#}");

    // Every export format reads back into the best trial's parameter values.
    let best = Candidate(serde_json::from_value(t["params"].clone()).unwrap());
    let export = |format: &'static str| {
        let db = db_s.to_string();
        async move { run_cli(&["--db", &db, "export", "vllm-fixture", "--format", format]).await.unwrap() }
    };
    let (env, words) = read_args(&export("args").await).unwrap();
    assert_eq!(words[0], model, "the model is one word");
    assert_eq!(round_trip(&space, &words, &env), best);
    let (env, words) = read_env(&export("env").await).unwrap();
    assert_eq!(env["VLLM_NO_USAGE_STATS"], "1");
    assert!(!env.contains_key("PATH"), "only VLLM_*, CUDA_* and HF_* belong in the env file");
    assert_eq!(round_trip(&space, &words, &env), best);
    let (env, words) = read_compose(&export("compose").await).unwrap();
    assert_eq!(round_trip(&space, &words, &env), best);
    let words = read_yaml(&export("yaml").await).unwrap();
    assert_eq!(round_trip(&space, &words, &BTreeMap::new()), best);
    assert!(!dir.path().join("my models/pwned").exists() && !Path::new("pwned").exists(), "no shell ran");
}

#[test]
fn fixture_rejects_unknown_flags_and_bad_choices_like_vllm() {
    for (args, expect) in [
        (vec!["serve", "m", "--swap-space", "4"], "vllm serve: error: unrecognized arguments: --swap-space 4"),
        (
            vec!["serve", "m", "--kv-cache-dtype", "q8_0"],
            "vllm serve: error: argument --kv-cache-dtype: invalid choice: 'q8_0'",
        ),
    ] {
        let out = std::process::Command::new(fixture_dir().join("vllm")).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        let failure = classify_log(&stderr, true);
        assert_eq!(failure.class, FailureClass::InvalidArgument);
        assert!(failure.message.contains(expect), "{}", failure.message);
    }
}

/// On a GPU host with vLLM installed (`pip install vllm==0.33.0`, `vllm` on PATH, the model
/// downloadable or cached), run:
///
/// ```sh
/// cargo test --test it vllm_gpu_study -- --ignored --nocapture
/// ```
///
/// It runs three trials of `search-spaces/vllm-gpu.toml` (random strategy) against real vLLM and
/// checks that each is stored as complete or infeasible with a reason, and that a complete one has
/// vLLM's server metrics and a GPU memory reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs vLLM + GPU"]
async fn vllm_gpu_study() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gpu.db");
    let space = repo().join("search-spaces/vllm-gpu.toml");
    let out = run_cli(&[
        "--db",
        db.to_str().unwrap(),
        "tune",
        space.to_str().unwrap(),
        "--max-trials",
        "3",
        "--validate",
        "0",
    ])
    .await
    .unwrap();
    let trials = trials_json(&db, "vllm-gpu").await;
    assert_eq!(trials.len(), 3, "{out}");
    for t in &trials {
        match t["state"].as_str().unwrap() {
            "complete" => {
                assert!(t["peak_vram_mb"].as_f64().unwrap() > 0.0, "{t:#}");
                assert!(t["server_metrics"]["ttft_mean_ms"].as_f64().unwrap() > 0.0, "{t:#}");
            }
            "infeasible" => assert!(t["error_class"].is_string() && t["error_message"].is_string(), "{t:#}"),
            other => panic!("unexpected state '{other}': {t:#}"),
        }
    }
}
