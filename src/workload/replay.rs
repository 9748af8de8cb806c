//! Trace replay (issue 17): the requests of a [`Trace`] sent at their own (scaled) arrival
//! times through `open_loop::send_on_schedule`, so lateness is tracked and a client that fell
//! behind invalidates the run.
//!
//! Prompts: a row with text is sent as it is. A row with only lengths gets a prompt synthesized
//! from the server's own tokenizer ([`Prepared::on`]: `POST /tokenize` and `/detokenize`, as on
//! llama.cpp and vLLM, once per server start): words that are one token each and stay one token
//! in any concatenation (` word` pieces of a byte-level BPE), so a prompt of n words is n
//! tokens. Block k of a request is drawn from a generator seeded by its `hash_ids[k]` (and the
//! trial's draw), so requests sharing leading ids share byte-identical leading blocks, and
//! different trials never share a prompt. The chat template's tokens are measured once and
//! subtracted, so the server's `usage.prompt_tokens` is the trace's `input_length`.
//!
//! Knows no backend: it gets a base URL (the target) and how the server enforces an output
//! length ([`OutputControl`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use serde_json::{Value as Json, json};

use super::open_loop::{OpenRun, Timed, send_on_schedule};
use super::trace::{Format, Request, Stats, Text, Trace};
use super::{Prompt, Protocol, Target};
use crate::measure::ReplayFigure;
use crate::measure::stamp::TraceWindow;
use crate::space::{TraceSpec, WorkloadSpec};

/// How a server is made to generate exactly a row's `output_length` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputControl {
    /// `max_tokens` only: the model may stop earlier at its end-of-sequence token.
    MaxTokens,
    /// `max_tokens` plus `ignore_eos: true` (llama.cpp).
    IgnoreEos,
    /// `max_tokens` plus `min_tokens` of the same value (vLLM).
    MinTokens,
}

/// The requests of `trace` that `spec` replays: (index in the trace, send offset from the
/// replay's start). Arrivals in `[start, start + duration)`, at most `max_requests`, offsets
/// from `start` multiplied by `time_scale`.
pub fn plan(trace: &Trace, spec: &TraceSpec) -> Vec<(usize, Duration)> {
    let end = spec.duration.map(|d| spec.start + d);
    trace
        .requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.at >= spec.start && end.is_none_or(|e| r.at < e))
        .take(spec.max_requests.map_or(usize::MAX, |m| m as usize))
        .map(|(i, r)| {
            let scaled = (r.at - spec.start).as_secs_f64() * spec.time_scale;
            (i, Duration::try_from_secs_f64(scaled).expect("a validated time scale is positive and finite"))
        })
        .collect()
}

/// The first request is due this long after the replay starts, not at once: a send due at the
/// instant the schedule is built would count the set-up as lateness.
const SCHEDULE_LEAD: Duration = Duration::from_millis(20);

/// Ordinary English words; the server's tokenizer keeps those that are one token.
const CORPUS: &str = "the of and to in is was for on with as by at from that this which be are were his \
their they have has had not but all can more one two new time year people world state city school \
family water house night music river market story power field light system group order point place \
number child money history party health report result garden window table summer winter morning \
island mountain village station letter paper office business language country person animal travel \
season forest bridge street road engine energy science nature doctor teacher student friend mother \
father brother sister company member player leader game film book song voice heart mind body hand \
head face eye door room floor wall king queen army battle church court law policy public service \
college museum library theatre season island harbor valley desert ocean planet garden farmer kitchen \
dinner bread cheese apple orange lemon coffee sugar salt silver gold iron stone glass wood cotton \
paint color green blue black white brown yellow north south east west early late small large great \
little young old long short high low strong simple open close quick slow happy";

/// What replay needs from a running server, found once per server start.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Words with their leading space: one token each (from the server's tokenizer), or, when
    /// `chars_per_token` is set, ordinary words of unknown token count.
    pieces: Vec<String>,
    /// Tokens the chat template adds around a one-message chat.
    chat_overhead: u32,
    /// Ollama (no tokenize endpoint): characters per token calibrated from `prompt_eval_count`;
    /// a prompt of n tokens is words up to n × this many characters. `None`: exact tokens.
    chars_per_token: Option<f64>,
}

