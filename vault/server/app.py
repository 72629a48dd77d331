"""The HTTPS JSON API (SPEC 11): ``create_app(pool)`` builds the FastAPI application.

A thin adapter over the facade, like the CLI: every operation of :mod:`vault.server.spec` is one
``POST /v1/<service>/<method>`` route whose pydantic model checks the *shape* of the arguments;
the facade checks their meaning, authorizes, audits and acts. No policy and no crypto here.

* Authentication: ``Authorization: Bearer <session token>`` resolved by ``users.resume``; the
  principal's origin is ``api:<client address>`` in the audit log.
* Errors: always ``{"error": {"code", "message", "exit_code"}}`` with the status of
  :func:`vault.server.spec.status_for` (docs/service.md has the table); an unexpected exception is
  a 500 ``internal_error`` with a generic message, its type logged without its message.
* Concurrency: :class:`VaultPool` lends each request its own ``Vault`` (own SQLite connection,
  WAL: readers never block, one writer at a time, queued on an in-process lock before SQLite's
  busy timeout) sharing one unsealed root key; docs/service.md, "Concurrency", has the
  measurements behind the choice.
* Never logged: request bodies, tokens, secret values (uvicorn's access log is off).

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the route
functions' annotations at runtime, and the request models are made per operation.
"""

import json
import logging
import threading
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from vault.errors import AuthenticationFailed, InvalidInput, VaultError, VaultLocked, VaultSealed
from vault.server import spec
from vault.server.limits import BodyLimit, BodyTooLarge, RateLimiter

log = logging.getLogger("cvault.server")

UNSEAL_FAILURES_MAX = 20  # failed unseal attempts per window, from all addresses together
UNSEAL_WINDOW = 600  # seconds

ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 422, 423, 429, 500, 502, 503)


# --- the vault pool --------------------------------------------------------------------------------


