-- Operating what was tuned (issue 19). Every `apply`: when, which trial, where it went, the
-- canary's figures, and whether it was kept or rolled back and why. A row is inserted as
-- 'running' before the file is touched, so a killed apply leaves a trace ('interrupted' once
-- the next apply of the study finds it).
CREATE TABLE deployments (
    id                INTEGER PRIMARY KEY,
    study_id          INTEGER NOT NULL REFERENCES studies(id),
    trial_number      INTEGER NOT NULL,
    target_path       TEXT NOT NULL,
    url               TEXT NOT NULL,
    state             TEXT NOT NULL,        -- running | kept | rolled-back | failed | interrupted
    reason            TEXT,
    started_at_ms     INTEGER NOT NULL,
    ended_at_ms       INTEGER,
    pid               INTEGER NOT NULL,
    study_objective   REAL,                 -- what the study measured for the trial
    canary_objective  REAL,
    ratio             REAL,                 -- canary / study, with its bootstrap 95 % CI
    ci_low            REAL,
    ci_high           REAL,
    canary_violation  REAL,
    canary_json       TEXT                  -- the canary's Summary
);
CREATE INDEX deployments_study ON deployments(study_id, id);

-- `watch`: one row per measurement of the live service, with the fingerprint of that moment.
CREATE TABLE watches (
    id                INTEGER PRIMARY KEY,
    study_id          INTEGER NOT NULL REFERENCES studies(id),
    deployment_id     INTEGER REFERENCES deployments(id),
    at_ms             INTEGER NOT NULL,
    status            TEXT NOT NULL,        -- ok | regression | drift | unmeasured
    reason            TEXT NOT NULL,
    objective         REAL,
    baseline          REAL,
    ratio             REAL,
    ci_low            REAL,
    ci_high           REAL,
    violation         REAL,
    drift             TEXT,                 -- what differs from the study's fingerprint; NULL = nothing
    fingerprint_json  TEXT NOT NULL,
    summary_json      TEXT,
    retune_study      TEXT                  -- the study a --retune started
);
CREATE INDEX watches_study ON watches(study_id, at_ms);
