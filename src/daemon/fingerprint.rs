//! The study's fingerprint: engine version, model file hashes and host facts, taken at start and
//! re-checked cheaply before each trial (drift); and the check, before the first trial, that the
//! model files a space can launch exist.
//!
//! Model files weigh 4–40 GB. They are hashed streaming on a blocking thread (constant memory),
//! and their hashes are remembered in the store by (path, size, mtime), so a resume reads none of
//! them again. The engine's `--version` runs once per run, and again only when its program file
//! changes (for vLLM it is a Python start-up). See issue 13, items 4 and 8.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::backend::Backend;
use crate::measure::system;
use crate::space::{Apply, Domain, ModelVariant, Space, Value};
use crate::store::Store;
use crate::trial::Fingerprint;

/// What a model file's hash reads when the file is not there.
const MISSING: &str = "missing";
/// Read size while hashing: large enough for full disk speed, small enough to not matter.
const HASH_BUFFER_BYTES: usize = 1 << 20;

/// Engine version, model file hashes and host facts. Hashes come from `store` when the file's
/// size and mtime match a remembered one.
pub(super) async fn fingerprint(space: &Space, backend: &dyn Backend, store: &Store) -> anyhow::Result<Fingerprint> {
    let engine_version = engine_version(space, backend).await?;
    let mut model_sha256 = BTreeMap::new();
    for path in model_paths(space) {
        let hash = model_hash(store, &path).await?;
        model_sha256.insert(path, hash);
    }
    Ok(Fingerprint { engine_version, model_sha256, host: system::host() })
}

/// Size and modification time (unix ns) of a file; `None` when it cannot be read.
fn file_stamp(path: &Path) -> Option<(u64, i64)> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((meta.len(), i64::try_from(mtime.as_nanos()).unwrap_or(i64::MAX)))
}

/// SHA-256 of the model file at `path` (`"missing"` when absent), from the store when the file
/// has not changed since it was last hashed; else hashed now and remembered.
async fn model_hash(store: &Store, path: &str) -> anyhow::Result<String> {
    let Some((size_bytes, mtime_ns)) = file_stamp(Path::new(path)) else { return Ok(MISSING.to_string()) };
    if let Some(hash) = store.cached_model_hash(path, size_bytes, mtime_ns).await? {
        return Ok(hash);
    }
    info!(path, size_bytes, "hashing model file");
    let owned = PathBuf::from(path);
    let hash = match tokio::task::spawn_blocking(move || sha256_file(&owned)).await.context("hashing thread")? {
        Ok(hash) => hash,
        // Vanished or unreadable since the stat: the same as missing, and not remembered.
        Err(_) => return Ok(MISSING.to_string()),
    };
    store.put_model_hash(path, size_bytes, mtime_ns, &hash).await?;
    Ok(hash)
}

/// Hex SHA-256 of a file, read in 1 MiB pieces: memory stays flat whatever the file's size.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER_BYTES];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What the backend program says its version is (the first line naming a version).
async fn engine_version(space: &Space, backend: &dyn Backend) -> anyhow::Result<String> {
    let program = &space.backend.command[0];
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(program)
            .args(&space.backend.command[1..])
            .args(backend.version_args())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("'{program} --version' did not answer within 30 s"))?
    .with_context(|| format!("backend program '{program}' could not be run (check [backend] command)"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let engine_version = text
        .lines()
        .find(|l| l.to_ascii_lowercase().contains("version"))
        .or_else(|| text.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    Ok(engine_version)
}

/// What differs between the study's fingerprint and the current one (empty = nothing).
pub(super) fn fingerprint_drift(old: &Fingerprint, new: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    if old.engine_version != new.engine_version {
        out.push(format!("engine version '{}' -> '{}'", old.engine_version, new.engine_version));
    }
    for (path, hash) in &old.model_sha256 {
        match new.model_sha256.get(path) {
            Some(h) if h == hash => {}
            Some(h) => out.push(format!("model '{path}' sha256 {} -> {}", short(hash), short(h))),
            None => out.push(format!("model '{path}' is no longer in the space")),
        }
    }
    if old.host.cpu_model != new.host.cpu_model {
        out.push(format!("CPU '{}' -> '{}'", old.host.cpu_model, new.host.cpu_model));
    }
    if old.host.logical_cores != new.host.logical_cores {
        out.push(format!("cores {} -> {}", old.host.logical_cores, new.host.logical_cores));
    }
    // RAM as reported moves by a few MB between boots; a real change is large.
    let (a, b) = (old.host.ram_bytes as f64, new.host.ram_bytes as f64);
    if (a - b).abs() > 0.05 * a.max(b) {
        out.push(format!("RAM {} MB -> {} MB", old.host.ram_bytes >> 20, new.host.ram_bytes >> 20));
    }
    out
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Size and modification time of each model file and of the backend program's files, to notice
/// a replaced file cheaply before every trial (rehashing gigabytes, or starting Python for
/// `--version`, per trial would not be cheap).
pub(super) struct Watch {
    models: BTreeMap<String, Option<(u64, i64)>>,
    program: Vec<(PathBuf, Option<(u64, i64)>)>,
}

impl Watch {
    pub(super) fn snapshot(space: &Space) -> Watch {
        Watch {
            models: model_paths(space).into_iter().map(|p| (p.clone(), file_stamp(Path::new(&p)))).collect(),
            program: program_files(&space.backend.command).into_iter().map(|p| (p.clone(), file_stamp(&p))).collect(),
        }
    }
}

/// The files that make up the backend program: the first word resolved on PATH when it is a
/// bare name, and any later word naming an existing file (`python serve.py`).
fn program_files(command: &[String]) -> Vec<PathBuf> {
    let Some((program, rest)) = command.split_first() else { return Vec::new() };
    let first = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file()))
    };
    first.into_iter().chain(rest.iter().map(PathBuf::from).filter(|p| p.is_file())).collect()
}

