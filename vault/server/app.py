"""The HTTPS JSON API (docs/spec.md §11): ``create_app(pool)`` builds the FastAPI application.

A thin adapter over the facade, like the CLI: the routes are derived from the registry
(:mod:`vault.server.routes`), the errors have one shape (:mod:`vault.server.errors`), the pool
lends each request a vault (:mod:`vault.server.pool`). No policy and no crypto here.

* Authentication: ``Authorization: Bearer <session token>`` resolved by ``users.resume``; the
  principal's origin is ``api:<client address>`` in the audit log.
* Concurrency: docs/service.md, "Concurrency", has the measurements behind the pool's choices.
* Never logged: request bodies, tokens, secret values (uvicorn's access log is off).

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the route
functions' annotations at runtime.
"""

import functools
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from vault import api_spec as spec
from vault.api_schemas import SCHEMAS
from vault.errors import InvalidInput
from vault.server.errors import ERROR_RESPONSES, install_error_handlers
from vault.server.handoff import Handoff
from vault.server.limits import BodyLimit, Slots
from vault.server.pool import VaultPool
from vault.server.routes import (
    BEARER,
    FastDispatch,
    Limits,
    Strict,
    Text,
    add_route,
    has_surrogates,
    json_response,
    origin_of,
)

CONTRACT_EVENTS_PATH = "/v1/sla/contract-events"
#: the operations whose audit answer is awaited in the event loop (reads that write nothing after
#: their decision is audited: vault.server.routes.FastDispatch._deferred)
DEFERRED_PATHS = frozenset({"/v1/secrets/get"})


def _deferring_writer(pool):
    """The worker's shared audit writer (``--workers``), which can defer; None without workers."""
    from vault.server.shared_audit import SharedAuditWriter

    group = pool.audit_group
    return group if isinstance(group, SharedAuditWriter) else None


#: the body of a contract event (docs/sla.md): the signature covers its exact bytes
CONTRACT_EVENT_SCHEMA = {
    "type": "object",
    "required": ["id", "client", "contract_end"],
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
        "client": {"type": "string"},
        "contract_end": {"type": "string", "description": "ISO 8601 date or time"},
        "renewal": {"type": ["string", "null"], "description": "end of an agreed renewal term"},
    },
}
#: a contract event is a few hundred bytes; a larger body is refused 413 before it is read
#: (review S5: a stranger's 1 GB POST is not read into memory; docs/sla.md)
CONTRACT_EVENT_MAX_BODY = 64 * 1024
CONTRACT_EVENT_OK = {
    "description": "the event was applied",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ContractEventResult"}}},
}

log = logging.getLogger("cvault.server")


@dataclass
class ServiceSettings:
    #: login, enroll and unseal attempts per client address: burst, then this many per minute
    address_burst: int = 10
    address_per_minute: float = 10.0
    #: login attempts per user name (whatever the address): burst, then per minute
    user_burst: int = 5
    user_per_minute: float = 5.0
    #: refused PSA webhook requests (review S5; docs/sla.md, "Contract events") per source and
    #: per claimed integration: burst, then per minute; past them a source is answered 429
    #: unread and refusals are summarised, one audit event per key every
    #: ``webhook_summary_interval`` seconds
    webhook_burst: int = 20
    webhook_per_minute: float = 10.0
    webhook_summary_interval: float = 60.0
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
    #: review R3 (slowloris): seconds a request head / body may take to arrive (then 408 and
    #: close), and the connections served at once (more: 503 in the JSON error shape)
    head_timeout: float = 10.0
    body_timeout: float = 120.0
    max_connections: int = 512


