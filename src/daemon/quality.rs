//! The quantization quality guard, wired: answers of the highest-precision model variant are
//! taken once per study run (a server started just for them), then every trial's server answers
//! the same greedy prompts before it stops, and `measure::quality` scores the drift.
//!
//! Only a model-template parameter (`template = "model"`) makes variants; without one the
//! reference is the trial's own configuration at the first grid point.

use tracing::info;

use crate::backend::Backend;
use crate::backend::session::{ServerSession, Start};
use crate::measure::quality::{self, QualityScore};
use crate::shutdown::Shutdown;
use crate::space::{Apply, Candidate, QualitySpec, Space, Value};
use crate::workload::{self, Prompt, Target, greedy};

/// The guard for one study run: prompts and the reference variant's answers.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    /// Known-answer prompts first, then the extra prompts.
    prompts: Vec<Prompt>,
    known: usize,
    reference: Vec<Option<String>>,
    max_tokens: u32,
    seed: u64,
}

fn load_prompts(spec: &QualitySpec) -> anyhow::Result<(Vec<Prompt>, usize)> {
    let known = workload::load_dataset(&spec.known_answers)?;
    let n_known = known.len();
    let extra = workload::load_dataset(&spec.prompts)?;
    Ok((known.into_iter().chain(extra.into_iter().take(spec.count as usize)).collect(), n_known))
}

/// The reference candidate: each parameter's default (else its first grid point), with the
/// model-template parameter at its highest-precision value.
fn reference_candidate(space: &Space) -> (Candidate, String) {
    let mut values = std::collections::BTreeMap::new();
    let mut label = String::from("first grid point");
    for p in &space.params {
        let points = p.domain.grid_points();
        let mut v: Value = p.default.clone().or_else(|| points.first().cloned()).expect("a param has values");
        if let (Apply::Template(_), Some(best)) =
            (&p.apply, points.iter().max_by_key(|x| quality::precision_rank(&x.to_string())))
        {
            v = best.clone();
            label = format!("{}={}", p.name, v);
        }
        values.insert(p.name.clone(), v);
    }
    (Candidate(values), label)
}

/// Start the reference variant (through a server session, like any trial), collect its
/// answers, stop it.
pub(super) async fn prepare(
    space: &Space,
    backend: &dyn Backend,
    client: &reqwest::Client,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Guard>> {
    let Some(spec) = &space.quality else { return Ok(None) };
    let (prompts, known) = load_prompts(spec)?;
    let (candidate, label) = reference_candidate(space);
    let plan = backend
        .plan(&candidate)
        .map_err(|r| anyhow::anyhow!("quality reference '{label}' cannot be planned: {}", r.message))?;
    let mut session = ServerSession::open(backend, client.clone())?;
    let started = session.start(&plan, shutdown).await;
    let reference = match started {
        Ok(Start::Ready(ready)) => Ok(greedy::answers(
            client,
            &ready.target,
            &prompts,
            spec.max_tokens,
            space.workload.seed,
            space.workload.request_timeout,
        )
        .await),
        Ok(Start::Failed { failure, .. }) => Err(anyhow::anyhow!(
            "quality reference '{label}' could not be served [{}]: {}",
            failure.class.as_str(),
            failure.message
        )),
        Ok(Start::Interrupted { .. }) => Err(anyhow::anyhow!("interrupted while the quality reference started")),
        Err(e) => Err(e),
    };
    session.finish(shutdown, None, false).await?;
    let reference = reference?;
    let ok = reference.iter().filter(|a| a.is_some()).count();
    info!(reference = %label, answered = ok, prompts = prompts.len(), "quality reference ready");
    Ok(Some(Guard { prompts, known, reference, max_tokens: spec.max_tokens, seed: space.workload.seed }))
}

impl Guard {
    /// The trial server's answers (call before stopping it).
    pub(super) async fn answers(
        &self,
        client: &reqwest::Client,
        target: &Target,
        timeout: std::time::Duration,
    ) -> Vec<Option<String>> {
        greedy::answers(client, target, &self.prompts, self.max_tokens, self.seed, timeout).await
    }

    /// Score answers against the reference and the known answers.
    pub(super) fn score(&self, answers: &[Option<String>]) -> QualityScore {
        let known: Vec<(Option<String>, Vec<String>)> = self.prompts[..self.known]
            .iter()
            .zip(answers)
            .map(|(p, a)| {
                let accept = if p.accept.is_empty() { p.answer.iter().cloned().collect() } else { p.accept.clone() };
                (a.clone(), accept)
            })
            .collect();
        quality::score(answers, &self.reference, &known)
    }
}
