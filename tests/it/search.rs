//! Search features end to end: tpe's default-first order, early abort (pruning), capacity
//! search and the winner's re-validation on the real engine; recorded landscapes.

use crate::common::{EngineLock, engine_space, repo, require_engine, run_cli, trials_json};

use infertune::search::landscape::Landscape;
use infertune::space::Direction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpe_prune_capacity_and_revalidation_on_real_engine() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let db_s = db.to_str().unwrap();
    let params = r#"parallel = { values = [1, 2], flag = "-np", default = 2 }
quant = { values = ["Q4_0", "Q4_1"], template = "model", default = "Q4_0" }
flash_attn = { values = ["on"], flag = "-fa", default = "on" }
threads = { values = [2], flag = "-t", default = 2 }"#;
    let space = engine_space(dir.path(), "s", "tpe", params, "[slo]\nttft_p95_ms = 60000\nsuccess_rate = 1.0\n");
    let space_s = space.to_str().unwrap();
    run_cli(&["--db", db_s, "tune", space_s, "--max-trials", "2"]).await.unwrap();
    let trials = trials_json(&db, "s").await;
    assert_eq!(trials.len(), 2);
    // tpe starts with the backend's default configuration
    assert_eq!(trials[0]["params"], serde_json::json!({"parallel": 2, "quant": "Q4_0", "flash_attn": "on", "threads": 2}));
    assert!(trials.iter().all(|t| t["state"] == "complete"), "{trials:#?}");

    // capacity over concurrency 1..2: a 60 s TTFT limit holds at both levels
    let out = run_cli(&["--db", db_s, "capacity", "s", "--trial", "1", "--max", "2", "--space", space_s]).await.unwrap();
    assert!(out.contains("concurrency    1") && out.contains("concurrency    2"), "{out}");
    assert!(out.contains("capacity: >= 2"), "{out}");

    // re-validation: 3 interleaved pairs, stored and shown by `best`
    let out = run_cli(&["--db", db_s, "validate", "s", "--pairs", "3", "--top", "1", "--space", space_s]).await.unwrap();
    assert!(out.contains("re-validated: trial"), "{out}");
    let best = run_cli(&["--db", db_s, "best", "s"]).await.unwrap();
    assert!(best.contains("re-validated: trial") && best.contains("95 % CI"), "{best}");
    let json: serde_json::Value = serde_json::from_str(&run_cli(&["--db", db_s, "best", "s", "--json"]).await.unwrap()).unwrap();
    let v = &json["validation"];
    assert_eq!(v["winner_values"].as_array().unwrap().len(), 3, "{v:#}");
    assert_eq!(v["default_values"].as_array().unwrap().len(), 3, "{v:#}");
    let (r, lo, hi) = (v["ratio"].as_f64().unwrap(), v["ci_low"].as_f64().unwrap(), v["ci_high"].as_f64().unwrap());
    assert!(lo <= r && r <= hi && lo > 0.0, "{v:#}");

    // a 1 ms TTFT limit is certain to fail after 2 of 8 requests: the trial is pruned early
    let strict = engine_space(dir.path(), "p", "tpe", params, "[slo]\nttft_p95_ms = 1\n");
    run_cli(&["--db", db_s, "tune", strict.to_str().unwrap(), "--max-trials", "1"]).await.unwrap();
    let pruned = trials_json(&db, "p").await;
    assert_eq!(pruned[0]["state"], "pruned", "{:#}", pruned[0]);
    let measured = pruned[0]["samples"]["requests"].as_u64().unwrap();
    assert!((2..8).contains(&measured), "pruned after {measured} of 8 requests: {:#}", pruned[0]);
    assert!(pruned[0]["violation"].as_f64().unwrap() > 0.0);
}

/// The committed recording of the real engine is a full grid that the benchmark can replay.
#[test]
fn recorded_landscape_is_a_full_grid() {
    let l = Landscape::load(&repo().join("tests/fixtures/landscapes/llamacpp-small.json")).unwrap();
    let space = l.space().unwrap();
    assert_eq!(l.points.len() as u64, space.grid_size());
    assert!(l.points.iter().all(|p| !p.runs.is_empty()));
    // recorded on a busy 2-core machine: no point met the 3 s TTFT SLO, so the benchmark
    // compares on the objective alone (crashes stay infeasible)
    assert!(l.without_slos().optimum(Direction::Maximize).is_some_and(|v| v > 0.0));
    // flash attention off with a quantized KV cache fails to start in llama.cpp
    let crashed = l.points.iter().filter(|p| p.runs.iter().all(|r| r.state == infertune::trial::TrialState::Infeasible)).count();
    assert!(crashed >= 1, "expected the fa-off + q8_0 points to be infeasible");
}
