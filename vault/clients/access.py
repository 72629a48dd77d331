"""Need-to-know assignments and the "who can reach what" view (docs/spec.md §6).

``assign``/``unassign`` record which engineer may read which client's secrets (with an optional
end date). The views answer, for reviewers and admins, who could read a client's secrets right now
and why not: they run the very same :func:`vault.policy.decide` that guards ``secret get``, on the
facts read now, assuming the person also holds a valid session with a fresh TOTP (the two facts
that belong to a login, not to the account).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from vault import policy
from vault.clock import from_epoch, rfc3339, to_epoch
from vault.context import VaultContext
from vault.dates import as_when
from vault.errors import InvalidInput, NotFound
from vault.identity import facts
from vault.policy import Action
from vault.principal import Principal
from vault.store import clients as client_store
from vault.store import rowmac
from vault.store.clients import ClientRow

SESSION_NOTE = "also needs a live session and a TOTP code within the step-up window"


# --- the assignment window, shared by engineers' and teams' assignments ---------------------------


def assignment_until(until: datetime | str | None, now: datetime, zone: tzinfo) -> datetime | None:
    """An assignment's end as given (ISO 8601 or relative, in the vault's zone), or None."""
    return None if until is None else as_when(until, now, zone)


def require_future(until: datetime | None, now: datetime) -> None:
    if until is not None and until <= now:
        raise InvalidInput("the assignment end must be in the future")


def until_text(until: datetime | None) -> str:
    return rfc3339(until) if until is not None else "no end date"


def open_assignment(
    conn, table: str, holder: dict[str, object], *, by: str, at: int, until: datetime | None
) -> None:
    """Inside a write transaction: the open assignment of ``holder`` (client and user, or client
    and team) in ``table`` gets the new end, or a new one is opened; both MACed (rowmac)."""
    ends = to_epoch(until) if until is not None else None
    where = " AND ".join(f"{column} = ?" for column in holder) + " AND ended_at IS NULL"
    if not rowmac.update(conn, table, "ends_at = ?", (ends,), where, tuple(holder.values())):
        rowmac.insert(conn, table, {**holder, "created_at": at, "created_by": by, "ends_at": ends})


class AccessService:
    def __init__(self, ctx: VaultContext):
        self.ctx = ctx

    def assign(
        self,
        principal: Principal,
        client_name: str,
        user_name: str,
        until: datetime | str | None = None,
    ) -> dict:
        now = self.ctx.now()
        until = assignment_until(until, now, self.ctx.zone)
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.CLIENT_ASSIGN, client=client, subject=user_name)
        require_future(until, now)
        with self.ctx.db.write() as conn:
            user = facts.user_row(conn, user_name)
            if user is None:
                raise NotFound(f"no user named {user_name!r}")
            if "engineer" not in facts.user_roles(conn, user.id):
                raise InvalidInput(f"{user_name} is not an engineer; only engineers are assigned")
            open_assignment(
                conn,
                "assignments",
                {"client_id": client.id, "user_id": user.id},
                by=principal.name,
                at=to_epoch(now),
                until=until,
            )
        self.ctx.record_outcome(
            principal,
            Action.CLIENT_ASSIGN,
            "ok",
            client=client,
            reason=f"{user_name} assigned to {client.name} ({until_text(until)})",
        )
        return {
            "client": client.name,
            "user": user_name,
            "until": rfc3339(until) if until is not None else None,
        }

    def unassign(self, principal: Principal, client_name: str, user_name: str) -> dict:
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.CLIENT_UNASSIGN, client=client)
        t = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            user = facts.user_row(conn, user_name)
            if user is None:
                raise NotFound(f"no user named {user_name!r}")
            ended = rowmac.update(
                conn,
                "assignments",
                "ended_at = ?, ended_by = ?",
                (t, principal.name),
                "client_id = ? AND user_id = ? AND ended_at IS NULL",
                (client.id, user.id),
            )
        if not ended:
            raise NotFound(f"{user_name} is not assigned to {client.name}")
        self.ctx.record_outcome(
            principal,
            Action.CLIENT_UNASSIGN,
            "ok",
            client=client,
            reason=f"{user_name} unassigned from {client.name}",
        )
        return {"client": client.name, "user": user_name, "ended_at": rfc3339(from_epoch(t))}

    # --- who can reach what ---------------------------------------------------------------------

    def _row(self, conn, user: facts.UserRow, client: ClientRow, now: datetime) -> dict:
        t = to_epoch(now)
        account = facts.assumed_reader_facts(conn, user, now)
        roles = account.roles or frozenset()
        _, _, _, view = facts.assignment_state(conn, client.id, user.id, now)
        client_facts = facts.client_facts(conn, client, user.id, now)
        decision = policy.decide(
            Principal(name=user.name, roles=roles),
            Action.SECRET_GET,
            now=now,
            account=account,
            client=client_facts,
            stepup_window_seconds=int(self.ctx.settings["stepup_window_seconds"]),
        )
        reached, via = policy.assignment_path(client_facts, now)
        locked = user.locked_until is not None and user.locked_until > t
        return {
            "user": user.name,
            "client": client.name,
            "can_read": decision.allowed,
            "reason": decision.reason if not decision.allowed else SESSION_NOTE,
            "roles": sorted(roles),
            "assignment": view,
            # need-to-know through teams: every team path, open or ended, and the one that counts
            "teams": [v for _, v in facts.team_paths(conn, client.id, user.id, now)],
            "via": (f"team {via}" if via else "direct") if reached else None,
            "training_valid_until": (
                rfc3339(from_epoch(user.training_valid_until))
                if user.training_valid_until is not None
                else None
            ),
            "sla_state": client.state(now),
            "sla_end": rfc3339(client.sla_end),
            "account": "disabled"
            if user.disabled
            else "locked"
            if locked
            else ("active" if user.password_hash else "enrollment pending"),
        }

    def client_access(self, principal: Principal, client_name: str) -> dict:
        """Every engineer, and everyone ever assigned to the client (directly or through a team):
        can they read it now, why, and through which path."""
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.ACCESS_VIEW, client=client)
        now = self.ctx.now().replace(microsecond=0)
        with self.ctx.db.read() as conn:
            people = [self._row(conn, u, client, now) for u in facts.users_for_client(conn, client.id)]
        return {
            "client": client.name,
            "sla_state": client.state(now),
            "sla_end": rfc3339(client.sla_end),
            "at": rfc3339(now),
            "users": people,
        }

    def user_access(self, principal: Principal, user_name: str) -> dict:
        """Every client the user is or was assigned to, directly or through a team: can they
        read it now, and why."""
        self.ctx.authorize(principal, Action.ACCESS_VIEW)
        now = self.ctx.now().replace(microsecond=0)
        with self.ctx.db.read() as conn:
            user = facts.user_row(conn, user_name)
            if user is None:
                raise NotFound(f"no user named {user_name!r}")
            clients = client_store.all_clients(
                conn,
                "id IN (SELECT client_id FROM assignments WHERE user_id = ?"
                " UNION SELECT a.client_id FROM team_assignments a JOIN team_members m"
                " ON m.team_id = a.team_id WHERE m.user_id = ?)",
                (user.id, user.id),
            )
            rows = [self._row(conn, user, c, now) for c in clients]
            roles = sorted(facts.user_roles(conn, user.id))
        return {
            "user": user.name,
            "roles": roles,
            "at": rfc3339(now),
            "can_read": [r["client"] for r in rows if r["can_read"]],
            "clients": rows,
        }
