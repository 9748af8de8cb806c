//! Search-space files: the raw TOML shape (`file::SpaceFile`), its validated form (`Space`), and
//! the points the search proposes (`Candidate`).
//!
//! Validation happens once, in [`Space::from_toml`], one section at a time; each section has its
//! own file with its types and its validator. Everything downstream takes a `Space` and can
//! trust it: ranges are ordered, value lists are non-empty, every parameter says how it is applied.
//! Input paths (command, model, dataset) are resolved relative to the space file's folder.
//! This module knows nothing about processes, HTTP or SQL.
//!
//! - `file`: the raw serde types, nothing validated
//! - `study`: `[study]` (`StrategyKind`)
//! - `backend`: `[backend]` and `[ollama]` (`BackendSpec`, `BackendKind`, `BackendMode`)
//! - `param`: `[params]` (`Param`, `Domain`, `Apply`, `Value`, `Candidate`)
//! - `workload`: `[workload]` and `[quality]` (`WorkloadSpec`, `QualitySpec`)
//! - `goal`: `[objective]`, `[slo]`, `[capacity]` (`Objective`, `Direction`, `Slo`, `CapacitySpec`, `Load`)
//! - `output`: `[output]` (`OutputSpec`)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod backend;
mod file;
mod goal;
pub mod ollama;
mod output;
mod param;
mod study;
mod workload;

pub use backend::{BackendKind, BackendMode, BackendSpec};
pub use goal::{CapacitySpec, Direction, Load, Objective, Slo};
pub use output::{Format, OutputSpec};
pub use param::{Apply, Candidate, Domain, ModelVariant, Param, Value, model_variants};
pub use study::StrategyKind;
pub use workload::{QualitySpec, TraceSpec, WorkloadSpec};

/// Why a space file was rejected. Every message names the file, the key and the bad value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading search space '{path}'")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("search space '{path}': {message}")]
    Parse { path: String, message: String },
    #[error("search space '{path}': key '{key}': {message}")]
    Invalid { path: String, key: String, message: String },
}

/// A rejected key and why, before the file's name is known: what the section validators return.
/// [`Space::from_toml`] turns it into [`Error::Invalid`].
#[derive(Debug)]
struct Invalid {
    key: String,
    message: String,
}

impl Invalid {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid { key: key.into(), message: message.into() }
    }

    fn at(self, origin: &str) -> Error {
        Error::Invalid { path: origin.to_string(), key: self.key, message: self.message }
    }
}

/// The backend adapters report a bad key as `(key, message)`.
impl From<(String, String)> for Invalid {
    fn from((key, message): (String, String)) -> Invalid {
        Invalid { key, message }
    }
}

/// A validated search space: the study, the backend, the parameters and the goals.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub name: String,
    pub strategy: StrategyKind,
    pub seed: u64,
    pub max_trials: Option<u32>,
    /// Re-measure the default configuration every this many trials (drift anchor); `None`: never.
    pub anchor_every: Option<u32>,
    /// Re-measure the point about to be named before naming it (`daemon::intensify`); `false`
    /// (`[study] intensify = false`, `tune --no-intensify`): every trial is the strategy's, and
    /// points are named on their runs as they are (recording a full grid needs this).
    pub intensify: bool,
    /// When the study ends on its budget (or runs out of candidates), re-measure the best
    /// `validate_top` trials against the default in this many interleaved rounds on fresh
    /// starts (0 = don't; `infertune validate` does it later).
    pub validate_pairs: u32,
    pub validate_top: usize,
    pub max_duration: Option<Duration>,
    pub backend: BackendSpec,
    pub params: Vec<Param>,
    pub workload: WorkloadSpec,
    pub objective: Objective,
    pub slos: Vec<Slo>,
    pub output: OutputSpec,
    /// The quality guard; `Some` when `[quality]` or `slo.quality_agreement_min` is given.
    pub quality: Option<QualitySpec>,
    /// The capacity search; `Some` exactly when the objective is `capacity`.
    pub capacity: Option<CapacitySpec>,
    /// The file's text as read, stored with the study.
    pub source: String,
}

