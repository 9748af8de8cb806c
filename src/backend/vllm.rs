//! The vLLM adapter: genuine `vllm serve MODEL --flag value ...` command lines, constraint checks
//! made before any launch, and failure classes read from vLLM's own log lines
//! (reference/backends.md §B, vLLM 0.33).
//!
//! Every vLLM argument is fixed at start (§B.1), so any change means a restart. Booleans use
//! argparse's `BooleanOptionalAction` pair: `true` emits `--flag`, `false` emits `--no-flag`.
//! [`ServeArgs`] reads a command line back into flag values, and [`candidate_from_args`] turns
//! those into the parameter values of a space, so exported files can be checked to round-trip.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::{Backend, Failure, FailureClass, LaunchPlan, Rejection, find_lines, last_lines};
use crate::space::{Apply, BackendKind, BackendSpec, Candidate, Domain, Param, Value};

/// `--kv-cache-dtype` choices of vLLM 0.33 (§B.1), without the family wildcards.
pub const KV_CACHE_DTYPES: &[&str] = &[
    "auto",
    "float16",
    "bfloat16",
    "fp8",
    "fp8_e4m3",
    "fp8_e5m2",
    "fp8_inc",
    "fp8_ds_mla",
    "nvfp4_ds_mla",
    "nvfp4",
    "nvfp4_4over6",
    "int4_per_token_head",
    "int8_per_token_head",
    "fp8_per_token_head",
    "ultraquant_4bit",
];

/// Families listed as `turboquant_*` / `octave_*` in §B.1.
const KV_CACHE_DTYPE_PREFIXES: &[&str] = &["turboquant_", "octave_"];

/// Environment variables that belong in a deployed env file (§B.3).
fn is_deploy_env(name: &str) -> bool {
    name.starts_with("VLLM_") || name == "CUDA_VISIBLE_DEVICES" || name.starts_with("HF_")
}

/// A `vllm serve` command line, read back into its parts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServeArgs {
    /// The positional model (path or hub id).
    pub model: String,
    /// Flags in order, with their value (`None` for a bare boolean flag).
    pub flags: Vec<(String, Option<String>)>,
}

impl ServeArgs {
    /// Parse the words after the program: `serve MODEL [--flag [value]]...`. `--flag=value` is
    /// split. A word that starts with `-` is a value only when it is a number (`--max-model-len -1`).
    pub fn parse(words: &[String]) -> Result<ServeArgs, String> {
        let mut rest = words;
        if rest.first().is_some_and(|w| w == "serve") {
            rest = &rest[1..];
        }
        let mut out = ServeArgs::default();
        let mut i = 0;
        while i < rest.len() {
            let word = &rest[i];
            if !word.starts_with('-') {
                if !out.model.is_empty() {
                    return Err(format!("unexpected positional argument '{word}' after model '{}'", out.model));
                }
                out.model = word.clone();
                i += 1;
                continue;
            }
            if let Some((flag, value)) = word.split_once('=').filter(|_| word.starts_with("--")) {
                out.flags.push((flag.to_string(), Some(value.to_string())));
                i += 1;
                continue;
            }
            let value = rest.get(i + 1).filter(|v| !v.starts_with('-') || v.parse::<f64>().is_ok());
            out.flags.push((word.clone(), value.cloned()));
            i += if value.is_some() { 2 } else { 1 };
        }
        if out.model.is_empty() {
            return Err("no model given (expected 'serve MODEL ...')".to_string());
        }
        Ok(out)
    }

    /// The last value given for any of `names` (later flags win, as in argparse).
    pub fn value(&self, names: &[&str]) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(f, v)| names.contains(&f.as_str()) && v.is_some())
            .and_then(|(_, v)| v.as_deref())
    }

    /// A boolean flag's last setting: `Some(true)` for `--x`, `Some(false)` for `--no-x`.
    pub fn switch(&self, long: &str) -> Option<bool> {
        let negated = negate(long);
        self.flags.iter().rev().find_map(|(f, v)| {
            if v.is_none() && f == long {
                Some(true)
            } else if v.is_none() && f == &negated {
                Some(false)
            } else {
                None
            }
        })
    }

    fn int(&self, names: &[&str]) -> Result<Option<i64>, Rejection> {
        self.value(names)
            .map(|v| {
                parse_size(v).ok_or_else(|| Rejection { message: format!("{}: '{v}' is not an integer", names[0]) })
            })
            .transpose()
    }
}

