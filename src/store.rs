//! The store: studies, trials and per-request samples, in SQLite (one host, the default) or
//! PostgreSQL (a study shared by workers on several hosts). All SQL of the project lives here.
//!
//! One SQL text serves both engines through sqlx's Any driver: parameters are `$N` (SQLite binds
//! them by number too), integers are 64-bit and reals double on both sides. Migrations differ:
//! `migrations/*.sql` for SQLite, `migrations/postgres/` for PostgreSQL, one for one by version
//! (a test checks). `Store::open` sets WAL, `synchronous = NORMAL`, foreign keys and a busy
//! timeout on SQLite, then runs the embedded migrations. Queries are runtime-checked (`query_as` into private row types);
//! public methods return domain types from `crate::trial`. Each trial is written the moment it
//! ends, in one transaction with its samples.

mod copy;
mod deployment;
mod fleet;
mod location;
mod purpose;
#[doc(hidden)]
pub mod testdb;
mod validation;

pub use copy::{CopyReport, copy};
pub use deployment::{DeployState, Deployment, Measured, WatchRun};
pub use fleet::{Claim, Worker};
pub use location::Location;
pub use validation::Validation;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, FromRow};

use crate::measure::{Metric, Sample};
use crate::space::{Candidate, Direction};
use crate::trial::{
    Fingerprint, INFEASIBLE_VIOLATION, Outcome, StageTimes, Study, StudyId, Trial, TrialId, TrialState,
};

/// Store failures. Any of these ends a study: the record would be lost otherwise.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening database '{path}'")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    #[error("{0} is not available on PostgreSQL")]
    Unsupported(&'static str),
}

impl Error {
    /// Whether the database is (perhaps briefly) out of reach: the connection broke, the server
    /// is restarting or refuses connections. A worker retries such a call with backoff; any
    /// other failure ends it.
    pub fn is_transient(&self) -> bool {
        let sqlx = match self {
            Error::Query(e) | Error::Open { source: e, .. } => e,
            _ => return false,
        };
        match sqlx {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
            // Class 08: connection exception; 57P01-03: admin shutdown, crash shutdown,
            // cannot connect now (the server is starting or stopping).
            sqlx::Error::Database(db) => {
                db.code().is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03"))
            }
            _ => false,
        }
    }
}

/// Where the database lives when neither `--db` nor `INFERTUNE_DB` says:
/// `$XDG_DATA_HOME/infertune/infertune.db`, else `~/.local/share/infertune/infertune.db`.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("infertune").join("infertune.db")
}

/// Current time as unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Hex SHA-256 of text (params, space files).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The database as given, for messages: the file (`:memory:` for the in-memory store) or
    /// the PostgreSQL URL without its password.
    path: String,
    kind: Kind,
}

/// Which engine a store runs on. The SQL text is the same for both (`$N` parameters, which
/// SQLite reads by number too); only migrations and a few engine facilities differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// Options for the Any driver from a URL; installs the SQLite and PostgreSQL drivers once.
fn any_options(url: &str) -> Result<AnyConnectOptions, sqlx::Error> {
    sqlx::any::install_default_drivers();
    url.parse()
}

/// How `Store::open_with` opens the database; `Store::open` takes the defaults. The knobs exist
/// so that fault tests can make the daemon itself meet a full or read-only database.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// Cap the file at this many pages (`PRAGMA max_page_count` on every connection): a write
    /// beyond fails with "database or disk is full", as on a full disk.
    pub max_page_count: Option<u64>,
    /// Open read-only, as SQLite opens a file it may not write.
    pub read_only: bool,
}

/// A study to create.
#[derive(Debug, Clone)]
pub struct NewStudy<'a> {
    pub name: &'a str,
    /// `None`: an endpoint measured by `bench --save`.
    pub backend: Option<crate::space::BackendKind>,
    /// `None`: a saved bench run.
    pub strategy: Option<crate::space::StrategyKind>,
    pub objective_metric: &'a str,
    pub direction: Direction,
    pub space_toml: &'a str,
    pub fingerprint: &'a Fingerprint,
}

/// One line of `studies`: a study and its trial counts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StudyOverview {
    pub study: Study,
    pub trials: i64,
    pub complete: i64,
    pub infeasible: i64,
}

#[derive(FromRow)]
struct StudyRow {
    id: i64,
    name: String,
    backend: String,
    strategy: String,
    objective_metric: String,
    objective_direction: String,
    space_toml: String,
    fingerprint_json: String,
    created_at_ms: i64,
    stop_reason: Option<String>,
    space_dir: Option<String>,
}

