//! The numeric view of a space that model-based samplers work in: one `Dim` per parameter and
//! a `Vec<f64>` per point. Solvers never see parameter names.
//!
//! - numeric value lists (`[1, 2, 4, 8]`) become an ordinal index `0..n` (order matters for
//!   slots or context length, so it is kept);
//! - other value lists (`["on", "off"]`) are categorical: the index, with no order;
//! - integer ranges become the step index `0..=k`, or `ln(value)` when `log = true`.

use crate::space::{Candidate, Domain, Space, Value};

/// One encoded dimension.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    /// An ordered integer grid `0..=hi` (step or list index).
    Ordinal { hi: i64 },
    /// `ln(value)` of a log-scaled integer range, in `[ln(min − ½), ln(max + ½)]`.
    Log { lo: f64, hi: f64 },
    /// One of `n` unordered choices.
    Cat { n: usize },
}

/// How a space maps to and from `Vec<f64>`.
#[derive(Debug, Clone)]
pub struct Encoding {
    pub dims: Vec<Dim>,
    domains: Vec<(String, Domain, Option<Vec<usize>>)>,
}

fn is_numeric(v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::Float(_))
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        _ => f64::NAN,
    }
}

impl Encoding {
    /// The encoding of `space`'s parameters, in file order.
    pub fn new(space: &Space) -> Encoding {
        let mut dims = Vec::new();
        let mut domains = Vec::new();
        for p in &space.params {
            let (dim, order) = match &p.domain {
                Domain::Values(values) if values.len() > 1 && values.iter().all(is_numeric) => {
                    // Ordinal by numeric value, whatever order the file lists them in.
                    let mut order: Vec<usize> = (0..values.len()).collect();
                    order.sort_by(|&a, &b| as_f64(&values[a]).total_cmp(&as_f64(&values[b])));
                    (Dim::Ordinal { hi: values.len() as i64 - 1 }, Some(order))
                }
                Domain::Values(values) => (Dim::Cat { n: values.len() }, None),
                Domain::Int { min, max, log: true, .. } => {
                    (Dim::Log { lo: (*min as f64 - 0.5).max(0.5).ln(), hi: (*max as f64 + 0.5).ln() }, None)
                }
                Domain::Int { min, max, step, .. } => {
                    let s = step.unwrap_or(1).max(1);
                    (Dim::Ordinal { hi: (max - min + s - 1) / s }, None)
                }
            };
            dims.push(dim);
            domains.push((p.name.clone(), p.domain.clone(), order));
        }
        Encoding { dims, domains }
    }

    /// The point of `candidate`; `None` if a value lies outside its domain.
    pub fn encode(&self, candidate: &Candidate) -> Option<Vec<f64>> {
        self.domains
            .iter()
            .zip(&self.dims)
            .map(|((name, domain, order), dim)| {
                let value = candidate.get(name)?;
                Some(match (domain, dim) {
                    (Domain::Values(values), _) => {
                        let i = values.iter().position(|v| v == value)?;
                        match order {
                            Some(order) => order.iter().position(|&j| j == i)? as f64,
                            None => i as f64,
                        }
                    }
                    (Domain::Int { .. }, Dim::Log { .. }) => match value {
                        Value::Int(v) => (*v as f64).ln(),
                        _ => return None,
                    },
                    (Domain::Int { min, max, step, .. }, _) => match value {
                        Value::Int(v) if v == max => {
                            let s = step.unwrap_or(1).max(1);
                            ((max - min + s - 1) / s) as f64
                        }
                        Value::Int(v) => ((v - min) / step.unwrap_or(1).max(1)) as f64,
                        _ => return None,
                    },
                })
            })
            .collect()
    }

    /// The candidate at `point` (rounded and clamped into each domain).
    pub fn decode(&self, point: &[f64]) -> Candidate {
        Candidate(
            self.domains
                .iter()
                .zip(&self.dims)
                .zip(point)
                .map(|(((name, domain, order), dim), &x)| {
                    let value = match (domain, dim) {
                        (Domain::Values(values), Dim::Ordinal { hi }) => {
                            let k = (x.round() as i64).clamp(0, *hi) as usize;
                            let i = order.as_ref().map_or(k, |o| o[k]);
                            values[i].clone()
                        }
                        (Domain::Values(values), _) => {
                            values[(x.round() as i64).clamp(0, values.len() as i64 - 1) as usize].clone()
                        }
                        (Domain::Int { min, max, .. }, Dim::Log { .. }) => {
                            Value::Int((x.exp().round() as i64).clamp(*min, *max))
                        }
                        (Domain::Int { min, max, step, .. }, _) => {
                            let s = step.unwrap_or(1).max(1);
                            Value::Int((min + x.round().max(0.0) as i64 * s).min(*max))
                        }
                    };
                    (name.clone(), value)
                })
                .collect(),
        )
    }
}