class ServiceApp(FastAPI):
    """The service's FastAPI application; its registry calls are answered by ``fast``
    (:class:`vault.server.routes.FastDispatch`, outside every middleware) when they are plain,
    everything else by FastAPI through the middleware stack."""

    fast: FastDispatch | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self.fast is not None:
            await self.fast(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


class UnsealRequest(Strict):
    passphrase: Text | None = None
    recovery_key: Text | None = None


def create_app(
    pool: VaultPool,
    settings: ServiceSettings | None = None,
    *,
    limits: Limits | None = None,
    slots: Slots | None = None,
) -> FastAPI:
    """The FastAPI application over ``pool``. Background jobs start in its lifespan.

    ``limits`` and ``slots``: the login throttles and the attachment upload slots when they are
    not this process's own (a worker of ``cvault serve --workers N`` asks its supervisor:
    :mod:`vault.server.workers`); by default made here from ``settings``."""
    from vault.server.jobs import BackgroundJobs

    settings = settings or ServiceSettings()
    limits = limits or Limits.from_settings(settings)
    jobs = BackgroundJobs(pool, settings, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.background:
            jobs.start()
        try:
            yield
        finally:
            jobs.stop()

    app = ServiceApp(
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

    async def admit(scope: dict, token: str) -> bool:
        """A large-body slot only for a live session's token (review F6): ``users.resume``, as
        the route will do again; anything else (unknown, ended, sealed, an error) is no."""
        from starlette.concurrency import run_in_threadpool

        client = scope.get("client")
        origin = f"api:{client[0]}" if client else "api"

        def check() -> bool:
            try:
                with pool.lease() as vault:
                    vault.users.resume(token, origin=origin)
                return True
            except Exception:  # noqa: BLE001 - fail closed: no slot; the route answers the error
                return False

        return await run_in_threadpool(check)

    # well-formed registry calls skip the middleware stack and FastAPI's request handling
    # (filled below); the operations with a larger body limit (and its slots) are not taken
    from vault.server.console.web import secure_headers

    fast_routes: dict = {}
    overrides = {op.path: op.body_limit for op in spec.OPERATIONS if op.body_limit}
    app.fast = FastDispatch(
        functools.partial(FastAPI.__call__, app),
        fast_routes,
        lambda: app.exception_handlers,
        limit=spec.MAX_BODY_BYTES,
        headers=lambda scope, raw: secure_headers(raw, False, scope.get("scheme") == "https"),
        handoff=Handoff(),
        deferring=_deferring_writer(pool),
        deferred=DEFERRED_PATHS,
    )
    app.add_middleware(
        BodyLimit,
        limit=spec.MAX_BODY_BYTES,
        overrides={CONTRACT_EVENTS_PATH: CONTRACT_EVENT_MAX_BODY, **overrides},
        admit=admit,
        slots=slots,
    )
    install_error_handlers(app)

    @app.get(
        "/v1/health",
        tags=["service"],
        responses=ERROR_RESPONSES,
        summary="Liveness and seal state",
        openapi_extra={"security": []},
    )
    def health() -> dict:
        return {"status": "ok", "sealed": pool.sealed}

    @app.post(
        "/v1/sys/unseal",
        tags=["service"],
        responses=ERROR_RESPONSES,
        summary="Unseal the service (operator): passphrase or recovery key",
        openapi_extra={"security": []},  # the secret is the passphrase itself
    )
    def unseal(request: Request, body: UnsealRequest) -> dict:
        limits.address(request)
        given = [
            (k, v)
            for k, v in (("passphrase", body.passphrase), ("recovery_key", body.recovery_key))
            if v is not None
        ]
        if len(given) != 1:
            raise InvalidInput("give exactly one of passphrase or recovery_key")
        if has_surrogates(given[0][1]):
            raise InvalidInput("invalid request: text must be valid Unicode")
        if pool.sealed:
            pool.unseal(*given[0], origin=origin_of(request), source=limits.source(request))
            log.info("service unsealed with a %s by %s", given[0][0].replace("_", " "), origin_of(request))
        return {"sealed": pool.sealed}

    for op in spec.OPERATIONS:
        add_route(app, op, pool, limits, None if op.path in overrides else fast_routes)

    # PSA webhooks (docs/sla.md, "Contract events"): authenticated by the HMAC signature of the raw
    # body, not by a session, so it is not a registry operation; documented here for the OpenAPI
    @app.post(
        CONTRACT_EVENTS_PATH,
        tags=["sla"],
        summary="A PSA's signed contract event (HMAC-SHA256; docs/sla.md)",
        responses={200: CONTRACT_EVENT_OK, **ERROR_RESPONSES},
        response_class=Response,
        openapi_extra={
            "security": [],
            "parameters": [
                {"name": h, "in": "header", "required": True, "schema": {"type": "string", "maxLength": 256}}
                for h in ("X-Cvault-Integration", "X-Cvault-Timestamp", "X-Cvault-Signature")
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CONTRACT_EVENT_SCHEMA}},
            },
        },
    )
    async def contract_event(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        from vault.sla.contracts import could_be_valid

        # review S5: a source whose refusals spent its bucket is answered 429 before the body
        # is read, the signature checked or the database touched (the drop is summarised), but
        # only for a request whose head cannot be a valid signed event: any other is read (at
        # most CONTRACT_EVENT_MAX_BODY) and its signature checked first, and answered 429 only
        # when it did not verify (review5 R5-1: others sharing the PSA's address, a NAT or a
        # proxy, never throttle its valid events)
        source = limits.source(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not could_be_valid(headers):
            await run_in_threadpool(limits.webhook_admit, source)
        body = await request.body()
        origin = origin_of(request)

        def refused(name: str, verified: bool) -> bool:
            return limits.webhook_refused(source, name, verified)

        def work() -> dict:
            with pool.lease() as vault:
                return vault.integrations.receive(
                    body, headers, origin=origin, refused=refused, alarmed=limits.webhook_alarm
                )

        return json_response(await run_in_threadpool(work))

    # the web console at / (docs/console.md): the same pool, facade, limits and error statuses
    from vault.server.console.app import install as install_console
    from vault.server.console.web import SecurityHeaders

    install_console(app, pool, limits, settings)
    app.add_middleware(SecurityHeaders)

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the result schemas and the bearer security scheme."""
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = doc.setdefault("components", {})
            components.setdefault("schemas", {}).update(SCHEMAS)
            components["securitySchemes"] = {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a session token from POST /v1/users/login (docs/service.md)",
                }
            }
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented customisation
    return app
