-- VMs the director created whose service row was gone when the VM arrived (a stop or
-- reconciliation settled the row while its create was still running), kept until the cloud
-- confirms them terminated: the director forgets no VM it knows of (docs/operations.md, "No VM
-- outlives its row: the lifecycle"). Reconciliation retries each every pass. Times are UTC.
CREATE TABLE abandoned_vm (
    cloud TEXT NOT NULL,
    vmid TEXT NOT NULL,
    sid INTEGER NOT NULL,
    noted DATETIME NOT NULL,
    PRIMARY KEY (cloud, vmid)
);