impl Encoding {
    /// The one-parameter moves from `point`: one step either way along an ordered dimension
    /// (a doubling or halving on a log one), every other value of an unordered one.
    pub fn neighbours(&self, point: &[f64]) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for (d, dim) in self.dims.iter().enumerate() {
            let x = point[d];
            let moves: Vec<f64> = match dim {
                Dim::Ordinal { hi } => {
                    [x - 1.0, x + 1.0].into_iter().filter(|v| (0.0..=*hi as f64).contains(v)).collect()
                }
                Dim::Log { lo, hi } => {
                    [x - 2f64.ln(), x + 2f64.ln()].into_iter().filter(|v| (*lo..=*hi).contains(v)).collect()
                }
                Dim::Cat { n } => (0..*n).map(|v| v as f64).filter(|v| *v != x).collect(),
            };
            out.extend(moves.into_iter().map(|v| {
                let mut y = point.to_vec();
                y[d] = v;
                y
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn space() -> Space {
        Space::from_toml(
            r#"
[study]
name = "e"
[backend]
kind = "llamacpp"
command = ["x"]
model = "m"
[params]
np = { values = [8, 1, 4], flag = "-np" }
fa = { values = ["on", "off"], flag = "-fa" }
c = { min = 256, max = 4096, log = true, flag = "-c" }
b = { min = 64, max = 500, step = 64, flag = "-b" }
"#,
            "e.toml",
            Path::new("/"),
        )
        .unwrap()
    }

    #[test]
    fn dims_follow_the_domains() {
        let e = Encoding::new(&space());
        assert_eq!(e.dims[0], Dim::Ordinal { hi: 2 });
        assert_eq!(e.dims[1], Dim::Cat { n: 2 });
        assert_eq!(e.dims[2], Dim::Log { lo: 255.5f64.ln(), hi: 4096.5f64.ln() });
        // 64, 128, .., 448, then max 500 as the last index
        assert_eq!(e.dims[3], Dim::Ordinal { hi: 7 });
    }

    #[test]
    fn round_trips_every_grid_point() {
        let s = space();
        let e = Encoding::new(&s);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        for _ in 0..200 {
            let c = Candidate(
                s.params.iter().map(|p| (p.name.clone(), super::super::sample_value(&p.domain, &mut rng))).collect(),
            );
            let x = e.encode(&c).unwrap();
            assert_eq!(e.decode(&x), c, "{x:?}");
        }
        // ordinal by value: 1 < 4 < 8
        let x = e.encode(&e.decode(&[0.0, 1.0, 7.0, 7.0])).unwrap();
        assert_eq!(e.decode(&[0.0, 1.0, 7.0, 7.0]).get("np"), Some(&Value::Int(1)));
        assert_eq!(e.decode(&[0.0, 1.0, 7.0, 7.0]).get("b"), Some(&Value::Int(500)));
        assert_eq!(x[0], 0.0);
    }

    #[test]
    fn neighbours_move_one_parameter() {
        let s = space();
        let e = Encoding::new(&s);
        // np = 4 (index 1 of 1 < 4 < 8), fa = on, c = 1024, b = 64 (index 0)
        let x = vec![1.0, 0.0, 1024f64.ln(), 0.0];
        let n: Vec<Candidate> = e.neighbours(&x).iter().map(|y| e.decode(y)).collect();
        let brief: Vec<String> = n.iter().map(|c| c.brief()).collect();
        assert_eq!(n.len(), 2 + 1 + 2 + 1, "{brief:?}");
        for c in &n {
            let moved = s.params.iter().filter(|p| c.get(&p.name) != e.decode(&x).get(&p.name)).count();
            assert_eq!(moved, 1, "{}", c.brief());
        }
        assert!(n.iter().any(|c| c.get("c") == Some(&Value::Int(512))));
        assert!(n.iter().any(|c| c.get("c") == Some(&Value::Int(2048))));
        assert!(n.iter().any(|c| c.get("b") == Some(&Value::Int(128))));
    }
}
