//! Search quality of a shared study (issue 18): tpe with 4 workers against tpe alone, at equal
//! trial counts, on the synthetic and the recorded landscapes (`scripts/bench-fleet` runs it
//! after the trials-per-hour figures).
//!
//! A fleet run is simulated as the workers run it: each proposal comes from
//! `daemon::worker::propose` (the strategy rebuilt from the stored trials, every running trial
//! pending), up to `--workers` trials are in flight, and they finish in the order they started
//! (equal durations). `sequential` is one strategy kept across trials, what runs next decided as
//! `tune` decides it (`intensify::next`, as the workers do); `1 worker` is the fleet path with
//! one worker. Every row names the best observed trial meeting every SLO. Truth and
//! observations are kept apart: on a recording each seed cuts every point's runs as bench-search
//! does (`Landscape::split`: half, rounded up, define the truth, the rest are observed), the same
//! cut for every row of that seed, and each seed is judged against its own truth's optimum; the
//! synthetic landscapes: the noise-free values, observed noise-free or with seeded noise. Prints
//! the share of seeds whose incumbent is within 5 % of the optimum at 20, 40 and 60 trials.

use std::collections::VecDeque;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use rand::SeedableRng;
use rand::rngs::StdRng;

use infertune::daemon::{intensify, worker};
use infertune::search::landscape::Landscape;
use infertune::search::{self, Strategy};
use infertune::space::{Candidate, Direction, Space, StrategyKind};
use infertune::trial::{Trial, TrialState};

const CHECKPOINTS: [usize; 3] = [20, 40, 60];

#[derive(Parser)]
#[command(name = "bench-fleet")]
struct Args {
    /// Seeds per row
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// Workers of the fleet row
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Recorded landscapes (JSON); the synthetic ones always run
    #[arg(value_name = "LANDSCAPE.json")]
    landscapes: Vec<PathBuf>,
}

/// Each trial's candidate and the index of the observed run, in the order trials finished.
type Steps = Vec<(Candidate, usize)>;

/// A row of the table: its name and how one seed runs (what it observes, space with the seed
/// set, seed).
type Row = (String, Box<dyn Fn(&Landscape, &Space, u64) -> Steps>);

/// One strategy across all trials, what runs next decided as `tune` decides it
/// (`intensify::next`: a re-measure, else the strategy's proposal), one trial at a time.
fn sequential(observed: &Landscape, space: &Space, seed: u64, budget: usize) -> Steps {
    let mut strategy: Box<dyn Strategy> = search::from_space(space);
    let mut answers = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xbe4c);
    let mut trials: Vec<Trial> = Vec::new();
    let mut steps = Vec::new();
    for n in 1..=budget {
        let Some(next) = intensify::next(&trials, strategy.as_mut(), space, &[]) else { break };
        let c = next.candidate;
        let point = observed.point(&c).expect("a grid point");
        let run = rand::RngExt::random_range(&mut answers, 0..point.runs.len());
        let trial = Landscape::trial(n as i64, &c, &point.runs[run]);
        strategy.observe(&trial);
        trials.push(trial);
        steps.push((c, run));
    }
    steps
}

/// `workers` workers claiming through `worker::propose`, trials finishing in start order.
fn fleet(observed: &Landscape, space: &Space, seed: u64, budget: usize, workers: usize) -> Steps {
    let mut answers = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xbe4c);
    let mut trials: Vec<Trial> = Vec::new();
    let mut in_flight: VecDeque<usize> = VecDeque::new();
    let mut steps = Vec::new();
    while steps.len() < budget {
        while in_flight.len() < workers && steps.len() + in_flight.len() < budget {
            let Some(c) = worker::propose(&trials, space) else { break };
            let point = observed.point(&c).expect("a grid point");
            let mut running = Landscape::trial(trials.len() as i64 + 1, &c, &point.runs[0]);
            (running.state, running.objective, running.violation, running.summary) =
                (TrialState::Running, None, None, None);
            trials.push(running);
            in_flight.push_back(trials.len() - 1);
        }
        let Some(i) = in_flight.pop_front() else { break };
        let c = trials[i].params.clone();
        let point = observed.point(&c).expect("a grid point");
        let run = rand::RngExt::random_range(&mut answers, 0..point.runs.len());
        trials[i] = Landscape::trial(trials[i].number, &c, &point.runs[run]);
        steps.push((c, run));
    }
    steps
}

fn is_better(direction: Direction, a: f64, b: f64) -> bool {
    match direction {
        Direction::Maximize => a > b,
        Direction::Minimize => a < b,
    }
}

