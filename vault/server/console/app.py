"""The console's routes: :func:`install` adds them to the API's FastAPI application.

Every route is a :meth:`Console.page`: it checks the origin and CSRF token of a POST, resumes the
session from the cookie, lends a vault from the pool and runs the page's handler in a worker
thread (the facade blocks); a facade error becomes the error page with the API's status for it
(a refusal is 403 and names the rule that refused, as the CLI's one line does). The pages
themselves are in :mod:`vault.server.console.pages`.

This module deliberately has no ``from __future__ import annotations`` (FastAPI reads the
endpoint annotations at runtime).
"""

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from vault import api_spec as spec
from vault import crypto
from vault.errors import AuthenticationFailed, VaultError
from vault.server.console import web
from vault.server.errors import RateLimited

log = logging.getLogger("cvault.console")

STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


class TooMany(VaultError):
    """too many attempts: wait and try again."""

    code = "rate_limited"
    exit_code = 8


class Redirect(Exception):
    def __init__(self, location: str):
        self.location = location


class Console:
    def __init__(self, app: FastAPI, pool, limits, settings):
        import jinja2  # the server's only template engine; never imported by the library or the CLI

        self.app = app
        self.pool = pool
        self.limits = limits
        self.settings = settings
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(web.TEMPLATES)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["day"] = lambda v: (v or "")[:10]
        self.env.filters["minute"] = lambda v: (v or "").replace("T", " ")[:16]
        self.env.globals["role_label"] = ROLE_LABELS.get
        self.templates: dict[str, Any] = {}
        #: every page's handler by (method, path): the routes' table (tests read it)
        self.handlers: dict[tuple[str, str], Callable[[web.Page], Any]] = {}

    # --- rendering -------------------------------------------------------------------------------

    def render(self, page: "web.Page | None", template: str, code: int = 200, **values) -> Response:
        tpl = self.templates.get(template)
        if tpl is None:
            tpl = self.templates[template] = self.env.get_template(template)
        body = tpl.render(
            page=page,
            user=page.user if page else None,
            csrf=page.csrf if page else "",
            nav=nav_for(page.principal if page else None),
            path=page.path if page else "",
            **values,
        )
        return Response(body.encode(), status_code=code, media_type="text/html; charset=utf-8")

    def error_page(self, page: "web.Page | None", exc: VaultError) -> Response:
        status = spec.status_for(exc.code, exc.exit_code)
        return self.render(page, "error.html", status, error=exc, status=status)

    # --- the one page wrapper ----------------------------------------------------------------------

    def page(
        self,
        path: str,
        handler: Callable[["web.Page"], Any],
        *,
        methods: tuple[str, ...] = ("GET",),
        signed_in: bool = True,
        rate_limit: str | None = None,
        json_errors: bool = False,
    ) -> None:
        """Add a route. ``handler(page)`` returns a Response (or raises :class:`Redirect`)."""
        for method in methods:
            self.handlers[(method, path)] = handler

        async def endpoint(request: Request) -> Response:
            post = request.method == "POST"
            form: dict[str, str] | VaultError = {}
            if post:
                try:
                    form = web.parse_form(await request.body(), request.headers.get("content-type", ""))
                except VaultError as exc:
                    form = exc
            if rate_limit == "login" and isinstance(form, dict):
                # review4 R4-5: the name is normalised once, here, so the throttle below, the
                # reservation in _run and the page's sign-in all see the one account name (a
                # name posted with spaces around it is not a fresh bucket and in-flight slot)
                form["name"] = str(form.get("name", "")).strip()
                # as the API (routes.Limits.reserve): a source or name with no token left
                # waits; only a *failed* sign-in spends one (in _run), so a stranger's junk posts
                # (no CSRF token, no password) never lock anyone out (independent review F3)
                try:
                    wait = max(
                        self.limits.by_address.wait(self.limits.source(request)),
                        self.limits.by_user.wait(form.get("name", "")[:200]),
                    )
                    if wait:
                        raise RateLimited(wait)
                except RateLimited as exc:
                    return self.too_many(exc)
            return await run_in_threadpool(
                self._run, request, handler, form, post, signed_in, json_errors, rate_limit == "login"
            )

        endpoint.__name__ = "console_" + (
            path.strip("/").replace("/", "_").replace("{", "").replace("}", "") or "home"
        )
        self.app.add_api_route(path, endpoint, methods=list(methods), include_in_schema=False)

    def too_many(self, exc: RateLimited) -> Response:
        seconds = max(1, int(exc.retry_after + 0.999))
        response = self.render(
            None, "error.html", 429, status=429, error=TooMany(f"too many attempts: retry in {seconds} s")
        )
        response.headers["retry-after"] = str(seconds)
        return response

    def _run(
        self,
        request: Request,
        handler,
        form,
        post: bool,
        signed_in: bool,
        json_errors: bool,
        throttled: bool = False,
    ) -> Response:
        origin = f"web:{request.client.host}" if request.client else "web"
        cookies: dict[str, str | None] = {}
        token = request.cookies.get(web.SESSION_COOKIE)
        pre = request.cookies.get(web.PRE_COOKIE)
        page: web.Page | None = None
        try:
            if isinstance(form, VaultError):
                raise form
            if post and not web.same_origin(request.headers, request.headers.get("host", "")):
                raise web.FormError("refused: the form was posted from another site")
            with self.pool.lease() as vault:
                principal = None
                csrf = ""
                if token:
                    try:
                        principal = vault.users.resume(token, origin=origin)
                        csrf = web.csrf_token(token)
                    except AuthenticationFailed:
                        cookies[web.SESSION_COOKIE] = None
                        principal = None
                if principal is None:
                    if signed_in:
                        raise Redirect(web.login_redirect(request.url.path))
                    if not pre:
                        pre = web.new_pre_session()
                        cookies[web.PRE_COOKIE] = pre
                    csrf = web.csrf_token(pre, "pre")
                page = web.Page(
                    vault=vault,
                    principal=principal,
                    form=form,
                    query={k: v for k, v in request.query_params.items()},
                    csrf=csrf,
                    origin=origin,
                    path=request.url.path,
                    cookies=cookies,
                    user={"name": principal.name, "roles": sorted(principal.roles)} if principal else None,
                )
                if post:
                    given = form.get(web.CSRF_FIELD) or request.headers.get(web.CSRF_HEADER, "")
                    if not given or not crypto.constant_time_equal(given, csrf):
                        raise web.FormError()
                if throttled and isinstance(form, dict):
                    # review R4: tokens reserved before the password is checked, one sign-in
                    # per account at a time (as the API: routes.Limits.reserve); after the CSRF
                    # check, so junk posts spend nothing (independent review F3)
                    name = form.get("name", "")[:200]  # stripped in endpoint (R4-5)
                    try:
                        with self.limits.reserve(self.limits.source(request), name) as failed:
                            try:
                                response = handler(page)
                            finally:
                                failed[0] = page.attempt_failed
                    except RateLimited as exc:
                        return self.too_many(exc)
                else:
                    response = handler(page)
        except Redirect as r:
            response = RedirectResponse(r.location, status_code=303)
        except VaultError as exc:
            if json_errors:
                status = spec.status_for(exc.code, exc.exit_code)
                response = Response(
                    json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode(),
                    status_code=status,
                    media_type="application/json",
                )
            elif web.is_auth_failure(exc) and page is not None and page.principal is not None:
                # the session ended while the page was served (signed out elsewhere): sign in again
                cookies[web.SESSION_COOKIE] = None
                response = RedirectResponse("/login", status_code=303)
            else:
                response = self.error_page(page, exc)
        absolute = int(self.pool_setting("session_absolute_seconds"))
        for name, value in cookies.items():
            response.headers.append(
                "set-cookie", web.cookie_header(name, value, absolute if name == web.SESSION_COOKIE else 3600)
            )
        return response

    def pool_setting(self, name: str) -> Any:
        if not hasattr(self, "_settings_cache"):
            with self.pool.lease(unsealed=False) as vault:
                self._settings_cache = dict(vault.ctx.settings)
        return self._settings_cache[name]


