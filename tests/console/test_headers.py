"""The console's web security, header by header, over real HTTPS to a real ``cvault serve``
(no browser needed): CSP, cookies, CSRF, origin check, caching, body limit, login rate limit."""

from __future__ import annotations

import http.client
import re
import ssl
from urllib.parse import urlencode

import pytest

from tests.console.conftest import build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = build_world(tmp_path_factory.mktemp("headers"), clients=1)
    yield w
    w.service.stop()


class Browserish:
    """A keep-alive HTTPS client with a cookie jar (what a browser does, minus the browser)."""

    def __init__(self, world):
        self.port = world.service.port
        self.ctx = ssl.create_default_context(cafile=str(world.service.ca.ca_path))
        self.cookies: dict[str, str] = {}
        self.host = f"127.0.0.1:{self.port}"

    def request(self, method, path, form=None, headers=None, raw=None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        h = {"Host": self.host}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = raw
        if form is not None:
            body = urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
            h["Origin"] = f"https://{self.host}"
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        for value in resp.headers.get_all("set-cookie") or []:
            name, _, rest = value.partition("=")
            val = rest.split(";", 1)[0]
            if "Max-Age=0" in value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = val
        conn.close()
        return resp, data.decode("utf-8", "replace")

    def csrf(self, html: str) -> str:
        return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)

    def sign_in(self, world, name):
        """A live session of ``name`` in the cookie jar (signing in itself is tested below)."""
        self.cookies["__Host-cvault_session"] = world.token(name)


def test_every_page_has_the_strict_csp_and_security_headers(world):
    b = Browserish(world)
    for path in ("/login", "/enroll", "/static/console.css", "/v1/health"):
        resp, _ = b.request("GET", path)
        assert resp.status == 200, path
        csp = resp.getheader("content-security-policy")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert resp.getheader("x-content-type-options") == "nosniff"
        assert resp.getheader("x-frame-options") == "DENY"
        assert resp.getheader("referrer-policy") == "same-origin"
        assert resp.getheader("strict-transport-security", "").startswith("max-age=")
        expected = "no-cache" if path.startswith("/static/") else "no-store"
        assert resp.getheader("cache-control") == expected, path


def test_templates_have_no_inline_script_or_style():
    from vault.server.console.web import TEMPLATES

    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert "style=" not in text and "<style" not in text, template.name
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"\son[a-z]+=", text), template.name  # no inline event handlers


def test_the_session_cookie_is_host_prefixed_secure_httponly_strict(world):
    b = Browserish(world)
    _, html = b.request("GET", "/login")
    maria = world.members["maria"]
    resp, _ = b.request(
        "POST",
        "/login",
        {"csrf": b.csrf(html), "name": "maria", "password": maria.password, "code": maria.code()},
    )
    assert resp.status == 303
    cookie = next(c for c in resp.headers.get_all("set-cookie") if c.startswith("__Host-cvault_session="))
    parts = [p.strip() for p in cookie.split(";")]
    assert "Secure" in parts and "HttpOnly" in parts and "SameSite=Strict" in parts and "Path=/" in parts
    assert not any(p.lower().startswith("domain") for p in parts)
    max_age = int(next(p for p in parts if p.startswith("Max-Age=")).split("=")[1])
    assert 0 < max_age <= 8 * 3600  # the absolute session lifetime; the server enforces idle
    token = b.cookies["__Host-cvault_session"]
    assert token.startswith("cvs1_")
    # the token is in no page and no URL
    resp, html = b.request("GET", "/clients")
    assert resp.status == 200 and token not in html
    assert resp.getheader("location") is None


def test_a_post_without_or_with_a_stale_csrf_token_is_refused(world):
    b = Browserish(world)
    b.sign_in(world, "maria")
    _, html = b.request("GET", "/client?name=acme")
    good = b.csrf(html)
    resp, body = b.request("POST", "/client/expire?name=acme", {"reason": "no token"})
    assert resp.status == 403 and "stale" in body
    # a token of an ended session: sign out, sign in again, replay the old token
    resp, _ = b.request("POST", "/logout", {"csrf": good})
    assert resp.status == 303
    b.sign_in(world, "sam")
    resp, body = b.request("POST", "/client/expire?name=acme", {"csrf": good, "reason": "stale token"})
    assert resp.status == 403 and "stale" in body
    assert world.event(action="sla.expire", client="acme") is None  # nothing happened


def test_a_post_from_another_origin_is_refused(world):
    b = Browserish(world)
    b.sign_in(world, "sam")
    _, html = b.request("GET", "/client?name=acme")
    resp, body = b.request(
        "POST",
        "/client/expire?name=acme",
        {"csrf": b.csrf(html), "reason": "cross-site"},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status == 403 and "another site" in body


def test_pages_need_a_session_and_a_json_post_is_refused(world):
    b = Browserish(world)
    resp, _ = b.request("GET", "/clients")
    assert resp.status == 303 and resp.getheader("location").startswith("/login")
    b.sign_in(world, "sam")
    _, html = b.request("GET", "/clients")
    resp, _ = b.request(
        "POST",
        "/client/expire?name=acme",
        raw=b'{"reason": "x"}',
        headers={
            "Content-Type": "application/json",
            "X-CSRF-Token": b.csrf(html),
            "Origin": f"https://{b.host}",
        },
    )
    assert resp.status == 403


def test_the_2_mib_limit_holds_for_the_console(world):
    """A form post over 2 MiB, sent in full as a browser sends it, is answered 413 (the API's
    limit, the same middleware: docs/service.md, bodies over the limit are read, then refused)
    and the sign-in it carried never happens."""
    b = Browserish(world)
    _, html = b.request("GET", "/login")
    form = {"csrf": b.csrf(html), "name": "rita", "password": "x" * (2 * 1024 * 1024), "code": "123456"}
    resp, _ = b.request("POST", "/login", form)
    assert resp.status == 413
    assert world.event(actor="rita", action="auth.login") is None  # nobody else signs rita in here


def test_sign_in_is_rate_limited_per_user_name(world):
    b = Browserish(world)
    statuses = []
    for _ in range(7):
        _, html = b.request("GET", "/login")
        resp, _ = b.request(
            "POST", "/login", {"csrf": b.csrf(html), "name": "nobody-here", "password": "x", "code": "123456"}
        )
        statuses.append(resp.status)
    assert statuses[0] == 401
    assert 429 in statuses and resp.getheader("retry-after")


def test_a_strangers_junk_posts_never_lock_a_sign_in(world):
    """Independent review F3: every POST to /login spent the name's and the address's tokens
    before the CSRF check, so five junk posts (no token, no password) locked the user out of the
    console and the API alike. Only a failed sign-in that passed the CSRF check spends one now."""
    stranger = Browserish(world)
    for _ in range(12):
        resp, _ = stranger.request("POST", "/login", {"name": "victim-name"})
        assert resp.status == 403  # refused as a stale form, nothing spent
    b = Browserish(world)
    _, html = b.request("GET", "/login")
    resp, _ = b.request(
        "POST", "/login", {"csrf": b.csrf(html), "name": "victim-name", "password": "x", "code": "123456"}
    )
    assert resp.status == 401  # a real attempt is evaluated, not throttled


def test_static_assets_cannot_escape_their_folder(world):
    b = Browserish(world)
    for path in ("/static/..%2Fapp.py", "/static/../web.py", "/static/nope.css"):
        resp, _ = b.request("GET", path)
        assert resp.status == 404, path
