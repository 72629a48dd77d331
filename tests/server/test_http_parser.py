"""The service's HTTP/1.1 parser is llhttp (httptools, vault/server/http.py), which accepts a few
requests that HTTP/1.1 and the service's contract refuse (tests/server/test_http_edges.py has the
contract; these are the cases llhttp alone would have let through, or framed its own way):

* ``Transfer-Encoding: gzip, chunked`` is chunked to llhttp (the last coding), refused 501 here
  as by h11 before: the service decodes no other coding, and two parsers reading one request
  two ways is how requests are smuggled past a proxy;
* ``Content-Length`` together with ``Transfer-Encoding`` is refused 400 (llhttp's strict rule;
  h11 framed it as chunked);
* pipelined requests in one write are each answered, in order, on the kept-alive connection;
* a head that is still incomplete past 16 KiB is 431 even when it arrives in one write.
"""

from __future__ import annotations

import http.client

from tests.server.test_http_edges import AUTH, CT, exchange, head, json_error, service, tls_socket  # noqa: F401


def test_a_coding_list_ending_in_chunked_is_501(service):  # noqa: F811
    for codings in (b"gzip, chunked", b"identity, chunked", b"GZIP , Chunked"):
        raw = head(b"/v1/secrets/list", AUTH, CT, b"Transfer-Encoding: " + codings) + b"2\r\n{}\r\n0\r\n\r\n"
        status, headers, body = exchange(service, raw)
        assert status == 501, (codings, status, body[:200])
        json_error(status, headers, body, "malformed_request")
    # llhttp itself refuses "chunked" twice, in one header or two, before the header is handed
    # on: 400 (h11 said 501); refused either way
    twice = (
        head(b"/v1/secrets/list", AUTH, CT, b"Transfer-Encoding: chunked, chunked"),
        head(b"/v1/secrets/list", AUTH, CT, b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
    )
    for raw in twice:
        status, headers, body = exchange(service, raw + b"2\r\n{}\r\n0\r\n\r\n")
        assert status == 400 and json_error(status, headers, body, "malformed_request")


def test_content_length_with_transfer_encoding_is_400(service):  # noqa: F811
    raw = head(b"/v1/secrets/list", AUTH, CT, b"Content-Length: 2", b"Transfer-Encoding: chunked")
    status, headers, body = exchange(service, raw + b"2\r\n{}\r\n0\r\n\r\n")
    assert status == 400, (status, body[:200])
    json_error(status, headers, body, "malformed_request")


def test_pipelined_requests_are_each_answered_in_order(service):  # noqa: F811
    one = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    unknown = head(b"/v1/nowhere", AUTH, CT, b"Content-Length: 2") + b"{}"
    with tls_socket(service) as tls:
        tls.sendall(one + unknown + one)
        statuses = []
        for _ in range(3):
            resp = http.client.HTTPResponse(tls)
            resp.begin()
            resp.read()
            statuses.append(resp.status)
    assert statuses == [200, 404, 200]


def test_an_incomplete_head_past_16_kib_in_one_write_is_431(service):  # noqa: F811
    raw = b"POST /v1/secrets/list HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (20 * 1024)  # no end of head
    with tls_socket(service) as tls:
        tls.sendall(raw)
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        assert resp.status == 431
        json_error(
            resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read(), "malformed_request"
        )


def test_an_upgrade_request_is_an_ordinary_request(service):  # noqa: F811
    """No WebSocket here: llhttp stops at an ``Upgrade`` (and at ``CONNECT``); the request is
    answered as any other, in the error shape when it is one (the connection is then closed)."""
    raw = b"GET /v1/nowhere HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    with tls_socket(service) as tls:
        tls.sendall(raw)
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        body = resp.read()
        assert resp.status == 404
        json_error(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, "unknown_endpoint")
    status, headers, body = exchange(service, b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status < 500 and json_error(status, headers, body)


def test_a_pipelined_request_after_a_large_body_is_not_431(service):  # noqa: F811
    """review10 (noted): the head of a request that begins after a large body in the same read
        was counted from the start of that read, so a small pipelined request after a 40 KB body
        could be refused 431 when that head was not complete in the read. The head is counted from its
    own start."""
    one = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    for size in (20_000, 40_000, 60_000):
        big = head(b"/v1/nowhere", AUTH, CT, b"Content-Length: %d" % size) + b"x" * size
        with tls_socket(service) as tls:
            tls.sendall(big + one[:10])  # the next head begins in the body's last read
            statuses = [_status(tls)]  # answered: the rest of the head is a read of its own
            tls.sendall(one[10:])
            statuses.append(_status(tls))
        assert statuses == [404, 200], (size, statuses)


def _status(tls) -> int:
    resp = http.client.HTTPResponse(tls)
    resp.begin()
    resp.read()
    return resp.status
