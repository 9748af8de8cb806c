//! Landscapes: every point of a space with its measured outcome(s), so that strategies can be
//! compared (and loops tested) without an engine.
//!
//! A `Landscape` is either a recording of the real engine (a full grid, each point measured one
//! or more times, stored as JSON under `tests/fixtures/landscapes/`) or the synthetic landscape
//! of `reference/search-and-measurement.md` §4.2 (2016 points, about 1 % near-optimal, a memory
//! constraint and a crashing region). `answer` replays one of a point's recorded runs, picked
//! by the caller's seeded RNG, so replays carry the recording's own noise and repeat per seed.

use std::collections::BTreeMap;
use std::path::Path;

use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::measure::Summary;
use crate::space::{Candidate, Direction, Space, Value};
use crate::trial::{INFEASIBLE_VIOLATION, StageTimes, Trial, TrialId, TrialState};

/// One measurement of a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub state: TrialState,
    /// `None` for infeasible runs.
    pub objective: Option<f64>,
    /// Summed graded SLO violation (0 = every SLO met).
    pub violation: f64,
    /// The measured figures, so a replay can judge them against other SLOs; `None` for
    /// infeasible runs, synthetic points and older recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// Why an infeasible run failed (`oom`, `invalid-combination`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<crate::trial::InfeasibleClass>,
}

impl Run {
    /// A run known only by its outcome (synthetic landscapes, tests).
    pub fn new(state: TrialState, objective: Option<f64>, violation: f64) -> Run {
        Run { state, objective, violation, summary: None, error_class: None }
    }
}

/// A grid point with its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub params: Candidate,
    pub runs: Vec<Run>,
}

/// Where a recording comes from, so its figures can be weighed: every field is text, and
/// `"unknown"` (with what is known) where the recording did not keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// What the engine printed for its version.
    pub engine_version: String,
    /// When the runs were measured (UTC dates of the first and last study).
    pub date: String,
    /// CPU model and cores (and memory) of the machine.
    pub machine: String,
    /// What else ran on the machine meanwhile (load average at start and end, and a note).
    pub load: String,
    /// The command that recorded it.
    pub command: String,
}

impl Provenance {
    /// One line for reports: `engine …; date …; machine …; load …; command …`.
    pub fn line(&self) -> String {
        format!(
            "engine {}; date {}; machine {}; load {}; command {}",
            self.engine_version, self.date, self.machine, self.load, self.command
        )
    }
}

/// A full grid with outcomes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Landscape {
    pub name: String,
    /// Where the recording comes from; `None` for generated landscapes and tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// The search space (TOML text) the points come from.
    pub space_toml: String,
    pub points: Vec<Point>,
    #[serde(skip)]
    index: BTreeMap<String, usize>,
}

/// A study's measurements of a landscape: how often each point was measured, so that the next
/// measurement is [`Landscape::nth_run`]'s next run. The replay backend and `bench-search` answer
/// through it.
#[derive(Debug, Clone)]
pub struct Draws {
    seed: u64,
    taken: std::collections::HashMap<String, usize>,
}

impl Draws {
    pub fn new(seed: u64) -> Draws {
        Draws { seed, taken: std::collections::HashMap::new() }
    }

    /// The next measurement of `candidate`: its run index and the run; `None` off the grid.
    pub fn next<'l>(&mut self, landscape: &'l Landscape, candidate: &Candidate) -> Option<(usize, &'l Run)> {
        let nth = self.taken.entry(candidate.to_json()).or_default();
        let i = landscape.nth_run(candidate, *nth, self.seed)?;
        *nth += 1;
        Some((i, &landscape.point(candidate)?.runs[i]))
    }
}

/// Why two recordings could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ExtendError {
    #[error("{0} is not a point of the earlier recording's grid")]
    NotAPoint(String),
}

/// Why a landscape could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading landscape '{path}'")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing landscape '{path}'")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("landscape '{name}' has an invalid space")]
    Space {
        name: String,
        #[source]
        source: crate::space::Error,
    },
}

