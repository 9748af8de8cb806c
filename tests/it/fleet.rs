//! Shared studies on PostgreSQL (issue 18): several worker processes run one study.
//!
//! Every test makes its own database on the test server (`store::testdb`: `$INFERTUNE_TEST_PG`,
//! set by `scripts/test`, else a server on 127.0.0.1:5432) and drops it at the end. Workers are
//! real processes of the built binary, so they can be killed with SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use infertune::store::Store;
use infertune::store::testdb::TestDb;
use infertune::trial::{Purpose, Trial, TrialState};
use rand::{RngExt, SeedableRng};

use crate::common::{repo, run_cli, tpe_replay};

const STUDY: &str = "landscape-llamacpp-medium";

/// The medium recording's own space searched by tpe (relative paths made absolute), and the
/// recording; a study of it is created on `url` with no trial run yet.
async fn replay_study(dir: &Path, url: &str) -> (PathBuf, PathBuf) {
    let (recording, space) = tpe_replay(dir);
    let out = run_cli(&[
        "--db",
        url,
        "tune",
        space.to_str().unwrap(),
        "--replay",
        recording.to_str().unwrap(),
        "--max-trials",
        "0",
    ])
    .await
    .unwrap();
    assert!(out.contains("stopped: budget (0 trials in the study)"), "{out}");
    (space, recording)
}

/// A worker process on the replay backend; its output goes to `log`.
fn spawn_worker(url: &str, recording: &Path, max_trials: u32, log: &Path) -> Child {
    spawn_worker_with(url, recording, max_trials, "1500ms", log)
}

fn spawn_worker_with(url: &str, recording: &Path, max_trials: u32, grace: &str, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_infertune"))
        .args(["--db", url, "worker", STUDY, "--replay", recording.to_str().unwrap()])
        .args(["--max-trials", &max_trials.to_string(), "--replay-speed", "10"])
        .args(["--heartbeat", "200ms", "--grace", grace])
        .env("INFERTUNE_LOG", "warn")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait for every child to exit; their exit statuses.
async fn wait_all(children: &mut [Child], timeout: Duration) -> Vec<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let done: Vec<_> = children.iter_mut().map(|c| c.try_wait().unwrap()).collect();
        if done.iter().all(Option::is_some) {
            return done.into_iter().flatten().collect();
        }
        assert!(Instant::now() < deadline, "workers did not finish within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_finished(t: &Trial) -> bool {
    matches!(t.state, TrialState::Complete | TrialState::Infeasible | TrialState::Pruned)
}

/// What every shared study must hold: exactly `budget` finished trials, numbers 1..=n, and no
/// candidate finished twice (a lost trial's retry replaces it, it does not add to it) except as
/// a re-measure of a point finished before.
fn check_study(trials: &[Trial], budget: usize) {
    let numbers: Vec<i64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (1..=trials.len() as i64).collect::<Vec<_>>(), "numbers unique and dense");
    let finished: Vec<&Trial> = trials.iter().filter(|t| is_finished(t)).collect();
    assert_eq!(finished.len(), budget, "the study-wide budget, exactly");
    // Re-measures (intensification, issue 16) repeat a measured point on purpose; anything
    // else is measured once.
    let first_runs: Vec<&&Trial> = finished.iter().filter(|t| t.purpose != Purpose::Intensify).collect();
    let distinct: BTreeSet<String> = first_runs.iter().map(|t| t.params.to_json()).collect();
    assert_eq!(distinct.len(), first_runs.len(), "no candidate measured twice but on purpose");
    for t in finished.iter().filter(|t| t.purpose == Purpose::Intensify) {
        assert!(
            finished.iter().any(|f| f.params == t.params && f.number < t.number),
            "re-measure {} repeats a point measured before",
            t.number
        );
    }
    assert!(trials.iter().all(|t| t.state != TrialState::Running), "nothing left running");
    // every lost or interrupted candidate was retried and finished by a later trial
    for t in trials.iter().filter(|t| matches!(t.state, TrialState::Lost | TrialState::Interrupted)) {
        assert!(
            finished.iter().any(|f| f.params == t.params && f.number > t.number),
            "trial {} ({:?}) was never retried",
            t.number,
            t.state
        );
    }
}

