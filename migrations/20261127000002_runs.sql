-- One row per `tune` process working on a study: who holds it, its budget, and why it stopped.
-- `status` reads the newest run; a run with no ended_at_ms whose pid is alive is in progress.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    study_id      INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    pid           INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    heartbeat_ms  INTEGER NOT NULL,
    max_trials    INTEGER,
    deadline_ms   INTEGER,
    ended_at_ms   INTEGER,
    stop_reason   TEXT
);

CREATE INDEX runs_by_study ON runs (study_id, id);

-- The server process a trial started, so a resumed study can reap one a killed daemon left.
ALTER TABLE trials ADD COLUMN server_pid INTEGER;
