-- Rebuilds the 1.2 tables with the constraints 1.2 only had in code (or not at
-- all), keeping every name, column and value, and adds issued_certificate.
-- See docs/database.md. SQLite cannot add constraints to a table in place, so
-- this is its documented 12-step rebuild: create new, copy, drop old, rename.
-- The store switches PRAGMA foreign_keys off on this connection before running
-- migrations (it cannot change inside the transaction diesel wraps this file in)
-- and runs PRAGMA foreign_key_check afterwards.

-- 1. Refuse rows that cannot satisfy the new constraints, before touching
--    anything: the whole migration rolls back and the database stays as it was.
--    The error names the constraint below; docs/database.md gives the queries
--    that find the rows and how to fix them. Deleting such rows here instead
--    could forget a service whose VM still runs.
CREATE TEMP TABLE conpaas_adoption_check (
    problem TEXT NOT NULL,
    n_rows INTEGER NOT NULL,
    CONSTRAINT application_rows_without_a_valid_owner
        CHECK (problem <> 'application_owner' OR n_rows = 0),
    CONSTRAINT service_rows_without_a_valid_application
        CHECK (problem <> 'service_application' OR n_rows = 0),
    CONSTRAINT service_rows_without_a_valid_owner
        CHECK (problem <> 'service_owner' OR n_rows = 0),
    CONSTRAINT services_sharing_a_subnet_in_one_application
        CHECK (problem <> 'service_subnet' OR n_rows = 0)
);

INSERT INTO conpaas_adoption_check
SELECT 'application_owner', count(*) FROM application
WHERE user_id IS NULL OR user_id NOT IN (SELECT uid FROM "user");

INSERT INTO conpaas_adoption_check
SELECT 'service_application', count(*) FROM service
WHERE application_id IS NULL OR application_id NOT IN (SELECT aid FROM application);

-- A service with no user_id takes its application's owner (1.2 always set both,
-- and they always agree), so only a user that does not exist is refused.
INSERT INTO conpaas_adoption_check
SELECT 'service_owner', count(*) FROM service AS s
WHERE coalesce(s.user_id, (SELECT a.user_id FROM application AS a WHERE a.aid = s.application_id))
      IS NULL
   OR coalesce(s.user_id, (SELECT a.user_id FROM application AS a WHERE a.aid = s.application_id))
      NOT IN (SELECT uid FROM "user");

-- Two concurrent 1.2 /start calls could give two services of one application the
-- same subnet; both VMs use it, so neither row may silently lose it.
INSERT INTO conpaas_adoption_check
SELECT 'service_subnet', count(*) FROM (
    SELECT application_id, subnet FROM service
    WHERE subnet IS NOT NULL
    GROUP BY application_id, subnet
    HAVING count(*) > 1
);

DROP TABLE conpaas_adoption_check;

-- 2. The new tables. AUTOINCREMENT makes SQLite keep the highest id ever issued
--    in sqlite_sequence, so a deleted row's id is never given again (1.2 reused
--    them, letting a dead manager's certificate match a new service). Column
--    order and types are 1.2's so old tools reading the file still work.
CREATE TABLE user_new (
    uid INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    username VARCHAR(80) NOT NULL UNIQUE,
    fname VARCHAR(256),
    lname VARCHAR(256),
    email VARCHAR(256) UNIQUE,
    affiliation VARCHAR(256),
    password VARCHAR(256),
    created DATETIME,
    credit INTEGER NOT NULL DEFAULT 0 CHECK (credit >= 0)
);

CREATE TABLE application_new (
    aid INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(256),
    user_id INTEGER NOT NULL REFERENCES "user" (uid)
);

CREATE TABLE service_new (
    sid INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(256),
    type VARCHAR(32),
    state VARCHAR(32),
    created DATETIME,
    manager VARCHAR(512),
    vmid VARCHAR(256),
    cloud VARCHAR(128),
    subnet VARCHAR(18),
    user_id INTEGER NOT NULL REFERENCES "user" (uid),
    application_id INTEGER NOT NULL REFERENCES application (aid),
    -- Two concurrent starts can never get the same VPN subnet (NULLs are distinct).
    CONSTRAINT service_application_subnet_unique UNIQUE (application_id, subnet)
);

-- 3. Copy. Explicit ids move sqlite_sequence to the highest id present.
--    1.2 stored /new_user's credit unvalidated: with INTEGER affinity a numeric
--    text became a number but "abc" stayed text. The rule: an integer is kept,
--    a real is truncated toward zero, anything else (text, blob, NULL) becomes 0,
--    and a negative result becomes 0.
INSERT INTO user_new (uid, username, fname, lname, email, affiliation, password, created, credit)
SELECT uid, username, fname, lname, email, affiliation, password, created,
       CASE
           WHEN typeof(credit) = 'integer' THEN max(credit, 0)
           WHEN typeof(credit) = 'real' THEN max(CAST(credit AS INTEGER), 0)
           ELSE 0
       END
FROM "user";

INSERT INTO application_new (aid, name, user_id)
SELECT aid, name, user_id FROM application;

INSERT INTO service_new (sid, name, type, state, created, manager, vmid, cloud, subnet,
                         user_id, application_id)
SELECT s.sid, s.name, s.type, s.state, s.created, s.manager, s.vmid, s.cloud, s.subnet,
       coalesce(s.user_id, (SELECT a.user_id FROM application AS a WHERE a.aid = s.application_id)),
       s.application_id
FROM service AS s;

-- 4. Swap. Renaming also renames the sqlite_sequence entries.
DROP TABLE service;
DROP TABLE application;
DROP TABLE "user";
ALTER TABLE user_new RENAME TO "user";
ALTER TABLE application_new RENAME TO application;
ALTER TABLE service_new RENAME TO service;

-- 5. Indexes on the foreign keys (service.application_id is the leading column of
--    service_application_subnet_unique, which serves it). No unique index on
--    (user_id, name): 1.2's /renameapp allowed duplicate names, so an adopted
--    database may have them; /createapp checks inside its transaction instead.
CREATE INDEX application_user_id ON application (user_id);
CREATE INDEX service_user_id ON service (user_id);

-- 6. Every certificate the CA issues, so serials are unique and can be revoked
--    later. No foreign keys: certificates outlive deleted services, and the
--    director's own certificates belong to no user. Times are UTC.
CREATE TABLE issued_certificate (
    serial TEXT NOT NULL PRIMARY KEY,
    role TEXT NOT NULL,
    uid INTEGER,
    sid INTEGER,
    not_before DATETIME NOT NULL,
    not_after DATETIME NOT NULL,
    created DATETIME NOT NULL
);

CREATE INDEX issued_certificate_uid_sid ON issued_certificate (uid, sid);