ROLE_LABELS = {
    "admin": "Admin",
    "account_manager": "Account manager",
    "engineer": "Engineer",
    "security_reviewer": "Security reviewer",
}

#: the navigation by role: (path, label); what a role sees is what its facade calls allow
NAV: tuple[tuple[str, str, str], ...] = (
    ("account_manager", "/clients", "Clients"),
    ("account_manager", "/approvals", "Approvals"),
    ("account_manager", "/upcoming", "Upcoming"),
    ("engineer", "/records", "Records"),
    ("security_reviewer", "/audit", "Audit log"),
    ("security_reviewer", "/report", "Report"),
    ("security_reviewer", "/verify", "Verification"),
    ("security_reviewer", "/access", "Who can reach what"),
    ("admin", "/users", "Users"),
    ("admin", "/approvals", "Approvals"),
)


def nav_for(principal) -> list[tuple[str, str]]:
    if principal is None:
        return []
    seen: dict[str, str] = {}
    for role, path, label in NAV:
        if role in principal.roles and path not in seen:
            seen[path] = label
    return list(seen.items())


def install(app: FastAPI, pool, limits, settings) -> Console:
    """The console's routes and static assets on ``app``."""
    from vault.server.console import pages

    console = Console(app, pool, limits, settings)

    def static(request: Request, name: str) -> Response:
        path = (web.STATIC / name).resolve()
        if path.parent != web.STATIC or not path.is_file() or path.suffix not in STATIC_TYPES:
            return Response(b"not found", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type=STATIC_TYPES[path.suffix])

    app.add_api_route("/static/{name}", static, methods=["GET"], include_in_schema=False)
    pages.register(console)
    return console
