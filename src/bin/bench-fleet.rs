//! Search quality of a shared study (issue 18): tpe with 4 workers against tpe alone, at equal
//! trial counts, on the synthetic and the recorded landscapes (`scripts/bench-fleet` runs it
//! after the trials-per-hour figures).
//!
//! A fleet run is simulated as the workers run it: each proposal comes from
//! `daemon::worker::propose` (the strategy rebuilt from the stored trials, every running trial
//! pending), up to `--workers` trials are in flight, and they finish in the order they started
//! (equal durations). `sequential` is one strategy kept across trials, as `tune` runs it (the
//! `tpe` row of `scripts/bench-search`); `1 worker` is the fleet path with one worker. Each seed
//! observes one of a point's recorded runs; truth and observations are kept apart (truth = run
//! 1, observations = the others: one fixed cut, the same for both rows, where bench-search cuts
//! per seed; the synthetic landscapes: the noise-free values, observed noise-free or with seeded
//! noise). Prints the share of seeds
//! whose incumbent is within 5 % of the optimum at 20, 40 and 60 trials.

use std::collections::VecDeque;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use rand::SeedableRng;
use rand::rngs::StdRng;

use infertune::daemon::worker;
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

/// A row of the table: its name and how one seed runs (space with the seed set, seed).
type Row<'a> = (String, Box<dyn Fn(&Space, u64) -> Steps + 'a>);

/// One strategy across all trials (`tune` on SQLite).
fn sequential(observed: &Landscape, space: &Space, seed: u64, budget: usize) -> Steps {
    let mut strategy: Box<dyn Strategy> = search::from_space(space);
    let mut answers = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xbe4c);
    let mut steps = Vec::new();
    for n in 1..=budget {
        let Some(c) = strategy.propose(space) else { break };
        let point = observed.point(&c).expect("a grid point");
        let run = rand::RngExt::random_range(&mut answers, 0..point.runs.len());
        strategy.observe(&Landscape::trial(n as i64, &c, &point.runs[run]));
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

/// (observed, truth) for each landscape: a recording's run 1 is the truth (one fixed cut).
fn landscapes(args: &Args) -> Result<Vec<(Landscape, Landscape)>> {
    let mut out = vec![
        (Landscape::synthetic(), Landscape::synthetic()),
        (Landscape::synthetic_noisy(32, 15), Landscape::synthetic()),
    ];
    for path in &args.landscapes {
        let mut l = Landscape::load(path)?;
        if l.optimum(l.space()?.objective.direction).is_none() {
            println!("note: no point of '{}' met its SLOs; compared on the objective alone", l.name);
            l = l.without_slos();
        }
        let runs = l.points.iter().map(|p| p.runs.len()).min().unwrap_or(0);
        out.push(match runs {
            0 | 1 => (l.clone(), l),
            _ => (l.with_runs(|i| i > 0), l.with_runs(|i| i == 0)),
        });
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!("{:<22} {:<12} {:>6} {:>6} {:>6}", "landscape", "tpe", "@20", "@40", "@60");
    let mut worst_gap = f64::NEG_INFINITY;
    for (observed, truth) in landscapes(&args)? {
        let mut space = observed.space()?;
        space.strategy = StrategyKind::Tpe;
        let optimum = truth.optimum(space.objective.direction).context("no feasible point")?;
        let rows: [Row; 3] = [
            ("sequential".into(), Box::new(|s, seed| sequential(&observed, s, seed, 60))),
            ("1 worker".into(), Box::new(|s, seed| fleet(&observed, s, seed, 60, 1))),
            (format!("{} workers", args.workers), Box::new(|s, seed| fleet(&observed, s, seed, 60, args.workers))),
        ];
        let mut at60 = Vec::new();
        for (name, run) in &rows {
            let runs: Vec<Steps> = (0..args.seeds)
                .map(|seed| {
                    let mut s = space.clone();
                    s.seed = seed;
                    run(&s, seed)
                })
                .collect();
            let shares: Vec<f64> = CHECKPOINTS
                .iter()
                .map(|&k| {
                    let hit = runs.iter().filter(|r| within_at(&observed, &truth, r, k, optimum)).count();
                    hit as f64 / runs.len() as f64
                })
                .collect();
            println!("{:<22} {:<12} {:>6.2} {:>6.2} {:>6.2}", observed.name, name, shares[0], shares[1], shares[2]);
            at60.push(shares[2]);
        }
        worst_gap = worst_gap.max(at60[0] - at60[2]);
    }
    println!(
        "summary: largest drop of the {}-worker share within 5 % at 60 trials below sequential: {worst_gap:.2} (target <= 0.05)",
        args.workers
    );
    Ok(())
}
