//! The Ollama adapter: `OLLAMA_*` server variables (fixed at `ollama serve` start, so a change
//! means a restart), per-request `options` (sent with every request; the load-time ones make
//! Ollama reload the model, never restart), and quantization as a model tag
//! (`qwen2.5:7b-instruct-{quant}`). Facts: `reference/backends.md` §A.
//!
//! Pure, like every adapter: it validates names and values, turns a candidate into a
//! [`LaunchPlan`] and reads failure messages. The HTTP side lives in `workload::ollama`, the
//! service-mode file handling in `backend::service`; `prepare` checks and pulls the models a
//! study needs. Nothing here goes through a shell.

mod prepare;

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Backend, Failure, FailureClass, LaunchPlan, ModelMemory, Pull, Rejection};
use crate::space::{Apply, BackendKind, BackendMode, BackendSpec, Candidate, Param};
use crate::workload::Target;
use crate::workload::ollama::classify_message;

pub use crate::space::ollama::{
    EnvFileFormat, HOST_ENV, OPTIONS, OllamaFile, OllamaSpec, RELOAD_OPTIONS, check_env_value, expand_tags,
    is_valid_tag, validate_space,
};

/// Adapter for Ollama (`ollama serve`, or a service).
pub struct Ollama {
    spec: BackendSpec,
    params: Vec<Param>,
}

impl Ollama {
    pub fn new(spec: BackendSpec, params: Vec<Param>) -> Ollama {
        Ollama { spec, params }
    }

    /// The validated `[ollama]` settings.
    pub fn settings(&self) -> &OllamaSpec {
        self.spec.ollama.as_ref().expect("an ollama space always has [ollama] settings")
    }

    /// Every tag the space can ask for, in grid order.
    pub fn tags(&self) -> Vec<String> {
        expand_tags(&self.spec.model, &self.params)
    }
}

impl Backend for Ollama {
    fn kind(&self) -> BackendKind {
        BackendKind::Ollama
    }

    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn plan(&self, candidate: &Candidate) -> Result<LaunchPlan, Rejection> {
        if let Some(p) = self.params.iter().find(|p| matches!(p.apply, Apply::Flags(_))) {
            return Err(Rejection { message: format!("'{}': Ollama takes no command-line flags", p.name) });
        }
        let super::Applied { model, env, mut request_options, .. } = super::apply(&self.spec, &self.params, candidate)?;
        for p in &self.params {
            if let Apply::Env(name) = &p.apply {
                check_env_value(name, &env[name]).map_err(|message| Rejection { message })?;
            }
        }
        if !is_valid_tag(&model) {
            return Err(Rejection { message: format!("'{model}' is not an Ollama model tag") });
        }
        // Always explicit: the server's own default depends on VRAM (reference §A.5).
        request_options.entry("num_ctx").or_insert_with(|| serde_json::Value::from(self.settings().num_ctx));
        Ok(LaunchPlan {
            program: self.spec.command[0].clone(),
            args: self.spec.command[1..].iter().cloned().chain(self.spec.args.iter().cloned()).collect(),
            deploy_env: env.clone(),
            env,
            args_without_env: Vec::new(),
            request_options,
            model,
        })
    }

    fn bind_args(&self, _port: u16) -> Vec<String> {
        Vec::new()
    }

    fn bind_env(&self, port: u16) -> Vec<(String, String)> {
        vec![(HOST_ENV.to_string(), format!("127.0.0.1:{port}"))]
    }

