-- PostgreSQL counterpart of ../20261127000005_trial_launch.sql.
ALTER TABLE trials ADD COLUMN launch TEXT;
ALTER TABLE trials ADD COLUMN load_ms DOUBLE PRECISION;
