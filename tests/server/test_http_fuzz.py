"""Raw malformed HTTP against a real ``cvault serve`` (issue 13, "Must hold"): generated request
lines, headers, framings and bodies over TLS sockets, each answered without a 5xx and, when it is
an error, in the API's JSON error shape — never a plain-text body, never a reset instead of an
answer. The schemathesis run over the OpenAPI description is tests/server/test_service_schemathesis.py;
the named edge cases are tests/server/test_http_edges.py.

Every generated request is complete (a declared ``Content-Length`` is the body's length, or not a
number at all; chunk sizes are valid or not hexadecimal), so a server waiting for the rest of a
request is never mistaken for a hang.
"""

from __future__ import annotations

import http.client
import json
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import OPERATOR_TOKEN, add_client, make_vault
from tests.server.harness import start_service
from tests.server.test_http_edges import tls_socket

ROUTES = [
    b"/v1/secrets/get",
    b"/v1/secrets/put",
    b"/v1/secrets/list",
    b"/v1/clients/rotate-key",
    b"/v1/users/login",
    b"/v1/sys/unseal",
    b"/v1/health",
    b"/openapi.json",
    b"/",
    b"/v1/audit/log",
]
token_bytes = st.binary(min_size=0, max_size=24)
METHOD = st.one_of(
    st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE"]), token_bytes
)
TARGET = st.one_of(
    st.sampled_from(ROUTES),
    st.tuples(st.sampled_from(ROUTES), token_bytes).map(b"".join),
    st.sampled_from(
        [b"*", b"http://x/v1/health", b"//", b"/v1/%ff", b"/v1/secrets/get?x=\xff", b"/\xc3\xa9"]
    ),
    token_bytes,
)
VERSION = st.sampled_from(
    [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0", b"HTTP/9.9", b"http/1.1", b"", b"HTTP/1.1 x"]
)
HEADER_NAME = st.one_of(
    st.sampled_from(
        [
            b"Content-Type",
            b"Authorization",
            b"Host",
            b"Expect",
            b"Connection",
            b"Cookie",
            b"Transfer-Encoding",
            b"X-Forwarded-For",
            b"Origin",
            b"Range",
        ]
    ),
    token_bytes,
)
HEADER_VALUE = st.one_of(
    st.sampled_from(
        [
            b"application/json",
            b"Bearer " + OPERATOR_TOKEN.encode(),
            b"Bearer x",
            b"close",
            b"100-continue",
            b"text/plain; charset=\xff",
            b"gzip",
            b"chunked, gzip",
            b"",
        ]
    ),
    token_bytes,
)
JSONISH = st.one_of(
    st.sampled_from(
        [
            b"{}",
            b'{"client_name": "acme", "path": "a"}',
            b"[",
            b"null",
            b'"\\ud800"',
            b"\xff",
            b'{"client_name": "acme", "path": "' + b"x" * 5000 + b'"}',
            b"[" * 3000,
        ]
    ),
    st.binary(max_size=200),
)


@st.composite
def raw_requests(draw) -> bytes:
    head = draw(METHOD) + b" " + draw(TARGET) + b" " + draw(VERSION) + b"\r\n"
    if draw(st.integers(0, 5)):
        head += b"Host: " + draw(st.sampled_from([b"127.0.0.1", b"x", b"", b"\xff"])) + b"\r\n"
    for _ in range(draw(st.integers(0, 4))):
        head += (
            draw(HEADER_NAME)
            + draw(st.sampled_from([b": ", b":", b" : ", b""]))
            + draw(HEADER_VALUE)
            + b"\r\n"
        )
    body = draw(JSONISH)
    framing = draw(st.sampled_from(["length", "length", "bad-length", "chunked", "bad-chunked", "none"]))
    if framing == "length":
        head += b"Content-Length: %d\r\n" % len(body)
    elif framing == "bad-length":
        head += (
            b"Content-Length: "
            + draw(st.sampled_from([b"-1", b"x", b"1 2", b"0x10", b"+5", b"\xff", b""]))
            + b"\r\n"
        )
    elif framing in ("chunked", "bad-chunked"):
        head += b"Transfer-Encoding: chunked\r\n"
        size = (
            b"%x" % len(body)
            if framing == "chunked"
            else draw(st.sampled_from([b"zz", b"-1", b" ", b"\xff"]))
        )
        body = size + b"\r\n" + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
    else:
        body = b""
    return head + b"\r\n" + body


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    base = tmp_path_factory.mktemp("hfuzz")
    vdir = make_vault(base)
    v = vdir.open()
    add_client(v, "acme")
    v.close()
    svc = start_service(vdir, base / "service")
    yield svc
    svc.stop()


def answer(service, raw: bytes) -> tuple[int, str, bytes, bool]:
    """(status, content type, body, was HEAD-like) of the first response to ``raw``."""
    with tls_socket(service) as tls:
        tls.sendall(raw)
        resp = http.client.HTTPResponse(tls, method="HEAD" if raw.startswith(b"HEAD ") else None)
        resp.begin()
        return resp.status, resp.getheader("content-type", ""), resp.read(), raw.startswith(b"HEAD ")


@pytest.mark.slow
def test_generated_raw_requests_never_5xx_never_plain_text(service):
    problems: list = []

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(raw=raw_requests())
    def case(raw):
        try:
            status, ctype, body, head = answer(service, raw)
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            problems.append((raw[:120], f"no answer: {exc!r}"))
            return
        if status >= 500:
            problems.append((raw[:120], status, body[:200]))
        elif status >= 400 and not head:
            try:
                doc = json.loads(body)
                ok = (
                    ctype.startswith("application/json")
                    and set(doc) == {"error"}
                    and set(doc["error"]) == {"code", "message", "exit_code"}
                )
            except ValueError:
                ok = False
            if not ok:
                problems.append((raw[:120], status, ctype, body[:200]))

    case()
    assert not problems, "\n".join(repr(p) for p in problems[:10])
    log = service.log()
    assert "Traceback" not in log and "internal error" not in log, log[-2000:]
