-- Ledger entries name the payment they come from (a top-up, or what a
-- refund or dispute took back), and a dispute is its own kind
-- (`chargeback`). A payment is credited at most once. SQLite cannot alter
-- a CHECK constraint, so the table is rebuilt (see 20261206000008).
CREATE TABLE ledger_entries_new (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL CHECK (kind IN ('topup', 'usage', 'refund', 'adjustment', 'signup_grant', 'chargeback')),
    amount        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    request_id    TEXT,
    note          TEXT,
    created_at    BIGINT NOT NULL,
    payment_id    TEXT
);
INSERT INTO ledger_entries_new (id, user_id, kind, amount, balance_after, request_id, note, created_at)
    SELECT id, user_id, kind, amount, balance_after, request_id, note, created_at FROM ledger_entries;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_new RENAME TO ledger_entries;
CREATE INDEX ledger_by_user_time ON ledger_entries (user_id, created_at);
CREATE UNIQUE INDEX ledger_usage_once ON ledger_entries (request_id) WHERE kind = 'usage';
CREATE UNIQUE INDEX ledger_payment_once ON ledger_entries (payment_id) WHERE kind = 'topup';
