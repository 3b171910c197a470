#!/usr/bin/env python3
"""Reference client for the director's OpenNebula "OCCI 0.x" endpoint.

Drives Apache libcloud's OpenNebula driver in its 2.0-2.2 dialect
(api_version='2.2', the dialect ConPaaS 1.2.0 selects) the way a 1.2.0
manager does when it starts agents, so a Rust integration test can check
that the endpoint answers in a form libcloud accepts.

Usage:
  libcloud_occi.py --url https://HOST:PORT --user U --password P [--cacert FILE] CMD
  CMD: create NAME [--image ID] [--network ID] [--size small] [--userdata-file F]
       list
       destroy ID
Each command prints one JSON line on stdout; on failure the error goes to stderr
and the exit status is 1 (2 for bad arguments).
"""

import argparse
import json
import sys
import urllib.parse


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--cacert", help="PEM file of the CA to trust (replaces the default bundle)")
    p.add_argument("--no-name-fix", action="store_true",
                   help="send the NAME exactly as this libcloud does (empty, see below)")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("name")
    c.add_argument("--image", default="1")
    c.add_argument("--network", default="1")
    c.add_argument("--size", default="small")
    c.add_argument("--userdata-file")
    sub.add_parser("list")
    d = sub.add_parser("destroy")
    d.add_argument("id")
    return p.parse_args(argv)


def make_driver(args):
    # Must be set before the first request: libcloud reads CA_CERTS_PATH when it
    # builds its (lazy) HTTP connection, and requests then verifies chain + host name.
    import libcloud.security
    if args.cacert:
        libcloud.security.CA_CERTS_PATH = args.cacert
    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import Provider

    # Same URL handling as 1.2.0's OpenNebulaCloud: scheme picks TLS, the port
    # defaults to 80/443 and any path is dropped (requests go to /compute...).
    u = urllib.parse.urlparse(args.url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError("--url must be http(s)://host[:port]")
    drv = get_driver(Provider.OPENNEBULA)(
        args.user, secret=args.password, secure=(u.scheme == "https"),
        host=u.hostname, port=u.port, api_version="2.2")
    if not args.no_name_fix:
        _fix_empty_name(drv)
    return drv


def _fix_empty_name(drv):
    # libcloud >= 2.x (still in 3.9.1) overwrites its `name` argument with the
    # <NAME> element in OpenNebula_2_0_NodeDriver.create_node, so it posts <NAME />.
    # A 1.2.0 manager (bundled libcloud 0.8.0) sends the real name; restore it in
    # the body so the server sees what a manager sends.
    import xml.etree.ElementTree as ET
    conn = drv.connection
    orig = conn.request

    def request(action, *a, **kw):
        name = getattr(drv, "_pending_name", None)
        if action == "/compute" and kw.get("method") == "POST" and name is not None:
            root = ET.fromstring(kw["data"])
            el = root.find("NAME")
            if el is not None and not el.text:
                el.text = name
            kw["data"] = ET.tostring(root)
        return orig(action, *a, **kw)

    conn.request = request


def node_json(n):
    # 2.2-dialect nodes carry OpenNebulaNetwork objects in public_ips (the NIC's
    # IP is .address) and always an empty private_ips: 1.2.0 copies the public IP.
    ips = [getattr(ip, "address", ip) for ip in n.public_ips]
    return {"id": n.id, "name": n.name, "state": str(n.state),
            "public_ips": ips, "private_ips": list(n.private_ips)}


def run(args):
    drv = make_driver(args)
    if args.cmd == "create":
        from libcloud.compute.base import NodeImage
        from libcloud.compute.drivers.opennebula import OpenNebulaNetwork

        sizes = [s for s in drv.list_sizes() if s.name == args.size]  # static, no request
        if not sizes:
            raise ValueError("unknown size %r (small, medium, large, custom)" % args.size)
        # address=None: 1.2.0 never asks for a fixed IP, so no <IP> in the NIC.
        net = OpenNebulaNetwork(args.network, None, None, 1, drv)
        context = {"HOSTNAME": "$NAME", "IP_PUBLIC": "$NIC[IP]"}
        if args.userdata_file:
            with open(args.userdata_file, "rb") as f:
                # 1.2.0 hex-encodes the boot script into CONTEXT/USERDATA.
                context["USERDATA"] = f.read().hex()
        drv._pending_name = args.name
        node = drv.create_node(name=args.name, size=sizes[0],
                               image=NodeImage(args.image, "", drv),
                               networks=net, context=context)
        print(json.dumps(node_json(node)))
    elif args.cmd == "list":
        # GET /compute, then one GET /compute/<id> per entry.
        print(json.dumps([node_json(n) for n in drv.list_nodes()]))
    elif args.cmd == "destroy":
        from libcloud.compute.base import Node
        # Only a 204 counts as success for this driver (the manager ignores it).
        ok = drv.destroy_node(Node(args.id, None, None, [], [], drv))
        print(json.dumps({"ok": bool(ok)}))
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except Exception as e:  # report any libcloud/TLS/XML error to the calling test
        print("%s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
