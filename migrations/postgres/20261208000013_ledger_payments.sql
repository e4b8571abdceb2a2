-- Ledger entries name the payment they come from (a top-up, or what a
-- refund or dispute took back), and a dispute is its own kind
-- (`chargeback`). A payment is credited at most once.
ALTER TABLE ledger_entries ADD COLUMN payment_id TEXT;
ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('topup', 'usage', 'refund', 'adjustment', 'signup_grant', 'chargeback'));
CREATE UNIQUE INDEX ledger_payment_once ON ledger_entries (payment_id) WHERE kind = 'topup';