/// Whether the incumbent after `k` trials (best observed feasible) is within 5 % of the optimum
/// by its true value.
fn within_at(observed: &Landscape, truth: &Landscape, steps: &Steps, k: usize, optimum: f64) -> bool {
    let direction = truth.space().map(|s| s.objective.direction).unwrap_or(Direction::Maximize);
    let mut best: Option<(f64, Option<f64>)> = None;
    for (c, run) in steps.iter().take(k) {
        if let Some(r) = observed.point(c).and_then(|p| p.runs.get(*run))
            && r.violation == 0.0
            && let Some(v) = r.objective
            && best.is_none_or(|(b, _)| is_better(direction, v, b))
        {
            best = Some((v, truth.true_value(c)));
        }
    }
    best.and_then(|(_, t)| t).is_some_and(|v| match direction {
        Direction::Maximize => v >= 0.95 * optimum,
        Direction::Minimize => v <= 1.05 * optimum,
    })
}

/// A landscape as the benchmark plays it: its name and its space, and per seed what the
/// strategies observe and the truth they are judged by.
struct Source {
    name: String,
    space: Space,
    /// Seed -> (observed, truth).
    cut: Box<dyn Fn(u64) -> (Landscape, Landscape)>,
}

/// The synthetic landscapes (truth: the noise-free values) and the recordings (cut per seed by
/// `Landscape::split`, which gives a point's only run to both sides).
fn sources(args: &Args) -> Result<Vec<Source>> {
    let generated = |observed: Landscape| -> Result<Source> {
        let (name, space) = (observed.name.clone(), observed.space()?);
        Ok(Source { name, space, cut: Box::new(move |_| (observed.clone(), Landscape::synthetic())) })
    };
    let mut out = vec![generated(Landscape::synthetic())?, generated(Landscape::synthetic_noisy(32, 15))?];
    for path in &args.landscapes {
        let mut l = Landscape::load(path)?;
        if l.optimum(l.space()?.objective.direction).is_none() {
            println!("note: no point of '{}' met its SLOs; compared on the objective alone", l.name);
            l = l.without_slos();
        }
        let (name, space) = (l.name.clone(), l.space()?);
        let cut = Box::new(move |seed| {
            let (truth, observed) = l.split(seed);
            (observed, truth)
        });
        out.push(Source { name, space, cut });
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!("{:<22} {:<12} {:>6} {:>6} {:>6}", "landscape", "tpe", "@20", "@40", "@60");
    let mut worst_gap = f64::NEG_INFINITY;
    for source in sources(&args)? {
        let mut space = source.space.clone();
        space.strategy = StrategyKind::Tpe;
        let workers = args.workers;
        let rows: [Row; 3] = [
            ("sequential".into(), Box::new(|o, s, seed| sequential(o, s, seed, 60))),
            ("1 worker".into(), Box::new(|o, s, seed| fleet(o, s, seed, 60, 1))),
            (format!("{workers} workers"), Box::new(move |o, s, seed| fleet(o, s, seed, 60, workers))),
        ];
        // hits[row][checkpoint]
        let mut hits = [[0usize; CHECKPOINTS.len()]; 3];
        let mut judged = 0usize;
        for seed in 0..args.seeds {
            let (observed, truth) = (source.cut)(seed);
            let Some(optimum) = truth.optimum(space.objective.direction) else { continue };
            judged += 1;
            let mut s = space.clone();
            s.seed = seed;
            for ((_, run), row_hits) in rows.iter().zip(hits.iter_mut()) {
                let steps = run(&observed, &s, seed);
                for (&k, hit) in CHECKPOINTS.iter().zip(row_hits.iter_mut()) {
                    *hit += usize::from(within_at(&observed, &truth, &steps, k, optimum));
                }
            }
        }
        if judged == 0 {
            anyhow::bail!("no seed's truth of '{}' has a feasible point", source.name);
        }
        if judged < args.seeds as usize {
            println!(
                "note: {} of {} seeds of '{}' have no feasible point in their truth",
                args.seeds as usize - judged,
                args.seeds,
                source.name
            );
        }
        let shares: Vec<[f64; 3]> = hits.iter().map(|h| h.map(|n| n as f64 / judged as f64)).collect();
        for ((name, _), share) in rows.iter().zip(&shares) {
            println!("{:<22} {:<12} {:>6.2} {:>6.2} {:>6.2}", source.name, name, share[0], share[1], share[2]);
        }
        worst_gap = worst_gap.max(shares[0][2] - shares[2][2]);
    }
    println!(
        "summary: largest drop of the {}-worker share within 5 % at 60 trials below sequential: {worst_gap:.2} (target <= 0.05)",
        args.workers
    );
    Ok(())
}
