-- The constraints 1.2 only had in code (or not at all), added in place, and the
-- issued_certificate table. The same rules as migrations/sqlite/0002; see
-- docs/database.md.

-- 1. Refuse rows that cannot satisfy the new constraints, before changing
--    anything (the migration's transaction rolls back). Deleting them instead
--    could forget a service whose VM still runs.
DO $$
DECLARE
    n_rows BIGINT;
BEGIN
    SELECT count(*) INTO n_rows FROM application
    WHERE user_id IS NULL OR user_id NOT IN (SELECT uid FROM "user");
    IF n_rows > 0 THEN
        RAISE EXCEPTION 'application_rows_without_a_valid_owner: % row(s), see docs/database.md', n_rows;
    END IF;

    SELECT count(*) INTO n_rows FROM service
    WHERE application_id IS NULL OR application_id NOT IN (SELECT aid FROM application);
    IF n_rows > 0 THEN
        RAISE EXCEPTION 'service_rows_without_a_valid_application: % row(s), see docs/database.md', n_rows;
    END IF;

    SELECT count(*) INTO n_rows FROM service AS s
    WHERE coalesce(s.user_id, (SELECT a.user_id FROM application AS a WHERE a.aid = s.application_id))
          IS NULL
       OR coalesce(s.user_id, (SELECT a.user_id FROM application AS a WHERE a.aid = s.application_id))
          NOT IN (SELECT uid FROM "user");
    IF n_rows > 0 THEN
        RAISE EXCEPTION 'service_rows_without_a_valid_owner: % row(s), see docs/database.md', n_rows;
    END IF;

    SELECT count(*) INTO n_rows FROM (
        SELECT application_id, subnet FROM service
        WHERE subnet IS NOT NULL
        GROUP BY application_id, subnet
        HAVING count(*) > 1
    ) AS shared;
    IF n_rows > 0 THEN
        RAISE EXCEPTION 'services_sharing_a_subnet_in_one_application: % subnet(s), see docs/database.md', n_rows;
    END IF;
END
$$;

-- 2. A service with no user_id takes its application's owner (1.2 always set
--    both, and they always agree).
UPDATE service AS s SET user_id = a.user_id
FROM application AS a
WHERE s.user_id IS NULL AND a.aid = s.application_id;

-- 3. Credit: a 64-bit integer that is never negative (NULL and negative become 0).
--    Text columns lose their 1.2 length limits, which SQLite never enforced:
--    both backends then accept the same values and lengths are the director's
--    to check.
ALTER TABLE "user"
    ALTER COLUMN credit TYPE BIGINT USING greatest(coalesce(credit, 0), 0),
    ALTER COLUMN credit SET DEFAULT 0,
    ALTER COLUMN credit SET NOT NULL,
    ADD CONSTRAINT user_credit_non_negative CHECK (credit >= 0),
    ALTER COLUMN username TYPE TEXT,
    ALTER COLUMN fname TYPE TEXT,
    ALTER COLUMN lname TYPE TEXT,
    ALTER COLUMN email TYPE TEXT,
    ALTER COLUMN affiliation TYPE TEXT,
    ALTER COLUMN password TYPE TEXT;

ALTER TABLE application
    ALTER COLUMN name TYPE TEXT,
    ALTER COLUMN user_id SET NOT NULL;

ALTER TABLE service
    ALTER COLUMN name TYPE TEXT,
    ALTER COLUMN type TYPE TEXT,
    ALTER COLUMN state TYPE TEXT,
    ALTER COLUMN manager TYPE TEXT,
    ALTER COLUMN vmid TYPE TEXT,
    ALTER COLUMN cloud TYPE TEXT,
    ALTER COLUMN subnet TYPE TEXT,
    ALTER COLUMN user_id SET NOT NULL,
    ALTER COLUMN application_id SET NOT NULL,
    -- Two concurrent starts can never get the same VPN subnet (NULLs are distinct).
    ADD CONSTRAINT service_application_subnet_unique UNIQUE (application_id, subnet);

-- 4. Sequences never go back, so ids are not reused; make sure each one is at
--    least at the highest id present (rows inserted with explicit ids would
--    otherwise collide).
DO $$
DECLARE
    target RECORD;
    seq TEXT;
    top BIGINT;
BEGIN
    FOR target IN
        SELECT * FROM (VALUES ('"user"', 'uid'), ('application', 'aid'), ('service', 'sid'))
            AS t (table_name, column_name)
    LOOP
        seq := pg_get_serial_sequence(target.table_name, target.column_name);
        IF seq IS NULL THEN
            RAISE EXCEPTION 'column %.% has no sequence: ids cannot be generated',
                target.table_name, target.column_name;
        END IF;
        EXECUTE format('SELECT max(%I) FROM %s', target.column_name, target.table_name) INTO top;
        IF top IS NOT NULL THEN
            PERFORM setval(seq, greatest(top, coalesce(pg_sequence_last_value(seq::regclass), 0)));
        END IF;
    END LOOP;
END
$$;

-- 5. Indexes on the foreign keys (service.application_id is the leading column of
--    service_application_subnet_unique). No unique index on (user_id, name):
--    1.2's /renameapp allowed duplicate names; /createapp checks in its
--    transaction instead.
CREATE INDEX IF NOT EXISTS application_user_id ON application (user_id);
CREATE INDEX IF NOT EXISTS service_user_id ON service (user_id);

-- 6. Every certificate the CA issues. No foreign keys: certificates outlive
--    deleted services, and the director's own certificates belong to no user.
--    Times are UTC.
CREATE TABLE issued_certificate (
    serial TEXT NOT NULL PRIMARY KEY,
    role TEXT NOT NULL,
    uid INTEGER,
    sid INTEGER,
    not_before TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    not_after TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    created TIMESTAMP WITHOUT TIME ZONE NOT NULL
);

CREATE INDEX issued_certificate_uid_sid ON issued_certificate (uid, sid);
