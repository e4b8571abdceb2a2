-- Responses API answers kept with `store: true`: read back with
-- GET /v1/responses/{id} and continued with `previous_response_id`.
-- `conversation` holds every item up to and including the answer's output;
-- rows go with their user and after `expires_at` (30 days).
CREATE TABLE stored_responses (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    key_id       TEXT,
    response     TEXT NOT NULL,
    conversation TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE INDEX stored_responses_by_user ON stored_responses (user_id);
CREATE INDEX stored_responses_by_expiry ON stored_responses (expires_at);