class VaultPool:
    """Vaults lent to requests, one at a time each; all share the unsealed root key.

    A Vault holds one SQLite connection and per-object caches, so it must not serve two requests
    at once; opening one costs ~1 ms, so idle ones are kept (at most ``keep``) for reuse."""

    def __init__(self, home: Path | str, *, clock=None, keep: int = 64, cache_seconds: float = 900.0):
        from vault.custody.cache import BoundedCache
        from vault.facade import Vault

        self.home = Path(home)
        self.clock = clock
        self.keep = keep
        #: unwrapped custody secrets and client keys, shared by the pooled vaults for at most
        #: ``cache_seconds`` (docs/service.md, "Key cache"); a shred empties its client's entries
        self.custody_cache = BoundedCache(cache_seconds)
        self.key_cache = BoundedCache(cache_seconds)
        self._free: list = []
        self._lock = threading.Lock()
        self._root: bytes | None = None
        #: one write transaction at a time among this process's connections (see _serialize)
        self._write_lock = threading.RLock()
        #: one unseal attempt at a time (each runs Argon2id with 64 MiB), and a global cap on
        #: failures whatever the source address: UNSEAL_FAILURES_MAX per UNSEAL_WINDOW seconds
        self._unseal_lock = threading.Lock()
        self._unseal_failures: list[float] = []
        probe = self._serialize(
            self._cached(Vault.open(self.home, clock=clock, custody_options=self._custody()))
        )
        self.vault_id = probe.ctx.vault_id.hex()
        self._free.append(probe)

    @property
    def sealed(self) -> bool:
        return self._root is None

    def _custody(self) -> dict:
        return {"cache": self.custody_cache}

    def _cached(self, vault):
        vault.ctx.client_key_cache = self.key_cache
        return vault

    def _open(self):
        from vault.facade import Vault

        return self._serialize(
            self._cached(Vault.open(self.home, clock=self.clock, custody_options=self._custody()))
        )

    def _serialize(self, vault):
        """Queue this process's writers on a Python lock before SQLite's write lock.

        Every write (``Database.write``: ``BEGIN IMMEDIATE`` .. ``COMMIT``) of every pooled
        connection takes ``_write_lock`` first. Without it, concurrent requests that each commit an
        audit event meet SQLite's busy handler, which does not queue: a loser sleeps 1, 2, 5, 10,
        15, 20, 25 ... ms between retries, so it waits for the next sleep to end, not for the
        holder's ~1 ms commit. Measured with 4 clients: p99 of the wait for ``BEGIN IMMEDIATE``
        55 ms (commit itself p99 5 ms), which was the whole p99 of a read. With the lock a waiter
        is woken as soon as the holder commits. SQLite's lock and busy timeout still arbitrate
        with other processes (a local ``cvault`` command on the service host)."""
        db = vault.ctx.db
        write = db.write
        lock = self._write_lock

        @contextmanager
        def serialized_write():
            with lock, write() as conn:
                yield conn

        db.write = serialized_write
        return vault

    def unseal(self, how: str, secret: str, origin: str | None = None) -> None:
        """``how``: key_file (a path), passphrase or recovery_key. Raises like the facade.

        Serialized (Argon2id costs 64 MiB per attempt), capped globally against guessing from many
        addresses; every failure, and every unseal through the API (``origin`` given), is written
        to the audit log (which works while sealed). The key-file unseal at start is in the
        service log."""
        import time

        if not self._unseal_lock.acquire(timeout=10):
            raise VaultLocked("another unseal attempt is running; try again")
        try:
            now = time.monotonic()
            self._unseal_failures = [t for t in self._unseal_failures if now - t < UNSEAL_WINDOW]
            if len(self._unseal_failures) >= UNSEAL_FAILURES_MAX:
                raise VaultLocked("unseal locked: too many failed attempts; wait and try again")
            with self.lease(unsealed=False) as vault:
                if vault.unsealed:
                    return
                try:
                    getattr(vault, f"unseal_{how}")(secret)
                except AuthenticationFailed:
                    self._unseal_failures.append(now)
                    vault.ctx.audit.append(
                        actor="operator",
                        action="service.unseal",
                        outcome="deny",
                        reason=f"wrong {how.replace('_', ' ')}",
                        origin=origin or "service",
                    )
                    raise
                self._root = vault.ctx.keyring.root()
                if origin is not None:
                    vault.ctx.audit.append(
                        actor="operator",
                        action="service.unseal",
                        outcome="ok",
                        reason=f"unsealed with a {how.replace('_', ' ')}",
                        origin=origin,
                    )
        finally:
            self._unseal_lock.release()

    @contextmanager
    def lease(self, *, unsealed: bool = True):
        if unsealed and self._root is None:
            raise VaultSealed("vault sealed: an operator must unseal the service (cvault operator unseal)")
        with self._lock:
            vault = self._free.pop() if self._free else None
        if vault is None:
            vault = self._open()
        root = self._root
        if root is not None and not vault.unsealed:
            vault.ctx.keyring.load_root(root)
        try:
            yield vault
        finally:
            with self._lock:
                if len(self._free) < self.keep:
                    self._free.append(vault)
                    vault = None
            if vault is not None:
                vault.close()

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for vault in free:
            vault.close()
        self._root = None


# --- settings ------------------------------------------------------------------------------------


@dataclass
class ServiceSettings:
    #: login, enroll and unseal attempts per client address: burst, then this many per minute
    address_burst: int = 10
    address_per_minute: float = 10.0
    #: login attempts per user name (whatever the address): burst, then per minute
    user_burst: int = 5
    user_per_minute: float = 5.0
    #: background jobs (seconds; 0 disables one)
    sweep_interval: float = 300.0
    outbox_interval: float = 60.0
    checkpoint_interval: float = 300.0
    #: backups (docs/sla.md section 6): a folder that keeps the newest ``backup_keep``, and/or the
    #: OneDrive replica; one every ``backup_interval`` seconds and one after every shred or purge
    backup_dir: str = ""
    backup_remote: bool = False
    backup_interval: float = 86400.0
    backup_keep: int = 7
    #: how long unwrapped custody secrets and client keys stay in memory
    custody_cache_seconds: float = 900.0
    background: bool = True


