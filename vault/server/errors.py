"""The API's one error shape: ``{"error": {"code", "message", "exit_code"}}`` with the HTTP
status of :func:`vault.api_spec.status_for` (docs/service.md has the table).

An unexpected exception is a 500 ``internal_error`` with a generic message; its type and place
are logged, never its message (it may quote input)."""

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from vault import api_spec as spec
from vault.errors import VaultError
from vault.server.limits import BodyTooLarge

log = logging.getLogger("cvault.server")

ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 422, 423, 429, 500, 502, 503)


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code (docs/service.md)")
    message: str = Field(description="One human line; never contains secrets")
    exit_code: int = Field(description="The CLI exit code this error maps to")


class ErrorBody(BaseModel):
    error: ErrorDetail


#: the ``responses`` of every route: each error status documented with the one shape
ERROR_RESPONSES: dict = {
    status: {"model": ErrorBody, "description": "error (docs/service.md)"} for status in ERROR_STATUSES
}


class RateLimited(Exception):
    def __init__(self, retry_after: float):
        self.retry_after = retry_after


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


def validation_message(exc: RequestValidationError) -> str:
    """First problem, by location and kind; never the offending value (it may be a secret)."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    err = errors[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid request: {where}: {msg}{more}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VaultError)
    async def vault_error(request: Request, exc: VaultError):
        return error_response(exc.code, exc.message, exc.exit_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return api_error("invalid_request", validation_message(exc))

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
        from vault.store.db import storage_error, unexpected_constraint

        translated = storage_error(exc) or unexpected_constraint(exc)
        if translated is not None:  # a full or read-only disk, a damaged database, a planted
            # constraint (vault.store.db)
            return error_response(translated.code, translated.message, translated.exit_code)
        # the type and the place only: an exception message may quote input
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
        log.error("internal error %s at %s on %s", type(exc).__name__, where, request.url.path)
        return api_error("internal_error", "internal error (the service log has the details)")