/// The test server's URL for `db` with a password in it (the test server trusts local users, so
/// any password is accepted): what must never be shown or stored.
const PASSWORD: &str = "s3cret-Pw-18";

fn with_password(url: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    if u.password().is_none() {
        u.set_password(Some(PASSWORD)).unwrap();
    }
    u.to_string()
}

/// Three workers on the replay backend, each trial taking its recorded time / 10, reach the
/// budget exactly; numbers are unique and dense, no candidate is measured twice, and every
/// worker ran trials (they overlapped). Then every read command works on the shared study, and
/// the URL's password appears in no output, log, report or stored row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_one_budget() {
    let db = TestDb::create("three").await;
    let url = with_password(&db.url);
    let dir = tempfile::tempdir().unwrap();
    let (_, recording) = replay_study(dir.path(), &url).await;
    let mut workers: Vec<Child> =
        (0..3).map(|i| spawn_worker(&url, &recording, 24, &dir.path().join(format!("w{i}.log")))).collect();
    let statuses = wait_all(&mut workers, Duration::from_secs(120)).await;
    let logs: Vec<String> =
        (0..3).map(|i| std::fs::read_to_string(dir.path().join(format!("w{i}.log"))).unwrap()).collect();
    assert!(statuses.iter().all(|s| s.success()), "{statuses:?}\n{}", logs.join("\n---\n"));
    assert!(logs.iter().all(|l| l.contains("worker stopped: budget")), "{}", logs.join("\n---\n"));

    let store = Store::open_postgres(&db.url).await.unwrap();
    let study = store.study(STUDY).await.unwrap().unwrap();
    let trials = store.trials(study.id).await.unwrap();
    check_study(&trials, 24);
    assert_eq!(trials.len(), 24, "no loss, no retry");
    let workers = store.workers(study.id).await.unwrap();
    // the study's creation (`tune --max-trials 0`) is a worker with no trial
    let active: Vec<_> = workers.iter().filter(|w| w.trials_done > 0).collect();
    assert_eq!(active.len(), 3, "every worker ran trials: {workers:#?}");
    assert_eq!(active.iter().map(|w| w.trials_done).sum::<i64>(), 24);
    assert!(workers.iter().all(|w| w.stop_reason.as_deref() == Some("budget") && w.in_flight.is_none()));
    store.close().await;
    let shown = read_commands(&url, dir.path()).await;
    assert!(shown.contains("workers   4 (0 working)"), "{shown}");
    assert!(shown.contains("stopped: budget"), "{shown}");
    for text in logs.iter().chain([&shown]) {
        assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
    }
    assert_eq!(stored_rows_containing(&db.url, PASSWORD).await, 0, "the password is stored");
    db.drop_db().await;
}

/// status, studies, trials, best, export and report on a shared study: their outputs (and the
/// report file) joined, each checked for content.
async fn read_commands(url: &str, dir: &Path) -> String {
    let mut all = String::new();
    let status = run_cli(&["--db", url, "status", STUDY]).await.unwrap();
    assert!(status.contains("trials    24 (24 ") || status.contains("trials    24 ("), "{status}");
    let status_json: serde_json::Value =
        serde_json::from_str(&run_cli(&["--db", url, "status", STUDY, "--json"]).await.unwrap()).unwrap();
    assert_eq!(status_json["workers"].as_array().unwrap().len(), 4, "{status_json:#}");
    let studies = run_cli(&["--db", url, "studies"]).await.unwrap();
    assert!(studies.contains(STUDY), "{studies}");
    let trials = run_cli(&["--db", url, "trials", STUDY, "--json"]).await.unwrap();
    assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&trials).unwrap().len(), 24);
    let best = run_cli(&["--db", url, "best", STUDY]).await.unwrap();
    assert!(best.contains("named configuration: trial"), "{best}");
    let export = run_cli(&["--db", url, "export", STUDY, "--format", "args"]).await.unwrap();
    assert!(export.contains("-np"), "{export}");
    let report = dir.join("report.html");
    run_cli(&["--db", url, "report", STUDY, "-o", report.to_str().unwrap()]).await.unwrap();
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains(STUDY));
    for text in [status, studies, trials, best, export, html] {
        all.push_str(&text);
    }
    // A failing connection names the database without the password.
    let bad = url.replace("infertune_test_", "no_such_db_");
    let err = format!("{:#}", run_cli(&["--db", &bad, "studies"]).await.unwrap_err());
    assert!(err.contains("opening the database 'postgres://") && err.contains(":***@"), "{err}");
    all.push_str(&err);
    all
}

