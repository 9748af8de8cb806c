//! Operating what was tuned (issue 19), on the real engine: `apply` with its canary and rollback
//! against a user-level "service" (`tests/fixtures/llama-service`, a supervisor that restarts
//! llama-server from an env file), `apply` killed at random points, and `watch` noticing a
//! replaced model file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infertune::cli::ExitStatus;
use sha2::Digest;

use crate::common::{self, EngineLock, repo, run_cli};

/// The user's service: an env file, a state folder and a port, run by the supervisor script.
struct Service {
    env: PathBuf,
    state: PathBuf,
    port: u16,
}

impl Service {
    fn new(dir: &Path) -> Service {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        Service { env: dir.join("service/llama.env"), state: dir.join("service/state"), port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The restart argv `apply` is given (after `--`).
    fn restart_argv(&self) -> Vec<String> {
        let supervisor = repo().join("tests/fixtures/llama-service");
        [supervisor.to_str().unwrap(), "restart", self.env.to_str().unwrap(), self.state.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once(self.port.to_string()))
            .collect()
    }

    /// Start (or restart) the service by hand and wait until it answers.
    async fn restart(&self) {
        let argv = self.restart_argv();
        let status = std::process::Command::new(&argv[0]).args(&argv[1..]).status().unwrap();
        assert!(status.success());
        self.wait_healthy().await;
    }

    async fn wait_healthy(&self) {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        for _ in 0..600 {
            if let Ok(r) = client.get(format!("{}/health", self.url())).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service never answered /health; log: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("server.log")).unwrap_or_default()
    }

    /// sha256 of the env file at each start of the server, in order.
    fn starts(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.state.join("starts")).unwrap_or_default();
        text.lines().filter_map(|l| l.split_whitespace().nth(1).map(str::to_string)).collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let supervisor = repo().join("tests/fixtures/llama-service");
        let _ = std::process::Command::new(supervisor).args(["stop", self.state.to_str().unwrap()]).status();
    }
}

fn sha256(path: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `KEY=value` lines of `export --format env` for a trial (what the service must end up with).
async fn exported_lines(db: &str, study: &str, trial: i64) -> Vec<String> {
    let text = run_cli(&["--db", db, "export", study, "--format", "env", "--trial", &trial.to_string()]).await.unwrap();
    text.lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect()
}

/// `apply STUDY --trial N --worse-by 100% --env-file ... --url ... -- <restart argv>` in-process.
/// The canary runs minutes after the study, beside other tests on this shared host: it has run
/// TTFT p50 151 ms against the study's 91 ms for the same configuration (CI). Only twice as slow
/// is called worse here; a missed SLO still rolls back.
async fn apply(db: &str, study: &str, trial: i64, service: &Service) -> anyhow::Result<String> {
    let (trial, url) = (trial.to_string(), service.url());
    let mut args: Vec<String> = ["--db", db, "apply", study, "--trial", &trial, "--worse-by", "100%", "--env-file"]
        .iter()
        .map(|s| s.to_string())
        .chain([service.env.display().to_string(), "--url".into(), url, "--".into()])
        .collect();
    args.extend(service.restart_argv());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_cli(&args).await
}

async fn deployments(db: &str, study: &str) -> serde_json::Value {
    let out = run_cli(&["--db", db, "deployments", study, "--json"]).await.unwrap();
    serde_json::from_str(&out).unwrap()
}

/// A space for the real engine whose models live in `models` (the repo's, or a copy a test may
/// replace), with a short workload (short prompts, 8-token answers). The default is measured
/// again after every trial (`anchor_every`), so that the study knows how much runs of one
/// configuration vary here, as a study that re-measures does: the canary rule allows for twice
/// that, and does not roll back a configuration for the machine's own drift (a grid of 4 points
/// measures its default 4 times).
fn operate_space(dir: &Path, name: &str, models: &Path, params: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[study]
name = "{name}"
strategy = "grid"
seed = 3
anchor_every = 1

[backend]
kind = "llamacpp"
command = ["{launcher}"]
model = "{models}/SmolLM2-135M-Instruct-{{quant}}.gguf"
args = ["--metrics"]
ready_timeout = "60s"

[params]
{params}

[workload]
dataset = "{prompts}"
concurrency = 2
requests = 8
warmup = 1
max_tokens = 8

{extra}
"#,
        launcher = repo().join("scripts/llama-server").display(),
        models = models.display(),
        prompts = repo().join("prompts/short-qa.jsonl").display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The objective and SLOs of the operate studies. Measured here: llama-server with SmolLM2 Q4_0
/// has a peak RSS of 251 MB at ctx 2048 and 574 MB at ctx 16384 (its KV cache), whatever else
/// runs on the machine: the 400 MB limit is missed by ctx 16384 only.
const GOAL: &str = "[objective]\nminimize = \"ttft_p50_ms\"\n\n[slo]\nsuccess_rate = 1.0\npeak_rss_mb = 400\n";

/// A grid study of four llama.cpp configurations: Q4_1 and Q4_0 at ctx 2048 meet the SLOs; at
/// ctx 16384 both miss the memory SLO on this machine. Returns (best, the other feasible one, a
/// trial that misses).
async fn study_of_four(dir: &Path, db: &str, name: &str) -> (i64, i64, i64) {
    let params = r#"quant = { values = ["Q4_1", "Q4_0"], template = "model", default = "Q4_1" }
ctx = { values = [2048, 16384], flag = "-c", default = 2048 }
parallel = { values = [2], flag = "-np", default = 2 }"#;
    let space = operate_space(dir, name, &repo().join("models"), params, GOAL);
    run_cli(&["--db", db, "tune", space.to_str().unwrap()]).await.unwrap();
    let trials = common::trials_json(Path::new(db), name).await;
    let best: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db, "best", name, "--json"]).await.unwrap()).unwrap();
    let best = best["number"].as_i64().unwrap();
    let best_params = &trials.iter().find(|t| t["number"] == best).expect("the best trial")["params"];
    let other = trials
        .iter()
        .find(|t| t["params"]["ctx"] == 2048 && t["params"] != *best_params)
        .expect("the other feasible configuration")["number"]
        .as_i64()
        .unwrap();
    let bad = trials.iter().find(|t| t["params"]["ctx"] == 16384).unwrap();
    assert!(bad["violations"]["peak_rss_mb"].as_f64().unwrap() > 0.0, "ctx 16384 misses the memory SLO here: {bad}");
    (best, other, bad["number"].as_i64().unwrap())
}