impl Landscape {
    /// A landscape from its points (the index is built here).
    pub fn new(name: &str, space_toml: &str, points: Vec<Point>) -> Landscape {
        let mut l = Landscape {
            name: name.to_string(),
            provenance: None,
            space_toml: space_toml.to_string(),
            points,
            index: BTreeMap::new(),
        };
        l.reindex();
        l
    }

    fn reindex(&mut self) {
        self.index = self.points.iter().enumerate().map(|(i, p)| (p.params.to_json(), i)).collect();
    }

    /// Read a recorded landscape (JSON).
    pub fn load(path: &Path) -> Result<Landscape, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
        Landscape::from_json(&bytes, path)
    }

    /// A landscape from its JSON text; `path` names it in errors.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Landscape, Error> {
        let mut l: Landscape = serde_json::from_slice(bytes)
            .map_err(|source| Error::Parse { path: path.display().to_string(), source })?;
        l.reindex();
        Ok(l)
    }

    /// The space the landscape covers.
    pub fn space(&self) -> Result<Space, Error> {
        Space::from_toml(&self.space_toml, &self.name, Path::new("/"))
            .map_err(|source| Error::Space { name: self.name.clone(), source })
    }

    /// The recorded point for `candidate`.
    pub fn point(&self, candidate: &Candidate) -> Option<&Point> {
        self.index.get(&candidate.to_json()).map(|&i| &self.points[i])
    }

    /// One of the point's runs, chosen by `rng` (its recorded noise); `None` off the grid.
    pub fn answer(&self, candidate: &Candidate, rng: &mut impl RngExt) -> Option<&Run> {
        let p = self.point(candidate)?;
        if p.runs.is_empty() {
            return None;
        }
        Some(&p.runs[rng.random_range(0..p.runs.len())])
    }

    /// The `nth` measurement (from 0) of `candidate` in a study seeded `seed`, as an index among
    /// the point's runs: its runs in an order drawn once per point and seed, taken in turn
    /// (cycling once all were used), so that a re-measure is a different recorded run while one
    /// remains, as a fresh start on the engine would be; `None` off the grid. [`Draws`] counts
    /// the measurements.
    pub fn nth_run(&self, candidate: &Candidate, nth: usize, seed: u64) -> Option<usize> {
        let p = self.point(candidate)?;
        if p.runs.is_empty() {
            return None;
        }
        let order = run_order(candidate, p.runs.len(), seed);
        Some(order[nth % order.len()])
    }

    /// The landscape's runs cut in two for one benchmark seed, as `(truth, observed)`: each
    /// point's runs in an order drawn per point and seed (independent of [`Landscape::nth_run`]'s),
    /// the first half, rounded up, to the truth and the rest to what a strategy observes. A point
    /// with a single run (in a recording, one that crashed or was refused before launch) keeps
    /// it on both sides: there is nothing to cut. Different seeds cut differently, so a
    /// benchmark over many seeds does not hang on the luck of one cut.
    pub fn split(&self, seed: u64) -> (Landscape, Landscape) {
        let (mut truth, mut observed) = (Vec::new(), Vec::new());
        for p in &self.points {
            let order = run_order(&p.params, p.runs.len(), seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5117);
            let cut = p.runs.len().div_ceil(2);
            let pick = |idx: &[usize]| Point {
                params: p.params.clone(),
                runs: idx.iter().map(|&i| p.runs[i].clone()).collect(),
            };
            truth.push(pick(&order[..cut]));
            observed.push(pick(if p.runs.len() == 1 { &order } else { &order[cut..] }));
        }
        (self.with_points(&self.name, truth), self.with_points(&self.name, observed))
    }

    /// This recording's space and provenance over other `points` (its own, cut or changed),
    /// named `name`.
    fn with_points(&self, name: &str, points: Vec<Point>) -> Landscape {
        let mut l = Landscape::new(name, &self.space_toml, points);
        l.provenance = self.provenance.clone();
        l
    }

    /// The point's true value: the mean objective when every run met every SLO, else `None`.
    pub fn true_value(&self, candidate: &Candidate) -> Option<f64> {
        let p = self.point(candidate)?;
        if p.runs.is_empty() || p.runs.iter().any(|r| r.violation > 0.0 || r.objective.is_none()) {
            return None;
        }
        Some(p.runs.iter().filter_map(|r| r.objective).sum::<f64>() / p.runs.len() as f64)
    }

    /// The best true value over the grid (the optimum a search is judged against).
    pub fn optimum(&self, direction: Direction) -> Option<f64> {
        self.points.iter().filter_map(|p| self.true_value(&p.params)).reduce(|a, b| match direction {
            Direction::Maximize => a.max(b),
            Direction::Minimize => a.min(b),
        })
    }

    /// The same landscape with every SLO miss of a measured run forgiven (crashes stay
    /// infeasible): for recordings where no point met the SLOs, so that strategies can still be
    /// compared on the objective. Callers must say that they did this.
    pub fn without_slos(&self) -> Landscape {
        let mut points = self.points.clone();
        for run in points.iter_mut().flat_map(|p| p.runs.iter_mut()) {
            if run.state != TrialState::Infeasible && run.objective.is_some() {
                run.violation = 0.0;
            }
        }
        self.with_points(&format!("{}-noslo", self.name), points)
    }

    /// This recording with `later`'s runs appended at each point (a later session over the same
    /// grid, or part of it): the points and the space stay this file's, and the provenance says
    /// both, earlier first. Every point of `later` must be one of this recording's.
    pub fn extended_by(mut self, later: Landscape) -> Result<Landscape, ExtendError> {
        for p in later.points {
            match self.index.get(&p.params.to_json()) {
                Some(&i) => self.points[i].runs.extend(p.runs),
                None => return Err(ExtendError::NotAPoint(p.params.brief())),
            }
        }
        self.provenance = match (self.provenance.take(), later.provenance) {
            (Some(a), Some(b)) => Some(Provenance {
                engine_version: format!("{} / then {}", a.engine_version, b.engine_version),
                date: format!("{} / then {}", a.date, b.date),
                machine: format!("{} / then {}", a.machine, b.machine),
                load: format!("{} / then {}", a.load, b.load),
                command: format!("{} / then {}", a.command, b.command),
            }),
            (a, b) => a.or(b),
        };
        self.reindex();
        Ok(self)
    }

    /// This recording with a point for each of `refused` it lacks (grid points the backend
    /// refuses before launch, which a study never runs): one infeasible run, as a launch that
    /// cannot start, so that the file covers its whole grid as older recordings (whose engine
    /// was started and failed) do.
    pub fn with_refused(mut self, refused: impl IntoIterator<Item = Candidate>) -> Landscape {
        for params in refused {
            if self.point(&params).is_none() {
                let class = crate::trial::InfeasibleClass::Server(crate::backend::FailureClass::InvalidCombination);
                let run =
                    Run { error_class: Some(class), ..Run::new(TrialState::Infeasible, None, INFEASIBLE_VIOLATION) };
                self.points.push(Point { params, runs: vec![run] });
            }
        }
        self.reindex();
        self
    }

    /// A finished trial for `run`, as the daemon would hand it to a strategy.
    pub fn trial(number: i64, candidate: &Candidate, run: &Run) -> Trial {
        Trial {
            id: TrialId(number),
            number,
            state: run.state,
            params: candidate.clone(),
            plan: None,
            objective: run.objective,
            violation: Some(run.violation),
            violations: BTreeMap::new(),
            summary: None,
            error_class: None,
            error_message: None,
            stages: StageTimes::default(),
            started_at_ms: 0,
            ended_at_ms: None,
            purpose: crate::trial::Purpose::Search,
        }
    }

    /// A landscape from finished trials of one or more studies over the same space (repeats).
    pub fn from_trials(name: &str, space_toml: &str, trials: &[Trial]) -> Landscape {
        let mut points: Vec<Point> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for t in trials {
            let run = match t.state {
                TrialState::Complete | TrialState::Pruned => {
                    Run { summary: t.summary.clone(), ..Run::new(t.state, t.objective, t.violation.unwrap_or(0.0)) }
                }
                TrialState::Infeasible => Run {
                    error_class: t.error_class,
                    ..Run::new(t.state, None, t.violation.unwrap_or(INFEASIBLE_VIOLATION))
                },
                TrialState::Running | TrialState::Interrupted | TrialState::Lost => continue,
            };
            let key = t.params.to_json();
            let i = *index.entry(key).or_insert_with(|| {
                points.push(Point { params: t.params.clone(), runs: Vec::new() });
                points.len() - 1
            });
            points[i].runs.push(run);
        }
        Landscape::new(name, space_toml, points)
    }

    /// The synthetic landscape of §4.2 (noise-free): slots 1–16 × ctx 2⁹…2¹⁵ × flash-attn ×
    /// {q4_K_M, q8_0, f16} × KV {f16, q8_0, q4_0} = 2016 points. Throughput peaks at about 11
    /// slots, falls with context, gains a little from flash attention and a q8_0 KV cache.
    /// Memory `0.6·slots·2^(l−12)·kv + weights` must stay ≤ 16 GB (graded violation
    /// `mem/16 − 1`), and a quantized KV cache without flash attention crashes at start (as in
    /// llama.cpp, which infertune refuses before launch). 819 points are feasible and 20 (1 %) are within 5 % of the optimum.
    pub fn synthetic() -> Landscape {
        let quants = [("q4_K_M", 1.0, 4.9), ("q8_0", 0.82, 8.5), ("f16", 0.6, 15.0)];
        let kvs = [("f16", 1.0, 1.0), ("q8_0", 1.03, 0.5), ("q4_0", 0.97, 0.25)];
        let mut points = Vec::with_capacity(2016);
        for slots in 1..=16i64 {
            for l in 9..=15i32 {
                for fa in ["on", "off"] {
                    for (quant, q_speed, weights_gb) in quants {
                        for (kv, kv_speed, kv_mem) in kvs {
                            let params = Candidate(BTreeMap::from([
                                ("slots".to_string(), Value::Int(slots)),
                                ("ctx".to_string(), Value::Int(1 << l)),
                                ("flash_attn".to_string(), Value::Str(fa.into())),
                                ("quant".to_string(), Value::Str(quant.into())),
                                ("kv_cache".to_string(), Value::Str(kv.into())),
                            ]));
                            let run = if fa == "off" && kv != "f16" {
                                Run {
                                    error_class: Some(crate::trial::InfeasibleClass::Server(
                                        crate::backend::FailureClass::InvalidCombination,
                                    )),
                                    ..Run::new(TrialState::Infeasible, None, INFEASIBLE_VIOLATION)
                                }
                            } else {
                                let mem_gb = 0.6 * slots as f64 * 2f64.powi(l - 12) * kv_mem + weights_gb;
                                let ctx_factor = 1.0 - 0.03 * (l - 9) as f64 + if l == 12 { 0.05 } else { 0.0 };
                                let tok_per_s = 100.0
                                    * q_speed
                                    * slots as f64
                                    * (-(slots as f64) / 11.0).exp()
                                    * ctx_factor
                                    * if fa == "on" { 1.06 } else { 1.0 }
                                    * kv_speed;
                                Run::new(TrialState::Complete, Some(tok_per_s), (mem_gb / 16.0 - 1.0).max(0.0))
                            };
                            points.push(Point { params, runs: vec![run] });
                        }
                    }
                }
            }
        }
        Landscape::new("synthetic", SYNTHETIC_SPACE, points)
    }

    /// The synthetic landscape as a noisy engine would measure it: each point's true values are
    /// [`Landscape::synthetic`]'s, and it carries `draws` measured runs (seeded by `seed`), each
    /// with multiplicative noise: the objective within ±15 % (uniform), widened to ±30 % where
    /// the memory is within 15 % of the limit, and the memory itself within ±5 %, so points near
    /// the limit are sometimes seen over it and sometimes under. Points that crash still crash.
    /// Judge by `synthetic()`'s true values; observe (and re-measure) from these runs.
    pub fn synthetic_noisy(draws: usize, seed: u64) -> Landscape {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let truth = Landscape::synthetic();
        let points = truth
            .points
            .iter()
            .map(|p| {
                let run = &p.runs[0];
                let runs = match run.objective {
                    None => vec![run.clone(); draws],
                    Some(value) => {
                        let mem_ratio = synthetic_mem_gb(&p.params) / 16.0;
                        let near = (mem_ratio - 1.0).abs() <= 0.15;
                        let spread = if near { 0.30 } else { 0.15 };
                        (0..draws)
                            .map(|_| {
                                let v = value * (1.0 + rng.random_range(-spread..=spread));
                                let m = mem_ratio * (1.0 + rng.random_range(-0.05..=0.05));
                                Run::new(TrialState::Complete, Some(v), (m - 1.0).max(0.0))
                            })
                            .collect()
                    }
                };
                Point { params: p.params.clone(), runs }
            })
            .collect();
        Landscape::new("synthetic-noisy", SYNTHETIC_SPACE, points)
    }
}

