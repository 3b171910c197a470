#!/usr/bin/env python3
"""One HTTPS request as a 1.2 manager's libcloud 0.8 makes it: TLS 1.0 exactly
(`ssl.PROTOCOL_TLSv1`), the server's certificate verified against a CA file, no SNI,
HTTP Basic authentication with the SHA-1 (hex) of the password, a new connection per request.

Usage: tls10_client.py HOST PORT CAFILE METHOD PATH [USER PASSWORD]
Prints `<status> <negotiated TLS version>` on the first line, then the body.
With METHOD `CERT`: prints the server's certificate (DER) in hex only.
"""

import base64
import hashlib
import http.client
import ssl
import sys


def main(argv):
    host, port, cafile, method, path = argv[:5]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1
    # OpenSSL 3 allows TLS 1.0's signatures only at security level 0; the suites of 2013.
    ctx.set_ciphers("ECDHE+AES:RSA+AES:@SECLEVEL=0")
    ctx.load_verify_locations(cafile)
    # libcloud 0.8 matched the host itself (CN and DNS names), without SNI.
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
    if method == "CERT":
        conn.connect()
        print(conn.sock.getpeercert(binary_form=True).hex())
        return
    headers = {"Content-Length": "0"}
    if len(argv) >= 7:
        user, password = argv[5], argv[6]
        digest = hashlib.sha1(password.encode()).hexdigest()
        token = base64.b64encode(f"{user}:{digest}".encode()).decode()
        headers["Authorization"] = "Basic " + token
    conn.request(method, path, body="", headers=headers)
    response = conn.getresponse()
    version = conn.sock.version()
    print(response.status, version)
    print(response.read().decode(errors="replace"))


if __name__ == "__main__":
    main(sys.argv[1:])
