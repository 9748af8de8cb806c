//! The Prometheus textfile-collector file of `watch --textfile DIR`: `DIR/infertune_watch_<study>.prom`,
//! written to a temp file and renamed, so a scrape never reads half a file
//! (`reference/traces-and-fleet.md` §3; the node exporter reads `*.prom` from
//! `--collector.textfile.directory`, and ignores the dot-named temp file).

use std::path::{Path, PathBuf};

/// One watch run, as the textfile reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchFigures<'a> {
    pub study: &'a str,
    /// The objective's metric name (a label).
    pub metric: &'a str,
    pub objective: f64,
    /// The deployed baseline (`NaN` when there is none).
    pub baseline: f64,
    pub ratio_lo: f64,
    pub ratio_hi: f64,
    pub is_slo_met: bool,
    pub is_regression: bool,
    pub is_fingerprint_changed: bool,
    /// When the measurement ended, unix ms.
    pub at_ms: i64,
}

/// The file's path for `study` in `dir` (characters outside `[A-Za-z0-9_-]` become `_`).
pub fn path(dir: &Path, study: &str) -> PathBuf {
    let safe: String =
        study.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    dir.join(format!("infertune_watch_{safe}.prom"))
}

fn label(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// The exposition-format text of one watch run.
pub fn render(f: &WatchFigures<'_>) -> String {
    let study = label(f.study);
    let with_metric = format!("study=\"{study}\",metric=\"{}\"", label(f.metric));
    let only_study = format!("study=\"{study}\"");
    let rows: [(&str, &str, &str, f64); 8] = [
        ("infertune_watch_objective", "Objective measured by the last watch run", &with_metric, f.objective),
        ("infertune_watch_baseline", "Objective of the deployed configuration's canary", &with_metric, f.baseline),
        ("infertune_watch_ratio_ci_low", "Lower bound of the 95 % CI of measured/baseline", &with_metric, f.ratio_lo),
        ("infertune_watch_ratio_ci_high", "Upper bound of the 95 % CI of measured/baseline", &with_metric, f.ratio_hi),
        (
            "infertune_watch_slo_met",
            "1 when every SLO of the study was met",
            &only_study,
            f64::from(u8::from(f.is_slo_met)),
        ),
        (
            "infertune_watch_regression",
            "1 when an SLO was missed or the objective is significantly worse",
            &only_study,
            f64::from(u8::from(f.is_regression)),
        ),
        (
            "infertune_watch_fingerprint_changed",
            "1 when model files, engine version or host differ from the study's",
            &only_study,
            f64::from(u8::from(f.is_fingerprint_changed)),
        ),
        (
            "infertune_watch_last_run_timestamp_seconds",
            "When the last watch run ended",
            &only_study,
            f.at_ms as f64 / 1000.0,
        ),
    ];
    let mut out = String::new();
    for (name, help, labels, value) in rows {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {}\n", number(value)));
    }
    out
}

/// Write the file atomically into `dir`; returns its path.
pub fn write(dir: &Path, f: &WatchFigures<'_>) -> std::io::Result<PathBuf> {
    let path = path(dir, f.study);
    crate::envfile::write_atomic(&path, &render(f))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text_and_file() {
        let f = WatchFigures {
            study: "quick start",
            metric: "goodput_rps",
            objective: 1.5,
            baseline: f64::NAN,
            ratio_lo: 0.9,
            ratio_hi: 1.1,
            is_slo_met: true,
            is_regression: false,
            is_fingerprint_changed: true,
            at_ms: 1_800_000_000_500,
        };
        let text = render(&f);
        assert!(
            text.contains("infertune_watch_objective{study=\"quick start\",metric=\"goodput_rps\"} 1.5\n"),
            "{text}"
        );
        assert!(text.contains("infertune_watch_baseline{study=\"quick start\",metric=\"goodput_rps\"} NaN\n"));
        assert!(text.contains("infertune_watch_fingerprint_changed{study=\"quick start\"} 1\n"));
        assert!(text.contains("infertune_watch_regression{study=\"quick start\"} 0\n"));
        assert!(text.contains("infertune_watch_last_run_timestamp_seconds{study=\"quick start\"} 1800000000.5\n"));
        assert_eq!(text.matches("# TYPE").count(), 8);
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &f).unwrap();
        assert_eq!(p.file_name().unwrap(), "infertune_watch_quick_start.prom");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
