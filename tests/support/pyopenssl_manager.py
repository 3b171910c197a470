"""A test manager on ConPaaS 1.2's own TLS stack (issue #21).

ConPaaS 1.2's managers serve HTTPS with pyOpenSSL (`conpaas/core/https/server.py`): an
`SSL.Context(SSLv23_METHOD)` with the manager's certificate and key, the ConPaaS CA loaded for
verification, `set_verify(VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT, callback)` and no session
id context. OpenSSL then aborts every handshake that tries to resume a session
(`ssl_get_prev_session: session id context uninitialized`, alert internal_error): a client that
resumes fails on its second call to the same manager. The project's other fake managers are
rustls servers, which accept resumption; this one is configured exactly as 1.2's.

Answers are 1.2's: `HTTP/1.0 200 OK`, no Content-Length, the JSON-RPC answer
`{"result": ..., "error": null, "id": ...}`, and the end of the body is the end of the TCP
connection, closed without a TLS close_notify.

Usage: pyopenssl_manager.py HOST CERT KEY CA UID

Prints one JSON object per line on stdout: first `{"listening": PORT}`, then
`{"event": "call", ...}` for every call taken and `{"event": "tls_error", "error": ...}` for
every refused handshake. Runs until stdin is closed (the test's end).
"""

import email.parser
import email.policy
import hashlib
import json
import socket
import sys
import threading
import urllib.parse
import warnings

from OpenSSL import SSL
from OpenSSL._util import lib as _lib

PRINT_LOCK = threading.Lock()

# pyOpenSSL's X509 API is what 1.2's callback used; its deprecation notice is noise here.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def emit(record):
    with PRINT_LOCK:
        sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
        sys.stdout.flush()


class Manager:
    """What a php manager answers, enough for the director's calls (spec/director-api.md 4)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = False

    def answer(self, method, params):
        with self.lock:
            if method == "get_service_info":
                state = "RUNNING" if self.started else "INIT"
                self.started = False
                return {"state": state, "type": "php"}
            if method == "startup":
                self.started = True
                return {"state": "PROLOGUE"}
            if method == "upload_code_version":
                return {"codeVersionId": "code-7"}
            if method == "list_nodes":
                return {"masters": ["master-1"], "dir": ["dir-1"], "slaves": []}
            if method == "get_node_info":
                return {"serviceNode": {"id": "master-1", "ip": "10.1.2.3"}}
            return {}


def subject_of(x509):
    return {
        key.decode("ascii", "replace"): value.decode("utf-8", "replace")
        for key, value in x509.get_subject().get_components()
    }


def verify_callback(uid):
    """1.2's `_conpaas_callback_manager`: the frontend (the director), or a user or manager of
    the manager's own user."""

    def check(connection, x509, errnum, errdepth, ok):
        if errdepth > 0:
            return ok
        subject = subject_of(x509)
        role = subject.get("role")
        if role == "frontend":
            return ok
        if role not in ("user", "manager"):
            return False
        if subject.get("UID") != uid:
            return False
        return ok

    return check


def read_request(conn):
    """The request head and body (Content-Length framed, as the director sends it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("connection ended before the request head")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    command, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("connection ended before the request body")
        body += chunk
    return command, target, headers, body[:length]


def parse_call(command, target, headers, body):
    """1.2's dispatch: JSON-RPC GET and POST, the multipart upload POST."""
    content_type = headers.get("content-type", "")
    call = {"event": "call", "content_type": content_type}
    if command == "GET":
        query = urllib.parse.parse_qs(urllib.parse.urlparse(target).query)
        pairs = {key: values[-1] for key, values in query.items()}
        call["form"] = "GET"
        call["method"] = pairs.get("method")
        call["id"] = pairs.get("id")
        call["params"] = json.loads(pairs["params"]) if "params" in pairs else None
    elif content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        call["form"] = "UPLOAD"
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if part.get_filename() is None:
                call[name] = payload.decode("utf-8")
            else:
                call["file"] = {
                    "field": name,
                    "filename": part.get_filename(),
                    "len": len(payload),
                    "sha256": hashlib.sha256(payload).hexdigest(),
                    "text": payload.decode("utf-8", "replace"),
                }
        call["id"] = 1
        call["params"] = None
    else:
        request = json.loads(body)
        call["form"] = "POST"
        call["method"] = request.get("method")
        call["id"] = request.get("id")
        call["params"] = request.get("params")
    return call


def serve(conn, peer_sock, manager):
    try:
        try:
            conn.do_handshake()
        except SSL.Error as error:
            emit({"event": "tls_error", "error": str(error)})
            return
        caller = subject_of(conn.get_peer_certificate())
        command, target, headers, body = read_request(conn)
        call = parse_call(command, target, headers, body)
        call["caller"] = {"role": caller.get("role"), "UID": caller.get("UID")}
        # pyOpenSSL has no wrapper for SSL_session_reused: its binding's own.
        call["resumed"] = bool(_lib.SSL_session_reused(conn._ssl))
        call["tls_version"] = conn.get_protocol_version_name()
        emit(call)
        answer = {"result": manager.answer(call["method"], call["params"]), "error": None,
                  "id": call["id"]}
        # BaseHTTPRequestHandler.send_response + end_headers, then `print >>wfile, body,`.
        conn.sendall(b"HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.3 Python/2.6.6\r\n\r\n"
                     + json.dumps(answer).encode("utf-8"))
    except Exception as error:  # noqa: BLE001 - a test server reports, never dies
        emit({"event": "error", "error": repr(error)})
    finally:
        # The end of the answer is the end of TCP: no SSL_shutdown, so no close_notify.
        try:
            peer_sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        peer_sock.close()


def main():
    host, cert, key, ca, uid = sys.argv[1:6]
    ctx = SSL.Context(SSL.TLS_METHOD)  # SSLv23_METHOD's name since OpenSSL 1.1.0
    ctx.use_privatekey_file(key)
    ctx.use_certificate_file(cert)
    ctx.load_verify_locations(ca)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify_callback(uid))
    # Deliberately no ctx.set_session_id(...): 1.2 sets none, which is the point of this server.

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    listener.listen(64)
    emit({"listening": listener.getsockname()[1]})

    manager = Manager()

    def accept_forever():
        while True:
            peer_sock, _ = listener.accept()
            conn = SSL.Connection(ctx, peer_sock)
            conn.set_accept_state()
            threading.Thread(target=serve, args=(conn, peer_sock, manager), daemon=True).start()

    threading.Thread(target=accept_forever, daemon=True).start()
    # The test holds stdin open while it needs this manager.
    sys.stdin.read()


if __name__ == "__main__":
    main()
