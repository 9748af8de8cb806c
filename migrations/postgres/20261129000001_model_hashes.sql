-- PostgreSQL counterpart of ../20261129000001_model_hashes.sql.
CREATE TABLE model_hashes (
    path          TEXT   NOT NULL,
    size_bytes    BIGINT NOT NULL,
    mtime_ns      BIGINT NOT NULL,
    sha256        TEXT   NOT NULL,
    hashed_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (path, size_bytes, mtime_ns)
);
