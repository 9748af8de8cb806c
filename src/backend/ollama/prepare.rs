//! Before the first trial: check the tags the space needs, pull missing ones (or refuse), and
//! fingerprint the server version and model digests.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use super::{Ollama, OllamaSpec};
use crate::backend::process::{self, Server};
use crate::backend::service::wait_url;
use crate::backend::{Backend, Identity, LaunchPlan, Pull, STOP_GRACE};
use crate::space::BackendMode;
use crate::workload::ollama as api;

/// Server version and model digests (by tag); pulls missing tags first.
pub(super) async fn prepare(
    adapter: &Ollama,
    client: &reqwest::Client,
    on_pull: &mut (dyn FnMut(Pull<'_>) + Send),
) -> anyhow::Result<Identity> {
    let settings = adapter.settings().clone();
    let backend = &adapter.spec;
    // Spawn mode: a short-lived server with the fixed environment, just to talk to the store.
    let mut temp: Option<Server> = None;
    let base_url = match backend.mode {
        BackendMode::Service => {
            // The service may be (re)starting, e.g. right after a previous study put its file back.
            if wait_url(client, &format!("{}/", settings.url), backend.ready_timeout).await.is_none() {
                bail!(
                    "the Ollama service at '{}' does not answer (waited {:?}); start it first",
                    settings.url,
                    backend.ready_timeout
                );
            }
            settings.url.clone()
        }
        BackendMode::Spawn => {
            let port = process::free_port()?;
            let plan = LaunchPlan {
                program: backend.command[0].clone(),
                args: backend.command[1..].iter().chain(&backend.args).cloned().collect(),
                env: backend.env.iter().map(|(k, v)| (k.clone(), v.clone())).chain(adapter.bind_env(port)).collect(),
                deploy_env: BTreeMap::new(),
                args_without_env: Vec::new(),
                request_options: serde_json::Map::new(),
                model: String::new(),
            };
            let mut server = Server::spawn(&plan, &[], port)
                .context("starting ollama to check its models (check [backend] command)")?;
            if let Err(e) = server.wait_ready(client, "/", backend.ready_timeout).await {
                let log = server.log.text();
                server.stop(STOP_GRACE).await;
                bail!("'{}' did not get ready ({e}): {}", plan.program, crate::backend::last_lines(&log, 5));
            }
            let url = server.url();
            temp = Some(server);
            url
        }
    };
    let result = check_models(adapter, &settings, client, &base_url, on_pull).await;
    if let Some(server) = temp {
        server.stop(STOP_GRACE).await;
    }
    let (version, digests) = result?;
    Ok(Identity { engine_version: format!("ollama {version}"), model_digests: digests })
}

async fn check_models(
    adapter: &Ollama,
    settings: &OllamaSpec,
    client: &reqwest::Client,
    base_url: &str,
    on_pull: &mut (dyn FnMut(Pull<'_>) + Send),
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
                on_pull(Pull { model: &tag, status, completed, total });
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
