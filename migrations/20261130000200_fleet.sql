-- no-transaction
-- Shared studies (issue 18): workers on several hosts run one study on PostgreSQL. Kept the
-- same on SQLite so `db copy` moves studies both ways and one SQL text serves both.
--
-- - trials.state gains 'lost' (a worker stopped heartbeating mid-trial; its candidate is
--   retried). SQLite cannot alter a CHECK constraint, so `trials` is rebuilt the documented
--   way (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys off (a DROP
--   would otherwise cascade into `samples`), new table, copy, drop, rename, check. The copy is
--   `SELECT *` on purpose: a column another migration added fails loudly here instead of
--   being dropped silently.
-- - trials.run_id: the worker (run) that ran the trial, so its host fingerprint is known.
-- - runs.host, runs.fingerprint_json: the worker's host name and fingerprint.
-- - studies.validation_run_id: the one worker that took the end-of-study validation;
--   studies.host_class: the class of hosts the study admits.
PRAGMA foreign_keys = OFF;

BEGIN;

ALTER TABLE trials ADD COLUMN run_id INTEGER REFERENCES runs (id);

CREATE TABLE trials_new (
    id                      INTEGER PRIMARY KEY,
    study_id                INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    number                  INTEGER NOT NULL,
    state                   TEXT    NOT NULL
        CHECK (state IN ('running', 'complete', 'infeasible', 'pruned', 'interrupted', 'lost')),
    params_json             TEXT    NOT NULL,
    params_hash             TEXT    NOT NULL,
    plan_json               TEXT,
    objective               REAL,
    violation               REAL,
    violations_json         TEXT    NOT NULL DEFAULT '{}',
    summary_json            TEXT,
    ttft_p50_ms             REAL,
    ttft_p95_ms             REAL,
    ttft_p99_ms             REAL,
    tpot_p50_ms             REAL,
    itl_p50_ms              REAL,
    e2e_p95_ms              REAL,
    output_tok_per_s        REAL,
    req_per_s               REAL,
    success_rate            REAL,
    goodput_rps             REAL,
    peak_rss_bytes          INTEGER,
    server_decode_tok_per_s REAL,
    ready_ms                REAL,
    workload_ms             REAL,
    error_class             TEXT,
    error_message           TEXT,
    started_at_ms           INTEGER NOT NULL,
    ended_at_ms             INTEGER,
    server_pid              INTEGER,
    launch                  TEXT,
    load_ms                 REAL,
    purpose                 TEXT    NOT NULL DEFAULT 'search'
        CHECK (purpose IN ('search', 'intensify', 'anchor', 'retry')),
    run_id                  INTEGER REFERENCES runs (id),
    UNIQUE (study_id, number)
);

INSERT INTO trials_new SELECT * FROM trials;
DROP TABLE trials;
ALTER TABLE trials_new RENAME TO trials;
CREATE INDEX trials_by_study_state ON trials (study_id, state);
CREATE INDEX trials_by_run ON trials (run_id);
CREATE INDEX trials_by_params ON trials (study_id, params_hash);

ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN fingerprint_json TEXT;
ALTER TABLE studies ADD COLUMN validation_run_id INTEGER;
-- The host class a study admits (`tune --host-class`): hosts of that class may differ in hardware.
ALTER TABLE studies ADD COLUMN host_class TEXT;

COMMIT;

PRAGMA foreign_keys = ON;