/// Issue 19 proof 1: applying the study's best trial keeps it (the canary holds); applying a
/// trial that misses its SLO on this machine rolls back, leaving the env file byte-identical
/// and the old configuration serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_keeps_the_best_trial_and_rolls_back_one_that_misses_its_slo() {
    common::require_engine();
    let _lock = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let db = db.to_str().unwrap();
    let (best, other, bad) = study_of_four(dir.path(), db, "operate-apply").await;

    // The service runs the other feasible configuration; its file is 0640.
    let service = Service::new(dir.path());
    std::fs::create_dir_all(service.env.parent().unwrap()).unwrap();
    let first = exported_lines(db, "operate-apply", other).await.join("\n") + "\n";
    std::fs::write(&service.env, &first).unwrap();
    std::fs::set_permissions(&service.env, std::fs::Permissions::from_mode(0o640)).unwrap();
    service.restart().await;

    let out = apply(db, "operate-apply", best, &service).await.unwrap();
    assert!(out.contains(&format!("kept: trial {best}: canary held")), "{out}");
    // the threshold is written with its reason: --worse-by, or twice the study's noise if more
    assert!(out.contains("worse means by 100 % or more: --worse-by") || out.contains("noise"), "{out}");
    println!("{out}");
    let applied = std::fs::read_to_string(&service.env).unwrap();
    for line in exported_lines(db, "operate-apply", best).await {
        assert!(applied.lines().any(|l| l == line), "'{line}' missing from the applied file:\n{applied}");
    }
    assert_eq!(std::fs::metadata(&service.env).unwrap().permissions().mode() & 0o777, 0o640, "mode kept");
    let backup = infertune::deploy::file::backup_path(&service.env);
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), first, "the previous file is the backup");
    assert_eq!(service.starts().last(), Some(&sha256(&service.env)), "the service restarted on the new file");

    let before = std::fs::read(&service.env).unwrap();
    let err = apply(db, "operate-apply", bad, &service).await.unwrap_err();
    assert_eq!(err.downcast_ref::<ExitStatus>().map(|s| s.0), Some(2), "rolled back: exit status 2 ({err:#})");
    assert_eq!(std::fs::read(&service.env).unwrap(), before, "the env file is byte-identical after the rollback");
    assert_eq!(service.starts().last(), Some(&sha256(&service.env)), "restarted on the restored file");
    service.wait_healthy().await;

    let doc = deployments(db, "operate-apply").await;
    let d = doc["deployments"].as_array().unwrap();
    assert_eq!(d.len(), 2, "{doc}");
    assert_eq!((d[0]["trial_number"].as_i64(), d[0]["state"].as_str()), (Some(best), Some("kept")));
    assert_eq!(d[0]["canary"]["violation"], 0.0, "{doc}");
    assert_eq!((d[1]["trial_number"].as_i64(), d[1]["state"].as_str()), (Some(bad), Some("rolled-back")));
    let why = d[1]["reason"].as_str().unwrap();
    assert!(why.contains("missed SLO: peak_rss_mb") && why.contains("the service answers"), "{why}");
    let table = run_cli(&["--db", db, "deployments", "operate-apply"]).await.unwrap();
    assert!(table.contains("rolled-back") && table.contains("kept"), "{table}");
    println!("{table}");
}

