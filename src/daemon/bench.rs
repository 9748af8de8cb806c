//! `infertune bench`: measure one running endpoint without tuning it, like `vllm bench serve`.
//! Wires workload (closed loop, timed closed loop or open-loop Poisson) → measure (summary, HDR
//! stamps, client/server cross-check) → optionally the store, as a one-trial study that
//! `trials`/`best` read like any other.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use crate::measure::{
    self, Dist, Metric, RequestSlo, Sample, Summary,
    stamp::{self, Stamped},
    system,
};
use crate::space::{Candidate, Direction, Objective, Value, WorkloadSpec};
use crate::store::{Finished, NewStudy, Store};
use crate::trial::{Fingerprint, Outcome, StageTimes};
use crate::workload::{self, Protocol, Target, open_loop, timed};

/// How load is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// `concurrency` clients, each sending its next request when the last one ends.
    Closed { concurrency: u32 },
    /// Poisson arrivals at `rate_per_s`, whatever the server does.
    Open { rate_per_s: f64 },
}

/// How much load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Requests(u32),
    /// Closed loop only: send until this much time has passed.
    Duration(Duration),
}

/// Everything `bench` needs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Base URL of the server, without `/v1`.
    pub url: String,
    pub protocol: Protocol,
    /// Model name sent in requests; `None` asks `GET /v1/models`.
    pub model: Option<String>,
    pub dataset: PathBuf,
    pub load: Load,
    pub amount: Amount,
    pub warmup: u32,
    pub max_tokens: u32,
    pub seed: u64,
    pub request_timeout: Duration,
    pub prompt_cache: bool,
}

/// What `bench` measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub model: String,
    pub summary: Summary,
    pub stamped: Vec<Stamped>,
    pub samples: Vec<Sample>,
    /// Open loop only: client lateness and whether the run is valid.
    pub lateness_ms: Option<Dist>,
    pub is_valid: bool,
    /// Measured requests exceeded the dataset, so prompts repeated.
    pub prompts_repeated: bool,
}

/// Measure the endpoint once.
pub async fn bench(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    let prompts = workload::load_dataset(&opts.dataset)?;
    let client = workload::http_client()?;
    let url = opts.url.trim_end_matches('/').trim_end_matches("/v1").to_string();
    let model = match &opts.model {
        Some(m) => m.clone(),
        None if opts.protocol == Protocol::Ollama => {
            bail!("--protocol ollama needs --model (an Ollama tag such as 'qwen2.5:7b-instruct-q4_K_M')")
        }
        None => discover_model(&client, &url).await?,
    };
    let target = Target { protocol: opts.protocol, base_url: url, model: model.clone(), options: Default::default() };
    let requests = match opts.amount {
        Amount::Requests(n) => n,
        Amount::Duration(_) => 0,
    };
    let spec = WorkloadSpec {
        dataset: opts.dataset.clone(),
        concurrency: match opts.load {
            Load::Closed { concurrency } => concurrency,
            Load::Open { .. } => 1,
        },
        requests,
        warmup: opts.warmup,
        max_tokens: opts.max_tokens,
        seed: opts.seed,
        request_timeout: opts.request_timeout,
        prompt_cache: opts.prompt_cache,
        draw: 0,
        trace: None,
    };
    let cpu_before = system::own_cpu_time();
    let (run, lateness_ms, is_valid) = match (opts.load, opts.amount) {
        (Load::Closed { .. }, Amount::Requests(_)) => {
            (workload::run(&client, &target, &prompts, &spec).await, None, true)
        }
        (Load::Closed { .. }, Amount::Duration(d)) => {
            (timed::run_for(&client, &target, &prompts, &spec, d).await, None, true)
        }
        (Load::Open { rate_per_s }, Amount::Requests(_)) => {
            let open = open_loop::run(&client, &target, &prompts, &spec, rate_per_s).await?;
            (open.run, Some(open.lateness_ms), open.is_valid)
        }
        (Load::Open { rate_per_s }, Amount::Duration(d)) => {
            // The schedule length follows from the rate: rate × duration arrivals.
            let n = (rate_per_s * d.as_secs_f64()).ceil().max(1.0) as u32;
            let spec = WorkloadSpec { requests: n, ..spec.clone() };
            let open = open_loop::run(&client, &target, &prompts, &spec, rate_per_s).await?;
            (open.run, Some(open.lateness_ms), open.is_valid)
        }
    };
    let client_cpu = system::own_cpu_time().saturating_sub(cpu_before);
    let mut summary = measure::summarize(&run.samples, run.wall, &RequestSlo::default());
    summary.client_cpu_ms = client_cpu.as_secs_f64() * 1000.0;
    let measured = run.samples.iter().filter(|s| !s.is_warmup).count();
    Ok(BenchReport {
        model,
        stamped: stamp::stamp(&run.samples),
        summary,
        samples: run.samples,
        lateness_ms,
        is_valid,
        prompts_repeated: measured + opts.warmup as usize > prompts.len(),
    })
}

