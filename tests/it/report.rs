//! `report` rendered in a real headless Chromium (Debian's `chromium`, installed by `.ci/run`):
//! the page loads without console errors, every section is in the DOM, and every plot has drawn
//! marks. One screenshot per run is kept under `target/` as a CI artifact.

use std::path::{Path, PathBuf};
use std::process::Command;

use infertune::backend::LaunchPlan;
use infertune::measure::{Dist, Summary, Verdict};
use infertune::space::{Candidate, Direction, Value};
use infertune::store::{Finished, NewStudy, Store};
use infertune::trial::{Fingerprint, Outcome, StageTimes};

use crate::common::{EngineLock, engine_space, repo, require_engine, run_cli};

const CHROMIUM: &str = "/usr/bin/chromium";
const SECTIONS: &[&str] = &["summary", "best", "history", "pareto", "effects", "trials", "env"];

/// Where screenshots go: `target/` (or `$CARGO_TARGET_DIR`), kept after the run.
fn artifact(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn chromium(profile: &Path, extra: &[&str], page: &Path) -> std::process::Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "'{CHROMIUM}' is missing: install Debian's chromium (apt-get install -y chromium), as .ci/run does"
    );
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let url = format!("file://{}", page.display());
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        profile_arg.as_str(),
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = Command::new(CHROMIUM).args(&args).output().expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Load the report in Chromium: return its DOM after load, and save a screenshot as `shot`.
/// Fails on any console message (the report has no script, so any is an error).
fn load_in_browser(page: &Path, shot: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(profile.path(), &["--dump-dom"], page);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    for line in stderr.lines() {
        assert!(
            !line.contains("CONSOLE") && !line.contains("Uncaught"),
            "console output while loading the report: {line}"
        );
    }
    // Keep the page beside its screenshot, so a failing CI run can be looked at.
    std::fs::copy(page, artifact(shot).with_extension("html")).unwrap();
    let shot_path = artifact(shot);
    let _ = std::fs::remove_file(&shot_path);
    let shot_arg = format!("--screenshot={}", shot_path.display());
    let out = chromium(profile.path(), &[&shot_arg, "--window-size=1200,4000", "--hide-scrollbars"], page);
    let png = std::fs::read(&shot_path).unwrap_or_else(|e| {
        panic!("no screenshot at '{}' ({e}): {}", shot_path.display(), String::from_utf8_lossy(&out.stderr))
    });
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "screenshot looks empty ({} bytes)", png.len());
    String::from_utf8(dom.stdout).unwrap()
}

/// Every `<svg>` in the DOM holds drawn marks (circles, paths or polygons) and axis text.
fn assert_plots_drawn(dom: &str, expected: usize) {
    let plots: Vec<&str> = dom.split("<svg").skip(1).map(|s| s.split("</svg>").next().unwrap()).collect();
    assert_eq!(plots.len(), expected, "plots in the DOM");
    for (i, p) in plots.iter().enumerate() {
        let marks = p.matches("<circle").count() + p.matches("<polygon").count() + p.matches("<path").count();
        assert!(marks > 0, "plot {i} has no marks");
        assert!(p.matches("<text").count() >= 3, "plot {i} has no axis labels");
        assert!(p.contains("<polyline") || p.contains("<line"), "plot {i} has no axes");
    }
}

fn summary(goodput: f64, ttft: f64, tok_s: f64) -> Summary {
    Summary {
        requests: 8,
        succeeded: 8,
        ttft_ms: Dist { n: 8, p50: ttft * 0.8, p95: ttft, ..Default::default() },
        tpot_ms: Dist { n: 8, p50: 1000.0 / tok_s, ..Default::default() },
        output_tok_per_s: tok_s,
        goodput_rps: goodput,
        success_rate: 1.0,
        peak_rss_bytes: 280 << 20,
        ..Default::default()
    }
}

