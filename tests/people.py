"""Staff written straight into the identity tables (0002_identity.sql), for tests that need many
people and a clock moved by days without an Argon2 or TOTP round trip (audit, SLA, shred tests).

:meth:`Person.principal` opens a fresh live session with a fresh step-up at the vault's current
(injected) time; :meth:`Person.write_session_file` gives CLI subprocesses a real token whose hash
is in ``sessions``, created at the wall-clock time the subprocess will see.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from vault.clock import SystemClock, to_epoch
from vault.identity.sessions import new_token, token_hash
from vault.principal import Principal


@dataclass
class Person:
    vault: object
    name: str
    user_id: int
    roles: frozenset[str]

    def _session(self, when: datetime, token: str) -> str:
        t = to_epoch(when)
        digest = token_hash(token)
        with self.vault.ctx.db.write() as conn:
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, last_seen, stepup_at,"
                " origin) VALUES (?, ?, ?, ?, ?, 'cli')",
                (digest, self.user_id, t, t, t),
            )
        return digest

    def principal(self) -> Principal:
        """A principal with a new live session (and a fresh TOTP step-up) at the vault's now."""
        now = self.vault.ctx.now()
        digest = self._session(now, new_token())
        return Principal(
            name=self.name,
            roles=self.roles,
            user_id=self.user_id,
            session_id=digest,
            session_created_at=now,
            stepup_at=now,
        )

    def write_session_file(self, path: Path, when: datetime | None = None) -> Path:
        """A session file for ``cvault`` subprocesses (CVAULT_SESSION_FILE), live at ``when``
        (default: the wall clock, which is what a CLI subprocess sees)."""
        token = new_token()
        self._session(when or SystemClock().now(), token)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {
                    "vault_id": self.vault.ctx.vault_id.hex(),
                    "user": self.name,
                    "token": token,
                    "expires_at": "2099-01-01T00:00:00Z",
                },
                fh,
            )
        return Path(path)

    def session_file(self, folder: Path) -> Path:
        return self.write_session_file(Path(folder) / f"session-{self.name}.json")


def person(vault, name: str, *roles: str, trained_until: datetime | None = None) -> Person:
    now = vault.ctx.now()
    trained_until = trained_until or max(now, SystemClock().now()) + timedelta(days=3650)
    with vault.ctx.db.write() as conn:
        user_id = conn.execute(
            "INSERT INTO users (name, password_hash, totp_active, training_valid_until, created_at,"
            " created_by, enrolled_at) VALUES (?, 'x', 1, ?, ?, 'test', ?)",
            (name, to_epoch(trained_until), to_epoch(now), to_epoch(now)),
        ).lastrowid
        conn.executemany(
            "INSERT INTO user_roles (user_id, role, granted_at, granted_by) VALUES (?, ?, ?, 'test')",
            [(user_id, r, to_epoch(now)) for r in roles],
        )
    return Person(vault, name, user_id, frozenset(roles))


def assign(vault, who: Person, client_name: str) -> None:
    client = vault.ctx.client(client_name)
    with vault.ctx.db.write() as conn:
        conn.execute(
            "INSERT INTO assignments (client_id, user_id, created_at, created_by) VALUES (?, ?, ?, 'test')",
            (client.id, who.user_id, to_epoch(vault.ctx.now())),
        )