/// Re-check the cheap parts of the fingerprint before a trial: whether a model file was
/// replaced (then its hash), and whether the engine program changed (then its version).
/// `Some(what changed)` on drift.
pub(super) async fn drift_before_trial(
    space: &Space,
    backend: &dyn Backend,
    fingerprint: &Fingerprint,
    watch: &mut Watch,
    store: &Store,
) -> anyhow::Result<Option<String>> {
    let now = Watch::snapshot(space);
    for (path, stamp) in &now.models {
        if watch.models.get(path) != Some(stamp) {
            let hash = model_hash(store, path).await?;
            match fingerprint.model_sha256.get(path) {
                Some(old) if old == &hash => {}
                Some(old) => return Ok(Some(format!("model '{path}' sha256 {} -> {}", short(old), short(&hash)))),
                None => {}
            }
        }
    }
    let program_changed = now.program != watch.program;
    *watch = now;
    if program_changed {
        match engine_version(space, backend).await {
            Ok(v) if v != fingerprint.engine_version => {
                return Ok(Some(format!("engine version '{}' -> '{v}'", fingerprint.engine_version)));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Every model file the space's template parameters can produce, with the values behind each.
fn model_variants(space: &Space) -> Vec<ModelVariant> {
    crate::space::model_variants(&space.backend.model, &space.params)
}

/// Every model path the space's template parameters can produce.
pub(super) fn model_paths(space: &Space) -> Vec<String> {
    model_variants(space).into_iter().map(|v| v.model).collect()
}

/// A template value dropped from the space because its model file does not exist.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedModel {
    /// The template parameter (e.g. `quant`).
    pub param: String,
    /// The dropped value (e.g. `Q5_K`).
    pub value: Value,
    /// The model path it named.
    pub path: String,
}

/// Check, before the first trial, that every model file the space can launch exists: a typo in
/// a path would otherwise cost a server start and an `infeasible` trial per configuration, all
/// night. A missing file is an error naming the parameter, the value and the path; with
/// `skip_missing`, values whose files are all missing are dropped from (a copy of) the space
/// instead, and listed.
pub(super) fn check_model_files(
    space: &Space,
    skip_missing: bool,
) -> anyhow::Result<(Cow<'_, Space>, Vec<SkippedModel>)> {
    if !crate::backend::from_spec(&space.backend, &space.params).is_model_a_file(&space.backend.model) {
        return Ok((Cow::Borrowed(space), Vec::new()));
    }
    // vLLM serves a local model from a folder; llama.cpp from a file. Either way: it must exist.
    let is_missing = |path: &str| !Path::new(path).exists();
    let variants = model_variants(space);
    let Some(first_missing) = variants.iter().find(|v| is_missing(&v.model)) else {
        return Ok((Cow::Borrowed(space), Vec::new()));
    };
    let hint = "(check [backend] model or [params]";
    if first_missing.values.is_empty() {
        bail!("model file not found: '{}' (check [backend] model)", first_missing.model);
    }
    if !skip_missing {
        let params: Vec<&str> = first_missing.values.iter().map(|(p, _)| p.as_str()).collect();
        bail!(
            "model file{} not found: '{}' {hint} {}; --skip-missing drops such values)",
            describe(&first_missing.values),
            first_missing.model,
            params.join(", ")
        );
    }

    // Drop each template value whose every file is missing.
    let mut pruned = space.clone();
    let mut skipped = Vec::new();
    for param in pruned.params.iter_mut().filter(|p| matches!(p.apply, Apply::Template(_))) {
        let mut kept = Vec::new();
        for value in param.domain.grid_points() {
            let with_value: Vec<&ModelVariant> =
                variants.iter().filter(|v| v.values.iter().any(|(p, x)| p == &param.name && x == &value)).collect();
            match with_value.iter().find(|v| !is_missing(&v.model)) {
                Some(_) => kept.push(value),
                None => skipped.push(SkippedModel {
                    param: param.name.clone(),
                    value,
                    path: with_value.first().map(|v| v.model.clone()).unwrap_or_default(),
                }),
            }
        }
        if kept.is_empty() {
            bail!(
                "no model file exists for any value of '{}' (first: '{}') {hint} {})",
                param.name,
                skipped.iter().find(|s| s.param == param.name).map_or("", |s| s.path.as_str()),
                param.name
            );
        }
        if param.default.as_ref().is_some_and(|d| !kept.contains(d)) {
            param.default = None;
        }
        if kept.len() < param.domain.grid_points().len() {
            param.domain = Domain::Values(kept);
        }
    }
    // Files missing only in some combinations of two template parameters cannot be dropped by value.
    if let Some(v) = model_variants(&pruned).iter().find(|v| is_missing(&v.model)) {
        bail!(
            "model file{} not found: '{}' {hint} {}; --skip-missing drops only values whose every file is missing)",
            describe(&v.values),
            v.model,
            v.values.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok((Cow::Owned(pruned), skipped))
}

/// ` for quant = 'Q5_K'` (or nothing when the model has no template).
fn describe(values: &[(String, Value)]) -> String {
    if values.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = values.iter().map(|(p, v)| format!("{p} = '{v}'")).collect();
    format!(" for {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(kind: &str, model: &str, dir: &Path) -> Space {
        let text = format!(
            r#"[study]
name = "t"
[backend]
kind = "{kind}"
command = ["/opt/engine"]
model = "{model}"
[params]
quant = {{ values = ["Q4_0", "Q8_0"], template = "model", default = "Q8_0" }}
np = {{ values = [1, 2], flag = "-np" }}
"#
        );
        Space::from_toml(&text, "t.toml", dir).unwrap()
    }

    #[test]
    fn llamacpp_model_files_are_checked_and_missing_values_dropped_on_request() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m-Q4_0.gguf"), "w").unwrap();
        let s = space("llamacpp", "./m-{quant}.gguf", dir.path());
        let err = check_model_files(&s, false).unwrap_err().to_string();
        let missing = dir.path().join("m-Q8_0.gguf");
        assert_eq!(
            err,
            format!(
                "model file for quant = 'Q8_0' not found: '{}' (check [backend] model or [params] quant; \
                 --skip-missing drops such values)",
                missing.display()
            )
        );
        let (pruned, skipped) = check_model_files(&s, true).unwrap();
        assert_eq!(
            skipped,
            vec![SkippedModel {
                param: "quant".into(),
                value: Value::Str("Q8_0".into()),
                path: missing.display().to_string()
            }]
        );
        let quant = pruned.params.iter().find(|p| p.name == "quant").unwrap();
        assert_eq!(quant.domain, Domain::Values(vec![Value::Str("Q4_0".into())]));
        assert_eq!(quant.default, None, "the default named a dropped value");
        assert_eq!(pruned.source, s.source, "the stored space text is the file's");

        std::fs::remove_file(dir.path().join("m-Q4_0.gguf")).unwrap();
        let err = check_model_files(&s, true).unwrap_err().to_string();
        assert!(err.starts_with("no model file exists for any value of 'quant'"), "{err}");
    }

    #[test]
    fn only_local_vllm_models_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let hub = space("vllm", "Qwen/Qwen2.5-7B-Instruct-{quant}", dir.path());
        assert!(matches!(check_model_files(&hub, false).unwrap(), (Cow::Borrowed(_), ref s) if s.is_empty()));
        let local = space("vllm", "./models/qwen-{quant}", dir.path());
        let err = check_model_files(&local, false).unwrap_err().to_string();
        assert!(err.contains("quant = 'Q4_0'") && err.contains("models/qwen-Q4_0"), "{err}");
        std::fs::create_dir_all(dir.path().join("models/qwen-Q4_0")).unwrap();
        std::fs::create_dir_all(dir.path().join("models/qwen-Q8_0")).unwrap();
        assert!(check_model_files(&local, false).is_ok(), "a model folder counts");
    }

    #[test]
    fn files_hash_streaming_to_the_same_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        // Larger than one read buffer, not a multiple of it.
        let bytes: Vec<u8> = (0..(HASH_BUFFER_BYTES * 2 + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), crate::store::sha256_hex(&bytes));
    }
}
