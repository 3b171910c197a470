-- When the operator disabled the account (`director user disable`), UTC; NULL while it is
-- enabled. A disabled user's logins and certificate requests are refused and their user
-- certificates no longer accepted; their services keep running and are charged as before
-- (docs/operations.md, "Managing users"). A director of an older build (or 1.2) beside it
-- reads and writes the table as before and ignores the column.
ALTER TABLE "user" ADD COLUMN disabled DATETIME;
