-- Mail: an outbox the background sender drains (`mail::sender`), the
-- single-use tokens behind the links it sends, and the alerts already sent.
-- Times are Unix epoch milliseconds; money is nano-USD.

-- Every mail to send. A sender claims a row by setting `claimed_until` (a
-- lease, so two replicas never send the same mail); a failure sets
-- `next_attempt_at` later, and after the last attempt `failed_at`, keeping
-- the last error.
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    last_error      TEXT,
    sent_at         BIGINT,
    failed_at       BIGINT,
    created_at      BIGINT NOT NULL
);

CREATE INDEX mail_outbox_pending ON mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;

-- The links mailed to users, by the SHA-256 of their token (the token
-- itself is never stored). `new_email` is the address the link proves:
-- the new one for a change, the signed-up one for a verification.
CREATE TABLE email_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify', 'reset', 'change_email')),
    new_email  TEXT,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL
);

CREATE INDEX email_tokens_by_user ON email_tokens (user_id, purpose);

ALTER TABLE users ADD COLUMN email_verified_at BIGINT;
-- Bumped to sign out every session (a session stores the epoch it began in).
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
-- The low-balance alert: a threshold (NULL: off), and when it last fired
-- (NULL: armed; set when the balance falls below, cleared when it is back).
ALTER TABLE users ADD COLUMN low_balance_threshold BIGINT CHECK (low_balance_threshold >= 0);
ALTER TABLE users ADD COLUMN low_balance_alerted_at BIGINT;

CREATE INDEX users_with_low_balance_alerts ON users (low_balance_threshold)
    WHERE low_balance_threshold IS NOT NULL;

-- Budget alerts sent: each level (80, 100 percent) once per scope and period.
CREATE TABLE budget_alerts (
    scope        TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    level        BIGINT NOT NULL,
    sent_at      BIGINT NOT NULL,
    PRIMARY KEY (scope, period_start, level)
);
