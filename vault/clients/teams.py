"""Teams: need-to-know for a group of engineers at once (docs/identity.md, "Teams"; issue 18 item 2).

A team is a named set of engineers; ``client assign CLIENT --team T`` gives every member
need-to-know on the client, for as long as they are members and the assignment lasts. Nothing
else changes: each member still needs their own engineer role, valid training and an active SLA,
decided by :func:`vault.policy.decide` on facts read fresh (:func:`vault.identity.facts.team_paths`),
so leaving the team, a lapsed training or an ended team assignment refuses the next read at once.

Separation of duties (:data:`vault.policy.TEAM_BOUND`): nobody adds themselves to a team, nobody
assigns a team they belong to, and nobody in a member's lineage adds that member or assigns their
team. Every change is audited (``team.*``, ``client.assign_team``, ``client.unassign_team``); ended
memberships and assignments keep their rows for the audit report and the access views.
"""

from __future__ import annotations

import builtins
from datetime import datetime

from vault import names
from vault.clients.access import assignment_until, open_assignment, require_future, until_text
from vault.clock import from_epoch, rfc3339, to_epoch
from vault.context import VaultContext
from vault.errors import InvalidInput, NotFound
from vault.identity import facts
from vault.policy import Action
from vault.principal import Principal
from vault.store import rowmac

MAX_DESCRIPTION = 256


def _when(t: int | None) -> str | None:
    return rfc3339(from_epoch(t)) if t is not None else None


