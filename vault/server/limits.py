"""Request limits of the service: the body size cap and the login rate limits.

Numbers (docs/service.md, "Limits"): request bodies at most 2 MiB (a record is at most 1 MiB of
JSON, docs/spec.md §4, so 2 MiB leaves room for escaping; an import of more goes in several requests);
login, enroll and unseal attempts per client address and login attempts per user name limited by
token buckets (defaults in :class:`vault.server.app.ServiceSettings`). Buckets live in memory:
a restart forgets them, and the identity service's own lockout (5 failures, docs/spec.md §5) still holds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from vault.server.http import MAX_HEAD_BYTES, malformed_body

#: at most this many buckets are kept; full, idle buckets are dropped first
MAX_BUCKETS = 10_000
#: after the limit, at most this much more of a body is read and dropped before answering 413
DRAIN_BYTES = 8 * 1024 * 1024
#: request bodies above the ordinary limit (attachments) read at the same time, at most
MAX_LARGE_BODIES = 2
#: per round of the webhook summary (review5 R5-3): at most this many sources or claimed
#: integrations get a summary event of their own (those with the most refusals), all the others
#: one together; and at most this many distinct integrity alarms are written (R5-4)
MAX_SUMMARY_EVENTS = 20
#: the drained keys of integrity alarms (:meth:`vault.server.routes.Limits.webhook_alarm`): the
#: repeats of an alarm written this round (``alarm:MESSAGE``, ``alarm:*`` for the others) and a
#: waiting alarm the summary round writes by name (``waited:MESSAGE``, review8 R8-2)
ALARM_KEYS = ("alarm:", "waited:")


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        size = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"
        self.message = f"request body too large: at most {size}"
        super().__init__(self.message)


class Slots:
    """At most ``size`` holders at a time; :meth:`take` does not wait (False: all taken)."""

    def __init__(self, size: int):
        self.size = size
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.size:
                return False
            self.used += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.used = max(0, self.used - 1)


class BodyLimit:
    """Pure ASGI middleware: refuse bodies over ``limit`` bytes with 413.

    A declared Content-Length over the limit is refused without passing anything on: the body is
    read and dropped first when it is at most :data:`DRAIN_BYTES` over (closing a connection with
    unread data resets it, and a client still writing would never read the 413), not read at all
    when the client waits for ``100 Continue`` or declares more. A chunked body is counted as it
    arrives and :class:`BodyTooLarge` raised (the app turns it into a 413).

    ``overrides``: a larger limit for some paths (``Op.body_limit``: attachments). Those requests
    must carry the bearer token of a live session: ``admit(scope, token)`` (an awaitable, the service's
    ``users.resume``) is asked before a byte of the body is read, and only a token it accepts
    gets the larger limit and one of the :data:`MAX_LARGE_BODIES` slots (more at a time get a
    429). Without a token, or with one it refuses, the ordinary limit applies, and a declared
    body over it is answered 401 (not logged in) when a token was shown: a stranger with a junk
    token cannot hold a slot (independent review F6; docs/security.md guarantee 28)."""

    def __init__(
        self,
        app,
        limit: int,
        overrides: dict[str, int] | None = None,
        admit: Callable[[dict, str], Awaitable[bool]] | None = None,
        slots: Slots | None = None,
    ):
        self.app = app
        self.limit = limit
        self.overrides = dict(overrides or {})
        self.admit = admit
        #: the attachment upload slots (:class:`Slots`; shared by every worker process with
        #: ``cvault serve --workers N``: :class:`vault.server.workers.SharedSlots`)
        self.large: Slots = slots if slots is not None else Slots(MAX_LARGE_BODIES)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _head_bytes(scope) > MAX_HEAD_BYTES:
            # h11 enforces its head limit only on a head that arrives in pieces; one that arrives
            # whole in a single read is parsed whatever its size: the same 431 either way
            await _refuse_head(send)
            return
        limit = self.overrides.get(scope.get("path", ""), self.limit)
        expects_continue = False
        declared = None
        bearer: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
            elif name == b"expect" and value.lower() == b"100-continue":
                expects_continue = True
            elif name == b"authorization" and value.lower().startswith(b"bearer "):
                bearer = value[7:].strip().decode("latin-1")
        refused_token = False
        if limit > self.limit and not (bearer and self.admit is not None and await self.admit(scope, bearer)):
            # no token, or not a live session's: the ordinary limit (then 401 from the route)
            refused_token = bool(bearer)
            limit = self.limit
        if declared is not None and (declared > limit or declared < 0):
            if declared < 0:
                await _refuse(send, None)
                return
            if not expects_continue and declared <= limit + DRAIN_BYTES:
                # the client is sending the body now: read (and drop) it first, so the 413 is
                # what it reads, not a connection reset while it is still writing
                message = await receive()
                while message["type"] == "http.request" and message.get("more_body"):
                    message = await receive()
            await _refuse(send, limit, unauthenticated=refused_token)
            return
        if limit <= self.limit:
            await self._run(scope, receive, send, limit)
            return
        if not self.large.take():
            await _refuse(send, None, busy=True)
            return
        try:
            await self._run(scope, receive, send, limit)
        finally:
            self.large.give_back()

    async def _run(self, scope, receive, send, limit: int) -> None:
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # read (and drop) what the client is still sending, up to DRAIN_BYTES, so it
                    # gets to read the 413 instead of a reset connection
                    while message.get("more_body") and seen <= limit + DRAIN_BYTES:
                        message = await receive()
                        seen += len(message.get("body", b""))
                    state["too_large"] = True
                    raise BodyTooLarge(limit)
            return message

        # whatever the framework makes of the exception (it may wrap it as a parse error), the
        # answer is the 413
        state = {"too_large": False, "answered": False}

        async def guarded_send(message):
            if state["too_large"]:
                if message["type"] == "http.response.start" and not state["answered"]:
                    state["answered"] = True
                    await _refuse(send, limit)
                return
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except BodyTooLarge:
            if not state["answered"]:
                state["answered"] = True
                await _refuse(send, limit)


def _head_bytes(scope) -> int:
    """The size of the request line and headers as they came (each header line ``name: value``)."""
    size = (
        len(scope.get("method", ""))
        + len(scope.get("raw_path") or b"")
        + len(scope.get("query_string") or b"")
    )
    return size + sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))


async def _refuse_head(send) -> None:
    body = malformed_body(431)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 431, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse(send, limit: int | None, *, busy: bool = False, unauthenticated: bool = False) -> None:
    if unauthenticated:
        status, code, exit_code = 401, "authentication_failed", 3
        message = "not logged in (the session is unknown, ended or expired): run cvault login NAME"
    elif busy:
        status, code, exit_code = 429, "rate_limited", 8
        message = f"at most {MAX_LARGE_BODIES} attachment uploads at a time: retry shortly"
    elif limit is None:
        status, code, exit_code, message = 400, "invalid_request", 2, "invalid Content-Length"
    else:
        status, code, exit_code = 413, "request_too_large", 2
        message = BodyTooLarge(limit).message
    body = json.dumps({"error": {"code": code, "message": message, "exit_code": exit_code}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def source_key(host: str | None) -> str:
    """The throttling key of a client address: the address itself for IPv4, its /64 for IPv6 (one
    host usually holds a whole /64, so per-address buckets would be free to multiply)."""
    import ipaddress

    if not host:
        return "?"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def is_loopback(host: str | None) -> bool:
    import ipaddress

    try:
        return bool(host) and ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class RateLimiter:
    """Token buckets per key: ``burst`` attempts at once, refilled at ``rate`` per second.

    :meth:`take` spends one token and returns 0, or returns the seconds until one is available
    (nothing is spent then)."""

    def __init__(self, burst: int, rate: float, clock=time.monotonic):
        self.burst = max(1, int(burst))
        self.rate = max(rate, 1e-9)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._prune(now)
            return 0.0

    def give_back(self, key: str) -> None:
        """Refund a token :meth:`take` spent (a reserved attempt that did not fail)."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            self._buckets[key] = (min(float(self.burst), tokens + 1), now)

    def wait(self, key: str) -> float:
        """Seconds until ``key`` has a token (0: it has one now); spends nothing."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        for key, (_, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[key]
        while len(self._buckets) > MAX_BUCKETS:  # under attack: forget the oldest
            del self._buckets[min(self._buckets, key=lambda k: self._buckets[k][1])]


class Dropped:
    """Counts of requests refused without an audit event of their own, per key (a webhook
    source, a claimed integration: :meth:`vault.server.routes.Limits.webhook_admit`), until
    :meth:`drain` hands them to the one summary event per key and window (docs/sla.md,
    "Contract events"). At most :data:`MAX_BUCKETS` keys: past that, new keys add to ``"*"``
    (a distributed flood is then summarised as one line, not forgotten); the repeats of
    integrity alarms (``alarm:``, at most :data:`MAX_SUMMARY_EVENTS` + 1 keys) and the waiting
    alarms a summary round could not write (``waited:``, put back: at most
    :data:`MAX_SUMMARY_EVENTS`) are always kept apart."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._counts: dict[str, list[float]] = {}  # key -> [count, first drop at]
        self._lock = threading.Lock()

    def add(self, key: str, count: int = 1) -> None:
        now = self.clock()
        with self._lock:
            full = key not in self._counts and len(self._counts) >= MAX_BUCKETS
            if full and not key.startswith(ALARM_KEYS):
                key = "*"
            entry = self._counts.setdefault(key, [0, now])
            entry[0] += count

    def drain(self) -> list[tuple[str, int, float]]:
        """``(key, count, seconds since its first drop)`` of every key with drops; forgets them."""
        now = self.clock()
        with self._lock:
            counts, self._counts = self._counts, {}
        return [(key, int(n), max(0.0, now - first)) for key, (n, first) in sorted(counts.items())]


