-- Initial schema of the aggregator's SQLite store. Portable SQL: the PostgreSQL
-- folder holds the same tables with its own types.

-- Published metrics: one row per (metric_id, version); immutable once written.
-- `spec` is the JSON of ldp_sdk::metric::MetricSpec.
CREATE TABLE metrics (
    metric_id  INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (metric_id, version),
    UNIQUE (name, version)
);

-- Every committed batch id (the idempotency key of Submit).
CREATE TABLE batches (
    batch_id    BLOB    NOT NULL PRIMARY KEY,
    received_at INTEGER NOT NULL,
    reports     INTEGER NOT NULL
);

-- Sufficient statistics: counters per (metric, version, epoch, cell); only
-- non-zero cells have a row.
CREATE TABLE cell_counts (
    metric_id INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    epoch     INTEGER NOT NULL,
    cell      INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (metric_id, version, epoch, cell)
);

-- Report count and numeric sums per (metric, version, epoch).
CREATE TABLE totals (
    metric_id INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    epoch     INTEGER NOT NULL,
    reports   INTEGER NOT NULL,
    sum       DOUBLE PRECISION NOT NULL,
    sum_sq    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (metric_id, version, epoch)
);

-- Closed epochs of a metric (all versions): later reports are refused.
CREATE TABLE closed_epochs (
    metric_id INTEGER NOT NULL,
    epoch     INTEGER NOT NULL,
    closed_at INTEGER NOT NULL,
    PRIMARY KEY (metric_id, epoch)
);

-- Optional raw-report retention: the encoded reports of a batch, deleted after
-- the retention period.
CREATE TABLE raw_batches (
    batch_id    BLOB    NOT NULL PRIMARY KEY,
    received_at INTEGER NOT NULL,
    reports     BLOB    NOT NULL
);
CREATE INDEX raw_batches_received_at ON raw_batches (received_at);
