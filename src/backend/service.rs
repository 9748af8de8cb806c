//! Service mode: a server that a service manager (systemd) runs, not infertune. A trial that needs
//! a restart rewrites the user's env file or drop-in and runs their restart command (argv, never
//! a shell); when the study ends the original file is put back byte for byte, however it ends.
//! Only Ollama has a service mode today; nothing here is specific to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::envfile;

/// How the service's environment file is written.
pub use crate::space::ollama::EnvFileFormat;

/// Where a service-mode server lives and how it is restarted.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// Base URL of the running service.
    pub url: String,
    /// The env file or drop-in each restart-needing trial rewrites.
    pub env_file: PathBuf,
    pub format: EnvFileFormat,
    /// argv that restarts the service.
    pub restart_command: Vec<String>,
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
    pub fn open(spec: &ServiceSpec) -> anyhow::Result<ServiceFile> {
        let (path, format) = (spec.env_file.clone(), spec.format);
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
            EnvFileFormat::Systemd => envfile::systemd_drop_in(env),
            EnvFileFormat::Env => envfile::env_lines(env),
        };
        let text = format!("# written by infertune ({note}); the original is put back when the study ends\n{body}");
        envfile::write_atomic(&self.path, &text)
            .with_context(|| format!("writing the service env file '{}'", self.path.display()))?;
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
                Ok(text) => envfile::write_atomic(&self.path, text).with_context(what)?,
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
