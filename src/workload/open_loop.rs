//! Open-loop load: requests leave on a precomputed Poisson schedule whatever the server does, so
//! a stalled server shows up as queueing in the latencies instead of as a slower client
//! (coordinated omission, vllm#54101).
//!
//! The schedule is drawn up front from `Exp(rate)` gaps (seeded: every trial gets the same
//! arrivals), each request sleeps until `origin + offset`, and latency counts from the scheduled
//! time. The client's own lateness (actual send − scheduled send) is recorded; a run whose
//! lateness p99 exceeds [`MAX_LATENESS_P99`] measured the client, not the server, and is marked
//! invalid. Reused by capacity search: [`schedule`] and [`run`] are the whole API.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_distr::{Distribution, Exp};

use super::{Prompt, Run, Target, send};
use crate::measure::{Dist, Sample};
use crate::space::WorkloadSpec;

/// Lateness p99 above which an open-loop run is invalid (`search-and-measurement.md` §6.1).
pub const MAX_LATENESS_P99: Duration = Duration::from_millis(5);

/// The lateness bound in force: [`MAX_LATENESS_P99`], or `INFERTUNE_MAX_LATENESS_MS` (a whole
/// number of ms, at least 1) on a host where the client shares its cores with the engine, as in
/// `scripts/test` on 2 cores; figures then carry up to that much client delay.
pub fn max_lateness_p99() -> Duration {
    static BOUND: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *BOUND.get_or_init(|| {
        std::env::var("INFERTUNE_MAX_LATENESS_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms >= 1)
            .map_or(MAX_LATENESS_P99, Duration::from_millis)
    })
}

/// A rate that cannot drive a Poisson schedule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("request rate must be a positive, finite number of requests per second (got '{0}')")]
pub struct BadRate(pub f64);

/// Send offsets of `n` requests of a Poisson process with `rate_per_s` arrivals per second:
/// cumulative sums of seeded `Exp(rate)` gaps, the first gap included.
pub fn schedule(rate_per_s: f64, n: usize, seed: u64) -> Result<Vec<Duration>, BadRate> {
    // Exp::new accepts 0 (infinite gaps) and infinity; neither is a schedule.
    if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
        return Err(BadRate(rate_per_s));
    }
    let exp = Exp::new(rate_per_s).map_err(|_| BadRate(rate_per_s))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t = 0.0f64;
    Ok((0..n)
        .map(|_| {
            t += exp.sample(&mut rng);
            Duration::try_from_secs_f64(t).expect("a sum of finite positive gaps")
        })
        .collect())
}

/// What an open-loop run produced, beside the samples.
#[derive(Debug, Clone)]
pub struct OpenRun {
    /// Samples with `sent` set to the *scheduled* send time; `wall` runs from the first
    /// scheduled send until every request has finished.
    pub run: Run,
    /// Client lateness (actual − scheduled send) of the measured requests, in ms.
    pub lateness_ms: Dist,
    /// `false` when lateness p99 exceeds [`MAX_LATENESS_P99`]: the figures describe the client.
    pub is_valid: bool,
}

/// Warm-up (closed-loop, `spec.concurrency` clients, `spec.warmup` requests), then
/// `spec.requests` measured requests sent at Poisson arrivals of `rate_per_s`.
pub async fn run(
    client: &reqwest::Client,
    target: &Target,
    prompts: &[Prompt],
    spec: &WorkloadSpec,
    rate_per_s: f64,
) -> Result<OpenRun, BadRate> {
    let offsets = schedule(rate_per_s, spec.requests as usize, spec.seed)?;
    let order = super::schedule(prompts.len(), spec.warmup as usize, spec.requests as usize, spec.seed, spec.draw);
    let (warm, measured) = order.split_at(spec.warmup as usize);
    let origin = Instant::now();
    let mut samples = Vec::new();
    if !warm.is_empty() {
        let subset = prompts_subset(prompts, warm);
        let warm_spec = WorkloadSpec { requests: warm.len() as u32, warmup: 0, ..spec.clone() };
        for mut s in super::run(client, target, &subset, &warm_spec).await.samples {
            s.is_warmup = true;
            s.prompt_index = warm[s.prompt_index];
            samples.push(s);
        }
    }
    let timed: Vec<Timed<'_>> =
        measured.iter().zip(&offsets).map(|(&index, &offset)| Timed::new(index, offset, &prompts[index])).collect();
    let mut sent = send_on_schedule(client, target, spec, &timed, origin).await;
    samples.append(&mut sent.run.samples);
    Ok(OpenRun { run: Run { samples, wall: sent.run.wall }, ..sent })
}

