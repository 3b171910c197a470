-- The audit log (docs/operations.md, "Audit log"): who did what, from where, with which
-- outcome. Append-only: the triggers refuse every UPDATE and DELETE, so that a compromised
-- or buggy director cannot rewrite history through its own connection. Times are UTC.
-- Never a secret: no password, hash, key or certificate body is ever written here.
CREATE TABLE audit_event (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at DATETIME NOT NULL,
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

CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
BEGIN
    SELECT RAISE(ABORT, 'audit_event is append-only');
END;

CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
BEGIN
    SELECT RAISE(ABORT, 'audit_event is append-only');
END;