#[tokio::test]
async fn synthetic_report_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let store = Store::open(&db).await.unwrap();
    let space_text = std::fs::read_to_string(repo().join("search-spaces/quickstart.toml")).unwrap();
    let fingerprint = Fingerprint {
        engine_version: "synthetic".into(),
        model_sha256: Default::default(),
        host: infertune::measure::system::host(),
    };
    let study = store
        .create_study(&NewStudy {
            name: "quickstart",
            backend: Some(infertune::space::BackendKind::Llamacpp),
            strategy: Some(infertune::space::StrategyKind::Random),
            objective_metric: "goodput_rps",
            direction: Direction::Maximize,
            space_toml: &space_text,
            fingerprint: &fingerprint,
        })
        .await
        .unwrap();
    // (parallel, fa, quant, (goodput, ttft p95, tok/s)); None = infeasible.
    type Row<'a> = (i64, &'a str, &'a str, Option<(f64, f64, f64)>);
    let rows: &[Row] = &[
        (4, "on", "Q4_1", Some((1.1, 2100.0, 38.0))),
        (1, "on", "Q4_0", Some((1.6, 900.0, 45.0))),
        (2, "off", "Q8_0", None),
        (4, "on", "Q4_0", Some((2.3, 1400.0, 74.0))),
        (2, "on", "Q4_0", Some((2.0, 1100.0, 61.0))),
        (4, "off", "Q8_0", Some((0.4, 5200.0, 30.0))),
    ];
    for (np, fa, quant, measured) in rows {
        let params = Candidate(
            [
                ("parallel".to_string(), Value::Int(*np)),
                ("flash_attn".to_string(), Value::Str(fa.to_string())),
                ("kv_cache".to_string(), Value::Str("f16".into())),
                ("quant".to_string(), Value::Str(quant.to_string())),
                ("ctx".to_string(), Value::Int(2048)),
                ("threads".to_string(), Value::Int(2)),
            ]
            .into(),
        );
        let (id, _) = store.begin_trial(study.id, &params).await.unwrap();
        let outcome = match measured {
            Some((g, t, s)) => {
                let miss = (t - 4000.0_f64).max(0.0) / 4000.0;
                Outcome::Complete {
                    summary: summary(*g, *t, *s),
                    verdict: Verdict {
                        objective: *g,
                        violations: [("ttft_p95_ms".to_string(), miss)].into(),
                        violation: miss,
                    },
                }
            }
            None => Outcome::Infeasible {
                class: "crashed".parse().unwrap(),
                message: "server exited: <status 134> & 'abort'".into(),
            },
        };
        let plan = LaunchPlan {
            program: "llama-server".into(),
            args: vec!["-np".into(), np.to_string()],
            env: Default::default(),
            deploy_env: [("LLAMA_ARG_N_PARALLEL".to_string(), np.to_string())].into(),
            args_without_env: vec![],
            request_options: Default::default(),
            model: format!("models/SmolLM2-135M-Instruct-{quant}.gguf"),
        };
        store
            .finish_trial(
                id,
                &Finished { outcome: &outcome, plan: Some(&plan), stages: StageTimes::default(), samples: &[] },
            )
            .await
            .unwrap();
    }
    store.close().await;

    let page = dir.path().join("report.html");
    let out =
        run_cli(&["--db", db.to_str().unwrap(), "report", "quickstart", "-o", page.to_str().unwrap()]).await.unwrap();
    assert!(out.contains("wrote") && out.contains("(6 trials)"), "{out}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "the report names a URL");
    assert!(!html.contains("<script") && !html.contains("<link"), "nothing external");

    let dom = load_in_browser(&page, "report-synthetic-screenshot.png");
    for id in SECTIONS {
        assert!(dom.contains(&format!("id=\"{id}\"")), "section '{id}' missing from the DOM");
    }
    // History, Pareto, and strip plots for parallel, flash_attn and quant.
    assert_plots_drawn(&dom, 5);
    assert!(dom.contains("&lt;status 134&gt; &amp; 'abort'"), "message escaped and shown as text");
    assert!(dom.contains("<th>default (#1)</th>"), "default trial found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_study_report_renders_in_chromium() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let space = engine_space(
        dir.path(),
        "quick-report",
        "grid",
        r#"parallel = { values = [1, 2], flag = "-np", default = 2 }
quant = { values = ["Q4_0"], template = "model", default = "Q4_0" }
threads = { values = [2], flag = "-t", default = 2 }"#,
        "[slo]\nttft_p95_ms = 60000\nsuccess_rate = 1.0\n",
    );
    {
        let _engine = EngineLock::acquire().await;
        let out = run_cli(&["--db", db.to_str().unwrap(), "tune", space.to_str().unwrap()]).await.unwrap();
        assert!(out.contains("stopped: exhausted"), "{out}");
    }
    let page = dir.path().join("report.html");
    run_cli(&["--db", db.to_str().unwrap(), "report", "quick-report", "-o", page.to_str().unwrap()]).await.unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "the report names a URL");

    let dom = load_in_browser(&page, "report-screenshot.png");
    for id in SECTIONS {
        assert!(dom.contains(&format!("id=\"{id}\"")), "section '{id}' missing from the DOM");
    }
    // History, Pareto, and a strip plot for parallel (the only parameter with two values).
    assert_plots_drawn(&dom, 3);
    assert!(dom.contains("<dt>state</dt><dd>stopped: exhausted</dd>"), "{dom}");
    assert!(dom.contains("LLAMA_ARG_N_PARALLEL="), "env file shown");
    assert!(dom.contains("<dt>engine</dt>"));
    // Real figures: the table holds two complete trials with measured throughput.
    assert_eq!(dom.matches("<td>complete</td>").count(), 2, "{dom}");
}
