//! The llama.cpp `llama-server` adapter: genuine llama-server command lines, `LLAMA_ARG_*` env
//! files, and failure classes read from llama.cpp's own log lines (reference/backends.md §C).
//!
//! Every llama-server flag is fixed at start, so any change of a flag means a restart.

use std::collections::BTreeMap;

use super::{Backend, Failure, FailureClass, LaunchPlan, Rejection};
use crate::space::{BackendKind, BackendSpec, Candidate, Param, Value};

/// llama-server flags and their environment forms (`common/arg.cpp`). `-tb` has none.
const FLAG_ENV: &[(&[&str], &str)] = &[
    (&["-m", "--model"], "LLAMA_ARG_MODEL"),
    (&["-c", "--ctx-size"], "LLAMA_ARG_CTX_SIZE"),
    (&["-np", "--parallel"], "LLAMA_ARG_N_PARALLEL"),
    (&["-fa", "--flash-attn"], "LLAMA_ARG_FLASH_ATTN"),
    (&["-ctk", "--cache-type-k"], "LLAMA_ARG_CACHE_TYPE_K"),
    (&["-ctv", "--cache-type-v"], "LLAMA_ARG_CACHE_TYPE_V"),
    (&["-b", "--batch-size"], "LLAMA_ARG_BATCH"),
    (&["-ub", "--ubatch-size"], "LLAMA_ARG_UBATCH"),
    (&["-t", "--threads"], "LLAMA_ARG_THREADS"),
    (&["-ngl", "--n-gpu-layers"], "LLAMA_ARG_N_GPU_LAYERS"),
    (&["-kvu", "--kv-unified"], "LLAMA_ARG_KV_UNIFIED"),
    (&["-cb", "--cont-batching"], "LLAMA_ARG_CONT_BATCHING"),
    (&["-fit", "--fit"], "LLAMA_ARG_FIT"),
    (&["--cache-reuse"], "LLAMA_ARG_CACHE_REUSE"),
    (&["-cram", "--cache-ram"], "LLAMA_ARG_CACHE_RAM"),
    (&["--metrics"], "LLAMA_ARG_ENDPOINT_METRICS"),
    (&["-a", "--alias"], "LLAMA_ARG_ALIAS"),
    (&["-to", "--timeout"], "LLAMA_ARG_TIMEOUT"),
];

/// The environment variable llama-server reads for `flag`, if it has one.
pub fn env_name(flag: &str) -> Option<&'static str> {
    FLAG_ENV.iter().find(|(flags, _)| flags.contains(&flag)).map(|(_, env)| *env)
}

/// The value following the last of `flags` in `args` (llama-server lets a later flag win).
fn flag_value<'a>(args: &'a [String], flags: &[&str]) -> Option<&'a str> {
    args.windows(2).rev().find(|w| flags.contains(&w[0].as_str())).map(|w| w[1].as_str())
}

/// Combinations llama.cpp refuses at start, rejected before a launch with llama.cpp's words: a
/// quantized V cache needs flash attention (`llama_init_from_model`), so `-fa off` with
/// `-ctv q8_0` can only fail. (`-fa auto`, the default, turns it on where it can.)
pub fn check_constraints(args: &[String]) -> Result<(), Rejection> {
    let fa_off = flag_value(args, &["-fa", "--flash-attn"]).is_some_and(|v| matches!(v, "off" | "0" | "false"));
    let v_type = flag_value(args, &["-ctv", "--cache-type-v"]).unwrap_or("f16");
    if fa_off && !matches!(v_type, "f16" | "f32" | "bf16") {
        return Err(Rejection {
            message: format!(
                "quantized V cache requires flash_attn to be enabled (V cache type '{v_type}' with flash attention off; llama.cpp refuses this at start)"
            ),
        });
    }
    Ok(())
}

/// Adapter for llama.cpp's `llama-server` (or the bundled launcher with the same flags).
pub struct LlamaCpp {
    spec: BackendSpec,
    params: Vec<Param>,
}