/// `n` run indices in an order drawn for `candidate` and `seed`, stable across builds.
fn run_order(candidate: &Candidate, n: usize, seed: u64) -> Vec<usize> {
    use rand::SeedableRng;
    // FNV-1a of the point's key: a per-point order that is stable across builds.
    let key =
        candidate.to_json().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ key);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    order
}

/// The synthetic landscape's memory use (GB) at a point: `0.6·slots·2^(l−12)·kv + weights`.
fn synthetic_mem_gb(params: &Candidate) -> f64 {
    let int = |k: &str| match params.get(k) {
        Some(Value::Int(i)) => *i,
        _ => 0,
    };
    let text = |k: &str| params.get(k).map(|v| v.to_string()).unwrap_or_default();
    let weights = match text("quant").as_str() {
        "q4_K_M" => 4.9,
        "q8_0" => 8.5,
        _ => 15.0,
    };
    let kv = match text("kv_cache").as_str() {
        "q8_0" => 0.5,
        "q4_0" => 0.25,
        _ => 1.0,
    };
    0.6 * int("slots") as f64 * (int("ctx") as f64 / 4096.0) * kv + weights
}

const SYNTHETIC_SPACE: &str = r#"
[study]
name = "synthetic"
[backend]
kind = "llamacpp"
command = ["llama-server"]
model = "model-{quant}.gguf"
[params]
slots      = { min = 1, max = 16, step = 1, flag = "-np", default = 4 }
ctx        = { values = [512, 1024, 2048, 4096, 8192, 16384, 32768], flag = "-c", default = 4096 }
flash_attn = { values = ["on", "off"], flag = "-fa", default = "off" }
quant      = { values = ["q4_K_M", "q8_0", "f16"], template = "model", default = "q8_0" }
kv_cache   = { values = ["f16", "q8_0", "q4_0"], flags = ["-ctk", "-ctv"], default = "f16" }
[objective]
maximize = "output_tok_per_s"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_has_the_reference_shape() {
        let l = Landscape::synthetic();
        let space = l.space().unwrap();
        assert_eq!(space.grid_size(), 2016);
        assert_eq!(l.points.len(), 2016);
        let feasible = l.points.iter().filter(|p| l.true_value(&p.params).is_some()).count();
        assert_eq!(feasible, 819);
        let opt = l.optimum(Direction::Maximize).unwrap();
        let near = l.points.iter().filter_map(|p| l.true_value(&p.params)).filter(|v| *v >= 0.95 * opt).count();
        assert_eq!(near, 20);
        // the space's default is a grid point
        assert!(l.point(&space.default_candidate().unwrap()).is_some());
    }

    #[test]
    fn refused_points_are_added_once_as_infeasible() {
        let l = Landscape::synthetic();
        let kept = l.points[0].clone();
        let refused = l.points.iter().find(|p| p.runs[0].state == TrialState::Infeasible).unwrap().params.clone();
        let partial = l.with_points("part", vec![kept.clone()]);
        let whole = partial.with_refused([refused.clone(), kept.params.clone()]);
        assert_eq!(whole.points.len(), 2, "the measured point is kept as it was, the refused one added");
        assert_eq!(whole.point(&kept.params).unwrap().runs.len(), kept.runs.len());
        let added = whole.point(&refused).unwrap();
        assert_eq!(added.runs.len(), 1);
        assert_eq!(added.runs[0].state, TrialState::Infeasible);
        assert!(whole.true_value(&refused).is_none());
    }

    #[test]
    fn noisy_synthetic_keeps_the_truth_apart() {
        let (truth, noisy) = (Landscape::synthetic(), Landscape::synthetic_noisy(8, 1));
        assert_eq!(noisy.points.len(), truth.points.len());
        let mut flipped = 0;
        for (t, n) in truth.points.iter().zip(&noisy.points) {
            assert_eq!((t.params.clone(), n.runs.len()), (n.params.clone(), 8));
            let (tv, tviol) = (t.runs[0].objective, t.runs[0].violation);
            for r in &n.runs {
                match (tv, r.objective) {
                    (Some(a), Some(b)) => assert!((b / a - 1.0).abs() <= 0.30 + 1e-9),
                    (None, None) => {}
                    other => panic!("crash region changed: {other:?}"),
                }
                flipped += ((tviol > 0.0) != (r.violation > 0.0)) as usize;
            }
        }
        assert!(flipped > 0, "points near the memory limit are sometimes seen on the other side");
    }

    #[test]
    fn a_remeasure_is_a_different_recorded_run_while_one_remains() {
        let c = Candidate(BTreeMap::from([("a".to_string(), Value::Int(1))]));
        let runs = (0..4).map(|i| Run::new(TrialState::Complete, Some(i as f64), 0.0)).collect();
        let l = Landscape::new("t", "", vec![Point { params: c.clone(), runs }]);
        for seed in 0..8 {
            let first_four: std::collections::BTreeSet<usize> =
                (0..4).map(|n| l.nth_run(&c, n, seed).unwrap()).collect();
            assert_eq!(first_four.len(), 4, "seed {seed}: four measurements, four runs");
            assert_eq!(l.nth_run(&c, 4, seed), l.nth_run(&c, 0, seed), "then they cycle");
        }
        let orders: std::collections::BTreeSet<Vec<usize>> =
            (0..8).map(|seed| (0..4).map(|n| l.nth_run(&c, n, seed).unwrap()).collect()).collect();
        assert!(orders.len() > 1, "the order depends on the seed");
        // a study's draws take that order, counting the measurements of each point
        let mut draws = Draws::new(3);
        let taken: Vec<usize> = (0..4).map(|_| draws.next(&l, &c).unwrap().0).collect();
        assert_eq!(taken, (0..4).map(|n| l.nth_run(&c, n, 3).unwrap()).collect::<Vec<_>>());
    }

    #[test]
    fn a_split_gives_every_run_to_one_side_and_cuts_differently_per_seed() {
        let c = |k| Candidate(BTreeMap::from([("a".to_string(), Value::Int(k))]));
        let run = |v| Run::new(TrialState::Complete, Some(v), 0.0);
        let l = Landscape::new(
            "t",
            "space",
            vec![
                Point { params: c(1), runs: (1..=4).map(|v| run(v as f64)).collect() },
                Point { params: c(2), runs: (1..=3).map(|v| run(v as f64)).collect() },
                Point { params: c(3), runs: vec![run(7.0)] },
            ],
        );
        let values = |l: &Landscape, k| -> Vec<f64> {
            let mut v: Vec<f64> = l.point(&c(k)).unwrap().runs.iter().map(|r| r.objective.unwrap()).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let mut cuts = std::collections::BTreeSet::new();
        for seed in 0..16 {
            let (truth, observed) = l.split(seed);
            assert_eq!((truth.point(&c(1)).unwrap().runs.len(), observed.point(&c(1)).unwrap().runs.len()), (2, 2));
            assert_eq!((truth.point(&c(2)).unwrap().runs.len(), observed.point(&c(2)).unwrap().runs.len()), (2, 1));
            assert_eq!((truth.point(&c(3)).unwrap().runs.len(), observed.point(&c(3)).unwrap().runs.len()), (1, 1));
            // every run on exactly one side
            let mut both = [values(&truth, 1), values(&observed, 1)].concat();
            both.sort_by(f64::total_cmp);
            assert_eq!(both, vec![1.0, 2.0, 3.0, 4.0]);
            assert_eq!(l.split(seed).0.points, truth.points, "a seed always cuts the same way");
            cuts.insert(format!("{:?}", values(&truth, 1)));
        }
        assert!(cuts.len() > 2, "seeds cut differently: {cuts:?}");
    }

    #[test]
    fn extending_a_recording_appends_runs_and_keeps_both_provenances() {
        let c = |k| Candidate(BTreeMap::from([("a".to_string(), Value::Int(k))]));
        let run = |v| Run::new(TrialState::Complete, Some(v), 0.0);
        let provenance = |d: &str| Provenance {
            engine_version: "e".into(),
            date: d.into(),
            machine: "m".into(),
            load: "l".into(),
            command: "c".into(),
        };
        let mut earlier = Landscape::new(
            "t",
            "space",
            vec![Point { params: c(1), runs: vec![run(1.0), run(2.0)] }, Point { params: c(2), runs: vec![run(5.0)] }],
        );
        earlier.provenance = Some(provenance("day 1"));
        let mut later = Landscape::new("t", "part", vec![Point { params: c(1), runs: vec![run(3.0)] }]);
        later.provenance = Some(provenance("day 2"));
        let l = earlier.clone().extended_by(later).unwrap();
        let values: Vec<f64> = l.point(&c(1)).unwrap().runs.iter().map(|r| r.objective.unwrap()).collect();
        assert_eq!(values, vec![1.0, 2.0, 3.0]);
        assert_eq!(l.point(&c(2)).unwrap().runs.len(), 1);
        assert_eq!(l.space_toml, "space");
        assert_eq!(l.provenance.unwrap().date, "day 1 / then day 2");
        let stranger = Landscape::new("t", "space", vec![Point { params: c(9), runs: vec![run(1.0)] }]);
        let err = earlier.extended_by(stranger).unwrap_err().to_string();
        assert!(err.contains("a=9") && err.contains("not a point"), "{err}");
    }

    #[test]
    fn answers_repeat_per_seed_and_round_trip_json() {
        use rand::SeedableRng;
        let c = Candidate(BTreeMap::from([("a".to_string(), Value::Int(1))]));
        let runs = vec![Run::new(TrialState::Complete, Some(1.0), 0.0), Run::new(TrialState::Complete, Some(2.0), 0.0)];
        let l = Landscape::new("t", "", vec![Point { params: c.clone(), runs }]);
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..16).map(|_| l.answer(&c, &mut rng).unwrap().objective.unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert!(draw(1).contains(&1.0) && draw(1).contains(&2.0));
        assert_eq!(l.true_value(&c), Some(1.5));
        let back: Landscape = serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        assert_eq!(back.points, l.points);
    }
}
