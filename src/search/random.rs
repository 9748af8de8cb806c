//! Seeded random search: the baseline every other sampler must beat.

use std::collections::HashSet;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Strategy, sample_value};
use crate::space::{Candidate, Space};
use crate::trial::Trial;

/// Draws each parameter independently; never proposes a point twice.
pub struct Random {
    rng: StdRng,
    seen: HashSet<String>,
}

/// Draws before concluding that every point has been tried.
const MAX_DRAWS: usize = 1000;

impl Random {
    pub fn new(seed: u64) -> Random {
        Random { rng: StdRng::seed_from_u64(seed), seen: HashSet::new() }
    }
}

impl Strategy for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    fn propose(&mut self, space: &Space) -> Option<Candidate> {
        for _ in 0..MAX_DRAWS {
            let candidate = Candidate(
                space.params.iter().map(|p| (p.name.clone(), sample_value(&p.domain, &mut self.rng))).collect(),
            );
            if self.seen.insert(candidate.to_json()) {
                return Some(candidate);
            }
        }
        None
    }

    fn observe(&mut self, trial: &Trial) {
        self.seen.insert(trial.params.to_json());
    }

    fn pending(&mut self, candidate: &Candidate) {
        self.seen.insert(candidate.to_json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn seeded_distinct_and_in_domain() {
        let space = Space::from_toml(
            r#"
[study]
name = "r"
seed = 3
[backend]
kind = "llamacpp"
command = ["x"]
model = "m"
[params]
a = { values = [1, 2], flag = "-a" }
c = { min = 256, max = 4096, log = true, flag = "-c" }
"#,
            "r.toml",
            Path::new("/"),
        )
        .unwrap();
        let draw = |seed| {
            let mut r = Random::new(seed);
            (0..20).map(|_| r.propose(&space).unwrap()).collect::<Vec<_>>()
        };
        let a = draw(3);
        assert_eq!(a, draw(3));
        assert_ne!(a, draw(4));
        for c in &a {
            for p in &space.params {
                assert!(p.domain.contains(c.get(&p.name).unwrap()), "{c:?}");
            }
        }
        let mut keys: Vec<String> = a.iter().map(Candidate::to_json).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 20);
    }
}
