-- The operator's controls: per-key limits, budgets, rate-limit windows and
-- a price history. Money is nano-USD; times are epoch milliseconds.

-- A key's own limits. allowed_models is a JSON array (NULL: every model);
-- max_budget is spent over budget_duration_sec (NULL: over the key's life).
ALTER TABLE api_keys ADD COLUMN allowed_models TEXT;
ALTER TABLE api_keys ADD COLUMN rpm_limit BIGINT CHECK (rpm_limit > 0);
ALTER TABLE api_keys ADD COLUMN tpm_limit BIGINT CHECK (tpm_limit > 0);
ALTER TABLE api_keys ADD COLUMN max_budget BIGINT CHECK (max_budget >= 0);
ALTER TABLE api_keys ADD COLUMN budget_duration_sec BIGINT CHECK (budget_duration_sec > 0);
ALTER TABLE api_keys ADD COLUMN metadata TEXT;

-- A spending limit that attaches to users: each user may spend max_budget
-- per period, either a fixed number of seconds or a calendar period (UTC).
CREATE TABLE budgets (
    id                  TEXT PRIMARY KEY,
    max_budget          BIGINT NOT NULL CHECK (max_budget >= 0),
    budget_duration_sec BIGINT CHECK (budget_duration_sec > 0),
    period              TEXT CHECK (period IN ('daily', 'weekly', 'monthly')),
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

ALTER TABLE users ADD COLUMN budget_id TEXT REFERENCES budgets (id);

-- What a budget scope ('key:<id>' or 'user:<id>') spent in its current
-- period, and what requests in flight hold of it.
CREATE TABLE budget_windows (
    scope        TEXT PRIMARY KEY,
    period_start BIGINT NOT NULL,
    spent        BIGINT NOT NULL DEFAULT 0,
    reserved     BIGINT NOT NULL DEFAULT 0
);

-- Each request's hold on each budget scope, released when it is settled.
CREATE TABLE budget_holds (
    request_id TEXT NOT NULL,
    scope      TEXT NOT NULL,
    amount     BIGINT NOT NULL CHECK (amount > 0),
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, scope)
);

CREATE INDEX budget_holds_by_expiry ON budget_holds (expires_at);

-- Requests and tokens per key per minute, shared by every replica.
CREATE TABLE rate_windows (
    key_id       TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    requests     BIGINT NOT NULL,
    tokens       BIGINT NOT NULL,
    PRIMARY KEY (key_id, window_start)
);

-- Every price change made after the first seed.
CREATE TABLE price_history (
    id                       TEXT PRIMARY KEY,
    model_key                TEXT NOT NULL,
    action                   TEXT NOT NULL CHECK (action IN ('set', 'delete')),
    input_per_million        BIGINT,
    output_per_million       BIGINT,
    cached_input_per_million BIGINT,
    margin_bp                BIGINT,
    changed_at               BIGINT NOT NULL
);

CREATE INDEX price_history_by_model ON price_history (model_key, changed_at);

-- The admins' global usage overview reads every user's records by time.
CREATE INDEX usage_by_time ON usage_records (created_at, model, cost, prompt_tokens, completion_tokens);
