-- The `x-request-id` a client sent, kept beside the director's own request id (`request_id`):
-- a client cannot make its events share an id with another's (docs/operations.md, "Audit
-- log"). Cut to 128 bytes; NULL when the client sent none, and for events of no request.
ALTER TABLE audit_event ADD COLUMN client_request_id TEXT;