async fn discover_model(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let doc: serde_json::Value = client
        .get(format!("{url}/v1/models"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("asking '{url}/v1/models' for the model name (or pass --model)"))?
        .json()
        .await
        .with_context(|| format!("reading '{url}/v1/models' (or pass --model)"))?;
    doc["data"][0]["id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("'{url}/v1/models' lists no model; pass --model"))
}

/// The load as parameters (stored as the trial's params when saved).
fn load_params(opts: &BenchOptions, model: &str) -> Candidate {
    let mut p = std::collections::BTreeMap::new();
    p.insert("url".to_string(), Value::Str(opts.url.clone()));
    p.insert("model".to_string(), Value::Str(model.to_string()));
    p.insert("dataset".to_string(), Value::Str(opts.dataset.display().to_string()));
    p.insert("max_tokens".to_string(), Value::Int(i64::from(opts.max_tokens)));
    match opts.load {
        Load::Closed { concurrency } => p.insert("concurrency".to_string(), Value::Int(i64::from(concurrency))),
        Load::Open { rate_per_s } => p.insert("rate_per_s".to_string(), Value::Float(rate_per_s)),
    };
    Candidate(p)
}

/// Store the run as a one-trial study named `name`; returns nothing but fails if it exists.
pub async fn save(store: &Store, name: &str, opts: &BenchOptions, report: &BenchReport) -> anyhow::Result<()> {
    if store.study(name).await?.is_some() {
        bail!("study '{name}' already exists; pick another name for --save");
    }
    let fingerprint = Fingerprint {
        engine_version: format!("endpoint {}", opts.url),
        model_sha256: Default::default(),
        host: system::host(),
    };
    let objective = Objective { metric: Metric::OutputTokPerS, direction: Direction::Maximize };
    let study = store
        .create_study(&NewStudy {
            name,
            backend: None,
            strategy: None,
            objective_metric: objective.metric.name(),
            direction: objective.direction,
            space_toml: &format!("# infertune bench --url {} (no search space)\n", opts.url),
            fingerprint: &fingerprint,
        })
        .await?;
    let (trial_id, _) = store.begin_trial(study.id, &load_params(opts, &report.model)).await?;
    let verdict = measure::judge(&report.summary, &objective, &[]);
    let outcome = Outcome::Complete { summary: report.summary.clone(), verdict };
    store
        .finish_trial(
            trial_id,
            &Finished { outcome: &outcome, plan: None, stages: StageTimes::default(), samples: &report.samples },
        )
        .await
        .with_context(|| format!("saving the bench run as study '{name}'"))?;
    store.set_stop_reason(study.id, "exhausted").await?;
    Ok(())
}

/// The report as JSON: every metric with its definition, unit, sample count and raw values.
pub fn to_json(opts: &BenchOptions, r: &BenchReport) -> serde_json::Value {
    let s = &r.summary;
    // Server-side and cross-check rates are figures of `bench` alone, not `Metric`s: named here.
    let scalar = |name: &str, value: Option<f64>, n: usize| {
        let definition = measure::definition(name);
        json!({"value": value, "definition": definition, "n": n})
    };
    let metric = |m: Metric, n: usize| json!({"value": m.value(s), "definition": m.definition(), "n": n});
    json!({
        "url": opts.url,
        "model": r.model,
        "protocol": "openai",
        "load": match opts.load {
            Load::Closed { concurrency } => json!({"mode": "closed", "concurrency": concurrency}),
            Load::Open { rate_per_s } => json!({"mode": "open", "arrivals": "poisson", "rate_per_s": rate_per_s}),
        },
        "requests": s.requests,
        "succeeded": s.succeeded,
        "errors": s.errors,
        "wall_s": s.wall_s,
        "valid": r.is_valid,
        "lateness_ms": r.lateness_ms.map(|d| json!({"definition": "actual send - scheduled send (open loop); run invalid when p99 > 5 ms", "dist": d})),
        "prompts_repeated": r.prompts_repeated,
        "distributions": r.stamped,
        Metric::OutputTokPerS.name(): metric(Metric::OutputTokPerS, s.succeeded),
        Metric::ReqPerS.name(): metric(Metric::ReqPerS, s.succeeded),
        Metric::SuccessRate.name(): metric(Metric::SuccessRate, s.requests),
        "cross_check": {
            "client_decode_tok_per_s": scalar("client_decode_tok_per_s", s.client_decode_tok_per_s, s.tpot_ms.n),
            "server_decode_tok_per_s": scalar("server_decode_tok_per_s", s.server_decode_tok_per_s, s.succeeded),
            "server_prompt_tok_per_s": scalar("server_prompt_tok_per_s", s.server_prompt_tok_per_s, s.succeeded),
            Metric::DecodeAgreement.name(): metric(Metric::DecodeAgreement, s.tpot_ms.n),
            "flagged": s.is_cross_check_flagged,
        },
        "client_cpu_ms": s.client_cpu_ms,
        "percentiles": "HDR histogram (microseconds, 3 significant digits); mean and max exact; raw values in 'values'",
    })
}

/// The report as a table.
pub fn write_table(opts: &BenchOptions, r: &BenchReport, out: &mut dyn Write) -> std::io::Result<()> {
    let s = &r.summary;
    let load = match opts.load {
        Load::Closed { concurrency } => format!("closed loop, {concurrency} clients"),
        Load::Open { rate_per_s } => format!("open loop, poisson {rate_per_s} req/s"),
    };
    writeln!(out, "endpoint  {} (model '{}', {load})", opts.url, r.model)?;
    writeln!(out, "requests  {} measured, {} ok, {:.1} s; errors {:?}", s.requests, s.succeeded, s.wall_s, s.errors)?;
    writeln!(out, "{:<14} {:>6} {:>10} {:>10} {:>10} {:>10}  definition", "metric", "n", "p50", "p95", "p99", "mean")?;
    for m in &r.stamped {
        writeln!(
            out,
            "{:<14} {:>6} {:>10.2} {:>10.2} {:>10.2} {:>10.2}  {} [{}]",
            m.name, m.dist.n, m.dist.p50, m.dist.p95, m.dist.p99, m.dist.mean, m.definition, m.unit
        )?;
    }
    writeln!(
        out,
        "output tok/s  {:.2}   req/s {:.3}   success {:.1}%",
        s.output_tok_per_s,
        s.req_per_s,
        s.success_rate * 100.0
    )?;
    let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    writeln!(
        out,
        "decode tok/s  client {} / server {} = {}{}",
        f(s.client_decode_tok_per_s),
        f(s.server_decode_tok_per_s),
        f(s.decode_agreement),
        if s.is_cross_check_flagged { "  FLAGGED: differ by more than 10 %" } else { "" }
    )?;
    writeln!(out, "client cpu    {:.0} ms", s.client_cpu_ms)?;
    if let Some(l) = r.lateness_ms {
        writeln!(
            out,
            "lateness      p50 {:.2} ms, p99 {:.2} ms (n {}){}",
            l.p50,
            l.p99,
            l.n,
            if r.is_valid { "" } else { "  INVALID: client lateness p99 above 5 ms; lower the rate" }
        )?;
    }
    if r.prompts_repeated {
        writeln!(out, "note          more requests than prompts: prompts repeated (a prompt cache may flatter TTFT)")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: the JSON keys and definitions read off `Metric` are the ones scripts read.
    #[test]
    fn json_names_each_figure_with_its_definition() {
        let opts = BenchOptions {
            url: "http://127.0.0.1:1".into(),
            protocol: Protocol::OpenAi,
            model: None,
            dataset: PathBuf::from("prompts.jsonl"),
            load: Load::Closed { concurrency: 1 },
            amount: Amount::Requests(2),
            warmup: 0,
            max_tokens: 8,
            seed: 1,
            request_timeout: Duration::from_secs(1),
            prompt_cache: false,
        };
        let summary =
            Summary { requests: 2, succeeded: 2, output_tok_per_s: 40.0, success_rate: 1.0, ..Default::default() };
        let report = BenchReport {
            model: "m".into(),
            summary,
            stamped: vec![],
            samples: vec![],
            lateness_ms: None,
            is_valid: true,
            prompts_repeated: false,
        };
        let j = to_json(&opts, &report);
        assert_eq!(j["output_tok_per_s"]["value"], 40.0);
        assert_eq!(j["output_tok_per_s"]["n"], 2);
        assert_eq!(
            j["output_tok_per_s"]["definition"],
            "sum of output tokens of successful requests / measured wall time"
        );
        assert_eq!(j["success_rate"]["value"], 1.0);
        assert_eq!(j["req_per_s"]["definition"], "successful requests / measured wall time");
        assert!(j["cross_check"]["decode_agreement"]["value"].is_null());
        assert!(j["cross_check"]["decode_agreement"]["definition"].as_str().unwrap().starts_with("client_decode"));
        assert!(j["cross_check"]["server_decode_tok_per_s"]["definition"].is_string());
    }
}
