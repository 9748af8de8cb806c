//! `infertune bench --url URL`: measure one running endpoint (no tuning), like
//! `vllm bench serve`, and optionally store the run as a one-trial study.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{open_store, parse_duration_arg};
use crate::daemon::bench::{self, Amount, BenchOptions, Load};
use crate::workload::Protocol;

/// The wire protocol of `bench --url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// OpenAI chat completions over SSE (llama.cpp, vLLM, Ollama's /v1)
    Openai,
    /// Ollama /api/chat over NDJSON
    Ollama,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of the running server (e.g. http://127.0.0.1:8080)
    #[arg(long)]
    pub url: String,
    /// Wire protocol
    #[arg(long, value_enum, default_value_t = ProtocolArg::Openai)]
    pub protocol: ProtocolArg,
    /// Model name sent in requests [default: the first of GET /v1/models]
    #[arg(long)]
    pub model: Option<String>,
    /// Prompt set: prompts/chat-mix.jsonl, prompts/short-qa.jsonl, prompts/long-rag.jsonl or your JSONL
    #[arg(long, default_value = "prompts/chat-mix.jsonl")]
    pub dataset: PathBuf,
    /// Closed loop: clients in flight at once
    #[arg(long, default_value_t = 4, conflicts_with = "rate")]
    pub concurrency: u32,
    /// Open loop: Poisson arrivals at this many requests per second
    #[arg(long, value_name = "REQ_PER_S")]
    pub rate: Option<f64>,
    /// Measured requests
    #[arg(long, default_value_t = 64, conflicts_with = "duration")]
    pub requests: u32,
    /// Measure for this long instead of a request count (e.g. 60s)
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    /// Warm-up requests, excluded from the figures
    #[arg(long, default_value_t = 4)]
    pub warmup: u32,
    /// Output tokens per request
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Seed of the prompt order and the arrival schedule
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Per-request timeout
    #[arg(long, default_value = "120s", value_parser = parse_duration_arg)]
    pub request_timeout: Duration,
    /// Let the server reuse cached prompt prefixes (llama.cpp cache_prompt)
    #[arg(long)]
    pub prompt_cache: bool,
    /// Store the run in the database as a one-trial study with this name
    #[arg(long, value_name = "STUDY")]
    pub save: Option<String>,
    /// Print JSON (every metric with its definition, sample count and raw values)
    #[arg(long)]
    pub json: bool,
}

/// `bench`: measure, print, and store the run when `--save` names a study.
pub(super) async fn run(db: &Path, args: BenchArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let opts = options(&args);
    let report = bench::bench(&opts).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&bench::to_json(&opts, &report))?)?;
    } else {
        bench::write_table(&opts, &report, out)?;
    }
    if let Some(name) = &args.save {
        let store = open_store(db).await?;
        bench::save(&store, name, &opts, &report).await?;
        if !args.json {
            writeln!(out, "saved as study '{name}'")?;
        }
        store.close().await;
    }
    Ok(())
}

/// The measurement the flags describe: `--rate` makes it open-loop, `--duration` replaces the
/// request count.
fn options(args: &BenchArgs) -> BenchOptions {
    BenchOptions {
        url: args.url.clone(),
        protocol: match args.protocol {
            ProtocolArg::Openai => Protocol::OpenAi,
            ProtocolArg::Ollama => Protocol::Ollama,
        },
        model: args.model.clone(),
        dataset: args.dataset.clone(),
        load: match args.rate {
            Some(rate_per_s) => Load::Open { rate_per_s },
            None => Load::Closed { concurrency: args.concurrency.max(1) },
        },
        amount: match args.duration {
            Some(d) => Amount::Duration(d),
            None => Amount::Requests(args.requests),
        },
        warmup: args.warmup,
        max_tokens: args.max_tokens,
        seed: args.seed,
        request_timeout: args.request_timeout,
        prompt_cache: args.prompt_cache,
    }
}
