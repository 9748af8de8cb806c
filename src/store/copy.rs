//! `db copy FROM TO`: every study with its runs, trials, samples and validations, from one
//! store to another (SQLite ⇄ PostgreSQL, or the same kind), idempotent.
//!
//! Rows are copied column by column as the source has them (`SELECT *`), typed by the source
//! column's declared type, so a column that a later migration adds is copied without a change
//! here (and a column the target lacks is an error naming it). Row ids are the target's own:
//! references (`study_id`, `run_id`, `trial_id`) are mapped. What the target already holds is
//! kept as it is: a study by name, a run by (pid, start), a trial by number (with its samples),
//! a validation by (time, winner); so copying twice adds nothing the second time.

use std::collections::HashMap;

use sqlx::any::{AnyRow, AnyTypeInfoKind};
use sqlx::{Column, Row};

use super::{Error, Store};

/// What a copy wrote (rows new in the target) and left (already there).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    pub studies: usize,
    pub studies_present: usize,
    pub runs: usize,
    pub trials: usize,
    pub trials_present: usize,
    pub samples: usize,
    pub validations: usize,
}

/// One value as read, typed by its column.
#[derive(Debug, Clone)]
enum Cell {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

/// A row: column names with their values.
type Cells = Vec<(String, Cell)>;

fn cells(row: &AnyRow) -> Result<Cells, Error> {
    row.columns()
        .iter()
        .map(|c| {
            let i = c.ordinal();
            let cell = match c.type_info().kind() {
                AnyTypeInfoKind::BigInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::SmallInt => {
                    Cell::Int(row.try_get(i)?)
                }
                AnyTypeInfoKind::Double | AnyTypeInfoKind::Real => Cell::Real(row.try_get(i)?),
                AnyTypeInfoKind::Bool => Cell::Int(row.try_get::<Option<bool>, _>(i)?.map(i64::from)),
                _ => Cell::Text(row.try_get(i)?),
            };
            Ok((c.name().to_string(), cell))
        })
        .collect()
}

fn int(cells: &Cells, name: &str) -> Option<i64> {
    cells.iter().find(|(n, _)| n == name).and_then(|(_, c)| match c {
        Cell::Int(v) => *v,
        _ => None,
    })
}

fn text(cells: &Cells, name: &str) -> Option<String> {
    cells.iter().find(|(n, _)| n == name).and_then(|(_, c)| match c {
        Cell::Text(v) => v.clone(),
        _ => None,
    })
}

/// `cells` without `drop`, with `set` replacing (or adding) columns.
fn with(cells: &Cells, drop: &[&str], set: &[(&str, Cell)]) -> Cells {
    let mut out: Cells = cells.iter().filter(|(n, _)| !drop.contains(&n.as_str())).cloned().collect();
    for (name, cell) in set {
        match out.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = cell.clone(),
            None => out.push((name.to_string(), cell.clone())),
        }
    }
    out
}

/// Insert `cells` into `table`; the new row's id when `returning_id`.
async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    cells: &Cells,
    returning_id: bool,
) -> Result<Option<i64>, Error> {
    let names: Vec<&str> = cells.iter().map(|(n, _)| n.as_str()).collect();
    let params: Vec<String> = (1..=cells.len()).map(|i| format!("${i}")).collect();
    // Table and column names come from the databases' own schemas, never from input.
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({}){}",
        names.join(", "),
        params.join(", "),
        if returning_id { " RETURNING id" } else { "" }
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (_, cell) in cells {
        query = match cell {
            Cell::Int(v) => query.bind(*v),
            Cell::Real(v) => query.bind(*v),
            Cell::Text(v) => query.bind(v.clone()),
        };
    }
    match returning_id {
        true => Ok(Some(query.fetch_one(&mut **tx).await?.try_get::<i64, _>(0)?)),
        false => {
            query.execute(&mut **tx).await?;
            Ok(None)
        }
    }
}

