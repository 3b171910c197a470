-- Each service row's place in its VM's lifecycle (docs/reliability.md, "The lifecycle"):
--   starting  the row exists, its VM is being created (no VM recorded yet);
--   running   the start completed: the row records its VM;
--   stopping  a stop, /delete or the manager's terminate call owns the row: its VM is being
--             terminated; the row goes once the cloud confirms the VM gone (no refund);
--   undoing   a failed or interrupted start (or a stop before it completed) owns the row:
--             every VM under its client token is being terminated; the row goes, and its
--             start is refunded, once the clouds confirm none is left.
-- Every change is one conditional UPDATE or DELETE on the expected state, so whoever races
-- (the start task, a stop, reconciliation, another replica) exactly one actor wins.
ALTER TABLE service ADD COLUMN lifecycle TEXT NOT NULL DEFAULT 'running'
    CHECK (lifecycle IN ('starting', 'running', 'stopping', 'undoing'));
UPDATE service SET lifecycle = 'starting' WHERE vmid IS NULL;
