"""The API's routes, derived from the registry (:mod:`vault.api_spec`): one
``POST /v1/<service>/<method>`` per operation, a pydantic request model made from its parameters
(it checks their *shape*: the facade checks their meaning, authorizes, audits and acts), and one
generic dispatcher. No operation is named here.

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the route
functions' annotations at runtime, and the request models are made per operation.
"""

import asyncio
import base64
import binascii
import json
import threading
from collections.abc import Callable
from contextlib import contextmanager
from typing import Annotated, Any, NamedTuple, Optional

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model

from vault import api_spec as spec
from vault.api_schemas import response_schema
from vault.errors import AuthenticationFailed, Busy, InvalidInput, VaultLocked
from vault.server.errors import ERROR_RESPONSES, RateLimited
from vault.server.limits import MAX_BUCKETS, MAX_SUMMARY_EVENTS, Dropped, RateLimiter, source_key
from vault.server.shared_audit import Deferral

Text = Annotated[str, StringConstraints(max_length=spec.MAX_STRING)]
#: the name of the OpenAPI security scheme of the session token
BEARER = "bearer"

#: how each result codec of the registry travels as JSON
ENCODERS: dict[str, Callable[[Any], Any]] = {
    "json": lambda result: result,
    "none": lambda result: None,
    "record": lambda result: result.as_dict(),
    "verify": lambda result: result.as_dict(),
    "login": lambda result: {**result.as_dict(), "token": result.token},
    "attachment": lambda result: {**result, "data": base64.b64encode(result["data"]).decode()},
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def annotation(p: spec.Param) -> Any:
    t: Any
    if p.type in ("str", "when", "since", "duration"):
        t = Text
    elif p.type == "int":
        lo, hi = p.limits
        t = Annotated[int, Field(ge=lo, le=hi)]
    elif p.type == "bool":
        t = bool
    elif p.type == "strlist":
        t = list[Text]
    elif p.type == "object":
        t = dict[str, Any]
    elif p.type == "bytes":
        t = Annotated[str, StringConstraints(max_length=spec.MAX_BASE64)]
    else:  # pragma: no cover - a typo in the table
        raise ValueError(f"unknown parameter type {p.type}")
    if not p.required and p.default is None:
        t = Optional[t]  # noqa: UP045 - evaluated at runtime by pydantic
    return t


def request_model(op: spec.Op) -> type[Strict] | None:
    if not op.params:
        return None
    name = "".join(part.capitalize() for part in f"{op.service}_{op.method}".split("_")) + "Request"
    fields: dict[str, Any] = {p.name: (annotation(p), ... if p.required else p.default) for p in op.params}
    return create_model(name, __base__=Strict, **fields)


def has_surrogates(value) -> bool:
    """Lone surrogates (``"\\ud800"`` in JSON) cannot be stored as UTF-8: refuse them up front."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(has_surrogates(k) or has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_surrogates(v) for v in value)
    return False


def arguments(op: spec.Op, body) -> dict:
    """The facade's keyword arguments; dates and durations stay text (the service parses them)."""
    if body is None:
        return {}
    args = {p.name: getattr(body, p.name) for p in op.params}
    if has_surrogates(args):
        raise InvalidInput("invalid request: text must be valid Unicode (no lone surrogates)")
    for p in op.params:
        if p.type == "bytes":
            try:
                args[p.name] = base64.b64decode(args[p.name], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput(f"invalid request: {p.name} must be base64") from None
    return args


def call(vault, op: spec.Op, principal, args: dict, origin: str):
    """The one dispatcher: the facade method of ``op`` with the request's arguments."""
    kwargs = dict(args)
    if op.passes_origin:
        kwargs["origin"] = origin
    lines: list[str] | None = None
    if op.transport == "lines":
        lines = []
        kwargs["write"] = lines.append
    method = getattr(getattr(vault, op.service), op.facade_method)
    result = method(principal, **kwargs) if op.auth else method(**kwargs)
    if lines is not None:
        return {"lines": lines, "result": result}
    return ENCODERS[op.result](result)


def json_response(data) -> Response:
    return Response(json.dumps(data, ensure_ascii=False).encode(), media_type="application/json")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("not logged in: run cvault login NAME")
    return token.strip()


def origin_of(request: Request) -> str:
    return f"api:{request.client.host}" if request.client else "api"


class Limits:
    """The rate-limit classes of the registry (``Op.rate_limit``), and the refusal throttle of
    the PSA webhook (:meth:`webhook_admit`, :meth:`webhook_refused`)."""

    def __init__(
        self,
        by_address: RateLimiter,
        by_user: RateLimiter,
        by_webhook: RateLimiter | None = None,
        dropped: Dropped | None = None,
    ):
        self.by_address = by_address
        self.by_user = by_user
        #: refused webhook requests per source (``source:ADDRESS``) and per claimed integration
        #: (``integration:NAME``, ``integration:?`` for every unknown name together)
        self.by_webhook = by_webhook if by_webhook is not None else RateLimiter(20, 10 / 60)
        #: refused webhook requests not audited one by one, for the summary events
        self.dropped = dropped if dropped is not None else Dropped()
        #: the integrity alarms of webhook requests written since the last summary round (R5-4)
        self._alarmed: set[str] = set()
        #: every alarm written by name so far, oldest first (at most MAX_BUCKETS, the oldest
        #: forgotten), and the FIFO of the alarms never written by name that found a round's
        #: slots taken, in arrival order, each with [times met, first met at] (at most
        #: MAX_BUCKETS, the newest arrival dropped when full): each summary round writes its
        #: head by name before any new alarm takes a slot (review7 R7-2, review8 R8-2)
        self._named: dict[str, None] = {}
        self._waiting: dict[str, list[float]] = {}
        self._alarmed_lock = threading.Lock()
        #: user names with a login being checked now: one at a time per account (review R4)
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()

    @staticmethod
    def source(request: Request) -> str:
        return source_key(request.client.host if request.client else None)

    def address(self, request: Request) -> None:
        """Unseal attempts: every attempt spends a token of its source (an address, an IPv6 /64)."""
        wait = self.by_address.take(self.source(request))
        if wait:
            raise RateLimited(wait)

    @contextmanager
    def reserve(self, source: str, name: str):
        """Failed-login throttling (issue 11, review R4): a login *reserves* a token of its
        source and of its user name before anything is checked (refused, 429, when either has
        none), and at most one attempt per user name is checked at once (a second one
        meanwhile: 429, nothing checked). Yields a one-item list; the caller sets ``[0] = True``
        when the attempt failed (wrong password or code, locked): only then are the tokens kept,
        so correct logins are never throttled and parallel guesses cannot all pass the check
        before any of them is counted. The API (:meth:`attempt`) and the console's sign-in use it."""
        self.begin(source, name)
        failed = [False]
        try:
            yield failed
        finally:
            self.end(source, name, failed[0])

    def begin(self, source: str, name: str) -> None:
        """The check-and-reserve step of :meth:`reserve` (raises RateLimited), atomic: with
        several worker processes the supervisor runs it for all of them
        (:class:`vault.server.workers.SharedLimits`), so the limits stay global."""
        with self._in_flight_lock:
            if name in self._in_flight:
                raise RateLimited(1.0)
            wait = self.by_address.take(source)
            if wait:
                raise RateLimited(wait)
            wait = self.by_user.take(name)
            if wait:
                self.by_address.give_back(source)
                raise RateLimited(wait)
            self._in_flight.add(name)

    def end(self, source: str, name: str, failed: bool) -> None:
        """The attempt of :meth:`begin` is over: a failed one keeps its tokens."""
        with self._in_flight_lock:
            self._in_flight.discard(name)
        if not failed:
            self.by_address.give_back(source)
            self.by_user.give_back(name)

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        """The limits of a :class:`vault.server.app.ServiceSettings` (per minute: per second)."""
        return cls(
            RateLimiter(settings.address_burst, settings.address_per_minute / 60),
            RateLimiter(settings.user_burst, settings.user_per_minute / 60),
            RateLimiter(settings.webhook_burst, settings.webhook_per_minute / 60),
        )

    def webhook_admit(self, source: str) -> None:
        """Before a webhook request that cannot be a valid signed event is looked at (its head
        fails :func:`vault.sla.contracts.could_be_valid`; review S5): a source whose refusals
        have spent its bucket is answered 429 (raises RateLimited) with nothing read, checked or
        written; the drop is counted for its summary event. Spends nothing."""
        wait = self.by_webhook.wait("source:" + source)
        if wait:
            self.dropped.add("source:" + source)
            raise RateLimited(wait)

    def webhook_refused(self, source: str, integration: str, verified: bool = False) -> bool:
        """A webhook request from ``source`` claiming ``integration`` (``"?"``: no such one) was
        checked and refused (``verified``: its signature verified, the refusal is the
        integration's own: a replay, an unknown client...): it spends a token of the source and
        of the claimed integration. True: it gets its own audit event; False (either bucket
        empty): it is counted for the summary event instead, so neither one source nor many
        sources claiming one name write more than a bucket's worth of refusal events. A request
        whose signature did not verify, from a source whose bucket is empty, is answered 429
        (raises RateLimited; review5 R5-1: the body was read and the signature checked, so a
        valid signed event from a source others share is never throttled by their refusals)."""
        wait = self.by_webhook.take("source:" + source)
        if wait:
            self.dropped.add("source:" + source)
            if not verified:
                raise RateLimited(wait)
            return False
        if self.by_webhook.take("integration:" + integration):
            self.dropped.add("integration:" + integration)
            return False
        return True

    def webhook_alarm(self, alarm: str) -> bool:
        """A webhook request met an integrity failure (a row that failed its MAC; ``alarm``: its
        message, which names the table and the row id, never a value). True: write its
        ``integrity.row_failure`` alarm now, whatever the refusal throttle says (review5 R5-4:
        an attacker who first spends the buckets must not keep a file writer's tampering out of
        the log): it is the first of that alarm since the last summary round and one of the
        round's :data:`MAX_SUMMARY_EVENTS` slots is free. False: it is counted instead, so a
        flood of requests meeting the same tampered row writes one alarm and one count a round,
        not one alarm each: written already this round (``alarm:MESSAGE``), waiting (on its
        entry of the FIFO), or past the round's slots and the FIFO (``alarm:*``).

        An alarm never written by name that finds the round's slots taken joins the FIFO of
        waiting alarms, behind those already waiting (review8 R8-2); each summary round
        (:meth:`webhook_drain`) writes the :data:`MAX_SUMMARY_EVENTS` oldest of them by name
        before any new alarm takes a slot, and nothing ever joins ahead of one, so one that
        joined with ``p`` alarms ahead is written by name at the ``p // MAX_SUMMARY_EVENTS + 1``
        th round after, whatever alarms (fresh decoy rows) are met later. While alarms wait, an
        alarm written in an earlier round takes no slot (review7 R7-2) and a new one joins the
        FIFO; a full FIFO (:data:`vault.server.limits.MAX_BUCKETS`) drops the newest arrival,
        never the oldest. The memory of written alarms is bounded too (MAX_BUCKETS, the oldest
        forgotten: such an alarm may be written by name again)."""
        with self._alarmed_lock:
            if alarm in self._alarmed:
                self.dropped.add("alarm:" + alarm)
                return False
            waiting = self._waiting.get(alarm)
            if waiting is not None:
                waiting[0] += 1
                return False
            if len(self._alarmed) < MAX_SUMMARY_EVENTS and not self._waiting:
                self._write(alarm)
                return True
            if alarm not in self._named and len(self._waiting) < MAX_BUCKETS:
                self._waiting[alarm] = [1, self.dropped.clock()]
                return False
            self.dropped.add("alarm:*")
            return False

    def _write(self, alarm: str) -> None:
        """``alarm`` is written by name this round (the caller holds ``_alarmed_lock``)."""
        self._alarmed.add(alarm)
        self._named.pop(alarm, None)
        self._named[alarm] = None
        while len(self._named) > MAX_BUCKETS:
            del self._named[next(iter(self._named))]

    def webhook_drain(self, final: bool = False) -> list[tuple[str, int, float]]:
        """The counts for this round's summary events (:meth:`Dropped.drain`), and a new round of
        :meth:`webhook_alarm`: each alarm may be written again once, and the round's first slots
        go to the :data:`MAX_SUMMARY_EVENTS` oldest waiting alarms, handed out here as
        ``("waited:MESSAGE", times met, seconds since first met)`` for the summary round to write
        by name (:meth:`vault.sla.contracts.IntegrationService.record_throttled`), in arrival
        order. ``final`` (the service stops): the alarms still waiting past those are counted in
        ``alarm:*`` rather than forgotten uncounted."""
        with self._alarmed_lock:
            self._alarmed.clear()
            now = self.dropped.clock()
            due: list[tuple[str, int, float]] = []
            while self._waiting and len(due) < MAX_SUMMARY_EVENTS:
                alarm = next(iter(self._waiting))
                times, first = self._waiting.pop(alarm)
                self._write(alarm)
                due.append(("waited:" + alarm, int(times), max(0.0, now - first)))
            if final and self._waiting:
                self.dropped.add("alarm:*", int(sum(times for times, _ in self._waiting.values())))
                self._waiting.clear()
            return self.dropped.drain() + due

    @contextmanager
    def attempt(self, op: spec.Op, request: Request, body):
        """:meth:`reserve` for a login or enrollment of the API; a failure is
        :class:`AuthenticationFailed`/:class:`VaultLocked` raised by the body."""
        if op.rate_limit != "login":
            yield
            return
        with self.reserve(self.source(request), str(getattr(body, "name", ""))[:200]) as failed:
            try:
                yield
            except (AuthenticationFailed, VaultLocked):
                failed[0] = True
                raise


class FastDispatch:
    """Pure ASGI: a registry operation whose request is well formed goes straight to its
    dispatcher (the same ``run`` and request model its FastAPI route has) instead of through the
    ASGI middleware stack and FastAPI's routing and request handling, which cost about as much
    CPU as the operation's own reads (docs/performance.md, "Service reads" and "the request path
    below the ASGI stack").

    Only the plain case is taken: ``POST`` to an operation's path with a body, ``Content-Type:
    application/json``, a JSON object that its request model accepts. Anything else (another
    content type, invalid JSON, a failed validation, a client that went away) is handed to
    ``app`` unchanged, the body replayed, so every error keeps the one answer FastAPI gives it
    (tests/server/test_http_edges.py and the fuzz tests). An operation's own errors are answered
    by the application's exception handlers (``vault.server.errors``), looked up as Starlette
    does.

    The service runs it outside every middleware (:class:`vault.server.app.ServiceApp`), so it
    does itself what those do to the requests it takes: with ``limit`` it takes only a request
    whose ``Content-Length`` is declared once and within ``limit``, with no
    ``Transfer-Encoding``, and whose head is within the head limit, and stops reading past
    ``limit`` bytes whatever was declared (anything else, chunked, declared twice or too large,
    goes to ``app``, whose
    :class:`vault.server.limits.BodyLimit` answers it as before), and ``headers(scope, raw)``
    gives the answer's headers (the security headers of
    :func:`vault.server.console.web.secure_headers`). ``handoff``: what runs the operation in a
    thread (:class:`vault.server.handoff.Handoff`; Starlette's ``run_in_threadpool`` without)."""

    def __init__(
        self,
        app,
        routes: dict,
        handlers: Callable[[], dict],
        *,
        limit: int | None = None,
        headers: Callable[[dict, list], list] | None = None,
        handoff=None,
        deferring: Any = None,
        deferred: frozenset[str] = frozenset(),
        defer_alone: bool = False,
    ):
        self.app = app
        #: the worker's audit writer when it can defer (a SharedAuditWriter), else None, and the
        #: paths of the operations run in the loop's thread with their audit answers awaited
        #: there (reads that write nothing after their decision: :meth:`_deferred`), when another
        #: request is in flight here (or always, with ``defer_alone``): a read alone is cheaper
        #: in a thread, as before (docs/performance.md, "svcloop2")
        self.deferring = deferring
        self.deferred = deferred
        self.defer_alone = defer_alone
        self._busy = 0  # fast-path requests in flight (the loop's thread only)
        #: path -> (request model, the route's run(request, body))
        self.routes = routes
        self.handlers = handlers
        self.limit = limit
        self.headers = headers
        self.handoff = handoff

    async def __call__(self, scope, receive, send):
        route = (
            self.routes.get(scope.get("path", ""))
            if scope["type"] == "http" and scope.get("method") == "POST"
            else None
        )
        if route is None or not self._takes(scope):
            await self.app(scope, receive, send)
            return
        model, run = route
        messages = []
        more = True
        taken = 0
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            more = message.get("more_body", False)
            taken += len(message.get("body", b""))
            if self.limit is not None and taken > self.limit:
                break  # more than declared: the body limit behind ``app`` answers it (413)
        body = None
        if not more:
            try:
                data = json.loads(b"".join(m.get("body", b"") for m in messages))
                body = model.model_validate(data) if isinstance(data, dict) else None
            except (ValueError, RecursionError, ValidationError):
                body = None  # FastAPI answers it, in its own words
        if body is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        request = LeanRequest(scope)
        writer = self.deferring if scope["path"] in self.deferred else None
        if writer is not None and not self._busy and not self.defer_alone:
            writer = None  # the only request in flight here: in a thread (cheaper alone: svcloop2)
        self._busy += 1
        try:
            if writer is not None:
                response = await self._deferred(writer, run, request, body)
            else:
                response = await self._in_thread(run, request, body)
        except Exception as exc:  # noqa: BLE001 - answered by the application's handler for it
            response = await self._handle(Request(scope, receive), exc)
        finally:
            self._busy -= 1
        if self.headers is None:
            await response(scope, receive, send)
            return
        raw = self.headers(scope, response.raw_headers)
        await send({"type": "http.response.start", "status": response.status_code, "headers": raw})
        await send({"type": "http.response.body", "body": response.body})

    async def _deferred(self, writer, run, request, body) -> Response:
        """``run`` in the loop's thread, its audit events sent without waiting for them
        (:class:`vault.server.shared_audit.Deferral`); its answer (or its error) only once every
        one of them is durable, and an audit failure refuses it whatever ``run`` gave.

        No thread hand-off and no blocked thread per read: the loop runs the read's own work
        (SQLite reads in WAL, the decryption; a read that needs a write first, the session's
        ``last_seen`` once a minute, goes to a thread: :class:`vault.store.db.WriteNotHere`) and
        awaits the supervisor's answer as a future (docs/performance.md, "svcloop2")."""
        from vault.store.db import WriteNotHere, writes_elsewhere

        deferral = Deferral(asyncio.get_running_loop())
        try:
            with writer.deferring(deferral), writes_elsewhere():
                response = run(request, body)
        except WriteNotHere:
            # the read needs a write first (the session's last_seen once a minute, an expired
            # session's end): never in the loop's thread, where waiting for the host write lock
            # (another worker's commit, a long import, a file writer's flock) stopped every
            # connection of this worker (review11 R11-1); the session check comes before the
            # decision, so no audit event was sent yet and the read runs again in a thread
            if deferral.futures:
                await deferral.settled()
                raise Busy("the service is busy: try again in a moment") from None
            return await self._in_thread(run, request, body)
        except Exception:
            await deferral.settled()  # an audit failure is the answer, as when it came first
            raise
        await deferral.settled()
        return response

    async def _in_thread(self, run, request, body) -> Response:
        if self.handoff is not None:
            return await self.handoff.run(run, request, body)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(run, request, body)

    def _takes(self, scope) -> bool:
        """``Content-Type: application/json``; with ``limit``, a declared body within it and a
        head within the head limit (what :class:`vault.server.limits.BodyLimit` lets through)."""
        json_type: bool | None = None  # the first Content-Type decides
        declared = -1 if self.limit is not None else 0
        head = len(scope.get("method", "")) + len(scope.get("raw_path") or b"")
        head += len(scope.get("query_string") or b"")
        for name, value in scope.get("headers", ()):
            head += len(name) + len(value) + 4
            if name == b"content-type" and json_type is None:
                json_type = value.split(b";", 1)[0].strip().lower() == b"application/json"
            elif name == b"content-length" and self.limit is not None:
                declared = int(value) if value.isdigit() and declared == -1 else -2
            elif name == b"transfer-encoding" and self.limit is not None:
                # framed by the encoding, not by Content-Length: its length is unknown before it
                # has arrived, so the body limit behind ``app`` reads it (the parser refuses a
                # request with both since httptools; this stays, defence in depth: review4 R4-8)
                declared = -2
        if self.limit is None:
            return bool(json_type)
        from vault.server.http import MAX_HEAD_BYTES

        return bool(json_type) and 0 <= declared <= self.limit and head <= MAX_HEAD_BYTES

    async def _handle(self, request: Request, exc: Exception) -> Response:
        handlers = self.handlers()
        for cls in type(exc).__mro__:
            if cls in handlers:
                return await handlers[cls](request, exc)
        raise exc  # pragma: no cover - vault.server.errors has a handler for Exception


class _Address(NamedTuple):
    host: str
    port: int


class LeanRequest:
    """What a route's ``run`` reads of its request (the client's address, a header), without a
    Starlette ``Request``: :func:`origin_of`, :func:`bearer_token` and :class:`Limits` take
    either."""

    __slots__ = ("scope", "client", "headers")

    def __init__(self, scope):
        self.scope = scope
        client = scope.get("client")
        self.client = _Address(client[0], client[1]) if client else None
        self.headers = _LeanHeaders(scope.get("headers", ()))


class _LeanHeaders:
    __slots__ = ("raw",)

    def __init__(self, raw):
        self.raw = raw

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first header of that name, as Starlette's ``Headers.get``."""
        wanted = key.lower().encode("latin-1")
        for name, value in self.raw:
            if name == wanted:
                return value.decode("latin-1")
        return default


def _replay(messages: list, receive):
    """``receive`` that gives ``messages`` again first."""
    pending = list(messages)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def add_route(app: FastAPI, op: spec.Op, pool, limits: Limits, fast: dict | None = None) -> None:
    """The operation's FastAPI route; with ``fast``, also its entry for :class:`FastDispatch`."""
    model = request_model(op)

    def run(request: Request, body) -> Response:
        origin = origin_of(request)
        with limits.attempt(op, request, body), pool.lease() as vault, vault.ctx.one_request():
            principal = None
            if op.auth:
                principal = vault.users.resume(bearer_token(request), origin=origin)
            args = arguments(op, body)
            try:
                result = call(vault, op, principal, args, origin)
            except (OverflowError, UnicodeEncodeError):
                # only an out-of-range number or unencodable text gets here: bad input
                raise InvalidInput("invalid request: a value is out of range") from None
            return json_response(result)

    endpoint: Callable[..., Response]
    if model is not None:

        def with_body(request: Request, body: model) -> Response:  # type: ignore[valid-type]
            return run(request, body)

        endpoint = with_body
    else:

        def without_body(request: Request) -> Response:
            return run(request, None)

        endpoint = without_body

    endpoint.__name__ = op.operation_id
    if fast is not None and model is not None:
        fast[op.path] = (model, run)
    ok = {
        "description": "the result",
        "content": {"application/json": {"schema": response_schema(op.returns)}},
    }
    app.add_api_route(
        op.path,
        endpoint,
        methods=["POST"],
        tags=[op.service],
        summary=op.summary,
        operation_id=op.operation_id,
        responses={200: ok, **ERROR_RESPONSES},
        response_class=Response,
        # a session token for every operation that acts for a principal; none for the others
        openapi_extra={"security": [{BEARER: []}] if op.auth else []},
    )
