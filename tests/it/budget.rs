//! Budgets and progress on the fake server fixture: `--max-trials` counts earlier runs,
//! `--max-duration` stops with `deadline`, and `status --json` describes a run in flight.

use std::time::{Duration, Instant};

use crate::common::{fake_space, run_cli, trials_json, wait_for_running_trial};

const TWENTY: &str =
    r#"np = { values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20], flag = "-np" }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_trials_counts_the_trials_of_earlier_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space = fake_space(dir.path(), "mt", "grid", TWENTY, "");
    let tune = |n: &'static str| {
        let (db, space) = (db.clone(), space.clone());
        async move {
            run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap(), "--max-trials", n]).await.unwrap()
        }
    };
    let out = tune("2").await;
    assert!(out.contains("stopped: budget (2 trials in the study)"), "{out}");
    // A limit of 3 on resume is 3 in the study: one more trial, not three.
    let out = tune("3").await;
    assert!(out.contains("stopped: budget (3 trials in the study)"), "{out}");
    assert_eq!(trials_json(&db, "mt").await.len(), 3);
    // Already spent: no trial at all.
    let out = tune("3").await;
    assert!(out.contains("stopped: budget (3 trials in the study)"), "{out}");
    assert_eq!(trials_json(&db, "mt").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_stops_starting_trials_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    // Each trial takes about a second (4 tokens of 100 ms, 2 rounds of requests, start-up).
    let space = fake_space(
        dir.path(),
        "md",
        "grid",
        &format!("{TWENTY}\ntoken_ms = {{ values = [100], flag = \"--token-ms\" }}"),
        "",
    );
    let t0 = Instant::now();
    let out = run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap(), "--max-duration", "2s"])
        .await
        .unwrap();
    let elapsed = t0.elapsed();
    assert!(out.contains("stopped: deadline"), "{out}");
    let trials = trials_json(&db, "md").await;
    assert!((1..20).contains(&trials.len()), "{} trials: {out}", trials.len());
    assert!(trials.iter().all(|t| t["state"] == "complete"), "the trial in flight finishes: {trials:#?}");
    // It stops starting trials at 2 s; the one in flight still ends.
    assert!(elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(8), "{elapsed:?}");
    let status = run_cli(&["--db", db.to_str().unwrap(), "status", "md", "--json"]).await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(doc["state"], "stopped: deadline", "{doc:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_during_a_run_names_the_trial_in_flight_and_the_budget_left() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let space = fake_space(
        dir.path(),
        "st",
        "grid",
        r#"np = { values = [1, 2, 3], flag = "-np" }
token_ms = { values = [300], flag = "--token-ms" }"#,
        "",
    );
    let (db_s, space_s) = (db.to_str().unwrap(), space.to_str().unwrap());
    // tune and the checks run side by side in this task (the CLI's futures are not Send).
    let tune_args = ["--db", db_s, "tune", space_s, "--max-trials", "2", "--max-duration", "1h"];
    let tune = run_cli(&tune_args);
    let check = async {
        assert_eq!(wait_for_running_trial(&db, 1, Duration::from_secs(20)).await, Some(1), "trial 1 never ran");
        let status = run_cli(&["--db", db_s, "status", "st", "--json"]).await.unwrap();
        serde_json::from_str::<serde_json::Value>(&status).unwrap()
    };
    let (out, doc) = tokio::join!(tune, check);
    assert_eq!(doc["study"], "st", "{doc:#}");
    assert_eq!(doc["is_running"], true, "{doc:#}");
    assert!(doc["state"].as_str().unwrap().starts_with(&format!("running (pid {}", std::process::id())), "{doc:#}");
    assert_eq!(doc["in_flight"]["number"], 1, "{doc:#}");
    assert_eq!(doc["in_flight"]["params"]["np"], 1, "{doc:#}");
    assert!(doc["in_flight"]["elapsed_s"].as_f64().unwrap() >= 0.0, "{doc:#}");
    assert_eq!(doc["finished"], 0, "{doc:#}");
    assert_eq!(doc["trials_left"], 2, "{doc:#}");
    let left = doc["time_left_s"].as_f64().unwrap();
    assert!((3500.0..=3600.0).contains(&left), "{doc:#}");
    assert!(doc["best"].is_null(), "{doc:#}");

    let out = out.unwrap();
    assert!(out.contains("stopped: budget (2 trials in the study)"), "{out}");
    let status = run_cli(&["--db", db.to_str().unwrap(), "status", "st", "--json"]).await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(doc["is_running"], false, "{doc:#}");
    assert_eq!(doc["state"], "stopped: budget", "{doc:#}");
    assert_eq!(doc["finished"], 2, "{doc:#}");
    assert!(doc["in_flight"].is_null(), "{doc:#}");
    assert!(doc["best"]["number"].is_i64(), "{doc:#}");
}