/// Rows of the study's tables whose text holds `needle`, read straight from PostgreSQL.
async fn stored_rows_containing(url: &str, needle: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let mut n = 0;
    for table in ["studies", "trials", "runs", "samples", "validations"] {
        let sql = format!("SELECT COUNT(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'");
        let (c,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(needle).fetch_one(&mut conn).await.unwrap();
        n += c;
    }
    conn.close().await.unwrap();
    n
}

/// Running trials of each worker process, by pid.
async fn running_by_pid(store: &Store, study: infertune::trial::StudyId) -> BTreeMap<i64, i64> {
    let workers = store.workers(study).await.unwrap();
    workers.iter().filter_map(|w| w.in_flight.map(|n| (w.pid, n))).collect()
}

/// kill -9 of a worker mid-trial, at 10 random points: each trial it ran becomes `lost`, its
/// candidate is retried by another worker, the study completes with exactly its budget, and
/// nothing finished is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_trials_are_lost_and_retried() {
    let db = TestDb::create("kill").await;
    let dir = tempfile::tempdir().unwrap();
    let (_, recording) = replay_study(dir.path(), &db.url).await;
    let store = Store::open_postgres(&db.url).await.unwrap();
    let study = store.study(STUDY).await.unwrap().unwrap();
    let budget = 30;
    let mut spawned = 0;
    let spawn = |spawned: &mut usize| {
        *spawned += 1;
        spawn_worker(&db.url, &recording, budget, &dir.path().join(format!("w{spawned}.log")))
    };
    let mut workers: Vec<Child> = (0..3).map(|_| spawn(&mut spawned)).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(18);
    let mut killed_mid_trial = Vec::new();
    while killed_mid_trial.len() < 10 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        let running = running_by_pid(&store, study.id).await;
        let Some(victim) = workers.iter().position(|c| running.contains_key(&i64::from(c.id()))) else {
            let finished = store.trials(study.id).await.unwrap().iter().filter(|t| is_finished(t)).count();
            assert!(finished < budget as usize, "the study ended before 10 kills");
            continue;
        };
        let mut child = workers.swap_remove(victim);
        let trial = running[&i64::from(child.id())];
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // It may have written the trial between the look and the kill: then it was not mid-trial.
        let state = store.trials(study.id).await.unwrap().into_iter().find(|t| t.number == trial).unwrap().state;
        if matches!(state, TrialState::Running | TrialState::Lost) {
            killed_mid_trial.push(trial);
        }
        workers.push(spawn(&mut spawned));
    }
    let statuses = wait_all(&mut workers, Duration::from_secs(180)).await;
    assert!(statuses.iter().all(|s| s.success()), "{statuses:?}");
    let trials = store.trials(study.id).await.unwrap();
    check_study(&trials, budget as usize);
    for number in &killed_mid_trial {
        let t = trials.iter().find(|t| t.number == *number).unwrap();
        assert_eq!(t.state, TrialState::Lost, "trial {number} of a killed worker");
    }
    store.close().await;
    db.drop_db().await;
}