impl StudyRow {
    fn into_study(self) -> Result<Study, Error> {
        Ok(Study {
            id: StudyId(self.id),
            name: self.name,
            backend: match self.backend.as_str() {
                crate::trial::ENDPOINT_BACKEND => None,
                text => Some(
                    crate::space::BackendKind::from_name(text)
                        .ok_or_else(|| Error::Corrupt(format!("study backend '{text}'")))?,
                ),
            },
            strategy: match self.strategy.as_str() {
                crate::trial::BENCH_STRATEGY => None,
                text => Some(
                    crate::space::StrategyKind::from_name(text)
                        .ok_or_else(|| Error::Corrupt(format!("study strategy '{text}'")))?,
                ),
            },
            objective_metric: self.objective_metric,
            direction: match self.objective_direction.as_str() {
                "maximize" => Direction::Maximize,
                _ => Direction::Minimize,
            },
            space_toml: self.space_toml,
            fingerprint: serde_json::from_str(&self.fingerprint_json)
                .map_err(|e| Error::Corrupt(format!("study fingerprint: {e}")))?,
            created_at_ms: self.created_at_ms,
            stop_reason: self.stop_reason,
            space_dir: self.space_dir.map(PathBuf::from),
        })
    }
}

#[derive(FromRow)]
struct TrialRow {
    id: i64,
    number: i64,
    state: String,
    params_json: String,
    plan_json: Option<String>,
    objective: Option<f64>,
    violation: Option<f64>,
    violations_json: String,
    summary_json: Option<String>,
    ready_ms: Option<f64>,
    workload_ms: Option<f64>,
    launch: Option<String>,
    load_ms: Option<f64>,
    error_class: Option<String>,
    error_message: Option<String>,
    started_at_ms: i64,
    ended_at_ms: Option<i64>,
    purpose: String,
}

impl TrialRow {
    fn into_trial(self) -> Result<Trial, Error> {
        let corrupt = |what: &str, e: serde_json::Error| Error::Corrupt(format!("trial {} {what}: {e}", self.number));
        Ok(Trial {
            id: TrialId(self.id),
            number: self.number,
            state: TrialState::from_str(&self.state).map_err(Error::Corrupt)?,
            params: serde_json::from_str(&self.params_json).map_err(|e| corrupt("params", e))?,
            plan: match &self.plan_json {
                Some(p) => Some(serde_json::from_str(p).map_err(|e| corrupt("plan", e))?),
                None => None,
            },
            objective: self.objective,
            violation: self.violation,
            violations: serde_json::from_str(&self.violations_json).map_err(|e| corrupt("violations", e))?,
            summary: match &self.summary_json {
                Some(s) => Some(serde_json::from_str(s).map_err(|e| corrupt("summary", e))?),
                None => None,
            },
            error_class: match &self.error_class {
                Some(text) => {
                    Some(text.parse().map_err(|e: String| Error::Corrupt(format!("trial {} {e}", self.number)))?)
                }
                None => None,
            },
            error_message: self.error_message,
            stages: StageTimes {
                ready_ms: self.ready_ms,
                workload_ms: self.workload_ms,
                launch: match self.launch.as_deref() {
                    Some(text) => Some(
                        crate::backend::Launch::from_name(text)
                            .ok_or_else(|| Error::Corrupt(format!("trial launch '{text}'")))?,
                    ),
                    None => None,
                },
                load_ms: self.load_ms,
            },
            started_at_ms: self.started_at_ms,
            ended_at_ms: self.ended_at_ms,
            purpose: self.purpose.parse().map_err(|e: String| Error::Corrupt(format!("trial {} {e}", self.number)))?,
        })
    }
}

const TRIAL_COLUMNS: &str = "id, number, state, params_json, plan_json, objective, violation, violations_json, summary_json, ready_ms, workload_ms, launch, load_ms, error_class, error_message, started_at_ms, ended_at_ms, purpose";

/// Everything the daemon knows once a trial ends.
#[derive(Debug, Clone)]
pub struct Finished<'a> {
    pub outcome: &'a Outcome,
    pub plan: Option<&'a crate::backend::LaunchPlan>,
    pub stages: StageTimes,
    pub samples: &'a [Sample],
}

