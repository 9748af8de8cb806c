//! End-to-end Ollama studies against the Ollama-protocol test fixture
//! (`tests/fixtures/ollama/`, which serves Ollama's API and generates with the real llama.cpp
//! engine; `service_mode_on_exit_*` swaps in the fake llama-server and needs no engine). Real
//! Ollama is not installable here; `real_ollama_study` runs the same study against
//! a real `ollama` binary on a machine that has one:
//!
//! ```sh
//! INFERTUNE_OLLAMA=$(command -v ollama) cargo test --test it ollama::real_ollama_study -- --ignored
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{EngineLock, repo, require_engine, run_cli, trials_json};

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/ollama")
}

/// A trimmed `ollama-cpu.toml`: `backend` is the `[backend]` body after `kind`.
fn ollama_space(dir: &Path, name: &str, backend: &str, params: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[study]
name = "{name}"
strategy = "grid"
seed = 3

[backend]
kind = "ollama"
model = "smollm2:135m-instruct-{{quant}}"
ready_timeout = "60s"
{backend}

[params]
{params}

[workload]
dataset = "{prompts}"
concurrency = 2
requests = 8
warmup = 2
max_tokens = 16

[slo]
ttft_p95_ms = 60000
success_rate = 1.0
peak_rss_mb = 16384

{extra}
"#,
        prompts = repo().join("prompts/chat-mix.jsonl").display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Distinct error messages of a study's failed requests (for assertion messages).
async fn request_errors(db: &Path) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT DISTINCT error_kind || ': ' || error_message FROM samples WHERE error_kind IS NOT NULL")
            .fetch_all(&pool)
            .await
            .unwrap();
    rows.into_iter().map(|(m,)| m).collect()
}