/// `--flag` → `--no-flag` (argparse `BooleanOptionalAction`).
fn negate(flag: &str) -> String {
    match flag.strip_prefix("--") {
        Some(rest) => format!("--no-{rest}"),
        None => format!("--no{flag}"),
    }
}

/// vLLM's human-friendly integers: `8k` = 8000, `8K` = 8192, `1m`/`1M` likewise, `-1`/`auto` = -1.
pub fn parse_size(text: &str) -> Option<i64> {
    let t = text.trim();
    if t == "auto" {
        return Some(-1);
    }
    let (digits, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1_000),
        'K' => (&t[..t.len() - 1], 1_024),
        'm' => (&t[..t.len() - 1], 1_000_000),
        'M' => (&t[..t.len() - 1], 1_048_576),
        'g' => (&t[..t.len() - 1], 1_000_000_000),
        'G' => (&t[..t.len() - 1], 1_073_741_824),
        _ => (t, 1),
    };
    if let Ok(n) = digits.parse::<i64>() {
        return n.checked_mul(mult);
    }
    // `1.5k` is accepted too.
    let x: f64 = digits.parse().ok()?;
    let n = (x * mult as f64).round();
    (n.is_finite() && n.abs() < 9e18).then_some(n as i64)
}

/// Known-invalid combinations, checked before launching (§B.7 messages, vLLM's own wording).
/// `visible_gpus` is `None` when the count is unknown; the GPU checks are then left to vLLM.
pub fn check_constraints(args: &ServeArgs, visible_gpus: Option<u32>) -> Result<(), Rejection> {
    let reject = |message: String| Err(Rejection { message });
    let mnbt = args.int(&["--max-num-batched-tokens"])?;
    let mns = args.int(&["--max-num-seqs"])?;
    let mml = args.int(&["--max-model-len"])?;
    let chunked = args.switch("--enable-chunked-prefill");
    if let (Some(t), Some(l), Some(false)) = (mnbt, mml, chunked)
        && l > 0
        && t < l
    {
        return reject(format!(
            "max_num_batched_tokens ({t}) is smaller than max_model_len ({l}). This effectively limits \
             the maximum sequence length to max_num_batched_tokens and makes vLLM reject longer sequences \
             (chunked prefill is off)"
        ));
    }
    if let (Some(t), Some(s)) = (mnbt, mns)
        && t < s
    {
        return reject(format!("max_num_batched_tokens ({t}) must be greater than or equal to max_num_seqs ({s})"));
    }
    if let (Some(a), Some(s)) = (args.int(&["--max-num-active-seqs"])?, mns)
        && a > s
    {
        return reject(format!("max_num_active_seqs ({a}) cannot be greater than max_num_seqs ({s})"));
    }
    if let Some(v) = args.value(&["--gpu-memory-utilization", "--device-memory-utilization"]) {
        match v.parse::<f64>() {
            Ok(g) if g > 0.0 && g <= 1.0 => {}
            _ => return reject(format!("gpu_memory_utilization must be in (0, 1] (got '{v}')")),
        }
    }
    if let Some(kv) = args.value(&["--kv-cache-dtype"])
        && !KV_CACHE_DTYPES.contains(&kv)
        && !KV_CACHE_DTYPE_PREFIXES.iter().any(|p| kv.starts_with(p))
    {
        return reject(format!(
            "kv_cache_dtype '{kv}' is not one of vLLM 0.33's cache dtypes ({})",
            KV_CACHE_DTYPES.join(", ")
        ));
    }
    let tp = args.int(&["--tensor-parallel-size", "-tp"])?.unwrap_or(1);
    let pp = args.int(&["--pipeline-parallel-size", "-pp"])?.unwrap_or(1);
    if tp < 1 || pp < 1 {
        return reject(format!("tensor_parallel_size ({tp}) and pipeline_parallel_size ({pp}) must be at least 1"));
    }
    if let Some(gpus) = visible_gpus.map(i64::from) {
        let world = tp * pp;
        if world > gpus {
            return reject(format!(
                "World size ({world}) is larger than the number of available GPUs ({gpus}) in this placement group"
            ));
        }
        // Stricter than vLLM (which would leave GPUs idle): a tensor-parallel size that does not
        // divide the visible GPUs wastes the rest, so the search should not spend a trial on it.
        if gpus % tp != 0 {
            return reject(format!("tensor_parallel_size ({tp}) does not divide the {gpus} visible GPUs"));
        }
    }
    Ok(())
}