/// SIGTERM stops a worker as it stops `tune`: its trial in flight is recorded `interrupted`
/// (not lost), it exits 0, and another worker retries the candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_worker_records_its_trial_as_interrupted() {
    let db = TestDb::create("sigterm").await;
    let dir = tempfile::tempdir().unwrap();
    let (_, recording) = replay_study(dir.path(), &db.url).await;
    let store = Store::open_postgres(&db.url).await.unwrap();
    let study = store.study(STUDY).await.unwrap().unwrap();
    let log = |i: usize| dir.path().join(format!("w{i}.log"));
    let mut victim = spawn_worker(&db.url, &recording, 12, &log(0));
    let mut other = spawn_worker(&db.url, &recording, 12, &log(1));
    let deadline = Instant::now() + Duration::from_secs(60);
    let number = loop {
        assert!(Instant::now() < deadline, "the worker never ran a trial");
        if let Some(&n) = running_by_pid(&store, study.id).await.get(&i64::from(victim.id())) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // SAFETY: kill(2) on a child process of this test.
    assert_eq!(unsafe { libc::kill(victim.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = wait_all(std::slice::from_mut(&mut victim), Duration::from_secs(30)).await;
    let text = std::fs::read_to_string(log(0)).unwrap();
    assert!(status[0].success() && text.contains("worker stopped: interrupted"), "{status:?}\n{text}");
    let t = store.trials(study.id).await.unwrap().into_iter().find(|t| t.number == number).unwrap();
    assert!(
        matches!(t.state, TrialState::Interrupted | TrialState::Complete | TrialState::Pruned | TrialState::Infeasible),
        "{t:#?}"
    );
    let interrupted = t.state == TrialState::Interrupted;
    assert!(wait_all(std::slice::from_mut(&mut other), Duration::from_secs(120)).await[0].success());
    let trials = store.trials(study.id).await.unwrap();
    check_study(&trials, 12);
    // (It may have finished the trial in the instant before the signal; then nothing to retry.)
    assert_eq!(trials.iter().filter(|t| t.state == TrialState::Interrupted).count(), usize::from(interrupted));
    store.close().await;
    db.drop_db().await;
}

/// A throwaway PostgreSQL cluster (scripts/setup-postgres --throwaway), stopped on drop: the
/// restart test must never restart the shared server other tests use.
struct Cluster {
    dir: String,
    url: String,
}

impl Cluster {
    fn start() -> Cluster {
        let out = Command::new(repo().join("scripts/setup-postgres")).arg("--throwaway").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let var =
            |name: &str| text.lines().find_map(|l| l.strip_prefix(&format!("export {name}="))).unwrap().to_string();
        Cluster { dir: var("INFERTUNE_TEST_PG_CLUSTER"), url: var("INFERTUNE_TEST_PG") }
    }

    /// Stop the server, keep it down for `down`, start it again.
    fn restart(&self, down: Duration) {
        let status = Command::new(repo().join("scripts/setup-postgres"))
            .args(["--restart", &self.dir, &format!("{:.1}", down.as_secs_f64())])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/setup-postgres")).args(["--stop", &self.dir]).status();
    }
}

/// PostgreSQL stopped twice while three workers run (2 s, which the connection pool's wait
/// covers, then 7 s, longer than its 5 s acquire timeout, so the workers' own backoff does): they wait with backoff, finish
/// the trials in flight, write them when it is back, and the study ends with exactly its budget,
/// no finished trial lost and none written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_postgres_restart() {
    let cluster = Cluster::start();
    let db = TestDb::create_on(&cluster.url, "restart").await;
    let dir = tempfile::tempdir().unwrap();
    let (_, recording) = replay_study(dir.path(), &db.url).await;
    let budget = 30;
    // A grace longer than the outage: nobody is lost for the database's absence.
    let mut workers: Vec<Child> = (0..3)
        .map(|i| spawn_worker_with(&db.url, &recording, budget, "20s", &dir.path().join(format!("w{i}.log"))))
        .collect();
    let finished = || async {
        let store = Store::open_postgres(&db.url).await.unwrap();
        let study = store.study(STUDY).await.unwrap().unwrap();
        let n = store.trials(study.id).await.unwrap().iter().filter(|t| is_finished(t)).count();
        store.close().await;
        n
    };
    for (at, down) in [(6, 2), (16, 7)] {
        while finished().await < at {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.restart(Duration::from_secs(down));
    }
    let statuses = wait_all(&mut workers, Duration::from_secs(180)).await;
    let logs: Vec<String> =
        (0..3).map(|i| std::fs::read_to_string(dir.path().join(format!("w{i}.log"))).unwrap()).collect();
    assert!(statuses.iter().all(|s| s.success()), "{statuses:?}\n{}", logs.join("\n---\n"));
    assert!(logs.iter().any(|l| l.contains("database unreachable")), "the outage was felt: {}", logs.join("\n---\n"));
    let store = Store::open_postgres(&db.url).await.unwrap();
    let study = store.study(STUDY).await.unwrap().unwrap();
    let trials = store.trials(study.id).await.unwrap();
    check_study(&trials, budget as usize);
    assert!(trials.iter().all(|t| t.state != TrialState::Lost), "nobody was lost");
    store.close().await;
    db.drop_db().await;
}

/// Two real-engine workers on this machine, pinned to one core each (each starts its own
/// llama.cpp server, which inherits the pin), run one study end to end: every trial measured
/// on a real server with its samples stored, each worker ran some, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_real_engine_workers_run_one_study() {
    crate::common::require_engine();
    let _engine = crate::common::EngineLock::acquire().await;
    let db = TestDb::create("engine").await;
    let dir = tempfile::tempdir().unwrap();
    let params = r#"parallel = { values = [1, 2], flag = "-np", default = 2 }
quant = { values = ["Q4_0", "Q4_1"], template = "model", default = "Q4_0" }
threads = { values = [1], flag = "-t", default = 1 }"#;
    let space = crate::common::engine_space(dir.path(), "fleet-engine", "grid", params, "");
    let out = run_cli(&["--db", &db.url, "tune", space.to_str().unwrap(), "--max-trials", "0"]).await.unwrap();
    assert!(out.contains("stopped: budget"), "{out}");
    let mut workers: Vec<Child> = (0..2)
        .map(|core| {
            let log = std::fs::File::create(dir.path().join(format!("w{core}.log"))).unwrap();
            Command::new("taskset")
                .args(["-c", &core.to_string(), env!("CARGO_BIN_EXE_infertune")])
                .args(["--db", &db.url, "worker", "fleet-engine", "--max-trials", "4", "--heartbeat", "1s"])
                .env("INFERTUNE_LOG", "warn")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap()
        })
        .collect();
    let statuses = wait_all(&mut workers, Duration::from_secs(600)).await;
    let logs: Vec<String> =
        (0..2).map(|i| std::fs::read_to_string(dir.path().join(format!("w{i}.log"))).unwrap()).collect();
    assert!(statuses.iter().all(|s| s.success()), "{statuses:?}\n{}", logs.join("\n---\n"));
    let store = Store::open_postgres(&db.url).await.unwrap();
    let study = store.study("fleet-engine").await.unwrap().unwrap();
    let trials = store.trials(study.id).await.unwrap();
    check_study(&trials, 4);
    for t in &trials {
        assert_eq!(t.state, TrialState::Complete, "{t:#?}\n{}", logs.join("\n---\n"));
        assert!(t.stages.launch.is_some() && t.stages.ready_ms.is_some(), "a real server was started: {t:#?}");
        assert!(store.sample_count(t.id).await.unwrap() >= 8, "samples stored");
    }
    let workers = store.workers(study.id).await.unwrap();
    let done: Vec<i64> = workers.iter().map(|w| w.trials_done).filter(|&n| n > 0).collect();
    assert_eq!(done.len(), 2, "both workers measured trials: {workers:#?}");
    store.close().await;
    db.drop_db().await;
}
