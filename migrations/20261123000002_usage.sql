-- One row per proxied request. Booleans are 0/1 integers (portable).
CREATE TABLE usage_records (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id),
    key_id            TEXT REFERENCES api_keys (id),
    endpoint          TEXT NOT NULL,
    provider          TEXT,
    model             TEXT,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens     BIGINT NOT NULL DEFAULT 0,
    status            INTEGER NOT NULL,
    error_code        TEXT,
    latency_ms        BIGINT NOT NULL,
    ttft_ms           BIGINT,
    streamed          INTEGER NOT NULL DEFAULT 0,
    aborted           INTEGER NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL
);

CREATE INDEX usage_by_user_time ON usage_records (user_id, created_at);
CREATE INDEX usage_by_key_time ON usage_records (key_id, created_at);
