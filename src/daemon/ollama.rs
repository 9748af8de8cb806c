//! Ollama-specific steps of the loop: before the first trial, check the tags the space needs,
//! pull missing ones (or refuse) and fingerprint the server and model digests; in service mode,
//! rewrite the user's env file or drop-in, run their restart command (argv, never a shell), and
//! put the original file back when the study ends, however it ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Event;
use crate::backend::ollama::{EnvFileFormat, Ollama, OllamaSpec};
use crate::backend::process::{self, Server};
use crate::backend::{Backend, LaunchPlan};
use crate::export;
use crate::measure::system;
use crate::space::{BackendMode, Space};
use crate::trial::Fingerprint;
use crate::workload::ollama as api;

/// Server version, model digests (by tag) and host facts; pulls missing tags first.
pub async fn prepare(
    space: &Space,
    client: &reqwest::Client,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<Fingerprint> {
    let adapter = Ollama::new(space.backend.clone(), space.params.clone());
    let settings = adapter.settings().clone();
    // Spawn mode: a short-lived server with the fixed environment, just to talk to the store.
    let mut temp: Option<Server> = None;
    let base_url = match space.backend.mode {
        BackendMode::Service => {
            // The service may be (re)starting, e.g. right after a previous study put its file back.
            if wait_url(client, &format!("{}/", settings.url), space.backend.ready_timeout).await.is_none() {
                bail!(
                    "the Ollama service at '{}' does not answer (waited {:?}); start it first",
                    settings.url,
                    space.backend.ready_timeout
                );
            }
            settings.url.clone()
        }
        BackendMode::Spawn => {
            let port = process::free_port()?;
            let plan = LaunchPlan {
                program: space.backend.command[0].clone(),
                args: space.backend.command[1..].iter().chain(&space.backend.args).cloned().collect(),
                env: space
                    .backend
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .chain(adapter.bind_env(port))
                    .collect(),
                deploy_env: BTreeMap::new(),
                args_without_env: Vec::new(),
                request_options: serde_json::Map::new(),
                model: String::new(),
            };
            let mut server = Server::spawn(&plan, &[], port)
                .context("starting ollama to check its models (check [backend] command)")?;
            if let Err(e) = server.wait_ready(client, "/", space.backend.ready_timeout).await {
                let log = server.log.text();
                server.stop(super::STOP_GRACE).await;
                bail!("'{}' did not get ready ({e:?}): {}", plan.program, crate::backend::last_lines(&log, 5));
            }
            let url = server.url();
            temp = Some(server);
            url
        }
    };
    let result = check_models(&adapter, &settings, client, &base_url, on_event).await;
    if let Some(server) = temp {
        server.stop(super::STOP_GRACE).await;
    }
    let (version, digests) = result?;
    Ok(Fingerprint { engine_version: format!("ollama {version}"), model_sha256: digests, host: system::host() })
}

async fn check_models(
    adapter: &Ollama,
    settings: &OllamaSpec,
    client: &reqwest::Client,
    base_url: &str,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    let version = api::version(client, base_url).await.with_context(|| format!("asking '{base_url}/api/version'"))?;
    let mut installed = api::tags(client, base_url).await.with_context(|| format!("listing '{base_url}/api/tags'"))?;
    let find = |installed: &[(String, String)], tag: &str| {
        let full = if tag.contains(':') { tag.to_string() } else { format!("{tag}:latest") };
        let short = full.trim_start_matches("library/").to_string();
        installed.iter().find(|(n, _)| *n == full || *n == short).map(|(_, d)| d.clone())
    };
    let mut digests = BTreeMap::new();
    for tag in adapter.tags() {
        if find(&installed, &tag).is_none() {
            if !settings.pull {
                bail!("model '{tag}' is not installed and [ollama] pull = false; run 'ollama pull {tag}' first");
            }
            let mut progress = |status: &str, completed: Option<u64>, total: Option<u64>| {
                on_event(Event::Pulling { model: &tag, status, completed, total });
            };
            api::pull(client, base_url, &tag, &mut progress).await.with_context(|| format!("pulling model '{tag}'"))?;
            installed = api::tags(client, base_url).await.with_context(|| format!("listing '{base_url}/api/tags'"))?;
        }
        let digest = find(&installed, &tag)
            .with_context(|| format!("model '{tag}' is still missing from /api/tags after pulling"))?;
        digests.insert(tag, digest);
    }
    Ok((version, digests))
}

/// The user's env file or drop-in while a service-mode study runs. Holds the bytes it found;
/// dropping it writes them back (a panic or an early `?` must not leave a trial's settings
/// deployed). [`ServiceFile::finish`] does the same and restarts the service.
pub struct ServiceFile {
    path: PathBuf,
    format: EnvFileFormat,
    /// The file as found; `None` if it did not exist.
    original: Option<Vec<u8>>,
    restart_command: Vec<String>,
    is_restored: bool,
}

impl ServiceFile {
    /// Remember the file as it is now.
    pub fn open(spec: &OllamaSpec) -> anyhow::Result<ServiceFile> {
        let (path, format) = spec.env_file.clone().expect("service mode has an env file (validated)");
        let original = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading the service env file '{}'", path.display())),
        };
        Ok(ServiceFile { path, format, original, restart_command: spec.restart_command.clone(), is_restored: false })
    }

    /// Write `env` in the file's format and restart the service.
    pub async fn apply(&mut self, env: &BTreeMap<String, String>, note: &str) -> anyhow::Result<()> {
        let body = match self.format {
            EnvFileFormat::Systemd => export::systemd_drop_in(env),
            EnvFileFormat::Env => export::env_lines(env),
        };
        let text = format!("# written by infertune ({note}); the original is put back when the study ends\n{body}");
        export::write_atomic(&self.path, &text)?;
        self.is_restored = false;
        restart(&self.restart_command).await
    }

    /// Put the original file back (or write `best`), then restart the service once more.
    pub async fn finish(mut self, best: Option<&BTreeMap<String, String>>) -> anyhow::Result<()> {
        match best {
            Some(env) => {
                let note = "best trial of the study";
                self.apply(env, note).await?;
            }
            None => {
                self.restore()?;
                restart(&self.restart_command).await?;
            }
        }
        self.is_restored = true;
        Ok(())
    }

    /// Leave the service as the last trial configured it (`--on-exit leave`).
    pub fn leave(mut self) {
        self.is_restored = true;
    }

    fn restore(&mut self) -> anyhow::Result<()> {
        let what = || format!("restoring '{}'", self.path.display());
        match &self.original {
            // Byte for byte: atomically when it is text (the usual case), else a plain write.
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => export::write_atomic(&self.path, text).with_context(what)?,
                Err(_) => std::fs::write(&self.path, bytes).with_context(what)?,
            },
            None => match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(what),
            },
        }
        self.is_restored = true;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ServiceFile {
    fn drop(&mut self) {
        if !self.is_restored
            && let Err(e) = self.restore()
        {
            tracing::error!(error = %format!("{e:#}"), "could not restore the service env file");
        }
    }
}

