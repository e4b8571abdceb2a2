-- Indexes for the usage dashboard at millions of rows: the per-user index
-- covers the totals and the daily chart (no table reads), and the model
-- filter gets its own.
DROP INDEX usage_by_user_time;
CREATE INDEX usage_by_user_time ON usage_records
    (user_id, created_at, model, cost, prompt_tokens, completion_tokens);
CREATE INDEX usage_by_user_model_time ON usage_records (user_id, model, created_at);
-- A key's spend (`GET /v1/key`) is summed from the index alone.
DROP INDEX usage_by_key_time;
CREATE INDEX usage_by_key_time ON usage_records (key_id, created_at, cost);
