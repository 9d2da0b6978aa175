-- Initial schema of the aggregator's PostgreSQL store: the tables of
-- migrations/sqlite/0001_init.sql with PostgreSQL types. Unsigned values are
-- stored as BIGINT (the store refuses values above i64::MAX), blobs as BYTEA.

-- Published metrics: one row per (metric_id, version); immutable once written.
-- `spec` is the JSON of ldp_sdk::metric::MetricSpec.
CREATE TABLE metrics (
    metric_id  BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    name       TEXT   NOT NULL,
    spec       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (metric_id, version),
    UNIQUE (name, version)
);

-- Every committed batch id (the idempotency key of Submit).
CREATE TABLE batches (
    batch_id    BYTEA  NOT NULL PRIMARY KEY,
    received_at BIGINT NOT NULL,
    reports     BIGINT NOT NULL
);

-- Sufficient statistics: counters per (metric, version, epoch, cell); only
-- non-zero cells have a row.
CREATE TABLE cell_counts (
    metric_id BIGINT NOT NULL,
    version   BIGINT NOT NULL,
    epoch     BIGINT NOT NULL,
    cell      BIGINT NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (metric_id, version, epoch, cell)
);

-- Report count and numeric sums per (metric, version, epoch).
CREATE TABLE totals (
    metric_id BIGINT NOT NULL,
    version   BIGINT NOT NULL,
    epoch     BIGINT NOT NULL,
    reports   BIGINT NOT NULL,
    sum       DOUBLE PRECISION NOT NULL,
    sum_sq    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (metric_id, version, epoch)
);

-- Closed epochs of a metric (all versions): later reports are refused.
CREATE TABLE closed_epochs (
    metric_id BIGINT NOT NULL,
    epoch     BIGINT NOT NULL,
    closed_at BIGINT NOT NULL,
    PRIMARY KEY (metric_id, epoch)
);

-- Optional raw-report retention: the encoded reports of a batch, deleted after
-- the retention period.
CREATE TABLE raw_batches (
    batch_id    BYTEA  NOT NULL PRIMARY KEY,
    received_at BIGINT NOT NULL,
    reports     BYTEA  NOT NULL
);
CREATE INDEX raw_batches_received_at ON raw_batches (received_at);
