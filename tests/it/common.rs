//! Shared test helpers: paths into the repo, the real engine's presence, and running the CLI
//! in-process.

use std::path::{Path, PathBuf};

use clap::Parser;
use infertune::cli::{self, Cli};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Engine tests share two cores, and llama.cpp's threads spin while they wait: two engines at
/// once slow each other down by an order of magnitude. This lock serializes every test that
/// runs an engine, across processes too (an flock on a file in the temp dir).
pub struct EngineLock(#[allow(dead_code)] std::fs::File);

impl EngineLock {
    pub async fn acquire() -> EngineLock {
        let path = std::env::temp_dir().join("infertune-engine-tests.lock");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        tokio::task::spawn_blocking(move || {
            // SAFETY: flock on a file descriptor we own; released when the file is closed.
            let rc = unsafe { libc::flock(fd, libc::LOCK_EX) };
            assert_eq!(rc, 0, "flock {}", path.display());
        })
        .await
        .unwrap();
        EngineLock(file)
    }
}

/// Panic with the set-up command when the engine or the models are missing.
pub fn require_engine() {
    let venv = std::env::var_os("INFERTUNE_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv"));
    let models = repo().join("models");
    for needed in [
        venv.join("bin/python"),
        models.join("SmolLM2-135M-Instruct-Q4_0.gguf"),
        models.join("SmolLM2-135M-Instruct-Q4_1.gguf"),
        models.join("SmolLM2-135M-Instruct-Q8_0.gguf"),
    ] {
        assert!(
            needed.exists(),
            "'{}' is missing: run scripts/setup-llamacpp first (it installs the llama.cpp engine and the models)",
            needed.display()
        );
    }
}

