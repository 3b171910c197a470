#!/usr/bin/env python3
"""moto's EC2 server for the EC2 tests, plus a boto3 reader of what it holds.

Usage:
  moto_ec2.py serve PORT        run moto's server on 127.0.0.1:PORT until stdin closes
  moto_ec2.py list PORT REGION  print the region's instances as JSON (boto3: an independent
                                EC2 client, so the tests do not read moto with our own code)
  moto_ec2.py setup PORT REGION create the key pair "conpaas" and a VPC with a subnet and a
                                security group in REGION (once); print their ids as JSON
  moto_ec2.py sign              read a captured request as JSON on stdin, print the SigV4
                                signature botocore computes for it (moto checks none)

moto (5.2) records a RunInstances ClientToken but does not honour it, and does not know the
`client-token` filter of DescribeInstances. `serve` adds both as AWS documents them
("Ensuring idempotency in Amazon EC2 API requests"): a repeated RunInstances with a token
already used answers the instance that the first request created. Everything else is moto's.

The server exits when its standard input closes, so a test binary that dies (or keeps the
server in a static that is never dropped) leaves no process behind.
"""

import base64
import json
import os
import sys
import threading


def serve(port):
    # Unknown AMIs are refused as on AWS (InvalidAMIID.NotFound); moto's default AMIs exist.
    os.environ.setdefault("MOTO_ENABLE_AMI_VALIDATION", "true")
    from moto.ec2 import utils
    from moto.ec2.models.instances import InstanceBackend
    from moto.server import main

    utils.filter_dict_attribute_mapping["client-token"] = "client_token"
    original = InstanceBackend.run_instances

    def run_instances(self, image_id, count, user_data, security_group_names, **kwargs):
        token = kwargs.get("client_token")
        # moto's responses pass "ABCDE" when the request has no token.
        if token and token != "ABCDE":
            for reservation in self.reservations.values():
                if any(i.client_token == token for i in reservation.instances):
                    return reservation
        return original(self, image_id, count, user_data, security_group_names, **kwargs)

    InstanceBackend.run_instances = run_instances

    def exit_when_orphaned():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_when_orphaned, daemon=True).start()
    main(["-H", "127.0.0.1", "-p", str(port)])


def list_instances(port, region):
    import boto3

    ec2 = boto3.client(
        "ec2",
        region_name=region,
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="AKIDINSPECTOR",
        aws_secret_access_key="inspector",
    )
    found = []
    for reservation in ec2.describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            attribute = ec2.describe_instance_attribute(
                InstanceId=instance["InstanceId"], Attribute="userData"
            )
            user_data = attribute.get("UserData", {}).get("Value")
            found.append(
                {
                    "id": instance["InstanceId"],
                    "state": instance["State"]["Name"],
                    "image": instance.get("ImageId"),
                    "type": instance.get("InstanceType"),
                    "key": instance.get("KeyName"),
                    "groups": [g["GroupName"] for g in instance.get("SecurityGroups", [])],
                    "group_ids": [g["GroupId"] for g in instance.get("SecurityGroups", [])],
                    "subnet": instance.get("SubnetId"),
                    "http_tokens": instance.get("MetadataOptions", {}).get("HttpTokens"),
                    "public_ip": instance.get("PublicIpAddress"),
                    "private_ip": instance.get("PrivateIpAddress"),
                    "client_token": instance.get("ClientToken"),
                    "tags": {t["Key"]: t["Value"] for t in instance.get("Tags", [])},
                    "user_data": base64.b64decode(user_data).decode() if user_data else None,
                }
            )
    print(json.dumps(found))


def setup(port, region):
    import boto3

    ec2 = boto3.client(
        "ec2",
        region_name=region,
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="AKIDINSPECTOR",
        aws_secret_access_key="inspector",
    )
    if not ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["conpaas"]}])["KeyPairs"]:
        ec2.create_key_pair(KeyName="conpaas")
    tagged = [{"Name": "tag:Name", "Values": ["conpaas-test"]}]
    vpcs = ec2.describe_vpcs(Filters=tagged)["Vpcs"]
    if vpcs:
        vpc = vpcs[0]["VpcId"]
        subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
        group = ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["conpaas"]}]
        )["SecurityGroups"][0]["GroupId"]
    else:
        vpc = ec2.create_vpc(
            CidrBlock="10.7.0.0/16",
            TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "conpaas-test"}]}],
        )["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(
            GroupName="conpaas", Description="conpaas managers", VpcId=vpc
        )["GroupId"]
    print(json.dumps({"vpc": vpc, "subnet": subnet, "group": group}))


def sign():
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    captured = json.load(sys.stdin)
    request = AWSRequest(
        method="POST",
        url=captured["url"],
        data=captured["body"].encode(),
        headers={
            "Content-Type": captured["content_type"],
            "Host": captured["host"],
            "X-Amz-Date": captured["amz_date"],
        },
    )
    request.context["timestamp"] = captured["amz_date"]
    auth = SigV4Auth(
        Credentials(captured["access_key_id"], captured["secret"]), "ec2", captured["region"]
    )
    canonical = auth.canonical_request(request)
    print(auth.signature(auth.string_to_sign(request, canonical), request))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 3:
        serve(int(sys.argv[2]))
    elif sys.argv[1:2] == ["list"] and len(sys.argv) == 4:
        list_instances(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1:2] == ["setup"] and len(sys.argv) == 4:
        setup(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1:] == ["sign"]:
        sign()
    else:
        sys.exit(__doc__)
