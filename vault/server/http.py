"""The HTTP/1.1 protocol of ``cvault serve``: uvicorn's h11 protocol, answering requests it cannot
parse in the API's one error shape (docs/service.md, "Error shape") instead of uvicorn's
plain-text ``400 Invalid HTTP request received.``

h11 raises on a request it cannot parse before the application sees anything: a bad or
conflicting ``Content-Length``, a request target with bytes outside visible ASCII (a non-ASCII
path), an illegal request line or header, headers over h11's size limit, an unsupported
``Transfer-Encoding``, a malformed chunk. Each is answered here with
``{"error": {"code": "malformed_request", "message", "exit_code": 2}}`` and the status h11 hints
(400; 431 for oversized headers; 501 for a transfer coding other than chunked), then the
connection is closed once the client stops sending (h11 cannot find the next request after a
framing error).

The message is one of a few fixed lines: h11's own messages may quote the offending bytes, and
those may be anything, a secret included. Imported only by :mod:`vault.server.run` (uvicorn is
heavy).
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from vault import api_spec as spec

CODE = "malformed_request"
#: after an error answer, at most this much more is read and dropped, for at most this long
LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 2.0
#: a request head must arrive within this long of the connection (or of its first byte, for a later
#: request on a kept-alive connection), its body within this long of the head (review R3,
#: slowloris); ``cvault serve --head-timeout/--body-timeout``
HEAD_SECONDS = 10.0
BODY_SECONDS = 120.0
TIMEOUT_MESSAGE = "request not received in time: the request head and body must arrive promptly"
#: h11's default limit on a request line plus headers (bytes)
MAX_HEAD_BYTES = 16 * 1024
MESSAGES = {
    400: "malformed HTTP request: the request line, a header, Content-Length or the body framing "
    "is not valid HTTP/1.1 (paths are ASCII, percent-encoded)",
    431: "malformed HTTP request: the request headers are too large",
    501: "malformed HTTP request: only Transfer-Encoding: chunked is supported",
}


def malformed_body(status: int) -> bytes:
    exit_code = spec.API_ERRORS[CODE][1]
    message = TIMEOUT_MESSAGE if status == 408 else MESSAGES.get(status, MESSAGES[400])
    error = {"code": CODE, "message": message, "exit_code": exit_code}
    return json.dumps({"error": error}).encode()


def raw_response(status: int, reason: bytes, body: bytes) -> bytes:
    """A whole ``Connection: close`` answer, for when h11 cannot (or must not) frame one."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
    ]
    head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return head + b"".join(b"%s: %s\r\n" % pair for pair in headers) + b"\r\n" + body


class _Connection(h11.Connection):
    """h11's connection, keeping the status hint of the parse error it last raised (uvicorn's
    loop catches the exception and drops it)."""

    error_status = 400

    def next_event(self):
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            hint = getattr(exc, "error_status_hint", 400)
            self.error_status = hint if hint in MESSAGES else 400
            raise


class JsonErrorH11Protocol(H11Protocol):
    """uvicorn's h11 protocol whose parse-error answer is the API's JSON error.

    After that answer the connection lingers: what the client is still sending is read and
    dropped (up to :data:`LINGER_BYTES`, for at most :data:`LINGER_SECONDS`) before it is closed,
    because closing with unread data resets the connection and a client still writing (a 64 KiB
    header, say) would never read the answer."""

    head_seconds = HEAD_SECONDS
    body_seconds = BODY_SECONDS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lingering = 0  # bytes still to drop after an error answer (0: not answered)
        limit = self.config.h11_max_incomplete_event_size
        self.conn = _Connection(h11.SERVER, limit if limit is not None else MAX_HEAD_BYTES)
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for: object = None

    @classmethod
    def with_deadlines(cls, head_seconds: float, body_seconds: float) -> type[JsonErrorH11Protocol]:
        return type(cls.__name__, (cls,), {"head_seconds": head_seconds, "body_seconds": body_seconds})

    # --- review R3: a half-sent request is answered 408 and closed ------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm(h11.IDLE)  # the head is due from the connection's start

    def _arm(self, state) -> None:
        self._disarm()
        self._deadline_for = state
        seconds = self.head_seconds if state is h11.IDLE else self.body_seconds
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._deadline_for = None, None

    def _watch(self) -> None:
        """A deadline while the client owes a head (IDLE with bytes received) or a body."""
        state = self.conn.their_state
        if state is h11.IDLE or state is h11.SEND_BODY:
            if self._deadline_for is not state:
                self._arm(state)
        else:
            self._disarm()

    def _too_slow(self) -> None:
        self._deadline, self._deadline_for = None, None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:  # nothing of an answer sent yet
            if cycle is not None:
                cycle.disconnected = True  # the application's answer (if any) goes nowhere
            self.transport.write(raw_response(408, b"Request Timeout", malformed_body(408)))
        self.transport.close()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingering = max(0, self._lingering - len(data)) or -1
            if self._lingering < 0:
                self.transport.close()
            return
        super().data_received(data)
        if not self.transport.is_closing():
            self._watch()

    def shutdown(self) -> None:
        self._disarm()
        if self._lingering:  # answered already; h11 is in its error state
            self.transport.close()
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        status = getattr(self.conn, "error_status", 400)
        body = malformed_body(status)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"cache-control", b"no-store"),
        ]
        try:
            # h11 is in its ERROR state after a parse error; it still sends the response
            self.transport.write(self.conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
            self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            # h11 refuses to answer at all (e.g. the request line never arrived): write it raw
            reason = {400: b"Bad Request", 431: b"Request Header Fields Too Large", 501: b"Not Implemented"}
            head = b"HTTP/1.1 %d %s\r\n" % (status, reason.get(status, b"Bad Request"))
            head += b"".join(b"%s: %s\r\n" % pair for pair in headers) + b"\r\n"
            self.transport.write(head + body)
        self._lingering = LINGER_BYTES
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


UNAVAILABLE = json.dumps(
    {
        "error": {
            "code": "busy",
            "message": "the service is at its connection limit: retry shortly",
            "exit_code": 9,
        }
    }
).encode()


async def json_service_unavailable(scope, receive, send) -> None:
    """uvicorn's answer past ``limit_concurrency`` (plain text there), in the API's error shape."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(UNAVAILABLE)).encode()),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": UNAVAILABLE, "more_body": False})


class OncePerMinute:
    """A logging filter: ``accept()`` out of file descriptors (EMFILE) is logged once a minute,
    without its traceback, instead of once per try (review R3: 115 MB of log in 80 s)."""

    def __init__(self, clock=None) -> None:
        import time

        self.clock = clock or time.monotonic
        self.last: float | None = None
        self.dropped = 0

    def filter(self, record) -> bool:
        if "out of system resource" not in record.getMessage() and "Too many open files" not in str(
            record.exc_info[1] if record.exc_info else ""
        ):
            return True
        now = self.clock()
        if self.last is not None and now - self.last < 60:
            self.dropped += 1
            return False
        record.exc_info, record.exc_text = None, None
        record.msg = f"socket.accept() out of file descriptors ({self.dropped} more like it dropped)"
        record.args = ()
        self.last, self.dropped = now, 0
        return True
