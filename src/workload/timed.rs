//! Closed-loop load for a fixed time instead of a fixed request count (`bench --duration`):
//! `concurrency` clients send back to back until the deadline, then finish what is in flight.
//!
//! Prompts cycle through the seeded order; a run longer than the dataset repeats prompts, which
//! a server with a prompt cache will notice (DESIGN.md §5), so `bench` warns about it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Prompt, Run, Target, send};
use crate::space::WorkloadSpec;

/// Warm-up (`spec.warmup` requests, closed-loop), then closed-loop requests for `duration`.
/// `spec.requests` is ignored.
pub async fn run_for(
    client: &reqwest::Client,
    target: &Target,
    prompts: &[Prompt],
    spec: &WorkloadSpec,
    duration: Duration,
) -> Run {
    let warm_spec = WorkloadSpec { requests: 0, ..spec.clone() };
    let mut samples = super::run(client, target, prompts, &warm_spec).await.samples;
    let order = super::schedule(prompts.len(), spec.warmup as usize, prompts.len(), spec.seed, spec.draw);
    let order = &order[spec.warmup as usize..];
    let next = Arc::new(AtomicUsize::new(0));
    let origin = Instant::now();
    let deadline = origin + duration;
    let workers = (0..spec.concurrency.max(1)).map(|_| {
        let next = next.clone();
        async move {
            let mut out = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let prompt_index = order[i % order.len()];
                let mut sample = send(client, target, &prompts[prompt_index], spec, origin).await;
                sample.prompt_index = prompt_index;
                out.push(sample);
            }
            out
        }
    });
    let mut measured: Vec<_> = futures_util::future::join_all(workers).await.into_iter().flatten().collect();
    let wall = origin.elapsed();
    measured.sort_by_key(|s| s.sent);
    samples.extend(measured);
    Run { samples, wall }
}
