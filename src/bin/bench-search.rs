//! Search benchmark: runs grid, random, anneal and tpe (and Optuna's TPE through
//! `scripts/optuna_adapter.py`, when a Python with optuna is given) over each landscape for
//! many seeds, and prints the share of seeds whose incumbent is within 5 % of the grid optimum
//! at 20/40/60/100 trials, the median trials needed, and the time `tpe` takes to propose at
//! 200 trials. Entry point: `scripts/bench-search`.
//!
//! The incumbent is the best trial by *observed* values (what a tuner without re-validation
//! would name); it is judged by the point's *true* value, so noise that makes a worse point look
//! best counts against the strategy. The `/validated` rows judge the same runs by the winner
//! infertune names at the end of a study: its top 3 trials re-measured 3 times each and picked
//! as `validate` does.
//!
//! Truth and observations never share a run. On a recording, each seed cuts every point's runs
//! in two at random ([`Landscape::split`]): half of them, rounded up, define the point's true value
//! (their mean; feasible when each met every SLO) and every observation and re-measurement is
//! drawn from the rest (with two or three runs a point, one is observed: re-measuring repeats
//! it, so `/validated` can only re-rank by it). The optimum, and "within 5 %", are that seed's truth's:
//! over many seeds the figures do not hang on the luck of one cut. A recording with one run a
//! point has no `/validated` rows. `synthetic-noisy` knows its true values (the noise-free
//! synthetic landscape) and draws every measurement with its own noise.
//!
//! Each landscape's `all-runs` line is a reference, not a strategy: the share of seeds where the
//! point with the best mean over *every* observed run of *every* point (feasible in each) is
//! within 5 % of the optimum. No budget limits it. Where it is low, the observations point away
//! from the truth's optimum (a point that missed an SLO in one run of several is feasible on one
//! side of a cut only), and a row above it owes that to what it did not measure.
//!
//! The `/intensified` rows run each strategy as the daemon does (issue 16): what runs next is
//! `daemon::intensify::next` (a re-measure of the challenger or the incumbent, else the
//! strategy's proposal), every re-measure is a fresh draw that costs a trial, and the row is
//! judged by the configuration the study names after each trial (`trial::winner`), by its true
//! value. There the `repeat%` column is the share of trials spent on re-measures.
//!
//! `found@60` is the share of seeds that measured a point within 5 % of the optimum (by its
//! true value) in their first 60 trials: the search's part, what a perfect naming of those
//! trials would reach; the @60 column beside it is what the row's naming made of them.
//!
//! Every strategy plays by [`RULES`]: the same trial accounting for ours and Optuna's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;

use infertune::daemon::intensify;
use infertune::daemon::validate::pick_winner;
use infertune::search::landscape::{Draws, Landscape, Run};
use infertune::search::{self, Strategy};
use infertune::space::{Candidate, Direction, Space, StrategyKind};
use infertune::trial::{self, Trial};

const CHECKPOINTS: [usize; 4] = [20, 40, 60, 100];
const BUDGET: usize = 100;

/// The trial accounting every strategy, ours and Optuna's, is held to (printed with the table).
const RULES: &str = "every proposal is one trial, for every strategy; a repeated point is measured \
again (its next observed run, in an order drawn per point and seed: a different run while one remains) and costs a \
trial like any other; a point the backend \
refuses before launch (the same plan check for all strategies) costs no trial for anybody: it is \
told to the strategy as infeasible and the strategy proposes again";

/// Noisy runs drawn per point of `synthetic-noisy`, and their seed.
const NOISY_DRAWS: usize = 32;
const NOISY_SEED: u64 = 15;

/// One seed's view of a landscape: the runs its strategies observe (and re-measure), the runs
/// that define each point's true value, kept apart, and the optimum of that truth.
struct Seeded {
    observed: Rc<Landscape>,
    truth: Rc<Landscape>,
    optimum: f64,
}

impl Seeded {
    fn new(observed: Rc<Landscape>, truth: Rc<Landscape>, direction: Direction) -> Result<Seeded> {
        let optimum = truth.optimum(direction).with_context(|| format!("'{}' has no feasible point", truth.name))?;
        Ok(Seeded { observed, truth, optimum })
    }

    /// The point's true value as a share of the optimum (what [`within`] judges); `None` when
    /// it is truly infeasible.
    fn relative(&self, c: &Candidate) -> Option<f64> {
        self.truth.true_value(c).map(|v| v / self.optimum)
    }
}

