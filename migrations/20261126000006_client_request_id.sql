-- The id a client sent in `x-request-id`, kept beside the gateway's own
-- (which keys the ledger), so a client can find a request by its own id.
ALTER TABLE usage_records ADD COLUMN client_request_id TEXT;
CREATE INDEX usage_by_client_request ON usage_records (user_id, client_request_id)
    WHERE client_request_id IS NOT NULL;
