//! Trace replay against the real llama.cpp engine (issue 17): a study with `[workload] trace`
//! runs end to end with the trace's request count and input lengths, and a shared prefix in the
//! trace reaches the server's prompt cache.

use std::path::{Path, PathBuf};

use crate::common::{EngineLock, repo, require_engine, run_cli, trials_json};

/// A one-point llama.cpp space replaying `trace` with `prompt_cache`.
fn trace_space(dir: &Path, name: &str, trace: &Path, prompt_cache: bool, block_size: u32) -> PathBuf {
    let repo = repo();
    let text = format!(
        r#"[study]
name = "{name}"
strategy = "grid"
seed = 3

[backend]
kind = "llamacpp"
command = ["{launcher}"]
model = "{models}/SmolLM2-135M-Instruct-Q4_0.gguf"
ready_timeout = "60s"

[params]
parallel = {{ values = [1], flag = "-np" }}
threads = {{ values = [1], flag = "-t" }}

[workload]
trace = "{trace}"
block_size = {block_size}
prompt_cache = {prompt_cache}
request_timeout = "60s"

[slo]
success_rate = 1.0
"#,
        launcher = repo.join("scripts/llama-server").display(),
        models = repo.join("models").display(),
        trace = trace.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn write_trace(dir: &Path, rows: &[(u64, u32, u32, &[u64])]) -> PathBuf {
    let path = dir.join("trace.jsonl");
    let text: String = rows
        .iter()
        .map(|(ts, isl, osl, ids)| {
            format!(
                "{}\n",
                serde_json::json!({"timestamp": ts, "input_length": isl, "output_length": osl, "hash_ids": ids})
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// The single trial of a `tune --max-trials 1` run of `space`.
async fn tune_one(db: &Path, space: &Path, study: &str) -> serde_json::Value {
    let out =
        run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap(), "--max-trials", "1"]).await.unwrap();
    let trials = trials_json(db, study).await;
    assert_eq!(trials.len(), 1, "{out}");
    trials.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_study_replays_the_trace_on_real_engine() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let rows: &[(u64, u32, u32, &[u64])] = &[
        (0, 120, 6, &[1]),
        (400, 300, 4, &[1, 2, 3]),
        (900, 64, 8, &[4]),
        (1300, 200, 5, &[1, 2]),
        (2000, 45, 6, &[5]),
        (2600, 150, 4, &[1, 6]),
    ];
    let trace = write_trace(dir.path(), rows);
    let space = trace_space(dir.path(), "trace-e2e", &trace, false, 128);
    let t = tune_one(&dir.path().join("t.db"), &space, "trace-e2e").await;
    assert_eq!(t["state"], "complete", "{t:#}");
    assert_eq!(t["samples"]["requests"], 6, "{t:#}");
    assert_eq!(t["samples"]["succeeded"], 6, "{t:#}");
    let r = &t["replay"];
    assert_eq!((r["requests"].as_u64(), r["format"].as_str()), (Some(6), Some("mooncake")), "{r:#}");
    assert_eq!(r["isl_trace_mean"], 146.5, "{r:#}");
    let measured = r["isl_measured_mean"].as_f64().unwrap();
    assert!((measured - 146.5).abs() / 146.5 < 0.02, "measured ISL {measured} vs the trace's 146.5: {r:#}");
    assert!(r["isl_error_pct"].as_f64().unwrap() < 2.0, "{r:#}");
    assert!(r["is_valid"].as_bool().unwrap() && r["lateness_ms"]["p99"].as_f64().unwrap() <= 5.0, "{r:#}");
    assert!(r["chat_overhead_tokens"].as_u64().unwrap() > 0, "{r:#}");
}

/// 9 of 10 requests share a 512-token prefix (two 256-token blocks). With the prompt cache on,
/// the server prefills only the tail of each; off, all of it. Fails if the sharing does not
/// reach the server (different bytes per request, or `cache_prompt` not sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_prefix_in_the_trace_reaches_the_prompt_cache() {
    require_engine();
    let _engine = EngineLock::acquire().await;
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<(u64, u32, u32, Vec<u64>)> = (0..9).map(|i| (i * 1200, 560, 4, vec![1, 2, 100 + i])).collect();
    rows.insert(4, (4 * 1200 + 600, 560, 4, vec![200, 201, 202]));
    let rows: Vec<(u64, u32, u32, &[u64])> = rows.iter().map(|(a, b, c, d)| (*a, *b, *c, d.as_slice())).collect();
    let trace = write_trace(dir.path(), &rows);
    let db = dir.path().join("t.db");
    let mut ttft = Vec::new();
    for cache in [true, false] {
        let name = format!("prefix-cache-{cache}");
        let t = tune_one(&db, &trace_space(dir.path(), &name, &trace, cache, 256), &name).await;
        assert_eq!((t["state"].as_str(), t["samples"]["succeeded"].as_u64()), (Some("complete"), Some(10)), "{t:#}");
        assert!(t["replay"]["isl_error_pct"].as_f64().unwrap() < 2.0, "{t:#}");
        ttft.push(t["metrics"]["ttft_p50_ms"].as_f64().unwrap());
    }
    let (on, off) = (ttft[0], ttft[1]);
    eprintln!("ttft p50: prompt cache on {on:.1} ms, off {off:.1} ms");
    assert!(on < 0.7 * off, "prompt cache on {on:.1} ms, off {off:.1} ms: the shared prefix did not reach the cache");
}