impl Store {
    /// Open (creating if missing) the SQLite database at `path` and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, Error> {
        Store::open_with(path, StoreOptions::default()).await
    }

    /// Open the database `location` names (a SQLite file or a PostgreSQL server) and bring its
    /// schema up to date.
    pub async fn open_location(location: &Location) -> Result<Store, Error> {
        match location {
            Location::Sqlite(path) => Store::open(path).await,
            Location::Postgres(url) => Store::open_postgres(url).await,
        }
    }

    /// `open` with `options` (see `StoreOptions`).
    pub async fn open_with(path: &Path, store_options: StoreOptions) -> Result<Store, Error> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Open { path: shown.clone(), source: sqlx::Error::Io(e) })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(!store_options.read_only)
            .read_only(store_options.read_only);
        // The Any driver takes a URL; what a URL cannot say is set on each new connection.
        let url = sqlx::ConnectOptions::to_url_lossy(&options);
        let pages = store_options.max_page_count;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    if let Some(pages) = pages {
                        conn.execute(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {pages}"))).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(any_options(url.as_str()).map_err(|source| Error::Open { path: shown.clone(), source })?)
            .await
            .map_err(|source| Error::Open { path: shown.clone(), source })?;
        Store::migrated(pool, shown, Kind::Sqlite).await
    }

    /// A private in-memory database, for tests.
    pub async fn open_in_memory() -> Result<Store, Error> {
        let options =
            any_options("sqlite::memory:").map_err(|source| Error::Open { path: ":memory:".into(), source })?;
        // One connection, never replaced: each in-memory connection would be its own database.
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, "PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| Error::Open { path: ":memory:".into(), source })?;
        Store::migrated(pool, ":memory:".into(), Kind::Sqlite).await
    }

    /// Connect to the PostgreSQL database at `url` (password from the URL, `PGPASSWORD` or
    /// `~/.pgpass`; `sslmode=require` for TLS). Errors name the URL without its password.
    pub async fn open_postgres(url: &str) -> Result<Store, Error> {
        let shown = location::redact(url);
        let options = any_options(url).map_err(|source| Error::Open { path: shown.clone(), source })?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            // A server that went away is noticed in seconds; callers retry with backoff.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|source| Error::Open { path: shown.clone(), source })?;
        Store::migrated(pool, shown, Kind::Postgres).await
    }

    async fn migrated(pool: AnyPool, path: String, kind: Kind) -> Result<Store, Error> {
        let migrator = match kind {
            Kind::Sqlite => sqlx::migrate!("./migrations"),
            Kind::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.run(&pool).await.map_err(Error::Migrate)?;
        Ok(Store { pool, path, kind })
    }

    /// The database as opened, safe to print: the SQLite file (`:memory:` for the in-memory
    /// store) or the PostgreSQL URL without its password.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether several processes (hosts) may share this database: PostgreSQL. Studies on it are
    /// run by workers that claim trials; on SQLite one process runs a study.
    pub fn is_shared(&self) -> bool {
        self.kind == Kind::Postgres
    }

    /// Create a study.
    pub async fn create_study(&self, new: &NewStudy<'_>) -> Result<Study, Error> {
        let fingerprint = serde_json::to_string(new.fingerprint).expect("plain data");
        let direction = match new.direction {
            Direction::Maximize => "maximize",
            Direction::Minimize => "minimize",
        };
        sqlx::query(
            r#"INSERT INTO studies
                 (name, backend, strategy, objective_metric, objective_direction,
                  space_toml, space_hash, fingerprint_json, created_at_ms)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
        )
        .bind(new.name)
        .bind(new.backend.map_or(crate::trial::ENDPOINT_BACKEND, |k| k.name()))
        .bind(new.strategy.map_or(crate::trial::BENCH_STRATEGY, |k| k.name()))
        .bind(new.objective_metric)
        .bind(direction)
        .bind(new.space_toml)
        .bind(sha256_hex(new.space_toml.as_bytes()))
        .bind(fingerprint)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.study(new.name).await?.ok_or_else(|| Error::Corrupt(format!("study '{}' vanished after insert", new.name)))
    }

    /// The study named `name`, if any.
    pub async fn study(&self, name: &str) -> Result<Option<Study>, Error> {
        let row = sqlx::query_as::<_, StudyRow>(
            r#"SELECT id, name, backend, strategy, objective_metric, objective_direction,
                      space_toml, fingerprint_json, created_at_ms, stop_reason, space_dir
               FROM studies
               WHERE name = $1"#,
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(StudyRow::into_study).transpose()
    }

    /// Every study with its trial counts, oldest first.
    pub async fn studies(&self) -> Result<Vec<StudyOverview>, Error> {
        let rows = sqlx::query_as::<_, StudyRow>(
            r#"SELECT id, name, backend, strategy, objective_metric, objective_direction,
                      space_toml, fingerprint_json, created_at_ms, stop_reason, space_dir
               FROM studies
               ORDER BY id"#,
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let study = row.into_study()?;
            let (trials, complete, infeasible): (i64, i64, i64) = sqlx::query_as(
                r#"SELECT COUNT(*),
                          COALESCE(SUM(CASE WHEN state = 'complete' THEN 1 ELSE 0 END), 0),
                          COALESCE(SUM(CASE WHEN state = 'infeasible' THEN 1 ELSE 0 END), 0)
                   FROM trials
                   WHERE study_id = $1"#,
            )
            .bind(study.id.0)
            .fetch_one(&self.pool)
            .await?;
            out.push(StudyOverview { study, trials, complete, infeasible });
        }
        Ok(out)
    }

    /// Record the directory of the space file the study was started from.
    pub async fn set_space_dir(&self, study: StudyId, dir: &Path) -> Result<(), Error> {
        sqlx::query(
            r#"UPDATE studies
               SET space_dir = $2
               WHERE id = $1"#,
        )
        .bind(study.0)
        .bind(dir.to_string_lossy().into_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record why the study's run stopped.
    pub async fn set_stop_reason(&self, study: StudyId, reason: &str) -> Result<(), Error> {
        sqlx::query(
            r#"UPDATE studies
               SET stop_reason = $2, ended_at_ms = $3
               WHERE id = $1"#,
        )
        .bind(study.0)
        .bind(reason)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Trials left `running` by a daemon that died become `interrupted`. Returns how many.
    pub async fn mark_interrupted(&self, study: StudyId) -> Result<u64, Error> {
        let done = sqlx::query(
            r#"UPDATE trials
               SET state = 'interrupted', ended_at_ms = $2, server_pid = NULL
               WHERE study_id = $1
                 AND state = 'running'"#,
        )
        .bind(study.0)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Insert a `running` trial (a strategy's proposal) with the next number; see
    /// [`Store::begin_trial_for`].
    pub async fn begin_trial(&self, study: StudyId, params: &Candidate) -> Result<(TrialId, i64), Error> {
        self.begin_trial_for(study, params, crate::trial::Purpose::Search).await
    }

    /// Write how a trial ended, with its samples, in one transaction.
    pub async fn finish_trial(&self, trial: TrialId, finished: &Finished<'_>) -> Result<(), Error> {
        let (summary, verdict, error_class, error_message) = match finished.outcome {
            Outcome::Complete { summary, verdict } | Outcome::Pruned { summary, verdict } => {
                (Some(summary), Some(verdict), None, None)
            }
            Outcome::Infeasible { class, message } => (None, None, Some(class.to_string()), Some(message.as_str())),
            Outcome::Interrupted => (None, None, None, None),
        };
        let violation = match finished.outcome {
            Outcome::Infeasible { .. } => Some(INFEASIBLE_VIOLATION),
            _ => verdict.map(|v| v.violation),
        };
        let violations_json =
            verdict.map(|v| serde_json::to_string(&v.violations).expect("plain data")).unwrap_or_else(|| "{}".into());

        let mut query = sqlx::query(FINISH_TRIAL)
            .bind(trial.0)
            .bind(finished.outcome.state().as_str())
            .bind(finished.plan.map(|p| serde_json::to_string(p).expect("plain data")))
            .bind(verdict.map(|v| v.objective).filter(|v| v.is_finite()))
            .bind(violation)
            .bind(violations_json)
            .bind(summary.map(|s| serde_json::to_string(s).expect("plain data")));
        for m in METRIC_COLUMNS {
            query = match m {
                Metric::PeakRssBytes => query.bind(summary.map(|s| s.peak_rss_bytes as i64)),
                m => query.bind(summary.and_then(|s| m.value(s)).filter(|v| v.is_finite())),
            };
        }
        let query = query
            .bind(summary.and_then(|s| s.server_decode_tok_per_s))
            .bind(finished.stages.ready_ms)
            .bind(finished.stages.workload_ms)
            .bind(error_class)
            .bind(error_message)
            .bind(now_ms())
            .bind(finished.stages.launch.map(|l| l.as_str()))
            .bind(finished.stages.load_ms);
        let mut tx = self.pool.begin().await?;
        let updated = query.execute(&mut *tx).await?;
        // Nothing updated: the trial was already written (a commit whose answer was lost when
        // the database went away, retried); written twice it would count twice.
        if updated.rows_affected() > 0 {
            insert_samples(&mut tx, trial, finished.samples).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// All trials of a study, in trial-number order.
    pub async fn trials(&self, study: StudyId) -> Result<Vec<Trial>, Error> {
        select_trials(&self.pool, study).await
    }

    /// Count of stored samples for a trial (measured and warm-up).
    pub async fn sample_count(&self, trial: TrialId) -> Result<i64, Error> {
        let (n,): (i64,) = sqlx::query_as(
            r#"SELECT COUNT(*)
               FROM samples
               WHERE trial_id = $1"#,
        )
        .bind(trial.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// `PRAGMA integrity_check`; `"ok"` when the file is sound.
    pub async fn integrity_check(&self) -> Result<String, Error> {
        if self.kind == Kind::Postgres {
            return Err(Error::Unsupported("PRAGMA integrity_check"));
        }
        let (result,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&self.pool).await?;
        Ok(result)
    }

    /// Close the pool, flushing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// Insert a `running` trial numbered one past the study's highest, for `run` (a worker) if given.
async fn insert_trial(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    study: StudyId,
    params: &Candidate,
    run: Option<RunId>,
    purpose: crate::trial::Purpose,
) -> Result<(TrialId, i64), Error> {
    let json = params.to_json();
    let (number,): (i64,) = sqlx::query_as(
        r#"SELECT COALESCE(MAX(number), 0) + 1
           FROM trials
           WHERE study_id = $1"#,
    )
    .bind(study.0)
    .fetch_one(&mut **tx)
    .await?;
    let (id,): (i64,) = sqlx::query_as(
        r#"INSERT INTO trials (study_id, number, state, params_json, params_hash, started_at_ms, run_id, purpose)
           VALUES ($1, $2, 'running', $3, $4, $5, $6, $7)
           RETURNING id"#,
    )
    .bind(study.0)
    .bind(number)
    .bind(&json)
    .bind(sha256_hex(json.as_bytes()))
    .bind(now_ms())
    .bind(run.map(|r| r.0))
    .bind(purpose.as_str())
    .fetch_one(&mut **tx)
    .await?;
    Ok((TrialId(id), number))
}

/// All trials of `study` in trial-number order, on the pool or inside a claim's transaction.
async fn select_trials<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    study: StudyId,
) -> Result<Vec<Trial>, Error> {
    // TRIAL_COLUMNS is a constant, so the query text is static in all but form.
    let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = $1 ORDER BY number");
    let rows = sqlx::query_as::<_, TrialRow>(sqlx::AssertSqlSafe(sql)).bind(study.0).fetch_all(executor).await?;
    rows.into_iter().map(TrialRow::into_trial).collect()
}

/// One row per request, in the trial's transaction. A sample already stored (a write retried
/// after the database went away mid-commit) is kept as it is.
async fn insert_samples(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    trial: TrialId,
    samples: &[Sample],
) -> Result<(), Error> {
    for (seq, s) in samples.iter().enumerate() {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let itl: Vec<f64> = s.chunk_gaps.iter().map(|g| ms(*g)).collect();
        sqlx::query(
            r#"INSERT INTO samples
                 (trial_id, seq, prompt_index, is_warmup, sent_ms, ttft_ms, tpot_ms, e2e_ms,
                  output_tokens, prompt_tokens, status, error_kind, error_message,
                  itl_ms_json, server_json)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
               ON CONFLICT DO NOTHING"#,
        )
        .bind(trial.0)
        .bind(seq as i64)
        .bind(s.prompt_index as i64)
        .bind(i64::from(s.is_warmup))
        .bind(ms(s.sent))
        .bind(s.ttft().map(ms))
        .bind(s.tpot().map(ms))
        .bind(ms(s.e2e()))
        .bind(i64::from(s.output_tokens))
        .bind(s.prompt_tokens.map(i64::from))
        .bind(i64::from(s.status))
        .bind(
            s.error
                .map(|k| serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()),
        )
        .bind(s.error_message.as_deref())
        .bind(serde_json::to_string(&itl).expect("numbers"))
        .bind(s.server.map(|t| serde_json::to_string(&t).expect("plain data")))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Row id of a `tune` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RunId(pub i64);

/// A `tune` process's work on a study (`status` reads the newest).
#[derive(Debug, Clone, PartialEq, serde::Serialize, FromRow)]
pub struct Run {
    pub id: i64,
    pub pid: i64,
    pub started_at_ms: i64,
    /// Last sign of life from the daemon (unix ms).
    pub heartbeat_ms: i64,
    /// Trial budget of this run (finished trials in the study), if any.
    pub max_trials: Option<i64>,
    /// When this run stops starting trials (unix ms), if any.
    pub deadline_ms: Option<i64>,
    /// `None` while the run is going on, or if it was killed.
    pub ended_at_ms: Option<i64>,
    pub stop_reason: Option<String>,
}

impl Store {
    /// Record that process `pid` starts working on `study`.
    pub async fn begin_run(
        &self,
        study: StudyId,
        pid: u32,
        max_trials: Option<u32>,
        deadline_ms: Option<i64>,
    ) -> Result<RunId, Error> {
        let now = now_ms();
        let (id,): (i64,) = sqlx::query_as(
            r#"INSERT INTO runs (study_id, pid, started_at_ms, heartbeat_ms, max_trials, deadline_ms)
               VALUES ($1, $2, $3, $3, $4, $5)
               RETURNING id"#,
        )
        .bind(study.0)
        .bind(i64::from(pid))
        .bind(now)
        .bind(max_trials.map(i64::from))
        .bind(deadline_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(RunId(id))
    }

    /// The daemon is alive.
    pub async fn heartbeat(&self, run: RunId) -> Result<(), Error> {
        sqlx::query(
            r#"UPDATE runs
               SET heartbeat_ms = $2
               WHERE id = $1"#,
        )
        .bind(run.0)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Close a run with its stop reason; the study keeps the latest reason too.
    pub async fn end_run(&self, study: StudyId, run: RunId, reason: &str) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query(
            r#"UPDATE runs
               SET ended_at_ms = $2, stop_reason = $3, heartbeat_ms = $2
               WHERE id = $1"#,
        )
        .bind(run.0)
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            r#"UPDATE studies
               SET stop_reason = $2, ended_at_ms = $3
               WHERE id = $1"#,
        )
        .bind(study.0)
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest run of a study.
    pub async fn latest_run(&self, study: StudyId) -> Result<Option<Run>, Error> {
        Ok(sqlx::query_as::<_, Run>(
            r#"SELECT id, pid, started_at_ms, heartbeat_ms, max_trials, deadline_ms, ended_at_ms, stop_reason
               FROM runs
               WHERE study_id = $1
               ORDER BY id DESC
               LIMIT 1"#,
        )
        .bind(study.0)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Remember the server process of a running trial (cleared when the trial finishes).
    pub async fn set_server_pid(&self, trial: TrialId, pid: Option<u32>) -> Result<(), Error> {
        sqlx::query(
            r#"UPDATE trials
               SET server_pid = $2
               WHERE id = $1"#,
        )
        .bind(trial.0)
        .bind(pid.map(i64::from))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Server pids recorded by trials still marked `running` (left by a daemon that died).
    pub async fn orphan_server_pids(&self, study: StudyId) -> Result<Vec<u32>, Error> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            r#"SELECT server_pid
               FROM trials
               WHERE study_id = $1
                 AND state = 'running'
                 AND server_pid IS NOT NULL"#,
        )
        .bind(study.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(|(p,)| u32::try_from(p).ok()).collect())
    }

    /// The SHA-256 remembered for the model file at `path`, if it was hashed when it had this
    /// size and modification time (unix ns); `None` means hash it.
    pub async fn cached_model_hash(&self, path: &str, size_bytes: u64, mtime_ns: i64) -> Result<Option<String>, Error> {
        let row: Option<(String,)> = sqlx::query_as(
            r#"SELECT sha256
               FROM model_hashes
               WHERE path = $1
                 AND size_bytes = $2
                 AND mtime_ns = $3"#,
        )
        .bind(path)
        .bind(i64::try_from(size_bytes).unwrap_or(i64::MAX))
        .bind(mtime_ns)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(h,)| h))
    }

    /// Remember the SHA-256 of the model file at `path` as it is now; it replaces what was
    /// remembered for an older version of that file.
    pub async fn put_model_hash(&self, path: &str, size_bytes: u64, mtime_ns: i64, sha256: &str) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            r#"DELETE FROM model_hashes
               WHERE path = $1"#,
        )
        .bind(path)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            r#"INSERT INTO model_hashes (path, size_bytes, mtime_ns, sha256, hashed_at_ms)
               VALUES ($1, $2, $3, $4, $5)"#,
        )
        .bind(path)
        .bind(i64::try_from(size_bytes).unwrap_or(i64::MAX))
        .bind(mtime_ns)
        .bind(sha256)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The metrics with a column of their own in `trials` (each named as its column), which users
/// sort on and a trial's JSON row carries.
pub const METRIC_COLUMNS: &[Metric] = &[
    Metric::TtftP50Ms,
    Metric::TtftP95Ms,
    Metric::TtftP99Ms,
    Metric::TpotP50Ms,
    Metric::ItlP50Ms,
    Metric::E2eP95Ms,
    Metric::OutputTokPerS,
    Metric::ReqPerS,
    Metric::SuccessRate,
    Metric::GoodputRps,
    Metric::PeakRssBytes,
];

/// Per-trial columns users sort on, by name: the trial's number, objective and violation, then
/// [`METRIC_COLUMNS`].
pub fn sortable() -> impl Iterator<Item = &'static str> {
    ["number", "objective", "violation"].into_iter().chain(METRIC_COLUMNS.iter().map(|m| m.name()))
}

/// The metrics a trial's JSON row carries, by name (`None` when not measured).
pub fn trial_metrics(trial: &Trial) -> BTreeMap<&'static str, Option<f64>> {
    METRIC_COLUMNS.iter().map(|m| (m.name(), trial.summary.as_ref().and_then(|s| m.value(s)))).collect()
}

/// `finish_trial`'s write: only a trial not yet finished (a retried commit must not count twice).
/// `$8`..`$18` are [`METRIC_COLUMNS`], in its order.
const FINISH_TRIAL: &str = r#"UPDATE trials
   SET state = $2,
       plan_json = $3,
       objective = $4,
       violation = $5,
       violations_json = $6,
       summary_json = $7,
       ttft_p50_ms = $8,
       ttft_p95_ms = $9,
       ttft_p99_ms = $10,
       tpot_p50_ms = $11,
       itl_p50_ms = $12,
       e2e_p95_ms = $13,
       output_tok_per_s = $14,
       req_per_s = $15,
       success_rate = $16,
       goodput_rps = $17,
       peak_rss_bytes = $18,
       server_decode_tok_per_s = $19,
       ready_ms = $20,
       workload_ms = $21,
       error_class = $22,
       error_message = $23,
       ended_at_ms = $24,
       server_pid = NULL,
       launch = $25,
       load_ms = $26
 WHERE id = $1
   AND state NOT IN ('complete', 'infeasible', 'pruned')"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Dist, Summary, Verdict};
    use crate::space::Value;

    fn fingerprint() -> Fingerprint {
        Fingerprint {
            engine_version: "test".into(),
            model_sha256: BTreeMap::new(),
            host: crate::measure::system::host(),
        }
    }

    async fn study(store: &Store) -> Study {
        store
            .create_study(&NewStudy {
                name: "s",
                backend: Some(crate::space::BackendKind::Llamacpp),
                strategy: Some(crate::space::StrategyKind::Grid),
                objective_metric: "goodput_rps",
                direction: Direction::Maximize,
                space_toml: "[study]",
                fingerprint: &fingerprint(),
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn trial_round_trip() {
        round_trip(Store::open_in_memory().await.unwrap()).await;
    }

    /// The same SQL on PostgreSQL (issue 18): every store call of the round trip.
    #[tokio::test]
    async fn trial_round_trip_on_postgres() {
        let db = testdb::TestDb::create("roundtrip").await;
        let store = Store::open_postgres(&db.url).await.unwrap();
        assert!(store.is_shared());
        round_trip(store.clone()).await;
        // Migrations run once: opening again finds the schema current.
        Store::open_postgres(&db.url).await.unwrap().close().await;
        store.close().await;
        db.drop_db().await;
    }

    /// `sslmode=require`: the connection is encrypted (TLS through rustls), and the store works.
    #[tokio::test]
    async fn postgres_over_tls() {
        let db = testdb::TestDb::create("tls").await;
        let url = format!("{}?sslmode=require", db.url);
        let store = Store::open_postgres(&url).await.unwrap();
        let (is_ssl,): (bool,) = sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(is_ssl, "sslmode=require gave an unencrypted connection");
        assert!(store.studies().await.unwrap().is_empty());
        store.close().await;
        db.drop_db().await;
    }

    /// Every SQLite migration has a PostgreSQL counterpart of the same version and name, and
    /// none is left over (other branches add SQLite migrations; this names what to port).
    #[test]
    fn every_sqlite_migration_has_a_postgres_counterpart() {
        let names = |dir: &str| -> std::collections::BTreeSet<String> {
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect()
        };
        let (sqlite, postgres) = (names("migrations"), names("migrations/postgres"));
        let missing: Vec<_> = sqlite.difference(&postgres).collect();
        let extra: Vec<_> = postgres.difference(&sqlite).collect();
        assert!(missing.is_empty(), "port these SQLite migrations to migrations/postgres/: {missing:?}");
        assert!(extra.is_empty(), "PostgreSQL migrations without a SQLite one: {extra:?}");
    }

    async fn round_trip(store: Store) {
        let s = study(&store).await;
        assert_eq!(store.study("s").await.unwrap().unwrap().id, s.id);
        let params = Candidate([("np".to_string(), Value::Int(4))].into());
        let (id, number) = store.begin_trial(s.id, &params).await.unwrap();
        assert_eq!(number, 1);
        let summary = Summary {
            requests: 1,
            succeeded: 1,
            ttft_ms: Dist { p95: 120.0, n: 1, ..Default::default() },
            output_tok_per_s: 42.0,
            goodput_rps: 1.5,
            peak_rss_bytes: 1 << 20,
            ..Default::default()
        };
        let verdict =
            Verdict { objective: 1.5, violations: BTreeMap::from([("ttft_p95_ms".into(), 0.0)]), violation: 0.0 };
        let outcome = Outcome::Complete { summary: summary.clone(), verdict };
        store
            .finish_trial(
                id,
                &Finished {
                    outcome: &outcome,
                    plan: None,
                    stages: StageTimes {
                        ready_ms: Some(900.0),
                        workload_ms: Some(1.0),
                        launch: Some(crate::backend::Launch::Restart),
                        load_ms: Some(12.5),
                    },
                    samples: &[],
                },
            )
            .await
            .unwrap();
        let trials = store.trials(s.id).await.unwrap();
        assert_eq!(trials.len(), 1);
        let t = &trials[0];
        assert_eq!(t.state, TrialState::Complete);
        assert_eq!(t.params, params);
        assert_eq!(t.objective, Some(1.5));
        assert_eq!(t.summary.as_ref().unwrap(), &summary);
        assert_eq!(t.stages.ready_ms, Some(900.0));
        assert_eq!((t.stages.launch, t.stages.load_ms), (Some(crate::backend::Launch::Restart), Some(12.5)));
        assert!(t.is_feasible());
        assert_eq!(trial_metrics(t)["output_tok_per_s"], Some(42.0));

        let (id2, number2) = store.begin_trial(s.id, &params).await.unwrap();
        assert_eq!(number2, 2);
        assert_eq!(store.mark_interrupted(s.id).await.unwrap(), 1);
        let infeasible = Outcome::Infeasible { class: "oom".parse().unwrap(), message: "out of memory".into() };
        store
            .finish_trial(
                id2,
                &Finished { outcome: &infeasible, plan: None, stages: StageTimes::default(), samples: &[] },
            )
            .await
            .unwrap();
        let t2 = &store.trials(s.id).await.unwrap()[1];
        assert_eq!(t2.state, TrialState::Infeasible);
        assert_eq!(t2.violation, Some(INFEASIBLE_VIOLATION));
        assert_eq!(t2.error_message.as_deref(), Some("out of memory"));

        let overview = store.studies().await.unwrap();
        assert_eq!((overview[0].trials, overview[0].complete, overview[0].infeasible), (2, 1, 1));
        store.set_stop_reason(s.id, "budget").await.unwrap();
        assert_eq!(store.study("s").await.unwrap().unwrap().stop_reason.as_deref(), Some("budget"));

        let run = store.begin_run(s.id, 4242, Some(5), None).await.unwrap();
        store.heartbeat(run).await.unwrap();
        let r = store.latest_run(s.id).await.unwrap().unwrap();
        assert_eq!((r.pid, r.max_trials, r.ended_at_ms), (4242, Some(5), None));
        let (id3, _) = store.begin_trial(s.id, &params).await.unwrap();
        store.set_server_pid(id3, Some(777)).await.unwrap();
        assert_eq!(store.orphan_server_pids(s.id).await.unwrap(), vec![777]);
        store.mark_interrupted(s.id).await.unwrap();
        assert!(store.orphan_server_pids(s.id).await.unwrap().is_empty());
        store.end_run(s.id, run, "interrupted").await.unwrap();
        let r = store.latest_run(s.id).await.unwrap().unwrap();
        assert_eq!(r.stop_reason.as_deref(), Some("interrupted"));
        assert_eq!(store.study("s").await.unwrap().unwrap().stop_reason.as_deref(), Some("interrupted"));
        match store.is_shared() {
            false => assert_eq!(store.integrity_check().await.unwrap(), "ok"),
            true => assert!(matches!(store.integrity_check().await, Err(Error::Unsupported(_)))),
        }
    }

    #[tokio::test]
    async fn file_store_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/t.db");
        let store = Store::open(&path).await.unwrap();
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(&store.pool).await.unwrap();
        assert_eq!(mode, "wal");
        store.close().await;
        assert!(path.exists());
    }

    #[tokio::test]
    async fn model_hashes_are_remembered_by_path_size_and_mtime() {
        let store = Store::open_in_memory().await.unwrap();
        assert_eq!(store.cached_model_hash("/m/a.gguf", 10, 5).await.unwrap(), None);
        store.put_model_hash("/m/a.gguf", 10, 5, "aa").await.unwrap();
        assert_eq!(store.cached_model_hash("/m/a.gguf", 10, 5).await.unwrap().as_deref(), Some("aa"));
        assert_eq!(store.cached_model_hash("/m/a.gguf", 10, 6).await.unwrap(), None, "touched: hash again");
        assert_eq!(store.cached_model_hash("/m/a.gguf", 11, 5).await.unwrap(), None, "resized: hash again");
        // A new version of the file replaces the old row.
        store.put_model_hash("/m/a.gguf", 11, 7, "bb").await.unwrap();
        assert_eq!(store.cached_model_hash("/m/a.gguf", 10, 5).await.unwrap(), None);
        assert_eq!(store.cached_model_hash("/m/a.gguf", 11, 7).await.unwrap().as_deref(), Some("bb"));
    }
}
