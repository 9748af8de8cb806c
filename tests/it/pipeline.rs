//! Issue 14: every command gets its server from the one server session, so what a backend says
//! (request model name, bind variables, readiness) holds for capacity and the quality guard too.
//! Before the session, both sent the model file's stem: a vLLM hub id `Qwen/Qwen2.5-7B-Instruct`
//! was requested as `Qwen2.5-7B-Instruct`, an Ollama `qwen2.5:7b` as `qwen2`, and Ollama never
//! got its `OLLAMA_HOST`. These run against the protocol fixtures with the real engine.

use std::path::{Path, PathBuf};

use crate::common::{EngineLock, repo, require_engine, run_cli};

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `[workload]`, `[quality]` (small: 4 known answers, 4 extra prompts) and `[slo]` sections
/// shared by both tests; the known-answer file is written into `dir`.
fn tail(dir: &Path) -> String {
    let known_path = dir.join("known.jsonl");
    let known: Vec<String> = std::fs::read_to_string(repo().join("prompts/known-answers.jsonl"))
        .unwrap()
        .lines()
        .take(4)
        .map(str::to_string)
        .collect();
    std::fs::write(&known_path, known.join("\n")).unwrap();
    format!(
        r#"[workload]
dataset = {prompts}
concurrency = 1
requests = 4
warmup = 1
max_tokens = 12

[quality]
known_answers = {known}
prompts = {qa}
count = 4
max_tokens = 12

[slo]
ttft_p95_ms = 120000
success_rate = 1.0
quality_agreement_min = 0.0
"#,
        prompts = toml_str(repo().join("prompts/chat-mix.jsonl").to_str().unwrap()),
        known = toml_str(known_path.to_str().unwrap()),
        qa = toml_str(repo().join("prompts/short-qa.jsonl").to_str().unwrap()),
    )
}

