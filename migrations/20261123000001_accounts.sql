-- Accounts and API keys. Portable SQL shared by SQLite and PostgreSQL.
-- Times are Unix epoch milliseconds; money is an integer count of nano-USD
-- (1 USD = 1_000_000_000), never floating point.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT UNIQUE,
    password_hash TEXT,
    alias         TEXT,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    balance       BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    metadata      TEXT,
    blocked_at    BIGINT,
    deleted_at    BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    key_prefix   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT,
    revoked_at   BIGINT
);

CREATE INDEX api_keys_by_user ON api_keys (user_id, created_at);

-- Failed sign-ins, for throttling per account and per IP across replicas.
CREATE TABLE login_failures (
    subject   TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);

CREATE INDEX login_failures_by_subject ON login_failures (subject, failed_at);
