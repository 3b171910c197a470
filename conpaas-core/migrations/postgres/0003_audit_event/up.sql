-- The audit log; the same table as migrations/sqlite/0003 (see there and
-- docs/operations.md, "Audit log"). Append-only: a statement trigger refuses UPDATE,
-- DELETE and TRUNCATE. Times are UTC.
CREATE TABLE audit_event (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL,
    principal TEXT NOT NULL,
    source TEXT,
    request_id TEXT,
    uid INTEGER,
    username TEXT,
    aid INTEGER,
    sid INTEGER,
    detail TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_event_at ON audit_event (at);
CREATE INDEX audit_event_uid_at ON audit_event (uid, at);

CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only';
END
$$;

CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
