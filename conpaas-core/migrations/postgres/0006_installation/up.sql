-- Which installation this database belongs to; the same table as migrations/sqlite/0006
-- (see there and docs/operations.md, "The reaper"). Times are UTC.
CREATE TABLE installation (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    tag TEXT NOT NULL,
    recorded TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    held_since TIMESTAMP WITHOUT TIME ZONE,
    held_listed_sid INTEGER,
    held_allocated_sid INTEGER
);
