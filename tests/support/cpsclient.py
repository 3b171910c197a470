#!/usr/bin/env python3
"""A director client shaped like the ConPaaS 1.2 Python cpsclient, for the end-to-end tests.

Standard library only (ssl, urllib.request, zipfile). Like cps/base.py at 1.2.0 it adds the
fields `username` and `password` to every call, urlencoded: in the body of a POST, in the
query string of a GET; it presents the user's cert.pem/key.pem when given, and it turns any
HTTP error status into an answer instead of an exception (the test decides what it means).
Unlike the 1.2 client it verifies the director's certificate against the CA (host name
included): the tests want to know that a real client can.

Usage:
  cpsclient.py call --url URL --cacert CA [--cert C --key K] [--username U --password P]
               METHOD ROUTE [NAME=VALUE ...]
  cpsclient.py getcerts --url URL --cacert CA --username U --password P --dest DIR

Prints one JSON object: {"status": int, "headers": [[name, value], ...], "body": hex}
and, for getcerts, "extracted": the member names written into DIR (as `cpsclient
credentials` extracts certs.zip into ~/.conpaas/).
"""

import argparse
import io
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile


def context(args):
    ctx = ssl.create_default_context(cafile=args.cacert)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def call(args, method, route, fields):
    params = list(fields)
    # cps/base.py sets both keys of its parameter dict on every call; a call that names them
    # itself (login, getcerts) sends its own.
    named = {name for name, _ in params}
    if args.username is not None:
        for name, value in (("username", args.username), ("password", args.password or "")):
            if name not in named:
                params.append((name, value))
    data = urllib.parse.urlencode(params)
    url = args.url.rstrip("/") + "/" + route.lstrip("/")
    if method == "GET":
        if data:
            url += "?" + data
        request = urllib.request.Request(url, method="GET")
    else:
        request = urllib.request.Request(url, data=data.encode("ascii"), method=method)
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context(args)))
    try:
        with opener.open(request, timeout=60) as response:
            status, headers, body = response.status, response.getheaders(), response.read()
    except urllib.error.HTTPError as error:
        status, headers, body = error.code, list(error.headers.items()), error.read()
    return {
        "status": status,
        "headers": [[name, value] for name, value in headers],
        "body": body.hex(),
    }


def getcerts(args):
    answer = call(args, "POST", "getcerts", [])
    body = bytes.fromhex(answer["body"])
    extracted = []
    try:
        json.loads(body.decode("utf-8"))
        is_json = True
    except (ValueError, UnicodeDecodeError):
        is_json = False
    # As cps/base.py: a body that is not JSON is the archive.
    if not is_json:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            for name in archive.namelist():
                with open(os.path.join(args.dest, name), "wb") as out:
                    out.write(archive.read(name))
                extracted.append(name)
    answer["extracted"] = extracted
    return answer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["call", "getcerts"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--cacert", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--dest")
    parser.add_argument("rest", nargs="*")
    args = parser.parse_intermixed_args()
    if args.command == "getcerts":
        answer = getcerts(args)
    else:
        method, route, *pairs = args.rest
        fields = [tuple(pair.split("=", 1)) for pair in pairs]
        answer = call(args, method, route, fields)
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