class Summary(NamedTuple):
    """One summary event of a round (:func:`summarise`)."""

    #: ``source:ADDRESS``, ``integration:NAME``, ``alarm:MESSAGE`` (an integrity alarm seen
    #: again), or ``*``: every other source and claimed integration together
    key: str
    total: int
    seconds: float
    #: for ``*``: how many sources and claimed integrations it stands for, and whether sources
    #: past the throttle's table size (counted together, not apart) are among them
    sources: int = 0
    integrations: int = 0
    past_table: bool = False
    #: the drained ``(key, count)`` it stands for (put back when its event cannot be written)
    members: tuple[tuple[str, int], ...] = ()


def summarise(drained: list[tuple[str, int, float]], named: int = MAX_SUMMARY_EVENTS) -> list[Summary]:
    """The summary events of one round (review5 R5-3): the ``named`` sources or claimed
    integrations with the most refusals get one each, every other one (and ``*``, the sources
    past the table size) go into one ``*`` event with their total, so a round writes at most
    ``named + 1`` of them however many sources an attacker rotates through (an IPv6 /48 is
    65,536 /64s). Integrity alarms (:data:`ALARM_KEYS`: repeats, and waiting alarms written by
    name; at most :data:`MAX_SUMMARY_EVENTS` distinct a round,
    :meth:`vault.server.routes.Limits.webhook_alarm`) keep one each."""
    alarms = [d for d in drained if d[0].startswith(ALARM_KEYS)]
    rest = [d for d in drained if not d[0].startswith(ALARM_KEYS)]
    apart = sorted((d for d in rest if d[0] != "*"), key=lambda d: (-d[1], d[0]))[:named]
    kept = {d[0] for d in apart}
    folded = [d for d in rest if d[0] not in kept]
    out = [Summary(key, count, seconds, members=((key, count),)) for key, count, seconds in apart]
    if folded:
        out.append(
            Summary(
                "*",
                sum(count for _, count, _ in folded),
                max(seconds for _, _, seconds in folded),
                sources=sum(key.startswith("source:") for key, _, _ in folded),
                integrations=sum(key.startswith("integration:") for key, _, _ in folded),
                past_table=any(key == "*" for key, _, _ in folded),
                members=tuple((key, count) for key, count, _ in folded),
            )
        )
    waited = [d for d in alarms if d[0].startswith("waited:")]  # in arrival order: oldest first
    repeats = sorted(d for d in alarms if not d[0].startswith("waited:"))
    out += [Summary(key, count, seconds, members=((key, count),)) for key, count, seconds in waited + repeats]
    return out
