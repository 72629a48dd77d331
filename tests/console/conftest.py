"""The web console's test world: one real ``cvault serve`` (HTTPS on loopback, test CA) per
module, and one real browser (Debian's chromium driven by playwright) per session.

People sign in with a real TOTP code: each is enrolled through the identity service (an admin's
``users.add``, then ``users.enroll`` with the code), and the code is computed by pyotp from the
seed in the otpauth URI the enrollment returned, as an authenticator app would.

Without chromium the browser tests skip with one line (the README says how to install it);
``.ci/run`` installs it, so in CI a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from tests.factories import Person, assign, edit_rows, onboard, person, unused_code
from tests.helpers import assign_operator, make_vault, operator
from tests.server.harness import Service, start_service
from vault.identity.totp import secret_from_uri

CHROMIUM = os.environ.get("CVAULT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "chromium not found at /usr/bin/chromium: install it with 'apt-get install -y chromium'"
PASSWORDS = {
    "ada": "ada's long password 1",
    "maria": "maria's long password 2",
    "eve": "eve's long password 3",
    "rita": "rita's long password 4",
    "sam": "sam's long password 5",
    "tom": "tom's long password 6",
    "uma": "uma's long password 7",
}


@dataclass
class Member:
    """A person of the console world: name, password, the TOTP seed from the enrollment and
    the recovery codes it returned."""

    name: str
    password: str
    seed: str
    recovery_codes: list[str]
    _used_steps: set[int] = field(default_factory=set)

    def code(self) -> str:
        """A valid TOTP code the vault has not seen (tests.factories.unused_code)."""
        return unused_code(self.seed, self._used_steps)

    def wrong_code(self) -> str:
        """A six-digit code that is valid in no step of the drift window."""
        import pyotp

        totp = pyotp.TOTP(self.seed)
        now = time.time()
        valid = {totp.at(now + offset) for offset in (-60, -30, 0, 30, 60)}
        return next(
            c
            for c in ("000000", "111111", "222222", "333333", "444444", "555555", "666666")
            if c not in valid
        )


@dataclass
class World:
    service: Service
    vdir: object
    members: dict[str, Member]
    folder: Path

    @property
    def url(self) -> str:
        return self.service.addr

    def open(self):
        """The vault, for checks a test makes next to the service (WAL: safe while it runs)."""
        return self.vdir.open()

    @contextmanager
    def vault(self) -> Iterator:
        """:meth:`open`, closed afterwards."""
        v = self.open()
        try:
            yield v
        finally:
            v.close()

    def events(self, limit: int = 200) -> list[dict]:
        """The newest audit events, newest first, read straight from the vault's database."""
        import sqlite3

        conn = sqlite3.connect(f"file:{self.vdir.home / 'vault.db'}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT seq, actor, action, client, outcome, reason, origin FROM audit_events"
                " ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        finally:
            conn.close()
        keys = ("seq", "actor", "action", "client", "outcome", "reason", "origin")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def event(self, **match) -> dict | None:
        """The newest event whose fields equal ``match`` (a value ending in ``*``: a prefix)."""
        for e in self.events():
            if all(
                (str(e[k] or "").startswith(v[:-1]) if isinstance(v, str) and v.endswith("*") else e[k] == v)
                for k, v in match.items()
            ):
                return e
        return None

    def token(self, user: str) -> str:
        """A real session token of a new live session (for tests about something other than
        signing in: a person can sign in with TOTP only once per 30-second step)."""
        from tests.factories import insert_session
        from vault.identity.sessions import new_token

        with self.vault() as v:
            token = new_token()
            user_id = v.ctx.db.scalar("SELECT id FROM users WHERE name = ?", (user,))
            insert_session(v, user_id, token, int(time.time()))
            return token

    def as_user(self, context, user: str) -> None:
        """Put a live session of ``user`` in a browser context's cookie jar."""
        context.add_cookies(
            [
                {
                    "name": "__Host-cvault_session",
                    "value": self.token(user),
                    "url": self.url,
                    "secure": True,
                    "httpOnly": True,
                    "sameSite": "Strict",
                }
            ]
        )

    def page_as(self, context, user: str):
        """A new page of ``context`` signed in as ``user`` (:meth:`as_user`)."""
        self.as_user(context, user)
        return context.new_page()

    @contextmanager
    def other_browser(self, browser, user: str | None = None) -> Iterator:
        """A page in a browser profile of its own (a second person next to the test's
        ``context``), signed in as ``user`` if given; the profile is closed afterwards."""
        ctx = browser.new_context(base_url=self.url, ignore_https_errors=True)
        ctx.set_default_timeout(10_000)
        try:
            yield self.page_as(ctx, user) if user else ctx.new_page()
        finally:
            ctx.close()

    def set_stepup_age(self, user: str, seconds: int) -> None:
        """Age the step-up of the user's live sessions (as if the last code was that long ago)."""
        with self.vault() as v:
            edit_rows(
                v,
                "sessions",
                "stepup_at = ?",
                (int(time.time()) - seconds,),
                "ended_at IS NULL AND user_id = (SELECT id FROM users WHERE name = ?)",
                (user,),
            )


def enroll_people(v, requester, approver, specs: dict[str, tuple[str, ...]]) -> dict[str, Member]:
    """Each account the way the product makes one: requested by one admin, approved (with the
    enrollment code) by another, then enrolled by the person."""
    members = {}
    for name, roles in specs.items():
        approved = onboard(v, name, roles, requester=requester, approver=approver)
        done = v.users.enroll(name, approved["enrollment_code"], PASSWORDS[name])
        members[name] = Member(
            name, PASSWORDS[name], secret_from_uri(done["otpauth_uri"]), done["recovery_codes"]
        )
    return members


#: the world's clients: SLA end in days, and which test may change it (each mutating test has its
#: own, so the tests need no order and can share one world per session, or run in parallel)
CLIENTS = {
    "acme": 20,  # eve's records; read-only
    "globex": 60,  # renewed by the account manager's journey
    "initech": 100,  # shredded early by two people
    "umbrella": 150,  # eve's too; expired by the account manager (then refused to eve)
    "hooli": 300,  # read-only: the sort's first row, never in the upcoming windows
    "stark": 10,  # shredded while the world is built: its certificate page is always there
}


def build_world(folder: Path, *, clients: int = len(CLIENTS)) -> World:
    """A vault with the operator (all roles, for setting up), hal and ian (admins made by the
    factory, who onboard the others), and, enrolled for real: ada (admin), maria (account
    manager), eve (engineer on acme and umbrella, and on globex through team desk), rita
    (security reviewer), sam (account manager, the second person of two-person rules), tom
    (engineer, whom the admin journey manages), uma (engineer, whom the team journey moves); the
    clients of :data:`CLIENTS` (the first ``clients`` of them)."""
    vdir = make_vault(folder)
    v = vdir.open()
    try:
        op = operator()
        # hal and ian: admins written by the factory, the requester and approver of the accounts
        hal, ian = person(v, "hal", "admin"), person(v, "ian", "admin")
        members = enroll_people(
            v,
            hal,
            ian,
            {
                "ada": ("admin",),
                "maria": ("account_manager",),
                "eve": ("engineer",),
                "rita": ("security_reviewer",),
                "sam": ("account_manager",),
                "tom": ("engineer",),
                "uma": ("engineer",),
            },
        )
        v.users.train(op, "eve", "+365d")  # the operator is outside eve's lineage
        now = v.ctx.now()
        for name, days in list(CLIENTS.items())[:clients]:
            v.clients.add(op, name, sla_end=now + timedelta(days=days), grace_days=30)
        eve_id = v.ctx.db.scalar("SELECT id FROM users WHERE name = 'eve'")
        eve = Person("eve", eve_id, frozenset({"engineer"}))
        assign(v, eve, "acme")
        assign_operator(v, "acme")
        if clients > 1:  # team desk (eve) reaches globex: the console shows team paths
            v.teams.add(op, "desk", description="service desk")
            v.teams.member_add(op, "desk", "eve")
            v.teams.assign(op, "globex", "desk")
        v.secrets.put(
            op,
            "acme",
            "office/firewall",
            "access",
            {"url": "https://fw.acme.test", "username": "admin", "password": "Fw-s3cret!"},
        )
        v.secrets.put(
            op, "acme", "office/wifi", "network", {"wifi_ssid": "acme-office", "wifi_key": "wifi-key-9"}
        )
        if "umbrella" in list(CLIENTS)[:clients]:
            assign(v, eve, "umbrella")
            assign_operator(v, "umbrella")
            v.secrets.put(
                op, "umbrella", "dc/ldap", "access", {"username": "svc-ldap", "password": "Ldap-s3cret!"}
            )
        if "stark" in list(CLIENTS)[:clients]:
            from vault.principal import Principal

            v.sla.request_shred(op, "stark", reason="left, asked for erasure")
            v.sla.approve_shred(hal.principal(v), "stark")
            v.sla.sweep(Principal.system("test-sweep"))
        # from here on the vault's default session and step-up lifetimes (the operator's set-up
        # session is then expired: the console's people sign in for themselves)
        from vault.store import rowmac

        with v.ctx.db.write() as conn:  # the settings row is MACed: written the product's way
            settings = json.loads(rowmac.meta_value(conn, "settings"))
            for key in ("session_absolute_seconds", "session_idle_seconds", "stepup_window_seconds"):
                settings.pop(key, None)
            rowmac.put_meta(conn, "settings", json.dumps(settings, sort_keys=True))
    finally:
        v.close()
    service = start_service(vdir, folder / "service")
    return World(service, vdir, members, folder)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """One world per test session (per xdist worker): the browser tests share it."""
    w = build_world(tmp_path_factory.mktemp("console"))
    yield w
    w.service.stop()


@pytest.fixture(scope="session")
def browser():
    # .ci/run sets CVAULT_REQUIRE_BROWSER: there a missing browser fails instead of skipping
    missing = pytest.fail if os.environ.get("CVAULT_REQUIRE_BROWSER") else pytest.skip
    if not Path(CHROMIUM).exists():
        missing(INSTALL_HINT)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as p:
        # launch() gives every run a fresh, temporary user-data-dir (deleted on close)
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def context(browser, world):
    """A fresh browser profile (no cookies) that trusts nothing but sees the test CA's server."""
    ctx = browser.new_context(
        base_url=world.url, ignore_https_errors=True, viewport={"width": 1280, "height": 800}
    )
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    return context.new_page()


def sign_in(page, member: Member, *, code: str | None = None, recovery: str | None = None):
    page.goto("/login")
    page.get_by_label("Name").fill(member.name)
    page.get_by_label("Password").fill(member.password)
    if recovery is not None:
        page.get_by_text("Use a recovery code instead").click()
        page.get_by_label("Recovery code").fill(recovery)
    else:
        page.get_by_label("Code from your authenticator app").fill(code or member.code())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
