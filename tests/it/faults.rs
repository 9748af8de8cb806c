//! Fault injection: backend faults through the fake server fixture, kill -9 of the daemon at
//! random points, signals, store faults, concurrent daemons, atomic exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infertune::daemon;
use infertune::space::Space;
use infertune::store::Store;
use rand::{RngExt, SeedableRng};

use crate::common::{
    fake_space, processes_matching, run_cli, trials_json, wait_for_running_trial, wait_for_server_pid,
};

/// The binary under test. `INFERTUNE_TEST_BIN` overrides it where several checkouts share one
/// target folder (and so one `target/debug/infertune`).
fn bin() -> String {
    std::env::var("INFERTUNE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_infertune").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_fault_is_recorded_and_the_study_completes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space = fake_space(
        dir.path(),
        "faults",
        "grid",
        r#"fault = { values = ["none", "crash-mid", "hang", "never-ready", "exit-at-start", "port-taken", "stream-cut", "garbage", "refuse", "status-500", "oom"], flag = "--fault" }"#,
        "",
    );
    let out = run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()]).await.unwrap();
    assert!(out.contains("stopped: exhausted"), "{out}");
    let trials = trials_json(&db, "faults").await;
    let got: BTreeMap<String, (String, String)> = trials
        .iter()
        .map(|t| {
            (
                t["params"]["fault"].as_str().unwrap().to_string(),
                (t["state"].as_str().unwrap().to_string(), t["error_class"].as_str().unwrap_or("").to_string()),
            )
        })
        .collect();
    let expect = |state: &str, class: &str| (state.to_string(), class.to_string());
    assert_eq!(got["none"], expect("complete", ""), "{out}");
    assert_eq!(got["crash-mid"], expect("infeasible", "crashed"), "{out}");
    assert_eq!(got["hang"], expect("infeasible", "requests-timeout"), "{out}");
    assert_eq!(got["never-ready"], expect("infeasible", "never-ready"), "{out}");
    assert_eq!(got["exit-at-start"], expect("infeasible", "crashed"), "{out}");
    assert_eq!(got["port-taken"], expect("infeasible", "port-in-use"), "{out}");
    assert_eq!(got["stream-cut"], expect("infeasible", "requests-truncated"), "{out}");
    assert_eq!(got["garbage"], expect("infeasible", "requests-malformed"), "{out}");
    assert_eq!(got["refuse"], expect("infeasible", "requests-connect"), "{out}");
    assert_eq!(got["status-500"], expect("infeasible", "requests-status"), "{out}");
    // The out-of-memory line wins over llama.cpp's "failed to load model" lines that follow it.
    assert_eq!(got["oom"], expect("infeasible", "oom"), "{out}");
    // Each keeps the server's or the client's own words.
    let message = |fault: &str| {
        trials.iter().find(|t| t["params"]["fault"] == fault).unwrap()["error_message"].as_str().unwrap().to_string()
    };
    assert!(message("crash-mid").contains("GGML_ASSERT"), "{}", message("crash-mid"));
    assert!(message("port-taken").contains("Address already in use"));
    assert!(message("exit-at-start").contains("backend init failed"));
    assert!(message("hang").contains("no complete response within 2s"), "{}", message("hang"));
    assert!(message("status-500").contains("HTTP 500"), "{}", message("status-500"));
    assert!(message("refuse").contains("all 4 requests failed (4 x connect)"), "{}", message("refuse"));
    assert!(message("oom").contains("failed to allocate buffer"), "{}", message("oom"));
    assert!(processes_matching(&dir.path().display().to_string()).is_empty());
}

