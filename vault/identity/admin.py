"""Staff administration (admin role): add, list, show, disable, enable, grant, revoke, unlock,
reset TOTP, training attestations, and the first admin of a new vault. Every change is authorized
with the changed user as ``subject`` (nobody grants, trains or unlocks themselves) and audited.
"""

from __future__ import annotations

from datetime import datetime

from vault import names
from vault.clock import from_epoch, rfc3339, to_epoch
from vault.errors import InvalidInput
from vault.identity.factors import FactorsMixin, check_password_rules
from vault.identity.facts import UserRow, all_users, user_roles, user_row
from vault.identity.lockout import HOURLY_CAP, failures_in_last_hour, lock_state
from vault.policy import Action
from vault.principal import ROLES, Principal


class AdminMixin(FactorsMixin):
    def add(self, principal: Principal, name: str, roles: list[str] | tuple[str, ...]) -> dict:
        """Create a user with roles and a one-time enrollment code (returned once, stored hashed)."""
        names.user_name(name)
        roles = sorted(set(roles))
        if not roles:
            raise InvalidInput("give at least one --role")
        for role in roles:
            if role not in ROLES:
                raise InvalidInput(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        self.ctx.authorize(principal, Action.USER_ADD)
        _, t = self._now()
        with self.ctx.db.write() as conn:
            if user_row(conn, name) is not None:
                raise InvalidInput(f"a user named {name!r} already exists")
            user_id = conn.execute(
                "INSERT INTO users (name, created_at, created_by) VALUES (?, ?, ?)", (name, t, principal.name)
            ).lastrowid
            conn.executemany(
                "INSERT INTO user_roles (user_id, role, granted_at, granted_by) VALUES (?, ?, ?, ?)",
                [(user_id, r, t, principal.name) for r in roles],
            )
            code, expires = self._issue_enrollment(conn, user_id, principal.name, t)
        self.ctx.record_outcome(
            principal,
            Action.USER_ADD,
            "ok",
            reason=f"user {name} added with roles {', '.join(roles)}; enrollment code issued",
        )
        return {
            "name": name,
            "roles": roles,
            "enrollment_code": code,
            "enrollment_expires_at": rfc3339(from_epoch(expires)),
        }

    def bootstrap_admin(self, name: str, password: str, *, actor: str = "system:init") -> dict:
        """The first admin of a new vault, enrolled at once (``cvault init --admin``)."""
        names.user_name(name)
        check_password_rules(password)
        _, t = self._now()
        with self.ctx.db.write() as conn:
            if conn.execute("SELECT count(*) FROM users").fetchone()[0]:
                raise InvalidInput("this vault already has users; an admin adds more with 'user add'")
            user_id = conn.execute(
                "INSERT INTO users (name, created_at, created_by) VALUES (?, ?, ?)", (name, t, actor)
            ).lastrowid
            conn.execute(
                "INSERT INTO user_roles (user_id, role, granted_at, granted_by) VALUES (?, 'admin', ?, ?)",
                (user_id, t, actor),
            )
        self._audit(actor, Action.USER_ADD, "ok", f"first admin {name} created", "cli")
        with self.ctx.db.read() as conn:
            user = self._require_user(conn, name)
        return self._complete_enrollment(user, password, "cli")

    def _state(self, conn, user: UserRow, t: int) -> str:
        if user.disabled:
            return "disabled"
        until = lock_state(conn, user, t)
        if until is not None and until > t:
            return "locked"
        if user.password_hash is None:
            return "enrollment pending"
        return "active" if user.totp_active else "enrolled (first login pending)"

    def _view(self, conn, user: UserRow, t: int) -> dict:
        def when(v):
            return rfc3339(from_epoch(v)) if v is not None else None

        return {
            "name": user.name,
            "roles": sorted(user_roles(conn, user.id)),
            "state": self._state(conn, user, t),
            "training_valid_until": when(user.training_valid_until),
            "totp_active": user.totp_active,
            "created_at": when(user.created_at),
            "enrolled_at": when(user.enrolled_at),
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
            result = change(conn, user, t)
        self.ctx.record_outcome(principal, action, "ok", reason=reason)
        return result

    def _other_admins(self, conn, user_id: int) -> int:
        return conn.execute(
            "SELECT count(*) FROM user_roles r JOIN users u ON u.id = r.user_id"
            " WHERE r.role = 'admin' AND u.disabled = 0 AND u.id != ?",
            (user_id,),
        ).fetchone()[0]

    def disable(self, principal: Principal, name: str) -> dict:
        def change(conn, user, t):
            if "admin" in user_roles(conn, user.id) and not self._other_admins(conn, user.id):
                raise InvalidInput(f"refusing to disable {name}: the last active admin")
            conn.execute("UPDATE users SET disabled = 1 WHERE id = ?", (user.id,))
            conn.execute(
                "UPDATE sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL", (t, user.id)
            )
            return {"name": name, "disabled": True}

        return self._admin_change(
            principal, Action.USER_DISABLE, name, change, f"user {name} disabled; sessions ended"
        )

    def enable(self, principal: Principal, name: str) -> dict:
        def change(conn, user, t):
            conn.execute("UPDATE users SET disabled = 0 WHERE id = ?", (user.id,))
            return {"name": name, "disabled": False}

        return self._admin_change(principal, Action.USER_ENABLE, name, change, f"user {name} enabled")

    def grant(self, principal: Principal, name: str, role: str) -> dict:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r} (roles: {', '.join(ROLES)})")

        def change(conn, user, t):
            conn.execute(
                "INSERT OR IGNORE INTO user_roles (user_id, role, granted_at, granted_by)"
                " VALUES (?, ?, ?, ?)",
                (user.id, role, t, principal.name),
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
            conn.execute("UPDATE users SET failed_count = 0, locked_until = NULL WHERE id = ?", (user.id,))
            capped = failures_in_last_hour(conn, user.id, t) >= HOURLY_CAP
            return {"name": name, "unlocked": True, "hourly_cap_in_force": capped}

        return self._admin_change(principal, Action.USER_UNLOCK, name, change, f"user {name} unlocked")

    def reset_totp(self, principal: Principal, name: str) -> dict:
        """Withdraw the TOTP secret and recovery codes, end sessions, issue a new enrollment code."""

        def change(conn, user, t):
            conn.execute("UPDATE users SET totp_sealed = NULL, totp_active = 0 WHERE id = ?", (user.id,))
            conn.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user.id,))
            conn.execute(
                "UPDATE sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL", (t, user.id)
            )
            code, expires = self._issue_enrollment(conn, user.id, principal.name, t)
            return {
                "name": name,
                "enrollment_code": code,
                "enrollment_expires_at": rfc3339(from_epoch(expires)),
            }

        return self._admin_change(
            principal,
            Action.USER_RESET_TOTP,
            name,
            change,
            f"TOTP of {name} reset; sessions ended; re-enrollment code issued",
        )

    def train(self, principal: Principal, name: str, until: datetime | str) -> dict:
        """Record a data-handling training attestation valid until ``until``."""
        from vault.dates import as_when  # off the secret get path (the resume imports this module)

        until = as_when(until, self.ctx.now())

        def change(conn, user, t):
            conn.execute("UPDATE users SET training_valid_until = ? WHERE id = ?", (to_epoch(until), user.id))
            return {"name": name, "training_valid_until": rfc3339(until)}

        return self._admin_change(
            principal, Action.USER_TRAIN, name, change, f"training of {name} valid until {rfc3339(until)}"
        )
