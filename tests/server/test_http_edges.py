"""HTTP edges of a real ``cvault serve`` (issue 13, item 7): requests h11 cannot parse get the
API's JSON error shape, never uvicorn's plain-text ``400 Invalid HTTP request received.``, and
bodies of 2-3 MiB sent in full get to read their 413 instead of a reset connection.

Raw bytes over a TLS socket to the real service on loopback (tests/server/harness.py).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import pytest

from tests.helpers import OPERATOR_TOKEN, add_client, make_vault
from tests.server.harness import assert_error_shape, start_service
from vault import api_spec as spec

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    base = tmp_path_factory.mktemp("edges")
    vdir = make_vault(base)
    v = vdir.open()
    add_client(v, "acme")
    v.close()
    svc = start_service(vdir, base / "service")
    yield svc
    svc.stop()


def tls_socket(service) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(service.ca.ca_path))
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    return ctx.wrap_socket(sock, server_hostname="127.0.0.1")


def exchange(service, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` as is, read one response: (status, headers, body)."""
    with tls_socket(service) as tls:
        tls.sendall(raw)
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def json_error(status: int, headers: dict[str, str], body: bytes, code: str | None = None) -> dict:
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body[:200])
    return assert_error_shape(json.loads(body), code)


def head(target: bytes = b"/v1/secrets/list", *lines: bytes) -> bytes:
    headers = b"".join(line + b"\r\n" for line in lines)
    return b"POST " + target + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"


AUTH = f"Authorization: Bearer {OPERATOR_TOKEN}".encode()
CT = b"Content-Type: application/json"

