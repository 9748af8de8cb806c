-- The directory of the space file a study was started from: commands that re-read the stored
-- space (compare, validate, capacity, report) resolve its relative paths against it, from any
-- working directory (issue 13 item 2). NULL for studies stored before this column, and for
-- saved bench runs.
ALTER TABLE studies ADD COLUMN space_dir TEXT;
