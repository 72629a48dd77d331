"""The console's web plumbing: the session cookie, CSRF tokens, security headers, forms, and the
one page wrapper every route goes through (:class:`Console.page`).

Security model (docs/console.md, "Security model"; tests/console/test_headers.py):

* The session is an ordinary vault session (``users.login`` with ``origin=web:<address>``): the
  same password + TOTP / recovery code, lockout, idle and absolute expiry as the CLI's, ended by
  ``users.logout`` / ``users.logout_all``. Its token travels only in the cookie
  ``__Host-cvault_session`` (Secure, HttpOnly, SameSite=Strict, Path=/, no Domain).
* CSRF: every state-changing request (every POST) carries a token that is an HMAC of the session
  token (before sign-in: of a random pre-session cookie). It changes with every session, so a
  token from an ended session is refused; an ``Origin`` header that is not this server's is
  refused too. A page of another site can neither read the token nor send the cookie
  (SameSite=Strict).
* Every response carries a strict Content-Security-Policy (``default-src 'self'``, no inline
  script or style, ``frame-ancestors 'none'``), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: same-origin`` (no referrer to other sites; the same site keeps the
  ``Origin`` header the CSRF check reads), and every page ``Cache-Control: no-store``.
* No secret in any URL: secret values are only ever in the body of a POST answer (reveal); forms
  that carry passwords and codes are POSTs.
"""

from __future__ import annotations

import logging
import secrets as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from vault import crypto
from vault.errors import AccessDenied, AuthenticationFailed

log = logging.getLogger("cvault.console")

SESSION_COOKIE = "__Host-cvault_session"
PRE_COOKIE = "__Host-cvault_pre"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"


def csrf_token(secret: str, purpose: str = "session") -> str:
    """The CSRF token bound to a session token (or a pre-session cookie): an HMAC, so the form
    never carries the token itself and a page that sees the form learns nothing to sign in with."""
    return crypto.hmac_sha256(secret.encode(), f"cvault-console-csrf-v1:{purpose}".encode()).hex()


class SecurityHeaders:
    """Pure ASGI middleware: the security headers on every response (console and API), and
    ``Cache-Control: no-store`` on everything but the static assets."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": secure_headers(message.get("headers", []), static, https)}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def secure_headers(headers, static: bool, https: bool) -> list:
    """A response's headers with the security headers of :class:`SecurityHeaders` (its one
    definition: the service's fast dispatch, outside this middleware, adds them with it too)."""
    kept = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
    return kept + list(_TAILS[static, https])


_TAILS = {
    (static, https): (
        *SECURITY_HEADERS,
        (b"cache-control", b"no-cache" if static else b"no-store"),
        *((HSTS,) if https else ()),
    )
    for static in (False, True)
    for https in (False, True)
}


@dataclass
class Page:
    """What a page handler gets: the lent vault, the principal (None before sign-in), the
    parsed form (POST) and query, and the CSRF token to put in the forms it renders."""

    vault: Any
    principal: Any
    form: dict[str, str]
    query: dict[str, str]
    csrf: str
    origin: str
    path: str
    #: cookies to set or clear on the answer: name -> value (None: clear)
    cookies: dict[str, str | None] = field(default_factory=dict)
    #: what the layout shows in the header: the signed-in user's name and roles
    user: dict | None = None
    #: set by the sign-in and enrollment handlers when the attempt itself failed (a wrong
    #: password or code, a locked account): only then does it spend a rate-limit token
    attempt_failed: bool = False

    def has(self, role: str) -> bool:
        return self.principal is not None and role in self.principal.roles

    def arg(self, name: str, default: str = "", *, limit: int = 200) -> str:
        return (self.query.get(name) or default)[:limit]


class FormError(AccessDenied):
    """refused: the form is stale or not from this console; reload the page and try again."""

    code = "form_refused"


def parse_form(body: bytes, content_type: str) -> dict[str, str]:
    if body and not content_type.startswith("application/x-www-form-urlencoded"):
        raise FormError("the console accepts form posts only (application/x-www-form-urlencoded)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("the form is not valid UTF-8") from None
    form: dict[str, str] = {}
    for k, v in parse_qsl(text, keep_blank_values=True, max_num_fields=200):
        if k in form:  # repeated fields (role checkboxes) are joined with newlines
            form[k] = form[k] + "\n" + v
        else:
            form[k] = v
    return form


def cookie_header(name: str, value: str | None, max_age: int) -> str:
    """A ``__Host-`` cookie: Secure, HttpOnly, SameSite=Strict, Path=/, no Domain."""
    if value is None:
        return f"{name}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict"
    return f"{name}={value}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Strict"


def new_pre_session() -> str:
    return _random.token_urlsafe(32)


def same_origin(headers, host: str) -> bool:
    """An ``Origin`` (or, without it, a ``Referer``) naming another site is refused; browsers
    send one of them with every form post."""
    origin = headers.get("origin")
    if origin is None:
        referer = headers.get("referer")
        if referer is None:
            return True
        origin = "/".join(referer.split("/", 3)[:3])
    if origin == "null":
        return False
    return origin.split("://", 1)[-1] == host


def login_redirect(path: str) -> str:
    return "/login" if path in ("/", "/login") else f"/login?next={quote(path, safe='/')}"


def safe_next(value: str) -> str:
    """Only a local path: never ``//host`` or a scheme (an open redirect)."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value or ":" in value.split("?")[0]:
        return "/"
    return value


Handler = Callable[[Page], Any]


def is_auth_failure(exc: Exception) -> bool:
    return isinstance(exc, AuthenticationFailed)