/// One request of a fixed schedule, and what it changes in the request body.
#[derive(Debug, Clone)]
pub struct Timed<'a> {
    /// Stored as the sample's `prompt_index`.
    pub index: usize,
    /// Send time from the schedule's start.
    pub offset: Duration,
    pub prompt: &'a Prompt,
    /// This request's `max_tokens`; `None`: the spec's.
    pub max_tokens: Option<u32>,
    /// Body fields of this request only, over the target's options (`ignore_eos`, `messages`).
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl<'a> Timed<'a> {
    /// `prompt` at `offset`, with the spec's `max_tokens` and the target's options.
    pub fn new(index: usize, offset: Duration, prompt: &'a Prompt) -> Timed<'a> {
        Timed { index, offset, prompt, max_tokens: None, options: serde_json::Map::new() }
    }
}

/// Send each request at `origin`'s now + its offset, whatever the server does, and record the
/// client's lateness. Samples have `sent` at the *scheduled* time, in schedule order; the
/// open loop and trace replay (`workload::replay`) both run through here.
pub async fn send_on_schedule(
    client: &reqwest::Client,
    target: &Target,
    spec: &WorkloadSpec,
    requests: &[Timed<'_>],
    origin: Instant,
) -> OpenRun {
    let start = Instant::now();
    let start_offset = start - origin;
    let sends = requests.iter().map(|r| async move {
        let scheduled = start_offset + r.offset;
        let (own_target, own_spec);
        let target = if r.options.is_empty() {
            target
        } else {
            let mut t = target.clone();
            t.options.extend(r.options.clone());
            own_target = t;
            &own_target
        };
        let spec = match r.max_tokens {
            None => spec,
            Some(max_tokens) => {
                own_spec = WorkloadSpec { max_tokens, ..spec.clone() };
                &own_spec
            }
        };
        tokio::time::sleep_until((origin + scheduled).into()).await;
        let lateness = origin.elapsed().saturating_sub(scheduled);
        let mut sample: Sample = send(client, target, r.prompt, spec, origin).await;
        sample.sent = scheduled;
        sample.prompt_index = r.index;
        (sample, lateness)
    });
    let done = futures_util::future::join_all(sends).await;
    let wall = start.elapsed();
    let lateness: Vec<f64> = done.iter().map(|(_, l)| l.as_secs_f64() * 1000.0).collect();
    let samples = done.into_iter().map(|(s, _)| s).collect();
    let lateness_ms = Dist::of(&lateness);
    OpenRun {
        run: Run { samples, wall },
        is_valid: lateness_ms.p99 <= max_lateness_p99().as_secs_f64() * 1000.0,
        lateness_ms,
    }
}

/// The warm-up prompts in order, so the closed-loop runner sends exactly these.
fn prompts_subset(prompts: &[Prompt], indices: &[usize]) -> Vec<Prompt> {
    indices.iter().map(|&i| prompts[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_seeded_increasing_and_has_the_rate() {
        let s = schedule(50.0, 5000, 3).unwrap();
        assert_eq!(s, schedule(50.0, 5000, 3).unwrap());
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        // 5000 arrivals at 50/s take about 100 s; the sum of 5000 Exp gaps has sd 100/sqrt(5000) ≈ 1.4 s.
        let total = s.last().unwrap().as_secs_f64();
        assert!((95.0..105.0).contains(&total), "{total}");
        assert_ne!(s, schedule(50.0, 5000, 4).unwrap());
        assert_eq!(schedule(0.0, 1, 1), Err(BadRate(0.0)));
        assert!(schedule(f64::INFINITY, 1, 1).is_err());
        assert!(schedule(-1.0, 1, 1).is_err());
    }
}
