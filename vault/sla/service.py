"""SLA lifecycle (docs/spec.md §7): show, renew, expire, early shred with two-person approval, upcoming
events, the sweep and shred certificates. The facade exposes it as ``vault.sla``.

States (:meth:`vault.store.clients.ClientRow.state`, computed from the stored SLA end, grace days and
shred state, so access is refused the moment the SLA end passes whether or not a sweep ran)::

    active --(SLA end)--> expired --(end + grace)--> shred_pending --(sweep)--> shredding --> shredded
       ^                     |                           |
       +------ renew --------+---------------------------+

An approved early shred ends the SLA at the approval time with no grace period, so the client is
``shred_pending`` at once and the next sweep shreds it; a renewal before that cancels the request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from vault import policy
from vault.api_spec import grace_days_refusal
from vault.audit.signing import AuditSigner
from vault.clock import from_epoch, rfc3339, rfc3339_seconds, to_epoch
from vault.context import VaultContext
from vault.dates import as_duration, as_when, require_future
from vault.errors import AccessDenied, ClientUnavailable, IntegrityFailure, InvalidInput, NotFound
from vault.identity import facts
from vault.locks import exclusive
from vault.policy import Action
from vault.principal import Principal
from vault.sla import certificate as certfmt
from vault.sla.shred import Shredder, ShredIncomplete, load_job
from vault.store import clients as store_clients
from vault.store import meta, rowmac, stored
from vault.store.clients import ClientRow
from vault.store.outbox import shred_deletes_pending

if TYPE_CHECKING:
    import sqlite3

Progress = Callable[[int, int], None]
DAY = 86400
SWEEP_LOCK = "sweep.lock"

#: The due query of the sweep: must match the expression of index clients_shred_due (0004_sla.sql)
#: exactly, so "nothing due" is one index range probe, whatever the number of clients.
DUE_SQL = (
    "SELECT id, name FROM clients WHERE shred_state IS NULL"
    " AND sla_end + grace_days * 86400 <= ? ORDER BY sla_end + grace_days * 86400"
)
RESUME_SQL = (
    "SELECT j.client_id, c.name FROM shred_jobs j JOIN clients c ON c.id = j.client_id"
    " WHERE j.step <> 'done' ORDER BY j.started_at"
)


STATES = ("active", "expired", "shred_pending", "shredding", "shredded")
#: a client's state in SQL: :meth:`ClientRow.state` on the stored columns at ``:now`` (epoch)
STATE_SQL = (
    "(CASE WHEN c.shred_state IS NOT NULL THEN c.shred_state WHEN :now < c.sla_end THEN 'active'"
    " WHEN :now < c.sla_end + c.grace_days * 86400 THEN 'expired' ELSE 'shred_pending' END)"
)
#: whole days left until the SLA end (negative: days since), as the overview's ``days_left``
DAYS_LEFT_SQL = (
    "(CASE WHEN c.sla_end > :now THEN (c.sla_end - :now) / 86400"
    " ELSE -((:now - c.sla_end + 86399) / 86400) END)"
)
#: the clients user ``:uid`` reaches now: an open direct assignment or an open team path
#: (open membership, live team, open team assignment), as :func:`vault.policy.assignment_path`
REACHED_BY_SQL = (
    "SELECT client_id FROM assignments WHERE user_id = :uid AND ended_at IS NULL"
    " AND (ends_at IS NULL OR ends_at > :now)"
    " UNION SELECT a.client_id FROM team_assignments a JOIN team_members m ON m.team_id = a.team_id"
    " JOIN teams t ON t.id = a.team_id WHERE m.user_id = :uid AND m.removed_at IS NULL"
    " AND t.removed_at IS NULL AND a.ended_at IS NULL AND (a.ends_at IS NULL OR a.ends_at > :now)"
)
#: the two-person vault settings (``setting_requests.name``) as the approvals queue names them
SETTING_LABELS = {"min_grace_days": "minimum grace period"}
#: the overview's sort keys (then by name); days left orders as the SLA end does
OVERVIEW_SORTS = {
    "client": "c.name",
    "state": STATE_SQL,
    "sla_end": "c.sla_end",
    "days_left": "c.sla_end",
    "grace_days": "c.grace_days",
    "records": "(SELECT count(*) FROM records r WHERE r.client_id = c.id)",
}


class SelfApproval(AccessDenied):
    """two-person rule: an early shred must be approved by someone other than its requester."""


class ApprovalMismatch(AccessDenied):
    """the pending request is not the one you reviewed: look again before approving."""


def _iso(epoch: int | None) -> str | None:
    return None if epoch is None else rfc3339(from_epoch(epoch))


class SlaService:
    def __init__(self, ctx: VaultContext, *, shred_pause: Callable[[], None] | None = None):
        self.ctx = ctx
        #: called after every committed shred step (tests slow the shred down to kill it mid-way)
        self.shred_pause = shred_pause

    # --- helpers --------------------------------------------------------------------------------

    def _refuse_if_shredded(self, principal: Principal, action: Action, client: ClientRow, what: str) -> None:
        if client.shred_state is None:
            return
        when = self.ctx.db.one(
            "SELECT done_at, certified_at, started_at FROM shred_jobs WHERE client_id = ?", (client.id,)
        )
        on = next((rfc3339(from_epoch(t)) for t in (when or ()) if t), None)
        state = "shredded" if client.shred_state == "shredded" else "being shredded"
        message = (
            f"client {client.name} was {state}"
            + (f" on {on}" if on and state == "shredded" else "")
            + f"; {what}"
        )
        self.ctx.record_outcome(principal, action, "deny", client=client, reason=message)
        raise ClientUnavailable(message)

    def _open_request(self, conn, client_id: str):
        """The client's open early-shred request, its row MAC checked (who asked decides who may
        approve): (id, requested_by, requested_at, reason, approved_by, approved_at,
        orig_sla_end, orig_grace_days), or None."""
        rows = rowmac.select(
            conn,
            "shred_requests",
            "client_id = ? AND cancelled_at IS NULL AND executed_at IS NULL",
            (client_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return (r[1], r[3], r[4], r[5], r[6], r[7], r[8], r[9])

    def _view(self, client: ClientRow, now: datetime) -> dict:
        conn = self.ctx.db.conn
        due = client.sla_end + timedelta(days=client.grace_days)
        request = self._open_request(conn, client.id)
        job = load_job(conn, client.id)
        cert = self.ctx.db.one(
            "SELECT digest, issued_at FROM shred_certificates WHERE client_id = ?", (client.id,)
        )
        return {
            "client": client.name,
            "id": client.id,
            "state": client.state(now),
            "sla_end": rfc3339(client.sla_end),
            "grace_days": client.grace_days,
            "shred_due": None if client.shred_state else rfc3339(due),
            "shred_request": None
            if request is None
            else {
                "requested_by": request[1],
                "requested_at": _iso(request[2]),
                "reason": request[3],
                "approved_by": request[4],
                "approved_at": _iso(request[5]),
                "status": "approved: the next sweep shreds the client"
                if request[4]
                else "awaiting approval by a second admin or account manager",
            },
            "shred": None
            if job is None
            else {
                "step": job.step,
                "started_at": _iso(job.times["started_at"]),
                "shredded_at": _iso(job.times["certified_at"]),
            },
            "certificate_sha256": cert[0] if cert else None,
        }

    # --- show / renew / expire ------------------------------------------------------------------

    def show(self, principal: Principal, name: str) -> dict:
        client = self.ctx.client(name)
        self.ctx.authorize(principal, Action.SLA_SHOW, client=client)
        return self._view(client, self.ctx.now())

    def renew(
        self,
        principal: Principal,
        name: str,
        until: datetime | str,
        *,
        grace_days: int | None = None,
        within: Callable[[sqlite3.Connection], None] | None = None,
    ) -> dict:
        """New SLA end (in the future). Cancels an open early-shred request. Refused once the
        client is shredding or shredded. ``within(conn)``: the caller's own write, first in the
        transaction that changes the SLA, so both commit or neither does (the contract event's
        claim of its id, :meth:`vault.sla.contracts.IntegrationService.receive`); it may raise."""
        until = as_when(until, self.ctx.now(), self.ctx.zone)
        refusal = None if grace_days is None else grace_days_refusal(grace_days)
        if refusal:
            raise InvalidInput(refusal)
        floor = self.ctx.min_grace_days()
        client = self.ctx.client(name)
        self.ctx.authorize(principal, Action.SLA_RENEW, client=client)
        if grace_days is not None and grace_days < floor:
            message = f"grace period below the vault's minimum of {floor} days (changing it takes two people)"
            self.ctx.record_outcome(principal, Action.SLA_RENEW, "deny", client=client, reason=message)
            raise InvalidInput(message)
        self._refuse_if_shredded(
            principal,
            Action.SLA_RENEW,
            client,
            "a shredded client cannot be renewed (add it again as a new client)",
        )
        now = self.ctx.now()
        require_future(until, now, "the new SLA end")
        with self.ctx.db.write() as conn:
            if within is not None:
                within(conn)
            client = self.ctx.client(name, conn)  # re-read under the write lock: the sweep may have won
            if client.shred_state is not None:
                raise ClientUnavailable(f"client {name} is being shredded; it cannot be renewed")
            request = self._open_request(conn, client.id)
            grace = grace_days
            if grace is None:
                # an approved early shred set grace to 0: give the client its grace period back
                grace = request[7] if request is not None and request[7] is not None else client.grace_days
                grace = max(grace, floor)
            rowmac.update(
                conn,
                "clients",
                "sla_end = ?, grace_days = ?, sla_set_by = ?, sla_set_at = ?",
                (to_epoch(until), grace, principal.name, to_epoch(now)),
                "id = ?",
                (client.id,),
            )
            if request is not None:
                rowmac.update(
                    conn,
                    "shred_requests",
                    "cancelled_at = ?, cancelled_by = ?, cancel_reason = 'renewed'",
                    (to_epoch(now), principal.name),
                    "id = ?",
                    (request[0],),
                )
        reason = f"SLA end {rfc3339(client.sla_end)} -> {rfc3339(until)}, grace {grace} days"
        if request is not None:
            reason += "; early-shred request cancelled"
        self.ctx.record_outcome(principal, Action.SLA_RENEW, "ok", client=client, reason=reason)
        result = self._view(self.ctx.client(name), now)
        result["cancelled_shred_request"] = request is not None
        return result

    def expire(
        self,
        principal: Principal,
        name: str,
        *,
        reason: str,
        within: Callable[[sqlite3.Connection], None] | None = None,
    ) -> dict:
        """End the SLA now (access refused at once; the grace period then runs). ``within``: as
        for :meth:`renew`."""
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("give a reason with --reason")
        client = self.ctx.client(name)
        self.ctx.authorize(principal, Action.SLA_EXPIRE, client=client)
        self._refuse_if_shredded(principal, Action.SLA_EXPIRE, client, "nothing to expire")
        now = self.ctx.now()
        floor = self.ctx.min_grace_days()
        with self.ctx.db.write() as conn:
            if within is not None:
                within(conn)
            client = self.ctx.client(name, conn)
            if client.state(now) != "active":
                raise InvalidInput(
                    f"client {name} is already {client.state(now).replace('_', ' ')} "
                    f"(SLA ended {rfc3339(client.sla_end)})"
                )
            # the grace period then runs in full: never below the vault's minimum, so that one
            # person cannot end an SLA and shred at once (issue 11, "instant shred")
            rowmac.update(
                conn,
                "clients",
                "sla_end = ?, grace_days = max(grace_days, ?), sla_set_by = ?, sla_set_at = ?",
                (to_epoch(now), floor, principal.name, to_epoch(now)),
                "id = ?",
                (client.id,),
            )
        self.ctx.record_outcome(
            principal,
            Action.SLA_EXPIRE,
            "ok",
            client=client,
            reason=f"SLA ended early (was {rfc3339_seconds(client.sla_end)}): {reason}",
        )
        return self._view(self.ctx.client(name), now)

    # --- early shred: two-person rule -----------------------------------------------------------

    def request_shred(self, principal: Principal, name: str, *, reason: str) -> dict:
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("give a reason with --reason")
        client = self.ctx.client(name)
        self.ctx.authorize(principal, Action.SLA_REQUEST_SHRED, client=client)
        self._refuse_if_shredded(principal, Action.SLA_REQUEST_SHRED, client, "nothing left to shred")
        now = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            open_request = self._open_request(conn, client.id)
            if open_request is not None:
                raise InvalidInput(
                    f"an early shred of {name} was already requested by "
                    f"{open_request[1]} at {_iso(open_request[2])}"
                )
            rowmac.insert(
                conn,
                "shred_requests",
                {
                    "client_id": client.id,
                    "requested_by": principal.name,
                    "requested_at": now,
                    "reason": reason,
                },
            )
        self.ctx.record_outcome(
            principal,
            Action.SLA_REQUEST_SHRED,
            "ok",
            client=client,
            reason=f"early shred requested: {reason}",
        )
        return self._view(client, self.ctx.now())

    def approve_shred(self, principal: Principal, name: str) -> dict:
        """Second person approves: the SLA ends now with no grace; the next sweep shreds."""
        client = self.ctx.client(name)
        self.ctx.authorize(principal, Action.SLA_APPROVE_SHRED, client=client)
        self._refuse_if_shredded(principal, Action.SLA_APPROVE_SHRED, client, "nothing left to shred")
        now = self.ctx.now()
        with self.ctx.db.write() as conn:
            request = self._open_request(conn, client.id)
            if request is None:
                raise NotFound(
                    f"no early-shred request for {name} (an account manager runs "
                    "'cvault sla request-shred' first)"
                )
            if request[4] is not None:
                raise InvalidInput(f"the early shred of {name} was already approved by {request[4]}")
            single = facts.single_operator(conn)
            why_not = facts.second_person(conn, principal.name, request[1], alone=single)
            if why_not is not None:
                denied = True
            else:
                denied = False
                client = self.ctx.client(name, conn)
                rowmac.update(
                    conn,
                    "shred_requests",
                    "approved_by = ?, approved_at = ?, orig_sla_end = ?, orig_grace_days = ?",
                    (principal.name, to_epoch(now), to_epoch(client.sla_end), client.grace_days),
                    "id = ?",
                    (request[0],),
                )
                rowmac.update(
                    conn,
                    "clients",
                    "sla_end = min(sla_end, ?), grace_days = 0, sla_set_by = ?, sla_set_at = ?",
                    (to_epoch(now), principal.name, to_epoch(now)),
                    "id = ?",
                    (client.id,),
                )
        if denied:
            message = f"two-person rule: {why_not}"
            self.ctx.record_outcome(
                principal, Action.SLA_APPROVE_SHRED, "deny", client=client, reason=message
            )
            raise SelfApproval(message)
        self.ctx.record_outcome(
            principal,
            Action.SLA_APPROVE_SHRED,
            "ok",
            client=client,
            reason=f"early shred requested by {request[1]} approved; SLA ended, shred due at the next sweep",
        )
        return self._view(self.ctx.client(name), now)

    # --- the vault-wide minimum grace period: two-person ----------------------------------------

    def _min_grace_view(self, conn) -> dict:
        row = conn.execute(
            "SELECT value, requested_by, requested_at FROM setting_requests WHERE name = 'min_grace_days'"
            " AND approved_at IS NULL AND cancelled_at IS NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        last = conn.execute(
            "SELECT value, requested_by, approved_by, approved_at FROM setting_requests"
            " WHERE name = 'min_grace_days' AND approved_at IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return {
            "min_grace_days": self.ctx.min_grace_days(conn),
            "pending": (
                {"value": row[0], "requested_by": row[1], "requested_at": _iso(row[2])} if row else None
            ),
            "last_change": (
                {
                    "value": last[0],
                    "requested_by": last[1],
                    "approved_by": last[2],
                    "approved_at": _iso(last[3]),
                }
                if last
                else None
            ),
        }

    def min_grace(self, principal: Principal) -> dict:
        """The vault's minimum grace period, a pending change and the last approved one."""
        self.ctx.authorize(principal, Action.SLA_REQUESTS)
        with self.ctx.db.read() as conn:
            return self._min_grace_view(conn)

    def request_min_grace(self, principal: Principal, days: int) -> dict:
        """Ask to change the minimum grace period (issue 11): nothing changes until a second
        person, outside the requester's lineage, approves (:meth:`approve_min_grace`). A new
        request replaces a pending one."""
        refusal = grace_days_refusal(days, "minimum grace period")
        if refusal:
            raise InvalidInput(refusal)
        self.ctx.authorize(principal, Action.SLA_SET_MIN_GRACE)
        t = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            current = self.ctx.min_grace_days(conn)
            if days == current:
                raise InvalidInput(f"the minimum grace period is already {days} days")
            rowmac.update(
                conn,
                "setting_requests",
                "cancelled_at = ?",
                (t,),
                "name = 'min_grace_days' AND approved_at IS NULL AND cancelled_at IS NULL",
            )
            rowmac.insert(
                conn,
                "setting_requests",
                {"name": "min_grace_days", "value": days, "requested_by": principal.name, "requested_at": t},
            )
            view = self._min_grace_view(conn)
        self.ctx.record_outcome(
            principal,
            Action.SLA_SET_MIN_GRACE,
            "ok",
            reason=f"minimum grace period {current} -> {days} days requested; pending a second person",
        )
        return dict(view, state="pending_approval")

    def approve_min_grace(self, principal: Principal, days: int) -> dict:
        """A second person approves the pending change: it applies at once to later ``client
        add`` and ``sla renew`` (grace periods already set stay as they are). The approver names
        the value she reviewed (``days``): if the pending request asks for anything else (the
        requester replaced it after she looked, review R2) nothing changes, the refusal is
        audited and :class:`ApprovalMismatch` (exit 4, HTTP 403) is raised."""
        refusal = grace_days_refusal(days, "minimum grace period")
        if refusal:
            raise InvalidInput(refusal)
        self.ctx.authorize(principal, Action.SLA_APPROVE_MIN_GRACE)
        t = to_epoch(self.ctx.now())
        why_not = None
        with self.ctx.db.write() as conn:
            pending = rowmac.select(
                conn,
                "setting_requests",
                "name = 'min_grace_days' AND approved_at IS NULL AND cancelled_at IS NULL",
                order="id DESC",
            )
            if not pending:
                raise NotFound("no pending change of the minimum grace period ('cvault sla min-grace DAYS')")
            # the value and who asked decide what applies and who may approve: MAC checked
            request_id, pending_days, by = pending[0][1], pending[0][3], pending[0][4]
            mismatch = None
            if pending_days != days:
                mismatch = (
                    f"the pending change (requested by {by}) is not to {days} days: it was replaced "
                    "after you looked; nothing approved ('cvault sla min-grace' shows it)"
                )
            why_not = facts.second_person(conn, principal.name, by)
            before = self.ctx.min_grace_days(conn)
            if why_not is None and mismatch is None:
                rowmac.update(
                    conn,
                    "setting_requests",
                    "approved_by = ?, approved_at = ?",
                    (principal.name, t),
                    "id = ?",
                    (request_id,),
                )
                self.ctx.save_settings(conn, {"min_grace_days": days})
            view = self._min_grace_view(conn)
        if mismatch is not None:
            self.ctx.record_outcome(principal, Action.SLA_APPROVE_MIN_GRACE, "deny", reason=mismatch)
            raise ApprovalMismatch(mismatch)
        if why_not is not None:
            message = f"two-person rule: {why_not}"
            self.ctx.record_outcome(principal, Action.SLA_APPROVE_MIN_GRACE, "deny", reason=message)
            raise SelfApproval(message)
        self.ctx.settings["min_grace_days"] = days
        self.ctx.record_outcome(
            principal,
            Action.SLA_APPROVE_MIN_GRACE,
            "ok",
            reason=f"minimum grace period {before} -> {days} days (requested by {by})",
        )
        return dict(view, state="approved")

    # --- the account manager's table and queue (the web console's clients and approvals pages) ---

    def overview(
        self,
        principal: Principal,
        *,
        name_contains: str = "",
        state: str = "",
        engineer: str = "",
        within_days: int | None = None,
        sort: str = "client",
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> dict:
        """A page of the client table: SLA state, days left, grace, the engineers who reach each
        client (directly, or ``team`` through a team: :func:`vault.policy.assignment_path`, as
        "who can reach what"), record count and open early-shred request.

        Filters (name contains, case-insensitive; a state; an engineer who reaches it; active with
        at most ``within_days`` left), the sort (:data:`OVERVIEW_SORTS`, then by name) and the
        page (``offset``, ``limit``) are one SQL query over the clients table, so the cost of a
        page does not grow with the number of clients shown elsewhere (bench/console.py: 10,000);
        the shown rows are then read with their row MACs checked, as every decision reads them.
        ``total``: how many clients match the filters."""
        self.ctx.authorize(principal, Action.SLA_SHOW)
        if sort not in OVERVIEW_SORTS:
            raise InvalidInput(f"sort by one of: {', '.join(OVERVIEW_SORTS)}")
        if state and state not in STATES:
            raise InvalidInput(f"state is one of: {', '.join(STATES)}")
        if offset < 0 or (limit is not None and limit < 0) or (within_days is not None and within_days < 0):
            raise InvalidInput("offset, limit and within_days are not negative")
        now = self.ctx.now()
        n = to_epoch(now)
        params: dict = {"now": n, "q": name_contains.strip().lower(), "state": state}
        where = ["(:q = '' OR instr(lower(c.name), :q) > 0)", f"(:state = '' OR {STATE_SQL} = :state)"]
        if within_days is not None:
            where.append(f"(c.shred_state IS NULL AND :now < c.sla_end AND {DAYS_LEFT_SQL} <= :within)")
            params["within"] = within_days
        with self.ctx.db.read() as conn:
            if engineer.strip():
                user = facts.user_row(conn, engineer.strip())
                params["uid"] = user.id if user else -1
                where.append(f"c.id IN ({REACHED_BY_SQL})")
            condition = " AND ".join(where)
            direction = "DESC" if descending else "ASC"
            total = conn.execute(f"SELECT count(*) FROM clients c WHERE {condition}", params).fetchone()[0]  # noqa: S608 - constant SQL fragments; values are bound
            page = [
                row[0]
                for row in conn.execute(
                    f"SELECT c.id FROM clients c WHERE {condition}"  # noqa: S608 - constant SQL fragments; values are bound
                    f" ORDER BY {OVERVIEW_SORTS[sort]} {direction}, c.name {direction}"
                    " LIMIT :limit OFFSET :offset",
                    {**params, "limit": -1 if limit is None else limit, "offset": offset},
                )
            ]
            marks = ", ".join("?" * len(page)) or "NULL"
            by_id = {c.id: c for c in store_clients.all_clients(conn, f"id IN ({marks})", tuple(page))}
            counted = conn.execute(
                f"SELECT client_id, count(*) FROM records WHERE client_id IN ({marks}) GROUP BY client_id",  # noqa: S608
                tuple(page),
            )
            records = dict(counted.fetchall())
            reach = facts.open_paths(conn, page, now)
            requests = {cid: self._open_request(conn, cid) for cid in page}
        rows = []
        for cid in page:
            client = by_id[cid]
            end = to_epoch(client.sla_end)
            request = requests[cid]
            engineers = []
            for who, path in sorted(reach[cid].items()):
                reached, via = policy.assignment_path(path, now)
                if reached:
                    engineers.append({"user": who, "team": via})
            rows.append(
                {
                    "client": client.name,
                    "state": client.state(now),
                    "sla_end": rfc3339(client.sla_end),
                    "days_left": (end - n) // DAY if end > n else -((n - end + DAY - 1) // DAY),
                    "grace_days": client.grace_days,
                    "shred_due": None if client.shred_state else _iso(end + client.grace_days * DAY),
                    "engineers": engineers,
                    "records": records.get(cid, 0),
                    "shred_request": None
                    if request is None
                    else {
                        "requested_by": request[1],
                        "requested_at": _iso(request[2]),
                        "approved_by": request[4],
                    },
                }
            )
        return {"total": total, "offset": offset, "rows": rows}

    def requests(self, principal: Principal) -> list[dict]:
        """Every open two-person request of the SLA service, oldest first: early shreds
        (``kind`` ``early_shred``; approved or awaiting a second person) and pending changes of
        vault settings (``kind`` ``setting``: ``setting`` names it, ``value`` the value asked,
        ``current`` the value now; today the minimum grace period, ``sla min-grace``).
        ``yours`` marks the ones the principal made; ``cannot_approve`` says why the principal
        may not approve one (the two-person rule of :func:`vault.policy.distinct_people`, or
        None), so the queue shows the rule where it refuses."""
        self.ctx.authorize(principal, Action.SLA_REQUESTS)
        out = []
        with self.ctx.db.read() as conn:
            single = facts.single_operator(conn)

            def why_not(by: str) -> str | None:
                return facts.second_person(conn, principal.name, by, alone=single)

            for name, by, at, reason, approved_by, approved_at in conn.execute(
                "SELECT c.name, r.requested_by, r.requested_at, r.reason, r.approved_by, r.approved_at"
                " FROM shred_requests r JOIN clients c ON c.id = r.client_id"
                " WHERE r.cancelled_at IS NULL AND r.executed_at IS NULL ORDER BY r.requested_at, c.name"
            ).fetchall():
                out.append(
                    {
                        "client": name,
                        "kind": "early_shred",
                        "requested_by": by,
                        "requested_at": _iso(at),
                        "reason": reason,
                        "approved_by": approved_by,
                        "approved_at": _iso(approved_at),
                        "yours": by == principal.name,
                        "cannot_approve": why_not(by),
                    }
                )
            # who asked decides who may approve: the rows' MACs checked, as approve_min_grace does
            for _, _, setting, value, by, at, _, _, _ in rowmac.select(
                conn, "setting_requests", "approved_at IS NULL AND cancelled_at IS NULL", order="id"
            ):
                current = self.ctx.min_grace_days(conn) if setting == "min_grace_days" else None
                out.append(
                    {
                        "client": None,
                        "kind": "setting",
                        "setting": setting,
                        "value": value,
                        "current": current,
                        "requested_by": by,
                        "requested_at": _iso(at),
                        "reason": f"{SETTING_LABELS.get(setting, setting)}: {current} -> {value} days",
                        "approved_by": None,
                        "approved_at": None,
                        "yours": by == principal.name,
                        "cannot_approve": why_not(by),
                    }
                )
        out.sort(key=lambda r: (r["requested_at"] or "", r["client"] or ""))
        return out

    # --- upcoming -------------------------------------------------------------------------------

    def upcoming(self, principal: Principal, within: timedelta | str = "30d") -> list[dict]:
        """SLA ends and shreds due within ``within`` (and shreds overdue or unfinished)."""
        within = as_duration(within)
        self.ctx.authorize(principal, Action.SLA_UPCOMING)
        now = self.ctx.now()
        horizon = to_epoch(now + within)
        rows = self.ctx.db.all(
            "SELECT name, sla_end, grace_days FROM clients WHERE shred_state IS NULL AND"
            " (sla_end <= ? OR sla_end + grace_days * 86400 <= ?)",
            (horizon, horizon),
        )
        out = []
        for name, sla_end, grace in rows:
            due = sla_end + grace * DAY
            n = to_epoch(now)
            if sla_end > n:
                event, at = "sla_end", sla_end
            elif due > n:
                event, at = "shred_due", due
            else:
                event, at = "shred_overdue", due
            out.append(
                {
                    "client": name,
                    "event": event,
                    "at": rfc3339(from_epoch(at)),
                    "sla_end": rfc3339(from_epoch(sla_end)),
                    "grace_days": grace,
                    "shred_due": rfc3339(from_epoch(due)),
                    "state": "active" if sla_end > n else ("expired" if due > n else "shred_pending"),
                }
            )
        for _client_id, name in self.ctx.db.all(RESUME_SQL):
            out.append(
                {
                    "client": name,
                    "event": "shred_unfinished",
                    "at": rfc3339(now),
                    "sla_end": None,
                    "grace_days": None,
                    "shred_due": None,
                    "state": "shredding",
                }
            )
        out.sort(key=lambda r: (r["at"], r["client"]))
        return out

    # --- sweep ----------------------------------------------------------------------------------

    def due(self, now: datetime | None = None) -> list[dict]:
        """Clients to shred now: unfinished shreds first, then every live client past its grace."""
        when = to_epoch(now or self.ctx.now())
        resume = [{"client": n, "id": i, "action": "resume"} for i, n in self.ctx.db.all(RESUME_SQL)]
        fresh = [{"client": n, "id": i, "action": "shred"} for i, n in self.ctx.db.all(DUE_SQL, (when,))]
        return resume + fresh

    def sweep(
        self,
        principal: Principal,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
        every: timedelta | str | None = None,
    ) -> dict:
        """Shred every client due (idempotent; one sweep at a time per vault).

        A second sweep started while one runs does nothing and reports ``skipped`` (exit 0): the
        running one will shred everything due, and cron or the timer runs again later.

        ``every``: how often this sweep is scheduled (cron, the timer, the service); a sweep that
        finishes with nothing unfinished records its time and schedule, and ``doctor`` warns
        when that is older than the schedule (docs/sla.md section 2)."""
        self.ctx.authorize(principal, Action.SLA_SWEEP)
        now = self.ctx.now()
        schedule = as_duration(every) if every is not None else None
        if dry_run:
            return {"dry_run": True, "due": self.due(now), "shredded": [], "failed": [], "skipped": None}
        with sweep_lock(self.ctx.home.locks) as acquired:
            if not acquired:
                return {
                    "dry_run": False,
                    "due": [],
                    "shredded": [],
                    "failed": [],
                    "skipped": "another sweep is running",
                }
            due = self.due(now)
            if not due:
                self.ctx.audit.checkpoint()  # a signed head at every sweep (issue 4)
                self.record_sweep(ok=True, schedule=schedule)
                return {"dry_run": False, "due": [], "shredded": [], "failed": [], "skipped": None}
            shredder = Shredder(self.ctx, principal, pause=self.shred_pause)
            done, failed = [], []
            for count, item in enumerate(due, 1):
                try:
                    finished = self._shred_one(principal, shredder, item, to_epoch(now))
                except ShredIncomplete as exc:
                    failed.append({"client": item["client"], "error": exc.message})
                except IntegrityFailure as exc:
                    # a tampered shred job, or a custody step the custodian contradicts (review
                    # R11): audited, refused (exit 6), never certified
                    self.ctx.integrity_alarm(principal, exc, Action.SLA_SWEEP.value)
                    raise
                else:
                    if finished:
                        done.append(item["client"])
                if progress:
                    progress(count, len(due))
        self.ctx.record_outcome(
            principal,
            Action.SLA_SWEEP,
            "error" if failed else "ok",
            reason=f"{len(done)} shredded, {len(failed)} unfinished",
        )
        self.ctx.audit.checkpoint()  # every sweep that acted leaves a signed head (issue 4)
        self.record_sweep(ok=not failed, schedule=schedule)
        return {"dry_run": False, "due": due, "shredded": done, "failed": failed, "skipped": None}

    def record_sweep(self, *, ok: bool, schedule: timedelta | None = None) -> None:
        """Remember the last sweep (and the last one that left nothing unfinished) with its
        schedule, in ``meta``: bookkeeping for ``doctor``, not an audit event (the sweep's own
        audit entries are that). The service calls it for its rounds that find nothing due."""
        now = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'last_sweep'").fetchone()
            try:
                last = meta.last_sweep(None if row is None else row[0])
            except IntegrityFailure:
                last = {}  # bookkeeping that decides nothing: an edited record is written anew
            last["run_at"] = now
            last["run_ok"] = ok
            if ok:
                last["ok_at"] = now
            if schedule is not None:
                last["every_seconds"] = int(schedule.total_seconds())
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_sweep', ?)",
                (json.dumps(last, sort_keys=True),),
            )

    def last_sweep(self) -> dict:
        """``{"run_at", "run_ok", "ok_at", "every_seconds"}`` as far as recorded (epoch seconds)."""
        row = self.ctx.db.one("SELECT value FROM meta WHERE key = 'last_sweep'")
        return meta.last_sweep(None if row is None else row[0])

    def _shred_one(self, principal: Principal, shredder: Shredder, item: dict, now: int) -> bool:
        client = self.ctx.client(item["client"])
        if item["action"] == "shred":
            # fail closed: the start is audited before anything changes
            self.ctx.record_outcome(
                principal,
                Action.SLA_SWEEP,
                "ok",
                client=client,
                reason="shred started (SLA ended and grace period passed, or early shred approved)",
            )
            if shredder.begin(client.id, now) is None:
                return False  # renewed in the meantime
        else:
            self.ctx.record_outcome(principal, Action.SLA_SWEEP, "ok", client=client, reason="shred resumed")
        shredder.run(client.id)
        return True

    # --- certificates ---------------------------------------------------------------------------

    def certificate(self, principal: Principal, name: str) -> dict:
        """The signed certificate as a verifiable file document, plus the live remote status
        (``live_status`` is not signed: the signed body records the state at issue time)."""
        client = self.ctx.client(name)
        self.ctx.authorize(principal, Action.SLA_CERTIFICATE, client=client)
        row = self.ctx.db.one(
            "SELECT body, signature FROM shred_certificates WHERE client_id = ?", (client.id,)
        )
        if row is None:
            state = client.state(self.ctx.now())
            raise NotFound(f"no shred certificate for {name}: the client is {state.replace('_', ' ')}")
        # no row MAC covers the certificate (its signature does, checked by whoever verifies
        # it): a signature that is no 64-byte BLOB is exit 6, never converted (review9 R9-5)
        signature = stored.blob(row[1], stored.SIGNATURE_LEN, f"shred_certificates row of client {name}")
        if type(row[0]) is not str:
            raise stored.not_stored(f"shred_certificates row of client {name}")
        doc = certfmt.file_document(
            row[0], signature, AuditSigner(self.ctx.db, self.ctx.keyring).trusted_public_key_text()
        )
        pending = shred_deletes_pending(self.ctx.db.conn, client.id)
        doc["live_status"] = {
            "at": rfc3339(self.ctx.now()),
            "remote_deletes_pending": pending,
            "note": "not signed; the certificate records the state at issue time",
        }
        return doc


def sweep_lock(locks_dir):
    """Non-blocking exclusive lock on ``locks/sweep.lock``; yields whether it was acquired."""
    return exclusive(locks_dir, SWEEP_LOCK)


def load_certificate_file(path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise InvalidInput(f"certificate file {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput(f"{path} is not a cvault shred certificate file") from None