impl Space {
    /// Read and validate a space file.
    pub fn load(path: &Path) -> Result<Space, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
        // Absolute, so launch plans and exported files name real paths wherever they are used.
        let base = std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).to_path_buf());
        Space::from_toml(&text, &path.display().to_string(), &base)
    }

    /// Validate space text. `origin` names the file in errors; `base` resolves relative paths.
    pub fn from_toml(text: &str, origin: &str, base: &Path) -> Result<Space, Error> {
        let file: file::SpaceFile = toml::from_str(text)
            .map_err(|e| Error::Parse { path: origin.to_string(), message: e.to_string().trim_end().to_string() })?;
        Space::from_file(file, text, base).map_err(|e| e.at(origin))
    }

    /// The sections in file order; the first bad key stops validation.
    fn from_file(file: file::SpaceFile, text: &str, base: &Path) -> Result<Space, Invalid> {
        let study = study::validate_study(file.study)?;
        let backend = backend::validate_backend(file.backend, file.ollama, base)?;
        let params = param::validate_params(&file.params, &backend)?;
        if backend.kind == BackendKind::Ollama {
            ollama::validate_space(&backend, &params)?;
        }
        let workload = workload::validate_workload(file.workload, base)?;
        let objective = goal::validate_objective(file.objective)?;
        let slos = goal::validate_slos(&file.slo)?;
        let capacity = goal::validate_capacity(file.capacity, &objective, &slos)?;
        if capacity.is_some() && workload.trace.is_some() {
            // A capacity search sets the load itself; a trace fixes it (issue 17).
            return Err(Invalid::new(
                "workload.trace",
                "a capacity search varies the request rate or concurrency, while a trace replays its own arrivals; \
                 to load the server harder with a trace, tune with a smaller time_scale (0.5 = twice as fast), \
                 or search capacity with a dataset",
            ));
        }
        let output = output::validate_output(file.output, backend.kind)?;
        let quality = workload::validate_quality(file.quality, file.slo.quality_agreement_min, base);
        Ok(Space {
            name: study.name,
            strategy: study.strategy,
            seed: study.seed,
            max_trials: study.max_trials,
            anchor_every: study.anchor_every,
            intensify: study.intensify,
            validate_pairs: study.validate_pairs,
            validate_top: study.validate_top,
            max_duration: study.max_duration,
            backend,
            params,
            workload,
            objective,
            slos,
            output,
            quality,
            capacity,
            source: text.to_string(),
        })
    }

    /// The candidate made of every parameter's default; `None` if some parameter has none.
    pub fn default_candidate(&self) -> Option<Candidate> {
        let mut values = BTreeMap::new();
        for p in &self.params {
            values.insert(p.name.clone(), p.default.clone()?);
        }
        Some(Candidate(values))
    }

    /// Number of points on the full grid (saturating).
    pub fn grid_size(&self) -> u64 {
        self.params.iter().map(|p| p.domain.grid_points().len() as u64).fold(1u64, |acc, n| acc.saturating_mul(n))
    }
}