/// GPUs the server would see: `CUDA_VISIBLE_DEVICES` (server env first, then ours), else the
/// lines of `nvidia-smi -L` (run with the server's environment added); `None` if unknown.
pub fn visible_gpus(env: &BTreeMap<String, String>) -> Option<u32> {
    let cvd = env.get("CUDA_VISIBLE_DEVICES").cloned().or_else(|| std::env::var("CUDA_VISIBLE_DEVICES").ok());
    if let Some(list) = cvd {
        return Some(list.split(',').filter(|d| !d.trim().is_empty() && d.trim() != "-1").count() as u32);
    }
    let mut cmd = std::process::Command::new("nvidia-smi");
    cmd.arg("-L").stdin(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    cmd.envs(env);
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().filter(|l| l.starts_with("GPU ")).count() as u32)
}

/// Adapter for `vllm serve`.
pub struct Vllm {
    spec: BackendSpec,
    params: Vec<Param>,
    gpus: OnceLock<Option<u32>>,
}

impl Vllm {
    pub fn new(spec: BackendSpec, params: Vec<Param>) -> Vllm {
        Vllm { spec, params, gpus: OnceLock::new() }
    }

    /// With a known GPU count (tests; hosts where probing is not wanted).
    pub fn with_visible_gpus(self, gpus: Option<u32>) -> Vllm {
        let lock = OnceLock::new();
        lock.set(gpus).expect("a fresh lock is empty");
        Vllm { gpus: lock, ..self }
    }

    fn visible_gpus(&self) -> Option<u32> {
        *self.gpus.get_or_init(|| visible_gpus(&self.spec.env))
    }
}

/// The name vLLM serves the model under: `--served-model-name`, else the model as given.
pub fn served_model_name(args: &ServeArgs) -> String {
    args.value(&["--served-model-name"]).unwrap_or(&args.model).to_string()
}

impl Backend for Vllm {
    fn kind(&self) -> BackendKind {
        BackendKind::Vllm
    }

    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn plan(&self, candidate: &Candidate) -> Result<LaunchPlan, Rejection> {
        let super::Applied { model, flags, env, request_options } = super::apply(&self.spec, &self.params, candidate)?;
        // vLLM's boolean flags come in pairs: `true` is the flag, `false` its `--no-` form.
        let settings: Vec<String> = flags
            .iter()
            .flat_map(|(flag, value)| match value {
                Value::Bool(true) => vec![flag.to_string()],
                Value::Bool(false) => vec![negate(flag)],
                other => vec![flag.to_string(), other.to_string()],
            })
            .collect();
        let mut args: Vec<String> = self.spec.command[1..].to_vec();
        args.extend(["serve".to_string(), model.clone()]);
        args.extend(settings);
        args.extend(self.spec.args.iter().cloned());

        let parsed = ServeArgs::parse(&args[self.spec.command.len() - 1..]).map_err(|message| Rejection { message })?;
        check_constraints(&parsed, self.visible_gpus())?;
        let args_without_env = group_flags(&parsed);
        let deploy_env = env.iter().filter(|(k, _)| is_deploy_env(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(LaunchPlan {
            program: self.spec.command[0].clone(),
            args,
            env,
            deploy_env,
            args_without_env,
            request_options,
            model,
        })
    }

    fn output_control(&self) -> crate::workload::replay::OutputControl {
        crate::workload::replay::OutputControl::MinTokens
    }

    fn is_model_a_file(&self, model: &str) -> bool {
        // A model without a leading `/`, `./` or `../` is a hub id, which vLLM resolves itself.
        std::path::Path::new(model).is_absolute() || model.starts_with('.')
    }

    fn request_model(&self, plan: &LaunchPlan) -> String {
        let skip = self.spec.command.len() - 1;
        ServeArgs::parse(&plan.args[skip.min(plan.args.len())..])
            .map(|a| served_model_name(&a))
            .unwrap_or_else(|_| plan.model.clone())
    }

    fn models_path(&self) -> Option<&'static str> {
        Some("/v1/models")
    }

    fn version_path(&self) -> Option<&'static str> {
        Some("/version")
    }

