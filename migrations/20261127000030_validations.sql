-- Re-validation of a study's winner against the default configuration (issue 3): fresh server
-- starts interleaved default, winner, default, winner, ...; the ratio winner/default of the
-- objective with a bootstrap 95 % confidence interval.
CREATE TABLE validations (
    id              INTEGER PRIMARY KEY,
    study_id        INTEGER NOT NULL REFERENCES studies(id),
    winner_number   INTEGER NOT NULL,
    metric          TEXT NOT NULL,
    baseline_json   TEXT NOT NULL,
    default_values  TEXT NOT NULL,   -- JSON array, one objective value per default run
    winner_values   TEXT NOT NULL,   -- JSON array, one per winner run
    ratio           REAL NOT NULL,
    ci_low          REAL NOT NULL,
    ci_high         REAL NOT NULL,
    created_at_ms   INTEGER NOT NULL
);
CREATE INDEX validations_study ON validations(study_id, id);
