//! `infertune compare`: re-measure two configurations of a study on fresh server starts,
//! interleaved and counterbalanced A, B, B, A, … (RMIT-style, `search-and-measurement.md` §5.1, so drift and order effects hit both),
//! and report each metric's ratio B/A with a hierarchical bootstrap 95 % CI and a plain call.
//!
//! Latency metrics compare medians over pooled requests (hierarchical bootstrap: runs, then
//! requests); throughput exists once per run, so it compares the interleaved pairs' ratios with a
//! Student-t interval (a bootstrap over two or three runs cannot show its own uncertainty: a
//! self-comparison measured here called a 1.28× "difference" from drift alone).

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;

use super::remeasure;
use crate::measure::{
    Metric, Sample,
    ratio::{self, Better, Call, RatioCi},
};
use crate::shutdown::Shutdown;
use crate::space::{Candidate, Space};
use crate::store::Store;

/// One side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// A stored trial, by number.
    Trial(i64),
    /// The space's default configuration (every parameter at its `default`).
    Default,
}

impl std::fmt::Display for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arm::Trial(n) => write!(f, "trial {n}"),
            Arm::Default => f.write_str("default"),
        }
    }
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub study: String,
    pub a: Arm,
    pub b: Arm,
    /// A, B pairs; each run is a fresh server start.
    pub pairs: u32,
    /// The study's space file, to resolve its relative paths; `None` parses the stored text
    /// relative to the working directory.
    pub space: Option<PathBuf>,
}

/// One metric's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Serialized as its name. The figure is the metric pooled over runs (see `definition`),
    /// not one trial's.
    pub metric: Metric,
    pub definition: &'static str,
    pub better: Better,
    /// The statistic over all of A's (B's) runs pooled.
    pub a: f64,
    pub b: f64,
    #[serde(flatten)]
    pub ci: RatioCi,
    pub call: Call,
}

/// The result of `compare`.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub a: String,
    pub b: String,
    pub pairs: u32,
    pub rows: Vec<Row>,
}

/// Progress of a comparison, for the CLI.
#[derive(Debug, Clone)]
pub enum Progress {
    RunFinished { arm: char, pair: u32, output_tok_per_s: f64, ttft_p50_ms: f64 },
}

fn candidate(space: &Space, trials: &[crate::trial::Trial], arm: Arm, study: &str) -> anyhow::Result<Candidate> {
    match arm {
        Arm::Trial(n) => trials
            .iter()
            .find(|t| t.number == n)
            .map(|t| t.params.clone())
            .with_context(|| format!("study '{study}' has no trial {n}")),
        Arm::Default => space
            .default_candidate()
            .context("the space gives no default for some parameter, so it has no default configuration"),
    }
}

struct ArmRuns {
    samples: Vec<Vec<Sample>>,
    tok_per_s: Vec<f64>,
}

/// Run the comparison.
pub async fn compare(
    store: &Store,
    opts: &CompareOptions,
    on_progress: &mut (dyn FnMut(Progress) + Send),
) -> anyhow::Result<CompareReport> {
    let study = store.study(&opts.study).await?.with_context(|| format!("no study named '{}'", opts.study))?;
    if study.strategy.is_none() {
        bail!(
            "study '{}' is a saved bench run of an endpoint; compare needs a tuning study whose servers it can start",
            study.name
        );
    }
    let space = match &opts.space {
        Some(path) => Space::load(path)?,
        None => super::stored_space(&study)?,
    };
    let trials = store.trials(study.id).await?;
    let cands = [candidate(&space, &trials, opts.a, &study.name)?, candidate(&space, &trials, opts.b, &study.name)?];
    let arms = [
        remeasure::Arm { label: opts.a.to_string(), candidate: &cands[0] },
        remeasure::Arm { label: opts.b.to_string(), candidate: &cands[1] },
    ];
    let pairs = opts.pairs.max(1);
    let mut on_run = |p: remeasure::Progress<'_>| {
        on_progress(Progress::RunFinished {
            arm: if p.arm == 0 { 'A' } else { 'B' },
            pair: p.round,
            output_tok_per_s: p.run.summary.output_tok_per_s,
            ttft_p50_ms: p.run.summary.ttft_ms.p50,
        })
    };
    let runs = remeasure::interleaved(&space, &arms, pairs, &Shutdown::manual(), &mut on_run).await?;
    let runs: [Vec<remeasure::ArmRun>; 2] = runs.try_into().expect("two arms measured");
    let arms = runs.map(|r| ArmRuns {
        tok_per_s: r.iter().map(|run| run.summary.output_tok_per_s).collect(),
        samples: r.into_iter().map(|run| run.samples).collect(),
    });
    Ok(CompareReport { a: opts.a.to_string(), b: opts.b.to_string(), pairs, rows: rows(&arms, space.seed) })
}

fn rows(arms: &[ArmRuns; 2], seed: u64) -> Vec<Row> {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let per_request = |arm: &ArmRuns, f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<Vec<f64>> {
        arm.samples.iter().map(|run| run.iter().filter_map(f).collect()).collect()
    };
    type Extract = Box<dyn Fn(&Sample) -> Option<f64>>;
    let latency: [(Metric, &'static str, Extract); 3] = [
        (Metric::TtftP50Ms, "median ttft over pooled requests", Box::new(move |s: &Sample| s.ttft().map(ms))),
        (Metric::TpotP50Ms, "median tpot over pooled requests", Box::new(move |s: &Sample| s.tpot().map(ms))),
        (Metric::E2eP50Ms, "median e2e over pooled requests", Box::new(move |s: &Sample| Some(ms(s.e2e())))),
    ];
    let better = |m: Metric| m.better().expect("compared metrics are latencies or rates");
    let mut out = Vec::new();
    for (metric, definition, f) in latency {
        let (a, b) = (per_request(&arms[0], &*f), per_request(&arms[1], &*f));
        let ci = ratio::ratio_ci(&a, &b, ratio::median, seed);
        let pooled = |r: &Vec<Vec<f64>>| ratio::median(&r.iter().flatten().copied().collect::<Vec<_>>());
        out.push(Row {
            metric,
            definition,
            better: better(metric),
            a: pooled(&a),
            b: pooled(&b),
            call: ci.call(better(metric)),
            ci,
        });
    }
    let ci = ratio::paired_ratio_ci(&arms[0].tok_per_s, &arms[1].tok_per_s);
    out.push(Row {
        metric: Metric::OutputTokPerS,
        definition: "per-run output tokens / measured wall time; ratio = geometric mean of pair ratios, Student-t CI",
        better: better(Metric::OutputTokPerS),
        a: ratio::mean(&arms[0].tok_per_s),
        b: ratio::mean(&arms[1].tok_per_s),
        call: ci.call(better(Metric::OutputTokPerS)),
        ci,
    });
    out
}
