-- The server's privacy ledger (accountant::ledger::PrivacyLedger) and the device
-- budgets the server publishes for its metrics: the tables of
-- migrations/sqlite/0002_privacy_ledger.sql with PostgreSQL types.

-- Per-data-set central budgets: total epsilon allowed at a fixed delta. Changed
-- only when what is already spent fits the new budget.
CREATE TABLE dataset_budgets (
    dataset    TEXT             NOT NULL PRIMARY KEY,
    epsilon    DOUBLE PRECISION NOT NULL,
    delta      DOUBLE PRECISION NOT NULL,
    updated_at BIGINT           NOT NULL
);

-- Every central release, in recording order. `release` is the JSON of
-- accountant::ledger::Release; `release_id` is the idempotency key. Rows are
-- never updated or deleted. Writers hold `LOCK TABLE ... IN SHARE ROW EXCLUSIVE
-- MODE` on this table and dataset_budgets, so `seq` follows commit order.
CREATE TABLE central_releases (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    release_id  TEXT   NOT NULL UNIQUE,
    dataset     TEXT   NOT NULL,
    release     TEXT   NOT NULL,
    recorded_at BIGINT NOT NULL
);

-- The device budget policy (sdk::budget::BudgetPolicy) published for a metric
-- name, shown in the privacy report beside the metric's local guarantee.
CREATE TABLE device_budgets (
    metric           TEXT             NOT NULL PRIMARY KEY,
    window_epsilon   DOUBLE PRECISION NOT NULL,
    window_seconds   BIGINT           NOT NULL,
    lifetime_epsilon DOUBLE PRECISION NOT NULL,
    updated_at       BIGINT           NOT NULL
);
