//! The space file's `[output]` section: one file per export format, rewritten as the best trial
//! changes, each equal to what `export --format X` prints for the best trial (issue 13 item 6).

use clap::ValueEnum;
use infertune::export::Format;

use crate::common::{fake_space, run_cli};

/// `[output]` key of each export format. Every format has one: the test fails when a format is
/// added to `export::Format` without a key here (and in `space/output.rs`).
const KEYS: &[(&str, Format)] = &[
    ("env_file", Format::Env),
    ("args_file", Format::Args),
    ("json_file", Format::Json),
    ("systemd_file", Format::Systemd),
    ("modelfile", Format::Modelfile),
    ("compose_file", Format::Compose),
    ("yaml_file", Format::Yaml),
];

fn format_name(format: Format) -> String {
    format.to_possible_value().expect("no skipped variants").get_name().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_writes_every_format_that_fits_the_backend_as_export_prints_it() {
    assert_eq!(KEYS.len(), Format::value_variants().len(), "every format has an [output] key");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let out_dir = dir.path().join("deploy");
    let fitting: Vec<(&str, Format)> =
        KEYS.iter().copied().filter(|(_, f)| f.check_backend("llamacpp").is_ok()).collect();
    assert_eq!(fitting.len(), 5, "env, args, json, systemd and modelfile fit llama.cpp");
    let output: String =
        std::iter::once("[output]\n".to_string())
            .chain(fitting.iter().map(|(key, f)| {
                format!("{key} = \"{}\"\n", out_dir.join(format!("best.{}", format_name(*f))).display())
            }))
            .collect();
    // The slower trial runs first, so the best trial changes and every file is rewritten.
    let space =
        fake_space(dir.path(), "out", "grid", r#"token_ms = { values = [40, 1], flag = "--token-ms" }"#, &output);
    let db_s = db.to_str().unwrap();
    let tuned = run_cli(&["--db", db_s, "tune", space.to_str().unwrap()]).await.unwrap();
    assert!(tuned.contains("stopped: exhausted"), "{tuned}");

    for (key, format) in fitting {
        let name = format_name(format);
        let path = out_dir.join(format!("best.{name}"));
        let written = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{key}: {}: {e}", path.display()));
        let exported = run_cli(&["--db", db_s, "export", "out", "--format", &name]).await.unwrap();
        assert_eq!(written, exported, "{key} differs from export --format {name}\n{tuned}");
    }
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("best.json")).unwrap()).unwrap();
    assert_eq!(best["params"]["token_ms"], 1, "the faster trial is the best: {best}");
}