# --- errors ----------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code (docs/service.md)")
    message: str = Field(description="One human line; never contains secrets")
    exit_code: int = Field(description="The CLI exit code this error maps to")


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_response(
    code: str, message: str, exit_code: int, status: int | None = None, headers: dict | None = None
) -> Response:
    status = status or spec.status_for(code, exit_code)
    body = {"error": {"code": code, "message": message, "exit_code": exit_code}}
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="cvault"')
    return Response(
        json.dumps(body, ensure_ascii=False).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def api_error(code: str, message: str, headers: dict | None = None) -> Response:
    status, exit_code = spec.API_ERRORS[code]
    return error_response(code, message, exit_code, status, headers)


class RateLimited(Exception):
    def __init__(self, retry_after: float):
        self.retry_after = retry_after


def _validation_message(exc: RequestValidationError) -> str:
    """First problem, by location and kind; never the offending value (it may be a secret)."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    err = errors[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid request: {where}: {msg}{more}"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VaultError)
    async def vault_error(request: Request, exc: VaultError):
        return error_response(exc.code, exc.message, exc.exit_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return api_error("invalid_request", _validation_message(exc))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge):
        return api_error("request_too_large", exc.message)

    @app.exception_handler(RateLimited)
    async def rate_limited(request: Request, exc: RateLimited):
        seconds = max(1, int(exc.retry_after + 0.999))
        return api_error(
            "rate_limited", f"too many attempts: retry in {seconds} s", {"Retry-After": str(seconds)}
        )

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, exc: RecursionError):
        return api_error("invalid_request", "invalid request: JSON nested too deeply")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return api_error("unknown_endpoint", f"no such endpoint: {request.url.path[:200]}")
        if exc.status_code == 405:
            return api_error("method_not_allowed", f"method {request.method} not allowed here")
        if exc.status_code == 400:  # e.g. a malformed body Starlette could not parse
            return api_error("invalid_request", "invalid request")
        return error_response("error", str(exc.detail)[:200], 1, exc.status_code)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        # the type and the place only: an exception message may quote input
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
        log.error("internal error %s at %s on %s", type(exc).__name__, where, request.url.path)
        return api_error("internal_error", "internal error (the service log has the details)")


# --- request models --------------------------------------------------------------------------------

Text = Annotated[str, StringConstraints(max_length=spec.MAX_STRING)]


def _annotation(p: spec.Param):
    if p.type in ("str", "when", "duration"):
        t = Text
    elif p.type == "int":
        lo, hi = p.bounds or spec.INT64
        t = Annotated[int, Field(ge=lo, le=hi)]
    elif p.type == "bool":
        t = bool
    elif p.type == "strlist":
        t = list[Text]
    elif p.type == "object":
        t = dict[str, Any]
    else:  # pragma: no cover - a typo in the table
        raise ValueError(f"unknown parameter type {p.type}")
    if not p.required and p.default is None:
        t = Optional[t]
    return t


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def request_model(op: spec.Op):
    if not op.params:
        return None
    name = "".join(part.capitalize() for part in f"{op.service}_{op.method}".split("_")) + "Request"
    fields = {p.name: (_annotation(p), ... if p.required else p.default) for p in op.params}
    return create_model(name, __base__=_Strict, **fields)


def _has_surrogates(value) -> bool:
    """Lone surrogates (``"\\ud800"`` in JSON) cannot be stored as UTF-8: refuse them up front."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


def _arguments(op: spec.Op, body, vault) -> dict:
    from vault.dates import parse_duration, parse_when

    if body is None:
        return {}
    args = {p.name: getattr(body, p.name) for p in op.params}
    if _has_surrogates(args):
        raise InvalidInput("invalid request: text must be valid Unicode (no lone surrogates)")
    for p in op.params:
        value = args[p.name]
        if value is None:
            continue
        try:
            if p.type == "when":
                args[p.name] = parse_when(value, vault.ctx.now())
            elif p.type == "duration":
                args[p.name] = parse_duration(value)
        except (OverflowError, ValueError):
            raise InvalidInput(f"{p.name}: date or duration out of range") from None
    return args


# --- dispatch ------------------------------------------------------------------------------------


def _encode(op: spec.Op, result) -> Any:
    if op.result == "none":
        return None
    if op.result == "secret_record":
        return result.as_dict()
    if op.result == "verify_result":
        return result.as_dict()
    if op.result == "login":
        data = result.as_dict()
        data["token"] = result.token
        return data
    if op.service == "sync" and op.method == "config":
        return result.to_dict() if result is not None else None
    return result


def _call(vault, op: spec.Op, principal, args: dict, origin: str):
    if (op.service, op.method) == ("audit", "export_lines"):
        lines: list[str] = []
        result = vault.audit.export(principal, args["format"], write=lines.append, details=args["details"])
        return {"lines": lines, "result": result}
    method = getattr(getattr(vault, op.service), op.method)
    if op.method in ("login", "enroll") and op.service == "users":
        return method(**args, origin=origin)
    if not op.auth:
        return method(**args)
    return method(principal, **args)


def _json(data) -> Response:
    return Response(json.dumps(data, ensure_ascii=False).encode(), media_type="application/json")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("not logged in: run cvault login NAME")
    return token.strip()


def origin_of(request: Request) -> str:
    return f"api:{request.client.host}" if request.client else "api"


# --- the application ----------------------------------------------------------------------------


def create_app(pool: VaultPool, settings: ServiceSettings | None = None) -> FastAPI:
    """The FastAPI application over ``pool``. Background jobs start in its lifespan."""
    from vault.server.jobs import BackgroundJobs

    settings = settings or ServiceSettings()
    by_address = RateLimiter(settings.address_burst, settings.address_per_minute / 60)
    by_user = RateLimiter(settings.user_burst, settings.user_per_minute / 60)
    jobs = BackgroundJobs(pool, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.background:
            jobs.start()
        try:
            yield
        finally:
            jobs.stop()

    app = FastAPI(
        title="cvault service API",
        version="1",
        description="The cvault facade over HTTPS (docs/service.md). Every operation is "
        "`POST /v1/<service>/<method>` with a JSON body; errors are "
        '`{"error": {"code", "message", "exit_code"}}`.',
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.pool = pool
    app.state.jobs = jobs
    app.state.settings = settings
    app.add_middleware(BodyLimit, limit=spec.MAX_BODY_BYTES)
    _install_error_handlers(app)
    errors = {
        status: {"model": ErrorBody, "description": "error (docs/service.md)"} for status in ERROR_STATUSES
    }

    def limit_address(request: Request) -> None:
        host = request.client.host if request.client else "?"
        wait = by_address.take(host)
        if wait:
            raise RateLimited(wait)

    @app.get("/v1/health", tags=["service"], responses=errors, summary="Liveness and seal state")
    def health() -> dict:
        return {"status": "ok", "sealed": pool.sealed}

    @app.get(
        "/v1/time",
        tags=["service"],
        responses=errors,
        summary="The server's clock (relative dates are read against it)",
    )
    def server_time() -> dict:
        from vault.clock import SystemClock, rfc3339

        return {"now": rfc3339((pool.clock or SystemClock()).now())}

    class UnsealRequest(_Strict):
        passphrase: Text | None = None
        recovery_key: Text | None = None

    @app.post(
        "/v1/sys/unseal",
        tags=["service"],
        responses=errors,
        summary="Unseal the service (operator): passphrase or recovery key",
    )
    def unseal(request: Request, body: UnsealRequest) -> dict:
        limit_address(request)
        given = [
            (k, v)
            for k, v in (("passphrase", body.passphrase), ("recovery_key", body.recovery_key))
            if v is not None
        ]
        if len(given) != 1:
            raise InvalidInput("give exactly one of passphrase or recovery_key")
        if _has_surrogates(given[0][1]):
            raise InvalidInput("invalid request: text must be valid Unicode")
        if pool.sealed:
            pool.unseal(*given[0], origin=origin_of(request))
            log.info("service unsealed with a %s by %s", given[0][0].replace("_", " "), origin_of(request))
        return {"sealed": pool.sealed}

    for op in spec.OPERATIONS:
        _add_route(app, op, pool, errors, limit_address, by_user)
    return app


def _add_route(
    app: FastAPI, op: spec.Op, pool: VaultPool, errors: dict, limit_address, by_user: RateLimiter
) -> None:
    model = request_model(op)
    rate_limited = op.service == "users" and op.method in ("login", "enroll")

    def run(request: Request, body) -> Response:
        if rate_limited:
            limit_address(request)
            wait = by_user.take(str(getattr(body, "name", ""))[:200])
            if wait:
                raise RateLimited(wait)
        origin = origin_of(request)
        with pool.lease() as vault:
            principal = None
            if op.auth:
                principal = vault.users.resume(bearer_token(request), origin=origin)
            args = _arguments(op, body, vault)
            try:
                result = _call(vault, op, principal, args, origin)
            except (OverflowError, UnicodeEncodeError):
                # only an out-of-range number or unencodable text gets here: bad input
                raise InvalidInput("invalid request: a value is out of range") from None
            return _json(_encode(op, result))

    if model is not None:

        def endpoint(request: Request, body: model) -> Response:  # type: ignore[valid-type]
            return run(request, body)
    else:

        def endpoint(request: Request) -> Response:
            return run(request, None)

    endpoint.__name__ = op.operation_id
    app.add_api_route(
        op.path,
        endpoint,
        methods=["POST"],
        tags=[op.service],
        summary=op.summary,
        operation_id=op.operation_id,
        responses=errors,
        response_class=Response,
    )