/// A trace study's configuration applied: the canary replays the study's trace on the live
/// service (the tokenizer asked anew, the trace's requests on their schedule) and the
/// configuration is kept; `watch` measures it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_watch_replay_a_trace_study_s_trace_on_the_live_service() {
    common::require_engine();
    let _lock = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let rows: &[(u64, u32, u32, &[u64])] =
        &[(0, 120, 6, &[1]), (400, 300, 4, &[1, 2, 3]), (900, 64, 8, &[4]), (1300, 200, 5, &[1, 2])];
    let trace = crate::trace::write_trace(dir.path(), rows);
    let space = crate::trace::trace_space(dir.path(), "operate-trace", &trace, false, 128);
    let (db, t) = crate::trace::tune_on_schedule(dir.path(), &space, "operate-trace").await;
    assert_eq!(t["state"], "complete", "{t:#}");
    let (db, trial) = (db.to_str().unwrap(), t["number"].as_i64().unwrap());

    // The service already runs the configuration; applying it again restarts it and canaries it.
    let service = Service::new(dir.path());
    std::fs::create_dir_all(service.env.parent().unwrap()).unwrap();
    std::fs::write(&service.env, exported_lines(db, "operate-trace", trial).await.join("\n") + "\n").unwrap();
    service.restart().await;
    // A canary whose client fell behind the trace's schedule (this shared host) is rolled back
    // for that reason, and tried again, up to three times.
    let mut kept = None;
    for attempt in 1..=3 {
        match apply(db, "operate-trace", trial, &service).await {
            Ok(out) => {
                kept = Some(out);
                break;
            }
            Err(e) => {
                let why = format!("{e:#}");
                let rows = deployments(db, "operate-trace").await;
                let reason = rows["deployments"].as_array().unwrap().last().unwrap()["reason"].to_string();
                assert!(reason.contains("fell behind the trace's schedule"), "attempt {attempt}: {why}: {reason}");
                eprintln!("canary {attempt} spoiled by the client: {reason}");
                service.wait_healthy().await;
            }
        }
    }
    let out = kept.expect("a canary ran on schedule in three attempts");
    assert!(out.contains(&format!("kept: trial {trial}: canary held")), "{out}");
    let doc = deployments(db, "operate-trace").await;
    let canary = &doc["deployments"].as_array().unwrap().last().unwrap()["canary"];
    assert_eq!(canary["violation"], 0.0, "{doc}");
    // The trace's 4 requests over its 1.3 s schedule, as in the study (a dataset run at the
    // space's concurrency would stream many times the tokens a second).
    let ratio = canary["objective"].as_f64().unwrap() / t["objective"].as_f64().unwrap();
    assert!((0.5..2.0).contains(&ratio), "canary {canary} against the study's {}", t["objective"]);

    let (out, code) = watch(db, "operate-trace", &[]).await;
    assert!(code == 0 || code == 2, "watch measured the trace study: {code} {out}");
    assert!(!out.contains("implemented for dataset"), "{out}");
    println!("{out}");
}