/// Parse a duration like `90s`, `15m`, `8h`, `1h30m`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("'{text}' lacks a unit (ms, s, m, h)"))?;
        if digits == 0 {
            return Err(format!("'{text}' is not a duration (like 90s, 15m, 8h)"));
        }
        let number: f64 =
            rest[..digits].parse().map_err(|_| format!("'{text}' is not a duration (like 90s, 15m, 8h)"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "d" => number * 86400.0,
            other => return Err(format!("'{text}' has an unknown unit '{other}'")),
        };
        total += Duration::try_from_secs_f64(secs).map_err(|e| format!("'{text}': {e}"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `path` relative to `base` unless absolute, with `..` folded away.
pub(crate) fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        let joined = base.join(p);
        // Tidy `a/b/../c` without touching the filesystem (the file may not exist yet).
        let mut out = PathBuf::new();
        for part in joined.components() {
            match part {
                std::path::Component::ParentDir
                    if out.components().next_back().is_some_and(|c| matches!(c, std::path::Component::Normal(_))) =>
                {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[study]
name = "t"
strategy = "grid"
[backend]
kind = "llamacpp"
command = ["../scripts/llama-server"]
model = "../models/m-{quant}.gguf"
[params]
parallel = { values = [1, 2, 4], flag = "-np", default = 4 }
ctx = { min = 1024, max = 8192, log = true, flag = "-c" }
quant = { values = ["Q4_0", "Q8_0"], template = "model" }
kv = { values = ["f16", "q8_0"], flags = ["-ctk", "-ctv"] }
"#;

    fn parse(text: &str) -> Result<Space, Error> {
        Space::from_toml(text, "t.toml", Path::new("/repo/search-spaces"))
    }

    #[test]
    fn minimal_space_parses_and_resolves_paths() {
        let space = parse(MINIMAL).unwrap();
        assert_eq!(space.backend.command[0], "/repo/scripts/llama-server");
        assert_eq!(space.backend.model, "/repo/models/m-{quant}.gguf");
        assert_eq!(space.params.len(), 4);
        assert_eq!(space.workload.dataset, PathBuf::from("/repo/prompts/chat-mix.jsonl"));
        assert_eq!(space.objective.metric.name(), "goodput_rps");
        // grid: 3 parallel × ctx {1024,2048,4096,8192} × 2 quant × 2 kv
        assert_eq!(space.grid_size(), 3 * 4 * 2 * 2);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
    }

    fn err_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = err_of(&MINIMAL.replace("min = 1024", "min = \"big\""));
        assert!(e.contains("t.toml") && e.contains("min"), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e =
            err_of(&MINIMAL.replace("[params]", "[params]\nparalel = { values = [1], flag = \"-np\", colour = 1 }"));
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn empty_value_list_names_the_key() {
        let e =
            err_of(&MINIMAL.replace("values = [1, 2, 4], flag = \"-np\", default = 4", "values = [], flag = \"-np\""));
        assert!(e.contains("params.parallel.values") && e.contains("at least one"), "{e}");
    }

    #[test]
    fn min_above_max_names_the_key_and_values() {
        let e = err_of(&MINIMAL.replace("min = 1024, max = 8192", "min = 9000, max = 8192"));
        assert!(e.contains("params.ctx.min") && e.contains("'9000'") && e.contains("'8192'"), "{e}");
    }

    #[test]
    fn template_without_placeholder_is_rejected() {
        let e = err_of(&MINIMAL.replace("m-{quant}.gguf", "m.gguf"));
        assert!(e.contains("params.quant.template") && e.contains("{quant}"), "{e}");
    }

    #[test]
    fn output_takes_a_file_per_format_that_fits_the_backend() {
        let text = MINIMAL.replace("kind = \"llamacpp\"", "kind = \"vllm\"")
            + "[output]\nyaml_file = \"v.yaml\"\nenv_file = \"b.env\"\ncompose_file = \"c.yaml\"\n";
        let files = parse(&text).unwrap().output.files;
        use super::Format;
        let expect = [(Format::Env, "b.env"), (Format::Compose, "c.yaml"), (Format::Yaml, "v.yaml")];
        assert_eq!(files, expect.map(|(f, p)| (f, PathBuf::from(p))));
        let e = err_of(&(MINIMAL.to_string() + "[output]\nyaml_file = \"v.yaml\"\n"));
        assert!(e.contains("key 'output.yaml_file'") && e.contains("'v.yaml'") && e.contains("'llamacpp'"), "{e}");
    }

    #[test]
    fn default_outside_domain_is_rejected() {
        let e = err_of(&MINIMAL.replace("default = 4", "default = 3"));
        assert!(e.contains("params.parallel.default") && e.contains("'3'"), "{e}");
    }
}
