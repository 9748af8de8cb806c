//! Warm-start benchmark (issue 19): does a re-tune primed with a related study's trials reach
//! within 5 % of the optimum in fewer trials than a cold start? Entry point:
//! `scripts/bench-warmstart`.
//!
//! The old study is `tpe` on the noisy synthetic landscape (`Landscape::synthetic_noisy`,
//! `PRIOR_TRIALS` trials). The environment then changes: the new landscape is the synthetic one
//! shifted (contention sets in earlier, so the best slot count moves from about 11 to about 7, and
//! the q8_0 KV cache loses its small edge), measured with fresh noise. A cold start runs `tpe` on
//! it; a warm start does what `watch --retune` does: the old study's 5 best configurations (by
//! what it observed) are measured first, and `tpe` is primed with every old trial through
//! `Strategy::observe_prior` at `search::PRIOR_WEIGHT`.
//!
//! Truth is kept apart from what the methods see: both observe noisy runs; the incumbent (best
//! by observed value) is judged by the shifted noise-free landscape's value, against its optimum.

use std::collections::VecDeque;

use anyhow::Result;
use rand::SeedableRng;
use rand::rngs::StdRng;

use infertune::search::landscape::{Landscape, Point};
use infertune::search::{self, Strategy};
use infertune::space::{Candidate, Direction, Space, StrategyKind, Value};
use infertune::trial::Trial;

/// Trials of the old study.
const PRIOR_TRIALS: usize = 40;
/// Trials of each re-tune.
const BUDGET: usize = 100;
/// Old configurations measured first by a warm start (as `daemon::warm_start`).
const SEEDS: usize = 5;

#[derive(clap::Parser)]
#[command(name = "bench-warmstart")]
struct Args {
    /// Seeds (each: an old study, then a cold and a warm re-tune)
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// How the output names the command that produced it
    #[arg(long, default_value = "bench-warmstart")]
    label: String,
    /// Scale of the new environment's contention: throughput × e^(−s/SCALE) / e^(−s/11) for s
    /// slots (7: the best slot count moves from ~11 to ~7; 16: to ~16)
    #[arg(long, default_value_t = 7.0, value_name = "SCALE")]
    slots_scale: f64,
    /// Weight of each prior trial [default: search::PRIOR_WEIGHT, what `watch --retune` uses]
    #[arg(long, value_name = "W")]
    prior_weight: Option<f64>,
}

/// The shift of the environment: throughput × e^(−s/scale) / e^(−s/11) for s slots (with scale
/// 7 the best slot count moves from ~11 to ~7), × 0.97 with a q8_0 KV cache.
fn shift_factor(params: &Candidate, scale: f64) -> f64 {
    let slots = match params.get("slots") {
        Some(Value::Int(s)) => *s as f64,
        _ => 1.0,
    };
    let kv = if params.get("kv_cache") == Some(&Value::Str("q8_0".into())) { 0.97 } else { 1.0 };
    (-slots / scale).exp() / (-slots / 11.0).exp() * kv
}

fn shifted(l: &Landscape, name: &str, scale: f64) -> Landscape {
    let points = l
        .points
        .iter()
        .map(|p| {
            let f = shift_factor(&p.params, scale);
            let runs = p
                .runs
                .iter()
                .map(|r| infertune::search::landscape::Run { objective: r.objective.map(|v| v * f), ..r.clone() });
            Point { params: p.params.clone(), runs: runs.collect() }
        })
        .collect();
    Landscape::new(name, &l.space_toml, points)
}

/// Run `strategy` on `observed` for `budget` trials, `first` measured before it proposes;
/// returns the trials as observed.
fn run(
    observed: &Landscape,
    space: &Space,
    mut strategy: Box<dyn Strategy>,
    first: Vec<Candidate>,
    budget: usize,
    seed: u64,
) -> Vec<Trial> {
    let mut answers = StdRng::seed_from_u64(seed ^ 0x5eed_a115);
    let mut queue: VecDeque<Candidate> = first.into();
    let mut trials = Vec::new();
    for n in 1..=budget {
        let Some(c) = queue.pop_front().or_else(|| strategy.propose(space)) else { break };
        let run = observed.answer(&c, &mut answers).expect("grid points of the landscape");
        let t = Landscape::trial(n as i64, &c, run);
        strategy.observe(&t);
        trials.push(t);
    }
    trials
}

