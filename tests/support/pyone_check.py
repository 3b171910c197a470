"""Checks the fake OpenNebula of tests/it/opennebula_xmlrpc against OpenNebula's own client
and schemas (run by tests/it/opennebula_xmlrpc/pyone.rs).

    pyone_check.py URL USER PASSWORD XSD_DIR DOCS_DIR

pyone (OpenNebula's Python binding, its XML bindings generated from OpenNebula's XSD files)
instantiates template 7, reads the VM and the pool, terminates the VM; a wrong password must
raise OneAuthenticationException and a missing template OneNoExistsException. Then every VM
document (`<VM>`, against vm.xsd) and pool document (`<VM_POOL>`, against vm_pool.xsd) in
DOCS_DIR, and those read here, are validated with xmlschema. OpenNebula's documents carry no
namespace while its schemas have the target namespace http://opennebula.org/XMLSchema (with
elementFormDefault="qualified"), so the namespace is declared on the root before validating,
as a binding generated from those schemas reads them.

Prints one line per check and "ok" at the end; any failure raises (exit status 1).
"""

import os
import sys
import xmlrpc.client

import pyone
import xmlschema

NAMESPACE = "http://opennebula.org/XMLSchema"


def namespaced(document):
    """The document with OpenNebula's schema namespace as its default one."""
    for root in ("<VM_POOL>", "<VM_POOL/>", "<VM>"):
        if document.startswith(root):
            return document.replace(
                root.rstrip("/>"), '%s xmlns="%s"' % (root.rstrip("/>"), NAMESPACE), 1
            )
    raise AssertionError("not a VM or VM_POOL document: %r" % document[:80])


def validate(schemas, document, origin):
    kind = "vm_pool" if document.startswith("<VM_POOL") else "vm"
    errors = list(schemas[kind].iter_errors(namespaced(document)))
    if errors:
        raise AssertionError(
            "%s does not validate against %s.xsd: %s\n%s"
            % (origin, kind, errors[0], document)
        )
    return kind


def main():
    url, user, password, xsd_dir, docs_dir = sys.argv[1:6]
    schemas = {
        "vm": xmlschema.XMLSchema(os.path.join(xsd_dir, "vm.xsd")),
        "vm_pool": xmlschema.XMLSchema(os.path.join(xsd_dir, "vm_pool.xsd")),
    }
    one = pyone.OneServer(url, session="%s:%s" % (user, password))

    assert one.system.version() == "7.2.0"
    vmid = one.template.instantiate(7, "pyone-check", False, {"TEMPLATE": {"LABELS": "pyone"}})
    assert isinstance(vmid, int), vmid
    print("instantiate: VM %d" % vmid)

    # The fake's VMs go PENDING, PROLOG, BOOT, RUNNING by reads, as oned's do over time.
    states = []
    for _ in range(10):
        vm = one.vm.info(vmid)
        states.append("%s/%s" % (vm.STATE, vm.LCM_STATE))
        if vm.STATE == 3 and vm.LCM_STATE == 3:
            break
    print("vm.info states: %s" % " ".join(states))
    assert vm.ID == vmid, vm.ID
    assert vm.NAME == "pyone-check", vm.NAME
    assert vm.STATE == 3 and vm.LCM_STATE == 3, (vm.STATE, vm.LCM_STATE)
    nics = vm.TEMPLATE["NIC"]
    nic = nics[0] if isinstance(nics, list) else nics
    assert nic["IP"].startswith("192.168.0."), nic
    assert vm.TEMPLATE["CONTEXT"]["NETWORK"] == "YES", vm.TEMPLATE["CONTEXT"]
    assert vm.USER_TEMPLATE["LABELS"] == "pyone", vm.USER_TEMPLATE
    print("vm.info: %s %s/%s %s" % (vm.NAME, vm.STATE, vm.LCM_STATE, nic["IP"]))

    pool = one.vmpool.info(-1, -1, -1, -1)
    ids = [entry.ID for entry in pool.VM]
    assert vmid in ids, ids
    print("vmpool.info: %d VM(s)" % len(ids))

    assert one.vm.action("terminate-hard", vmid) == vmid
    assert one.vm.info(vmid).STATE == 6
    print("vm.action terminate-hard: DONE")

    try:
        pyone.OneServer(url, session="%s:wrong" % user).vm.info(vmid)
        raise AssertionError("a wrong password was accepted")
    except pyone.OneAuthenticationException as error:
        print("wrong password: OneAuthenticationException: %s" % error)
    try:
        one.template.instantiate(8, "nothing", False, "")
        raise AssertionError("a missing template was instantiated")
    except pyone.OneNoExistsException as error:
        print("missing template: OneNoExistsException: %s" % error)

    # The raw documents, through the standard library's XML-RPC client.
    raw = xmlrpc.client.ServerProxy(url)
    session = "%s:%s" % (user, password)
    documents = [
        ("raw one.vm.info", raw.one.vm.info(session, vmid)[1]),
        ("raw one.vmpool.info", raw.one.vmpool.info(session, -2, -1, -1, -2)[1]),
    ]
    for name in sorted(os.listdir(docs_dir)):
        with open(os.path.join(docs_dir, name), encoding="utf-8") as handle:
            documents.append((name, handle.read()))
    counts = {"vm": 0, "vm_pool": 0}
    for origin, document in documents:
        counts[validate(schemas, document, origin)] += 1
    print("schemas: %d VM and %d pool documents valid" % (counts["vm"], counts["vm_pool"]))
    print("ok")


if __name__ == "__main__":
    main()