    fn reload_options(&self) -> &'static [&'static str] {
        RELOAD_OPTIONS
    }

    fn request_model(&self, plan: &LaunchPlan) -> String {
        plan.model.clone()
    }

    fn service(&self) -> Option<super::service::ServiceSpec> {
        let settings = self.settings();
        let (env_file, format) = settings.env_file.clone()?;
        (self.spec.mode == BackendMode::Service).then(|| super::service::ServiceSpec {
            url: settings.url.clone(),
            env_file,
            format,
            restart_command: settings.restart_command.clone(),
        })
    }

    fn prepare<'a>(
        &'a self,
        client: &'a reqwest::Client,
        on_pull: &'a mut (dyn FnMut(Pull<'_>) + Send),
    ) -> BoxFuture<'a, anyhow::Result<Option<super::Identity>>> {
        Box::pin(async move { prepare::prepare(self, client, on_pull).await.map(Some) })
    }

    fn preload<'a>(
        &'a self,
        client: &'a reqwest::Client,
        target: &'a Target,
        plan: &'a LaunchPlan,
    ) -> BoxFuture<'a, Result<Option<Duration>, Failure>> {
        Box::pin(async move {
            let timeout = self.settings().load_timeout;
            match crate::workload::ollama::preload(
                client,
                &target.base_url,
                &plan.model,
                &plan.request_options,
                timeout,
            )
            .await
            {
                Ok(load) => Ok(Some(load)),
                Err(e) => {
                    let fallback = if e.status == 0 { FailureClass::Crashed } else { FailureClass::LoadError };
                    let class = classify_message(&e.message).unwrap_or(fallback);
                    Err(Failure { class, message: format!("loading '{}': {}", plan.model, e.message) })
                }
            }
        })
    }

    fn model_memory<'a>(
        &'a self,
        client: &'a reqwest::Client,
        target: &'a Target,
    ) -> BoxFuture<'a, Option<ModelMemory>> {
        Box::pin(async move {
            match crate::workload::ollama::ps(client, &target.base_url, &target.model).await {
                Ok(Some(loaded)) => {
                    Some(ModelMemory { size_bytes: loaded.size_bytes, size_vram_bytes: loaded.size_vram_bytes })
                }
                Ok(None) => {
                    tracing::warn!(model = %target.model, "model not listed by /api/ps after the workload");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "reading /api/ps");
                    None
                }
            }
        })
    }

    fn protocol(&self) -> crate::workload::Protocol {
        crate::workload::Protocol::Ollama
    }

    fn health_path(&self) -> &'static str {
        "/"
    }

    fn classify(&self, log_tail: &str, exited: bool) -> Failure {
        const PATTERNS: &[(FailureClass, &[&str])] = &[
            (FailureClass::Oom, &["out-of-memory", "out of memory", "failed to allocate", "not enough memory"]),
            (FailureClass::InvalidCombination, &["quantized V cache", "requires flash"]),
            (FailureClass::PortInUse, &["address already in use"]),
            (FailureClass::NeverReady, &["timed out waiting for llama-server"]),
            (FailureClass::Crashed, &["process has terminated", "unexpectedly stopped"]),
        ];
        super::classify_by(log_tail, exited, PATTERNS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Space, Value};

    const SPACE: &str = r#"
[study]
name = "o"
[backend]
kind = "ollama"
command = ["ollama", "serve"]
model = "library/qwen2.5:7b-instruct-{quant}"
[params]
parallel = { values = [1, 4], env = "OLLAMA_NUM_PARALLEL" }
fa = { values = [1, 0], env = "OLLAMA_FLASH_ATTENTION" }
quant = { values = ["q4_K_M", "q8_0"], template = "model" }
batch = { values = [256, 512], option = "num_batch" }
"#;

    fn parse(text: &str) -> Result<Space, String> {
        Space::from_toml(text, "o.toml", std::path::Path::new("/s")).map_err(|e| e.to_string())
    }

    fn cand(pairs: &[(&str, Value)]) -> Candidate {
        Candidate(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn plan_puts_env_in_the_server_and_options_in_requests() {
        let space = parse(SPACE).unwrap();
        assert_eq!(space.backend.model, "library/qwen2.5:7b-instruct-{quant}", "a tag is not a path");
        let b = Ollama::new(space.backend.clone(), space.params.clone());
        let plan = b
            .plan(&cand(&[
                ("parallel", Value::Int(4)),
                ("fa", Value::Int(1)),
                ("quant", Value::Str("q8_0".into())),
                ("batch", Value::Int(256)),
            ]))
            .unwrap();
        assert_eq!(plan.program, "ollama");
        assert_eq!(plan.args, ["serve"]);
        assert_eq!(plan.model, "library/qwen2.5:7b-instruct-q8_0");
        let env: Vec<String> = plan.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["OLLAMA_FLASH_ATTENTION=1", "OLLAMA_NUM_PARALLEL=4"]);
        assert_eq!(
            serde_json::Value::Object(plan.request_options.clone()),
            serde_json::json!({"num_batch": 256, "num_ctx": 4096})
        );
        assert_eq!(b.bind_env(5000), [("OLLAMA_HOST".to_string(), "127.0.0.1:5000".to_string())]);
        assert_eq!(b.tags(), ["library/qwen2.5:7b-instruct-q4_K_M", "library/qwen2.5:7b-instruct-q8_0"]);
    }

    #[test]
    fn hostile_and_unknown_values_are_refused() {
        let e = parse(&SPACE.replace("\"q8_0\"]", "\"q8_0; rm -rf /\"]")).unwrap_err();
        assert!(
            e.contains("backend.model") && e.contains("q8_0; rm -rf /") && e.contains("not an Ollama model tag"),
            "{e}"
        );
        let e = parse(&SPACE.replace("OLLAMA_NUM_PARALLEL", "OLLAMA_NUM_PARALEL")).unwrap_err();
        assert!(
            e.contains("params.parallel.env") && e.contains("unknown Ollama server variable 'OLLAMA_NUM_PARALEL'"),
            "{e}"
        );
        let e = parse(&SPACE.replace("values = [1, 0], env", "values = [\"yes\", \"no\"], env")).unwrap_err();
        assert!(e.contains("params.fa.values") && e.contains("'yes' is not a boolean"), "{e}");
        let e = parse(&SPACE.replace("option = \"num_batch\"", "option = \"num_bach\"")).unwrap_err();
        assert!(e.contains("unknown Ollama option 'num_bach'"), "{e}");
        let e = parse(&SPACE.replace("[params]", "[backend.env]\nOLLAMA_HOST = \"0.0.0.0\"\n[params]")).unwrap_err();
        assert!(e.contains("set by infertune"), "{e}");
        let e = parse(&SPACE.replace("kind = \"ollama\"", "kind = \"ollama\"\nmode = \"service\"")).unwrap_err();
        assert!(e.contains("ollama.env_file") && e.contains("service mode needs"), "{e}");
        let svc = SPACE.replace("kind = \"ollama\"", "kind = \"ollama\"\nmode = \"service\"")
            + "[ollama]\ndrop_in = \"/etc/systemd/system/ollama.service.d/infertune.conf\"\n";
        let e = parse(&svc).unwrap_err();
        assert!(e.contains("restart_command"), "{e}");
        let ok = parse(&(svc + "restart_command = [\"systemctl\", \"restart\", \"ollama\"]\n")).unwrap();
        let o = ok.backend.ollama.unwrap();
        assert_eq!(o.env_file.unwrap().1, EnvFileFormat::Systemd);
        assert_eq!(o.restart_command, ["systemctl", "restart", "ollama"]);
    }

    #[test]
    fn env_restarts_load_options_reload_sampling_reuses() {
        use crate::backend::Launch;
        let space =
            parse(&SPACE.replace("[params]", "[params]\ntop_k = { values = [40, 1], option = \"top_k\" }")).unwrap();
        let b = Ollama::new(space.backend.clone(), space.params.clone());
        let plan = |p: i64, q: &str, batch: i64, k: i64| {
            b.plan(&cand(&[
                ("parallel", Value::Int(p)),
                ("fa", Value::Int(1)),
                ("quant", Value::Str(q.into())),
                ("batch", Value::Int(batch)),
                ("top_k", Value::Int(k)),
            ]))
            .unwrap()
        };
        let base = plan(1, "q8_0", 256, 40);
        let between = |next: &LaunchPlan| Launch::between(Some(&base), next, b.reload_options());
        assert_eq!(Launch::between(None, &base, RELOAD_OPTIONS), Launch::Restart);
        assert_eq!(between(&plan(4, "q8_0", 256, 40)), Launch::Restart);
        assert_eq!(between(&plan(1, "q8_0", 512, 40)), Launch::Reload);
        assert_eq!(between(&plan(1, "q4_K_M", 256, 40)), Launch::Reload);
        assert_eq!(between(&plan(1, "q8_0", 256, 1)), Launch::Reuse);
        assert_eq!(between(&base), Launch::Reuse);
    }

    #[test]
    fn tags() {
        for ok in ["qwen2.5:7b-instruct-q4_K_M", "library/qwen2.5:7b", "smollm2:135m-instruct-q4_0", "llama3"] {
            assert!(is_valid_tag(ok), "{ok}");
        }
        for bad in ["", "a b:c", "x:$(id)", "x;y", "a:b:c", "x:", ":x", "-x", "a//b", "q`id`"] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn messages_classify() {
        let c = |m: &str| classify_message(m);
        assert_eq!(c("model \"x\" not found, try pulling it first"), Some(FailureClass::LoadError));
        assert_eq!(c("llama-server reported out-of-memory during startup: boom"), Some(FailureClass::Oom));
        assert_eq!(c("timed out waiting for llama-server to start - progress 0.00"), Some(FailureClass::NeverReady));
        assert_eq!(c("llama-server process has terminated: exit status 1"), Some(FailureClass::Crashed));
        assert_eq!(c("something else"), None);
    }
}
