"""Staff administration (admin role): add, list, show, disable, enable, grant, revoke, unlock,
reset TOTP, training attestations, and the first admin of a new vault. Every change is authorized
with the changed user as ``subject`` (nobody grants, trains or unlocks themselves) and audited.
"""

from __future__ import annotations

from datetime import datetime

from vault import names
from vault.clock import from_epoch, rfc3339, to_epoch
from vault.errors import AccessDenied, AuditAlarm, InvalidInput
from vault.identity.factors import FactorsMixin, check_password_rules
from vault.identity.facts import (
    UserRow,
    all_users,
    bootstrap_open,
    creation,
    end_sessions,
    enrolled_admins,
    full_reset,
    latest_reset,
    lineage,
    note_admins,
    pending_request,
    second_person,
    single_operator,
    suspended,
    user_by_id,
    user_roles,
    user_row,
)
from vault.identity.lockout import HOURLY_CAP, failures_in_last_hour, lock_state
from vault.policy import Action
from vault.principal import ROLES, Principal
from vault.store import rowmac


class AdminMixin(FactorsMixin):
    def add(self, principal: Principal, name: str, roles: list[str] | tuple[str, ...]) -> dict:
        """Request a new account (docs/identity.md, "Separation of duties").

        Two-person vaults: the account is *pending* and no code exists until a different admin
        runs :meth:`approve` (the code goes to the approver). Bootstrap: while the vault has fewer
        than two enrolled admins, an admin adding one more admin (and nothing else) gets the code
        at once, audited as a bootstrap step. Single-operator vaults: the code at once."""
        roles = sorted(set(roles))
        if not roles:
            raise InvalidInput("give at least one --role")
        for role in roles:
            if role not in ROLES:
                raise InvalidInput(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        self.ctx.authorize(principal, Action.USER_ADD)
        try:
            names.user_name(name)
        except InvalidInput as refused:  # "carl\n", "carl ": audited, the name itself not
            self.ctx.record_outcome(principal, Action.USER_ADD, "deny", reason=refused.message)
            raise
        _, t = self._now()
        try:
            return self._add(principal, name, roles, t)
        except AuditAlarm as alarm:  # the chain proof of a bootstrap step (review7 R7-3)
            self.ctx.audit.record_alarm(alarm)
            raise

    def _add(self, principal: Principal, name: str, roles: list[str], t: int) -> dict:
        with self.ctx.db.write() as conn:
            if user_row(conn, name) is not None:
                raise InvalidInput(f"a user named {name!r} already exists")
            mode = self._add_mode(conn, roles, t)
            user_id = self._insert_user(conn, name, t, principal.name, roles)
            approved = mode != "two_person"
            self._insert_request(
                conn,
                user_id,
                "create",
                principal.name,
                t,
                mode,
                approved_by=principal.name if approved else None,
                approved_at=t if approved else None,
            )
            code = expires = None
            if approved:
                code, expires = self._issue_enrollment(conn, user_id, principal.name, t)
        result: dict = {"name": name, "roles": roles, "requested_by": principal.name, "mode": mode}
        if code is None:
            self.ctx.record_outcome(
                principal,
                Action.USER_ADD,
                "ok",
                reason=f"user {name} requested with roles {', '.join(roles)}; pending approval by another "
                "admin",
            )
            return dict(result, state="pending_approval")
        what = {"bootstrap": "bootstrap step", "single_operator": "single-operator vault"}[mode]
        self.ctx.record_outcome(
            principal,
            Action.USER_ADD,
            "ok",
            reason=f"user {name} added with roles {', '.join(roles)} ({what}); enrollment code issued",
        )
        return dict(
            result,
            state="enrollment pending",
            enrollment_code=code,
            enrollment_expires_at=rfc3339(from_epoch(expires or t)),
        )

    @staticmethod
    def _insert_user(conn, name: str, t: int, by: str, roles) -> int:
        """A new user row and its role rows, each MACed (vault.store.rowmac)."""
        user_id = rowmac.insert(conn, "users", {"name": name, "created_at": t, "created_by": by})
        if user_id is None:  # pragma: no cover - a plain INSERT inserts or raises
            raise InvalidInput(f"a user named {name!r} already exists")
        for role in roles:
            rowmac.insert(
                conn, "user_roles", {"user_id": user_id, "role": role, "granted_at": t, "granted_by": by}
            )
        return user_id

    @staticmethod
    def _insert_request(conn, user_id: int, kind: str, by: str, t: int, mode: str, **rest) -> None:
        """The one ``INSERT INTO account_requests`` (MACed): ``rest`` are approved_by/_at,
        confirmed_by/_at."""
        rowmac.insert(
            conn,
            "account_requests",
            {"user_id": user_id, "kind": kind, "requested_by": by, "requested_at": t, "mode": mode, **rest},
        )

    def _add_mode(self, conn, roles: list[str], t: int) -> str:
        if single_operator(conn):
            return "single_operator"
        note_admins(conn)
        # review2 S1: a one-time state of a new vault, never re-opened by disabling an admin
        if (
            roles == ["admin"]
            and enrolled_admins(conn) < 2
            and bootstrap_open(
                conn,
                closed_by_mark=self.ctx.audit.bootstrap_closed(conn),
                chain_proven=lambda: self.ctx.audit.chain_proven(conn),
            )
        ):
            outstanding = conn.execute(
                "SELECT count(*) FROM account_requests r JOIN users u ON u.id = r.user_id"
                " JOIN enrollment e ON e.user_id = u.id"
                " WHERE r.kind = 'create' AND r.mode = 'bootstrap' AND u.password_hash IS NULL"
                " AND e.expires_at > ?",
                (t,),
            ).fetchone()[0]
            if not outstanding:
                return "bootstrap"
        return "two_person"

    def approve(self, principal: Principal, name: str) -> dict:
        """A second admin approves a pending account creation or full reset: the enrollment code
        is issued to the approver, who hands it to the person. The requester cannot approve."""
        self.ctx.authorize(principal, Action.USER_APPROVE, subject=name)
        _, t = self._now()
        with self.ctx.db.write() as conn:
            user = self._require_user(conn, name)
            request = pending_request(conn, user.id)
            if request is None:
                raise InvalidInput(f"{name} has no request waiting for approval")
            # review R9: not the requester, and outside each other's lineage, transitively
            # (alice's second account alice2 is no second person to alice)
            refusal = second_person(conn, principal.name, request.requested_by)
            if refusal is not None and request.requested_by == principal.name:
                refusal = f"{principal.name} requested this and cannot approve it: another admin must"
            if refusal is None:
                refusal = None
                rowmac.update(
                    conn,
                    "account_requests",
                    "approved_by = ?, approved_at = ?",
                    (principal.name, t),
                    "id = ?",
                    (request.id,),
                )
                if request.kind == "reset":
                    self._clear_factors(conn, user.id, t, password=True)
                code, expires = self._issue_enrollment(conn, user.id, principal.name, t)
                roles = sorted(user_roles(conn, user.id))
        if refusal is not None:
            self.ctx.record_outcome(principal, Action.USER_APPROVE, "deny", reason=refusal)
            raise AccessDenied(f"access denied: {refusal}")
        what = "account" if request.kind == "create" else "full reset (roles and assignments suspended)"
        self.ctx.record_outcome(
            principal,
            Action.USER_APPROVE,
            "ok",
            reason=f"{what} of {name} requested by {request.requested_by} approved; enrollment code issued",
        )
        return {
            "name": name,
            "roles": roles,
            "kind": request.kind,
            "requested_by": request.requested_by,
            "approved_by": principal.name,
            "enrollment_code": code,
            "enrollment_expires_at": rfc3339(from_epoch(expires)),
        }

    def _clear_factors(self, conn, user_id: int, t: int, *, password: bool) -> None:
        sets = "totp_sealed = NULL, totp_active = 0" + (
            ", password_hash = NULL, enrolled_at = NULL" if password else ""
        )
        rowmac.update(conn, "users", sets, (), "id = ?", (user_id,))
        conn.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
        conn.execute("DELETE FROM enrollment WHERE user_id = ?", (user_id,))
        end_sessions(conn, user_id, t)

    def bootstrap_admin(
        self, name: str, password: str, *, actor: str = "system:init", single_operator: bool = False
    ) -> dict:
        """The first admin of a new vault, enrolled at once (``cvault init --admin``)."""
        names.user_name(name)
        check_password_rules(password)
        _, t = self._now()
        with self.ctx.db.write() as conn:
            if conn.execute("SELECT count(*) FROM users").fetchone()[0]:
                raise InvalidInput("this vault already has users; an admin adds more with 'user add'")
            roles = ROLES if single_operator else ("admin",)
            user_id = self._insert_user(conn, name, t, actor, roles)
            self._insert_request(
                conn,
                user_id,
                "create",
                actor,
                t,
                "single_operator" if single_operator else "init",
                approved_by=actor,
                approved_at=t,
            )
        what = (
            f"single operator {name} created with every role"
            if single_operator
            else f"first admin {name} created"
        )
        self._audit(actor, Action.USER_ADD, "ok", what, "cli")
        with self.ctx.db.read() as conn:
            user = self._require_user(conn, name)
        return self._complete_enrollment(user, password, "cli")

    def _state(self, conn, user: UserRow, t: int) -> str:
        if user.disabled:
            return "disabled"
        made = creation(conn, user.id)
        if made is not None and made.pending:
            return "pending_approval"
        if suspended(conn, user.id):
            return "suspended"
        until = lock_state(conn, user, t)
        if until is not None and until > t:
            return "locked"
        if user.password_hash is None:
            return "enrollment pending"
        return "active" if user.totp_active else "enrolled (first login pending)"

    def _view(self, conn, user: UserRow, t: int) -> dict:
        def when(v):
            return rfc3339(from_epoch(v)) if v is not None else None

        made = creation(conn, user.id)
        waiting = pending_request(conn, user.id)
        return {
            "name": user.name,
            "roles": sorted(user_roles(conn, user.id)),
            "state": self._state(conn, user, t),
            "training_valid_until": when(user.training_valid_until),
            "totp_active": user.totp_active,
            "created_at": when(user.created_at),
            "enrolled_at": when(user.enrolled_at),
            "requested_by": made.requested_by if made else None,
            "approved_by": made.approved_by if made else None,
            "pending": (
                {
                    "kind": waiting.kind,
                    "requested_by": waiting.requested_by,
                    "requested_at": when(waiting.requested_at),
                }
                if waiting
                else None
            ),
        }

    def list(self, principal: Principal) -> list[dict]:
        self.ctx.authorize(principal, Action.USER_LIST)
        _, t = self._now()
        with self.ctx.db.read() as conn:
            return [self._view(conn, u, t) for u in all_users(conn)]

    def show(self, principal: Principal, name: str) -> dict:
        self.ctx.authorize(principal, Action.USER_SHOW)
        _, t = self._now()
        with self.ctx.db.read() as conn:
            user = self._require_user(conn, name)
            view = self._view(conn, user, t)
            until = lock_state(conn, user, t)
            view["locked_until"] = rfc3339(from_epoch(until)) if until and until > t else None
            view["lineage"] = sorted(lineage(conn, user.id))
            view["creation_mode"] = made.mode if (made := creation(conn, user.id)) else None
            reset = latest_reset(conn, user.id)
            view["latest_reset"] = (
                {
                    "kind": reset.kind,
                    "requested_by": reset.requested_by,
                    "approved_by": reset.approved_by,
                    "confirmed_by": reset.confirmed_by,
                }
                if reset
                else None
            )
            view["consecutive_failures"] = user.failed_count
            view["failures_last_hour"] = failures_in_last_hour(conn, user.id, t)
            view["recovery_codes_left"] = conn.execute(
                "SELECT count(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL", (user.id,)
            ).fetchone()[0]
            view["active_sessions"] = conn.execute(
                "SELECT count(*) FROM sessions WHERE user_id = ? AND ended_at IS NULL AND created_at > ?",
                (user.id, t - int(self.ctx.settings["session_absolute_seconds"])),
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT c.name, a.created_at, a.ends_at FROM assignments a"
                " JOIN clients c ON c.id = a.client_id WHERE a.user_id = ?"
                " AND a.ended_at IS NULL ORDER BY c.name",
                (user.id,),
            ).fetchall()
        view["assignments"] = [
            {
                "client": c,
                "since": rfc3339(from_epoch(s)),
                "until": rfc3339(from_epoch(e)) if e is not None else None,
            }
            for c, s, e in rows
        ]
        return view

    def _admin_change(self, principal: Principal, action: Action, name: str, change, reason: str):
        """authorize -> apply ``change(conn, user, t)`` under the write lock -> audit the outcome."""
        self.ctx.authorize(principal, action, subject=name)
        _, t = self._now()
        with self.ctx.db.write() as conn:
            user = self._require_user(conn, name)
            note_admins(conn)  # review2 S1: before an admin is disabled or revoked ...
            result = change(conn, user, t)
            note_admins(conn)  # ... and after one is granted or enabled
        self.ctx.record_outcome(principal, action, "ok", reason=reason)
        return result

    def _other_admins(self, conn, user_id: int) -> int:
        """Enabled admins other than ``user_id`` (each row's MAC checked)."""
        count = 0
        for _, other, *_ in rowmac.select(conn, "user_roles", "role = 'admin' AND user_id != ?", (user_id,)):
            user = user_by_id(conn, other)
            count += user is not None and not user.disabled
        return count

    def disable(self, principal: Principal, name: str) -> dict:
        def change(conn, user, t):
            if "admin" in user_roles(conn, user.id) and not self._other_admins(conn, user.id):
                raise InvalidInput(f"refusing to disable {name}: the last active admin")
            rowmac.update(conn, "users", "disabled = 1", (), "id = ?", (user.id,))
            end_sessions(conn, user.id, t)
            return {"name": name, "disabled": True}

        return self._admin_change(
            principal, Action.USER_DISABLE, name, change, f"user {name} disabled; sessions ended"
        )

    def enable(self, principal: Principal, name: str) -> dict:
        def change(conn, user, t):
            rowmac.update(conn, "users", "disabled = 0", (), "id = ?", (user.id,))
            return {"name": name, "disabled": False}

        return self._admin_change(principal, Action.USER_ENABLE, name, change, f"user {name} enabled")

    def grant(self, principal: Principal, name: str, role: str) -> dict:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r} (roles: {', '.join(ROLES)})")

        def change(conn, user, t):
            rowmac.insert(
                conn,
                "user_roles",
                {"user_id": user.id, "role": role, "granted_at": t, "granted_by": principal.name},
                or_ignore=True,
            )
            return {"name": name, "roles": sorted(user_roles(conn, user.id))}

        return self._admin_change(
            principal, Action.USER_GRANT, name, change, f"role {role} granted to {name}"
        )

    def revoke(self, principal: Principal, name: str, role: str) -> dict:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r} (roles: {', '.join(ROLES)})")

        def change(conn, user, t):
            held = user_roles(conn, user.id)
            if role not in held:
                raise InvalidInput(f"{name} does not have the role {role}")
            if role == "admin" and not self._other_admins(conn, user.id):
                raise InvalidInput(f"refusing to revoke admin from {name}: the last active admin")
            conn.execute("DELETE FROM user_roles WHERE user_id = ? AND role = ?", (user.id, role))
            return {"name": name, "roles": sorted(held - {role})}

        return self._admin_change(
            principal, Action.USER_REVOKE, name, change, f"role {role} revoked from {name}"
        )

    def unlock(self, principal: Principal, name: str) -> dict:
        """Clear the lock and the consecutive-failure count (the rolling-hour cap still applies)."""

        def change(conn, user, t):
            rowmac.update(conn, "users", "failed_count = 0, locked_until = NULL", (), "id = ?", (user.id,))
            capped = failures_in_last_hour(conn, user.id, t) >= HOURLY_CAP
            return {"name": name, "unlocked": True, "hourly_cap_in_force": capped}

        return self._admin_change(principal, Action.USER_UNLOCK, name, change, f"user {name} unlocked")

    def reset_totp(self, principal: Principal, name: str) -> dict:
        """Withdraw the TOTP secret and recovery codes, end sessions, issue a re-enrollment code.
        The password stays: re-enrolling needs the code *and* the user's current password, so the
        admin who holds the code cannot complete it (the user's own factor is still needed)."""

        def change(conn, user, t):
            if user.password_hash is None:
                raise InvalidInput(f"{name} has no password yet: a full reset ('user reset') is needed")
            self._clear_factors(conn, user.id, t, password=False)
            self._insert_request(
                conn,
                user.id,
                "reset_totp",
                principal.name,
                t,
                self._mode(conn),
                approved_at=t,
                confirmed_by=principal.name,
                confirmed_at=t,
            )
            code, expires = self._issue_enrollment(conn, user.id, principal.name, t)
            return {
                "name": name,
                "enrollment_code": code,
                "enrollment_expires_at": rfc3339(from_epoch(expires)),
                "needs_current_password": True,
            }

        return self._admin_change(
            principal,
            Action.USER_RESET_TOTP,
            name,
            change,
            f"TOTP of {name} reset; sessions ended; re-enrollment code issued (needs the current password)",
        )

    def _mode(self, conn) -> str:
        return "single_operator" if single_operator(conn) else "two_person"

    def reset(self, principal: Principal, name: str) -> dict:
        """Request a full reset (password and TOTP) of an account: pending until another admin
        approves (:meth:`approve`), which ends its sessions, clears its factors, issues the code to
        the approver and suspends its roles and assignments until :meth:`confirm`. In a
        single-operator vault it is done at once and nothing is suspended."""

        def change(conn, user, t):
            if pending_request(conn, user.id) is not None:
                raise InvalidInput(f"{name} already has a request waiting for approval")
            alone = single_operator(conn)
            if alone:
                self._insert_request(
                    conn,
                    user.id,
                    "reset",
                    principal.name,
                    t,
                    "single_operator",
                    approved_by=principal.name,
                    approved_at=t,
                    confirmed_by=principal.name,
                    confirmed_at=t,
                )
            else:
                self._insert_request(conn, user.id, "reset", principal.name, t, "two_person")
            if not alone:
                return {
                    "name": name,
                    "kind": "reset",
                    "state": "pending_approval",
                    "requested_by": principal.name,
                }
            self._clear_factors(conn, user.id, t, password=True)
            code, expires = self._issue_enrollment(conn, user.id, principal.name, t)
            return {
                "name": name,
                "kind": "reset",
                "state": "enrollment pending",
                "requested_by": principal.name,
                "enrollment_code": code,
                "enrollment_expires_at": rfc3339(from_epoch(expires)),
            }

        return self._admin_change(
            principal, Action.USER_RESET, name, change, f"full reset of {name} requested"
        )

    def confirm(self, principal: Principal, name: str) -> dict:
        """Re-confirm the roles and assignments of an account suspended by a full reset; only
        someone who neither requested nor approved that reset (nor the account's creation)."""

        self.ctx.authorize(principal, Action.USER_CONFIRM, subject=name)
        with self.ctx.db.read() as conn:
            user = self._require_user(conn, name)
            # review2 S8: the full reset that suspends the account, never a later reset-totp
            reset = full_reset(conn, user.id)
            # review R9: the confirmer is a second person to whoever requested and approved the
            # reset, transitively (mallory, made by alice + alice2, cannot re-confirm for them)
            refusal = None
            for person in sorted(reset.people()) if reset is not None else ():
                refusal = refusal or second_person(conn, principal.name, person)
        if refusal is not None:
            self.ctx.record_outcome(principal, Action.USER_CONFIRM, "deny", reason=refusal)
            raise AccessDenied(f"access denied: {refusal}")

        def change(conn, user, t):
            if not suspended(conn, user.id):
                raise InvalidInput(f"{name} is not suspended")
            row = full_reset(conn, user.id)
            if row is None or reset is None or row.id != reset.id:  # another reset since the check
                raise InvalidInput(f"{name} was reset again meanwhile: confirm again")
            rowmac.update(
                conn,
                "account_requests",
                "confirmed_by = ?, confirmed_at = ?",
                (principal.name, t),
                "id = ?",
                (row.id,),
            )
            return {"name": name, "roles": sorted(user_roles(conn, user.id)), "suspended": False}

        return self._admin_change(
            principal,
            Action.USER_CONFIRM,
            name,
            change,
            f"roles and assignments of {name} re-confirmed after a full reset",
        )

    def train(self, principal: Principal, name: str, until: datetime | str) -> dict:
        """Record a data-handling training attestation valid until ``until``."""
        from vault.dates import as_when  # off the secret get path (the resume imports this module)

        until = as_when(until, self.ctx.now(), self.ctx.zone)

        def change(conn, user, t):
            rowmac.update(conn, "users", "training_valid_until = ?", (to_epoch(until),), "id = ?", (user.id,))
            return {"name": name, "training_valid_until": rfc3339(until)}

        return self._admin_change(
            principal, Action.USER_TRAIN, name, change, f"training of {name} valid until {rfc3339(until)}"
        )
