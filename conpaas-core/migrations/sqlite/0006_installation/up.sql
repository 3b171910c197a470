-- Which installation this database belongs to (docs/operations.md, "The reaper"): the tag of
-- the CA it was set up with (the `<tag>` of the VMs' client tokens `cps-<tag>-s<sid>`), so that
-- a database beside another installation's CA, or an empty one beside an existing CA (a lost
-- file, a mistyped DATABASE_URI), is refused instead of letting the reaper terminate the VMs
-- it does not know. One row at most. `held_*` is set while the reaper is held because the
-- cloud listed a VM whose service id this database never gave (a restored older backup);
-- `director reaper --confirm-restore` clears it. Times are UTC.
CREATE TABLE installation (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    tag TEXT NOT NULL,
    recorded DATETIME NOT NULL,
    held_since DATETIME,
    held_listed_sid INTEGER,
    held_allocated_sid INTEGER
);
