-- SHA-256 of model files, remembered by path, size and modification time (issue 13 item 4):
-- a resumed study does not re-read tens of gigabytes to fingerprint files that did not change.
-- Not tied to a study: the same file serves many studies.
CREATE TABLE model_hashes (
    path          TEXT    NOT NULL,
    size_bytes    INTEGER NOT NULL,
    mtime_ns      INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    hashed_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (path, size_bytes, mtime_ns)
);
