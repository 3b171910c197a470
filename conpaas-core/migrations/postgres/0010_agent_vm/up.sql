-- The agent VMs the managers start through the director (the managers' cloud: the OpenNebula
-- OCCI 0.x routes, docs/operations.md "Managers without cloud keys"), one row per VM, with the
-- lifecycle of the service rows (migration 4):
--   starting  the row exists, its VM is being created under the client token
--             cps-<installation>-s<sid>-a<id> (no VM recorded yet);
--   running   the VM is recorded (vmid, address);
--   stopping  the manager's DELETE, the service's stop or the reaper owns the row: its VM is
--             being terminated; the row goes once the cloud confirms it gone;
--   undoing   a failed or interrupted create (or a stop before it completed) owns the row:
--             every VM under its token is being terminated.
-- Ids are never reused (they are the OCCI ids managers hold, and part of the client token).
-- A service's rows go before its own row does: no agent outlives its service unseen.
--
-- service_cloud_key: the one credential of each service's manager for the managers' cloud,
-- stored as the SHA-256 (hex) of what the manager sends (the SHA-1 hex of the random key, as
-- OpenNebula's OCCI authentication does); deleted with the service row, which revokes it.
CREATE TABLE agent_vm (
    id SERIAL NOT NULL PRIMARY KEY,
    sid INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    cloud TEXT NOT NULL,
    name TEXT NOT NULL,
    vmid TEXT,
    address TEXT,
    lifecycle TEXT NOT NULL DEFAULT 'starting'
        CHECK (lifecycle IN ('starting', 'running', 'stopping', 'undoing')),
    created TIMESTAMP WITHOUT TIME ZONE NOT NULL
);
CREATE INDEX agent_vm_sid ON agent_vm (sid);
CREATE INDEX agent_vm_uid ON agent_vm (uid);
CREATE TABLE service_cloud_key (
    sid INTEGER NOT NULL PRIMARY KEY,
    key_hash TEXT NOT NULL
);
