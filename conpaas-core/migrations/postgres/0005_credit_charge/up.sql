-- Every manager credit charge applied, by its id; the same table as migrations/sqlite/0005
-- (see there and docs/operations.md, "Credit when the database fails"). Times are UTC.
CREATE TABLE credit_charge (
    id TEXT NOT NULL PRIMARY KEY,
    uid INTEGER NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    at TIMESTAMP WITHOUT TIME ZONE NOT NULL
);

CREATE INDEX credit_charge_at ON credit_charge (at);