impl Prepared {
    /// Ask `target`'s server for its tokenizer's one-token words (`/tokenize`, `/detokenize`)
    /// and measure the chat template's tokens with one short request (which warms the server).
    /// Ollama has no tokenize endpoint: [`Prepared::calibrate`] instead.
    pub async fn on(client: &reqwest::Client, target: &Target, spec: &WorkloadSpec) -> anyhow::Result<Prepared> {
        if target.protocol == Protocol::Ollama {
            return Prepared::calibrate(client, target, spec).await;
        }
        let ids = tokenize(client, target, CORPUS).await?;
        let mut pieces = BTreeSet::new();
        for id in ids.into_iter().collect::<BTreeSet<_>>() {
            let piece = detokenize(client, target, id).await?;
            let word = piece.strip_prefix(' ').unwrap_or("");
            if word.len() >= 2 && word.bytes().all(|b| b.is_ascii_lowercase()) {
                pieces.insert(piece);
            }
        }
        let pieces: Vec<String> = pieces.into_iter().collect();
        if pieces.len() < 32 {
            bail!("the server's tokenizer keeps only {} one-token words of the corpus (need 32)", pieces.len());
        }
        // The pieces stay one token each when joined: check it on all of them at once.
        let joined: String = pieces.concat();
        let n = tokenize(client, target, &joined).await?.len();
        if n != pieces.len() {
            bail!("{} one-token words joined make {n} tokens: the tokenizer merges across words", pieces.len());
        }
        let used = prompt_tokens(client, target, spec, &pieces[..16].concat()).await?;
        Ok(Prepared { pieces, chat_overhead: used.saturating_sub(16), chars_per_token: None })
    }

    /// Ollama: characters per token and the chat template's tokens from `prompt_eval_count`
    /// of three requests of the corpus's words: a primer (so a prompt cache holds the template's
    /// tokens for the next two as it will for the replay's), then a short and a long text. The
    /// two give a line `tokens = overhead + chars / chars_per_token`.
    pub async fn calibrate(client: &reqwest::Client, target: &Target, spec: &WorkloadSpec) -> anyhow::Result<Prepared> {
        let pieces = corpus_words();
        let text = |n: usize, seed: u64| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ spec.draw);
            (0..n).map(|_| pieces.choose(&mut rng).expect("a non-empty corpus").as_str()).collect::<String>()
        };
        prompt_tokens(client, target, spec, &text(8, 1)).await.context("calibrating characters per token")?;
        let (short, long) = (text(CALIBRATION_WORDS.0, 2), text(CALIBRATION_WORDS.1, 3));
        let p_short = prompt_tokens(client, target, spec, &short).await.context("calibrating characters per token")?;
        let p_long = prompt_tokens(client, target, spec, &long).await.context("calibrating characters per token")?;
        let (chars_per_token, chat_overhead) = fit((short.len(), p_short), (long.len(), p_long))?;
        Ok(Prepared { pieces, chat_overhead, chars_per_token: Some(chars_per_token) })
    }

    /// Characters per token when calibrated (Ollama); `None` when prompts are exact tokens.
    pub fn chars_per_token(&self) -> Option<f64> {
        self.chars_per_token
    }
}

/// Words of the two calibration texts (the primer has 8).
const CALIBRATION_WORDS: (usize, usize) = (48, 400);

/// The corpus's distinct words, each with its leading space.
fn corpus_words() -> Vec<String> {
    let words: BTreeSet<&str> = CORPUS.split_whitespace().collect();
    words.into_iter().map(|w| format!(" {w}")).collect()
}

