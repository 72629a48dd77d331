"""Table tests of the pure parsers and policies of the service (issue 15 item 5): the rate limiter,
the HTTP status of each error, the error class the service client raises, and the service
client's minimal HTTP/1.1 parser against a real loopback socket (chunked, truncated, oversized,
a bad status line)."""

from __future__ import annotations

import socket
import threading

import pytest

from cli.service_client.transport import Connection, Transport, error_class
from vault import api_spec as spec
from vault.errors import (
    AccessDenied,
    AuthenticationFailed,
    BlobNotFound,
    ClientUnavailable,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    PermanentBackendError,
    StepUpRequired,
    TransientBackendError,
    VaultError,
    VaultLocked,
    VaultSealed,
)
from vault.server.limits import RateLimiter

# --- RateLimiter ----------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_table():
    """(seconds since the start, key) -> seconds to wait; burst 3, then one per 2 s."""
    clock = _Clock()
    limiter = RateLimiter(3, 0.5, clock=clock)
    table = [
        (0.0, "a", 0.0),
        (0.0, "a", 0.0),
        (0.0, "a", 0.0),
        (0.0, "a", 2.0),  # the burst is spent: a token in 2 s
        (0.0, "b", 0.0),  # another key has its own bucket
        (1.0, "a", 1.0),  # half a token back
        (2.0, "a", 0.0),  # one whole token
        (2.0, "a", 2.0),
        (100.0, "a", 0.0),  # refilled, but never beyond the burst
        (100.0, "a", 0.0),
        (100.0, "a", 0.0),
        (100.0, "a", 2.0),
    ]
    for at, key, wait in table:
        clock.now = at
        assert limiter.take(key) == pytest.approx(wait), (at, key)


def test_rate_limiter_refusals_spend_nothing():
    clock = _Clock()
    limiter = RateLimiter(1, 1.0, clock=clock)
    assert limiter.take("k") == 0.0
    for _ in range(5):  # hammering while refused does not push the next token further away
        assert limiter.take("k") == pytest.approx(1.0)
    clock.now = 1.0
    assert limiter.take("k") == 0.0


# --- status_for and error_class ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput, 400),
        (AuthenticationFailed, 401),
        (StepUpRequired, 401),
        (AccessDenied, 403),
        (NotFound, 404),
        (BlobNotFound, 404),
        (IntegrityFailure, 409),
        (ClientUnavailable, 409),
        (VaultSealed, 503),
        (VaultLocked, 423),
        (TransientBackendError, 502),
        (PermanentBackendError, 502),
        (VaultError, 500),
    ],
)
def test_status_of_each_facade_error(error, status):
    assert spec.status_for(error.code, error.exit_code) == status


@pytest.mark.parametrize(("code", "pair"), sorted(spec.API_ERRORS.items()))
def test_status_of_each_api_error(code, pair):
    status, exit_code = pair
    assert spec.status_for(code, exit_code) == status


def test_error_class_finds_the_facades_own_classes():
    for cls in (AccessDenied, StepUpRequired, NotFound, VaultSealed, IntegrityFailure, InvalidInput):
        assert error_class(cls.code, cls.exit_code) is cls


def test_error_class_for_a_code_only_the_service_has():
    cls = error_class("rate_limited", 8)
    assert issubclass(cls, VaultError) and cls.code == "rate_limited" and cls.exit_code == 8
    err = cls("too many attempts")
    assert err.message == "too many attempts" and err.exit_code == 8
    # a known code with another exit code is not mistaken for the facade's class
    other = error_class(AccessDenied.code, 1)
    assert other is not AccessDenied and other.exit_code == 1


# --- the service client's HTTP/1.1 parser ---------------------------------------------------------


def _serve_once(reply: bytes) -> tuple[int, threading.Thread]:
    """A loopback server that reads one request and answers ``reply`` verbatim, then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(reply)
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def _exchange(reply: bytes) -> tuple[int, bytes]:
    port, thread = _serve_once(reply)
    conn = Connection("127.0.0.1", port, None, timeout=10)
    try:
        return conn.exchange("POST", "/v1/x", {}, b"{}")
    finally:
        conn.close()
        thread.join(10)


def test_http_parser_table():
    ok = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", (200, b"{}")),
        (b"HTTP/1.1 204 No Content\r\n\r\n", (204, b"")),
        (
            b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3;ext=1\r\n:1}\r\n0\r\n\r\n',
            (200, b'{"a":1}'),
        ),
        (
            b"HTTP/1.0 401 Unauthorized\r\ncontent-length: 5\r\nConnection: close\r\n\r\nnope!",
            (401, b"nope!"),
        ),
    ]
    for reply, expected in ok:
        assert _exchange(reply) == expected, reply


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", ConnectionResetError),  # truncated body
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{}", ConnectionResetError),
        (b"HTTP/1.1 200 OK\r\nContent-Le", ConnectionResetError),  # truncated head
        (b"SSH-2.0-OpenSSH\r\n\r\n", ValueError),  # not HTTP
        (b"HTTP/1.1 abc OK\r\n\r\n", ValueError),  # bad status code
        (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n", ValueError),  # oversized
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (Connection.MAX_HEADER + 10), ValueError),  # endless head
    ],
)
def test_http_parser_refuses_broken_replies(reply, error):
    with pytest.raises(error):
        _exchange(reply)


def test_a_broken_reply_is_one_service_unreachable_line(monkeypatch):
    """Through the transport, every parser refusal becomes ServiceUnreachable (exit 9), never a
    traceback."""
    from cli.service_client.transport import ServiceUnreachable

    port, thread = _serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n")
    transport = Transport(f"http://127.0.0.1:{port}")
    with pytest.raises(ServiceUnreachable) as refused:
        transport.request("POST", "/v1/x", {})
    assert refused.value.exit_code == 9 and "\n" not in refused.value.message
    transport.close()
    thread.join(10)


def test_parse_duration_table():
    from datetime import timedelta

    from vault.dates import parse_duration

    good = {
        "30d": timedelta(days=30),
        "12h": timedelta(hours=12),
        "45m": timedelta(minutes=45),
        "90s": timedelta(seconds=90),
        "2w": timedelta(weeks=2),
        " 7d ": timedelta(days=7),
        "+3d": timedelta(days=3),
        "999999w": timedelta(weeks=999999),
    }
    for text, expected in good.items():
        assert parse_duration(text) == expected, text
    for bad in ("", "d", "30", "30y", "-30d", "1.5d", "30 d", "1000000d", "thirty days", "30D"):
        with pytest.raises(InvalidInput, match="invalid duration"):
            parse_duration(bad)
