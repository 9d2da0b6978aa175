-- The server's privacy ledger (accountant::ledger::PrivacyLedger) and the device
-- budgets the server publishes for its metrics, for `Analytics.Budget` and the
-- auditor's privacy report.

-- Per-data-set central budgets: total epsilon allowed at a fixed delta. Changed
-- only when what is already spent fits the new budget.
CREATE TABLE dataset_budgets (
    dataset    TEXT             NOT NULL PRIMARY KEY,
    epsilon    DOUBLE PRECISION NOT NULL,
    delta      DOUBLE PRECISION NOT NULL,
    updated_at INTEGER          NOT NULL
);

-- Every central release, in recording order. `release` is the JSON of
-- accountant::ledger::Release (mechanism, parameters, (epsilon, delta), RDP
-- curve); `release_id` is the idempotency key. Rows are never updated or deleted.
CREATE TABLE central_releases (
    seq         INTEGER NOT NULL PRIMARY KEY,
    release_id  TEXT    NOT NULL UNIQUE,
    dataset     TEXT    NOT NULL,
    release     TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL
);

-- The device budget policy (sdk::budget::BudgetPolicy) published for a metric
-- name, shown in the privacy report beside the metric's local guarantee.
CREATE TABLE device_budgets (
    metric           TEXT             NOT NULL PRIMARY KEY,
    window_epsilon   DOUBLE PRECISION NOT NULL,
    window_seconds   INTEGER          NOT NULL,
    lifetime_epsilon DOUBLE PRECISION NOT NULL,
    updated_at       INTEGER          NOT NULL
);
