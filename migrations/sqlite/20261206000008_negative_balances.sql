-- A balance may go below zero (a debt, see `debts`): charges are never cut.
-- SQLite cannot drop a CHECK constraint, so both tables are rebuilt. A
-- migration runs in a transaction, where foreign keys cannot be switched
-- off; they are deferred instead: dropping `users` leaves the rows that
-- refer to it dangling until the same users are back, and the commit
-- checks that every one of them is.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE users_copy AS SELECT * FROM users;
DROP TABLE users;
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT UNIQUE,
    password_hash TEXT,
    alias         TEXT,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    balance       BIGINT NOT NULL DEFAULT 0,
    metadata      TEXT,
    blocked_at    BIGINT,
    deleted_at    BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    reserved      BIGINT NOT NULL DEFAULT 0,
    budget_id     TEXT REFERENCES budgets (id)
);
INSERT INTO users (id, email, password_hash, alias, role, balance, metadata, blocked_at,
                   deleted_at, created_at, updated_at, reserved, budget_id)
    SELECT id, email, password_hash, alias, role, balance, metadata, blocked_at,
           deleted_at, created_at, updated_at, reserved, budget_id FROM users_copy;
DROP TABLE users_copy;

CREATE TABLE ledger_entries_new (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL CHECK (kind IN ('topup', 'usage', 'refund', 'adjustment', 'signup_grant')),
    amount        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    request_id    TEXT,
    note          TEXT,
    created_at    BIGINT NOT NULL
);
INSERT INTO ledger_entries_new (id, user_id, kind, amount, balance_after, request_id, note, created_at)
    SELECT id, user_id, kind, amount, balance_after, request_id, note, created_at FROM ledger_entries;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_new RENAME TO ledger_entries;
CREATE INDEX ledger_by_user_time ON ledger_entries (user_id, created_at);
CREATE UNIQUE INDEX ledger_usage_once ON ledger_entries (request_id) WHERE kind = 'usage';