    fn metrics_path(&self) -> Option<&'static str> {
        Some("/metrics")
    }

    fn samples_gpu(&self) -> bool {
        true
    }

    fn classify(&self, log_tail: &str, exited: bool) -> Failure {
        classify_log(log_tail, exited)
    }
}

/// The model, then `--flag value` per flag: vLLM reads none of them from the environment, so the
/// env export lists them as "pass on the command line" notes.
fn group_flags(args: &ServeArgs) -> Vec<String> {
    std::iter::once(args.model.clone())
        .chain(args.flags.iter().map(|(f, v)| match v {
            Some(v) => format!("{f} {v}"),
            None => f.clone(),
        }))
        .collect()
}

/// Read a failed vLLM start from its log (§B.7), most specific first.
pub fn classify_log(log_tail: &str, exited: bool) -> Failure {
    const CLASSES: &[(FailureClass, &[&str])] = &[
        (
            FailureClass::KvTooSmall,
            &["which is larger than the available KV cache memory", "estimated maximum model length is"],
        ),
        (
            FailureClass::Oom,
            &[
                "No available memory for the cache blocks",
                "CUDA out of memory",
                "OutOfMemoryError",
                "is less than desired GPU memory utilization",
            ],
        ),
        (
            FailureClass::InvalidCombination,
            &[
                "is smaller than max_model_len",
                "must be greater than or equal to max_num_seqs",
                "cannot be greater than max_num_seqs",
                "is greater than the derived max_model_len",
                "must be divisible by tensor parallel size",
                "is larger than the number of available GPUs",
            ],
        ),
        (FailureClass::InvalidArgument, &["invalid choice", "unrecognized arguments", "error: argument"]),
        (
            FailureClass::CudaError,
            &["CUDA error", "NCCL error", "No CUDA GPUs are available", "cudaError", "CUDA driver"],
        ),
        (FailureClass::PortInUse, &["Address already in use"]),
        (FailureClass::NeverReady, &["Timed out waiting for engine core processes to start"]),
    ];
    for (class, patterns) in CLASSES {
        if let Some(message) = find_lines(log_tail, patterns) {
            return Failure { class: *class, message };
        }
    }
    Failure {
        class: if exited { FailureClass::Crashed } else { FailureClass::NeverReady },
        message: last_lines(log_tail, 5),
    }
}

/// Why an exported command line does not map back onto a space's parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Read the parameter values of `params` back from a `vllm serve` command line and its env:
/// the inverse of [`Vllm::plan`] for flags, env vars and the model template.
pub fn candidate_from_args(
    params: &[Param],
    model_template: &str,
    args: &ServeArgs,
    env: &BTreeMap<String, String>,
) -> Result<Candidate, ParseError> {
    let mut out = BTreeMap::new();
    let templates: Vec<&str> =
        params.iter().filter(|p| matches!(p.apply, Apply::Template(_))).map(|p| p.name.as_str()).collect();
    let from_model = match_template(model_template, &templates, &args.model)
        .ok_or_else(|| ParseError(format!("model '{}' does not match '{model_template}'", args.model)))?;
    for p in params {
        let value = match &p.apply {
            Apply::Flags(flags) => {
                let flag = &flags[0];
                if p.domain_is_bool() {
                    Value::Bool(args.switch(flag).ok_or_else(|| ParseError(format!("'{flag}' is not set")))?)
                } else {
                    let text =
                        args.value(&[flag.as_str()]).ok_or_else(|| ParseError(format!("'{flag}' is not set")))?;
                    p.value_from_text(text)
                        .ok_or_else(|| ParseError(format!("'{flag} {text}' is not in the domain of '{}'", p.name)))?
                }
            }
            Apply::Env(name) => {
                let text = env.get(name).ok_or_else(|| ParseError(format!("env '{name}' is not set")))?;
                p.value_from_text(text)
                    .ok_or_else(|| ParseError(format!("{name}='{text}' is not in the domain of '{}'", p.name)))?
            }
            Apply::Option(name) => {
                return Err(ParseError(format!(
                    "'{}' is a per-request option ('{name}'); a command line does not carry it",
                    p.name
                )));
            }
            Apply::Template(_) => {
                let text = &from_model[&p.name];
                p.value_from_text(text)
                    .ok_or_else(|| ParseError(format!("'{text}' is not in the domain of '{}'", p.name)))?
            }
        };
        out.insert(p.name.clone(), value);
    }
    Ok(Candidate(out))
}

