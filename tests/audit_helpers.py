"""Staff and sessions for the audit tests, written straight into the identity tables.

Library tests get principals with a live session and a fresh step-up at the vault's (injected)
time; CLI tests get a session file (``CVAULT_SESSION_FILE``) holding a real token whose hash is
in ``sessions``, created at the wall-clock time the CLI subprocess will see.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from vault.clock import SystemClock, to_epoch
from vault.crypto import sha256
from vault.principal import Principal


@dataclass
class Person:
    vault: object
    name: str
    user_id: int
    roles: frozenset[str]

    def principal(self) -> Principal:
        now = self.vault.ctx.now()
        digest = self._session(now, secrets.token_hex(16))
        return Principal(name=self.name, roles=self.roles, user_id=self.user_id, session_id=digest,
                         session_created_at=now, stepup_at=now)

    def _session(self, now: datetime, token: str) -> str:
        t = to_epoch(now)
        digest = sha256(token.encode()).hex()
        with self.vault.ctx.db.write() as conn:
            conn.execute("INSERT INTO sessions (token_hash, user_id, created_at, last_seen, stepup_at,"
                         " origin) VALUES (?, ?, ?, ?, ?, 'cli')", (digest, self.user_id, t, t, t))
        return digest

    def session_file(self, folder: Path) -> Path:
        """A session file for CLI subprocesses (wall-clock time: the CLI uses the system clock)."""
        token = "cvs1_" + secrets.token_urlsafe(32)
        self._session(SystemClock().now(), token)
        path = folder / f"session-{self.name}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"vault_id": self.vault.ctx.vault_id.hex(), "user": self.name, "token": token,
                       "expires_at": "2099-01-01T00:00:00Z"}, fh)
        return path


def person(vault, name: str, *roles: str, trained_until: datetime | None = None) -> Person:
    now = vault.ctx.now()
    trained_until = trained_until or max(now, SystemClock().now()) + timedelta(days=3650)
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
class Cast:
    manager: Person
    engineer: Person
    reviewer: Person


def cast(vault) -> Cast:
    return Cast(person(vault, "maria", "account_manager"), person(vault, "eve", "engineer"),
                person(vault, "rita", "security_reviewer"))


def client_with_secrets(vault, c: Cast, name: str = "acme", paths=("office/firewall",),
                        value: str = "s3cr3t-value", days: int = 3650) -> None:
    vault.clients.add(c.manager.principal(), name, sla_end=vault.ctx.now() + timedelta(days=days))
    assign(vault, c.engineer, name)
    p = c.engineer.principal()
    for path in paths:
        vault.secrets.put(p, name, path, "note", {"text": value})