MALFORMED = {
    "content-length not a number": head(b"/v1/secrets/list", AUTH, CT, b"Content-Length: abc") + b"{}",
    "content-length negative": head(b"/v1/secrets/list", AUTH, CT, b"Content-Length: -5") + b"{}",
    "content-length list": head(b"/v1/secrets/list", AUTH, CT, b"Content-Length: 2, 3") + b"{}",
    "content-length conflicting": head(
        b"/v1/secrets/list", AUTH, CT, b"Content-Length: 2", b"Content-Length: 3"
    )
    + b"{}",
    "non-ascii path": head("/v1/secrets/lïst".encode(), AUTH, CT, b"Content-Length: 2") + b"{}",
    "latin-1 path": head(b"/v1/secrets/\xe9", AUTH, CT, b"Content-Length: 2") + b"{}",
    "space in path": b"POST /v1/secrets /list HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    "nul in path": head(b"/v1/\x00", b"Content-Length: 0"),
    "no http version": b"POST /v1/secrets/list\r\nHost: x\r\n\r\n",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "header without colon": head(b"/v1/secrets/list", b"Content-Length 2") + b"{}",
    "header name with space": head(b"/v1/secrets/list", b"Content Length: 2") + b"{}",
    "non-ascii header name": head(b"/v1/secrets/list", "Cöntent: 1".encode()),
    "obsolete line folding first": b"POST /v1/secrets/list HTTP/1.1\r\n Host: x\r\n\r\n",
    "missing host": b"POST /v1/secrets/list HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    "two hosts": b"POST /v1/secrets/list HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 0\r\n\r\n",
    "bad chunk size": head(b"/v1/secrets/list", AUTH, CT, b"Transfer-Encoding: chunked")
    + b"zz\r\n{}\r\n0\r\n\r\n",
    "bad chunk footer": head(b"/v1/secrets/list", AUTH, CT, b"Transfer-Encoding: chunked")
    + b"2\r\n{}XX0\r\n\r\n",
    "bare lf junk": b"\n\n\nGARBAGE\n\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_requests_get_the_json_error_shape(service, case):
    status, headers, body = exchange(service, MALFORMED[case])
    assert status == 400, (case, status, body[:200])
    err = json_error(status, headers, body, "malformed_request")
    assert err["exit_code"] == 2
    assert b"Invalid HTTP request received" not in body


def test_oversized_headers_and_unknown_transfer_coding(service):
    # (h11 reads the HTTP/2 preface as a request for "*": no such endpoint, in the JSON shape)
    status, headers, body = exchange(service, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert status == 404 and json_error(status, headers, body, "unknown_endpoint")
    status, headers, body = exchange(service, head(b"/v1/secrets/list", b"X-Pad: " + b"a" * (64 * 1024)))
    assert status == 431 and json_error(status, headers, body, "malformed_request")["exit_code"] == 2
    status, headers, body = exchange(
        service, head(b"/v1/secrets/list", AUTH, CT, b"Transfer-Encoding: gzip") + b"{}"
    )
    assert status == 501 and json_error(status, headers, body, "malformed_request")


def test_the_message_never_quotes_the_request(service):
    """h11's own messages can quote bytes of the request; the answer never does."""
    marker = b"s3cr3t-marker"
    for raw in (
        head(b"/v1/secrets/list", AUTH, CT, b"Transfer-Encoding: chunked") + b"2\r\n{}" + marker + b"\r\n",
        head(b"/v1/secrets/list", b"Bad Header " + marker),
        b"POST /v1/" + marker + b" x y HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        status, headers, body = exchange(service, raw)
        assert status == 400 and marker not in body, body
        json_error(status, headers, body, "malformed_request")


def test_escaped_paths_that_decode_to_anything_are_json_404(service):
    for target in (b"/v1/%C3%A9", b"/v1/%ff%fe", b"/v1/%00", b"/v1/secrets/list/..%2f..%2fetc"):
        status, headers, body = exchange(service, head(target, AUTH, CT, b"Content-Length: 2") + b"{}")
        assert status == 404, (target, status, body)
        json_error(status, headers, body, "unknown_endpoint")


@pytest.mark.parametrize("size", [2 * MiB + 1, 2 * MiB + 512 * 1024, 3 * MiB])
def test_large_bodies_sent_in_full_read_their_413(service, size):
    """The client writes the whole body before reading (as http.client and most clients do):
    the server reads it and answers 413; it does not close under the writer."""
    api = service.client(OPERATOR_TOKEN)
    raw = b'{"client_name": "acme", "path": "big", "kind": "note", "fields": {"text": "'
    raw += b"x" * (size - len(raw) - 4) + b'"}}'
    assert len(raw) == size - 1
    try:
        status, body = api.post("/v1/secrets/put", raw=raw + b" ")
    finally:
        api.close()
    assert status == 413 and assert_error_shape(body, "request_too_large")["exit_code"] == 2
    # the same over chunked framing
    with tls_socket(service) as tls:
        tls.sendall(head(b"/v1/secrets/put", AUTH, CT, b"Transfer-Encoding: chunked"))
        for start in range(0, size, 64 * 1024):
            piece = raw[start : start + 64 * 1024] or b" "
            tls.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        tls.sendall(b"0\r\n\r\n")
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        assert resp.status == 413 and assert_error_shape(json.loads(resp.read()), "request_too_large")


def test_after_all_that_the_service_is_fine(service):
    for case in sorted(MALFORMED):
        exchange(service, MALFORMED[case])
    api = service.client(OPERATOR_TOKEN)
    try:
        status, body = api.post("/v1/secrets/list", {"client_name": "acme"})
        assert status == 200, body
    finally:
        api.close()
    log = service.log()
    assert "Traceback" not in log and "internal error" not in log, log[-2000:]


# --- review R3: slowloris ---------------------------------------------------------------------------


def _held_answer(tls: ssl.SSLSocket) -> bytes:
    """Everything the service sends before it closes the connection."""
    tls.settimeout(60)  # a bound on a broken service, not a measurement
    got = b""
    while chunk := tls.recv(65536):
        got += chunk
    return got


def test_half_sent_requests_are_answered_408_and_closed(tmp_path):
    """Review R3: 20 connections each send half a head (or a head and half a body) and stall;
    while they are held /v1/health answers, and each is answered 408 in the JSON error shape and
    closed by the (injected, 1 s) deadlines, not held forever."""
    vdir = make_vault(tmp_path)
    svc = start_service(vdir, tmp_path / "service", "--head-timeout", "1", "--body-timeout", "1")
    try:
        login = spec.BY_NAME["users.login"].path.encode()
        held = []
        for n in range(20):
            tls = tls_socket(svc)
            if n % 2:
                tls.sendall(b"POST " + login + b" HTTP/1.1\r\nHost: x\r\n")  # no end of head
            else:
                tls.sendall(head(login, b"Content-Type: application/json", b"Content-Length: 100") + b"{")
            held.append(tls)
        status, _ = svc.client().get("/v1/health")
        assert status == 200
        for tls in held:
            answer = _held_answer(tls)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert_error_shape(body, "malformed_request")
            tls.close()
        assert svc.client().get("/v1/health")[0] == 200
        assert "Traceback" not in svc.log()
    finally:
        svc.stop()


def test_past_the_connection_limit_is_503_in_the_json_shape(tmp_path):
    """Review R3: connections past --max-connections are answered 503 busy in the error shape."""
    vdir = make_vault(tmp_path)
    svc = start_service(vdir, tmp_path / "service", "--max-connections", "3")
    try:
        held = [tls_socket(svc) for _ in range(3)]
        for tls in held:
            tls.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        status, headers, body = exchange(svc, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503
        json_error(status, headers, body, "busy")
        for tls in held:
            tls.close()
    finally:
        svc.stop()
