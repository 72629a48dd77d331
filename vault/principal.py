"""Who is acting. Every facade operation takes a Principal as its first argument (docs/spec.md §2)."""

from __future__ import annotations

from datetime import datetime

from vault.tuples import NamedTuple

ROLES = ("admin", "account_manager", "engineer", "security_reviewer")
SYSTEM_ROLE = "system"


class Principal(NamedTuple):
    """An authenticated actor.

    ``kind`` is ``"user"`` for a staff member with a session, or ``"system"`` for the vault acting on
    its own schedule (the SLA sweep, the outbox) after being unsealed with a key file by its operator.
    Facts that can change while a session lives (disabled, locked, training, assignments) are *not*
    carried here: the policy reads them fresh for every decision.
    """

    name: str
    roles: frozenset[str] = frozenset()
    kind: str = "user"
    user_id: int | None = None
    session_id: str | None = None  # hex of the stored session-token hash, never the token
    session_created_at: datetime | None = None
    stepup_at: datetime | None = None
    origin: str = "cli"

    @classmethod
    def system(cls, name: str = "system", origin: str = "cli") -> Principal:
        return cls(
            name=f"system:{name}" if not name.startswith("system") else name,
            roles=frozenset({SYSTEM_ROLE}),
            kind="system",
            origin=origin,
        )

    @property
    def is_system(self) -> bool:
        return self.kind == "system"
