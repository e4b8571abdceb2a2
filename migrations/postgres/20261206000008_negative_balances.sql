-- A balance may go below zero (a debt, see `debts`): charges are never cut.
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_balance_check;
ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_balance_after_check;