/// A capacity study is refused by `apply` before anything is written: its canary would have to
/// load the live service to its limit (fake server: no engine needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_a_capacity_study_before_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[objective]\nmaximize = \"capacity\"\n\n[capacity]\nslo = \"ttft_p95_ms\"\nload = \"concurrency\"\nmin = 1\nmax = 2\n\n[slo]\nttft_p95_ms = 3000\nsuccess_rate = 1.0\n";
    let space = common::fake_space(dir.path(), "operate-capacity", "grid", "", extra);
    let db = dir.path().join("t.db");
    let db = db.to_str().unwrap();
    run_cli(&["--db", db, "tune", space.to_str().unwrap(), "--max-trials", "1"]).await.unwrap();
    let env = dir.path().join("service/llama.env");
    let args = ["--db", db, "apply", "operate-capacity", "--trial", "1", "--env-file", env.to_str().unwrap()];
    let args: Vec<&str> = args.into_iter().chain(["--url", "http://127.0.0.1:9", "--", "true"]).collect();
    let err = format!("{:#}", run_cli(&args).await.unwrap_err());
    assert!(err.contains("searches capacity") && err.contains("infertune export operate-capacity --trial 1"), "{err}");
    assert!(!env.exists() && !dir.path().join("service").exists(), "nothing written");
    let doc = deployments(db, "operate-capacity").await;
    assert_eq!(doc["deployments"].as_array().map(Vec::len), Some(0), "nothing recorded: {doc}");
}

/// A study of two configurations that both meet the SLOs (Q4_1 and Q4_0 at ctx 2048), with the
/// models read from `models`. Returns (best, other).
async fn study_of_two(dir: &Path, db: &str, name: &str, models: &Path) -> (i64, i64) {
    let params = r#"quant = { values = ["Q4_1", "Q4_0"], template = "model", default = "Q4_1" }
parallel = { values = [2], flag = "-np", default = 2 }
ctx = { values = [2048], flag = "-c", default = 2048 }"#;
    let space = operate_space(dir, name, models, params, GOAL);
    run_cli(&["--db", db, "tune", space.to_str().unwrap()]).await.unwrap();
    let trials = common::trials_json(Path::new(db), name).await;
    assert!(trials.iter().all(|t| t["meets_slos"] == true), "{trials:?}");
    let best: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db, "best", name, "--json"]).await.unwrap()).unwrap();
    let best = best["number"].as_i64().unwrap();
    let best_params = &trials.iter().find(|t| t["number"] == best).expect("the best trial")["params"];
    let other = trials.iter().find(|t| t["params"] != *best_params).expect("the other configuration");
    (best, other["number"].as_i64().unwrap())
}