/// Rows of `table` where `column` = `id`, in id (or `order`) order, from `store`.
async fn rows(store: &Store, table: &str, column: &str, id: i64, order: &str) -> Result<Vec<Cells>, Error> {
    let sql = format!("SELECT * FROM {table} WHERE {column} = $1 ORDER BY {order}");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_all(&store.pool).await?;
    rows.iter().map(cells).collect()
}

/// Copy every study of `from` into `to` (see the module docs).
pub async fn copy(from: &Store, to: &Store) -> Result<CopyReport, Error> {
    let mut report = CopyReport::default();
    let studies = sqlx::query("SELECT * FROM studies ORDER BY id").fetch_all(&from.pool).await?;
    for row in &studies {
        copy_study(from, to, &cells(row)?, &mut report).await?;
    }
    Ok(report)
}

async fn copy_study(from: &Store, to: &Store, study: &Cells, report: &mut CopyReport) -> Result<(), Error> {
    let old_id = int(study, "id").ok_or_else(|| Error::Corrupt("study without id".into()))?;
    let name = text(study, "name").ok_or_else(|| Error::Corrupt("study without name".into()))?;
    let mut tx = to.pool.begin().await?;
    let existing: Option<(i64, String)> = sqlx::query_as("SELECT id, space_hash FROM studies WHERE name = $1")
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await?;
    let new_id = match existing {
        Some((id, hash)) if Some(&hash) == text(study, "space_hash").as_ref() => {
            report.studies_present += 1;
            id
        }
        Some(_) => {
            return Err(Error::Corrupt(format!(
                "study '{name}' exists in the target with a different search space; not merged"
            )));
        }
        None => {
            report.studies += 1;
            let row = with(study, &["id"], &[("validation_run_id", Cell::Int(None))]);
            insert(&mut tx, "studies", &row, true).await?.expect("RETURNING id")
        }
    };
    let run_ids = copy_runs(from, &mut tx, old_id, new_id, report).await?;
    copy_trials(from, &mut tx, old_id, new_id, &run_ids, report).await?;
    copy_validations(from, &mut tx, old_id, new_id, report).await?;
    tx.commit().await?;
    Ok(())
}

/// Runs (workers) of a study; returns old id → target id.
async fn copy_runs(
    from: &Store,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    old_study: i64,
    new_study: i64,
    report: &mut CopyReport,
) -> Result<HashMap<i64, i64>, Error> {
    let mut ids = HashMap::new();
    for run in rows(from, "runs", "study_id", old_study, "id").await? {
        let (old, pid, started) = (int(&run, "id"), int(&run, "pid"), int(&run, "started_at_ms"));
        let present: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM runs WHERE study_id = $1 AND pid = $2 AND started_at_ms = $3")
                .bind(new_study)
                .bind(pid)
                .bind(started)
                .fetch_optional(&mut **tx)
                .await?;
        let new = match present {
            Some((id,)) => id,
            None => {
                report.runs += 1;
                let row = with(&run, &["id"], &[("study_id", Cell::Int(Some(new_study)))]);
                insert(tx, "runs", &row, true).await?.expect("RETURNING id")
            }
        };
        if let Some(old) = old {
            ids.insert(old, new);
        }
    }
    Ok(ids)
}

/// Trials the target lacks (by number), each with its samples.
async fn copy_trials(
    from: &Store,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    old_study: i64,
    new_study: i64,
    run_ids: &HashMap<i64, i64>,
    report: &mut CopyReport,
) -> Result<(), Error> {
    for trial in rows(from, "trials", "study_id", old_study, "number").await? {
        let present: Option<(i64,)> = sqlx::query_as("SELECT id FROM trials WHERE study_id = $1 AND number = $2")
            .bind(new_study)
            .bind(int(&trial, "number"))
            .fetch_optional(&mut **tx)
            .await?;
        if present.is_some() {
            report.trials_present += 1;
            continue;
        }
        let run = int(&trial, "run_id").and_then(|r| run_ids.get(&r).copied());
        let row = with(&trial, &["id"], &[("study_id", Cell::Int(Some(new_study))), ("run_id", Cell::Int(run))]);
        let new_id = insert(tx, "trials", &row, true).await?.expect("RETURNING id");
        report.trials += 1;
        let old_id = int(&trial, "id").ok_or_else(|| Error::Corrupt("trial without id".into()))?;
        for sample in rows(from, "samples", "trial_id", old_id, "seq").await? {
            insert(tx, "samples", &with(&sample, &[], &[("trial_id", Cell::Int(Some(new_id)))]), false).await?;
            report.samples += 1;
        }
    }
    Ok(())
}

