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

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from vault import api_spec as spec

CODE = "malformed_request"
#: after an error answer, at most this much more is read and dropped, for at most this long
LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 2.0
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
    error = {"code": CODE, "message": MESSAGES.get(status, MESSAGES[400]), "exit_code": exit_code}
    return json.dumps({"error": error}).encode()


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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lingering = 0  # bytes still to drop after an error answer (0: not answered)
        limit = self.config.h11_max_incomplete_event_size
        self.conn = _Connection(h11.SERVER, limit if limit is not None else MAX_HEAD_BYTES)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingering = max(0, self._lingering - len(data)) or -1
            if self._lingering < 0:
                self.transport.close()
            return
        super().data_received(data)

    def shutdown(self) -> None:
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