/// Stop llama-servers a killed apply's restart may have left on the service's port.
fn stop_servers_on(port: u16) {
    for pid in common::processes_matching(&format!("--port {port}")) {
        // SAFETY: signalling a process this test started (found by its port argument).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// Issue 19 proof 2: `apply` killed with SIGKILL at random points, 10 rounds (8 with a slow fake
/// restart command, 2 with the real supervisor): the service's file is always the old one or
/// the new one, byte for byte, and a rerun of `apply` completes (kept, or rolled back to the old
/// file), recording the killed run as interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_killed_at_random_points_leaves_the_old_or_the_new_file_and_a_rerun_completes() {
    use rand::{RngExt, SeedableRng};
    common::require_engine();
    let _lock = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let db = db.to_str().unwrap();
    let (a, b) = study_of_two(dir.path(), db, "operate-kill", &repo().join("models")).await;
    let service = Service::new(dir.path());
    std::fs::create_dir_all(service.env.parent().unwrap()).unwrap();
    std::fs::write(&service.env, exported_lines(db, "operate-kill", a).await.join("\n") + "\n").unwrap();
    service.restart().await;
    let bin = env!("CARGO_BIN_EXE_infertune");
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let mut current = a;
    let mut killed_at = Vec::new();
    for round in 0..10 {
        let next = if current == a { b } else { a };
        let restart: Vec<String> = if round < 8 { vec!["sleep".into(), "0.4".into()] } else { service.restart_argv() };
        let mut args: Vec<String> = ["--db", db, "apply", "operate-kill", "--trial", &next.to_string(), "--env-file"]
            .iter()
            .map(|s| s.to_string())
            .chain([service.env.display().to_string(), "--url".into(), service.url(), "--".into()])
            .collect();
        args.extend(restart);
        let old = std::fs::read(&service.env).unwrap();
        let delay = rng.random_range(0..2500u64);
        let mut child = std::process::Command::new(bin)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        killed_at.push(delay);
        let after_kill = std::fs::read(&service.env).unwrap();
        let rendered = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let is_new = rendered(&after_kill).contains(&format!("trial {next} ("));
        assert!(after_kill == old || is_new, "round {round}: neither old nor new:\n{}", rendered(&after_kill));
        if is_new {
            // The new file must be whole: every variable of the trial, nothing else.
            let lines: Vec<String> =
                rendered(&after_kill).lines().filter(|l| !l.starts_with('#')).map(String::from).collect();
            assert_eq!(lines, exported_lines(db, "operate-kill", next).await, "round {round}: a whole new file");
        }
        // The rerun completes: kept (the new file) or rolled back (the old one).
        let status = tokio::process::Command::new(bin).args(&args).output().await.unwrap();
        let code = status.status.code();
        let stdout = String::from_utf8_lossy(&status.stdout);
        assert!(
            matches!(code, Some(0) | Some(2)),
            "round {round}: rerun exit {code:?}: {stdout}{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let final_text = std::fs::read_to_string(&service.env).unwrap();
        if code == Some(0) {
            assert!(final_text.contains(&format!("trial {next} (")), "round {round}: kept means the new file");
            current = next;
        } else {
            assert_eq!(final_text.as_bytes(), old.as_slice(), "round {round}: rolled back means the old file");
        }
        if round >= 8 {
            service.wait_healthy().await;
        }
    }
    let doc = deployments(db, "operate-kill").await;
    let states: Vec<&str> =
        doc["deployments"].as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap()).collect();
    // Two rows a round, in order: the killed apply (interrupted, or finished when the kill came
    // after it was done), then its rerun, which always finishes.
    assert_eq!(states.len(), 20, "every apply is recorded: {states:?}");
    for (round, pair) in states.chunks(2).enumerate() {
        assert!(matches!(pair[0], "interrupted" | "kept" | "rolled-back"), "round {round}: {states:?}");
        assert!(matches!(pair[1], "kept" | "rolled-back"), "round {round}: the rerun finished: {states:?}");
    }
    assert!(!states.contains(&"running"), "no apply left running: {states:?}");
    println!("killed after (ms): {killed_at:?}\nstates: {states:?}");
    // (this service's own port: a new `Service` would draw another)
    let port = service.port;
    drop(service);
    stop_servers_on(port);
}

/// Copy the repo's model files for `quants` into `dir` (a test may then replace one).
fn copy_models(dir: &Path, quants: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for q in quants {
        let name = format!("SmolLM2-135M-Instruct-{q}.gguf");
        std::fs::copy(repo().join("models").join(&name), dir.join(&name)).unwrap();
    }
    dir.to_path_buf()
}

/// `watch STUDY ...` in-process: its stdout, and the exit status it asks for (0 when none).
async fn watch(db: &str, study: &str, extra: &[&str]) -> (String, u8) {
    let mut args = vec!["--db", db, "watch", study];
    args.extend_from_slice(extra);
    let cli = <infertune::cli::Cli as clap::Parser>::try_parse_from(std::iter::once("infertune").chain(args)).unwrap();
    let mut out = Vec::new();
    let code = match infertune::cli::run(cli, &mut out).await {
        Ok(()) => 0,
        Err(e) => e.downcast_ref::<ExitStatus>().map(|s| s.0).unwrap_or_else(|| panic!("watch failed: {e:#}")),
    };
    (String::from_utf8(out).unwrap(), code)
}

/// Issue 19 proof 3: a watch series on the real engine, then the deployed model file replaced by
/// another quantization (Q8_0 bytes under the Q4_0 name) and the service restarted: the next
/// watch reports the fingerprint change, writes it to the textfile, exits 3, and `--retune`
/// starts a warm-started study whose first trial is the old best.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_a_replaced_model_file_and_retunes_from_the_old_best() {
    common::require_engine();
    let _lock = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let db = db.to_str().unwrap();
    let models = copy_models(&dir.path().join("models"), &["Q4_1", "Q4_0"]);
    let (best, _) = study_of_two(dir.path(), db, "operate-watch", &models).await;
    // Deployed by hand, as an operator who exported it would (the canary is `apply`'s tests'
    // subject, not this one's): watch takes the configuration the study names as the deployed one.
    let service = Service::new(dir.path());
    std::fs::create_dir_all(service.env.parent().unwrap()).unwrap();
    std::fs::write(&service.env, exported_lines(db, "operate-watch", best).await.join("\n") + "\n").unwrap();
    service.restart().await;
    let url = service.url();
    let textfile = dir.path().join("textfile");
    let tf = textfile.to_str().unwrap();

    // The series: the configuration as deployed, on the same files.
    for _ in 0..2 {
        let (out, code) = watch(db, "operate-watch", &["--url", &url, "--textfile", tf]).await;
        assert!(code == 0 || code == 2, "no fingerprint change yet: {code} {out}");
        assert!(!out.contains("fingerprint changed"), "{out}");
    }
    let prom = std::fs::read_to_string(textfile.join("infertune_watch_operate-watch.prom")).unwrap();
    assert!(prom.contains("infertune_watch_fingerprint_changed{study=\"operate-watch\"} 0"), "{prom}");

    // The model file under the deployed name becomes another quantization; the service restarts.
    let trials = common::trials_json(Path::new(db), "operate-watch").await;
    let best_trial = trials.iter().find(|t| t["number"] == best).unwrap();
    let quant = best_trial["params"]["quant"].as_str().unwrap();
    let deployed = models.join(format!("SmolLM2-135M-Instruct-{quant}.gguf"));
    let replacement = dir.path().join("replacement.gguf");
    std::fs::copy(repo().join("models/SmolLM2-135M-Instruct-Q8_0.gguf"), &replacement).unwrap();
    std::fs::rename(&replacement, &deployed).unwrap();
    service.restart().await;

    let (out, code) =
        watch(db, "operate-watch", &["--url", &url, "--textfile", tf, "--retune", "--retune-trials", "1"]).await;
    assert_eq!(code, 3, "the fingerprint-change exit status: {out}");
    assert!(
        out.starts_with(&format!("drift: trial {best}: fingerprint changed: model '{}' sha256", deployed.display())),
        "{out}"
    );
    let prom = std::fs::read_to_string(textfile.join("infertune_watch_operate-watch.prom")).unwrap();
    assert!(prom.contains("infertune_watch_fingerprint_changed{study=\"operate-watch\"} 1"), "{prom}");
    assert!(out.contains("re-tune: study 'operate-watch-retune-1', 1 trials"), "{out}");

    let retuned = common::trials_json(Path::new(db), "operate-watch-retune-1").await;
    assert_eq!(retuned.len(), 1);
    assert_eq!(retuned[0]["params"], best_trial["params"], "the re-tune's first trial is the old best");
    let doc = deployments(db, "operate-watch").await;
    let runs = doc["watches"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{doc}");
    assert_eq!(runs[2]["status"], "drift");
    assert_eq!(runs[2]["retune_study"], "operate-watch-retune-1");
    assert_ne!(runs[2]["fingerprint"]["model_sha256"], runs[0]["fingerprint"]["model_sha256"]);
    println!("{}", run_cli(&["--db", db, "deployments", "operate-watch"]).await.unwrap());
}

/// A fake llama-server (the test fixture) started by hand as the "service" on a free port.
struct FakeService(std::process::Child, u16);

impl FakeService {
    async fn start(args: &[&str]) -> FakeService {
        let port = Service::new(Path::new("/")).port;
        let child = std::process::Command::new(repo().join("tests/fixtures/fake-llama-server"))
            .args(args)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Waited for on drop.
        let service = FakeService(child, port);
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        for _ in 0..200 {
            if client.get(format!("http://127.0.0.1:{port}/health")).send().await.is_ok_and(|r| r.status().is_success())
            {
                return service;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the fake server never answered");
    }
}

impl Drop for FakeService {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `apply --dry-run` prints the file's diff and the commands (`--unit`: daemon-reload, restart),
/// writes nothing, runs nothing, records nothing. Fast: the fake server fixture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_dry_run_prints_the_diff_and_the_commands_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let db = db.to_str().unwrap();
    let space = common::fake_space(dir.path(), "dry", "grid", r#"np = { values = [1, 3], flag = "-np" }"#, "");
    run_cli(&["--db", db, "tune", space.to_str().unwrap()]).await.unwrap();
    let env = dir.path().join("svc.env");
    std::fs::write(&env, "LLAMA_ARG_N_PARALLEL=1\n").unwrap();
    let e = env.to_str().unwrap();
    let out = run_cli(&[
        "--db",
        db,
        "apply",
        "dry",
        "--trial",
        "2",
        "--env-file",
        e,
        "--url",
        "http://127.0.0.1:9",
        "--dry-run",
        "--",
        "systemctl",
        "restart",
        "llama",
    ])
    .await
    .unwrap();
    assert!(out.contains(&format!("--- {e}\n+++ {e} (new)\n- LLAMA_ARG_N_PARALLEL=1\n")), "{out}");
    assert!(out.contains("+ # written by infertune apply: study 'dry', trial 2"), "{out}");
    assert!(out.contains("would run: systemctl restart llama\n"), "{out}");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "LLAMA_ARG_N_PARALLEL=1\n", "nothing written");
    assert!(!infertune::deploy::file::backup_path(&env).exists());
    let out = run_cli(&["--db", db, "apply", "dry", "--unit", "llama", "--url", "http://127.0.0.1:9", "--dry-run"])
        .await
        .unwrap();
    assert!(out.contains("/etc/systemd/system/llama.service.d/infertune.conf (does not exist)"), "{out}");
    assert!(
        out.contains("+ [Service]")
            && out.contains("would run: systemctl daemon-reload\nwould run: systemctl restart llama.service"),
        "{out}"
    );
    assert_eq!(deployments(db, "dry").await["deployments"], serde_json::json!([]), "a dry run is not an apply");
    // Bad input names what is missing.
    let err = run_cli(&["--db", db, "apply", "dry", "--env-file", e, "--url", "http://x"]).await.unwrap_err();
    assert!(format!("{err:#}").contains("need the restart command after `--`"), "{err:#}");
    let err = run_cli(&["--db", db, "apply", "dry", "--dry-run"]).await.unwrap_err();
    assert!(format!("{err:#}").contains("no service block"), "{err:#}");
    // A flag without an environment form cannot go into an env file: refused, naming it.
    let space = common::fake_space(dir.path(), "flags", "grid", r#"tok = { values = [3], flag = "--token-ms" }"#, "");
    run_cli(&["--db", db, "tune", space.to_str().unwrap()]).await.unwrap();
    let err =
        run_cli(&["--db", db, "apply", "flags", "--env-file", e, "--url", "http://x", "--", "true"]).await.unwrap_err();
    assert!(format!("{err:#}").contains("trial 1 sets flags with no environment form (--token-ms 3)"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "LLAMA_ARG_N_PARALLEL=1\n", "nothing written");
}

/// The watch and re-tune flow on the fake server fixture (fast; the real-engine version is
/// `watch_reports_a_replaced_model_file_and_retunes_from_the_old_best`): a run against the live
/// fake server holds or regresses but sees no fingerprint change; after the model file changes it
/// exits 3 and `--retune` runs the old best first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_a_fake_service_notices_a_changed_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let db = db.to_str().unwrap();
    let params = r#"tok = { values = [1, 20], flag = "--token-ms", default = 20 }"#;
    let space = common::fake_space(dir.path(), "wfast", "grid", params, "[slo]\nsuccess_rate = 1.0\n");
    run_cli(&["--db", db, "tune", space.to_str().unwrap()]).await.unwrap();
    let best: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db, "best", "wfast", "--json"]).await.unwrap()).unwrap();
    let service = FakeService::start(&["--token-ms", "1"]).await;
    let url = format!("http://127.0.0.1:{}", service.1);
    let tf = dir.path().join("prom");
    let (out, code) = watch(db, "wfast", &["--url", &url, "--textfile", tf.to_str().unwrap(), "--json"]).await;
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(code == 0 || code == 2, "{out}");
    assert_eq!(doc["run"]["drift"], serde_json::Value::Null, "{out}");
    assert_eq!(doc["trial"], best["number"]);
    std::fs::write(dir.path().join("fake-a.gguf"), "other weights").unwrap();
    let (out, code) = watch(db, "wfast", &["--url", &url, "--retune", "--retune-trials", "2"]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("fingerprint changed: model '") && out.contains("fake-a.gguf' sha256"), "{out}");
    let retuned = common::trials_json(Path::new(db), "wfast-retune-1").await;
    assert_eq!(retuned.len(), 2);
    assert_eq!(retuned[0]["params"], best["params"], "the old best runs first");
    let prom = std::fs::read_to_string(tf.join("infertune_watch_wfast.prom")).unwrap();
    assert!(prom.contains("infertune_watch_slo_met{study=\"wfast\"} 1"), "{prom}");
    let report = run_cli(&["--db", db, "report", "wfast"]).await.unwrap();
    assert!(report.contains("<h2>Deployments and watch</h2>") && report.contains("aria-label=\"watch series\""));
    assert!(!report.contains("://"), "the report holds no URL");
}