/// A landscape as the benchmark plays it: one [`Seeded`] view per seed.
struct Bench {
    /// The whole landscape (name, space, provenance, the points refused before launch).
    source: Rc<Landscape>,
    direction: Direction,
    /// Seed `s` plays `seeds[s]`.
    seeds: Vec<Seeded>,
    /// Whether `/validated` rows can be graded without re-using the truth's runs.
    validated: bool,
    /// How truth and observations were separated, for the output.
    note: String,
}

impl Bench {
    fn name(&self) -> &str {
        &self.source.name
    }

    /// A generated landscape: every seed observes `observed` and is judged by `truth`.
    fn generated(observed: Landscape, truth: Landscape, seeds: u64, note: String) -> Result<Bench> {
        let direction = observed.space()?.objective.direction;
        let (observed, truth) = (Rc::new(observed), Rc::new(truth));
        let seeds =
            (0..seeds).map(|_| Seeded::new(observed.clone(), truth.clone(), direction)).collect::<Result<_>>()?;
        Ok(Bench { source: observed, direction, seeds, validated: true, note })
    }

    /// A recording: each seed cuts every point's runs in two ([`Landscape::split`]), truth and
    /// observations.
    fn recorded(l: Landscape, seeds: u64) -> Result<Bench> {
        let direction = l.space()?.objective.direction;
        // Points refused before launch keep their recorded infeasible runs whatever the count.
        let ran = |p: &&infertune::search::landscape::Point| p.runs.iter().any(|r| r.objective.is_some());
        let counts: Vec<usize> = l.points.iter().filter(ran).map(|p| p.runs.len()).collect();
        let (fewest, most) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
        let l = Rc::new(l);
        if fewest < 2 {
            let note = format!(
                "{fewest} run per point: truth and observations are the same run (no noise to be fooled by), no /validated rows"
            );
            let seeds = (0..seeds).map(|_| Seeded::new(l.clone(), l.clone(), direction)).collect::<Result<_>>()?;
            return Ok(Bench { source: l, direction, seeds, validated: false, note });
        }
        let runs = if fewest == most { fewest.to_string() } else { format!("{fewest} to {most}") };
        let note = format!(
            "{runs} runs a point, cut at random per point and seed: half (rounded up) define its truth (their mean; feasible when each met every SLO), the rest are observed and re-measured{}; each seed is judged against its own truth's optimum",
            if fewest / 2 == 1 { " (with one observed run a point, a re-measurement repeats it)" } else { "" }
        );
        let seeds = (0..seeds)
            .map(|s| {
                let (truth, observed) = l.split(s);
                Seeded::new(Rc::new(observed), Rc::new(truth), direction)
            })
            .collect::<Result<_>>()?;
        Ok(Bench { source: l, direction, seeds, validated: true, note })
    }
}

/// Search benchmark over recorded landscapes: grid, random, anneal, tpe (and Optuna's TPE when
/// a Python with optuna is given); prints the share of seeds within 5 % of the grid optimum.
#[derive(clap::Parser)]
#[command(name = "bench-search")]
struct Args {
    /// Seeds per strategy (grid runs once: it is deterministic).
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// A Python with optuna installed; Optuna's TPE is compared only when given.
    #[arg(long = "optuna-python", value_name = "PY")]
    python: Option<PathBuf>,
    /// The script that runs Optuna's TPE over a landscape.
    #[arg(long, value_name = "FILE", default_value = "scripts/optuna_adapter.py")]
    adapter: PathBuf,
    /// How the table names the command that produced it (first line of the output).
    #[arg(long, default_value = "bench-search")]
    label: String,
    /// Recorded landscapes (JSON); the synthetic landscapes always run.
    #[arg(value_name = "LANDSCAPE.json")]
    landscapes: Vec<PathBuf>,
}

/// One seed's run: the true value of the incumbent after each trial, as a share of the optimum
/// (`None` while no trial has been observed feasible, or when the incumbent is truly infeasible).
type Trace = Vec<Option<f64>>;

/// One seed's run as it happened: each trial's candidate and the recorded run it observed.
type Steps = Vec<(Candidate, usize)>;

fn is_better(direction: Direction, a: f64, b: f64) -> bool {
    match direction {
        Direction::Maximize => a > b,
        Direction::Minimize => a < b,
    }
}