/// Trials until the incumbent (best observed, feasible) is within 5 % of the optimum by truth.
fn needed(trials: &[Trial], truth: &Landscape, optimum: f64) -> Option<usize> {
    let mut best: Option<(f64, f64)> = None;
    for (i, t) in trials.iter().enumerate() {
        if t.violation == Some(0.0)
            && let Some(v) = t.objective
            && best.is_none_or(|(b, _)| v > b)
        {
            best = Some((v, truth.true_value(&t.params).unwrap_or(f64::NEG_INFINITY)));
        }
        if best.is_some_and(|(_, truth)| truth >= 0.95 * optimum) {
            return Some(i + 1);
        }
    }
    None
}

/// The old study's `n` best configurations by observed value (feasible first).
fn top(trials: &[Trial], n: usize) -> Vec<Candidate> {
    let mut ranked: Vec<&Trial> = trials.iter().filter(|t| t.violation.is_some()).collect();
    ranked.sort_by(|a, b| {
        let (va, vb) = (a.violation.unwrap_or(f64::MAX), b.violation.unwrap_or(f64::MAX));
        va.total_cmp(&vb).then(b.objective.unwrap_or(f64::MIN).total_cmp(&a.objective.unwrap_or(f64::MIN)))
    });
    let mut out: Vec<Candidate> = Vec::new();
    for t in ranked {
        if out.len() < n && !out.contains(&t.params) {
            out.push(t.params.clone());
        }
    }
    out
}

/// Median, counting a run that never got within 5 % as worse than every run that did.
fn median(values: &[Option<usize>]) -> String {
    let mut v: Vec<usize> = values.iter().map(|x| x.unwrap_or(usize::MAX)).collect();
    v.sort_unstable();
    match v[v.len() / 2] {
        usize::MAX => format!("> {BUDGET}"),
        m if v.len() % 2 == 1 => m.to_string(),
        m => match v[v.len() / 2 - 1] {
            usize::MAX => format!("> {BUDGET}"),
            l => format!("{}", (l + m) as f64 / 2.0),
        },
    }
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let old_observed = Landscape::synthetic_noisy(32, 15);
    let truth = shifted(&Landscape::synthetic(), "synthetic-shifted", args.slots_scale);
    let observed = shifted(&Landscape::synthetic_noisy(32, 16), "synthetic-shifted-noisy", args.slots_scale);
    let mut space = truth.space()?;
    space.strategy = StrategyKind::Tpe;
    let optimum = truth.optimum(Direction::Maximize).expect("feasible points");
    let old_best = Landscape::synthetic()
        .points
        .iter()
        .max_by(|a, b| {
            let v = |p: &Point| Landscape::synthetic().true_value(&p.params).unwrap_or(f64::MIN);
            v(a).total_cmp(&v(b))
        })
        .map(|p| p.params.clone())
        .expect("points");
    println!("{}   # {}", args.label, jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"));
    println!(
        "old study: tpe, {PRIOR_TRIALS} trials on synthetic-noisy; new environment: synthetic shifted (throughput x e^(-slots/{}) / e^(-slots/11), q8_0 KV x 0.97), fresh noise",
        args.slots_scale
    );
    println!(
        "the old optimum {} is at {:.1} % of the new optimum",
        old_best.brief(),
        100.0 * truth.true_value(&old_best).unwrap_or(f64::NAN) / optimum
    );
    let weight = args.prior_weight.unwrap_or(search::PRIOR_WEIGHT);
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for seed in 0..args.seeds {
        let mut s = space.clone();
        s.seed = seed;
        let prior = run(&old_observed, &s, search::from_space(&s), Vec::new(), PRIOR_TRIALS, seed + 1000);
        cold.push(needed(&run(&observed, &s, search::from_space(&s), Vec::new(), BUDGET, seed), &truth, optimum));
        let mut primed = search::from_space(&s);
        for t in &prior {
            primed.observe_prior(t, weight);
        }
        warm.push(needed(&run(&observed, &s, primed, top(&prior, SEEDS), BUDGET, seed), &truth, optimum));
    }
    let share = |v: &[Option<usize>], k: usize| {
        100.0 * v.iter().filter(|x| x.is_some_and(|n| n <= k)).count() as f64 / v.len() as f64
    };
    println!(
        "{:<34} {:>22} {:>8} {:>8} {:>8}",
        "re-tune (tpe, budget 100)", "median trials to 5 %", "<= 10", "<= 20", "<= 40"
    );
    for (name, v) in [("cold start", &cold), (&*format!("warm start (prior weight {weight})"), &warm)] {
        println!("{name:<34} {:>22} {:>7.0}% {:>7.0}% {:>7.0}%", median(v), share(v, 10), share(v, 20), share(v, 40));
    }
    let wins = cold.iter().zip(&warm).filter(|(c, w)| w.unwrap_or(usize::MAX) < c.unwrap_or(usize::MAX)).count();
    println!("seeds: {}; warm start needed fewer trials than cold in {wins} of them", args.seeds);
    Ok(())
}