/// Characters per token and the template's tokens from two (characters, prompt tokens) points.
fn fit(short: (usize, u32), long: (usize, u32)) -> anyhow::Result<(f64, u32)> {
    let (dc, dp) = (long.0 as f64 - short.0 as f64, f64::from(long.1) - f64::from(short.1));
    if dc <= 0.0 || dp <= 0.0 {
        bail!(
            "calibrating characters per token: prompt_eval_count {} for {} characters and {} for {}: the server must count more tokens for the longer prompt",
            short.1,
            short.0,
            long.1,
            long.0
        );
    }
    let chars_per_token = dc / dp;
    let overhead = (f64::from(short.1) - short.0 as f64 / chars_per_token).round().max(0.0);
    Ok((chars_per_token, overhead as u32))
}

async fn post(client: &reqwest::Client, target: &Target, path: &str, body: Json) -> anyhow::Result<Json> {
    let url = format!("{}{path}", target.base_url);
    let resp = client
        .post(&url)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .with_context(|| format!("POST '{url}'"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!("POST '{url}': HTTP {status}: {}", super::truncate(&resp.text().await.unwrap_or_default(), 200));
    }
    resp.json().await.with_context(|| format!("POST '{url}': reading the JSON answer"))
}

/// Token ids of `text`, without special tokens (llama.cpp `content`, vLLM `prompt`).
async fn tokenize(client: &reqwest::Client, target: &Target, text: &str) -> anyhow::Result<Vec<u64>> {
    let body = json!({"content": text, "prompt": text, "model": target.model, "add_special": false, "add_special_tokens": false});
    let answer = post(client, target, "/tokenize", body).await?;
    answer["tokens"].as_array().and_then(|t| t.iter().map(Json::as_u64).collect::<Option<Vec<_>>>()).with_context(
        || format!("/tokenize answered without a 'tokens' list of ids: {}", super::truncate(&answer.to_string(), 200)),
    )
}

/// The text of one token (llama.cpp answers `content`, vLLM `prompt`).
async fn detokenize(client: &reqwest::Client, target: &Target, id: u64) -> anyhow::Result<String> {
    let answer = post(client, target, "/detokenize", json!({"tokens": [id], "model": target.model})).await?;
    answer
        .get("content")
        .or_else(|| answer.get("prompt"))
        .and_then(Json::as_str)
        .map(str::to_string)
        .with_context(|| format!("/detokenize answered without text: {}", super::truncate(&answer.to_string(), 200)))
}

/// The prompt tokens the server reports (`usage.prompt_tokens`, Ollama's `prompt_eval_count`)
/// for a one-message chat of `content`, generating one token.
async fn prompt_tokens(
    client: &reqwest::Client,
    target: &Target,
    spec: &WorkloadSpec,
    content: &str,
) -> anyhow::Result<u32> {
    let prompt = Prompt { id: None, system: None, prompt: content.to_string(), answer: None, accept: Vec::new() };
    let probe = WorkloadSpec { max_tokens: 1, prompt_cache: false, ..spec.clone() };
    let sample = super::send(client, target, &prompt, &probe, Instant::now()).await;
    if let Some(kind) = sample.error {
        bail!("measuring the chat template's tokens: {kind:?}: {}", sample.error_message.unwrap_or_default());
    }
    match sample.prompt_tokens {
        Some(n) if n > 0 => Ok(n),
        _ => bail!(
            "measuring the chat template's tokens: the server reported no prompt token count (usage.prompt_tokens, prompt_eval_count)"
        ),
    }
}

/// A seed per (block id, draw), and one per (request, block) for blocks no other request has.
fn block_seed(hash_id: Option<u64>, request: usize, block: usize, draw: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match hash_id {
        Some(id) => std::hash::Hash::hash(&(0u8, id, draw), &mut h),
        None => std::hash::Hash::hash(&(1u8, request, block, draw), &mut h),
    }
    std::hash::Hasher::finish(&h)
}

/// A prompt of `request`'s length in `prepared`'s words: block k from `hash_ids[k]` (or the
/// request's own seed past its ids), cut to `input_length` minus the chat template. A word costs
/// one token, or its characters over `chars_per_token` when calibrated; block k ends once the
/// cost reaches (k + 1) × `block_size`, so requests sharing leading ids share those blocks' bytes.
fn synthesize(prepared: &Prepared, request: &Request, index: usize, block_size: u32, draw: u64) -> String {
    let want = f64::from(request.input_length.unwrap_or(1).saturating_sub(prepared.chat_overhead).max(1));
    let cost = |piece: &str| prepared.chars_per_token.map_or(1.0, |cpt| piece.len() as f64 / cpt);
    let mut out = String::new();
    let mut spent = 0.0;
    let mut block = 0;
    // Half a word's cost of slack: the calibrated length rounds to the nearest word.
    let slack = prepared.chars_per_token.map_or(0.0, |cpt| 3.0 / cpt);
    while spent + slack < want {
        let seed = block_seed(request.hash_ids.get(block).copied(), index, block, draw);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let end = (f64::from(block_size) * (block + 1) as f64).min(want);
        while spent + slack < end {
            let piece = prepared.pieces.choose(&mut rng).expect("at least 32 pieces");
            out.push_str(piece);
            spent += cost(piece);
        }
        block += 1;
    }
    out
}

/// Replay `trace` on `target` as `spec.trace` says: every planned request at its offset, lengths
/// enforced per `control`. `prepared` is needed when a planned row has no text.
pub async fn run(
    client: &reqwest::Client,
    target: &Target,
    spec: &WorkloadSpec,
    trace: &Trace,
    prepared: Option<&Prepared>,
    control: OutputControl,
) -> anyhow::Result<(OpenRun, ReplayFigure)> {
    let tspec = spec.trace.as_ref().context("a replay needs [workload] trace")?;
    let planned = plan(trace, tspec);
    if planned.is_empty() {
        bail!("the trace's window holds no request (start {:?}, duration {:?})", tspec.start, tspec.duration);
    }
    let blank = Prompt { id: None, system: None, prompt: String::new(), answer: None, accept: Vec::new() };
    let mut prompts = Vec::with_capacity(planned.len());
    for &(i, _) in &planned {
        let r = &trace.requests[i];
        let prompt = match (&r.text, prepared) {
            (Some(Text::Prompt(p)), _) => Prompt { prompt: p.clone(), ..blank.clone() },
            (Some(Text::Messages(_)), _) => blank.clone(),
            (None, Some(p)) => Prompt { prompt: synthesize(p, r, i, tspec.block_size, spec.draw), ..blank.clone() },
            (None, None) => bail!("trace line {} has no text and no tokenizer was prepared", r.line),
        };
        prompts.push(prompt);
    }
    let timed: Vec<Timed<'_>> = planned
        .iter()
        .zip(&prompts)
        .map(|(&(i, offset), prompt)| {
            let r = &trace.requests[i];
            let mut t = Timed::new(i, offset, prompt);
            if let Some(n) = r.output_length.filter(|n| *n > 0) {
                t.max_tokens = Some(n);
                match control {
                    OutputControl::MaxTokens => {}
                    OutputControl::IgnoreEos => _ = t.options.insert("ignore_eos".into(), json!(true)),
                    OutputControl::MinTokens => _ = t.options.insert("min_tokens".into(), json!(n)),
                }
            }
            if let Some(Text::Messages(m)) = &r.text {
                t.options.insert("messages".into(), Json::Array(m.clone()));
            }
            t
        })
        .collect();
    // Every request's future is built and asleep before the first send is due.
    let timed: Vec<Timed<'_>> = timed.into_iter().map(|t| Timed { offset: t.offset + SCHEDULE_LEAD, ..t }).collect();
    let open = send_on_schedule(client, target, spec, &timed, Instant::now()).await;
    let mut figure = figure(trace, tspec, &open, prepared);
    figure.window = Some(window(trace, tspec, &planned));
    Ok((open, figure))
}

fn figure(trace: &Trace, spec: &TraceSpec, open: &OpenRun, prepared: Option<&Prepared>) -> ReplayFigure {
    let pairs: Vec<(f64, f64)> = open
        .run
        .samples
        .iter()
        .filter_map(|s| Some((f64::from(trace.requests[s.prompt_index].input_length?), f64::from(s.prompt_tokens?))))
        .filter(|(want, _)| *want > 0.0)
        .collect();
    let n = pairs.len().max(1) as f64;
    let synthesized = open.run.samples.iter().any(|s| trace.requests[s.prompt_index].text.is_none());
    let with_text = open.run.samples.iter().any(|s| trace.requests[s.prompt_index].text.is_some());
    let made = match prepared.and_then(|p| p.chars_per_token) {
        Some(cpt) => format!(
            "synthesized at {cpt:.2} characters per token, calibrated from the server's prompt_eval_count (Ollama has no tokenize endpoint; lengths are approximate)"
        ),
        None => "synthesized from the server's tokenizer (/tokenize, /detokenize)".to_string(),
    };
    let prompts = match (synthesized, with_text) {
        (true, true) => format!("{made} and trace text"),
        (true, false) => made,
        _ => "trace text".to_string(),
    };
    ReplayFigure {
        source: spec.path.display().to_string(),
        format: trace.format.as_str().to_string(),
        time_scale: spec.time_scale,
        requests: open.run.samples.len(),
        lateness_ms: open.lateness_ms,
        is_valid: open.is_valid,
        isl_trace_mean: pairs.iter().map(|p| p.0).sum::<f64>() / n,
        isl_measured_mean: pairs.iter().map(|p| p.1).sum::<f64>() / n,
        isl_error_pct: pairs.iter().map(|(want, got)| (got - want).abs() / want * 100.0).sum::<f64>() / n,
        prompts,
        chat_overhead_tokens: prepared.filter(|_| synthesized).map(|p| p.chat_overhead),
        chars_per_token: prepared.filter(|_| synthesized).and_then(|p| p.chars_per_token),
        window: None,
    }
}

/// The replayed part of `trace` (`planned`) as `trace stats` would describe it.
fn window(trace: &Trace, spec: &TraceSpec, planned: &[(usize, Duration)]) -> TraceWindow {
    let part = Trace {
        format: trace.format,
        requests: planned.iter().map(|&(i, _)| trace.requests[i].clone()).collect(),
        skipped_failed: 0,
    };
    let first = part.requests.first().map_or(Duration::ZERO, |r| r.at);
    let shifted =
        Trace { requests: part.requests.iter().map(|r| Request { at: r.at - first, ..r.clone() }).collect(), ..part };
    let stats = Stats::of(&shifted, spec.block_size);
    TraceWindow {
        trace_requests: trace.requests.len(),
        start_s: spec.start.as_secs_f64(),
        duration_s: spec.duration.map(|d| d.as_secs_f64()),
        max_requests: spec.max_requests,
        span_s: stats.span_s,
        mean_rate_per_s: stats.mean_rate_per_s,
        peak_rate_1s_per_s: stats.peak_rate_1s_per_s,
        isl: stats.isl,
        osl: stats.osl,
        prefix_reuse: stats.prefix_reuse,
        block_size: spec.block_size,
    }
}

/// Load the trace a spec names, with its named format.
pub fn load(spec: &TraceSpec) -> Result<Trace, super::trace::Error> {
    let format = spec.format.as_deref().map(|f| f.parse::<Format>().expect("the space validated the format name"));
    super::trace::load(&spec.path, format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(start_ms: u64, duration_ms: Option<u64>, max: Option<u32>, scale: f64) -> TraceSpec {
        TraceSpec {
            path: "t".into(),
            format: None,
            time_scale: scale,
            start: Duration::from_millis(start_ms),
            duration: duration_ms.map(Duration::from_millis),
            max_requests: max,
            block_size: 4,
        }
    }

    #[test]
    fn plan_takes_the_window_scales_and_caps() {
        let text =
            (0..6).map(|i| format!("{{\"timestamp\": {}, \"input_length\": 5}}\n", i * 1000)).collect::<String>();
        let trace = super::super::trace::parse(&text, "t", None).unwrap();
        let ms = Duration::from_millis;
        assert_eq!(plan(&trace, &spec(0, None, None, 1.0)).len(), 6);
        assert_eq!(plan(&trace, &spec(2000, Some(3000), None, 0.5)), vec![(2, ms(0)), (3, ms(500)), (4, ms(1000))]);
        assert_eq!(plan(&trace, &spec(1000, None, Some(2), 2.0)), vec![(1, ms(0)), (2, ms(2000))]);
    }

    #[test]
    fn shared_hash_ids_give_byte_identical_leading_blocks() {
        let prepared =
            Prepared { pieces: (0..40).map(|i| format!(" w{i}")).collect(), chat_overhead: 2, chars_per_token: None };
        let row = |ids: &[u64], len| Request {
            at: Duration::ZERO,
            input_length: Some(len),
            output_length: None,
            hash_ids: ids.to_vec(),
            text: None,
            line: 1,
        };
        let words = |s: &str| s.split(' ').skip(1).map(str::to_string).collect::<Vec<_>>();
        let a = words(&synthesize(&prepared, &row(&[1, 2, 3], 12), 0, 4, 0));
        let b = words(&synthesize(&prepared, &row(&[1, 2, 9], 12), 1, 4, 0));
        let c = words(&synthesize(&prepared, &row(&[], 12), 2, 4, 0));
        // 12 tokens of the trace, 2 of them the chat template's
        assert_eq!((a.len(), b.len(), c.len()), (10, 10, 10));
        assert_eq!(a[..8], b[..8], "blocks 1 and 2 are shared");
        assert_ne!(a[8..], b[8..], "block 3 differs");
        assert_ne!(a[..4], c[..4]);
        // another trial's draw shares nothing with this one's
        let a1 = words(&synthesize(&prepared, &row(&[1, 2, 3], 12), 0, 4, 1));
        assert_ne!(a[..4], a1[..4]);
    }

    #[test]
    fn calibration_fits_characters_per_token_and_the_template() {
        // 4 characters a token and 20 template tokens: 200 chars -> 70, 2000 chars -> 520.
        let (cpt, overhead) = fit((200, 70), (2000, 520)).unwrap();
        assert_eq!((cpt, overhead), (4.0, 20));
        let err = fit((200, 70), (2000, 70)).unwrap_err().to_string();
        assert!(err.contains("prompt_eval_count 70 for 200 characters and 70 for 2000"), "{err}");
    }

    #[test]
    fn calibrated_prompts_have_the_length_and_share_blocks() {
        let prepared = Prepared { pieces: corpus_words(), chat_overhead: 20, chars_per_token: Some(4.0) };
        let row = |ids: &[u64], len| Request {
            at: Duration::ZERO,
            input_length: Some(len),
            output_length: None,
            hash_ids: ids.to_vec(),
            text: None,
            line: 1,
        };
        let a = synthesize(&prepared, &row(&[1, 2, 3], 620), 0, 200, 0);
        let b = synthesize(&prepared, &row(&[1, 2, 9], 620), 1, 200, 0);
        // 600 tokens at 4 characters each, within half a word
        assert!((a.len() as f64 - 2400.0).abs() <= 6.0, "{}", a.len());
        let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        assert!((1597..1660).contains(&common), "two shared 200-token blocks: {common} common bytes");
    }

    #[test]
    fn the_window_describes_the_replayed_rows() {
        let text = (0..6)
            .map(|i| {
                format!(
                    "{{\"timestamp\": {}, \"input_length\": {}, \"output_length\": 3, \"hash_ids\": [1, {i}]}}\n",
                    i * 1000,
                    100 * (i + 1)
                )
            })
            .collect::<String>();
        let trace = super::super::trace::parse(&text, "t", None).unwrap();
        let spec = spec(2000, Some(3000), None, 0.5);
        let w = window(&trace, &spec, &plan(&trace, &spec));
        assert_eq!((w.trace_requests, w.start_s, w.duration_s, w.span_s), (6, 2.0, Some(3.0), 2.0));
        assert_eq!((w.isl.n, w.isl.p50, w.osl.mean, w.mean_rate_per_s), (3, 400.0, 3.0, Some(1.5)));
        assert_eq!((w.prefix_reuse, w.block_size), (Some(2.0 / 6.0), 4));
    }
}
