//! Stored winner re-validations (`validations` table).

use serde::Serialize;

use super::{Error, Store, now_ms};
use crate::space::Candidate;
use crate::trial::{self, Study, StudyId, Trial, Winner};

/// A re-validation of a study's winner against the default configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validation {
    pub winner_number: i64,
    /// Objective metric compared.
    pub metric: String,
    /// The default configuration measured as the baseline.
    pub baseline: Candidate,
    /// Objective of each default run, in run order.
    pub default_values: Vec<f64>,
    /// Objective of each winner run, in run order (interleaved with the default's).
    pub winner_values: Vec<f64>,
    /// mean(winner) / mean(default).
    pub ratio: f64,
    /// Bootstrap 95 % confidence interval of `ratio`.
    pub ci_low: f64,
    pub ci_high: f64,
    pub created_at_ms: i64,
}

#[derive(sqlx::FromRow)]
struct ValidationRow {
    winner_number: i64,
    metric: String,
    baseline_json: String,
    default_values: String,
    winner_values: String,
    ratio: f64,
    ci_low: f64,
    ci_high: f64,
    created_at_ms: i64,
}

impl Store {
    /// Record a re-validation of `study`'s winner.
    pub async fn save_validation(&self, study: StudyId, v: &Validation) -> Result<(), Error> {
        let json = |x: &Vec<f64>| serde_json::to_string(x).expect("f64 lists serialize");
        sqlx::query(
            r#"INSERT INTO validations
                 (study_id, winner_number, metric, baseline_json, default_values, winner_values,
                  ratio, ci_low, ci_high, created_at_ms)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#,
        )
        .bind(study.0)
        .bind(v.winner_number)
        .bind(&v.metric)
        .bind(v.baseline.to_json())
        .bind(json(&v.default_values))
        .bind(json(&v.winner_values))
        .bind(v.ratio)
        .bind(v.ci_low)
        .bind(v.ci_high)
        .bind(if v.created_at_ms == 0 { now_ms() } else { v.created_at_ms })
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The configuration `study` names (`trial::winner`): its latest validation's winner, else
    /// the intensified incumbent, else the least violating of `trials` (the study's).
    pub async fn named_winner<'a>(&self, study: &Study, trials: &'a [Trial]) -> Result<Option<Winner<'a>>, Error> {
        let validated = self.latest_validation(study.id).await?.map(|v| v.winner_number);
        Ok(trial::winner(trials, study.direction, validated))
    }

    /// The latest re-validation of `study`, if any.
    pub async fn latest_validation(&self, study: StudyId) -> Result<Option<Validation>, Error> {
        let row = sqlx::query_as::<_, ValidationRow>(
            r#"SELECT winner_number, metric, baseline_json, default_values, winner_values,
                      ratio, ci_low, ci_high, created_at_ms
               FROM validations
               WHERE study_id = $1
               ORDER BY id DESC
               LIMIT 1"#,
        )
        .bind(study.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let corrupt = |e: serde_json::Error| Error::Corrupt(format!("validation: {e}"));
        Ok(Some(Validation {
            winner_number: r.winner_number,
            metric: r.metric,
            baseline: serde_json::from_str(&r.baseline_json).map_err(corrupt)?,
            default_values: serde_json::from_str(&r.default_values).map_err(corrupt)?,
            winner_values: serde_json::from_str(&r.winner_values).map_err(corrupt)?,
            ratio: r.ratio,
            ci_low: r.ci_low,
            ci_high: r.ci_high,
            created_at_ms: r.created_at_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewStudy;

    #[tokio::test]
    async fn validation_round_trips() {
        let store = Store::open_in_memory().await.unwrap();
        let fp = crate::trial::Fingerprint {
            engine_version: "v".into(),
            model_sha256: Default::default(),
            host: crate::measure::system::host(),
        };
        let study = store
            .create_study(&NewStudy {
                name: "s",
                backend: Some(crate::space::BackendKind::Llamacpp),
                strategy: Some(crate::space::StrategyKind::Tpe),
                objective_metric: "goodput_rps",
                direction: crate::space::Direction::Maximize,
                space_toml: "",
                fingerprint: &fp,
            })
            .await
            .unwrap();
        assert_eq!(store.latest_validation(study.id).await.unwrap(), None);
        let v = Validation {
            winner_number: 7,
            metric: "goodput_rps".into(),
            baseline: Candidate::default(),
            default_values: vec![1.0, 1.5],
            winner_values: vec![2.0, 2.5],
            ratio: 1.8,
            ci_low: 1.5,
            ci_high: 2.1,
            created_at_ms: 42,
        };
        store.save_validation(study.id, &v).await.unwrap();
        assert_eq!(store.latest_validation(study.id).await.unwrap(), Some(v));
    }
}
