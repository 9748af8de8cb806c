//! Trials begun for a purpose (issue 16): a re-measure is its own row with the same params and
//! hash, marked `intensify` (or `anchor`, `retry`), so it counts toward the budget and the runs
//! of a point are its finished trials with that hash.

use super::{Error, Store};
use crate::space::Candidate;
use crate::trial::{Purpose, StudyId, TrialId};

impl Store {
    /// Insert a `running` trial with the next number, marked with why it runs. Persisted before
    /// the server starts, so a crash mid-trial leaves a trace.
    pub async fn begin_trial_for(
        &self,
        study: StudyId,
        params: &Candidate,
        purpose: Purpose,
    ) -> Result<(TrialId, i64), Error> {
        let mut tx = self.pool.begin().await?;
        let begun = super::insert_trial(&mut tx, study, params, None, purpose).await?;
        tx.commit().await?;
        Ok(begun)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use crate::trial::Purpose;

    /// A re-measure is a new row (new number) with the same params, and reads back its purpose.
    #[tokio::test]
    async fn a_remeasure_is_its_own_numbered_trial_with_the_same_params() {
        let store = Store::open_in_memory().await.unwrap();
        let fingerprint = crate::trial::Fingerprint {
            engine_version: "test".into(),
            model_sha256: Default::default(),
            host: crate::measure::system::host(),
        };
        let study = store
            .create_study(&crate::store::NewStudy {
                name: "s",
                backend: Some(crate::space::BackendKind::Llamacpp),
                strategy: Some(crate::space::StrategyKind::Tpe),
                objective_metric: "goodput_rps",
                direction: crate::space::Direction::Maximize,
                space_toml: "[study]",
                fingerprint: &fingerprint,
            })
            .await
            .unwrap();
        let params = crate::space::Candidate::default();
        let (_, first) = store.begin_trial(study.id, &params).await.unwrap();
        let (_, again) = store.begin_trial_for(study.id, &params, Purpose::Intensify).await.unwrap();
        assert_eq!((first, again), (1, 2));
        let trials = store.trials(study.id).await.unwrap();
        let purposes: Vec<Purpose> = trials.iter().map(|t| t.purpose).collect();
        assert_eq!(purposes, [Purpose::Search, Purpose::Intensify]);
        assert_eq!(trials[0].params, trials[1].params);
    }
}