/// Incumbent trace for a sequence of (candidate, observed run index), judged by the truth.
fn trace(bench: &Seeded, direction: Direction, steps: &[(Candidate, usize)]) -> Trace {
    let mut best: Option<(f64, Option<f64>)> = None;
    steps
        .iter()
        .map(|(c, run)| {
            if let Some(r) = bench.observed.point(c).and_then(|p| p.runs.get(*run))
                && r.violation == 0.0
                && let Some(v) = r.objective
                && best.is_none_or(|(b, _)| is_better(direction, v, b))
            {
                best = Some((v, bench.relative(c)));
            }
            best.and_then(|(_, t)| t)
        })
        .collect()
}

/// Re-measures per candidate when naming the winner, as the overnight spaces' `validate_pairs`.
const VALIDATE_PAIRS: usize = 3;
/// Candidates re-measured, as `validate_top`.
const VALIDATE_TOP: usize = 3;

/// Incumbent trace as the tool names its winner at the end of a study: after each trial, the
/// `VALIDATE_TOP` best distinct feasible points by observed value are measured
/// `VALIDATE_PAIRS` more times (runs drawn from the observed runs, never the truth's), and the
/// winner is picked as `validate` does (fewest SLO misses, then the confidence bound). Judged
/// by true value.
fn trace_validated(bench: &Seeded, direction: Direction, steps: &[(Candidate, usize)], seed: u64) -> Trace {
    let landscape = &bench.observed;
    let mut observed: Vec<(f64, &Candidate)> = Vec::new();
    (0..steps.len())
        .map(|k| {
            let (c, run) = &steps[k];
            if let Some(r) = landscape.point(c).and_then(|p| p.runs.get(*run))
                && r.violation == 0.0
                && let Some(v) = r.objective
                && !observed.iter().any(|(_, o)| *o == c)
            {
                observed.push((v, c));
            }
            let mut top = observed.clone();
            top.sort_by(|a, b| {
                if is_better(direction, a.0, b.0) { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater }
            });
            top.truncate(VALIDATE_TOP);
            if top.is_empty() {
                return None;
            }
            let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ k as u64);
            let (mut values, mut misses) = (Vec::new(), Vec::new());
            for (_, c) in &top {
                let p = landscape.point(c).expect("a grid point");
                let runs: Vec<&Run> = (0..VALIDATE_PAIRS)
                    .map(|_| &p.runs[rand::RngExt::random_range(&mut rng, 0..p.runs.len())])
                    .collect();
                values.push(runs.iter().map(|r| r.objective.unwrap_or(0.0)).collect::<Vec<f64>>());
                misses.push(runs.iter().filter(|r| r.violation > 0.0).count());
            }
            bench.relative(top[pick_winner(&values, &misses, direction)].1)
        })
        .collect()
}

/// The next measurement of `c` in one seed's study (a different recorded run while one remains,
/// [`Draws`]); Optuna's adapter draws by the same rule.
fn draw<'l>(draws: &mut Draws, landscape: &'l Landscape, c: &Candidate) -> (usize, &'l Run) {
    draws.next(landscape, c).expect("strategies propose grid points of the landscape's space")
}

fn run_strategy(landscape: &Landscape, space: &Space, kind: StrategyKind, seed: u64, budget: usize) -> Steps {
    let mut space = space.clone();
    space.seed = seed;
    space.strategy = kind;
    let mut strategy: Box<dyn Strategy> = search::from_space(&space);
    let mut draws = Draws::new(seed);
    let mut steps = Vec::new();
    for n in 1..=budget {
        let Some(c) = strategy.propose(&space) else { break };
        let (run_idx, run) = draw(&mut draws, landscape, &c);
        strategy.observe(&Landscape::trial(n as i64, &c, run));
        steps.push((c, run_idx));
    }
    steps
}

