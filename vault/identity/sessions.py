"""Sessions (docs/identity.md, "Sessions"): login, resume, step-up, logout, whoami, passwd.

A session token is 256 random bits (``cvs1_`` prefix). The row is found by the token's SHA-256
(``token_hash``, the session id) and holds ``token_mac``, an HMAC of the token and the user id
under the ``session`` purpose key, checked whenever the token is shown (``resume``); the row's own
MAC (vault.store.rowmac) covers the id, the user, every time and the token MAC, so a row inserted,
edited or moved to another user by someone who can write the file is refused (issue 12).
Sessions last 8 h at most and end after 30 min without use (settings).
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

from vault import crypto
from vault.clock import from_epoch, rfc3339, to_epoch
from vault.errors import AccessDenied, AuthenticationFailed, InvalidInput, VaultLocked
from vault.identity.factors import FactorsMixin, check_password_rules
from vault.identity.facts import (
    AccountSnapshot,
    end_sessions,
    minutes,
    session_state,
    touch_session,
    user_by_id,
    user_roles,
    user_row,
)
from vault.identity.lockout import GENERIC_FAILURE, lock_state, record_failure
from vault.policy import AuditEvent
from vault.principal import Principal
from vault.store import rowmac
from vault.tuples import NamedTuple

#: wrong step-up codes one session may try per window (issue 11: the check and the count are one
#: write transaction)
STEPUP_MAX_FAILURES = 5
STEPUP_WINDOW_SECONDS = 15 * 60
TOKEN_PREFIX = "cvs1_"  # noqa: S105 - the public prefix of every token, not a token


def token_hash(token: str) -> str:
    """SHA-256 of the token, hex. A plain hash is enough: the token is 256 random bits, so there
    is nothing to guess offline (docs/identity.md, "Sessions")."""
    return crypto.sha256(token.encode("utf-8")).hex()


def new_token() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(crypto.random_bytes(32)).decode().rstrip("=")


def insert_session(
    conn, keyring, token: str, user_id: int, at: int, *, stepup_at: int | None, origin: str
) -> str:
    """The one ``INSERT INTO sessions``: the token's hash (the session id), its keyed MAC binding
    the user, and the row's MAC. Returns the session id."""
    digest = token_hash(token)
    rowmac.insert(
        conn,
        "sessions",
        {
            "token_hash": digest,
            "user_id": user_id,
            "created_at": at,
            "last_seen": at,
            "stepup_at": stepup_at,
            "origin": origin,
            "token_mac": keyring.session_token_mac(token, user_id),
        },
    )
    return digest


class LoginResult(NamedTuple):
    token: str  # the bearer credential: give it to the user, never log or store it
    principal: Principal
    expires_at: datetime

    def as_dict(self) -> dict:  # no token: callers store it in the session file themselves
        return {
            "user": self.principal.name,
            "roles": sorted(self.principal.roles),
            "expires_at": rfc3339(self.expires_at),
        }


