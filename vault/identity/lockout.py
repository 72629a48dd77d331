"""Lockout (docs/identity.md, "Lockout"): every failed password, TOTP, recovery or enrollment
code counts. 5 consecutive failures lock for 5 min, 10 for 10 min, 15 for 20 min, ... capped at
1 h; a success resets the count. Independently, at most 100 failures in any rolling hour: the
100th locks the account until the oldest of them is an hour old (admin unlock does not lift it).

:class:`LockoutMixin` is the base of the identity service: the clock, the audit helper and the
failure path every factor check ends in.
"""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

from vault.clock import to_epoch
from vault.errors import AuthenticationFailed, NotFound, VaultLocked
from vault.identity.facts import UserRow, minutes, user_by_id, user_row
from vault.policy import Action, AuditEvent
from vault.store import rowmac

LOCK_AFTER = 5
LOCK_BASE_SECONDS = 5 * 60
LOCK_MAX_SECONDS = 3600
HOURLY_CAP = 100
HOUR = 3600
#: failures older than a day are dropped (the rolling-hour cap only needs the last hour)
KEEP_FAILURES_SECONDS = 24 * HOUR

GENERIC_FAILURE = "authentication failed: wrong user name, password or code"


def lock_seconds(failed_count: int) -> int:
    """Lock length that starts when the consecutive-failure count reaches ``failed_count``."""
    if failed_count < LOCK_AFTER or failed_count % LOCK_AFTER:
        return 0
    doublings = failed_count // LOCK_AFTER - 1
    return LOCK_MAX_SECONDS if doublings >= 4 else min(LOCK_BASE_SECONDS << doublings, LOCK_MAX_SECONDS)


def failures_in_last_hour(conn, user_id: int, now: int) -> int:
    return conn.execute(
        "SELECT count(*) FROM auth_failures WHERE user_id = ? AND at > ?", (user_id, now - HOUR)
    ).fetchone()[0]


def cap_until(conn, user_id: int, t: int) -> int:
    rows = [
        r[0]
        for r in conn.execute(
            "SELECT at FROM auth_failures WHERE user_id = ? AND at > ? ORDER BY at, id",
            (user_id, t - HOUR),
        )
    ]
    if len(rows) < HOURLY_CAP:
        return t
    # the window holds len(rows) failures; it drops below the cap once the oldest
    # len(rows) - HOURLY_CAP + 1 of them are an hour old
    return rows[len(rows) - HOURLY_CAP] + HOUR


def lock_state(conn, user: UserRow, t: int) -> int | None:
    """Epoch second until which the account is locked, or None."""
    until = user.locked_until if user.locked_until is not None and user.locked_until > t else None
    if failures_in_last_hour(conn, user.id, t) >= HOURLY_CAP:
        until = max(until or 0, cap_until(conn, user.id, t))
    return until


def record_failure(conn, user_id: int, t: int, kind: str) -> tuple[int, str | None]:
    """In the caller's write transaction: count one failed attempt of ``kind``, lock the account
    if due. Returns (consecutive failures now, why it locked or None)."""
    count = conn.execute("SELECT failed_count FROM users WHERE id = ?", (user_id,)).fetchone()[0] + 1
    conn.execute("INSERT INTO auth_failures (user_id, at, kind) VALUES (?, ?, ?)", (user_id, t, kind))
    conn.execute(
        "DELETE FROM auth_failures WHERE user_id = ? AND at <= ?", (user_id, t - KEEP_FAILURES_SECONDS)
    )
    lock = lock_seconds(count)
    current = conn.execute("SELECT locked_until FROM users WHERE id = ?", (user_id,)).fetchone()[0]
    until = current if current is not None and current > t else None
    why = None
    if lock:
        until = max(until or 0, t + lock)
        why = f"locked for {minutes(lock)} after {count} consecutive failures"
    hourly = failures_in_last_hour(conn, user_id, t)
    if hourly >= HOURLY_CAP:
        cap = cap_until(conn, user_id, t)
        if cap > (until or 0):
            until = cap
            why = f"locked for {minutes(cap - t)}: {hourly} failures in the last hour"
    rowmac.update(conn, "users", "failed_count = ?, locked_until = ?", (count, until), "id = ?", (user_id,))
    return count, why


class LockoutMixin:
    def __init__(self, ctx):
        self.ctx = ctx

    def _now(self) -> tuple[datetime, int]:
        now = self.ctx.now()
        return now, to_epoch(now)

    def _audit(
        self,
        actor: str,
        event: AuditEvent | Action,
        outcome: str,
        reason: str,
        origin: str = "cli",
        client: str | None = None,
    ) -> None:
        self.ctx.audit.append(
            actor=actor, action=event.value, outcome=outcome, reason=reason, origin=origin, client=client
        )

    def _require_user(self, conn, name: str) -> UserRow:
        user = user_row(conn, name)
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user

    def _check_not_locked(self, user: UserRow, event: AuditEvent, origin: str) -> None:
        _, t = self._now()
        with self.ctx.db.read() as conn:
            until = lock_state(conn, user, t)
        if until is not None and until > t:
            self._refuse_locked(user, event, origin, until - t)

    def _refuse_locked(
        self, user: UserRow, event: AuditEvent, origin: str, left: int, note: str = ""
    ) -> NoReturn:
        self._audit(user.name, event, "deny", f"account locked for {minutes(left)} more{note}", origin)
        raise VaultLocked(
            f"account {user.name} is locked for {minutes(left)} more after "
            "too many failed attempts (an admin can unlock it)"
        )

    def _fail(
        self, user: UserRow, event: AuditEvent, reason: str, origin: str, message: str = GENERIC_FAILURE
    ) -> NoReturn:
        """Count one failed attempt, lock if due, audit, and raise. Never returns.

        review4 R4-5: the lock is read again first, under the write lock. A guess that waited
        for its Argon2id turn while parallel guesses locked the account is refused as locked,
        uncounted, exactly as a right guess is then (sessions.login): the answer tells nothing
        of the guess, so a burst gets at most as many verdicts as the lock allows."""
        _, t = self._now()
        with self.ctx.db.write() as conn:
            fresh = user_by_id(conn, user.id)
            until = lock_state(conn, fresh, t) if fresh is not None else None
            if until is None or until <= t:
                until = None
                count, why = record_failure(conn, user.id, t, event.value)
        if until is not None:
            self._refuse_locked(user, event, origin, until - t, " (locked meanwhile)")
        self._audit_failure(user, event, reason, origin, count, why)
        raise AuthenticationFailed(message)

    def _audit_failure(
        self, user: UserRow, event: AuditEvent, reason: str, origin: str, count: int, why: str | None
    ) -> None:
        self._audit(user.name, event, "deny", f"{reason} (failure {count})", origin)
        if why:
            self._audit(user.name, AuditEvent.AUTH_LOCKOUT, "deny", why, origin)

    def _succeed(self, conn, user_id: int) -> None:
        rowmac.update(conn, "users", "failed_count = 0, locked_until = NULL", (), "id = ?", (user_id,))