/// Write a space file for the real engine into `dir`, with `params` and extra sections.
pub fn engine_space(dir: &Path, name: &str, strategy: &str, params: &str, extra: &str) -> PathBuf {
    let repo = repo();
    let text = format!(
        r#"[study]
name = "{name}"
strategy = "{strategy}"
seed = 3

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
warmup = 2
max_tokens = 16

{extra}
"#,
        launcher = repo.join("scripts/llama-server").display(),
        models = repo.join("models").display(),
        prompts = repo.join("prompts/chat-mix.jsonl").display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Run the CLI in-process and return its stdout.
pub async fn run_cli(args: &[&str]) -> anyhow::Result<String> {
    let cli = Cli::try_parse_from(std::iter::once("infertune").chain(args.iter().copied()))?;
    let mut out = Vec::new();
    cli::run(cli, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

/// `run_cli` for an open-loop measurement, run again (up to 3 times in all) when it was refused
/// because the client fell behind its schedule: on this 2-core machine other tests' processes can
/// starve the test's own client, which is what that refusal is for, not what the test is about.
/// Each refusal is printed.
pub async fn run_cli_on_schedule(args: &[&str]) -> anyhow::Result<String> {
    let mut attempt = 1;
    loop {
        match run_cli(args).await {
            Err(e) if attempt < 3 && format!("{e:#}").contains("the client fell behind") => {
                eprintln!("attempt {attempt} refused, run again: {e:#}");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// `trials STUDY --json`, parsed.
pub async fn trials_json(db: &Path, study: &str) -> Vec<serde_json::Value> {
    let out = run_cli(&["--db", db.to_str().unwrap(), "trials", study, "--json"]).await.unwrap();
    serde_json::from_str(&out).unwrap()
}

/// Write a space file driving the fake server fixture (`tests/fixtures/fake-llama-server`):
/// fast, deterministic trials for loop, store and fault tests.
pub fn fake_space(dir: &Path, name: &str, strategy: &str, params: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[study]
name = "{name}"
strategy = "{strategy}"
seed = 5

[backend]
kind = "llamacpp"
command = ["{fake}"]
model = "{dir}/fake-{{size}}.gguf"
ready_timeout = "3s"

[params]
size = {{ values = ["a"], template = "model" }}
{params}

[workload]
dataset = "{prompts}"
concurrency = 2
requests = 4
warmup = 0
max_tokens = 4
request_timeout = "2s"

{extra}
"#,
        fake = repo().join("tests/fixtures/fake-llama-server").display(),
        // The model path names the test's own folder, so a test finds its servers by it.
        dir = dir.display(),
        prompts = repo().join("prompts/short-qa.jsonl").display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    // The model file the template names must exist (tune checks before the first trial); a
    // test that wrote its own keeps it.
    let model = dir.join("fake-a.gguf");
    if !model.exists() {
        std::fs::write(&model, "fake weights").unwrap();
    }
    path
}

/// PIDs of live processes whose command line contains `needle`.
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let is_zombie = state.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if !is_zombie && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Poll the database at `db` read-only until a trial numbered `at_least` or later is `running`;
/// its number, or `None` after `timeout`. The file and its tables may not exist yet.
pub async fn wait_for_running_trial(db: &Path, at_least: i64, timeout: std::time::Duration) -> Option<i64> {
    let deadline = std::time::Instant::now() + timeout;
    let mut conn: Option<sqlx::SqlitePool> = None;
    while std::time::Instant::now() < deadline {
        if conn.is_none() && db.exists() {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
            conn = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.ok();
        }
        if let Some(pool) = &conn {
            let found: Result<Option<(i64,)>, _> =
                sqlx::query_as("SELECT number FROM trials WHERE state = 'running' AND number >= ?1 LIMIT 1")
                    .bind(at_least)
                    .fetch_optional(pool)
                    .await;
            if let Ok(Some((number,))) = found {
                pool.close().await;
                return Some(number);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if let Some(pool) = conn {
        pool.close().await;
    }
    None
}

/// Poll the database at `db` read-only until trial `number` records its server's PID (stored
/// once the server answered its health check); the PID, or `None` after `timeout`.
pub async fn wait_for_server_pid(db: &Path, number: i64, timeout: std::time::Duration) -> Option<u32> {
    let deadline = std::time::Instant::now() + timeout;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.ok()?;
    let mut found = None;
    while found.is_none() && std::time::Instant::now() < deadline {
        let row: Result<Option<(Option<i64>,)>, _> =
            sqlx::query_as("SELECT server_pid FROM trials WHERE number = ?1").bind(number).fetch_optional(&pool).await;
        found = row.ok().flatten().and_then(|(pid,)| pid).map(|pid| pid as u32);
        if found.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    pool.close().await;
    found
}

/// A llama-server started by hand (as a user would before `bench` or `capture`), on
/// `127.0.0.1` and a free port, with `flags` after the model; killed (its process group) on drop.
/// `.1` is its base URL.
pub struct Engine(pub std::process::Child, pub String);

impl Engine {
    pub fn start(quant: &str, flags: &[&str]) -> Engine {
        use std::io::{BufRead, BufReader};
        use std::os::unix::process::CommandExt;
        let model = repo().join(format!("models/SmolLM2-135M-Instruct-{quant}.gguf"));
        let mut child = std::process::Command::new(repo().join("scripts/llama-server"))
            .args(["-m", &model.display().to_string()])
            .args(flags)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = lines.by_ref().find_map(|l| Some(listening_url(l.ok()?.split("server is listening on ").nth(1)?)));
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Engine(child, url.expect("llama-server printed its address"))
    }
}

/// `http://HOST:PORT` at the start of `text`: the engine's log lines from other threads can
/// run into it without a newline (seen: `http://127.0.0.1:45819I srv  init: model loaded`).
fn listening_url(text: &str) -> String {
    let text = text.trim();
    let host_at = text.find("://").map_or(0, |i| i + 3);
    let port_at = text[host_at..].find(':').map_or(text.len(), |i| host_at + i + 1);
    let digits = text[port_at..].bytes().take_while(u8::is_ascii_digit).count();
    text[..port_at + digits].to_string()
}

#[test]
fn listening_url_stops_at_the_port() {
    assert_eq!(listening_url("http://127.0.0.1:45819I srv          init: model loaded"), "http://127.0.0.1:45819");
    assert_eq!(listening_url("http://127.0.0.1:8080\n"), "http://127.0.0.1:8080");
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: signalling the process group we created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// The medium recording, and a copy of its space in `dir` searched by tpe (relative paths made
/// absolute): a replayed study that exercises the search, not the grid.
pub fn tpe_replay(dir: &Path) -> (PathBuf, PathBuf) {
    let recording = repo().join("tests/fixtures/landscapes/llamacpp-medium.json");
    let toml = std::fs::read_to_string(repo().join("tests/fixtures/landscapes/llamacpp-medium.toml")).unwrap();
    let space = dir.join("replay.toml");
    let toml = toml
        .replace("strategy = \"grid\"", "strategy = \"tpe\"")
        .replace("../../../", &format!("{}/", repo().display()));
    std::fs::write(&space, toml).unwrap();
    (recording, space)
}
