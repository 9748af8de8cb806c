//! The server-side probe of one workload: started just before it, finished just after.
//!
//! It reads what the server reports about itself (version, Prometheus `/metrics` before and
//! after, the KV-cache gauge during), samples the server process tree's RSS every 250 ms and GPU
//! memory every 500 ms on its own task (a slow query never stalls the workload), and counts the
//! tuner's own CPU time. It knows no backend: the caller says which paths and PIDs to read.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::gpu::{self, GpuMemory};
use super::prom::{ServerMetrics, VllmSnapshot};
use super::system;

/// How often the server tree's RSS is sampled.
const RSS_INTERVAL: Duration = Duration::from_millis(250);
/// How often GPU memory and the KV-cache gauge are sampled.
const SERVER_SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

/// What to read, and where.
#[derive(Debug, Clone, Default)]
pub struct ProbeSpec {
    pub base_url: String,
    /// Path answering the server's version (vLLM `/version`).
    pub version_path: Option<&'static str>,
    /// Prometheus metrics path (vLLM `/metrics`).
    pub metrics_path: Option<&'static str>,
    /// Root of the process tree whose RSS is the server's; `None` when it cannot be seen.
    pub memory_pid: Option<u32>,
    /// `Some(server env)` to sample GPU memory with `nvidia-smi` (the env's
    /// `CUDA_VISIBLE_DEVICES` picks the GPUs).
    pub gpu_env: Option<BTreeMap<String, String>>,
    /// GPU memory in use before the server started (`None` when it was reused).
    pub gpu_baseline: Option<GpuMemory>,
}

/// What the probe saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerSide {
    /// Highest summed RSS of the server's process tree, in bytes (0 when it could not be seen).
    pub peak_rss_bytes: u64,
    /// CPU time the tuner's own process used meanwhile, in ms.
    pub client_cpu_ms: f64,
    /// Peak GPU memory in use (visible GPUs summed), in bytes.
    pub peak_vram_bytes: Option<u64>,
    /// `/metrics` deltas, version, KV usage peak and VRAM baseline; `None` when the server
    /// reports neither metrics nor a version.
    pub server_metrics: Option<ServerMetrics>,
}

#[derive(Debug, Default)]
struct Peaks {
    rss_bytes: u64,
    vram_used_mib: Option<f64>,
    vram_total_mib: Option<f64>,
    kv_cache_usage: Option<f64>,
}

/// A running probe.
pub struct Probe {
    client: reqwest::Client,
    spec: ProbeSpec,
    version: Option<String>,
    metrics_before: Option<VllmSnapshot>,
    cpu_before: Duration,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Peaks>,
}

fn max(a: Option<f64>, b: f64) -> Option<f64> {
    Some(a.map_or(b, |a| a.max(b)))
}

impl Probe {
    /// Read the "before" figures and start sampling.
    pub async fn start(client: &reqwest::Client, spec: ProbeSpec) -> Probe {
        let version = match spec.version_path {
            // vLLM answers `{"version": "0.33.0"}`; keep plain text as it is.
            Some(path) => fetch_text(client, &format!("{}{path}", spec.base_url)).await.map(|v| {
                serde_json::from_str::<serde_json::Value>(&v)
                    .ok()
                    .and_then(|d| d["version"].as_str().map(str::to_string))
                    .unwrap_or_else(|| v.trim().to_string())
            }),
            None => None,
        };
        let metrics_before = snapshot(client, &spec).await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(sample(client.clone(), spec.clone(), stop.clone()));
        Probe { client: client.clone(), spec, version, metrics_before, cpu_before: system::own_cpu_time(), stop, task }
    }

    /// Stop sampling and read the "after" figures.
    pub async fn finish(self) -> ServerSide {
        let client_cpu = system::own_cpu_time().saturating_sub(self.cpu_before);
        self.stop.cancel();
        let peaks = self.task.await.unwrap_or_default();
        let metrics_after = snapshot(&self.client, &self.spec).await;
        let server_metrics = (self.spec.metrics_path.is_some() || self.version.is_some()).then(|| {
            let mut m = match (&self.metrics_before, &metrics_after) {
                (Some(b), Some(a)) => ServerMetrics::delta(b, a),
                _ => ServerMetrics::default(),
            };
            m.version = self.version.clone();
            m.kv_cache_usage_peak = match (m.kv_cache_usage_peak, peaks.kv_cache_usage) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            m.vram_baseline_mb = self.spec.gpu_baseline.map(|g| g.used_mib);
            m.vram_total_mb = peaks.vram_total_mib.or(self.spec.gpu_baseline.map(|g| g.total_mib));
            m
        });
        ServerSide {
            peak_rss_bytes: peaks.rss_bytes,
            client_cpu_ms: client_cpu.as_secs_f64() * 1000.0,
            peak_vram_bytes: peaks.vram_used_mib.map(|mib| (mib * 1024.0 * 1024.0) as u64),
            server_metrics,
        }
    }
}

/// GET `url` and return the body of a 2xx answer (`None` for anything else). For small
/// server-side documents: `/metrics`, `/version`, `/v1/models`.
pub async fn fetch_text(client: &reqwest::Client, url: &str) -> Option<String> {
    let resp = client.get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.text().await.ok()
}

async fn snapshot(client: &reqwest::Client, spec: &ProbeSpec) -> Option<VllmSnapshot> {
    let path = spec.metrics_path?;
    fetch_text(client, &format!("{}{path}", spec.base_url)).await.map(|t| VllmSnapshot::from_text(&t))
}

/// The sampling task: RSS every 250 ms, GPU memory and the KV gauge every 500 ms, until `stop`.
async fn sample(client: reqwest::Client, spec: ProbeSpec, stop: CancellationToken) -> Peaks {
    let mut peaks = Peaks::default();
    let mut tree = spec.memory_pid.map(system::TreeSampler::new);
    let mut rss_tick = tokio::time::interval(RSS_INTERVAL);
    let mut server_tick = tokio::time::interval(SERVER_SAMPLE_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = rss_tick.tick() => {
                peaks.rss_bytes = peaks.rss_bytes.max(tree.as_mut().map_or(0, |t| t.rss_bytes()));
            }
            _ = server_tick.tick() => {
                if let Some(env) = &spec.gpu_env
                    && let Some(g) = gpu::query(env).await
                {
                    peaks.vram_used_mib = max(peaks.vram_used_mib, g.used_mib);
                    peaks.vram_total_mib = Some(g.total_mib);
                }
                if let Some(kv) = snapshot(&client, &spec).await.and_then(|s| s.kv_cache_usage) {
                    peaks.kv_cache_usage = max(peaks.kv_cache_usage, kv);
                }
            }
        }
    }
    peaks
}