/// Run the user's restart command: argv, no shell, bounded; a failure ends the study.
pub async fn restart(argv: &[String]) -> anyhow::Result<()> {
    let shown = argv.join(" ");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("restart command '{shown}' did not finish within 120 s"))?
    .with_context(|| format!("restart command '{shown}' could not be run (check [ollama] restart_command)"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = if stderr.trim().is_empty() { String::new() } else { format!(": {}", stderr.trim()) };
        bail!("restart command '{shown}' failed ({}){said}", output.status);
    }
    Ok(())
}

/// Poll `url` until it answers 200 or `deadline` passes; the time it took.
pub async fn wait_url(client: &reqwest::Client, url: &str, deadline: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if let Ok(resp) = client.get(url).timeout(Duration::from_secs(2)).send().await
            && resp.status().is_success()
        {
            return Some(start.elapsed());
        }
        if start.elapsed() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pid of the process listening on loopback `port` (from `/proc/net/tcp{,6}` and the
/// socket links in `/proc/*/fd`), so service mode can sample the service's RSS. `None` when it
/// cannot be told (another user's process, not Linux).
pub fn listening_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A = LISTEN; inode is field 9.
            let listening = f.get(3) == Some(&"0A");
            let local_port = f.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            if listening
                && local_port == Some(port)
                && let Some(inode) = f.get(9)
            {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| link.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_listening_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(super::listening_pid(port), Some(std::process::id()));
        drop(listener);
        assert_eq!(super::listening_pid(port), None);
    }
}
