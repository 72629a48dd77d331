"""Staff for the SLA and shred tests: users with roles, live sessions, training and assignments.

Written straight into the identity tables (0002_identity.sql) so that the tests need no Argon2 or
TOTP round trip; every call of :meth:`Person.principal` opens a fresh session at the vault's
current (injected) time with a fresh step-up, so tests can move the clock by days. When the
identity fixtures in tests/helpers.py cover this, these helpers can be replaced by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tests.people import Person, assign, person


@dataclass
class Staff:
    """The cast of one test vault: two account managers, an admin, an engineer assigned later."""

    manager: Person
    manager2: Person
    admin: Person
    engineer: Person


def staff(vault) -> Staff:
    return Staff(
        person(vault, "maria", "account_manager"),
        person(vault, "mark", "account_manager"),
        person(vault, "ada", "admin"),
        person(vault, "eve", "engineer"),
    )


def add_client(
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
    data = vault.clients.add(
        who.principal(), name, sla_end=vault.ctx.now() + timedelta(days=days), grace_days=grace_days
    )
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
    env.update(
        {
            "CVAULT_HOME": str(vdir.home),
            "CVAULT_KEY_FILE": str(vdir.key_file),
            "CVAULT_SESSION_FILE": str(vdir.home.parent / "no-session.json"),
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


def cli_session(vault, who: Person, session_file, when: datetime) -> None:
    """Log ``who`` in for CLI subprocesses: a live session at ``when`` and its session file."""
    who.write_session_file(session_file, when)