/// Tune one trial (quality guard on), then search its capacity over 1..2 clients; both must
/// measure. Returns the trial and the capacity report.
async fn tune_then_capacity(db: &Path, space: &Path, study: &str) -> (serde_json::Value, serde_json::Value) {
    let db_s = db.to_str().unwrap();
    let out = run_cli(&["--db", db_s, "tune", space.to_str().unwrap(), "--max-trials", "1"]).await;
    let out = out.unwrap_or_else(|e| panic!("tune failed: {e:#}"));
    let trials = crate::common::trials_json(db, study).await;
    let trial = trials[0].clone();
    assert_eq!(trial["state"], "complete", "{out}\n{trial:#}");
    let quality = &trial["quality"];
    assert!(quality["agreement"].as_f64().is_some_and(|a| a > 0.5), "quality guard answered: {quality}");
    let cap = run_cli(&["--db", db_s, "capacity", study, "--trial", "1", "--min", "1", "--max", "2", "--json"]).await;
    let cap: serde_json::Value =
        serde_json::from_str(&cap.unwrap_or_else(|e| panic!("capacity failed: {e:#}"))).unwrap();
    assert!(!cap["levels"].as_array().unwrap().is_empty(), "{cap:#}");
    assert_eq!(cap["capacity"], 2.0, "a 120 s TTFT limit holds at 2 clients: {cap:#}");
    (trial, cap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_and_quality_guard_on_vllm_with_a_hub_model_id() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    // The fixture's stand-in for the Hugging Face cache: <hub>/Qwen/Qwen2.5-7B-Instruct.gguf.
    let hub = dir.path().join("hub");
    std::fs::create_dir_all(hub.join("Qwen")).unwrap();
    let smol = repo().join("models/SmolLM2-135M-Instruct-Q4_0.gguf");
    std::os::unix::fs::symlink(smol, hub.join("Qwen/Qwen2.5-7B-Instruct.gguf")).unwrap();
    let fixture = repo().join("tests/fixtures/vllm");
    let path_env = format!("{}:{}", fixture.display(), std::env::var("PATH").unwrap_or_default());
    let text = format!(
        r#"[study]
name = "vllm-hub"
strategy = "grid"

[backend]
kind = "vllm"
command = [{command}]
model = "Qwen/Qwen2.5-7B-Instruct"
args = ["--no-enable-chunked-prefill"]
env = {{ VLLM_FIXTURE_HUB = {hub}, VLLM_FIXTURE_GPU_MIB = "2048", VLLM_FIXTURE_GPU_STATE = {state}, PATH = {path}, VLLM_NO_USAGE_STATS = "1" }}
ready_timeout = "90s"

[params]
max_model_len = {{ values = [2048], flag = "--max-model-len" }}
max_num_batched_tokens = {{ values = [2048], flag = "--max-num-batched-tokens" }}
max_num_seqs = {{ values = [2], flag = "--max-num-seqs" }}

{tail}"#,
        command = toml_str(fixture.join("vllm").to_str().unwrap()),
        hub = toml_str(hub.to_str().unwrap()),
        state = toml_str(dir.path().join("gpu-state").to_str().unwrap()),
        path = toml_str(&path_env),
        tail = tail(dir.path()),
    );
    let space: PathBuf = dir.path().join("vllm-hub.toml");
    std::fs::write(&space, text).unwrap();
    let (trial, cap) = tune_then_capacity(&dir.path().join("t.db"), &space, "vllm-hub").await;
    eprintln!("vllm hub id: quality {} capacity {}", trial["quality"], cap["capacity"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_and_quality_guard_on_ollama_with_a_library_tag() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo().join("tests/fixtures/ollama/ollama");
    // The fixture's test-only alias: `qwen2.5:7b` is served from SmolLM2's Q4_0 file.
    let models = dir.path().join("ollama-models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("infertune-fixture-aliases"), "qwen2.5:7b=smollm2:135m-instruct-q4_0\n").unwrap();
    let text = format!(
        r#"[study]
name = "ollama-tag"
strategy = "grid"

[backend]
kind = "ollama"
command = [{command}, "serve"]
model = "qwen2.5:7b"
env = {{ OLLAMA_MODELS = {models} }}
ready_timeout = "60s"

[params]
num_ctx = {{ values = [2048], option = "num_ctx" }}

{tail}"#,
        command = toml_str(fixture.to_str().unwrap()),
        models = toml_str(models.to_str().unwrap()),
        tail = tail(dir.path()),
    );
    let space = dir.path().join("ollama-tag.toml");
    std::fs::write(&space, text).unwrap();
    let (trial, cap) = tune_then_capacity(&dir.path().join("t.db"), &space, "ollama-tag").await;
    eprintln!("ollama tag: quality {} capacity {}", trial["quality"], cap["capacity"]);
}

/// Issue 13 item 2: every command that re-reads a study's space resolves its relative paths
/// against the space file's own directory, recorded with the study, from any working directory.
/// The space here names its dataset, server program and model relative to itself; each command
/// runs as a separate process whose working directory is an unrelated, empty folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_reread_a_study_work_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let spaces = dir.path().join("spaces");
    let elsewhere = dir.path().join("elsewhere");
    for d in [spaces.join("data"), spaces.join("bin"), spaces.join("models"), elsewhere.clone()] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(repo().join("prompts/short-qa.jsonl"), spaces.join("data/qa.jsonl")).unwrap();
    std::os::unix::fs::symlink(repo().join("tests/fixtures/fake-llama-server"), spaces.join("bin/fake-llama-server"))
        .unwrap();
    std::fs::write(spaces.join("models/fake-a.gguf"), b"GGUF").unwrap();
    let space = spaces.join("rel.toml");
    std::fs::write(
        &space,
        r#"[study]
name = "rel"
strategy = "grid"

[backend]
kind = "llamacpp"
command = ["bin/fake-llama-server"]
model = "models/fake-{size}.gguf"
ready_timeout = "5s"

[params]
size = { values = ["a"], template = "model", default = "a" }
token_ms = { values = [2, 3], flag = "--token-ms", default = 2 }

[workload]
dataset = "data/qa.jsonl"
concurrency = 2
requests = 4
warmup = 0
max_tokens = 4
request_timeout = "5s"

[slo]
ttft_p95_ms = 60000
"#,
    )
    .unwrap();
    let db = dir.path().join("t.db");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_infertune"))
            .arg("--db")
            .arg(&db)
            .args(args)
            .current_dir(&elsewhere)
            .env("INFERTUNE_LOG", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "infertune {args:?} failed from an unrelated directory:\n{text}");
        text
    };
    let space_arg = space.to_str().unwrap();
    run(&["tune", space_arg, "--max-trials", "1"]);
    // resume from elsewhere, with the space file named by a path relative to that directory
    run(&["tune", "../spaces/rel.toml", "--max-trials", "2"]);
    let compared = run(&["compare", "rel", "--default", "--trial", "2", "--pairs", "1", "--json"]);
    assert!(compared.contains("\"rows\""), "{compared}");
    let validated = run(&["validate", "rel", "--pairs", "3", "--top", "1"]);
    assert!(validated.contains("re-validated: trial"), "{validated}");
    let capacity = run(&["capacity", "rel", "--trial", "1", "--min", "1", "--max", "2", "--json"]);
    assert!(capacity.contains("\"capacity\""), "{capacity}");
    run(&["report", "rel", "-o", "report.html"]);
    assert!(elsewhere.join("report.html").exists());
}