class TeamService:
    def __init__(self, ctx: VaultContext):
        self.ctx = ctx

    # --- reads ------------------------------------------------------------------------------------

    @staticmethod
    def _team_id(conn, name: str) -> int:
        row = conn.execute("SELECT id FROM teams WHERE name = ? AND removed_at IS NULL", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no team named {name!r}")
        return int(row[0])

    @staticmethod
    def _clients_of(conn, team_id: int) -> builtins.list[str]:
        rows = conn.execute(
            "SELECT c.name FROM team_assignments a JOIN clients c ON c.id = a.client_id"
            " WHERE a.team_id = ? AND a.ended_at IS NULL ORDER BY c.name",
            (team_id,),
        ).fetchall()
        return [r[0] for r in rows]

    @staticmethod
    def _members_of(conn, team_id: int) -> builtins.list[str]:
        rows = conn.execute(
            "SELECT u.name FROM team_members m JOIN users u ON u.id = m.user_id"
            " WHERE m.team_id = ? AND m.removed_at IS NULL ORDER BY u.name",
            (team_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def list(self, principal: Principal) -> builtins.list[dict]:
        self.ctx.authorize(principal, Action.TEAM_LIST)
        with self.ctx.db.read() as conn:
            teams = conn.execute(
                "SELECT id, name, description, created_at FROM teams WHERE removed_at IS NULL ORDER BY name"
            ).fetchall()
            return [
                {
                    "name": name,
                    "description": description,
                    "created_at": rfc3339(from_epoch(created)),
                    "members": self._members_of(conn, team_id),
                    "clients": self._clients_of(conn, team_id),
                }
                for team_id, name, description, created in teams
            ]

    def show(self, principal: Principal, name: str) -> dict:
        self.ctx.authorize(principal, Action.TEAM_SHOW)
        now = to_epoch(self.ctx.now())
        with self.ctx.db.read() as conn:
            team_id = self._team_id(conn, name)
            description, created, created_by = conn.execute(
                "SELECT description, created_at, created_by FROM teams WHERE id = ?", (team_id,)
            ).fetchone()
            members = conn.execute(
                "SELECT u.name, m.added_at, m.added_by, m.removed_at, m.removed_by FROM team_members m"
                " JOIN users u ON u.id = m.user_id WHERE m.team_id = ? ORDER BY u.name, m.id",
                (team_id,),
            ).fetchall()
            clients = conn.execute(
                "SELECT c.name, a.created_at, a.created_by, a.ends_at, a.ended_at, a.ended_by"
                " FROM team_assignments a JOIN clients c ON c.id = a.client_id"
                " WHERE a.team_id = ? ORDER BY c.name, a.id",
                (team_id,),
            ).fetchall()
        return {
            "name": name,
            "description": description,
            "created_at": rfc3339(from_epoch(created)),
            "created_by": created_by,
            "members": [
                {"user": u, "since": _when(at), "by": by}
                for u, at, by, removed, _ in members
                if removed is None
            ],
            "former_members": [
                {"user": u, "since": _when(at), "by": by, "left_at": _when(removed), "removed_by": rby}
                for u, at, by, removed, rby in members
                if removed is not None
            ],
            "clients": [
                {
                    "client": c,
                    "since": _when(at),
                    "by": by,
                    "until": _when(ends),
                    "ended_at": _when(ended),
                    "ended": ended is not None or (ends is not None and now >= ends),
                }
                for c, at, by, ends, ended, _ in clients
            ],
        }

    # --- changes ----------------------------------------------------------------------------------

    def add(self, principal: Principal, name: str, *, description: str = "") -> dict:
        names.team_name(name)
        if len(description) > MAX_DESCRIPTION or not description.isprintable():
            raise InvalidInput(f"a team description is one line of at most {MAX_DESCRIPTION} characters")
        self.ctx.authorize(principal, Action.TEAM_ADD)
        t = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            if conn.execute("SELECT 1 FROM teams WHERE name = ? AND removed_at IS NULL", (name,)).fetchone():
                raise InvalidInput(f"a team named {name!r} already exists")
            rowmac.insert(
                conn,
                "teams",
                {"name": name, "description": description, "created_at": t, "created_by": principal.name},
            )
        self.ctx.record_outcome(principal, Action.TEAM_ADD, "ok", reason=f"team {name} created")
        return {"name": name, "description": description, "created_at": rfc3339(from_epoch(t))}

    def rm(self, principal: Principal, name: str) -> dict:
        """Remove a team: its memberships and client assignments end with it (access through it
        stops at once); the rows stay for the audit report."""
        self.ctx.authorize(principal, Action.TEAM_RM)
        t = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            team_id = self._team_id(conn, name)
            clients = self._clients_of(conn, team_id)
            who = (t, principal.name)
            rowmac.update(conn, "teams", "removed_at = ?, removed_by = ?", who, "id = ?", (team_id,))
            rowmac.update(
                conn,
                "team_members",
                "removed_at = ?, removed_by = ?",
                who,
                "team_id = ? AND removed_at IS NULL",
                (team_id,),
            )
            rowmac.update(
                conn,
                "team_assignments",
                "ended_at = ?, ended_by = ?",
                who,
                "team_id = ? AND ended_at IS NULL",
                (team_id,),
            )
        reached = f" (its assignments to {', '.join(clients)} ended)" if clients else ""
        self.ctx.record_outcome(principal, Action.TEAM_RM, "ok", reason=f"team {name} removed{reached}")
        return {"name": name, "removed_at": rfc3339(from_epoch(t)), "clients_ended": clients}

    def member_add(self, principal: Principal, team: str, user_name: str) -> dict:
        with self.ctx.db.read() as conn:
            self._team_id(conn, team)
            user = facts.user_row(conn, user_name)
            if user is None:
                raise NotFound(f"no user named {user_name!r}")
            reach = facts.reach(conn, user)
        self.ctx.authorize(principal, Action.TEAM_MEMBER_ADD, subject=user_name, reaches=(reach,))
        t = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            team_id = self._team_id(conn, team)
            if "engineer" not in facts.user_roles(conn, user.id):
                raise InvalidInput(f"{user_name} is not an engineer; only engineers join teams")
            if conn.execute(
                "SELECT 1 FROM team_members WHERE team_id = ? AND user_id = ? AND removed_at IS NULL",
                (team_id, user.id),
            ).fetchone():
                raise InvalidInput(f"{user_name} is already a member of team {team}")
            rowmac.insert(
                conn,
                "team_members",
                {"team_id": team_id, "user_id": user.id, "added_at": t, "added_by": principal.name},
            )
            clients = self._clients_of(conn, team_id)
        reaches = f" (reaches {', '.join(clients)})" if clients else " (reaches no client yet)"
        self.ctx.record_outcome(
            principal, Action.TEAM_MEMBER_ADD, "ok", reason=f"{user_name} added to team {team}{reaches}"
        )
        return {"team": team, "user": user_name, "since": rfc3339(from_epoch(t)), "clients": clients}

    def member_rm(self, principal: Principal, team: str, user_name: str) -> dict:
        self.ctx.authorize(principal, Action.TEAM_MEMBER_RM, subject=user_name)
        t = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            team_id = self._team_id(conn, team)
            user = facts.user_row(conn, user_name)
            if user is None:
                raise NotFound(f"no user named {user_name!r}")
            ended = rowmac.update(
                conn,
                "team_members",
                "removed_at = ?, removed_by = ?",
                (t, principal.name),
                "team_id = ? AND user_id = ? AND removed_at IS NULL",
                (team_id, user.id),
            )
            if not ended:
                raise NotFound(f"{user_name} is not a member of team {team}")
        self.ctx.record_outcome(
            principal, Action.TEAM_MEMBER_RM, "ok", reason=f"{user_name} removed from team {team}"
        )
        return {"team": team, "user": user_name, "left_at": rfc3339(from_epoch(t))}

    def assign(
        self, principal: Principal, client_name: str, team: str, until: datetime | str | None = None
    ) -> dict:
        """Give the team's members need-to-know on the client (each still needs their own
        training and the SLA), optionally until a date."""
        now = self.ctx.now()
        until = assignment_until(until, now, self.ctx.zone)
        client = self.ctx.client(client_name)
        with self.ctx.db.read() as conn:
            team_id = self._team_id(conn, team)
            reaches = facts.team_reaches(conn, team_id)
        self.ctx.authorize(principal, Action.CLIENT_ASSIGN_TEAM, client=client, reaches=reaches)
        require_future(until, now)
        with self.ctx.db.write() as conn:
            team_id = self._team_id(conn, team)
            if facts.team_reaches(conn, team_id) != reaches:
                # a member joined between the check and the write: decide again on the new set
                raise InvalidInput(f"team {team}'s members changed meanwhile: run the command again")
            open_assignment(
                conn,
                "team_assignments",
                {"client_id": client.id, "team_id": team_id},
                by=principal.name,
                at=to_epoch(now),
                until=until,
            )
        members = ", ".join(r.name for r in reaches) or "no members yet"
        self.ctx.record_outcome(
            principal,
            Action.CLIENT_ASSIGN_TEAM,
            "ok",
            client=client,
            reason=f"team {team} assigned to {client.name} ({until_text(until)}; members: {members})",
        )
        return {
            "client": client.name,
            "team": team,
            "until": rfc3339(until) if until is not None else None,
            "members": [r.name for r in reaches],
        }

    def unassign(self, principal: Principal, client_name: str, team: str) -> dict:
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.CLIENT_UNASSIGN_TEAM, client=client)
        t = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            team_id = self._team_id(conn, team)
            ended = rowmac.update(
                conn,
                "team_assignments",
                "ended_at = ?, ended_by = ?",
                (t, principal.name),
                "client_id = ? AND team_id = ? AND ended_at IS NULL",
                (client.id, team_id),
            )
        if not ended:
            raise NotFound(f"team {team} is not assigned to {client.name}")
        self.ctx.record_outcome(
            principal,
            Action.CLIENT_UNASSIGN_TEAM,
            "ok",
            client=client,
            reason=f"team {team} unassigned from {client.name}",
        )
        return {"client": client.name, "team": team, "ended_at": rfc3339(from_epoch(t))}

    def memberships(self, principal: Principal, user_name: str) -> builtins.list[dict]:
        """The teams a user belongs to now, with the clients each reaches (the console's user
        page; ``team.show`` rights)."""
        self.ctx.authorize(principal, Action.TEAM_SHOW)
        with self.ctx.db.read() as conn:
            user = facts.user_row(conn, user_name)
            if user is None:
                raise NotFound(f"no user named {user_name!r}")
            rows = conn.execute(
                "SELECT t.id, t.name, m.added_at FROM team_members m JOIN teams t ON t.id = m.team_id"
                " WHERE m.user_id = ? AND m.removed_at IS NULL AND t.removed_at IS NULL ORDER BY t.name",
                (user.id,),
            ).fetchall()
            return [
                {"team": name, "since": _when(at), "clients": self._clients_of(conn, team_id)}
                for team_id, name, at in rows
            ]