fn env_lines_of(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("Environment=\"")?.strip_suffix('"')?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_mode_study_restarts_reloads_and_reuses() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let store_dir = dir.path().join("models");
    // Grid order (last varies fastest): p1/1024/k40 restart, p1/1024/k1 reuse, p1/2048/k40 reload,
    // p1/2048/k1 reuse, p2/1024/k40 restart.
    let space = ollama_space(
        dir.path(),
        "ollama-e2e",
        &format!(
            "command = [\"{}\", \"serve\"]\nenv = {{ OLLAMA_MODELS = \"{}\", OLLAMA_FLASH_ATTENTION = \"1\" }}",
            fixture().join("ollama").display(),
            store_dir.display()
        ),
        r#"parallel = { values = [1, 2], env = "OLLAMA_NUM_PARALLEL" }
quant = { values = ["q4_0"], template = "model" }
num_ctx = { values = [1024, 2048], option = "num_ctx" }
top_k = { values = [40, 1], option = "top_k" }"#,
        "",
    );
    let text = std::fs::read_to_string(&space).unwrap().replace("seed = 3", "seed = 3\nbudget = { trials = 5 }");
    std::fs::write(&space, text).unwrap();
    let db_s = db.to_str().unwrap();
    let out = run_cli(&["--db", db_s, "tune", space.to_str().unwrap()]).await.unwrap();
    assert!(
        out.contains("pulling 'smollm2:135m-instruct-q4_0': success"),
        "a missing tag is pulled with progress:\n{out}"
    );
    assert!(out.contains("stopped: budget"), "{out}");

    eprintln!("{out}\n{}", run_cli(&["--db", db_s, "trials", "ollama-e2e"]).await.unwrap());
    let trials = trials_json(&db, "ollama-e2e").await;
    assert_eq!(trials.len(), 5, "{out}");
    let launches: Vec<&str> = trials.iter().map(|t| t["launch"].as_str().unwrap()).collect();
    assert_eq!(launches, ["restart", "reuse", "reload", "reuse", "restart"], "{out}");
    let errors = request_errors(&db).await;
    assert!(errors.is_empty(), "failed requests: {errors:#?}\n{out}");
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t:#}");
        assert_eq!(t["metrics"]["success_rate"], 1.0, "{t:#}");
        // Client and server timings side by side, for every trial.
        let server = &t["server"];
        let client_e2e = server["client_e2e_ms"]["p50"].as_f64().unwrap();
        let server_total =
            server["total_ms"]["p50"].as_f64().unwrap_or_else(|| panic!("ollama total_duration stored: {t:#}"));
        assert!(
            server_total > 0.0 && server_total <= client_e2e * 1.5 + 50.0,
            "server {server_total} ms vs client {client_e2e} ms: {t:#}"
        );
        assert!(server["decode_tok_per_s"].as_f64().unwrap() > 1.0, "{t:#}");
        assert!(server["client_decode_tok_per_s"].as_f64().unwrap() > 1.0, "{t:#}");
        assert!(server["model_size_bytes"].as_u64().unwrap() > 10_000_000, "/api/ps size: {t:#}");
        // Recorded from /api/ps. Its value is the fixture's constant (no GPU: 0), so it proves
        // nothing about a measurement and is not asserted.
        assert!(server["model_size_vram_bytes"].is_u64(), "/api/ps size_vram recorded: {t:#}");
        let rss = t["metrics"]["peak_rss_bytes"].as_f64().unwrap();
        assert!((20e6..8e9).contains(&rss), "rss of ollama serve + its llama-server child: {t:#}");
    }
    // A restart starts a process (ready_ms); reload and reuse do not. A restart or reload loads
    // the model (Ollama's load_duration of the preload); a reuse finds it loaded.
    for (t, launch) in trials.iter().zip(&launches) {
        let ready = t["ready_ms"].as_f64();
        let load = t["load_ms"].as_f64().unwrap();
        match *launch {
            "restart" => assert!(ready.is_some() && load > 1.0, "{t:#}"),
            "reload" => {
                assert!(ready.is_none() && load > 1.0, "only num_ctx changed: no restart, a real reload: {t:#}")
            }
            _ => assert!(ready.is_none() && load < 1.0, "{t:#}"),
        }
    }
    let samples: i64 = {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db_s}")).await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM samples WHERE server_json LIKE '%total_duration_ns%'")
            .fetch_one(&pool)
            .await
            .unwrap();
        n
    };
    assert_eq!(samples, 5 * 10, "every request keeps Ollama's own durations");

    // Issue 13 item 5: each trial sends its own prompts, so a reused server's prompt cache
    // never sees them again (before, every trial sent the same seeded prompts).
    let prompts_of = |number: i64| {
        let db_s = db_s.to_string();
        async move {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db_s}")).await.unwrap();
            let rows: Vec<(i64,)> = sqlx::query_as(
                "SELECT s.prompt_index FROM samples s JOIN trials t ON t.id = s.trial_id WHERE t.number = ?1",
            )
            .bind(number)
            .fetch_all(&pool)
            .await
            .unwrap();
            rows.into_iter().map(|(i,)| i).collect::<std::collections::BTreeSet<i64>>()
        }
    };
    for (i, launch) in launches.iter().enumerate().skip(1) {
        if *launch == "reuse" {
            let (before, reused) = (prompts_of(i as i64).await, prompts_of(i as i64 + 1).await);
            assert_eq!(reused.len(), 10, "{reused:?}");
            assert!(
                before.is_disjoint(&reused),
                "trial {} reused the server and resent prompts {before:?} / {reused:?}",
                i + 1
            );
        }
    }

    // The systemd drop-in carries exactly the best trial's server variables.
    let best: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db_s, "best", "ollama-e2e", "--json"]).await.unwrap()).unwrap();
    let drop_in = run_cli(&["--db", db_s, "export", "ollama-e2e", "--format", "systemd"]).await.unwrap();
    assert!(drop_in.contains("\n[Service]\n"), "{drop_in}");
    let expected: BTreeMap<String, String> = [
        ("OLLAMA_FLASH_ATTENTION".to_string(), "1".to_string()),
        ("OLLAMA_MODELS".to_string(), store_dir.display().to_string()),
        ("OLLAMA_NUM_PARALLEL".to_string(), best["params"]["parallel"].to_string()),
    ]
    .into();
    assert_eq!(env_lines_of(&drop_in), expected, "{drop_in}");
    let env = run_cli(&["--db", db_s, "export", "ollama-e2e", "--format", "env"]).await.unwrap();
    assert!(env.contains(&format!("OLLAMA_NUM_PARALLEL={}\n", best["params"]["parallel"])), "{env}");
    let modelfile = run_cli(&["--db", db_s, "export", "ollama-e2e", "--format", "modelfile"]).await.unwrap();
    assert!(modelfile.contains("FROM smollm2:135m-instruct-q4_0\n"), "{modelfile}");
    assert!(modelfile.contains(&format!("PARAMETER num_ctx {}\n", best["params"]["num_ctx"])), "{modelfile}");

    // The fingerprint has the fixture's version and the pulled model's digest.
    let studies: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db_s, "studies", "--json"]).await.unwrap()).unwrap();
    let fp = &studies[0]["fingerprint"];
    assert_eq!(fp["engine_version"], "ollama 0.0.0-infertune-fixture");
    assert_eq!(fp["model_sha256"]["smollm2:135m-instruct-q4_0"].as_str().unwrap().len(), 64, "{fp:#}");
}

