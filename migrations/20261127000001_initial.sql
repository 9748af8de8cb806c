-- Studies, trials and per-request samples. Append-only: never edit a merged migration.
-- Timestamps are unix milliseconds (UTC). Params are canonical JSON plus a hash.

CREATE TABLE studies (
    id                  INTEGER PRIMARY KEY,
    name                TEXT    NOT NULL UNIQUE,
    backend             TEXT    NOT NULL,
    strategy            TEXT    NOT NULL,
    objective_metric    TEXT    NOT NULL,
    objective_direction TEXT    NOT NULL CHECK (objective_direction IN ('maximize', 'minimize')),
    space_toml          TEXT    NOT NULL,
    space_hash          TEXT    NOT NULL,
    fingerprint_json    TEXT    NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    stop_reason         TEXT,
    ended_at_ms         INTEGER
);

CREATE TABLE trials (
    id                      INTEGER PRIMARY KEY,
    study_id                INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    number                  INTEGER NOT NULL,
    state                   TEXT    NOT NULL
        CHECK (state IN ('running', 'complete', 'infeasible', 'pruned', 'interrupted')),
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
    UNIQUE (study_id, number)
);

CREATE INDEX trials_by_study_state ON trials (study_id, state);

CREATE TABLE samples (
    trial_id      INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    prompt_index  INTEGER NOT NULL,
    is_warmup     INTEGER NOT NULL,
    sent_ms       REAL    NOT NULL,
    ttft_ms       REAL,
    tpot_ms       REAL,
    e2e_ms        REAL    NOT NULL,
    output_tokens INTEGER NOT NULL,
    prompt_tokens INTEGER,
    status        INTEGER NOT NULL,
    error_kind    TEXT,
    error_message TEXT,
    itl_ms_json   TEXT    NOT NULL,
    server_json   TEXT,
    PRIMARY KEY (trial_id, seq)
);
