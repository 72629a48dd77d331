"""Staff and sessions for the audit tests, written straight into the identity tables.

Library tests get principals with a live session and a fresh step-up at the vault's (injected)
time; CLI tests get a session file (``CVAULT_SESSION_FILE``) holding a real token whose hash is
in ``sessions``, created at the wall-clock time the CLI subprocess will see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from tests.people import Person, assign, person


@dataclass
class Cast:
    manager: Person
    engineer: Person
    reviewer: Person


def cast(vault) -> Cast:
    return Cast(
        person(vault, "maria", "account_manager"),
        person(vault, "eve", "engineer"),
        person(vault, "rita", "security_reviewer"),
    )


def client_with_secrets(
    vault,
    c: Cast,
    name: str = "acme",
    paths=("office/firewall",),
    value: str = "s3cr3t-value",
    days: int = 3650,
) -> None:
    vault.clients.add(c.manager.principal(), name, sla_end=vault.ctx.now() + timedelta(days=days))
    assign(vault, c.engineer, name)
    p = c.engineer.principal()
    for path in paths:
        vault.secrets.put(p, name, path, "note", {"text": value})