/// Validations the target lacks (by time and winner).
async fn copy_validations(
    from: &Store,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    old_study: i64,
    new_study: i64,
    report: &mut CopyReport,
) -> Result<(), Error> {
    for v in rows(from, "validations", "study_id", old_study, "id").await? {
        let present: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM validations WHERE study_id = $1 AND created_at_ms = $2 AND winner_number = $3",
        )
        .bind(new_study)
        .bind(int(&v, "created_at_ms"))
        .bind(int(&v, "winner_number"))
        .fetch_optional(&mut **tx)
        .await?;
        if present.is_none() {
            insert(tx, "validations", &with(&v, &["id"], &[("study_id", Cell::Int(Some(new_study)))]), false).await?;
            report.validations += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::measure::{Dist, Sample, Summary, Verdict};
    use crate::space::{Candidate, Direction, Value};
    use crate::store::{Finished, NewStudy, Validation, testdb::TestDb};
    use crate::trial::{Fingerprint, Outcome, StageTimes, Trial, TrialState};

    fn sample(i: usize) -> Sample {
        Sample {
            prompt_index: i,
            is_warmup: i == 0,
            sent: Duration::from_millis(10 * i as u64),
            first_token: Some(Duration::from_millis(10 * i as u64 + 5)),
            end: Duration::from_millis(10 * i as u64 + 50),
            chunk_gaps: vec![Duration::from_millis(3), Duration::from_millis(4)],
            output_tokens: 3,
            prompt_tokens: Some(20),
            status: 200,
            error: None,
            error_message: None,
            server: None,
        }
    }

    /// A study with a complete trial (4 samples), an infeasible one, a worker's lost trial and
    /// a validation.
    async fn fill(store: &Store) {
        let fp = Fingerprint {
            engine_version: "e".into(),
            model_sha256: BTreeMap::new(),
            host: crate::measure::system::host(),
        };
        let study = store
            .create_study(&NewStudy {
                name: "copied",
                backend: Some(crate::space::BackendKind::Llamacpp),
                strategy: Some(crate::space::StrategyKind::Tpe),
                objective_metric: "goodput_rps",
                direction: Direction::Maximize,
                space_toml: "[study]\nname = \"copied\"",
                fingerprint: &fp,
            })
            .await
            .unwrap();
        let c = |np: i64| Candidate([("np".to_string(), Value::Int(np))].into());
        let summary = Summary {
            requests: 3,
            succeeded: 3,
            ttft_ms: Dist { p95: 7.5, n: 3, ..Default::default() },
            goodput_rps: 2.5,
            ..Default::default()
        };
        let outcome = Outcome::Complete {
            summary,
            verdict: Verdict { objective: 2.5, violations: BTreeMap::new(), violation: 0.0 },
        };
        let samples: Vec<Sample> = (0..4).map(sample).collect();
        let (id, _) = store.begin_trial(study.id, &c(1)).await.unwrap();
        let stages = StageTimes { ready_ms: Some(12.0), ..Default::default() };
        store.finish_trial(id, &Finished { outcome: &outcome, plan: None, stages, samples: &samples }).await.unwrap();
        let (id, _) = store.begin_trial(study.id, &c(2)).await.unwrap();
        let oom = Outcome::Infeasible { class: "oom".parse().unwrap(), message: "out of memory".into() };
        store
            .finish_trial(id, &Finished { outcome: &oom, plan: None, stages: StageTimes::default(), samples: &[] })
            .await
            .unwrap();
        let run = store.begin_worker(study.id, 42, "host-a", &fp, Some(5), None).await.unwrap();
        let mut claim = store.begin_claim(study.id).await.unwrap();
        claim.begin_trial(&c(4), run, crate::trial::Purpose::Search).await.unwrap();
        claim.commit().await.unwrap();
        let mut claim = store.begin_claim(study.id).await.unwrap();
        assert_eq!(claim.mark_lost(crate::store::now_ms() + 1).await.unwrap(), vec![3]);
        claim.commit().await.unwrap();
        let v = Validation {
            winner_number: 1,
            metric: "goodput_rps".into(),
            baseline: c(2),
            default_values: vec![1.0, 1.1, 0.9],
            winner_values: vec![2.0, 2.1, 1.9],
            ratio: 2.0,
            ci_low: 1.8,
            ci_high: 2.2,
            created_at_ms: 77,
        };
        store.save_validation(study.id, &v).await.unwrap();
    }

    /// What must survive a copy: every trial as read back (ids aside), sample counts, the
    /// validation and the worker.
    async fn contents(store: &Store) -> (Vec<Trial>, Vec<i64>, Option<Validation>, Vec<String>) {
        let study = store.study("copied").await.unwrap().unwrap();
        let trials = store.trials(study.id).await.unwrap();
        let mut counts = Vec::new();
        for t in &trials {
            counts.push(store.sample_count(t.id).await.unwrap());
        }
        let trials = trials.into_iter().map(|t| Trial { id: crate::trial::TrialId(0), ..t }).collect();
        let workers = store
            .workers(study.id)
            .await
            .unwrap()
            .into_iter()
            .map(|w| format!("{:?} {} {}", w.host, w.pid, w.trials_done))
            .collect();
        (trials, counts, store.latest_validation(study.id).await.unwrap(), workers)
    }

    /// A trial written again (a commit whose answer was lost with the connection, retried by
    /// the worker) keeps its first record and its samples once, on both engines.
    #[tokio::test]
    async fn a_trial_written_twice_is_stored_once() {
        let db = TestDb::create("twice").await;
        for store in [Store::open_in_memory().await.unwrap(), Store::open_postgres(&db.url).await.unwrap()] {
            fill(&store).await;
            let study = store.study("copied").await.unwrap().unwrap();
            let first = store.trials(study.id).await.unwrap()[0].clone();
            let oom = Outcome::Infeasible { class: "oom".parse().unwrap(), message: "again".into() };
            let samples: Vec<Sample> = (0..4).map(sample).collect();
            let again = Finished { outcome: &oom, plan: None, stages: StageTimes::default(), samples: &samples };
            store.finish_trial(first.id, &again).await.unwrap();
            assert_eq!(store.trials(study.id).await.unwrap()[0], first);
            assert_eq!(store.sample_count(first.id).await.unwrap(), 4);
            store.close().await;
        }
        db.drop_db().await;
    }

    /// SQLite → PostgreSQL → SQLite keeps everything, including the `lost` state SQLite only
    /// knows since the fleet migration; copying again adds nothing.
    #[tokio::test]
    async fn copy_both_ways_keeps_everything_and_repeats_as_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(&dir.path().join("a.db")).await.unwrap();
        fill(&a).await;
        let before = contents(&a).await;
        assert_eq!(before.0[2].state, TrialState::Lost);
        assert_eq!(before.1, vec![4, 0, 0]);
        let db = TestDb::create("copy").await;
        let pg = Store::open_postgres(&db.url).await.unwrap();
        let first = copy(&a, &pg).await.unwrap();
        assert_eq!((first.studies, first.runs, first.trials, first.samples, first.validations), (1, 1, 3, 4, 1));
        assert_eq!(contents(&pg).await, before);
        let again = copy(&a, &pg).await.unwrap();
        assert_eq!(again, CopyReport { studies_present: 1, trials_present: 3, ..Default::default() });
        let b = Store::open(&dir.path().join("b.db")).await.unwrap();
        copy(&pg, &b).await.unwrap();
        assert_eq!(contents(&b).await, before);
        pg.close().await;
        db.drop_db().await;
    }
}
