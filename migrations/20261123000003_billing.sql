-- Prepaid billing. Amounts are nano-USD (10^-9 USD) integers.

-- Money held by open reservations; available = balance - reserved.
ALTER TABLE users ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0;

-- The price catalog: provider cost per million tokens, and an optional
-- per-model margin in basis points (2000 = 20%).
CREATE TABLE model_prices (
    model_key                TEXT PRIMARY KEY,
    input_per_million        BIGINT NOT NULL CHECK (input_per_million >= 0),
    output_per_million       BIGINT NOT NULL CHECK (output_per_million >= 0),
    cached_input_per_million BIGINT CHECK (cached_input_per_million >= 0),
    margin_bp                BIGINT CHECK (margin_bp >= 0),
    source                   TEXT NOT NULL,
    updated_at               BIGINT NOT NULL
);

-- Every balance change. The sum of a user's amounts equals their balance.
CREATE TABLE ledger_entries (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL CHECK (kind IN ('topup', 'usage', 'refund', 'adjustment', 'signup_grant')),
    amount        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL CHECK (balance_after >= 0),
    request_id    TEXT,
    note          TEXT,
    created_at    BIGINT NOT NULL
);

CREATE INDEX ledger_by_user_time ON ledger_entries (user_id, created_at);
-- A request is debited at most once.
CREATE UNIQUE INDEX ledger_usage_once ON ledger_entries (request_id) WHERE kind = 'usage';

-- Money set aside for requests in flight.
CREATE TABLE reservations (
    request_id TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    amount     BIGINT NOT NULL CHECK (amount > 0),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX reservations_by_expiry ON reservations (expires_at);

ALTER TABLE usage_records ADD COLUMN cost BIGINT NOT NULL DEFAULT 0;