/// One seed's study as the daemon runs it with intensification (issue 16): each trial is what
/// `intensify::next` picks (a re-measure of the challenger or the incumbent, else the strategy's
/// proposal), every re-measure is a fresh draw of the point's observed runs and costs a trial.
/// Returns the trials (each a draw from the observed runs) and the steps for `repeat_share`.
fn run_intensified(
    landscape: &Landscape,
    space: &Space,
    kind: StrategyKind,
    seed: u64,
    budget: usize,
) -> (Vec<Trial>, Steps) {
    let mut space = space.clone();
    space.seed = seed;
    space.strategy = kind;
    let mut strategy: Box<dyn Strategy> = search::from_space(&space);
    let mut draws = Draws::new(seed);
    let (mut trials, mut steps) = (Vec::new(), Vec::new());
    for n in 1..=budget {
        let Some(next) = intensify::next(&trials, strategy.as_mut(), &space, &[]) else { break };
        let (run_idx, run) = draw(&mut draws, landscape, &next.candidate);
        let mut t = Landscape::trial(n as i64, &next.candidate, run);
        t.purpose = next.purpose;
        strategy.observe(&t);
        trials.push(t);
        steps.push((next.candidate, run_idx));
    }
    (trials, steps)
}

/// The winner the study names after each trial (`trial::winner`: the intensified incumbent),
/// judged by its true value.
fn trace_named(bench: &Seeded, direction: Direction, trials: &[Trial]) -> Trace {
    (1..=trials.len())
        .map(|k| {
            let w = trial::winner(&trials[..k], direction, None).filter(|w| w.feasible)?;
            bench.relative(&w.trial.params)
        })
        .collect()
}

/// Share of trials (over all seeds) that re-measured a point for intensification.
fn intensify_share(runs: &[Vec<Trial>]) -> f64 {
    let all: usize = runs.iter().map(Vec::len).sum();
    let re = runs.iter().flatten().filter(|t| t.purpose == trial::Purpose::Intensify).count();
    100.0 * re as f64 / all.max(1) as f64
}

/// The space with `c` as every parameter's default: tpe's first trial and anneal's start.
fn with_default(space: &Space, c: &Candidate) -> Space {
    let mut space = space.clone();
    for p in &mut space.params {
        p.default = c.get(&p.name).cloned();
    }
    space
}

/// A default for seed `seed`, drawn uniformly from the points that ran at least once.
fn random_default(landscape: &Landscape, seed: u64) -> Candidate {
    let runnable: Vec<&Candidate> = landscape
        .points
        .iter()
        .filter(|p| p.runs.iter().any(|r| r.state != infertune::trial::TrialState::Infeasible))
        .map(|p| &p.params)
        .collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xdef_a017);
    runnable[rand::RngExt::random_range(&mut rng, 0..runnable.len())].clone()
}

/// Whether a true value, as a share of the optimum, is within 5 % of it.
fn within(direction: Direction, relative: Option<f64>) -> bool {
    relative.is_some_and(|v| match direction {
        Direction::Maximize => v >= 0.95,
        Direction::Minimize => v <= 1.05,
    })
}

struct Row {
    share_at: Vec<f64>,
    median_needed: Option<usize>,
}

fn summarize(traces: &[Trace], direction: Direction) -> Row {
    let share_at = CHECKPOINTS
        .iter()
        .map(|&k| {
            let hit = traces.iter().filter(|t| within(direction, t.get(k - 1).or(t.last()).copied().flatten())).count();
            hit as f64 / traces.len() as f64
        })
        .collect();
    let mut needed: Vec<usize> =
        traces.iter().map(|t| t.iter().position(|v| within(direction, *v)).map_or(usize::MAX, |i| i + 1)).collect();
    needed.sort_unstable();
    let median = needed[needed.len() / 2];
    Row { share_at, median_needed: (median != usize::MAX).then_some(median) }
}

/// Share of trials (over all seeds) that proposed a point the same seed had tried before.
fn repeat_share(runs: &[Steps]) -> f64 {
    let (mut repeats, mut total) = (0usize, 0usize);
    for steps in runs {
        let mut seen = std::collections::BTreeSet::new();
        for (c, _) in steps {
            total += 1;
            repeats += !seen.insert(c.to_json()) as usize;
        }
    }
    100.0 * repeats as f64 / total.max(1) as f64
}

/// Share of seeds that measured, within their first 60 trials, a point whose true value is
/// within 5 % of the optimum: what the best possible naming of those trials would reach.
fn found_share(bench: &Bench, runs: &[Steps]) -> f64 {
    let found = bench
        .seeds
        .iter()
        .zip(runs)
        .filter(|(seeded, steps)| steps.iter().take(60).any(|(c, _)| within(bench.direction, seeded.relative(c))))
        .count();
    found as f64 / runs.len().max(1) as f64
}

