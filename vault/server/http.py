"""The HTTP/1.1 protocol of ``cvault serve``: uvicorn's httptools protocol (llhttp, the C parser
of Node.js), answering requests it cannot parse in the API's one error shape (docs/service.md,
"Error shape") instead of uvicorn's plain-text ``400 Invalid HTTP request received.``, with the
service's deadlines, head size limit and lingering.

Refused before the application sees anything, with
``{"error": {"code": "malformed_request", "message", "exit_code": 2}}``: what llhttp cannot parse
(a bad or conflicting ``Content-Length``, a request target with bytes outside visible ASCII, an
illegal request line or header, obsolete line folding, a malformed chunk, both ``Content-Length``
and ``Transfer-Encoding``), and what llhttp accepts but HTTP/1.1 (and h11, which this protocol
replaced: its rules are the contract of tests/server/test_http_edges.py) does not: a request line
without a version (HTTP/0.9), an HTTP/1.1 request without exactly one ``Host``, two ``Host``
headers (400); a request line plus headers over :data:`MAX_HEAD_BYTES` still incomplete (431);
a ``Transfer-Encoding`` other than exactly ``chunked`` (501). Then the connection is closed once
the client stops sending (the parser cannot find the next request after a framing error).

The message is one of a few fixed lines: the parser's own messages may quote or point into the
offending bytes, and those may be anything, a secret included. Imported only by
:mod:`vault.server.run` (uvicorn is heavy).
"""

from __future__ import annotations

import asyncio
import json

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
#: the most bytes of a request line plus headers held while the head is incomplete (h11's default,
#: kept when the parser changed): past it, 431
MAX_HEAD_BYTES = 16 * 1024
MESSAGES = {
    400: "malformed HTTP request: the request line, a header, Content-Length or the body framing "
    "is not valid HTTP/1.1 (paths are ASCII, percent-encoded)",
    431: "malformed HTTP request: the request headers are too large",
    501: "malformed HTTP request: only Transfer-Encoding: chunked is supported",
}
REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
}


def malformed_body(status: int) -> bytes:
    exit_code = spec.API_ERRORS[CODE][1]
    message = TIMEOUT_MESSAGE if status == 408 else MESSAGES.get(status, MESSAGES[400])
    error = {"code": CODE, "message": message, "exit_code": exit_code}
    return json.dumps({"error": error}).encode()


def raw_response(status: int, reason: bytes, body: bytes) -> bytes:
    """A whole ``Connection: close`` answer, written outside any request's cycle."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
    ]
    head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return head + b"".join(b"%s: %s\r\n" % pair for pair in headers) + b"\r\n" + body


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request HTTP/1.1 does not allow."""


# what the client owes: the head of a request (from its first byte), or the body of one whose head
# arrived; nothing while its request is answered
_HEAD, _BODY, _DONE = "head", "body", "done"


class JsonErrorHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose parse-error answer is the API's JSON error.

    After that answer the connection lingers: what the client is still sending is read and
    dropped (up to :data:`LINGER_BYTES`, for at most :data:`LINGER_SECONDS`) before it is closed,
    because closing with unread data resets the connection and a client still writing (a 64 KiB
    header, say) would never read the answer."""

    head_seconds = HEAD_SECONDS
    body_seconds = BODY_SECONDS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lingering = 0  # bytes still to drop after an error answer (0: not answered)
        self._status = 400  # the answer to a parse error of the request being read
        self._phase = _HEAD
        self._head_bytes = 0  # bytes received since the request began, while its head is incomplete
        self._received = 0  # the size of the piece being parsed
        self._ended_in_piece = False  # a request ended in the piece being parsed
        self._hosts = 0
        self._codings: list[bytes] = []  # the Transfer-Encoding list of the request
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for: str | None = None

    @classmethod
    def with_deadlines(cls, head_seconds: float, body_seconds: float) -> type[JsonErrorHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"head_seconds": head_seconds, "body_seconds": body_seconds})

    # --- the request's head, checked as it is parsed ------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        # a head from the start of the piece counts all of it; one after an earlier request's end
        # in the same piece (a pipelined request after a body) counts what its parsed parts hold
        # (its request target and header lines, below) and every later piece: counting that whole
        # piece refused a small head 431 after a large body (review10)
        self._head_bytes = 0 if self._ended_in_piece else self._received
        self._status, self._hosts, self._codings = 400, 0, []

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if self._ended_in_piece:
            self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._ended_in_piece:
            self._head_bytes += len(name) + len(value) + 2  # at least "name:value" and its LF
        super().on_header(name, value)
        name = name.lower()
        if name == b"host":
            self._hosts += 1
        elif name == b"transfer-encoding":
            # h11's rule: the comma-separated list of every such header is exactly ["chunked"]
            self._codings += [c.strip(b" \t").lower() for c in value.split(b",") if c.strip(b" \t")]
            if self._codings != [b"chunked"]:
                self._status = 501
                raise _Refused

    def on_headers_complete(self) -> None:
        version = self.parser.get_http_version()
        if version == "0.9" or self._hosts > 1 or (version == "1.1" and self._hosts != 1):
            raise _Refused  # no version in the request line; Host missing or repeated
        self._phase = _BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _DONE
        self._ended_in_piece = True
        super().on_message_complete()

    # --- review R3: a half-sent request is answered 408 and closed ------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm(_HEAD)  # the head is due from the connection's start

    def _arm(self, owed: str) -> None:
        self._disarm()
        self._deadline_for = owed
        seconds = self.head_seconds if owed is _HEAD else self.body_seconds
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._deadline_for = None, None

    def _watch(self) -> None:
        """A deadline while the client owes a head (bytes received, no request being answered) or
        a body; none while its request is being answered."""
        if self._phase is _BODY:
            owed: str | None = _BODY
        elif self.cycle is None or self.cycle.response_complete:
            owed = _HEAD
        else:
            owed = None
        if owed is None:
            self._disarm()
        elif self._deadline_for is not owed:
            self._arm(owed)

    def _too_slow(self) -> None:
        self._deadline, self._deadline_for = None, None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:  # nothing of an answer sent yet
            if cycle is not None:
                cycle.disconnected = True  # the application's answer (if any) goes nowhere
            self.transport.write(raw_response(408, REASONS[408], malformed_body(408)))
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
        self._unset_keepalive_if_required()
        self._received = len(data)
        self._ended_in_piece = False
        if self._phase is _HEAD:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # the request was handed on as an ordinary one (no WebSocket here); after it the
            # parser reads nothing more on this connection
            if self.cycle is not None:
                self.cycle.keep_alive = False
            if not self.transport.is_closing():
                self._watch()
            return
        except httptools.HttpParserError:
            if self._h2_preface_seen():
                self._h2_preface()
            else:
                self._refuse(self._status)
            return
        if self._phase is _HEAD and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431)  # still no end of the head in this much
            return
        if not self.transport.is_closing():
            self._watch()

    def _h2_preface_seen(self) -> bool:
        try:
            return self.parser.get_method() == b"PRI" and getattr(self, "url", b"") == b"*"
        except httptools.HttpParserError:
            return False

    def _h2_preface(self) -> None:
        """HTTP/2's preface (``PRI * HTTP/2.0``): llhttp stops at it; h11 read it as a request for
        ``*``, which the application answers 404 in the error shape. So it is here, and the
        connection is closed after that answer."""
        self._phase = _BODY
        super().on_headers_complete()
        self.on_message_complete()
        self.cycle.keep_alive = False

    def shutdown(self) -> None:
        self._disarm()
        if self._lingering:  # answered already; the parser is in its error state
            self.transport.close()
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400)

    def _refuse(self, status: int) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined request's error while the one before is answered: that answer goes
            # nowhere, this one says why the connection ends
            self.cycle.disconnected = True
        self.transport.write(raw_response(status, REASONS.get(status, REASONS[400]), malformed_body(status)))
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
