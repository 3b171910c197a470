-- Every manager credit charge applied, by its id (docs/operations.md, "Credit when the
-- database fails"): inserted in the transaction that takes the credit, so a charge retried
-- after an ambiguous commit, or replayed from the deferred-charges journal by two directors
-- at once, is applied once. Rows older than 30 days are pruned by maintenance. Times are UTC.
-- Numbered 0005: 0004 belongs to another change.
CREATE TABLE credit_charge (
    id TEXT NOT NULL PRIMARY KEY,
    uid INTEGER NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    at DATETIME NOT NULL
);

CREATE INDEX credit_charge_at ON credit_charge (at);
