"""Staff for the SLA and shred tests: users with roles, live sessions, training and assignments.

Written straight into the identity tables (0002_identity.sql) so that the tests need no Argon2 or
TOTP round trip; every call of :meth:`Person.principal` opens a fresh session at the vault's
current (injected) time with a fresh step-up, so tests can move the clock by days. When the
identity fixtures in tests/helpers.py cover this, these helpers can be replaced by them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from vault.clock import to_epoch
from vault.crypto import sha256
from vault.principal import Principal


@dataclass
class Person:
    vault: object
    name: str
    user_id: int
    roles: frozenset[str]

    def principal(self) -> Principal:
        """A principal with a new live session (and a fresh TOTP step-up) at the vault's now."""
        now = self.vault.ctx.now()
        t = to_epoch(now)
        digest = sha256(secrets.token_bytes(32)).hex()
        with self.vault.ctx.db.write() as conn:
            conn.execute("INSERT INTO sessions (token_hash, user_id, created_at, last_seen, stepup_at,"
                         " origin) VALUES (?, ?, ?, ?, ?, 'cli')", (digest, self.user_id, t, t, t))
        return Principal(name=self.name, roles=self.roles, user_id=self.user_id, session_id=digest,
                         session_created_at=now, stepup_at=now)


def person(vault, name: str, *roles: str, trained_until: datetime | None = None) -> Person:
    now = vault.ctx.now()
    if trained_until is None:
        trained_until = now + timedelta(days=3650)
    with vault.ctx.db.write() as conn:
        user_id = conn.execute(
            "INSERT INTO users (name, password_hash, totp_active, training_valid_until, created_at,"
            " created_by, enrolled_at) VALUES (?, 'x', 1, ?, ?, 'test', ?)",
            (name, to_epoch(trained_until), to_epoch(now), to_epoch(now))).lastrowid
        conn.executemany("INSERT INTO user_roles (user_id, role, granted_at, granted_by)"
                         " VALUES (?, ?, ?, 'test')", [(user_id, r, to_epoch(now)) for r in roles])
    return Person(vault, name, user_id, frozenset(roles))


def assign(vault, who: Person, client_name: str) -> None:
    client = vault.ctx.client(client_name)
    with vault.ctx.db.write() as conn:
        conn.execute("INSERT INTO assignments (client_id, user_id, created_at, created_by)"
                     " VALUES (?, ?, ?, 'test')", (client.id, who.user_id, to_epoch(vault.ctx.now())))


@dataclass
class Staff:
    """The cast of one test vault: two account managers, an admin, an engineer assigned later."""

    manager: Person
    manager2: Person
    admin: Person
    engineer: Person


def staff(vault) -> Staff:
    return Staff(person(vault, "maria", "account_manager"), person(vault, "mark", "account_manager"),
                 person(vault, "ada", "admin"), person(vault, "eve", "engineer"))


def add_client(vault, who: Person, name: str, *, days: float = 365, grace_days: int | None = None,
               records: int = 0, engineer: Person | None = None) -> dict:
    """A client with ``records`` note records, written by ``engineer`` (assigned to it)."""
    data = vault.clients.add(who.principal(), name,
                             sla_end=vault.ctx.now() + timedelta(days=days), grace_days=grace_days)
    if engineer is not None:
        assign(vault, engineer, name)
        p = engineer.principal()
        for i in range(records):
            vault.secrets.put(p, name, f"site/rec{i}", "note", {"text": f"{name} secret {i}"})
    return data


def cli_env(vdir, **extra: str) -> dict:
    """Environment for ``cvault`` subprocesses on this vault with no session unless one is given
    (CVAULT_SESSION_FILE): the key file unseals, and the sweep then acts as ``system:sweep``."""
    import os

    from tests.helpers import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_")}
    env.update({"CVAULT_HOME": str(vdir.home), "CVAULT_KEY_FILE": str(vdir.key_file),
                "CVAULT_SESSION_FILE": str(vdir.home.parent / "no-session.json"),
                "PYTHONPATH": str(ROOT), **extra})
    return env


def cli_session(vault, who: Person, session_file, when: datetime) -> None:
    """Log ``who`` in for CLI subprocesses: a live session at ``when`` (the real clock of the
    subprocess) and the session file that ``cvault`` reads through CVAULT_SESSION_FILE."""
    import json
    import os

    from vault.services.identity import new_token, token_hash

    token = new_token()
    t = to_epoch(when)
    with vault.ctx.db.write() as conn:
        conn.execute("INSERT INTO sessions (token_hash, user_id, created_at, last_seen, stepup_at,"
                     " origin) VALUES (?, ?, ?, ?, ?, 'cli')", (token_hash(token), who.user_id, t, t, t))
    fd = os.open(session_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"vault_id": vault.ctx.vault_id.hex(), "user": who.name, "token": token,
                   "expires_at": "2099-01-01T00:00:00Z"}, fh)
