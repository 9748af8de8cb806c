//! Search under noise (issue 16), on the replay backend: re-measures are stored as runs of the
//! same configuration, counted in the budget, and `best` and `export` name the intensified
//! winner, not a single lucky draw.

use crate::common::{run_cli, tpe_replay, trials_json};

/// Objectives of the finished runs of `params`, and whether every run met every SLO.
fn runs_of<'a>(trials: &'a [serde_json::Value], params: &serde_json::Value) -> Vec<&'a serde_json::Value> {
    trials.iter().filter(|t| &t["params"] == params && t["state"] != "running" && t["state"] != "interrupted").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_study_remeasures_in_budget_and_names_the_intensified_winner() {
    let dir = tempfile::tempdir().unwrap();
    let (recording, space) = tpe_replay(dir.path());
    let db = dir.path().join("i.db");
    let db_s = db.to_str().unwrap();
    let study = "landscape-llamacpp-medium";
    let out = run_cli(&[
        "--db",
        db_s,
        "tune",
        space.to_str().unwrap(),
        "--replay",
        recording.to_str().unwrap(),
        "--max-trials",
        "30",
    ])
    .await
    .unwrap();
    assert!(out.contains("stopped: budget"), "{out}");
    assert!(out.contains("(re-measure before it can be named)"), "the progress says why a trial ran: {out}");
    let trials = trials_json(&db, study).await;
    // Re-measures count toward the budget: 30 trials in all, numbered densely.
    assert_eq!(trials.len(), 30, "{out}");
    let numbers: Vec<i64> = trials.iter().map(|t| t["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, (1..=30).collect::<Vec<i64>>());
    // Each re-measure repeats params measured before it, and is its own row.
    let remeasures: Vec<&serde_json::Value> = trials.iter().filter(|t| t["purpose"] == "intensify").collect();
    assert!(!remeasures.is_empty(), "{trials:#?}");
    for r in &remeasures {
        let earlier =
            trials.iter().filter(|t| t["params"] == r["params"] && t["number"].as_i64() < r["number"].as_i64());
        assert!(earlier.count() >= 1, "{r:#}");
    }
    // `runs` is the count of finished trials of the same configuration.
    for t in &trials {
        assert_eq!(t["runs"].as_u64().unwrap() as usize, runs_of(&trials, &t["params"]).len(), "{t:#}");
    }
    let table = run_cli(&["--db", db_s, "trials", study]).await.unwrap();
    let header = table.lines().next().unwrap();
    assert!(header.contains("runs") && header.contains("why"), "{header}");

    // `best` names a configuration measured more than once, every run within the SLOs, with no
    // other such configuration measured at least as often with a better mean.
    let best: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db_s, "best", study, "--json"]).await.unwrap()).unwrap();
    assert_eq!(best["named_by"], "intensified", "{best:#}");
    let runs = runs_of(&trials, &best["params"]);
    assert!(runs.len() >= 2, "{best:#}");
    assert_eq!(best["runs"].as_u64().unwrap() as usize, runs.len());
    assert!(runs.iter().all(|t| t["meets_slos"] == true), "{runs:#?}");
    let mean =
        |rs: &[&serde_json::Value]| rs.iter().map(|t| t["objective"].as_f64().unwrap()).sum::<f64>() / rs.len() as f64;
    assert!((best["mean_objective"].as_f64().unwrap() - mean(&runs)).abs() < 1e-9);
    for t in &trials {
        let other = runs_of(&trials, &t["params"]);
        if t["params"] != best["params"] && other.len() >= runs.len() && other.iter().all(|r| r["meets_slos"] == true) {
            assert!(mean(&other) <= mean(&runs), "trial {} beats the named one: {t:#}", t["number"]);
        }
    }
    assert!(best["noise"]["relative_sd"].as_f64().is_some(), "the noise is estimated from repeats: {best:#}");
    let text = run_cli(&["--db", db_s, "best", study]).await.unwrap();
    assert!(text.contains("named by: intensified incumbent"), "{text}");
    assert!(text.contains("Runs of one configuration vary by ±"), "{text}");

    // `export` names the same configuration, and says by which rule.
    let env = dir.path().join("best.env");
    let wrote =
        run_cli(&["--db", db_s, "export", study, "--format", "env", "-o", env.to_str().unwrap()]).await.unwrap();
    assert!(wrote.contains(&format!("(trial {}; named by intensified incumbent", best["number"])), "{wrote}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_intensify_spends_every_trial_on_the_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let (recording, space) = tpe_replay(dir.path());
    let db = dir.path().join("n.db");
    let args = ["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap(), "--replay", recording.to_str().unwrap()];
    let out = run_cli(&[&args[..], &["--max-trials", "30", "--no-intensify"]].concat()).await.unwrap();
    assert!(out.contains("stopped: budget"), "{out}");
    let trials = trials_json(&db, "landscape-llamacpp-medium").await;
    assert_eq!(trials.len(), 30);
    assert!(trials.iter().all(|t| t["purpose"] == "search" && t["runs"] == 1), "{trials:#?}");
}
