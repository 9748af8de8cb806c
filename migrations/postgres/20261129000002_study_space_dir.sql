-- PostgreSQL counterpart of ../20261129000002_study_space_dir.sql.
ALTER TABLE studies ADD COLUMN space_dir TEXT;
