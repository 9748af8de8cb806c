//! Model files before the first trial: fingerprinting multi-gigabyte files in constant memory
//! and only once across resumes, and a missing file refused (or skipped on request) up front.
//! See issue 13, items 4 and 8.

use std::process::{Command, Stdio};
use std::time::Instant;

use infertune::daemon::{self, Event, Options, Shutdown};
use infertune::space::{Space, Value};
use infertune::store::Store;

use crate::common::{fake_space, run_cli};

/// The binary under test (see `faults::bin`).
fn bin() -> String {
    std::env::var("INFERTUNE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_infertune").to_string())
}

/// A fake-server space whose `size` template takes `values` (model files `fake-{size}.gguf`).
fn space_with_sizes(dir: &std::path::Path, name: &str, values: &str) -> std::path::PathBuf {
    let path = fake_space(dir, name, "grid", r#"np = { values = [1], flag = "-np" }"#, "");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(r#"values = ["a"], template"#, &format!("values = {values}, template")))
        .unwrap();
    path
}

/// What one `tune --max-trials 0` run (fingerprint and study set-up, no trial) cost.
struct Measured {
    /// Peak RSS of the daemon (and of the short `--version` child it waited for), in KiB.
    max_rss_kib: i64,
    /// The daemon's own `VmHWM` (peak RSS), last read before it exited, in KiB.
    vm_hwm_kib: i64,
    /// "hashing model file" log lines.
    hashed: usize,
    seconds: f64,
}

/// Run the real binary and take its peak RSS from `wait4` (this child's own rusage, not that of
/// other tests' children running at the same time).
#[expect(clippy::zombie_processes, reason = "wait4 reaps the child, for its rusage")]
fn tune_once(db: &std::path::Path, space: &std::path::Path) -> Measured {
    let stderr_path = db.with_extension(format!("stderr-{}", rand::random::<u32>()));
    let started = Instant::now();
    let child = Command::new(bin())
        .args(["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap(), "--max-trials", "0"])
        .env("INFERTUNE_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // VmHWM only grows; the last value read before the exit is the daemon's own peak.
    let pid = child.id();
    let poller = std::thread::spawn(move || {
        let mut last = 0;
        while let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let Some(kib) = text.lines().find_map(|l| l.strip_prefix("VmHWM:")) else { break };
            last = kib.trim().trim_end_matches("kB").trim().parse().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        last
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps the child we spawned (std's Child never waits).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(rc, child.id() as libc::pid_t);
    let vm_hwm_kib = poller.join().unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "tune failed:\n{stderr}");
    Measured {
        max_rss_kib: usage.ru_maxrss,
        vm_hwm_kib,
        hashed: stderr.matches("hashing model file").count(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_gb_model_is_hashed_in_constant_memory_and_once_across_resumes() {
    let dir = tempfile::tempdir().unwrap();
    // Baseline: the same study set-up with only a tiny model file.
    let tiny_dir = dir.path().join("tiny");
    std::fs::create_dir(&tiny_dir).unwrap();
    let tiny = tune_once(&tiny_dir.join("t.db"), &space_with_sizes(&tiny_dir, "m", r#"["a"]"#));
    assert_eq!(tiny.hashed, 1);

    // A sparse 8 GB variant: reading it whole would add 8 GB to the daemon's RSS.
    let big_dir = dir.path().join("big");
    std::fs::create_dir(&big_dir).unwrap();
    let big_file = std::fs::File::create(big_dir.join("fake-big.gguf")).unwrap();
    big_file.set_len(8 << 30).unwrap();
    drop(big_file);
    let space = space_with_sizes(&big_dir, "m", r#"["a", "big"]"#);
    let db = big_dir.join("t.db");
    let first = tune_once(&db, &space);
    let resumed = tune_once(&db, &space);

    let mib = |kib: i64| kib as f64 / 1024.0;
    let delta_mib = mib(first.max_rss_kib - tiny.max_rss_kib);
    let hwm_delta_mib = mib(first.vm_hwm_kib - tiny.vm_hwm_kib);
    eprintln!(
        "peak RSS (wait4 ru_maxrss, daemon and its children): tiny model {:.1} MiB; with a sparse 8 GiB model \
         {:.1} MiB (delta {delta_mib:+.1} MiB); resumed {:.1} MiB",
        mib(tiny.max_rss_kib),
        mib(first.max_rss_kib),
        mib(resumed.max_rss_kib),
    );
    eprintln!(
        "peak RSS (daemon's own VmHWM): tiny model {:.1} MiB; with a sparse 8 GiB model {:.1} MiB \
         (delta {hwm_delta_mib:+.1} MiB); resumed {:.1} MiB",
        mib(tiny.vm_hwm_kib),
        mib(first.vm_hwm_kib),
        mib(resumed.vm_hwm_kib),
    );
    eprintln!(
        "wall time: tiny {:.1} s; first run with 8 GiB {:.1} s ({} files hashed); resume {:.1} s ({} files hashed)",
        tiny.seconds, first.seconds, first.hashed, resumed.seconds, resumed.hashed
    );
    assert_eq!(first.hashed, 2, "both model files hashed on the first run");
    assert!(delta_mib < 64.0, "fingerprinting an 8 GiB file raised the peak RSS by {delta_mib:.1} MiB");
    assert!(first.vm_hwm_kib > 0 && tiny.vm_hwm_kib > 0, "VmHWM was read");
    assert!(hwm_delta_mib < 64.0, "fingerprinting an 8 GiB file raised the daemon's VmHWM by {hwm_delta_mib:.1} MiB");
    assert_eq!(resumed.hashed, 0, "a resume re-hashed a model file whose size and mtime did not change");

    // A replaced file (new mtime) is hashed again.
    std::fs::write(big_dir.join("fake-a.gguf"), "other weights").unwrap();
    let space_text = std::fs::read_to_string(&space).unwrap();
    let err = Command::new(bin())
        .args(["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap(), "--max-trials", "0"])
        .env("INFERTUNE_LOG", "debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert_eq!(stderr.matches("hashing model file").count(), 1, "{stderr}");
    assert!(stderr.contains("environment changed") && stderr.contains("fake-a.gguf"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&space).unwrap(), space_text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_file_is_refused_before_the_first_trial() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space = space_with_sizes(dir.path(), "typo", r#"["a", "Q5_K"]"#);
    let err =
        format!("{:#}", run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()]).await.unwrap_err());
    let path = dir.path().join("fake-Q5_K.gguf");
    assert_eq!(
        err,
        format!(
            "model file for size = 'Q5_K' not found: '{}' (check [backend] model or [params] size; \
             --skip-missing drops such values)",
            path.display()
        )
    );
    let store = Store::open(&db).await.unwrap();
    assert!(store.study("typo").await.unwrap().is_none(), "no study, no trial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_missing_drops_those_values_and_runs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fake-b.gguf"), "weights b").unwrap();
    let path = space_with_sizes(dir.path(), "skip", r#"["a", "typo", "b"]"#);
    let space = Space::load(&path).unwrap();
    let store = Store::open_in_memory().await.unwrap();
    let options = Options { skip_missing: true, ..Options::default() };
    let mut skipped_events = Vec::new();
    let report = daemon::tune(&space, &store, &options, &Shutdown::manual(), &mut |event| {
        if let Event::ModelsSkipped { skipped } = event {
            skipped_events.push(skipped.to_vec());
        }
    })
    .await
    .unwrap();
    assert_eq!(report.stop, daemon::Stop::Exhausted);
    assert_eq!(skipped_events.len(), 1, "said once, at start");
    let skipped = &skipped_events[0];
    assert_eq!(skipped.len(), 1);
    assert_eq!((skipped[0].param.as_str(), &skipped[0].value), ("size", &Value::Str("typo".into())));
    assert_eq!(skipped[0].path, dir.path().join("fake-typo.gguf").display().to_string());
    let mut sizes: Vec<String> = report.trials.iter().map(|t| t.params.get("size").unwrap().to_string()).collect();
    sizes.sort();
    assert_eq!(sizes, ["a", "b"], "only the variants whose files exist ran");
    assert!(report.trials.iter().all(|t| t.state == infertune::trial::TrialState::Complete), "{:?}", report.trials);

    // Every value missing: an error even with skip_missing.
    let none = space_with_sizes(dir.path(), "none", r#"["x", "y"]"#);
    let space = Space::load(&none).unwrap();
    let err = daemon::tune(&space, &store, &options, &Shutdown::manual(), &mut |_| {}).await.unwrap_err().to_string();
    assert!(err.starts_with("no model file exists for any value of 'size'"), "{err}");
}