/// Print one table row; returns its cells (@20, @40, @60, @100) and the median trials needed.
/// `repeat` is the row's repeat% column; `found` its found@60.
fn print_row(
    label: &str,
    name: &str,
    traces: &[Trace],
    direction: Direction,
    repeat: f64,
    found: f64,
) -> (Vec<String>, String) {
    let row = summarize(traces, direction);
    let cells: Vec<String> = row.share_at.iter().map(|s| format!("{s:.2}")).collect();
    let median = row.median_needed.map_or(format!(">{BUDGET}"), |n| n.to_string());
    println!(
        "{label:<40} {name:<8} {:>6} {:>6} {:>6} {:>6} {median:>8} {repeat:>7.1} {found:>8.2}",
        cells[0], cells[1], cells[2], cells[3]
    );
    (cells, median)
}

/// Indices of the points the landscape's backend refuses before launch: the check infertune's
/// strategies are wrapped in (`search::constrained`), applied to Optuna's proposals too.
fn refused_points(landscape: &Landscape) -> Result<std::collections::BTreeSet<usize>> {
    let space = landscape.space()?;
    let backend = infertune::backend::from_spec(&space.backend, &space.params);
    Ok(landscape.points.iter().enumerate().filter(|(_, p)| backend.plan(&p.params).is_err()).map(|(i, _)| i).collect())
}

