//! GPU memory through `nvidia-smi` (reference/backends.md §D): used and total MiB, summed over
//! the GPUs the server sees (`CUDA_VISIBLE_DEVICES` when it lists indices).
//!
//! NVML (`nvml-wrapper`) was left out to keep the dependency tree lean: `nvidia-smi` ships with
//! every NVIDIA driver and reads the same counters through NVML itself. One query costs a
//! process spawn (~20-50 ms), so the daemon samples every 500 ms.

use std::collections::BTreeMap;
use std::time::Duration;

/// GPU memory summed over the visible GPUs, in MiB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuMemory {
    pub used_mib: f64,
    pub total_mib: f64,
}

/// Parse `nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader,nounits`,
/// keeping the GPUs in `visible` (all when `None`).
pub fn parse_query(text: &str, visible: Option<&[u32]>) -> Option<GpuMemory> {
    let mut used = 0.0;
    let mut total = 0.0;
    let mut any = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [index, u, t] = fields[..] else { return None };
        let index: u32 = index.parse().ok()?;
        if visible.is_some_and(|v| !v.contains(&index)) {
            continue;
        }
        used += u.parse::<f64>().ok()?;
        total += t.parse::<f64>().ok()?;
        any = true;
    }
    any.then_some(GpuMemory { used_mib: used, total_mib: total })
}

/// `CUDA_VISIBLE_DEVICES` as indices; `None` when unset or not a list of numbers (UUIDs).
fn visible_indices(env: &BTreeMap<String, String>) -> Option<Vec<u32>> {
    let cvd = env.get("CUDA_VISIBLE_DEVICES").cloned().or_else(|| std::env::var("CUDA_VISIBLE_DEVICES").ok())?;
    cvd.split(',').map(|d| d.trim().parse().ok()).collect()
}

/// Query GPU memory as the server with environment `env` sees it; `None` without `nvidia-smi`
/// or a GPU. `nvidia-smi` runs with the server's environment added (its `PATH`, `CUDA_VISIBLE_DEVICES`).
pub async fn query(env: &BTreeMap<String, String>) -> Option<GpuMemory> {
    let mut cmd = tokio::process::Command::new("nvidia-smi");
    cmd.args(["--query-gpu=index,memory.used,memory.total", "--format=csv,noheader,nounits"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd.envs(env);
    let out = tokio::time::timeout(Duration::from_secs(5), cmd.output()).await.ok()?.ok()?;
    if !out.status.success() {
        return None;
    }
    parse_query(&String::from_utf8_lossy(&out.stdout), visible_indices(env).as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_filters_visible_gpus() {
        let text = "0, 15000, 81559\n1, 200, 81559\n";
        assert_eq!(parse_query(text, None), Some(GpuMemory { used_mib: 15200.0, total_mib: 163118.0 }));
        assert_eq!(parse_query(text, Some(&[1])), Some(GpuMemory { used_mib: 200.0, total_mib: 81559.0 }));
        assert_eq!(parse_query(text, Some(&[7])), None);
        assert_eq!(parse_query("No devices were found", None), None);
        assert_eq!(parse_query("", None), None);
    }
}
