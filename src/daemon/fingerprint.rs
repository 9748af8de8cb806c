//! The study's fingerprint: engine version, model file hashes and host facts, taken at start and
//! re-checked cheaply before each trial (drift).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::backend::Backend;
use crate::measure::system;
use crate::space::{Apply, Space, Value};
use crate::trial::Fingerprint;

/// Engine version, model file hashes and host facts.
pub(super) async fn fingerprint(space: &Space, backend: &dyn Backend) -> anyhow::Result<Fingerprint> {
    let engine_version = engine_version(space, backend).await?;
    let mut model_sha256 = BTreeMap::new();
    for path in model_paths(space) {
        let hash = match tokio::fs::read(&path).await {
            Ok(bytes) => tokio::task::spawn_blocking(move || crate::store::sha256_hex(&bytes)).await?,
            Err(_) => "missing".to_string(),
        };
        model_sha256.insert(path, hash);
    }
    Ok(Fingerprint { engine_version, model_sha256, host: system::host() })
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

/// Size and modification time of each model file, to notice a replaced file cheaply before
/// every trial (rehashing gigabytes per trial would not be cheap).
pub(super) struct ModelFiles(BTreeMap<String, Option<(u64, SystemTime)>>);

impl ModelFiles {
    pub(super) fn snapshot(paths: &[String]) -> ModelFiles {
        ModelFiles(
            paths
                .iter()
                .map(|p| {
                    let meta = std::fs::metadata(p).ok().and_then(|m| Some((m.len(), m.modified().ok()?)));
                    (p.clone(), meta)
                })
                .collect(),
        )
    }
}

/// Re-check the cheap parts of the fingerprint before a trial: the engine version, and
/// whether a model file was replaced (then its hash). `Some(what changed)` on drift.
pub(super) async fn drift_before_trial(
    space: &Space,
    backend: &dyn Backend,
    fingerprint: &Fingerprint,
    files: &mut ModelFiles,
) -> Option<String> {
    let now = ModelFiles::snapshot(&files.0.keys().cloned().collect::<Vec<_>>());
    for (path, meta) in &now.0 {
        if files.0.get(path) != Some(meta) {
            let hash = match tokio::fs::read(path).await {
                Ok(bytes) => crate::store::sha256_hex(&bytes),
                Err(_) => "missing".into(),
            };
            match fingerprint.model_sha256.get(path) {
                Some(old) if old == &hash => {}
                Some(old) => return Some(format!("model '{path}' sha256 {} -> {}", short(old), short(&hash))),
                None => {}
            }
        }
    }
    *files = now;
    match engine_version(space, backend).await {
        Ok(v) if v != fingerprint.engine_version => {
            Some(format!("engine version '{}' -> '{v}'", fingerprint.engine_version))
        }
        _ => None,
    }
}

/// Every model path the space's template parameters can produce.
pub(super) fn model_paths(space: &Space) -> Vec<String> {
    let mut paths = vec![space.backend.model.clone()];
    for p in &space.params {
        if let Apply::Template(_) = p.apply {
            let placeholder = format!("{{{}}}", p.name);
            let values: Vec<Value> = p.domain.grid_points();
            paths = paths
                .iter()
                .flat_map(|path| values.iter().map(|v| path.replace(&placeholder, &v.to_string())).collect::<Vec<_>>())
                .collect();
        }
    }
    paths
}
