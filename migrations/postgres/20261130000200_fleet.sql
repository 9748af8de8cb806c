-- PostgreSQL counterpart of ../20261130000200_fleet.sql (issue 18): the 'lost' trial state,
-- the worker of each trial, each worker's host and fingerprint, and the validation claim.
ALTER TABLE trials DROP CONSTRAINT trials_state_check;
ALTER TABLE trials ADD CONSTRAINT trials_state_check
    CHECK (state IN ('running', 'complete', 'infeasible', 'pruned', 'interrupted', 'lost'));
ALTER TABLE trials ADD COLUMN run_id BIGINT REFERENCES runs (id);
CREATE INDEX trials_by_run ON trials (run_id);

ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN fingerprint_json TEXT;
ALTER TABLE studies ADD COLUMN validation_run_id BIGINT;
ALTER TABLE studies ADD COLUMN host_class TEXT;