/// Start (or restart) the fixture service the way the study's restart command does.
fn restart_argv(env_file: &Path, pid_file: &Path, port: u16, log: &Path) -> Vec<String> {
    vec![
        repo().join(".venv/bin/python").display().to_string(),
        fixture().join("restart_service.py").display().to_string(),
        "--env-file".into(),
        env_file.display().to_string(),
        "--pid-file".into(),
        pid_file.display().to_string(),
        "--host".into(),
        format!("127.0.0.1:{port}"),
        "--log".into(),
        log.display().to_string(),
    ]
}

struct Service {
    pid_file: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            // SAFETY: signals the fixture's own process group (it runs in its own session).
            unsafe {
                libc::kill(-pid.trim().parse::<i32>().unwrap(), libc::SIGKILL);
            }
        }
    }
}

async fn wait_up(port: u16) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..200 {
        if client.get(format!("http://127.0.0.1:{port}/")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fixture service did not come up on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_mode_restores_the_env_file() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env_file = dir.path().join("ollama.env");
    let models = dir.path().join("models");
    let original =
        format!("# the operator's own settings\nOLLAMA_NUM_PARALLEL=1\nOLLAMA_MODELS={}\n", models.display());
    std::fs::write(&env_file, &original).unwrap();
    let pid_file = dir.path().join("ollama.pid");
    let log = dir.path().join("ollama.log");
    let argv = restart_argv(&env_file, &pid_file, port, &log);
    let _service = Service { pid_file: pid_file.clone() };
    assert!(std::process::Command::new(&argv[0]).args(&argv[1..]).status().unwrap().success());
    wait_up(port).await;

    let service_space = |name: &str, restart: &[String]| {
        ollama_space(
            dir.path(),
            name,
            &format!(
                "mode = \"service\"\ncommand = [\"ollama\", \"serve\"]\nenv = {{ OLLAMA_MODELS = \"{}\" }}",
                models.display()
            ),
            r#"parallel = { values = [1, 2], env = "OLLAMA_NUM_PARALLEL" }
quant = { values = ["q4_0"], template = "model" }
num_ctx = { values = [1024], option = "num_ctx" }"#,
            &format!(
                "[ollama]\nurl = \"http://127.0.0.1:{port}\"\nenv_file = \"{}\"\nrestart_command = {}\n",
                env_file.display(),
                serde_json::to_string(restart).unwrap()
            ),
        )
    };

    // 1. A normal end: two trials, two restarts through the command, the file put back.
    let db = dir.path().join("t.db");
    let db_s = db.to_str().unwrap();
    let space = service_space("svc", &argv);
    let out = run_cli(&["--db", db_s, "tune", space.to_str().unwrap()]).await.unwrap();
    assert!(out.contains("stopped: exhausted") && out.contains("restored"), "{out}");
    let trials = trials_json(&db, "svc").await;
    let states: Vec<(&str, &str)> =
        trials.iter().map(|t| (t["state"].as_str().unwrap(), t["launch"].as_str().unwrap())).collect();
    assert_eq!(states, [("complete", "restart"), ("complete", "restart")], "{out}");
    let errors = request_errors(&db).await;
    assert!(errors.is_empty(), "failed requests: {errors:#?}\n{out}");
    for t in &trials {
        let rss = t["metrics"]["peak_rss_bytes"].as_f64().unwrap();
        assert!((20e6..8e9).contains(&rss), "RSS of the service found by its port: {t:#}");
    }
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), original, "byte-identical after a normal end");
    let fixture_log = std::fs::read_to_string(&log).unwrap();
    assert!(fixture_log.contains("OLLAMA_NUM_PARALLEL=2"), "the restart applied the trial's variables:\n{fixture_log}");

    // 2. A restart command that fails is a clear error, and the file is still put back.
    let failing = service_space("svc-fail", &["false".to_string()]);
    let err = run_cli(&["--db", db_s, "tune", failing.to_str().unwrap()]).await.unwrap_err();
    assert!(format!("{err:#}").contains("restart command 'false' failed"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), original, "byte-identical after a failed restart");

    // 3. SIGINT mid-study (the real binary): the file is put back before it exits.
    assert!(std::process::Command::new(&argv[0]).args(&argv[1..]).status().unwrap().success());
    wait_up(port).await;
    let sig_space = service_space("svc-int", &argv);
    // Its own database, read with plain SQL below: on a machine where several checkouts share
    // one target dir, the binary may come from another build with other migrations.
    let sig_db = dir.path().join("sigint.db");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_infertune"))
        .args(["--db", sig_db.to_str().unwrap(), "tune", sig_space.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut changed = false;
    for _ in 0..600 {
        if std::fs::read_to_string(&env_file).unwrap() != original {
            changed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(changed, "the study wrote a trial's settings into the env file");
    // Signal mid-workload: once the restarted fixture has logged a chat request (its gin lines).
    let serving = |from: usize| {
        std::fs::read_to_string(&log).unwrap_or_default().get(from..).is_some_and(|t| t.contains("POST /api/chat"))
    };
    let log_start = std::fs::read_to_string(&log).map(|t| t.len()).unwrap_or(0);
    let mut is_serving = false;
    for _ in 0..600 {
        if serving(log_start) {
            is_serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(is_serving, "the trial's workload reached the service");
    // SAFETY: signals the child we spawned.
    unsafe {
        libc::kill(child.id().unwrap() as i32, libc::SIGINT);
    }
    let status =
        tokio::time::timeout(Duration::from_secs(90), child.wait()).await.expect("tune exits after SIGINT").unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), original, "byte-identical after SIGINT");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", sig_db.display())).await.unwrap();
    let states: Vec<(String,)> =
        sqlx::query_as("SELECT state FROM trials ORDER BY number").fetch_all(&pool).await.unwrap();
    assert!(states.iter().any(|(s,)| s == "interrupted"), "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real ollama binary"]
async fn real_ollama_study() {
    // INFERTUNE_OLLAMA=$(command -v ollama) cargo test --test it ollama::real_ollama_study -- --ignored
    let ollama = std::env::var("INFERTUNE_OLLAMA").unwrap_or_else(|_| "ollama".into());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space = ollama_space(
        dir.path(),
        "real-ollama",
        &format!("command = [\"{ollama}\", \"serve\"]"),
        r#"parallel = { values = [1, 2], env = "OLLAMA_NUM_PARALLEL" }
quant = { values = ["q4_0"], template = "model" }
num_ctx = { values = [1024, 2048], option = "num_ctx" }"#,
        "",
    );
    let db_s = db.to_str().unwrap();
    let out = run_cli(&["--db", db_s, "tune", space.to_str().unwrap()]).await.unwrap();
    let trials = trials_json(&db, "real-ollama").await;
    let launches: Vec<&str> = trials.iter().map(|t| t["launch"].as_str().unwrap()).collect();
    assert_eq!(launches, ["restart", "reload", "restart", "reload"], "{out}");
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t:#}");
        assert!(t["server"]["total_ms"]["p50"].as_f64().is_some(), "{t:#}");
    }
    let drop_in = run_cli(&["--db", db_s, "export", "real-ollama", "--format", "systemd"]).await.unwrap();
    assert!(drop_in.contains("Environment=\"OLLAMA_NUM_PARALLEL="), "{drop_in}");
}

/// `--on-exit best` and `--on-exit leave` in service mode, without the engine: the fixture's
/// llama-server child is the fake server (`tests/fixtures/fake-llama-server`), and its model
/// "registry" a folder with a stand-in GGUF file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_mode_on_exit_best_deploys_the_best_trial_and_leave_keeps_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env_file = dir.path().join("ollama.env");
    let models = dir.path().join("models");
    let original =
        format!("# the operator's own settings\nOLLAMA_LOAD_TIMEOUT=10m\nOLLAMA_MODELS={}\n", models.display());
    let pid_file = dir.path().join("ollama.pid");
    let restart = fake_service_restart(dir.path(), &env_file, &pid_file, port);
    let _service = Service { pid_file: pid_file.clone() };
    let db = dir.path().join("t.db");
    let db_s = db.to_str().unwrap();

    let study = |name: &str, on_exit: &str| {
        let file = format!("env_file = \"{}\"", env_file.display());
        let space = load_timeout_space(dir.path(), name, &models, port, &file, &restart);
        let (db_s, on_exit) = (db_s.to_string(), on_exit.to_string());
        async move {
            let out = run_cli(&["--db", &db_s, "tune", space.to_str().unwrap(), "--on-exit", &on_exit]).await.unwrap();
            assert!(out.contains("stopped: exhausted"), "{out}");
            out
        }
    };
    let value_in_file = || {
        let text = std::fs::read_to_string(&env_file).unwrap();
        let line = text.lines().find_map(|l| l.strip_prefix("OLLAMA_LOAD_TIMEOUT=")).map(str::to_string);
        (line, text)
    };

    // The service runs before the first study (which pulls the model through it) and is left
    // running by each.
    std::fs::write(&env_file, &original).unwrap();
    assert!(std::process::Command::new(&restart[0]).args(&restart[1..]).status().unwrap().success());
    wait_up(port).await;
    for (name, on_exit, expected) in [("svc-best", "best", "5m"), ("svc-leave", "leave", "1ms")] {
        std::fs::write(&env_file, &original).unwrap();
        let out = study(name, on_exit).await;
        let trials = trials_json(&db, name).await;
        let states: Vec<&str> = trials.iter().map(|t| t["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["complete", "infeasible"], "{out}\n{trials:#?}");
        let (value, text) = value_in_file();
        assert_eq!(value.as_deref(), Some(expected), "--on-exit {on_exit}:\n{text}\n{out}");
        assert!(text.contains(&format!("OLLAMA_MODELS={}", models.display())), "{text}");
        let wrote_best = format!("wrote the best trial to '{}' and restarted the service", env_file.display());
        assert_eq!(out.contains(&wrote_best), on_exit == "best", "{out}");
        assert!(!out.contains("restored"), "{out}");
    }
}

/// Service mode with a systemd drop-in (`[ollama] drop_in`) instead of an env file: each trial's
/// variables reach the restarted service through `Environment=` lines (trial 2's 1 ms load
/// timeout makes it fail, which it could only do if the drop-in was read), and the drop-in is put
/// back byte for byte at the end. No engine: the fixture runs the fake llama-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_mode_with_a_systemd_drop_in_applies_each_trial_and_restores_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let drop_in = dir.path().join("ollama.service.d").join("infertune.conf");
    std::fs::create_dir_all(drop_in.parent().unwrap()).unwrap();
    let models = dir.path().join("models");
    let original = format!(
        "[Service]\n# the operator's own settings\nEnvironment=\"OLLAMA_LOAD_TIMEOUT=10m\"\nEnvironment=\"OLLAMA_MODELS={}\"\n",
        models.display()
    );
    std::fs::write(&drop_in, &original).unwrap();
    let pid_file = dir.path().join("ollama.pid");
    let restart = fake_service_restart(dir.path(), &drop_in, &pid_file, port);
    let _service = Service { pid_file: pid_file.clone() };
    assert!(std::process::Command::new(&restart[0]).args(&restart[1..]).status().unwrap().success());
    wait_up(port).await;
    let file = format!("drop_in = \"{}\"", drop_in.display());
    let space = load_timeout_space(dir.path(), "svc-drop-in", &models, port, &file, &restart);
    let db = dir.path().join("t.db");
    let out = run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()]).await.unwrap();
    assert!(out.contains("stopped: exhausted") && out.contains("restored"), "{out}");
    let trials = trials_json(&db, "svc-drop-in").await;
    let states: Vec<&str> = trials.iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["complete", "infeasible"], "the drop-in's variables reached the service:\n{out}");
    assert_eq!(std::fs::read_to_string(&drop_in).unwrap(), original, "byte-identical after the study");
}

/// `systemctl restart`, played by the fixture's script, for an Ollama fixture whose runner is the
/// fake llama-server (no engine; a stand-in model file), reading `env_file` (KEY=value lines or
/// a systemd drop-in). Stdlib-only python throughout.
fn fake_service_restart(dir: &Path, env_file: &Path, pid_file: &Path, port: u16) -> Vec<String> {
    let registry = dir.join("gguf");
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::write(registry.join("SmolLM2-135M-Instruct-Q4_0.gguf"), "fake weights").unwrap();
    [
        "env".to_string(),
        format!("INFERTUNE_FIXTURE_LLAMA_SERVER={}", repo().join("tests/fixtures/fake-llama-server").display()),
        format!("INFERTUNE_MODELS_DIR={}", registry.display()),
        "python3".to_string(),
    ]
    .into_iter()
    .chain(restart_argv(env_file, pid_file, port, &dir.join("ollama.log")).into_iter().skip(1))
    .collect()
}

/// A service-mode space over the fake service whose trial 1 loads (a 5 minute load timeout) and
/// trial 2 cannot (1 ms), so the best trial is not the last. `file_line` names the service's
/// file (`env_file = "..."` or `drop_in = "..."`).
fn load_timeout_space(
    dir: &Path,
    name: &str,
    models: &Path,
    port: u16,
    file_line: &str,
    restart: &[String],
) -> PathBuf {
    ollama_space(
        dir,
        name,
        &format!(
            "mode = \"service\"\ncommand = [\"ollama\", \"serve\"]\nenv = {{ OLLAMA_MODELS = \"{}\" }}",
            models.display()
        ),
        r#"load_timeout = { values = ["5m", "1ms"], env = "OLLAMA_LOAD_TIMEOUT" }
quant = { values = ["q4_0"], template = "model" }"#,
        &format!(
            "[ollama]\nurl = \"http://127.0.0.1:{port}\"\n{file_line}\nrestart_command = {}\n",
            serde_json::to_string(restart).unwrap()
        ),
    )
}
