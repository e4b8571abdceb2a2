-- Money one can audit: debts instead of write-offs, each cache bucket and
-- the provider's cost on every usage record, cache-write prices, prices an
-- operator deleted, idempotent requests, and replicas that hold money.
-- Portable SQL shared by SQLite and PostgreSQL; money is nano-USD.

-- What a user owes while their balance is below zero: the balance goes
-- negative instead of a charge being cut, and this row says since when and
-- which request took it there. Removed once credit brings it back to zero.
CREATE TABLE debts (
    user_id    TEXT PRIMARY KEY REFERENCES users (id),
    amount     BIGINT NOT NULL CHECK (amount > 0),
    since      BIGINT NOT NULL,
    request_id TEXT,
    updated_at BIGINT NOT NULL
);

-- Cache writes apart from cache reads (`cached_tokens`), what the provider
-- charged the operator beside what the user paid (`cost`), and how the
-- tokens were known: upstream, local_count, client_aborted, upstream_cut
-- or shutdown.
ALTER TABLE usage_records ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN provider_cost BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN tokens_source TEXT NOT NULL DEFAULT 'upstream';

-- Cache-write prices (5-minute and 1-hour); `cached_input_per_million` is
-- the cache-read price.
ALTER TABLE model_prices ADD COLUMN cache_write_per_million BIGINT CHECK (cache_write_per_million >= 0);
ALTER TABLE model_prices ADD COLUMN cache_write_1h_per_million BIGINT CHECK (cache_write_1h_per_million >= 0);
ALTER TABLE price_history ADD COLUMN cache_write_per_million BIGINT;
ALTER TABLE price_history ADD COLUMN cache_write_1h_per_million BIGINT;

-- Models an operator deleted: the config and the built-in table never seed
-- them again; setting a price again lifts this.
CREATE TABLE deleted_prices (
    model_key  TEXT PRIMARY KEY,
    deleted_at BIGINT NOT NULL
);

-- Requests sent with an `Idempotency-Key`, per API key: the first one's
-- answer, replayed for a repeat with the same body within a day.
CREATE TABLE idempotent_requests (
    scope      TEXT NOT NULL,
    idem_key   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    endpoint   TEXT NOT NULL,
    body_hash  TEXT NOT NULL,
    request_id TEXT NOT NULL,
    replica_id TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    status     INTEGER,
    streamed   INTEGER NOT NULL DEFAULT 0,
    response   TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);

CREATE INDEX idempotent_by_expiry ON idempotent_requests (expires_at);
CREATE INDEX idempotent_by_user ON idempotent_requests (user_id);

-- Gateway processes sharing a PostgreSQL database, with a heartbeat: the
-- holds of one that stops beating are released by the others.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

ALTER TABLE reservations ADD COLUMN replica_id TEXT;
ALTER TABLE budget_holds ADD COLUMN replica_id TEXT;
CREATE INDEX reservations_by_replica ON reservations (replica_id);
CREATE INDEX budget_holds_by_replica ON budget_holds (replica_id);
