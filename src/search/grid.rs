//! Exhaustive grid search, in a fixed order: the baseline and the ground truth for samplers.

use std::collections::HashSet;

use super::Strategy;
use crate::space::{Candidate, Space, Value};
use crate::trial::Trial;

/// Visits every grid point once (see `Domain::grid_points`), skipping points already tried.
pub struct Grid {
    axes: Vec<(String, Vec<Value>)>,
    /// Mixed-radix counter over `axes`; `None` once every point has been proposed.
    cursor: Option<Vec<usize>>,
    seen: HashSet<String>,
}

impl Grid {
    pub fn new(space: &Space) -> Grid {
        let axes: Vec<(String, Vec<Value>)> =
            space.params.iter().map(|p| (p.name.clone(), p.domain.grid_points())).collect();
        let cursor = Some(vec![0; axes.len()]);
        Grid { axes, cursor, seen: HashSet::new() }
    }

    fn advance(&mut self) {
        let Some(cursor) = &mut self.cursor else { return };
        // Last parameter varies fastest.
        for i in (0..cursor.len()).rev() {
            cursor[i] += 1;
            if cursor[i] < self.axes[i].1.len() {
                return;
            }
            cursor[i] = 0;
        }
        self.cursor = None;
    }
}

impl Strategy for Grid {
    fn name(&self) -> &'static str {
        "grid"
    }

    fn propose(&mut self, _space: &Space) -> Option<Candidate> {
        loop {
            let cursor = self.cursor.as_ref()?;
            let candidate = Candidate(
                self.axes.iter().zip(cursor).map(|((name, values), &i)| (name.clone(), values[i].clone())).collect(),
            );
            self.advance();
            if self.seen.insert(candidate.to_json()) {
                return Some(candidate);
            }
        }
    }

    fn observe(&mut self, trial: &Trial) {
        self.seen.insert(trial.params.to_json());
    }

    fn pending(&mut self, candidate: &Candidate) {
        self.seen.insert(candidate.to_json());
    }
}

/// Grids larger than this are not walked point by point.
const WALKABLE: u64 = 100_000;

/// How many grid points the backend refuses before launch (known-invalid combinations), with
/// the first refusal's message; `None` when none is refused or the grid is too large to walk.
pub fn refused_points(space: &Space) -> Option<(u64, String)> {
    let refused = refused_candidates(space);
    let (c, r) = refused.first()?;
    Some((refused.len() as u64, format!("{} ({})", r.message.lines().next().unwrap_or(""), c.brief())))
}

/// The grid points the backend refuses before launch, in grid order, with its refusals; none
/// when the grid is too large to walk.
pub fn refused_candidates(space: &Space) -> Vec<(Candidate, crate::backend::Rejection)> {
    if space.grid_size() > WALKABLE {
        return Vec::new();
    }
    let backend = crate::backend::from_spec(&space.backend, &space.params);
    let mut grid = Grid::new(space);
    let mut refused = Vec::new();
    while let Some(c) = super::Strategy::propose(&mut grid, space) {
        if let Err(r) = backend.plan(&c) {
            refused.push((c, r));
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn visits_every_point_once() {
        let space = Space::from_toml(
            r#"
[study]
name = "g"
[backend]
kind = "llamacpp"
command = ["x"]
model = "m"
[params]
a = { values = [1, 2, 3], flag = "-a" }
b = { values = ["x", "y"], flag = "-b" }
"#,
            "g.toml",
            Path::new("/"),
        )
        .unwrap();
        let mut g = Grid::new(&space);
        let mut seen = Vec::new();
        while let Some(c) = g.propose(&space) {
            seen.push(c.brief());
        }
        assert_eq!(seen.len(), 6);
        assert_eq!(seen[0], "a=1 b=x");
        assert_eq!(seen[1], "a=1 b=y");
        assert_eq!(seen[5], "a=3 b=y");
    }
}
