//! Stored deployments (`apply`) and watch measurements (`watch`): tables `deployments` and
//! `watches` (issue 19).

use serde::Serialize;

use super::{Error, Store, now_ms};
use crate::measure::Summary;
use crate::trial::{Fingerprint, StudyId};

/// Where an `apply` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployState {
    /// Started; the file may be written and the canary running (or the process was killed).
    Running,
    /// The canary held: the new configuration stays.
    Kept,
    /// The canary failed: the previous file is back and the service restarted.
    RolledBack,
    /// The apply could not finish (a restart command failed, the service never answered, the
    /// rollback failed); `reason` says what is on disk.
    Failed,
    /// Found `running` by a later apply: the process was killed.
    Interrupted,
}

impl DeployState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Running => "running",
            DeployState::Kept => "kept",
            DeployState::RolledBack => "rolled-back",
            DeployState::Failed => "failed",
            DeployState::Interrupted => "interrupted",
        }
    }

    fn from_name(s: &str) -> Result<DeployState, Error> {
        [
            DeployState::Running,
            DeployState::Kept,
            DeployState::RolledBack,
            DeployState::Failed,
            DeployState::Interrupted,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| Error::Corrupt(format!("deployment state '{s}'")))
    }
}

/// A canary's (or a watch run's) figures against its reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    pub objective: f64,
    /// measured / reference, with its bootstrap 95 % CI.
    pub ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Summed graded SLO violation (0 = every SLO met).
    pub violation: f64,
    #[serde(skip)]
    pub summary: Option<Summary>,
}

/// One `apply`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub trial_number: i64,
    /// The env file or drop-in written.
    pub target_path: String,
    /// The service's base URL.
    pub url: String,
    pub state: DeployState,
    pub reason: Option<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// What the study measured for the trial.
    pub study_objective: Option<f64>,
    /// The canary; `None` when none ran.
    pub canary: Option<Measured>,
}

#[derive(sqlx::FromRow)]
struct DeploymentRow {
    id: i64,
    trial_number: i64,
    target_path: String,
    url: String,
    state: String,
    reason: Option<String>,
    started_at_ms: i64,
    ended_at_ms: Option<i64>,
    study_objective: Option<f64>,
    canary_objective: Option<f64>,
    ratio: Option<f64>,
    ci_low: Option<f64>,
    ci_high: Option<f64>,
    canary_violation: Option<f64>,
}

impl DeploymentRow {
    fn into_deployment(self) -> Result<Deployment, Error> {
        let canary = match (self.canary_objective, self.canary_violation) {
            (Some(objective), Some(violation)) => Some(Measured {
                objective,
                ratio: self.ratio.unwrap_or(f64::NAN),
                ci_low: self.ci_low.unwrap_or(f64::NAN),
                ci_high: self.ci_high.unwrap_or(f64::NAN),
                violation,
                summary: None,
            }),
            _ => None,
        };
        Ok(Deployment {
            id: self.id,
            trial_number: self.trial_number,
            target_path: self.target_path,
            url: self.url,
            state: DeployState::from_name(&self.state)?,
            reason: self.reason,
            started_at_ms: self.started_at_ms,
            ended_at_ms: self.ended_at_ms,
            study_objective: self.study_objective,
            canary,
        })
    }
}

/// One `watch` measurement of the live service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchRun {
    pub id: i64,
    /// The deployment in place, when one is recorded.
    pub deployment_id: Option<i64>,
    pub at_ms: i64,
    /// `ok`, `regression`, `drift` or `unmeasured`.
    pub status: String,
    pub reason: String,
    /// `None` when nothing could be measured.
    pub measured: Option<Measured>,
    /// The deployed baseline it was compared with.
    pub baseline: Option<f64>,
    /// What differs from the study's fingerprint; `None` when nothing does.
    pub drift: Option<String>,
    pub fingerprint: Fingerprint,
    /// The study a `--retune` started.
    pub retune_study: Option<String>,
}

#[derive(sqlx::FromRow)]
struct WatchRow {
    id: i64,
    deployment_id: Option<i64>,
    at_ms: i64,
    status: String,
    reason: String,
    objective: Option<f64>,
    baseline: Option<f64>,
    ratio: Option<f64>,
    ci_low: Option<f64>,
    ci_high: Option<f64>,
    violation: Option<f64>,
    drift: Option<String>,
    fingerprint_json: String,
    retune_study: Option<String>,
}

