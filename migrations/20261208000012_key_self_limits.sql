-- Limits a key's owner sets on the keys page, kept apart from the
-- operator's (expires_at, allowed_models, max_budget) so that they can only
-- narrow them: a request must fit both. self_monthly_cap is nano-USD per
-- calendar month (UTC), held as the budget scope 'keycap:<id>';
-- self_allowed_models is a JSON array (NULL: every model the operator
-- allows); self_expires_at is epoch milliseconds. NULL: no such limit.
ALTER TABLE api_keys ADD COLUMN self_monthly_cap BIGINT CHECK (self_monthly_cap >= 0);
ALTER TABLE api_keys ADD COLUMN self_allowed_models TEXT;
ALTER TABLE api_keys ADD COLUMN self_expires_at BIGINT;
