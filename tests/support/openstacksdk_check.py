"""OpenStack's own SDK against the fake OpenStack of tests/it/openstack/fake.rs.

openstacksdk (with keystoneauth1) discovers Keystone's versions, takes a token, reads the
catalog, discovers each service's versions and negotiates the Nova microversion: the fake must
serve all of it as OpenStack does, or this script fails. Run by tests/it/openstack/sdk.rs.

Usage: openstacksdk_check.py BASE_URL   (the fake's http://127.0.0.1:PORT)

Prints one JSON object with what each step saw; exits non-zero on the first failure.
"""

import base64
import json
import sys

import openstack
from keystoneauth1 import exceptions as ks_exceptions


def connect(auth_type, **auth):
    return openstack.connect(
        load_yaml_config=False,
        load_envvars=False,
        auth_type=auth_type,
        auth=auth,
        region_name="RegionOne",
    )


def main():
    base = sys.argv[1]
    auth_url = base + "/identity"
    seen = {}

    conn = connect(
        "password",
        auth_url=auth_url,
        username="alice",
        password="secret-pw",
        project_name="conpaas",
        user_domain_name="Default",
        project_domain_name="Default",
    )
    seen["token_issued"] = bool(conn.authorize())

    flavor = conn.compute.find_flavor("m1.small", ignore_missing=False)
    seen["flavor_id"] = flavor.id
    image = conn.image.find_image("ubuntu-24.04", ignore_missing=False)
    seen["image_id"] = image.id
    network = conn.network.find_network("private", ignore_missing=False)
    seen["network_id"] = network.id
    public = conn.network.find_network("public", ignore_missing=False)
    seen["public_external"] = bool(public.is_router_external)
    seen["missing_flavor"] = conn.compute.find_flavor("m1.huge", ignore_missing=True)

    script = "#!/bin/sh\necho sdk\n"
    server = conn.compute.create_server(
        name="sdk-check",
        image_id=image.id,
        flavor_id=flavor.id,
        networks=[{"uuid": network.id}],
        user_data=base64.b64encode(script.encode()).decode(),
        metadata={"conpaas_client_token": "cps-sdk-s1"},
        key_name="conpaas",
    )
    seen["server_id"] = server.id
    server = conn.compute.wait_for_server(server, status="ACTIVE", wait=30, interval=0.1)
    fetched = conn.compute.get_server(server.id)
    seen["server_status"] = fetched.status
    seen["server_name"] = fetched.name
    seen["server_metadata"] = dict(fetched.metadata)
    seen["server_addresses"] = {
        name: [address["addr"] for address in addresses]
        for name, addresses in fetched.addresses.items()
    }
    seen["listed"] = [s.id for s in conn.compute.servers(details=True, name="^sdk-check$")]

    floating_ip = conn.network.create_ip(floating_network_id=public.id, description="sdk")
    port = next(iter(conn.network.ports(device_id=server.id)))
    floating_ip = conn.network.update_ip(floating_ip, port_id=port.id)
    seen["floating_ip"] = floating_ip.floating_ip_address
    seen["floating_fixed"] = floating_ip.fixed_ip_address
    seen["floating_port_is_servers"] = floating_ip.port_id == port.id
    conn.network.delete_ip(floating_ip)
    seen["floating_ips_left"] = len(list(conn.network.ips()))

    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=10, interval=0.1)
    seen["deleted"] = conn.compute.find_server(server.id, ignore_missing=True) is None

    application = connect(
        "v3applicationcredential",
        auth_url=auth_url,
        application_credential_id=sys.argv[2],
        application_credential_secret="app-secret",
    )
    seen["application_token_issued"] = bool(application.authorize())
    seen["application_flavors"] = sorted(f.name for f in application.compute.flavors())

    wrong = connect(
        "password",
        auth_url=auth_url,
        username="alice",
        password="not-the-password",
        project_name="conpaas",
        user_domain_name="Default",
        project_domain_name="Default",
    )
    # keystoneauth's own session: Connection.authorize() would wrap the error in the SDK's.
    try:
        wrong.session.get_token()
        seen["wrong_password"] = "accepted"
    except ks_exceptions.Unauthorized as error:
        seen["wrong_password"] = type(error).__name__

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