/// Finished trial numbers per the daemon's own progress lines (printed after each is stored).
fn reported_finished(stdout: &str) -> BTreeSet<i64> {
    let mut current = None;
    let mut done = BTreeSet::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("trial ") {
            current = rest.split(['/', ':']).next().and_then(|n| n.parse::<i64>().ok());
        } else if line.starts_with("  complete") || line.starts_with("  infeasible") {
            done.extend(current);
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let iterations = 20;
    let mut lost = 0;
    let mut killed_mid_trial = 0;
    for i in 0..iterations {
        let iter_dir = dir.path().join(format!("k{i}"));
        std::fs::create_dir(&iter_dir).unwrap();
        let db = iter_dir.join("t.db");
        let space = fake_space(
            &iter_dir,
            &format!("k{i}"),
            "grid",
            r#"np = { values = [1, 2, 3, 4, 5, 6], flag = "-np" }
token_ms = { values = [20], flag = "--token-ms" }"#,
            "",
        );
        let child = Command::new(bin())
            .args(["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()])
            .env("INFERTUNE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Kill while a trial is running (observed in the store), at a random point of it: the
        // kill may still land just after the trial ended, which the count below allows for.
        let target = rng.random_range(1..=6);
        let running = wait_for_running_trial(&db, target, Duration::from_secs(30)).await;
        assert!(running.is_some(), "iteration {i}: trial {target} never showed as running");
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
        // SAFETY: SIGKILL to the daemon we spawned.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        let output = child.wait_with_output().unwrap();
        let printed = reported_finished(&String::from_utf8_lossy(&output.stdout));

        let store = Store::open(&db).await.unwrap();
        assert_eq!(store.integrity_check().await.unwrap(), "ok", "iteration {i}");
        if let Some(study) = store.study(&format!("k{i}")).await.unwrap() {
            let trials = store.trials(study.id).await.unwrap();
            killed_mid_trial += trials.iter().filter(|t| t.state == infertune::trial::TrialState::Running).count();
            let stored: BTreeSet<i64> = trials.iter().filter(|t| t.ended_at_ms.is_some()).map(|t| t.number).collect();
            lost += printed.difference(&stored).count();
        }
        store.close().await;
        // The kernel kills the server with the daemon (PR_SET_PDEATHSIG); give it a moment.
        let needle = iter_dir.display().to_string();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !processes_matching(&needle).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let orphans: Vec<String> = processes_matching(&needle)
            .into_iter()
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                format!(
                    "{p} [{}]: {}",
                    stat.split(' ').nth(2).unwrap_or("?"),
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                )
            })
            .collect();
        assert!(orphans.is_empty(), "iteration {i}: orphan processes {orphans:?}");

        // Resume completes the study: every grid point finished, nothing left running.
        let out = run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()]).await.unwrap();
        assert!(out.contains("stopped: exhausted"), "iteration {i}: {out}");
        let trials = trials_json(&db, &format!("k{i}")).await;
        let finished: BTreeSet<String> =
            trials.iter().filter(|t| t["state"] == "complete").map(|t| t["params"].to_string()).collect();
        assert_eq!(finished.len(), 6, "iteration {i}: {out}");
        assert!(trials.iter().all(|t| t["state"] != "running"));
    }
    eprintln!("kill -9 loop: {iterations} iterations, {killed_mid_trial} kills landed mid-trial, {lost} trials lost");
    assert_eq!(lost, 0, "completed trials lost");
    // Most kills must hit a trial in flight, or the loop proves nothing about mid-trial crashes.
    assert!(killed_mid_trial >= iterations / 2, "only {killed_mid_trial} of {iterations} kills landed mid-trial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_records_the_trial_as_interrupted_and_resume_retries_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space = fake_space(dir.path(), "sig", "grid", r#"token_ms = { values = [400, 5], flag = "--token-ms" }"#, "");
    let child = Command::new(bin())
        .args(["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()])
        .env("INFERTUNE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first trial (400 ms per token) streams for seconds once it shows as running.
    assert_eq!(wait_for_running_trial(&db, 1, Duration::from_secs(20)).await, Some(1), "trial 1 never ran");
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "exit {:?}: {stdout}", output.status);
    assert!(stdout.contains("  interrupted"), "{stdout}");
    assert!(stdout.contains("stopped: interrupted"), "{stdout}");
    assert!(processes_matching(&dir.path().display().to_string()).is_empty(), "server left behind");
    let trials = trials_json(&db, "sig").await;
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0]["state"], "interrupted");

    let out =
        run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap(), "--max-trials", "1"]).await.unwrap();
    assert!(out.contains("(retry of an interrupted trial)"), "{out}");
    let trials = trials_json(&db, "sig").await;
    assert_eq!(trials[1]["params"], trials[0]["params"]);
    assert_eq!(trials[1]["state"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_study_is_refused_and_status_answers_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space =
        fake_space(dir.path(), "busy", "grid", r#"token_ms = { values = [300, 301], flag = "--token-ms" }"#, "");
    let mut child = Command::new(bin())
        .args(["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()])
        .env("INFERTUNE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A running trial means the daemon holds the study's lock (taken before the study opens).
    assert!(wait_for_running_trial(&db, 1, Duration::from_secs(20)).await.is_some(), "no trial ran");
    let err = run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()]).await.unwrap_err();
    assert!(format!("{err:#}").contains(&format!("already being tuned by process {}", child.id())), "{err:#}");
    // status reads while tune writes (WAL): it names the trial in flight.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t0 = Instant::now();
        let out = run_cli(&["--db", db.to_str().unwrap(), "status", "busy", "--json"]).await.unwrap();
        slowest = slowest.max(t0.elapsed());
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["is_running"], true, "{doc:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Far below the 10 s busy timeout: a reader blocked by the writer would show here.
    assert!(slowest < Duration::from_secs(5), "status took {slowest:?}");
    eprintln!("status while tune writes: slowest answer {slowest:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Run the daemon loop in-process on `store` until it stops; the trial numbers it stored (per
/// its events) and its result.
async fn tune_in_process(
    space: &Space,
    store: &Store,
    max_trials: Option<u32>,
) -> (Vec<i64>, anyhow::Result<daemon::Report>) {
    let mut stored = Vec::new();
    let mut on_event = |event: daemon::Event<'_>| {
        if let daemon::Event::TrialFinished { trial, .. } = event {
            stored.push(trial.number);
        }
    };
    let options = daemon::Options { max_trials, ..Default::default() };
    let result = daemon::tune(space, store, &options, &daemon::Shutdown::manual(), &mut on_event).await;
    (stored, result)
}

/// Everything readable through the store, and the file's integrity.
async fn stored_trials(db: &Path, study: &str) -> Vec<infertune::trial::Trial> {
    let store = Store::open(db).await.unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    let study = store.study(study).await.unwrap().expect("the study survives");
    let trials = store.trials(study.id).await.unwrap();
    store.close().await;
    trials
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_meets_a_full_or_read_only_database_with_a_clear_error_and_keeps_what_was_written() {
    use infertune::store::StoreOptions;
    use infertune::trial::TrialState;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space_path = fake_space(
        dir.path(),
        "store",
        "grid",
        r#"np = { values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20], flag = "-np" }"#,
        "",
    );
    let space = Space::load(&space_path).unwrap();
    let (first, result) = tune_in_process(&space, &Store::open(&db).await.unwrap(), Some(2)).await;
    assert_eq!(result.unwrap().stop, daemon::Stop::Budget);
    assert_eq!(first, [1, 2]);
    let before = stored_trials(&db, "store").await;
    let db_named = format!("using the database '{}'", db.display());

    // (a) A read-only database (root ignores file modes, so SQLite is told): a clear error, and
    // nothing changes.
    let ro = Store::open_with(&db, StoreOptions { read_only: true, ..Default::default() }).await.unwrap();
    let (stored, result) = tune_in_process(&space, &ro, None).await;
    ro.close().await;
    let err = format!("{:#}", result.map(|r| r.stop).unwrap_err());
    assert!(stored.is_empty(), "{stored:?}");
    assert!(err.contains(&db_named) && err.contains("readonly database"), "{err}");
    assert_eq!(format!("{:?}", stored_trials(&db, "store").await), format!("{before:?}"));

    // (b) A full disk, as SQLite sees it: the file capped two pages above its size. The study
    // records trials until a write is refused, then stops naming the database and the trial.
    let observer = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db).read_only(true))
        .await
        .unwrap();
    let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count").fetch_one(&observer).await.unwrap();
    observer.close().await;
    let capped = Store::open_with(&db, StoreOptions { max_page_count: Some(pages as u64 + 2), ..Default::default() })
        .await
        .unwrap();
    let (stored, result) = tune_in_process(&space, &capped, None).await;
    capped.close().await;
    let err = format!("{:#}", result.map(|r| r.stop).unwrap_err());
    eprintln!("full database: trials {stored:?} recorded, then: {err}");
    assert!(stored.len() < 18, "the cap never bit: {stored:?}");
    let next = stored.last().map_or(3, |n| n + 1);
    assert!(err.contains(&db_named) && err.contains("database or disk is full"), "{err}");
    assert!(
        err.contains(&format!("recording trial {next} of study 'store'"))
            || err.contains("recording the start of a trial of study 'store'"),
        "{err}"
    );
    assert!(processes_matching(&dir.path().display().to_string()).is_empty(), "server left behind");
    // Everything recorded before is intact and readable; the trial being recorded is at most a
    // `running` row (resume marks it interrupted).
    let after = stored_trials(&db, "store").await;
    assert_eq!(format!("{:?}", &after[..2]), format!("{before:?}"));
    for number in first.iter().chain(&stored) {
        let t = after.iter().find(|t| t.number == *number).unwrap_or_else(|| panic!("trial {number} lost"));
        assert_eq!(t.state, TrialState::Complete, "{t:?}");
        assert!(t.summary.is_some() && t.objective.is_some(), "{t:?}");
    }
    assert!(
        after
            .iter()
            .filter(|t| !first.contains(&t.number) && !stored.contains(&t.number))
            .all(|t| t.state == TrialState::Running)
    );

    // The CLI names the database file when it cannot open it.
    let err = run_cli(&["--db", "/proc/nope/t.db", "studies"]).await.unwrap_err();
    assert!(format!("{err:#}").contains("'/proc/nope/t.db'"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_export_leaves_the_old_file_or_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space = fake_space(dir.path(), "ex", "grid", r#"np = { values = [1, 2], flag = "-np" }"#, "");
    run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()]).await.unwrap();
    let target = dir.path().join("best.env");
    let render = |trial: &str| {
        let out = std::process::Command::new(bin())
            .args(["--db", db.to_str().unwrap(), "export", "ex", "--format", "env", "--trial", trial])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let (one, two) = (render("1"), render("2"));
    assert_ne!(one, two);
    std::fs::write(&target, &one).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for i in 0..20 {
        let trial = if i % 2 == 0 { "2" } else { "1" };
        let child = Command::new(bin())
            .args([
                "--db",
                db.to_str().unwrap(),
                "export",
                "ex",
                "--format",
                "env",
                "--trial",
                trial,
                "-o",
                target.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.random_range(0..40_000)));
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = child.wait_with_output();
        let now = std::fs::read_to_string(&target).unwrap();
        assert!(now == one || now == two, "iteration {i}: a mix:\n{now}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_space_or_fingerprint_is_refused_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let model = dir.path().join("fake-a.gguf");
    std::fs::write(&model, "weights v1").unwrap();
    let space = fake_space(dir.path(), "drift", "grid", r#"np = { values = [1, 2, 3], flag = "-np" }"#, "");
    let db_s = db.to_str().unwrap();
    run_cli(&["--db", db_s, "tune", space.to_str().unwrap(), "--max-trials", "2"]).await.unwrap();

    // A changed space file: refused with the change shown, accepted with --force.
    let text = std::fs::read_to_string(&space).unwrap();
    std::fs::write(&space, text.replace("max_tokens = 4", "max_tokens = 5")).unwrap();
    let err = format!("{:#}", run_cli(&["--db", db_s, "tune", space.to_str().unwrap()]).await.unwrap_err());
    assert!(err.contains("--force") && err.contains("- max_tokens = 4") && err.contains("+ max_tokens = 5"), "{err}");
    let out = run_cli(&["--db", db_s, "tune", space.to_str().unwrap(), "--force", "--max-trials", "2"]).await.unwrap();
    assert!(out.contains("+ max_tokens = 5"), "{out}");

    // A replaced model file: refused, or a linked study seeded with the old best.
    std::fs::write(&model, "weights v2").unwrap();
    let err = format!("{:#}", run_cli(&["--db", db_s, "tune", space.to_str().unwrap(), "--force"]).await.unwrap_err());
    assert!(err.contains("environment changed") && err.contains("fake-a.gguf") && err.contains("sha256"), "{err}");
    let out =
        run_cli(&["--db", db_s, "tune", space.to_str().unwrap(), "--force", "--retune-on-drift", "--max-trials", "1"])
            .await
            .unwrap();
    assert!(out.contains("study 'drift-retune-1'"), "{out}");
    let old_best: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db_s, "best", "drift", "--json"]).await.unwrap()).unwrap();
    let new = trials_json(&db, "drift-retune-1").await;
    assert_eq!(new[0]["params"], old_best["params"], "the re-tune starts from the old best");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_its_window_the_daemon_pauses_and_still_stops_on_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space = fake_space(dir.path(), "win", "grid", r#"np = { values = [1], flag = "-np" }"#, "");
    // A one-minute window twelve hours from now: certainly closed.
    let (now_min, _) = infertune::daemon::clock::local_minutes(std::time::SystemTime::now());
    let start = (now_min + 720) % 1440;
    let window = format!("{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, (start + 1) % 1440 / 60, (start + 1) % 60);
    let mut child = Command::new(bin())
        .args(["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap(), "--window", &window])
        .env("INFERTUNE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the daemon to say it paused (its stdout is line-buffered), at most 20 s.
    let paused = format!("outside the window {window}: paused");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(&paused)) {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("no '{paused}' line ({e}): {seen:?}"),
        }
    }
    let status = run_cli(&["--db", db.to_str().unwrap(), "status", "win", "--json"]).await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(doc["is_running"], true, "{doc:#}");
    assert_eq!(doc["finished"], 0, "{doc:#}");
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    child.wait().unwrap();
    reader.join().unwrap();
    seen.extend(lines.try_iter());
    let stdout = seen.join("\n");
    assert!(stdout.contains("stopped: interrupted (0 trials in the study)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space =
        fake_space(dir.path(), "deaf", "grid", r#"fault = { values = ["ignore-sigterm"], flag = "--fault" }"#, "");
    let t0 = Instant::now();
    let out = run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()]).await.unwrap();
    let elapsed = t0.elapsed();
    assert!(out.contains("stopped: exhausted"), "{out}");
    assert_eq!(trials_json(&db, "deaf").await[0]["state"], "complete", "{out}");
    // The trial itself takes well under a second; the stop waited out the grace, then SIGKILLed.
    let grace = infertune::backend::STOP_GRACE;
    assert!(elapsed >= grace, "stopped in {elapsed:?}, before the {grace:?} grace: SIGTERM was not ignored?");
    assert!(elapsed < grace + Duration::from_secs(10), "stop took {elapsed:?}");
    assert!(processes_matching(&dir.path().display().to_string()).is_empty(), "server left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_kills_the_server_at_once_without_the_grace_period() {
    // README "Signals": the first signal stops the server with SIGTERM and a 5 s grace; a second
    // signal kills at once. The fake ignores SIGTERM, so only the second signal can end it early.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space = fake_space(
        dir.path(),
        "twice",
        "grid",
        r#"fault = { values = ["ignore-sigterm"], flag = "--fault" }
token_ms = { values = [1000], flag = "--token-ms" }"#,
        "",
    );
    let mut child = Command::new(bin())
        .args(["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()])
        .env("INFERTUNE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    assert_eq!(wait_for_running_trial(&db, 1, Duration::from_secs(20)).await, Some(1), "trial 1 never ran");
    // The PID is stored once the server answered /health, so it ignores SIGTERM by then.
    assert!(wait_for_server_pid(&db, 1, Duration::from_secs(20)).await.is_some(), "the server never got ready");
    let needle = dir.path().display().to_string();
    let pid = child.id() as libc::pid_t;
    let t0 = Instant::now();
    // SAFETY: SIGINT to the daemon we spawned.
    unsafe { libc::kill(pid, libc::SIGINT) };
    // The second signal only after the daemon took the first (two at once may coalesce).
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("signal: stopping after cleanup")) {
        match lines.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("the first signal was not acknowledged ({e}): {seen:?}"),
        }
    }
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = child.wait().unwrap();
    let elapsed = t0.elapsed();
    reader.join().unwrap();
    seen.extend(lines.try_iter());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "exit {status:?}: {stdout}\n{}", seen.join("\n"));
    assert!(seen.iter().any(|l| l.contains("signal: stopping now")), "{seen:?}");
    let grace = infertune::backend::STOP_GRACE;
    assert!(
        elapsed < grace / 2,
        "stopped {elapsed:?} after the first signal: the second did not cut the {grace:?} grace"
    );
    // SIGKILL is delivered at once, but give the kernel a moment to tear the process down.
    let deadline = Instant::now() + Duration::from_secs(1);
    while !processes_matching(&needle).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(processes_matching(&needle).is_empty(), "server left behind");
    assert!(stdout.contains("stopped: interrupted"), "{stdout}");
    assert_eq!(trials_json(&db, "twice").await[0]["state"], "interrupted");
    eprintln!("second signal: the daemon exited {elapsed:?} after the first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_stops_a_surviving_server_by_its_recorded_pid_and_spares_a_reused_pid() {
    // README "Nothing left behind": the server PID is recorded per trial, and resume stops any
    // survivor. PR_SET_PDEATHSIG takes the fake down with the daemon, so the survivor is a fake
    // the test starts itself, put in the killed trial's row; a second row holds a PID since
    // reused by a process that is no server (`sleep`), which must be left alone.
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space = fake_space(dir.path(), "reap", "grid", r#"token_ms = { values = [150], flag = "--token-ms" }"#, "");
    let mut daemon = Command::new(bin())
        .args(["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()])
        .env("INFERTUNE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(wait_for_running_trial(&db, 1, Duration::from_secs(20)).await, Some(1), "trial 1 never ran");
    assert!(wait_for_server_pid(&db, 1, Duration::from_secs(20)).await.is_some(), "the server never got ready");
    daemon.kill().unwrap(); // SIGKILL, mid-workload (2 rounds of 4 tokens of 150 ms)
    daemon.wait().unwrap();
    let needle = dir.path().display().to_string();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !processes_matching(&needle).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(processes_matching(&needle).is_empty(), "PR_SET_PDEATHSIG did not stop the server");

    // A server that survived (in its own process group, as the daemon starts them), and a
    // process that is no server.
    let fake = crate::common::repo().join("tests/fixtures/fake-llama-server");
    let survivor_model = dir.path().join("survivor.gguf");
    let mut survivor = Command::new(&fake)
        .args(["-m", survivor_model.to_str().unwrap(), "--port", "0"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut decoy = Command::new("sleep").arg("60").process_group(0).spawn().unwrap();
    let (survivor_pid, decoy_pid) = (survivor.id(), decoy.id());
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
        .await
        .unwrap();
    sqlx::query("UPDATE trials SET server_pid = ?1 WHERE number = 1 AND state = 'running'")
        .bind(i64::from(survivor_pid))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO trials (study_id, number, state, params_json, params_hash, started_at_ms, server_pid)
         SELECT study_id, 2, 'running', params_json, params_hash, started_at_ms, ?1 FROM trials WHERE number = 1",
    )
    .bind(i64::from(decoy_pid))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    // Resume: it reaps before anything else, then retries the interrupted point once.
    let out = run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()]).await.unwrap();
    let reaped_line = format!("stopped server processes left by a killed daemon: [{survivor_pid}]");
    // Reaped with SIGKILL; collect its status (bounded, so a survivor that was spared fails
    // the test instead of hanging it), then clean up whatever is left.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut status = survivor.try_wait().unwrap();
    while status.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = survivor.try_wait().unwrap();
    }
    let decoy_status = decoy.try_wait().unwrap();
    for child in [&mut survivor, &mut decoy] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(out.contains(&reaped_line), "{out}");
    assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGKILL), "the survivor was not killed: {status:?}");
    assert!(decoy_status.is_none(), "a process that is no server was killed: {decoy_status:?}");
    let trials = trials_json(&db, "reap").await;
    let states: Vec<&str> = trials.iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["interrupted", "interrupted", "complete"], "{out}");
    assert!(out.contains("stopped: exhausted"), "{out}");
}