impl LlamaCpp {
    pub fn new(spec: BackendSpec, params: Vec<Param>) -> LlamaCpp {
        LlamaCpp { spec, params }
    }
}

impl Backend for LlamaCpp {
    fn kind(&self) -> BackendKind {
        BackendKind::Llamacpp
    }

    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn plan(&self, candidate: &Candidate) -> Result<LaunchPlan, Rejection> {
        let super::Applied { model, flags, env, request_options } = super::apply(&self.spec, &self.params, candidate)?;
        // (flag, value) in order; a `true` boolean is the bare flag, a `false` one is left out.
        let settings: Vec<(String, Option<String>)> = flags
            .iter()
            .filter(|(_, v)| **v != Value::Bool(false))
            .map(|(f, v)| (f.to_string(), (**v != Value::Bool(true)).then(|| v.to_string())))
            .collect();

        let mut args = vec!["-m".to_string(), model.clone()];
        for (flag, value) in &settings {
            args.push(flag.clone());
            args.extend(value.clone());
        }
        args.extend(self.spec.args.iter().cloned());
        check_constraints(&args)?;

        // The same settings as LLAMA_ARG_* variables; the fixed args are parsed the same way.
        let mut deploy_env = BTreeMap::new();
        let mut args_without_env = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let flag = &args[i];
            let value = args.get(i + 1).filter(|v| !v.starts_with('-') || v.parse::<f64>().is_ok());
            match (env_name(flag), value) {
                (Some(name), Some(v)) => {
                    deploy_env.insert(name.to_string(), v.clone());
                    i += 2;
                }
                (Some(name), None) => {
                    deploy_env.insert(name.to_string(), "1".to_string());
                    i += 1;
                }
                (None, v) => {
                    args_without_env.push(match v {
                        Some(v) => format!("{flag} {v}"),
                        None => flag.clone(),
                    });
                    i += if v.is_some() { 2 } else { 1 };
                }
            }
        }
        deploy_env.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));

        Ok(LaunchPlan {
            program: self.spec.command[0].clone(),
            args: self.spec.command[1..].iter().cloned().chain(args).collect(),
            env,
            deploy_env,
            args_without_env,
            request_options,
            model,
        })
    }

    fn output_control(&self) -> crate::workload::replay::OutputControl {
        crate::workload::replay::OutputControl::IgnoreEos
    }

    fn is_model_a_file(&self, model: &str) -> bool {
        !model.is_empty()
    }

    fn is_server_process(&self, cmdline: &str) -> bool {
        // The bundled launcher (scripts/llama-server) execs Python on llama_server.py, so the
        // recorded PID's command line names that script, not the launcher.
        let program = std::path::Path::new(&self.spec.command[0]);
        let is_launcher = program.file_name().is_some_and(|n| n == "llama-server")
            && cmdline.split_whitespace().any(|w| w.ends_with("/llama_server.py"));
        is_launcher || super::is_program_process(&self.spec.command[0], cmdline)
    }

    fn classify(&self, log_tail: &str, exited: bool) -> Failure {
        // Most specific first (reference/backends.md §C.5, Ollama's OOM matcher).
        const CLASSES: &[(FailureClass, &[&str])] = &[
            (
                FailureClass::InvalidCombination,
                &[
                    "quantized V cache",
                    "requires Flash Attention",
                    "requires flash_attn",
                    "does not support different K",
                ],
            ),
            (
                FailureClass::Oom,
                &[
                    "out of memory",
                    "cudaMalloc failed",
                    "failed to allocate",
                    "allocation failed",
                    "not enough memory",
                    "insufficient memory",
                    "out of device memory",
                ],
            ),
            (
                FailureClass::InvalidArgument,
                &["error: invalid argument", "error while handling argument", "invalid value"],
            ),
            (FailureClass::PortInUse, &["address already in use", "couldn't bind", "exiting due to HTTP server error"]),
            (FailureClass::LoadError, &["failed to load model", "exiting due to model loading error", "No such file"]),
        ];
        super::classify_by(log_tail, exited, CLASSES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Space;
    use std::path::Path;

    fn space() -> Space {
        Space::from_toml(
            r#"
[study]
name = "t"
[backend]
kind = "llamacpp"
command = ["/opt/llama-server"]
model = "/m/SmolLM2-{quant}.gguf"
args = ["--metrics"]
[params]
parallel = { values = [1, 4], flag = "-np" }
kv = { values = ["f16", "q8_0"], flags = ["-ctk", "-ctv"] }
quant = { values = ["Q4_0", "Q8_0"], template = "model" }
threads_batch = { values = [1, 2], flag = "-tb" }
"#,
            "t.toml",
            Path::new("/"),
        )
        .unwrap()
    }

    fn candidate(pairs: &[(&str, Value)]) -> Candidate {
        Candidate(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn plan_emits_llama_server_command_line_and_env_file() {
        let space = space();
        let backend = LlamaCpp::new(space.backend.clone(), space.params.clone());
        let plan = backend
            .plan(&candidate(&[
                ("parallel", Value::Int(4)),
                ("kv", Value::Str("q8_0".into())),
                ("quant", Value::Str("Q4_0".into())),
                ("threads_batch", Value::Int(2)),
            ]))
            .unwrap();
        assert_eq!(plan.program, "/opt/llama-server");
        assert_eq!(plan.args.join(" "), "-m /m/SmolLM2-Q4_0.gguf -np 4 -ctk q8_0 -ctv q8_0 -tb 2 --metrics");
        let env: Vec<String> = plan.deploy_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            env,
            [
                "LLAMA_ARG_CACHE_TYPE_K=q8_0",
                "LLAMA_ARG_CACHE_TYPE_V=q8_0",
                "LLAMA_ARG_ENDPOINT_METRICS=1",
                "LLAMA_ARG_MODEL=/m/SmolLM2-Q4_0.gguf",
                "LLAMA_ARG_N_PARALLEL=4",
            ]
        );
        assert_eq!(plan.args_without_env, ["-tb 2"]);
    }

    #[test]
    fn quantized_v_cache_without_flash_attention_is_rejected_before_launch() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let err = check_constraints(&args("-m x -fa off -ctk q8_0 -ctv q8_0")).unwrap_err();
        assert!(err.message.starts_with("quantized V cache requires flash_attn"), "{err}");
        assert!(err.message.contains("'q8_0'"), "{err}");
        assert!(check_constraints(&args("-m x --flash-attn off --cache-type-v q4_0")).is_err());
        // f16 V, flash attention on or auto, and a later flag overriding an earlier one are fine.
        assert!(check_constraints(&args("-m x -fa off -ctk q8_0 -ctv f16")).is_ok());
        assert!(check_constraints(&args("-m x -fa on -ctv q8_0")).is_ok());
        assert!(check_constraints(&args("-m x -ctv q8_0")).is_ok());
        assert!(check_constraints(&args("-m x -fa off -ctv q8_0 -fa on")).is_ok());
    }

    #[test]
    fn classify_reads_llama_cpp_messages() {
        let space = space();
        let b = LlamaCpp::new(space.backend.clone(), space.params.clone());
        let f = b.classify(
            "llama_init_from_model: quantized V cache requires flash_attn to be enabled\nmain: exiting due to model loading error",
            true,
        );
        assert_eq!(f.class, FailureClass::InvalidCombination);
        assert!(f.message.contains("quantized V cache"));
        assert_eq!(b.classify("gguf_init: failed to load model '/x'", true).class, FailureClass::LoadError);
        assert_eq!(b.classify("segfault", true).class, FailureClass::Crashed);
        assert_eq!(b.classify("loading...", false).class, FailureClass::NeverReady);
    }
}