class SessionsMixin(FactorsMixin):
    def login(
        self,
        name: str,
        password: str,
        *,
        totp: str | None = None,
        recovery_code: str | None = None,
        origin: str = "cli",
    ) -> LoginResult:
        """Password plus a TOTP code (or one recovery code) -> a new session."""
        if totp is None and recovery_code is None:
            raise InvalidInput("a TOTP code (or a recovery code) is needed to log in")
        now, t = self._now()
        with self.ctx.db.read() as conn:
            user = user_row(conn, name)
        if user is None or user.password_hash is None:
            self._dummy_verify(password)
            if user is None:
                self._audit(self._unknown_name(name), AuditEvent.AUTH_LOGIN, "deny", "unknown user", origin)
                raise AuthenticationFailed(GENERIC_FAILURE)
            self._fail(user, AuditEvent.AUTH_LOGIN, "not enrolled yet", origin)
        self._check_not_locked(user, AuditEvent.AUTH_LOGIN, origin)
        if not self._verify_password(user, password, AuditEvent.AUTH_LOGIN, origin):
            self._fail(user, AuditEvent.AUTH_LOGIN, "wrong password", origin)
        if recovery_code is not None:
            self._use_recovery_code(user, recovery_code, "login", AuditEvent.AUTH_LOGIN, origin)
            factor = "password + recovery code"
        else:
            self._accept_totp(user, totp, "login", AuditEvent.AUTH_LOGIN, origin)
            factor = "password + TOTP"
        if user.disabled:
            self._audit(user.name, AuditEvent.AUTH_LOGIN, "deny", f"{name} is disabled", origin)
            raise AccessDenied(f"access denied: {name} is disabled")
        token = new_token()
        digest = token_hash(token)
        with self.ctx.db.write() as conn:
            # review R4: the account may have locked while this attempt waited for Argon2id
            # (parallel guesses): read the lock again under the write lock and refuse
            fresh = user_row(conn, user.name)
            locked_until = lock_state(conn, fresh, t) if fresh is not None else t + 1
            if locked_until is None or locked_until <= t:
                locked_until = None
                self._succeed(conn, user.id)
                if recovery_code is None:
                    conn.execute("UPDATE users SET totp_active = 1 WHERE id = ?", (user.id,))
                insert_session(conn, self.ctx.keyring, token, user.id, t, stepup_at=t, origin=origin)
                roles = user_roles(conn, user.id)
        if locked_until is not None:
            left = minutes(locked_until - t)
            self._audit(
                user.name,
                AuditEvent.AUTH_LOGIN,
                "deny",
                f"account locked for {left} more (locked meanwhile)",
                origin,
            )
            raise VaultLocked(
                f"account {user.name} is locked for {left} more after too many failed attempts "
                "(an admin can unlock it)"
            )
        activated = "" if user.totp_active or recovery_code is not None else "; TOTP factor activated"
        self._audit(user.name, AuditEvent.AUTH_LOGIN, "ok", f"{factor}{activated}", origin)
        expires = from_epoch(t + int(self.ctx.settings["session_absolute_seconds"]))
        principal = Principal(
            name=user.name,
            roles=roles,
            user_id=user.id,
            session_id=digest,
            session_created_at=now,
            stepup_at=now,
            origin=origin,
        )
        return LoginResult(token, principal, expires)

    def resume(self, token: str, *, origin: str = "cli") -> Principal:
        """The principal of a live session. Refuses (exit 3) an unknown, ended or expired one."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            raise AuthenticationFailed("not logged in: run cvault login NAME")
        digest = token_hash(token)
        try:
            return self._resume(token, digest, origin)
        except rowmac.RowTampered as exc:
            self.ctx.integrity_alarm(None, exc, AuditEvent.AUTH_SESSION.value)
            raise

    def _resume(self, token: str, digest: str, origin: str) -> Principal:
        now, t = self._now()
        with self.ctx.db.read() as conn:
            rows = rowmac.select(conn, "sessions", "token_hash = ?", (digest,))
            if not rows:
                raise AuthenticationFailed("not logged in (unknown session): run cvault login NAME")
            _, _, user_id, created, _, stepup, ended, token_mac = rows[0]
            if token_mac is None and ended is not None:
                # a session from before keyed token MACs, ended by the upgrade (rowmac.backfill)
                raise AuthenticationFailed("session ended: run cvault login NAME")
            if not isinstance(token_mac, bytes) or not crypto.constant_time_equal(
                token_mac, self.ctx.keyring.session_token_mac(token, user_id)
            ):
                # an authentic row whose token MAC does not match the token shown: a row built
                # for another token (the MAC covers user and token: cannot happen by accident)
                raise rowmac.RowTampered(
                    "integrity failure: a sessions row does not match its token (edited outside"
                    " cvault?); run cvault doctor"
                )
            user = user_by_id(conn, user_id)  # the user row's MAC checked too
            if user is None:
                raise AuthenticationFailed("not logged in (unknown session): run cvault login NAME")
            name = user.name
            valid, reason, _, touch = session_state(conn, self.ctx.settings, digest, user_id, now, rows=rows)
            roles = user_roles(conn, user_id)
        if not valid:
            if "ended" not in reason:
                with self.ctx.db.write() as conn:
                    rowmac.update(conn, "sessions", "ended_at = ?", (t,), "token_hash = ?", (digest,))
                self._audit(name, AuditEvent.AUTH_SESSION, "deny", reason.split(":")[0], origin)
            raise AuthenticationFailed(f"{reason.split(':')[0]}: run cvault login {name}")
        session = rows[0]
        if touch:
            touch_session(self.ctx.db, digest, now)
            # the row as it now stands (last_seen = max(last_seen, now)), for this request's decision
            session = (*session[:4], max(session[4], to_epoch(now)), *session[5:])
        self.ctx.lend_account(AccountSnapshot(digest, user, session, roles, self.ctx.db.writes))
        return Principal(
            name=name,
            roles=roles,
            user_id=user_id,
            session_id=digest,
            session_created_at=from_epoch(created),
            stepup_at=from_epoch(stepup) if stepup is not None else None,
            origin=origin,
        )

    def step_up(
        self, principal: Principal, code: str | None = None, *, recovery_code: str | None = None
    ) -> dict:
        """Verify a fresh TOTP code (or a recovery code) for the principal's session.

        The throttle check, the code check and the failure count happen in **one** write
        transaction, so parallel guesses cannot all pass the check before any is counted. A
        session gets at most :data:`STEPUP_MAX_FAILURES` wrong codes per
        :data:`STEPUP_WINDOW_SECONDS` (then exit 8 / HTTP 423 until the window passes; logging in
        again opens a new session). Failures also count towards the account's login lockout, but
        the account's lock does not stop a live session's step-up (a stranger's failed logins
        must not take the owner offline), nor does the rolling-hour cap (strangers' failed
        logins count there too): each guess needs a live session, which needs the password and a
        TOTP code, and each session is limited on its own."""
        from vault.identity import totp

        if principal.kind != "user" or not principal.session_id:
            raise AuthenticationFailed("not logged in: run cvault login NAME")
        now, t = self._now()
        origin = principal.origin
        kind = f"{AuditEvent.AUTH_STEPUP.value}:{principal.session_id[:16]}"
        replayed = False
        left = None
        why = None
        count = 0
        with self.ctx.db.write() as conn:
            user = self._require_user(conn, principal.name)
            recent = conn.execute(
                "SELECT count(*) FROM auth_failures WHERE user_id = ? AND kind = ? AND at > ?",
                (user.id, kind, t - STEPUP_WINDOW_SECONDS),
            ).fetchone()[0]
            if recent >= STEPUP_MAX_FAILURES:
                outcome = "throttled"
            else:
                if recovery_code is not None:
                    ok, left = self._spend_recovery_code(conn, user, recovery_code, t)
                    reason = "wrong or used recovery code (step-up)"
                else:
                    given = (code or "").strip().replace(" ", "")
                    step = (
                        totp.match_step(self._unseal_totp(user), given, now)
                        if totp.well_formed(given)
                        else None
                    )
                    ok = step is not None and bool(
                        conn.execute(
                            "UPDATE users SET totp_last_step = ? WHERE id = ? AND"
                            " (totp_last_step IS NULL OR totp_last_step < ?)",
                            (step, user.id, step),
                        ).rowcount
                    )
                    replayed = step is not None and not ok
                    reason = "TOTP code replayed" if replayed else "wrong or malformed TOTP code"
                if ok:
                    self._succeed(conn, user.id)
                    done = rowmac.update(
                        conn,
                        "sessions",
                        "stepup_at = ?, last_seen = max(last_seen, ?)",
                        (t, t),
                        "token_hash = ? AND user_id = ? AND ended_at IS NULL",
                        (principal.session_id, user.id),
                    )
                    outcome = "ok" if done else "ended"
                else:
                    count, why = record_failure(conn, user.id, t, kind)
                    outcome = "failed"
        if outcome == "throttled":
            self._audit(
                user.name, AuditEvent.AUTH_STEPUP, "deny", "step-up throttled for this session", origin
            )
            raise VaultLocked(
                f"step-up locked for this session after {STEPUP_MAX_FAILURES} wrong codes; "
                f"wait {minutes(STEPUP_WINDOW_SECONDS)} or log in again"
            )
        if outcome == "failed":
            if replayed:
                self._audit(
                    user.name,
                    AuditEvent.AUTH_TOTP_REPLAY,
                    "deny",
                    "TOTP time step already used (request: step-up)",
                    origin,
                )
            if recovery_code is not None:
                self._audit_failure(user, AuditEvent.AUTH_RECOVERY_CODE, reason, origin, count, why)
                raise AuthenticationFailed(GENERIC_FAILURE)
            self._audit_failure(user, AuditEvent.AUTH_STEPUP, reason, origin, count, why)
            raise AuthenticationFailed("step-up failed: wrong or already used TOTP code")
        if outcome == "ended":
            raise AuthenticationFailed(f"session ended: run cvault login {principal.name}")
        if recovery_code is not None:
            self._audit(
                user.name,
                AuditEvent.AUTH_RECOVERY_CODE,
                "ok",
                f"recovery code used for step-up; {left} left",
                origin,
            )
        self._audit(user.name, AuditEvent.AUTH_STEPUP, "ok", "TOTP verified for reading secrets", origin)
        window = int(self.ctx.settings["stepup_window_seconds"])
        return {"user": user.name, "stepup_valid_until": rfc3339(now + timedelta(seconds=window))}

    def logout(self, principal: Principal) -> None:
        _, t = self._now()
        with self.ctx.db.write() as conn:
            rowmac.update(
                conn,
                "sessions",
                "ended_at = ?",
                (t,),
                "token_hash = ? AND ended_at IS NULL",
                (principal.session_id,),
            )
        self._audit(principal.name, AuditEvent.AUTH_LOGOUT, "ok", "session ended", principal.origin)

    def logout_all(self, principal: Principal) -> dict:
        """End every live session of the principal's user, this one included ("sign out
        everywhere": the CLI's session files and the web console's cookies alike)."""
        if principal.kind != "user" or principal.user_id is None:
            raise AuthenticationFailed("not logged in: run cvault login NAME")
        _, t = self._now()
        with self.ctx.db.write() as conn:
            ended = end_sessions(conn, principal.user_id, t)
        self._audit(
            principal.name,
            AuditEvent.AUTH_LOGOUT,
            "ok",
            f"signed out everywhere: {ended} session(s) ended",
            principal.origin,
        )
        return {"user": principal.name, "sessions_ended": ended}

    def whoami(self, principal: Principal) -> dict:
        now, _ = self._now()
        s = self.ctx.settings
        with self.ctx.db.read() as conn:
            user = self._require_user(conn, principal.name)
            rows = rowmac.select(conn, "sessions", "token_hash = ?", (principal.session_id or "",))
            roles = user_roles(conn, user.id)
        created, last_seen, stepup = rows[0][3:6] if rows else (to_epoch(now), to_epoch(now), None)
        absolute = created + int(s["session_absolute_seconds"])
        idle = last_seen + int(s["session_idle_seconds"])
        return {
            "user": user.name,
            "roles": sorted(roles),
            "session_started_at": rfc3339(from_epoch(created)),
            # the earlier of the two: when the session ends if it is not used again
            "session_expires_at": rfc3339(from_epoch(min(absolute, idle))),
            "session_idle_expires_at": rfc3339(from_epoch(idle)),
            "session_absolute_expires_at": rfc3339(from_epoch(absolute)),
            "stepup_valid_until": (
                rfc3339(from_epoch(stepup + int(s["stepup_window_seconds"]))) if stepup is not None else None
            ),
            "training_valid_until": (
                rfc3339(from_epoch(user.training_valid_until))
                if user.training_valid_until is not None
                else None
            ),
        }

    def passwd(self, principal: Principal, current: str, new: str) -> None:
        """Change one's own password (the current one is needed); other sessions end."""
        check_password_rules(new)
        with self.ctx.db.read() as conn:
            user = self._require_user(conn, principal.name)
        self._check_not_locked(user, AuditEvent.AUTH_PASSWD, principal.origin)
        if user.password_hash is None or not self._verify_password(
            user, current, AuditEvent.AUTH_PASSWD, principal.origin
        ):
            self._fail(user, AuditEvent.AUTH_PASSWD, "wrong current password", principal.origin)
        phc = crypto.password_hash(new)
        _, t = self._now()
        with self.ctx.db.write() as conn:
            self._succeed(conn, user.id)
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (phc, user.id))
            end_sessions(conn, user.id, t, keep=principal.session_id or "")
        self._audit(
            user.name,
            AuditEvent.AUTH_PASSWD,
            "ok",
            "password changed; other sessions ended",
            principal.origin,
        )