/// Optuna's runs, one per seed: seed `s` plays `files[s]` (or `files[0]` when there is one).
fn optuna_steps(python: &Path, adapter: &Path, files: &[PathBuf], seeds: u64) -> Result<Vec<Steps>> {
    let out = Command::new(python)
        .arg(adapter)
        .args(files)
        .args(["--seeds", &seeds.to_string(), "--trials", &BUDGET.to_string()])
        .output()
        .with_context(|| format!("running '{}'", adapter.display()))?;
    if !out.status.success() {
        bail!("optuna adapter failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let parsed: Vec<Steps> = serde_json::from_slice(&out.stdout).context("parsing the optuna adapter's output")?;
    Ok(parsed)
}

/// Optuna's runs over a bench: each seed's observed runs (one file when every seed observes the
/// same), with the points the backend refuses marked, written under `tmp` for the adapter.
fn optuna_rows(bench: &Bench, python: &Path, args: &Args, tmp: &Path) -> Result<Vec<Steps>> {
    let refused = refused_points(&bench.source)?;
    let shared = bench.seeds.iter().all(|s| Rc::ptr_eq(&s.observed, &bench.seeds[0].observed));
    let views = if shared { &bench.seeds[..1] } else { &bench.seeds[..] };
    let mut files = Vec::new();
    for (seed, view) in views.iter().enumerate() {
        let mut json = serde_json::to_value(&*view.observed)?;
        for (i, point) in json["points"].as_array_mut().context("points")?.iter_mut().enumerate() {
            point["refused"] = serde_json::Value::Bool(refused.contains(&i));
        }
        let file = tmp.join(format!("{}-{seed}.json", bench.name()));
        std::fs::write(&file, serde_json::to_vec(&json)?)?;
        files.push(file);
    }
    optuna_steps(python, &args.adapter, &files, args.seeds)
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let host = infertune::measure::system::host();
    // The README's own form: the command and date first, then the table as printed.
    println!(
        "{}   # {}, {}, {} cores",
        args.label,
        jiff::Timestamp::now().strftime("%Y-%m-%d"),
        host.cpu_model,
        host.logical_cores
    );
    println!("rules: {RULES}");
    let benches = benches(&args)?;
    print_provenance(&benches)?;
    let tmp = std::env::temp_dir().join(format!("bench-search-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    println!(
        "{:<40} {:<8} {:>6} {:>6} {:>6} {:>6} {:>8} {:>7} {:>8}",
        "landscape", "strategy", "@20", "@40", "@60", "@100", "median_n", "repeat%", "found@60"
    );
    let mut figures = Figures::default();
    for bench in &benches {
        run_bench(bench, &args, &tmp, &mut figures)?;
    }
    run_any_default(&benches, &args)?;
    for bench in &benches {
        let share = all_runs_share(bench);
        println!(
            "{}: all-runs (a reference, not a strategy: with no budget, the point with the best mean over every observed run of every point, feasible in each) within 5 % for {share:.2} of seeds",
            bench.name()
        );
        figures.real.push(format!("{}_allruns_within5={share:.2}", bench.name()));
    }
    let suggest = propose_cost(&benches[0].source)?;
    let _ = std::fs::remove_dir_all(&tmp);
    figures.print(suggest);
    Ok(())
}

/// Share of seeds where the point with the best mean over all its observed runs (each meeting
/// every SLO) is within 5 % of the optimum: how far the observations themselves can tell the
/// optimum apart, whatever the budget.
fn all_runs_share(bench: &Bench) -> f64 {
    let direction = bench.direction;
    let hits = bench
        .seeds
        .iter()
        .filter(|seeded| {
            let named = seeded
                .observed
                .points
                .iter()
                .filter_map(|p| seeded.observed.true_value(&p.params).map(|v| (v, &p.params)))
                .reduce(|a, b| if is_better(direction, b.0, a.0) { b } else { a });
            within(direction, named.and_then(|(_, c)| seeded.relative(c)))
        })
        .count();
    hits as f64 / bench.seeds.len().max(1) as f64
}

/// The summary line's figures, gathered row by row.
#[derive(Default)]
struct Figures {
    summary: BTreeMap<String, String>,
    real: Vec<String>,
}

impl Figures {
    fn print(&self, suggest: f64) {
        let (summary, real) = (&self.summary, &self.real);
        let get = |k: &str| summary.get(k).cloned().unwrap_or_else(|| "na".into());
        println!(
            "summary: synthetic tpe_within5_at60={} random_within5_at60={} optuna_within5_at60={} synthetic-noisy tpe_within5_at60={} optuna_within5_at60={} synthetic-noisy/validated tpe_within5_at60={} random_within5_at60={} optuna_within5_at60={} tpe_suggest_ms_at200={suggest:.1} {}",
            get("tpe_within5_at60"),
            get("random_within5_at60"),
            get("optuna_within5_at60"),
            get("noisy_tpe_within5_at60"),
            get("noisy_optuna_within5_at60"),
            get("noisy_validated_tpe_within5_at60"),
            get("noisy_validated_random_within5_at60"),
            get("noisy_validated_optuna_within5_at60"),
            real.join(" "),
        );
    }
}

/// The synthetic landscapes (quiet and noisy) and the recorded ones named on the command line.
fn benches(args: &Args) -> Result<Vec<Bench>> {
    let mut benches = vec![
        Bench::generated(
            Landscape::synthetic(),
            Landscape::synthetic(),
            args.seeds,
            "generated, noise-free: every measurement is the true value".into(),
        )?,
        Bench::generated(
            Landscape::synthetic_noisy(NOISY_DRAWS, NOISY_SEED),
            Landscape::synthetic(),
            args.seeds,
            format!(
                "generated: truth = the noise-free synthetic values; each measurement one of {NOISY_DRAWS} seeded draws a point \
                 (objective ±15 %, ±30 % within 15 % of the memory limit; memory ±5 %)"
            ),
        )?,
    ];
    for p in &args.landscapes {
        let l = Landscape::load(p)?;
        let direction = l.space()?.objective.direction;
        if l.optimum(direction).is_none() {
            // Say so rather than drop it: the table row is then about the objective alone.
            println!(
                "note: no point of '{}' met its SLOs; comparing on the objective alone as '{}-noslo'",
                l.name, l.name
            );
            benches.push(Bench::recorded(l.without_slos(), args.seeds)?);
        } else {
            benches.push(Bench::recorded(l, args.seeds)?);
        }
    }
    Ok(benches)
}

/// Each landscape's provenance, its truth rule and the points refused before launch.
fn print_provenance(benches: &[Bench]) -> Result<()> {
    for b in benches {
        let refused = refused_points(&b.source)?;
        let provenance = b.source.provenance.as_ref().map_or_else(|| "generated (no engine)".to_string(), |p| p.line());
        println!("{}: {}", b.name(), provenance);
        println!(
            "{}: {}; {} of {} points refused before launch",
            b.name(),
            b.note,
            refused.len(),
            b.source.points.len()
        );
    }
    Ok(())
}

/// Every strategy over one landscape, from the space's default: the plain rows and, where the
/// truth is kept apart from the draws, the `/validated` rows.
fn run_bench(bench: &Bench, args: &Args, tmp: &Path, figures: &mut Figures) -> Result<()> {
    let Figures { summary, real } = figures;
    let name = bench.name();
    let space = bench.source.space()?;
    let direction = bench.direction;
    let synthetic = name.starts_with("synthetic");
    // Per strategy, each seed's (candidate, run) steps.
    let mut rows: Vec<(String, Vec<Steps>)> = Vec::new();
    for (row, kind) in [
        ("grid", StrategyKind::Grid),
        ("random", StrategyKind::Random),
        ("anneal", StrategyKind::Anneal),
        ("tpe", StrategyKind::Tpe),
    ] {
        // grid is deterministic: one seed says all
        let seeds = if kind == StrategyKind::Grid { 1 } else { args.seeds };
        let runs =
            (0..seeds).map(|s| run_strategy(&bench.seeds[s as usize].observed, &space, kind, s, BUDGET)).collect();
        rows.push((row.to_string(), runs));
    }
    print_tpe_after_startup(bench, &rows[3].1);
    if let Some(py) = &args.python {
        // Optuna sees the observed runs only, and which points the backend refuses.
        rows.push(("optuna".to_string(), optuna_rows(bench, py, args, tmp)?));
    }
    for (row, runs) in &rows {
        let traces: Vec<Trace> = bench.seeds.iter().zip(runs).map(|(seeded, s)| trace(seeded, direction, s)).collect();
        let found = found_share(bench, runs);
        let (cells, median) = print_row(name, row, &traces, direction, repeat_share(runs), found);
        if name == "synthetic" {
            summary.insert(format!("{row}_within5_at60"), cells[2].clone());
        } else if synthetic {
            summary.insert(format!("noisy_{row}_within5_at60"), cells[2].clone());
        } else if row != "grid" {
            real.push(format!(
                "{name}_{row}_within5_at20={} {name}_{row}_within5_at60={} {name}_{row}_median_n={median}",
                cells[0], cells[2]
            ));
        }
    }
    run_intensified_rows(bench, args, real)?;
    if !bench.validated {
        return Ok(());
    }
    // The same runs, judged by the winner the tool names after re-measuring its top few.
    let label = format!("{name}/validated");
    for (row, runs) in rows.iter().filter(|(n, _)| n != "grid") {
        let traces: Vec<Trace> = bench
            .seeds
            .iter()
            .zip(runs)
            .enumerate()
            .map(|(seed, (seeded, s))| trace_validated(seeded, direction, s, seed as u64))
            .collect();
        let found = found_share(bench, runs);
        let (cells, median) = print_row(&label, row, &traces, direction, repeat_share(runs), found);
        if name == "synthetic-noisy" {
            summary.insert(format!("noisy_validated_{row}_within5_at60"), cells[2].clone());
        } else if !synthetic {
            real.push(format!("{label}_{row}_within5_at20={} {label}_{row}_median_n={median}", cells[0]));
        }
    }
    Ok(())
}

/// The `/intensified` rows: every strategy run as the daemon runs it (issue 16), judged by the
/// configuration it names after each trial, re-measures included in the budget (no free runs),
/// by the point's true value. The column `repeat%` is then the share of trials that were
/// re-measures for intensification.
fn run_intensified_rows(bench: &Bench, args: &Args, figures: &mut Vec<String>) -> Result<()> {
    let space = bench.source.space()?;
    let label = format!("{}/intensified", bench.name());
    for (name, kind) in [("random", StrategyKind::Random), ("anneal", StrategyKind::Anneal), ("tpe", StrategyKind::Tpe)]
    {
        let runs: Vec<(Vec<Trial>, Steps)> = (0..args.seeds)
            .map(|s| run_intensified(&bench.seeds[s as usize].observed, &space, kind, s, BUDGET))
            .collect();
        let traces: Vec<Trace> =
            bench.seeds.iter().zip(&runs).map(|(seeded, (t, _))| trace_named(seeded, bench.direction, t)).collect();
        let (trials, steps): (Vec<Vec<Trial>>, Vec<Steps>) = runs.into_iter().unzip();
        let found = found_share(bench, &steps);
        let (cells, _) = print_row(&label, name, &traces, bench.direction, intensify_share(&trials), found);
        figures.push(format!("{label}_{name}_within5_at60={}", cells[2]));
    }
    Ok(())
}

/// After tpe's startup: the share of trials that could not run (crash, refused, or over the
/// synthetic memory limit) and of trials that ran but missed an SLO; also over trials 11-40
/// alone, since on a small grid the last unseen points are the bad ones. On stderr.
fn print_tpe_after_startup(bench: &Bench, tpe_runs: &[Steps]) {
    let synthetic = bench.name().starts_with("synthetic");
    let (mut after_startup, mut crashed_after_startup, mut missed_after_startup) = (0usize, 0usize, 0usize);
    let (mut early, mut crashed_early) = (0usize, 0usize);
    for (seeded, steps) in bench.seeds.iter().zip(tpe_runs) {
        for (i, (c, run)) in steps.iter().enumerate().skip(infertune::search::tpe::STARTUP_TRIALS) {
            after_startup += 1;
            let r = &seeded.observed.point(c).expect("a grid point").runs[*run];
            let cannot_run = r.state == infertune::trial::TrialState::Infeasible || (r.violation > 0.0 && synthetic);
            crashed_after_startup += cannot_run as usize;
            missed_after_startup += (!cannot_run && r.violation > 0.0) as usize;
            if i < 40 {
                early += 1;
                crashed_early += cannot_run as usize;
            }
        }
    }
    eprintln!(
        "{}: tpe trials 11-100 that crashed or were infeasible: {:.1} % (trials 11-40: {:.1} %); that ran but missed an SLO: {:.1} %",
        bench.name(),
        100.0 * crashed_after_startup as f64 / after_startup.max(1) as f64,
        100.0 * crashed_early as f64 / early.max(1) as f64,
        100.0 * missed_after_startup as f64 / after_startup.max(1) as f64,
    );
}

/// The recorded landscapes again, each seed starting from a different default (drawn from
/// the points that run): how much of a strategy's speed came from where the space's default
/// happens to lie; judged by observed value and after re-validation. Optuna is left out here
/// (its adapter reads the default from the space).
fn run_any_default(benches: &[Bench], args: &Args) -> Result<()> {
    for bench in benches.iter().filter(|b| !b.name().starts_with("synthetic")) {
        let space = bench.source.space()?;
        let direction = bench.direction;
        let kinds = [("random", StrategyKind::Random), ("anneal", StrategyKind::Anneal), ("tpe", StrategyKind::Tpe)];
        let runs: Vec<Vec<Steps>> = kinds
            .iter()
            .map(|(_, kind)| {
                bench
                    .seeds
                    .iter()
                    .zip(0..args.seeds)
                    .map(|(seeded, s)| {
                        let space = with_default(&space, &random_default(&bench.source, s));
                        run_strategy(&seeded.observed, &space, *kind, s, BUDGET)
                    })
                    .collect()
            })
            .collect();
        for validated in [false, true] {
            if validated && !bench.validated {
                continue;
            }
            let label = format!("{}/any-default{}", bench.name(), if validated { "/validated" } else { "" });
            for ((name, _), runs) in kinds.iter().zip(&runs) {
                let traces: Vec<Trace> = bench
                    .seeds
                    .iter()
                    .zip(runs)
                    .enumerate()
                    .map(|(s, (seeded, steps))| {
                        if validated {
                            trace_validated(seeded, direction, steps, s as u64)
                        } else {
                            trace(seeded, direction, steps)
                        }
                    })
                    .collect();
                let found = found_share(bench, runs);
                print_row(&label, name, &traces, direction, repeat_share(runs), found);
            }
        }
    }
    Ok(())
}

/// How long tpe takes to propose with 200 observed trials (the slowest point of a long study),
/// over the synthetic landscape; printed and returned in ms.
fn propose_cost(synthetic: &Landscape) -> Result<f64> {
    let mut space = synthetic.space()?;
    space.strategy = StrategyKind::Tpe;
    let mut tpe = search::from_space(&space);
    let mut answers = StdRng::seed_from_u64(0);
    let mut suggest_ms = Vec::new();
    for n in 1..=210 {
        let started = Instant::now();
        let Some(c) = tpe.propose(&space) else { break };
        if n > 200 {
            suggest_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let p = synthetic.point(&c).expect("grid point");
        let i = rand::RngExt::random_range(&mut answers, 0..p.runs.len());
        tpe.observe(&Landscape::trial(n, &c, &p.runs[i]));
    }
    suggest_ms.sort_by(f64::total_cmp);
    let suggest = suggest_ms.get(suggest_ms.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "tpe propose at 200 trials: median {suggest:.2} ms over {} proposals (this build's profile)",
        suggest_ms.len()
    );
    Ok(suggest)
}