impl Store {
    /// Record that an apply of `trial_number` starts (before any file is touched). Deployments
    /// of the study still `running` are from killed applies: they become `interrupted`.
    pub async fn begin_deployment(
        &self,
        study: StudyId,
        trial_number: i64,
        target: (&str, &str),
        study_objective: Option<f64>,
    ) -> Result<i64, Error> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query(
            r#"UPDATE deployments
               SET state = 'interrupted', ended_at_ms = $2,
                   reason = 'the apply process was killed before it finished'
               WHERE study_id = $1
                 AND state = 'running'"#,
        )
        .bind(study.0)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (id,): (i64,) = sqlx::query_as(
            r#"INSERT INTO deployments
                 (study_id, trial_number, target_path, url, state, started_at_ms, pid, study_objective)
               VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)
               RETURNING id"#,
        )
        .bind(study.0)
        .bind(trial_number)
        .bind(target.0)
        .bind(target.1)
        .bind(now)
        .bind(i64::from(std::process::id()))
        .bind(study_objective)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Record how an apply ended, with its canary's figures when one ran.
    pub async fn finish_deployment(
        &self,
        id: i64,
        state: DeployState,
        reason: &str,
        canary: Option<&Measured>,
    ) -> Result<(), Error> {
        let summary = canary.and_then(|c| c.summary.as_ref()).map(|s| serde_json::to_string(s).expect("plain data"));
        sqlx::query(
            r#"UPDATE deployments
               SET state = $2, reason = $3, ended_at_ms = $4, canary_objective = $5, ratio = $6,
                   ci_low = $7, ci_high = $8, canary_violation = $9, canary_json = $10
               WHERE id = $1"#,
        )
        .bind(id)
        .bind(state.as_str())
        .bind(reason)
        .bind(now_ms())
        .bind(canary.map(|c| c.objective))
        .bind(canary.map(|c| c.ratio))
        .bind(canary.map(|c| c.ci_low))
        .bind(canary.map(|c| c.ci_high))
        .bind(canary.map(|c| c.violation))
        .bind(summary)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every apply of `study`, oldest first.
    pub async fn deployments(&self, study: StudyId) -> Result<Vec<Deployment>, Error> {
        let rows = sqlx::query_as::<_, DeploymentRow>(
            r#"SELECT id, trial_number, target_path, url, state, reason, started_at_ms, ended_at_ms,
                      study_objective, canary_objective, ratio, ci_low, ci_high, canary_violation
               FROM deployments
               WHERE study_id = $1
               ORDER BY id"#,
        )
        .bind(study.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(DeploymentRow::into_deployment).collect()
    }

    /// The newest apply of `study` that was kept: the configuration in place.
    pub async fn kept_deployment(&self, study: StudyId) -> Result<Option<Deployment>, Error> {
        let row = sqlx::query_as::<_, DeploymentRow>(
            r#"SELECT id, trial_number, target_path, url, state, reason, started_at_ms, ended_at_ms,
                      study_objective, canary_objective, ratio, ci_low, ci_high, canary_violation
               FROM deployments
               WHERE study_id = $1
                 AND state = 'kept'
               ORDER BY id DESC
               LIMIT 1"#,
        )
        .bind(study.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(DeploymentRow::into_deployment).transpose()
    }

    /// Record one watch measurement; returns its id.
    pub async fn save_watch(&self, study: StudyId, w: &WatchRun) -> Result<i64, Error> {
        let m = w.measured.as_ref();
        let summary = m.and_then(|c| c.summary.as_ref()).map(|s| serde_json::to_string(s).expect("plain data"));
        let (id,): (i64,) = sqlx::query_as(
            r#"INSERT INTO watches
                 (study_id, deployment_id, at_ms, status, reason, objective, baseline, ratio, ci_low,
                  ci_high, violation, drift, fingerprint_json, summary_json, retune_study)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
               RETURNING id"#,
        )
        .bind(study.0)
        .bind(w.deployment_id)
        .bind(if w.at_ms == 0 { now_ms() } else { w.at_ms })
        .bind(&w.status)
        .bind(&w.reason)
        .bind(m.map(|c| c.objective))
        .bind(w.baseline)
        .bind(m.map(|c| c.ratio))
        .bind(m.map(|c| c.ci_low))
        .bind(m.map(|c| c.ci_high))
        .bind(m.map(|c| c.violation))
        .bind(w.drift.as_deref())
        .bind(serde_json::to_string(&w.fingerprint).expect("plain data"))
        .bind(summary)
        .bind(w.retune_study.as_deref())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Name the study a watch run's `--retune` started.
    pub async fn set_watch_retune(&self, watch: i64, study_name: &str) -> Result<(), Error> {
        sqlx::query(
            r#"UPDATE watches
               SET retune_study = $2
               WHERE id = $1"#,
        )
        .bind(watch)
        .bind(study_name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every watch measurement of `study`, oldest first.
    pub async fn watches(&self, study: StudyId) -> Result<Vec<WatchRun>, Error> {
        let rows = sqlx::query_as::<_, WatchRow>(
            r#"SELECT id, deployment_id, at_ms, status, reason, objective, baseline, ratio, ci_low,
                      ci_high, violation, drift, fingerprint_json, retune_study
               FROM watches
               WHERE study_id = $1
               ORDER BY at_ms, id"#,
        )
        .bind(study.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let measured = match (r.objective, r.violation) {
                    (Some(objective), Some(violation)) => Some(Measured {
                        objective,
                        ratio: r.ratio.unwrap_or(f64::NAN),
                        ci_low: r.ci_low.unwrap_or(f64::NAN),
                        ci_high: r.ci_high.unwrap_or(f64::NAN),
                        violation,
                        summary: None,
                    }),
                    _ => None,
                };
                Ok(WatchRun {
                    id: r.id,
                    deployment_id: r.deployment_id,
                    at_ms: r.at_ms,
                    status: r.status,
                    reason: r.reason,
                    measured,
                    baseline: r.baseline,
                    drift: r.drift,
                    fingerprint: serde_json::from_str(&r.fingerprint_json)
                        .map_err(|e| Error::Corrupt(format!("watch fingerprint: {e}")))?,
                    retune_study: r.retune_study,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Direction;
    use crate::store::NewStudy;

    async fn study(store: &Store) -> (crate::trial::Study, Fingerprint) {
        let fp = Fingerprint {
            engine_version: "v1".into(),
            model_sha256: [("/m/a.gguf".to_string(), "aa".to_string())].into(),
            host: crate::measure::system::host(),
        };
        let s = store
            .create_study(&NewStudy {
                name: "s",
                backend: Some(crate::space::BackendKind::Llamacpp),
                strategy: Some(crate::space::StrategyKind::Grid),
                objective_metric: "goodput_rps",
                direction: Direction::Maximize,
                space_toml: "",
                fingerprint: &fp,
            })
            .await
            .unwrap();
        (s, fp)
    }

    #[tokio::test]
    async fn deployments_record_how_each_apply_ended() {
        let store = Store::open_in_memory().await.unwrap();
        let (s, _) = study(&store).await;
        let killed = store.begin_deployment(s.id, 3, ("/e/l.env", "http://h:1"), Some(2.0)).await.unwrap();
        let id = store.begin_deployment(s.id, 3, ("/e/l.env", "http://h:1"), Some(2.0)).await.unwrap();
        let canary =
            Measured { objective: 1.9, ratio: 0.95, ci_low: 0.9, ci_high: 1.01, violation: 0.0, summary: None };
        store.finish_deployment(id, DeployState::Kept, "held", Some(&canary)).await.unwrap();
        let all = store.deployments(s.id).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].id, all[0].state, all[0].canary.is_none()), (killed, DeployState::Interrupted, true));
        assert_eq!((all[1].state, all[1].reason.as_deref()), (DeployState::Kept, Some("held")));
        assert_eq!(all[1].canary.as_ref(), Some(&canary));
        assert_eq!(all[1].study_objective, Some(2.0));
        let rolled = store.begin_deployment(s.id, 5, ("/e/l.env", "http://h:1"), None).await.unwrap();
        store.finish_deployment(rolled, DeployState::RolledBack, "missed SLO", None).await.unwrap();
        assert_eq!(store.kept_deployment(s.id).await.unwrap().unwrap().id, id, "a rollback leaves the kept one");
    }

    #[tokio::test]
    async fn watch_runs_keep_their_fingerprint() {
        let store = Store::open_in_memory().await.unwrap();
        let (s, fp) = study(&store).await;
        let m = Measured { objective: 1.0, ratio: 0.5, ci_low: 0.4, ci_high: 0.6, violation: 0.0, summary: None };
        let w = WatchRun {
            id: 0,
            deployment_id: None,
            at_ms: 5,
            status: "drift".into(),
            reason: "model changed".into(),
            measured: Some(m),
            baseline: Some(2.0),
            drift: Some("model '/m/a.gguf' sha256 aa -> bb".into()),
            fingerprint: fp.clone(),
            retune_study: None,
        };
        let id = store.save_watch(s.id, &w).await.unwrap();
        store.set_watch_retune(id, "s-retune-1").await.unwrap();
        let back = store.watches(s.id).await.unwrap();
        assert_eq!(back, vec![WatchRun { id, retune_study: Some("s-retune-1".into()), ..w }]);
    }
}
