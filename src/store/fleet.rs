//! Shared studies (issue 18): the SQL of workers that run one study from several hosts.
//!
//! A worker is a row of `runs` with its host and fingerprint. It claims a trial inside a
//! [`Claim`]: one transaction that, on PostgreSQL, holds the study's advisory lock
//! (`pg_advisory_xact_lock`), so proposals of all workers are serialized and each sees every
//! running trial. Inside it, trials of workers that stopped heartbeating become `lost`, the
//! trials are read, and the chosen candidate is inserted as `running` with the next number.
//! What to run is decided by the daemon, not here.

use sqlx::FromRow;

use super::{Error, Kind, RunId, Store, insert_trial, now_ms, select_trials};
use crate::space::Candidate;
use crate::trial::{Fingerprint, StudyId, Trial, TrialId};

/// A worker of a study, as `status` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, FromRow)]
pub struct Worker {
    /// Its row in `runs`.
    pub id: i64,
    /// Host name (`None` for runs recorded before workers, or by `tune` on SQLite).
    pub host: Option<String>,
    pub pid: i64,
    pub started_at_ms: i64,
    /// Last heartbeat (unix ms, the worker's clock).
    pub heartbeat_ms: i64,
    /// `None` while it works (or if it was killed).
    pub ended_at_ms: Option<i64>,
    pub stop_reason: Option<String>,
    /// Number of the trial it runs now, if any.
    pub in_flight: Option<i64>,
    /// Trials it finished (complete, infeasible or pruned).
    pub trials_done: i64,
}

/// An open claim: the transaction in which a worker picks its next trial. Dropping it without
/// [`Claim::commit`] rolls everything back (and releases the lock).
pub struct Claim {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    study: StudyId,
}

impl Store {
    /// Record that process `pid` on `host` starts working on `study`, with its fingerprint.
    pub async fn begin_worker(
        &self,
        study: StudyId,
        pid: u32,
        host: &str,
        fingerprint: &Fingerprint,
        max_trials: Option<u32>,
        deadline_ms: Option<i64>,
    ) -> Result<RunId, Error> {
        let (id,): (i64,) = sqlx::query_as(
            r#"INSERT INTO runs
                 (study_id, pid, started_at_ms, heartbeat_ms, max_trials, deadline_ms, host, fingerprint_json)
               VALUES ($1, $2, $3, $3, $4, $5, $6, $7)
               RETURNING id"#,
        )
        .bind(study.0)
        .bind(i64::from(pid))
        .bind(now_ms())
        .bind(max_trials.map(i64::from))
        .bind(deadline_ms)
        .bind(host)
        .bind(serde_json::to_string(fingerprint).expect("plain data"))
        .fetch_one(&self.pool)
        .await?;
        Ok(RunId(id))
    }

    /// Every worker (run) of `study`, oldest first, with its trial in flight and trials done.
    pub async fn workers(&self, study: StudyId) -> Result<Vec<Worker>, Error> {
        Ok(sqlx::query_as::<_, Worker>(
            r#"SELECT r.id, r.host, r.pid, r.started_at_ms, r.heartbeat_ms, r.ended_at_ms, r.stop_reason,
                      (SELECT MAX(t.number) FROM trials t WHERE t.run_id = r.id AND t.state = 'running') AS in_flight,
                      (SELECT COUNT(*) FROM trials t
                        WHERE t.run_id = r.id AND t.state IN ('complete', 'infeasible', 'pruned')) AS trials_done
               FROM runs r
               WHERE r.study_id = $1
               ORDER BY r.id"#,
        )
        .bind(study.0)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Open a claim on `study`: a transaction holding the study's advisory lock on PostgreSQL
    /// (on SQLite one process runs a study, and SQLite serializes writers anyway).
    pub async fn begin_claim(&self, study: StudyId) -> Result<Claim, Error> {
        let mut tx = self.pool.begin().await?;
        if self.kind == Kind::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(study.0).execute(&mut *tx).await?;
        }
        Ok(Claim { tx, study })
    }

    /// The host class `study` admits, if it declares one.
    pub async fn host_class(&self, study: StudyId) -> Result<Option<String>, Error> {
        let (class,): (Option<String>,) = sqlx::query_as(
            r#"SELECT host_class
               FROM studies
               WHERE id = $1"#,
        )
        .bind(study.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(class)
    }

    /// Declare the class of hosts `study` admits.
    pub async fn set_host_class(&self, study: StudyId, class: &str) -> Result<(), Error> {
        sqlx::query(
            r#"UPDATE studies
               SET host_class = $2
               WHERE id = $1"#,
        )
        .bind(study.0)
        .bind(class)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Take the study's end-of-study validation for `run`; `false` when another worker has it.
    pub async fn claim_validation(&self, study: StudyId, run: RunId) -> Result<bool, Error> {
        let done = sqlx::query(
            r#"UPDATE studies
               SET validation_run_id = $2
               WHERE id = $1
                 AND validation_run_id IS NULL"#,
        )
        .bind(study.0)
        .bind(run.0)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Claim {
    /// Trials still `running` whose worker's last heartbeat is older than `stale_before_ms`
    /// (unix ms) become `lost`; returns their numbers.
    pub async fn mark_lost(&mut self, stale_before_ms: i64) -> Result<Vec<i64>, Error> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            r#"UPDATE trials
               SET state = 'lost', ended_at_ms = $3
               WHERE study_id = $1
                 AND state = 'running'
                 AND run_id IN (SELECT id FROM runs WHERE study_id = $1 AND heartbeat_ms < $2)
               RETURNING number"#,
        )
        .bind(self.study.0)
        .bind(stale_before_ms)
        .bind(now_ms())
        .fetch_all(&mut *self.tx)
        .await?;
        let mut numbers: Vec<i64> = rows.into_iter().map(|(n,)| n).collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// All trials of the study, in number order, as the claim sees them.
    pub async fn trials(&mut self) -> Result<Vec<Trial>, Error> {
        select_trials(&mut *self.tx, self.study).await
    }

    /// Insert `params` as a `running` trial of `run` with the next number.
    pub async fn begin_trial(
        &mut self,
        params: &Candidate,
        run: RunId,
        purpose: crate::trial::Purpose,
    ) -> Result<(TrialId, i64), Error> {
        insert_trial(&mut self.tx, self.study, params, Some(run), purpose).await
    }

    /// Make the claim visible to the other workers (and release the lock).
    pub async fn commit(self) -> Result<(), Error> {
        self.tx.commit().await?;
        Ok(())
    }
}