/// Match `text` against a template with `{name}` placeholders; placeholders match non-greedily.
fn match_template(template: &str, names: &[&str], text: &str) -> Option<BTreeMap<String, String>> {
    // Split the template into literal pieces and placeholders, in order.
    let mut pieces: Vec<(bool, &str)> = Vec::new(); // (is_placeholder, literal-or-name)
    let mut rest = template;
    'outer: while !rest.is_empty() {
        let mut earliest: Option<(usize, &str)> = None;
        for n in names {
            let ph = format!("{{{n}}}");
            if let Some(i) = rest.find(&ph)
                && earliest.is_none_or(|(j, _)| i < j)
            {
                earliest = Some((i, n));
            }
        }
        match earliest {
            Some((i, n)) => {
                if i > 0 {
                    pieces.push((false, &rest[..i]));
                }
                pieces.push((true, n));
                rest = &rest[i + n.len() + 2..];
            }
            None => {
                pieces.push((false, rest));
                break 'outer;
            }
        }
    }
    let mut out = BTreeMap::new();
    let mut pos = 0;
    for (k, (is_ph, piece)) in pieces.iter().enumerate() {
        if *is_ph {
            let end = match pieces.get(k + 1) {
                Some((false, lit)) => pos + text[pos..].find(lit)?,
                _ => text.len(),
            };
            out.insert(piece.to_string(), text[pos..end].to_string());
            pos = end;
        } else {
            if !text[pos..].starts_with(piece) {
                return None;
            }
            pos += piece.len();
        }
    }
    (pos == text.len()).then_some(out)
}

impl Param {
    fn domain_is_bool(&self) -> bool {
        matches!(&self.domain, Domain::Values(v) if v.first().is_some_and(|v| matches!(v, Value::Bool(_))))
    }

