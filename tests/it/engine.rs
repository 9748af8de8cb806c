//! End-to-end studies against the real llama.cpp engine (xllamacpp + SmolLM2-135M).

use std::collections::BTreeMap;

use crate::common::{EngineLock, engine_space, require_engine, run_cli, trials_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn study_end_to_end_on_real_engine() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let env_out = dir.path().join("best.env");
    let space = engine_space(
        dir.path(),
        "e2e",
        "grid",
        r#"parallel = { values = [1, 2], flag = "-np" }
quant = { values = ["Q4_0", "Q4_1"], template = "model" }
flash_attn = { values = ["on"], flag = "-fa" }
threads = { values = [2], flag = "-t" }"#,
        &format!("[slo]\nttft_p95_ms = 60000\nsuccess_rate = 1.0\n[output]\nenv_file = \"{}\"\n", env_out.display()),
    );
    let db_s = db.to_str().unwrap();
    let out = run_cli(&["--db", db_s, "tune", space.to_str().unwrap()]).await.unwrap();
    assert!(out.contains("stopped: exhausted"), "{out}");

    let trials = trials_json(&db, "e2e").await;
    assert_eq!(trials.len(), 4, "{out}");
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t:#}");
        let m = &t["metrics"];
        let get = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("metric {k} missing in {t:#}"));
        assert!((1.0..60_000.0).contains(&get("ttft_p95_ms")), "{t:#}");
        assert!((0.1..5_000.0).contains(&get("tpot_p50_ms")), "{t:#}");
        assert!((1.0..10_000.0).contains(&get("output_tok_per_s")), "{t:#}");
        assert_eq!(get("success_rate"), 1.0, "{t:#}");
        assert!(get("goodput_rps") > 0.0, "{t:#}");
        let rss = get("peak_rss_bytes");
        assert!((20e6..8e9).contains(&rss), "peak RSS {rss} implausible: {t:#}");
        assert!(t["server"]["decode_tok_per_s"].as_f64().unwrap() > 1.0, "server timings stored: {t:#}");
        assert!(t["ready_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(t["samples"]["requests"], 8);
    }

    // `best` names a trial, and `export --format env` writes exactly that trial's settings.
    let best: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db_s, "best", "e2e", "--json"]).await.unwrap()).unwrap();
    assert_eq!(best["meets_slos"], true);
    let exported = dir.path().join("exported.env");
    run_cli(&["--db", db_s, "export", "e2e", "--format", "env", "-o", exported.to_str().unwrap()]).await.unwrap();
    let text = std::fs::read_to_string(&exported).unwrap();
    let vars: BTreeMap<&str, &str> =
        text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(|l| l.split_once('=').unwrap()).collect();
    let params = &best["params"];
    let quant = params["quant"].as_str().unwrap();
    let expected: BTreeMap<&str, String> = [
        ("LLAMA_ARG_N_PARALLEL", params["parallel"].to_string()),
        ("LLAMA_ARG_FLASH_ATTN", "on".to_string()),
        ("LLAMA_ARG_THREADS", "2".to_string()),
        ("LLAMA_ARG_ENDPOINT_METRICS", "1".to_string()),
        (
            "LLAMA_ARG_MODEL",
            crate::common::repo().join(format!("models/SmolLM2-135M-Instruct-{quant}.gguf")).display().to_string(),
        ),
    ]
    .into();
    let vars_owned: BTreeMap<&str, String> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
    assert_eq!(vars_owned, expected, "exported env:\n{text}");
    // The daemon wrote the same file while it ran.
    assert_eq!(std::fs::read_to_string(&env_out).unwrap(), text);

    // Running again resumes: nothing left to try, nothing re-run.
    let again = run_cli(&["--db", db_s, "tune", space.to_str().unwrap()]).await.unwrap();
    assert!(again.contains("resuming study 'e2e' (4 trials stored"), "{again}");
    assert_eq!(trials_json(&db, "e2e").await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_are_recorded_and_the_study_goes_on() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    // Grid order: (NOPE, off), (NOPE, on), (Q4_0, off), (Q4_0, on).
    let space = engine_space(
        dir.path(),
        "bad",
        "grid",
        r#"quant = { values = ["NOPE", "Q4_0"], template = "model" }
flash_attn = { values = ["off", "on"], flag = "-fa" }
kv_cache = { values = ["q8_0"], flags = ["-ctk", "-ctv"] }"#,
        "",
    );
    // NOPE is a file that is not a model: tune refuses missing files before the first trial,
    // so the engine's own load error needs a file that exists. See issue 13 item 8.
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::os::unix::fs::symlink(
        crate::common::repo().join("models/SmolLM2-135M-Instruct-Q4_0.gguf"),
        models.join("SmolLM2-135M-Instruct-Q4_0.gguf"),
    )
    .unwrap();
    std::fs::write(models.join("SmolLM2-135M-Instruct-NOPE.gguf"), "not a gguf file").unwrap();
    let text = std::fs::read_to_string(&space).unwrap();
    let repo_models = format!("{}/SmolLM2", crate::common::repo().join("models").display());
    assert!(text.contains(&repo_models));
    std::fs::write(&space, text.replace(&repo_models, &format!("{}/SmolLM2", models.display()))).unwrap();
    // A quantized V cache without flash attention is refused before launch, in llama.cpp's
    // words: `space check` says so, and the study never spends a trial on it.
    let check = run_cli(&["space", "check", space.to_str().unwrap()]).await.unwrap();
    let refused = check.lines().find(|l| l.starts_with("refused")).unwrap_or_else(|| panic!("{check}"));
    assert!(refused.starts_with("refused   2 of 4 grid points before launch"), "{check}");
    assert!(refused.to_lowercase().contains("flash") && refused.to_lowercase().contains("v cache"), "{refused}");
    let out = run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()]).await.unwrap();
    let trials = trials_json(&db, "bad").await;
    assert_eq!(trials.len(), 2, "{out}");
    let states: Vec<&str> = trials.iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["infeasible", "complete"], "{out}");
    for t in &trials {
        assert_eq!(t["params"]["flash_attn"], "on", "only launchable points are tried: {t:#}");
    }
    // A file that is not a model is the server's own load error.
    assert_eq!(trials[0]["error_class"], "load-error", "{:#}", trials[0]);
    assert_eq!(trials[0]["violation"], 100.0);
    assert!(trials[0]["error_message"].as_str().unwrap().contains("NOPE"), "{:#}", trials[0]);
    assert_eq!(trials[1]["metrics"]["success_rate"], 1.0);
    // `best` picks the one that ran.
    let best: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", db.to_str().unwrap(), "best", "bad", "--json"]).await.unwrap())
            .unwrap();
    assert_eq!(best["number"], 2);
}
