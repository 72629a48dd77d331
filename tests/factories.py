"""The one people factory of the tests: staff written straight into the identity tables
(0002_identity.sql), so that tests need no enrollment round trip and can move an injected clock by
days.

* :func:`person` creates a user with roles and training; with ``real_password=True`` the password
  is a real Argon2id hash of ``TEST_PASSWORD`` (computed once per process) for tests that log in.
  Every person has a known, sealed TOTP secret (``Person.code()`` computes a valid code).
* :meth:`Person.principal` opens a fresh live session with a fresh step-up at the vault's current
  (injected) time, as a login would; :meth:`Person.token` returns a real bearer token of a session
  created at the wall-clock time a CLI subprocess or the service sees; :meth:`Person.session_file`
  writes that token where ``CVAULT_SESSION_FILE`` points. :func:`insert_session` is the one
  ``INSERT INTO sessions`` of the tests.
* :func:`onboard` adds an account the way the product does (issue 11: a request by one admin, the
  approval, with the code, by another) and returns the approver's answer (its enrollment code).
* The casts (:func:`audit_cast`, :func:`sla_staff`) are the people the audit and SLA tests share.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from vault.clock import UTC, SystemClock, to_epoch
from vault.identity.sessions import new_token
from vault.principal import Principal

TEST_PASSWORD = "correct-horse-battery-staple"
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
_DEFAULT = object()
_PHC: dict[str, str] = {}
#: the password hash of a person made without ``real_password``: the form cvault writes, with the
#: cheapest costs its bounds allow (``crypto.password_phc_ok``), a hash no password derives to
NO_PASSWORD_PHC = "$argon2id$v=19$m=65536,t=1,p=4$" + "A" * 22 + "$" + "A" * 43


def password_phc(password: str = TEST_PASSWORD) -> str:
    """Argon2id PHC of a test password, computed once per process (~70 ms each)."""
    if password not in _PHC:
        from vault.crypto import password_hash

        _PHC[password] = password_hash(password)
    return _PHC[password]


def totp_secret_for(name: str) -> str:
    """A known, per-user base32 TOTP secret (tests only)."""
    from vault.identity.totp import base32_secret

    return base32_secret(f"cvault-test-totp-{name}".encode().ljust(20, b"*")[:20])


def totp_code(secret: str, when: datetime | None = None) -> str:
    """The valid code of ``secret`` at ``when`` (default: the wall clock, for CLI subprocesses)."""
    import time

    from vault.identity.totp import code_at

    return code_at(secret, when if when is not None else time.time())


def unused_code(secret: str, used_steps: set[int]) -> str:
    """A valid code (wall clock) of a time step the vault has not seen from this person: it
    refuses a step at or before the last one used, so a person who signs in twice within 30 s
    types the next step's code (inside the one-step drift window). ``used_steps`` remembers."""
    import time

    from vault.identity.totp import code_at

    now = time.time()
    for offset in (0, 30):
        step = int((now + offset) // 30)
        if step > max(used_steps, default=0):
            used_steps.add(step)
            return code_at(secret, now + offset)
    raise AssertionError("two codes within 30 s: use another person or a recovery code")


def insert_session(vault, user_id: int, token: str, at: int, *, stepup: bool = True) -> str:
    """A session row of the tests, written the product's way (vault.identity.sessions.insert_session:
    token MAC and row MAC); returns the stored token hash."""
    from vault.identity.sessions import insert_session as insert

    with vault.ctx.db.write() as conn:
        return insert(
            conn, vault.ctx.keyring, token, user_id, at, stepup_at=at if stepup else None, origin="cli"
        )


def edit_rows(vault, table: str, sets: str, set_params: tuple, where: str, where_params: tuple = ()) -> int:
    """Change rows a decision reads the product's way (their MACs checked, then made again):
    tests that set up a state (a lapsed training, an old step-up) without a file writer's edit."""
    from vault.store import rowmac

    with vault.ctx.db.write() as conn:
        return rowmac.update(conn, table, sets, set_params, where, where_params)


def write_session_file(path: Path, vault_id: str, user: str, token: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(
            {"vault_id": vault_id, "user": user, "token": token, "expires_at": "2100-01-01T00:00:00Z"}, fh
        )
    return Path(path)


@dataclass
class Person:
    """A staff member of a test vault (one class for every test: library, CLI, service)."""

    name: str
    user_id: int
    roles: frozenset[str]
    password: str = TEST_PASSWORD
    totp_secret: str = ""
    #: the vault the person was written into (None for a template shared by vault copies)
    vault: Any = field(default=None, repr=False, compare=False)

    def _vault(self, vault):
        chosen = vault if vault is not None else self.vault
        if chosen is None:
            raise ValueError(f"{self.name}: give the vault")
        return chosen

    def code(self, when: datetime | None = None) -> str:
        return totp_code(self.totp_secret, when)

    def principal(self, vault=None, *, at: datetime | None = None, stepup: bool = True) -> Principal:
        """A principal with a new live session at ``at`` (default the vault's injected now) and,
        unless ``stepup=False``, a fresh TOTP step-up."""
        vault = self._vault(vault)
        now = at or vault.ctx.now()
        digest = insert_session(vault, self.user_id, new_token(), to_epoch(now), stepup=stepup)
        return Principal(
            name=self.name,
            roles=self.roles,
            user_id=self.user_id,
            session_id=digest,
            session_created_at=now,
            stepup_at=now if stepup else None,
        )

    def token(self, vault=None, *, at: datetime | None = None) -> str:
        """A bearer token of a live session created at ``at`` (default: the wall clock, which is
        what a CLI subprocess and the service see)."""
        token = new_token()
        insert_session(self._vault(vault), self.user_id, token, to_epoch(at or SystemClock().now()))
        return token

    def session_file(self, target: Path, *, vault=None, at: datetime | None = None) -> Path:
        """A session file (``CVAULT_SESSION_FILE``) holding a fresh token; ``target`` is the file
        (``*.json``) or a folder. ``vault`` may be a VaultDir: it is opened for the write."""
        target = Path(target)
        path = target if target.suffix == ".json" else target / f"session-{self.name}.json"
        vault = self._vault(vault)
        opened = None
        if not hasattr(vault, "ctx"):  # a VaultDir
            vault = opened = vault.open()
        try:
            token = self.token(vault, at=at)
            vault_id = vault.ctx.vault_id.hex()
        finally:
            if opened is not None:
                opened.close()
        return write_session_file(path, vault_id, self.name, token)

    def login(self, vault=None, when: datetime | None = None) -> Principal:
        """A real login (password + TOTP at the vault's now) through the identity service."""
        vault = self._vault(vault)
        when = when or vault.ctx.now()
        return vault.users.login(self.name, self.password, totp=self.code(when)).principal


def person(
    vault,
    name: str,
    *roles: str,
    trained_until: Any = _DEFAULT,
    real_password: bool = False,
    password: str = TEST_PASSWORD,
    totp_active: bool = True,
) -> Person:
    """An enrolled user written straight into the identity tables. Trained for ten years from
    now (or the wall clock, whichever is later) unless ``trained_until`` says otherwise (None:
    never trained)."""
    now = vault.ctx.now()
    if trained_until is _DEFAULT:
        trained_until = max(now, SystemClock().now()) + timedelta(days=3650)
    phc = password_phc(password) if real_password else NO_PASSWORD_PHC
    secret = totp_secret_for(name)
    t = to_epoch(now)
    from vault.store import rowmac

    with vault.ctx.db.write() as conn:
        user_id = rowmac.insert(
            conn,
            "users",
            {
                "name": name,
                "password_hash": phc,
                "totp_active": int(totp_active),
                "training_valid_until": to_epoch(trained_until) if trained_until else None,
                "created_at": t,
                "created_by": "test",
                "enrolled_at": t,
            },
        )
        assert user_id is not None
        # created outside the product (mode init, by "test"): nobody real is in its lineage
        rowmac.insert(
            conn,
            "account_requests",
            {
                "user_id": user_id,
                "kind": "create",
                "requested_by": "test",
                "requested_at": t,
                "approved_by": "test",
                "approved_at": t,
                "mode": "init",
            },
        )
        conn.execute(
            "UPDATE users SET totp_sealed = ? WHERE id = ?",
            (vault.users._seal_totp(user_id, secret), user_id),
        )
        for r in roles:
            rowmac.insert(
                conn, "user_roles", {"user_id": user_id, "role": r, "granted_at": t, "granted_by": "test"}
            )
    return Person(name, user_id, frozenset(roles), password, secret, vault)


def onboard(vault, name: str, roles, *, requester: Person, approver: Person) -> dict:
    """``user add`` by ``requester`` then ``user approve`` by ``approver`` through the identity
    service; returns the approval (``enrollment_code``)."""
    added = vault.users.add(requester.principal(vault), name, list(roles))
    assert added["state"] == "pending_approval", added
    return vault.users.approve(approver.principal(vault), name)


def engineer_on_acme(vault) -> str:
    """The usual one-request cast: maria (account manager) adds acme (SLA a year out), eve
    (engineer, trained) is assigned to it; returns eve's live session token."""
    manager = vault.users.resume(person(vault, "maria", "account_manager").token(vault))
    vault.clients.add(manager, "acme", sla_end=vault.ctx.now() + timedelta(days=365))
    eve = person(vault, "eve", "engineer")
    assign(vault, eve, "acme")
    return eve.token(vault)


def assign(vault, who: Person, client_name: str) -> None:
    """Assign ``who`` to a client directly (nobody may assign themselves through the service)."""
    from vault.store import rowmac

    client = vault.ctx.client(client_name)
    with vault.ctx.db.write() as conn:
        rowmac.insert(
            conn,
            "assignments",
            {
                "client_id": client.id,
                "user_id": who.user_id,
                "created_at": to_epoch(vault.ctx.now()),
                "created_by": "test",
            },
        )


# --- the casts ------------------------------------------------------------------------------------


@dataclass
class AuditCast:
    manager: Person
    engineer: Person
    reviewer: Person


def audit_cast(vault) -> AuditCast:
    return AuditCast(
        person(vault, "maria", "account_manager"),
        person(vault, "eve", "engineer"),
        person(vault, "rita", "security_reviewer"),
    )


def client_with_secrets(
    vault,
    c: AuditCast,
    name: str = "acme",
    paths=("office/firewall",),
    value: str = "s3cr3t-value",
    days: int = 3650,
) -> None:
    """A client whose note records at ``paths`` (all holding ``value``) the engineer wrote."""
    _client(vault, c.manager, name, days, None, c.engineer, [(path, value) for path in paths])


def _client(vault, manager: Person, name: str, days: float, grace_days: int | None, engineer, notes) -> dict:
    data = vault.clients.add(
        manager.principal(), name, sla_end=vault.ctx.now() + timedelta(days=days), grace_days=grace_days
    )
    if engineer is not None:
        assign(vault, engineer, name)
        p = engineer.principal()
        for path, text in notes:
            vault.secrets.put(p, name, path, "note", {"text": text})
    return data


@dataclass
class SlaStaff:
    """Two account managers, an admin, an engineer assigned later."""

    manager: Person
    manager2: Person
    admin: Person
    engineer: Person


def sla_staff(vault) -> SlaStaff:
    return SlaStaff(
        person(vault, "maria", "account_manager"),
        person(vault, "mark", "account_manager"),
        person(vault, "ada", "admin"),
        person(vault, "eve", "engineer"),
    )


def sla_client(
    vault,
    who: Person,
    name: str,
    *,
    days: float = 365,
    grace_days: int | None = None,
    records: int = 0,
    engineer: Person | None = None,
) -> dict:
    """A client with ``records`` note records, written by ``engineer`` (assigned to it)."""
    notes = [(f"site/rec{i}", f"{name} secret {i}") for i in range(records)]
    return _client(vault, who, name, days, grace_days, engineer, notes)
