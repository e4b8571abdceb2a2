-- Payments through Stripe Checkout, and every webhook event Stripe sent.
-- Money is nano-USD (credit, fee, taken_back) or the smallest unit of the
-- charged currency (*_cents), as Stripe counts it; times are epoch ms.

-- One Checkout Session and what became of it. The credit is what the user
-- buys; the charge adds the fee. `taken_back` is what refunds and disputes
-- took back off the balance so far.
CREATE TABLE payments (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id),
    checkout_session_id TEXT UNIQUE,
    payment_intent      TEXT UNIQUE,
    status              TEXT NOT NULL CHECK (status IN ('open', 'paid', 'failed', 'expired',
                            'refunded', 'partially_refunded', 'disputed', 'amount_mismatch')),
    credit              BIGINT NOT NULL CHECK (credit > 0),
    fee                 BIGINT NOT NULL CHECK (fee >= 0),
    charged_cents       BIGINT NOT NULL CHECK (charged_cents > 0),
    currency            TEXT NOT NULL,
    refunded_cents      BIGINT NOT NULL DEFAULT 0,
    disputed_cents      BIGINT NOT NULL DEFAULT 0,
    taken_back          BIGINT NOT NULL DEFAULT 0,
    receipt_url         TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    paid_at             BIGINT
);

CREATE INDEX payments_by_user ON payments (user_id, created_at);
CREATE INDEX payments_by_time ON payments (created_at);

-- Every event Stripe delivered, once by id: what it was, when it came, and
-- what it did. A refund or dispute that arrives before its payment was
-- credited waits here (`deferred`) with what it needs to be applied then.
CREATE TABLE stripe_events (
    id             TEXT PRIMARY KEY,
    type           TEXT NOT NULL,
    received_at    BIGINT NOT NULL,
    outcome        TEXT NOT NULL,
    payment_id     TEXT,
    user_id        TEXT,
    payment_intent TEXT,
    amount_cents   BIGINT,
    detail         TEXT
);

CREATE INDEX stripe_events_by_time ON stripe_events (received_at);
CREATE INDEX stripe_events_deferred ON stripe_events (payment_intent) WHERE outcome = 'deferred';