    /// The domain value whose text form is `text` (numbers compare by value: `0.90` = `0.9`).
    fn value_from_text(&self, text: &str) -> Option<Value> {
        match &self.domain {
            Domain::Int { .. } => {
                let v = Value::Int(parse_size(text)?);
                self.domain.contains(&v).then_some(v)
            }
            Domain::Values(values) => values
                .iter()
                .find(|v| match v {
                    Value::Int(i) => parse_size(text) == Some(*i),
                    Value::Float(x) => text.parse::<f64>().is_ok_and(|y| y == *x),
                    Value::Bool(b) => text.parse::<bool>().is_ok_and(|y| y == *b),
                    Value::Str(s) => s == text,
                })
                .cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Space;
    use std::path::Path;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn space() -> Space {
        Space::from_toml(
            r#"
[study]
name = "t"
[backend]
kind = "vllm"
command = ["/opt/vllm"]
model = "Qwen/Qwen2.5-7B-Instruct{quant}"
args = ["--disable-log-requests"]
env = { VLLM_NO_USAGE_STATS = "1", PATH = "/x" }
[params]
max_num_seqs = { values = [64, 256], flag = "--max-num-seqs" }
max_num_batched_tokens = { values = [1024, 8192], flag = "--max-num-batched-tokens" }
max_model_len = { values = [4096], flag = "--max-model-len" }
gmu = { values = [0.8, 0.9], flag = "--gpu-memory-utilization" }
prefix = { values = [true, false], flag = "--enable-prefix-caching" }
chunked = { values = [false], flag = "--enable-chunked-prefill" }
kv = { values = ["auto", "fp8"], flag = "--kv-cache-dtype" }
quant = { values = ["", "-AWQ"], template = "model" }
cvd = { values = ["0"], env = "CUDA_VISIBLE_DEVICES" }
"#,
            "t.toml",
            Path::new("/"),
        )
        .unwrap()
    }

    fn candidate(pairs: &[(&str, Value)]) -> Candidate {
        Candidate(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn good() -> Candidate {
        candidate(&[
            ("max_num_seqs", Value::Int(64)),
            ("max_num_batched_tokens", Value::Int(8192)),
            ("max_model_len", Value::Int(4096)),
            ("gmu", Value::Float(0.9)),
            ("prefix", Value::Bool(false)),
            ("chunked", Value::Bool(false)),
            ("kv", Value::Str("fp8".into())),
            ("quant", Value::Str("-AWQ".into())),
            ("cvd", Value::Str("0".into())),
        ])
    }

    #[test]
    fn plan_emits_vllm_serve_command_line() {
        let s = space();
        let b = Vllm::new(s.backend.clone(), s.params.clone()).with_visible_gpus(Some(1));
        let plan = b.plan(&good()).unwrap();
        assert_eq!(plan.program, "/opt/vllm");
        assert_eq!(
            plan.args.join(" "),
            "serve Qwen/Qwen2.5-7B-Instruct-AWQ --max-num-seqs 64 --max-num-batched-tokens 8192 \
             --max-model-len 4096 --gpu-memory-utilization 0.9 --no-enable-prefix-caching \
             --no-enable-chunked-prefill --kv-cache-dtype fp8 --disable-log-requests"
        );
        let env: Vec<String> = plan.deploy_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["CUDA_VISIBLE_DEVICES=0", "VLLM_NO_USAGE_STATS=1"]);
        assert_eq!(b.request_model(&plan), "Qwen/Qwen2.5-7B-Instruct-AWQ");
    }

    #[test]
    fn plan_rejects_known_invalid_combinations_before_launch() {
        let s = space();
        let b = Vllm::new(s.backend.clone(), s.params.clone()).with_visible_gpus(Some(1));
        let mut c = good();
        c.0.insert("max_num_batched_tokens".into(), Value::Int(1024));
        let err = b.plan(&c).unwrap_err();
        assert!(err.message.starts_with("max_num_batched_tokens (1024) is smaller than max_model_len (4096)"), "{err}");
    }

    #[test]
    fn constraints() {
        let cases: &[(&str, Option<u32>, Option<&str>)] = &[
            (
                "--max-num-batched-tokens 32 --max-num-seqs 64",
                Some(1),
                Some("max_num_batched_tokens (32) must be greater than or equal to max_num_seqs (64)"),
            ),
            ("--max-num-batched-tokens 2048 --max-model-len 4096", Some(1), None),
            (
                "--max-num-batched-tokens 2k --max-model-len 2K --no-enable-chunked-prefill",
                Some(1),
                Some("max_num_batched_tokens (2000) is smaller than max_model_len (2048)"),
            ),
            ("--max-num-batched-tokens 2K --max-model-len 2K --no-enable-chunked-prefill", Some(1), None),
            ("-tp 2", Some(1), Some("World size (2) is larger than the number of available GPUs (1)")),
            ("--tensor-parallel-size 2 --pipeline-parallel-size 2", Some(2), Some("World size (4) is larger")),
            ("--tensor-parallel-size 2", Some(3), Some("tensor_parallel_size (2) does not divide the 3 visible GPUs")),
            ("--tensor-parallel-size 2", Some(4), None),
            ("--tensor-parallel-size 8", None, None),
            ("--kv-cache-dtype fp8_e5m2", Some(1), None),
            ("--kv-cache-dtype turboquant_3bit", Some(1), None),
            ("--kv-cache-dtype q8_0", Some(1), Some("kv_cache_dtype 'q8_0' is not one of")),
            ("--gpu-memory-utilization 1.2", Some(1), Some("gpu_memory_utilization must be in (0, 1] (got '1.2')")),
            (
                "--max-num-active-seqs 9 --max-num-seqs 8",
                Some(1),
                Some("max_num_active_seqs (9) cannot be greater than max_num_seqs (8)"),
            ),
        ];
        for (flags, gpus, expect) in cases {
            let args = ServeArgs::parse(&words(&format!("serve m {flags}"))).unwrap();
            match (check_constraints(&args, *gpus), expect) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => assert!(e.message.starts_with(want), "{}", e.message),
                (got, want) => panic!("{flags}: got {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn parse_size_follows_vllm() {
        assert_eq!(parse_size("8k"), Some(8000));
        assert_eq!(parse_size("8K"), Some(8192));
        assert_eq!(parse_size("1M"), Some(1_048_576));
        assert_eq!(parse_size("1.5k"), Some(1500));
        assert_eq!(parse_size("-1"), Some(-1));
        assert_eq!(parse_size("auto"), Some(-1));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn serve_args_parse() {
        let a = ServeArgs::parse(&words(
            "serve m --max-model-len -1 --enforce-eager --dtype=half --no-enable-prefix-caching",
        ))
        .unwrap();
        assert_eq!(a.model, "m");
        assert_eq!(a.value(&["--max-model-len"]), Some("-1"));
        assert_eq!(a.value(&["--dtype"]), Some("half"));
        assert_eq!(a.switch("--enforce-eager"), Some(true));
        assert_eq!(a.switch("--enable-prefix-caching"), Some(false));
        assert_eq!(a.switch("--enable-chunked-prefill"), None);
        assert!(ServeArgs::parse(&words("serve --x 1")).is_err());
    }

    #[test]
    fn plan_round_trips_through_candidate_from_args() {
        let s = space();
        let b = Vllm::new(s.backend.clone(), s.params.clone()).with_visible_gpus(Some(1));
        let c = good();
        let plan = b.plan(&c).unwrap();
        let args = ServeArgs::parse(&plan.args).unwrap();
        assert_eq!(candidate_from_args(&s.params, &s.backend.model, &args, &plan.env).unwrap(), c);
        let mut c2 = c.clone();
        c2.0.insert("quant".into(), Value::Str(String::new()));
        c2.0.insert("prefix".into(), Value::Bool(true));
        let plan = b.plan(&c2).unwrap();
        let args = ServeArgs::parse(&plan.args).unwrap();
        assert_eq!(candidate_from_args(&s.params, &s.backend.model, &args, &plan.env).unwrap(), c2);
    }

    #[test]
    fn classify_reads_vllm_failure_lines() {
        let cases: &[(&str, FailureClass)] = &[
            (
                "ValueError: To serve at least one request with the model's max seq len (32768), (4.00 GiB KV cache is needed, which is larger than the available KV cache memory (1.50 GiB). Based on the available memory, the estimated maximum model length is 12288. Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.",
                FailureClass::KvTooSmall,
            ),
            (
                "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.",
                FailureClass::Oom,
            ),
            ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.", FailureClass::Oom),
            (
                "vllm serve: error: argument --kv-cache-dtype: invalid choice: 'q8' (choose from auto, fp8)",
                FailureClass::InvalidArgument,
            ),
            ("vllm: error: unrecognized arguments: --bogus", FailureClass::InvalidArgument),
            ("RuntimeError: CUDA error: an illegal memory access was encountered", FailureClass::CudaError),
            (
                "TimeoutError: Timed out waiting for engine core processes to start. This is often caused by slow weight loading.",
                FailureClass::NeverReady,
            ),
            ("OSError: [Errno 98] Address already in use", FailureClass::PortInUse),
            (
                "ValueError: max_num_batched_tokens (1024) is smaller than max_model_len (4096).",
                FailureClass::InvalidCombination,
            ),
        ];
        for (line, class) in cases {
            let log = format!(
                "INFO 11-27 12:00:00 [core.py:1] starting\n{line}\nRuntimeError: Engine core initialization failed. See root cause above."
            );
            let f = classify_log(&log, true);
            assert_eq!(f.class, *class, "{line}");
            assert_eq!(f.message, *line);
        }
    }

    #[test]
    fn classify_falls_back_on_exit_state() {
        assert_eq!(classify_log("segfault", true).class, FailureClass::Crashed);
        assert_eq!(classify_log("loading", false).class, FailureClass::NeverReady);
    }
}
