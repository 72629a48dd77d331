"""Staff identity (SPEC 5): users, enrollment, login, sessions, TOTP step-up, lockout.

The numbers (docs/identity.md has the reasoning):

* enrollment code: 60 bits, one use, 24 h; recovery codes: 10 x 60 bits, one use each; both stored
  as keyed hashes (:mod:`vault.auth.codes`).
* password: Argon2id PHC string (``vault.crypto.password_hash``), at least 12 characters.
* TOTP (:mod:`vault.auth.totp`): 30 s, 6 digits, +-1 step; a time step is accepted at most once
  per user (``users.totp_last_step`` only moves forward, in one conditional UPDATE, so two
  processes racing with the same code cannot both win).
* lockout: every failed password, TOTP, recovery or enrollment code counts. 5 consecutive
  failures lock for 5 min, 10 for 10 min, 15 for 20 min, ... capped at 1 h; a success resets the
  count. Independently, at most 100 failures in any rolling hour: the 100th locks the account
  until the oldest of them is an hour old (admin unlock does not lift this cap).
* session: 256-bit random token, only its SHA-256 stored; 8 h absolute, 30 min idle (settings).

The module-level functions read the identity tables for :meth:`VaultContext.gather_facts`; they
are imported on the ``secret get`` path and so import nothing heavy (pyotp only when a code is
checked, Argon2 only when a password is).
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import NamedTuple

from vault import crypto, names, policy
from vault.clock import from_epoch, rfc3339, to_epoch
from vault.errors import (
    AccessDenied,
    AuthenticationFailed,
    CryptoError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    VaultLocked,
)
from vault.policy import Action
from vault.principal import ROLES, Principal

ENROLL_SECONDS = 24 * 3600
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
LOCK_AFTER = 5
LOCK_BASE_SECONDS = 5 * 60
LOCK_MAX_SECONDS = 3600
HOURLY_CAP = 100
HOUR = 3600
TOUCH_SECONDS = 60  # last_seen is rewritten at most once a minute (idle timeout precision)
TOKEN_PREFIX = "cvs1_"

GENERIC_FAILURE = "authentication failed: wrong user name, password or code"
ENROLL_FAILURE = "enrollment failed: unknown user or wrong enrollment code"

USER_COLUMNS = (
    "id, name, password_hash, totp_sealed, totp_active, totp_last_step, failed_count,"
    " locked_until, training_valid_until, disabled, created_at, enrolled_at"
)

# A PHC string to verify against when the user does not exist, so that an unknown name costs the
# same Argon2 time as a wrong password (no user enumeration by timing). Computed once, lazily.
_DUMMY_PHC: list[str] = []


class UserRow(NamedTuple):
    id: int
    name: str
    password_hash: str | None
    totp_sealed: bytes | None
    totp_active: bool
    totp_last_step: int | None
    failed_count: int
    locked_until: int | None
    training_valid_until: int | None
    disabled: bool
    created_at: int
    enrolled_at: int | None


def _user_from_row(row) -> UserRow:
    return UserRow(
        row[0],
        row[1],
        row[2],
        row[3],
        bool(row[4]),
        row[5],
        row[6],
        row[7],
        row[8],
        bool(row[9]),
        row[10],
        row[11],
    )


def lock_seconds(failed_count: int) -> int:
    """Lock length that starts when the consecutive-failure count reaches ``failed_count``."""
    if failed_count < LOCK_AFTER or failed_count % LOCK_AFTER:
        return 0
    doublings = failed_count // LOCK_AFTER - 1
    return LOCK_MAX_SECONDS if doublings >= 4 else min(LOCK_BASE_SECONDS << doublings, LOCK_MAX_SECONDS)


def token_hash(token: str) -> str:
    """SHA-256 of the token, hex. A plain hash is enough: the token is 256 random bits, so there
    is nothing to guess offline (docs/identity.md, "Sessions")."""
    return crypto.sha256(token.encode("utf-8")).hex()


def new_token() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(crypto.random_bytes(32)).decode().rstrip("=")


def _minutes(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{max(1, -(-seconds // 60))} min"


# --- facts for the policy (read in one snapshot by VaultContext.gather_facts) -----------------------


def user_row(conn, name: str) -> UserRow | None:
    row = conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
    return _user_from_row(row) if row else None


def user_roles(conn, user_id: int) -> frozenset[str]:
    return frozenset(r[0] for r in conn.execute("SELECT role FROM user_roles WHERE user_id = ?", (user_id,)))


def failures_in_last_hour(conn, user_id: int, now: int) -> int:
    return conn.execute(
        "SELECT count(*) FROM auth_failures WHERE user_id = ? AND at > ?", (user_id, now - HOUR)
    ).fetchone()[0]


def session_state(
    conn, settings: dict, session_id: str | None, user_id: int, now: datetime
) -> tuple[bool, str, datetime | None, bool]:
    """(valid, reason if not, step-up time, last_seen needs a refresh)."""
    if not session_id:
        return False, "no session: log in first", None, False
    row = conn.execute(
        "SELECT user_id, created_at, last_seen, stepup_at, ended_at FROM sessions WHERE token_hash = ?",
        (session_id,),
    ).fetchone()
    if row is None or row[0] != user_id:
        return False, "no such session: log in again", None, False
    _, created, last_seen, stepup, ended = row
    t = to_epoch(now)
    if ended is not None:
        return False, "session ended: log in again", None, False
    absolute, idle = int(settings["session_absolute_seconds"]), int(settings["session_idle_seconds"])
    if t >= created + absolute:
        return False, f"session expired ({_minutes(absolute)} limit): log in again", None, False
    if t - last_seen >= idle:
        return False, f"session idle for {_minutes(idle)}: log in again", None, False
    return True, "", (from_epoch(stepup) if stepup is not None else None), t - last_seen >= TOUCH_SECONDS


def account_facts(
    conn, settings: dict, principal: Principal, now: datetime
) -> tuple[policy.AccountFacts, int | None, bool]:
    user = user_row(conn, principal.name)
    if user is None:
        return (
            policy.AccountFacts(
                disabled=True,
                session_valid=False,
                roles=frozenset(),
                session_reason=f"{principal.name} is not a known user",
            ),
            None,
            False,
        )
    valid, reason, stepup_at, touch = session_state(conn, settings, principal.session_id, user.id, now)
    return (
        policy.AccountFacts(
            disabled=user.disabled,
            locked_until=from_epoch(user.locked_until) if user.locked_until is not None else None,
            training_valid_until=(
                from_epoch(user.training_valid_until) if user.training_valid_until is not None else None
            ),
            session_valid=valid,
            session_reason=reason,
            stepup_at=stepup_at,
            roles=user_roles(conn, user.id),
        ),
        user.id,
        touch,
    )


def assignment_state(
    conn, client_id: str, user_id: int | None, now: datetime
) -> tuple[bool, datetime | None, bool, dict | None]:
    """(assigned, ends_at, ended, view). An unassigned or lapsed assignment stays visible as
    "ended" so that a refusal says so (and the audit report can count reads after the end)."""
    if user_id is None:
        return False, None, False, None
    rows = conn.execute(
        "SELECT created_at, created_by, ends_at, ended_at, ended_by FROM assignments"
        " WHERE client_id = ? AND user_id = ? ORDER BY id DESC",
        (client_id, user_id),
    ).fetchall()
    if not rows:
        return False, None, False, None
    open_rows = [r for r in rows if r[3] is None]
    row = open_rows[0] if open_rows else rows[0]
    created, by, ends_at, ended_at, ended_by = row
    ends = from_epoch(ends_at) if ends_at is not None else None
    ended = ended_at is not None or (ends is not None and now >= ends)
    view = {
        "since": rfc3339(from_epoch(created)),
        "by": by,
        "until": rfc3339(ends) if ends else None,
        "ended_at": rfc3339(from_epoch(ended_at)) if ended_at is not None else None,
        "ended": ended,
    }
    return True, ends, ended, view


def client_facts(conn, client, user_id: int | None, now: datetime) -> policy.ClientFacts:
    assigned, ends, ended, _ = assignment_state(conn, client.id, user_id, now)
    return policy.ClientFacts(
        name=client.name,
        state=client.state(now),
        assigned=assigned,
        assignment_ends_at=ends,
        assignment_ended=ended,
    )


def touch_session(db, session_id: str, now: datetime) -> None:
    with db.write() as conn:
        conn.execute(
            "UPDATE sessions SET last_seen = max(last_seen, ?) WHERE token_hash = ? AND ended_at IS NULL",
            (to_epoch(now), session_id),
        )


def visible_client_ids(ctx, principal: Principal) -> set[str] | None:
    """None: the principal sees every client; otherwise the ids of its current assignments."""
    if principal.kind != "user":
        return None
    now = ctx.now()
    with ctx.db.read() as conn:
        user = user_row(conn, principal.name)
        if user is None:
            return set()
        if policy.sees_all_clients(user_roles(conn, user.id)):
            return None
        rows = conn.execute(
            "SELECT client_id, ends_at FROM assignments WHERE user_id = ? AND ended_at IS NULL", (user.id,)
        ).fetchall()
    t = to_epoch(now)
    return {cid for cid, ends in rows if ends is None or t < ends}


# --- the service ------------------------------------------------------------------------------------


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


def check_password_rules(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"password too long: at most {MAX_PASSWORD} characters")
    if any(not ch.isprintable() for ch in password):
        raise InvalidInput("password contains control characters")


def _audit_name(name: str) -> str:
    """A typed user name as it may appear in the audit log: only if it is a valid user name (so
    that a password typed into the name field by mistake is not recorded verbatim)."""
    try:
        return names.user_name(name)
    except InvalidInput:
        return "(invalid user name)"


class UserService:
    def __init__(self, ctx):
        self.ctx = ctx

    # --- helpers ------------------------------------------------------------------------------

    def _now(self) -> tuple[datetime, int]:
        now = self.ctx.now()
        return now, to_epoch(now)

    def _audit(
        self,
        actor: str,
        action: str,
        outcome: str,
        reason: str,
        origin: str = "cli",
        client: str | None = None,
    ) -> None:
        self.ctx.audit.append(
            actor=actor, action=action, outcome=outcome, reason=reason, origin=origin, client=client
        )

    def _require_user(self, conn, name: str) -> UserRow:
        user = user_row(conn, name)
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user

    def _code_key(self) -> bytes:
        from vault.auth import codes

        return codes.hash_key(self.ctx.keyring)

    def _seal_totp(self, user_id: int, secret: str) -> bytes:
        return self.ctx.keyring.seal_for("totp-seal", secret.encode(), "user", user_id)

    def _unseal_totp(self, user: UserRow) -> str:
        if user.totp_sealed is None:
            raise AuthenticationFailed(GENERIC_FAILURE)
        try:
            return self.ctx.keyring.unseal_for("totp-seal", user.totp_sealed, "user", user.id).decode()
        except (CryptoError, UnicodeDecodeError):
            raise IntegrityFailure(
                f"integrity failure: TOTP secret of user {user.name} failed authentication"
            ) from None

    @staticmethod
    def _dummy_verify(password: str) -> None:
        if not _DUMMY_PHC:
            _DUMMY_PHC.append(crypto.password_hash("cvault-dummy-password"))
        crypto.password_verify(password or "", _DUMMY_PHC[0])

    def _issue_enrollment(self, conn, user_id: int, by: str, t: int) -> tuple[str, int]:
        from vault.auth import codes

        code = codes.new_code()
        expires = t + ENROLL_SECONDS
        conn.execute("DELETE FROM enrollment WHERE user_id = ?", (user_id,))
        conn.execute(
            "INSERT INTO enrollment (user_id, code_hash, expires_at, created_at, created_by)"
            " VALUES (?, ?, ?, ?, ?)",
            (user_id, codes.code_hash(self._code_key(), "enroll", user_id, code), expires, t, by),
        )
        return code, expires

    # --- lockout ------------------------------------------------------------------------------

    def _lock_state(self, conn, user: UserRow, t: int) -> int | None:
        """Epoch second until which the account is locked, or None."""
        until = user.locked_until if user.locked_until is not None and user.locked_until > t else None
        if failures_in_last_hour(conn, user.id, t) >= HOURLY_CAP:
            cap_until = self._cap_until(conn, user.id, t)
            until = max(until or 0, cap_until)
        return until

    @staticmethod
    def _cap_until(conn, user_id: int, t: int) -> int:
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

    def _check_not_locked(self, user: UserRow, action: str, origin: str) -> None:
        _, t = self._now()
        with self.ctx.db.read() as conn:
            until = self._lock_state(conn, user, t)
        if until is not None and until > t:
            self._audit(user.name, action, "deny", f"account locked for {_minutes(until - t)} more", origin)
            raise VaultLocked(
                f"account {user.name} is locked for {_minutes(until - t)} more after "
                "too many failed attempts (an admin can unlock it)"
            )

    def _fail(
        self, user: UserRow, action: str, reason: str, origin: str, message: str = GENERIC_FAILURE
    ) -> None:
        """Count one failed attempt, lock if due, audit, and raise. Never returns."""
        _, t = self._now()
        with self.ctx.db.write() as conn:
            count = conn.execute("SELECT failed_count FROM users WHERE id = ?", (user.id,)).fetchone()[0] + 1
            conn.execute(
                "INSERT INTO auth_failures (user_id, at, kind) VALUES (?, ?, ?)", (user.id, t, action)
            )
            conn.execute("DELETE FROM auth_failures WHERE user_id = ? AND at <= ?", (user.id, t - 24 * HOUR))
            lock = lock_seconds(count)
            current = conn.execute("SELECT locked_until FROM users WHERE id = ?", (user.id,)).fetchone()[0]
            until = current if current is not None and current > t else None
            why = None
            if lock:
                until = max(until or 0, t + lock)
                why = f"locked for {_minutes(lock)} after {count} consecutive failures"
            hourly = failures_in_last_hour(conn, user.id, t)
            if hourly >= HOURLY_CAP:
                cap = self._cap_until(conn, user.id, t)
                if cap > (until or 0):
                    until = cap
                    why = f"locked for {_minutes(cap - t)}: {hourly} failures in the last hour"
            conn.execute(
                "UPDATE users SET failed_count = ?, locked_until = ? WHERE id = ?", (count, until, user.id)
            )
        self._audit(user.name, action, "deny", f"{reason} (failure {count})", origin)
        if why:
            self._audit(user.name, "auth.lockout", "deny", why, origin)
        raise AuthenticationFailed(message)

    def _succeed(self, conn, user_id: int) -> None:
        conn.execute("UPDATE users SET failed_count = 0, locked_until = NULL WHERE id = ?", (user_id,))

    # --- second factors -----------------------------------------------------------------------

    def _accept_totp(
        self,
        user: UserRow,
        code: str | None,
        request: str,
        action: str,
        origin: str,
        message: str = GENERIC_FAILURE,
    ) -> None:
        """Verify ``code`` for ``user`` now; record its time step (once per user, ever)."""
        from vault.auth import totp

        now, _ = self._now()
        code = (code or "").strip().replace(" ", "")
        if not totp.well_formed(code):
            self._fail(user, action, "malformed TOTP code", origin, message)
        step = totp.match_step(self._unseal_totp(user), code, now)
        if step is None:
            self._fail(user, action, "wrong TOTP code", origin, message)
        with self.ctx.db.write() as conn:
            won = conn.execute(
                "UPDATE users SET totp_last_step = ? WHERE id = ? AND"
                " (totp_last_step IS NULL OR totp_last_step < ?)",
                (step, user.id, step),
            ).rowcount
        if not won:
            self._audit(
                user.name,
                "auth.totp_replay",
                "deny",
                f"TOTP time step already used (request: {request})",
                origin,
            )
            self._fail(user, action, "TOTP code replayed", origin, message)

    def _use_recovery_code(
        self, user: UserRow, code: str | None, request: str, action: str, origin: str
    ) -> None:
        from vault.auth import codes

        _, t = self._now()
        if not code or not codes.well_formed(code):
            self._fail(user, action, "malformed recovery code", origin)
        wanted = codes.code_hash(self._code_key(), "recovery", user.id, code)
        with self.ctx.db.write() as conn:
            rows = conn.execute(
                "SELECT id, code_hash FROM recovery_codes WHERE user_id = ? AND used_at IS NULL", (user.id,)
            ).fetchall()
            match = None
            for row_id, stored in rows:  # compare with every unused code, in constant time each
                if crypto.constant_time_equal(bytes(stored), wanted) and match is None:
                    match = row_id
            if match is not None:
                conn.execute(
                    "UPDATE recovery_codes SET used_at = ? WHERE id = ? AND used_at IS NULL", (t, match)
                )
            left = len(rows) - (1 if match is not None else 0)
        if match is None:
            self._fail(user, "auth.recovery_code", f"wrong or used recovery code ({request})", origin)
        self._audit(
            user.name, "auth.recovery_code", "ok", f"recovery code used for {request}; {left} left", origin
        )

    # --- onboarding ---------------------------------------------------------------------------

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
        self._audit(actor, Action.USER_ADD.value, "ok", f"first admin {name} created", "cli")
        with self.ctx.db.read() as conn:
            user = user_row(conn, name)
        return self._complete_enrollment(user, password, "cli")

    def enroll(self, name: str, code: str, password: str, *, origin: str = "cli") -> dict:
        """Redeem an enrollment code: set the password, issue the TOTP secret and recovery codes."""
        from vault.auth import codes

        check_password_rules(password)  # before the code is spent
        now, t = self._now()
        with self.ctx.db.read() as conn:
            user = user_row(conn, name)
        if user is None:
            self._dummy_verify(password)
            self._audit(_audit_name(name), "auth.enroll", "deny", "unknown user", origin)
            raise AuthenticationFailed(ENROLL_FAILURE)
        self._check_not_locked(user, "auth.enroll", origin)
        key = self._code_key()
        with self.ctx.db.read() as conn:
            row = conn.execute(
                "SELECT code_hash, expires_at FROM enrollment WHERE user_id = ?", (user.id,)
            ).fetchone()
        good = (
            row is not None
            and codes.well_formed(code or "")
            and crypto.constant_time_equal(codes.code_hash(key, "enroll", user.id, code), bytes(row[0]))
        )
        if not good:
            self._fail(user, "auth.enroll", "wrong enrollment code", origin, ENROLL_FAILURE)
        if t >= row[1]:
            self._fail(
                user,
                "auth.enroll",
                "enrollment code expired",
                origin,
                "enrollment failed: the enrollment code has expired; ask an admin for a new one",
            )
        if user.disabled:
            self._audit(user.name, "auth.enroll", "deny", f"{name} is disabled", origin)
            raise AccessDenied(f"access denied: {name} is disabled")
        return self._complete_enrollment(user, password, origin, code_hash=bytes(row[0]))

    def _complete_enrollment(
        self, user: UserRow, password: str, origin: str, code_hash: bytes | None = None
    ) -> dict:
        from vault.auth import codes, totp

        _, t = self._now()
        secret = totp.new_secret()
        recovery = [codes.new_code() for _ in range(codes.RECOVERY_CODES)]
        key = self._code_key()
        phc = crypto.password_hash(password)
        with self.ctx.db.write() as conn:
            if code_hash is not None:  # spend the code under the write lock: one enrollment wins
                spent = conn.execute(
                    "DELETE FROM enrollment WHERE user_id = ? AND code_hash = ?", (user.id, code_hash)
                ).rowcount
                if not spent:
                    raise AuthenticationFailed(ENROLL_FAILURE)
            conn.execute(
                "UPDATE users SET password_hash = ?, totp_sealed = ?, totp_active = 0,"
                " totp_last_step = NULL, enrolled_at = ?, failed_count = 0, locked_until = NULL"
                " WHERE id = ?",
                (phc, self._seal_totp(user.id, secret), t, user.id),
            )
            conn.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user.id,))
            conn.executemany(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
                [(user.id, codes.code_hash(key, "recovery", user.id, c)) for c in recovery],
            )
            conn.execute(
                "UPDATE sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL", (t, user.id)
            )
        self._audit(
            user.name,
            "auth.enroll",
            "ok",
            f"password set; TOTP secret issued (active at first login); "
            f"{len(recovery)} recovery codes issued",
            origin,
        )
        return {
            "name": user.name,
            "otpauth_uri": totp.provisioning_uri(secret, user.name),
            "recovery_codes": recovery,
            "totp_active": False,
        }

    # --- login, sessions, step-up --------------------------------------------------------------

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
                self._audit(_audit_name(name), "auth.login", "deny", "unknown user", origin)
                raise AuthenticationFailed(GENERIC_FAILURE)
            self._fail(user, "auth.login", "not enrolled yet", origin)
        self._check_not_locked(user, "auth.login", origin)
        if not crypto.password_verify(password or "", user.password_hash):
            self._fail(user, "auth.login", "wrong password", origin)
        if recovery_code is not None:
            self._use_recovery_code(user, recovery_code, "login", "auth.login", origin)
            factor = "password + recovery code"
        else:
            self._accept_totp(user, totp, "login", "auth.login", origin)
            factor = "password + TOTP"
        if user.disabled:
            self._audit(user.name, "auth.login", "deny", f"{name} is disabled", origin)
            raise AccessDenied(f"access denied: {name} is disabled")
        token = new_token()
        digest = token_hash(token)
        with self.ctx.db.write() as conn:
            self._succeed(conn, user.id)
            if recovery_code is None:
                conn.execute("UPDATE users SET totp_active = 1 WHERE id = ?", (user.id,))
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, last_seen, stepup_at,"
                " origin) VALUES (?, ?, ?, ?, ?, ?)",
                (digest, user.id, t, t, t, origin),
            )
            roles = user_roles(conn, user.id)
        activated = "" if user.totp_active or recovery_code is not None else "; TOTP factor activated"
        self._audit(user.name, "auth.login", "ok", f"{factor}{activated}", origin)
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
        now, t = self._now()
        with self.ctx.db.read() as conn:
            row = conn.execute(
                "SELECT u.name, u.id, s.created_at, s.stepup_at FROM sessions s"
                " JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
                (digest,),
            ).fetchone()
            if row is None:
                raise AuthenticationFailed("not logged in (unknown session): run cvault login NAME")
            name, user_id, created, stepup = row
            valid, reason, _, touch = session_state(conn, self.ctx.settings, digest, user_id, now)
            roles = user_roles(conn, user_id)
        if not valid:
            if "ended" not in reason:
                with self.ctx.db.write() as conn:
                    conn.execute("UPDATE sessions SET ended_at = ? WHERE token_hash = ?", (t, digest))
                self._audit(name, "auth.session", "deny", reason.split(":")[0], origin)
            raise AuthenticationFailed(f"{reason.split(':')[0]}: run cvault login {name}")
        if touch:
            touch_session(self.ctx.db, digest, now)
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
        """Verify a fresh TOTP code (or a recovery code) for the principal's session."""
        if principal.kind != "user" or not principal.session_id:
            raise AuthenticationFailed("not logged in: run cvault login NAME")
        with self.ctx.db.read() as conn:
            user = self._require_user(conn, principal.name)
        self._check_not_locked(user, "auth.stepup", principal.origin)
        message = "step-up failed: wrong or already used TOTP code"
        if recovery_code is not None:
            self._use_recovery_code(user, recovery_code, "step-up", "auth.stepup", principal.origin)
        else:
            self._accept_totp(user, code, "step-up", "auth.stepup", principal.origin, message)
        now, t = self._now()
        with self.ctx.db.write() as conn:
            self._succeed(conn, user.id)
            done = conn.execute(
                "UPDATE sessions SET stepup_at = ?, last_seen = max(last_seen, ?)"
                " WHERE token_hash = ? AND user_id = ? AND ended_at IS NULL",
                (t, t, principal.session_id, user.id),
            ).rowcount
        if not done:
            raise AuthenticationFailed(f"session ended: run cvault login {principal.name}")
        self._audit(user.name, "auth.stepup", "ok", "TOTP verified for reading secrets", principal.origin)
        window = int(self.ctx.settings["stepup_window_seconds"])
        return {"user": user.name, "stepup_valid_until": rfc3339(now + timedelta(seconds=window))}

    def logout(self, principal: Principal) -> None:
        _, t = self._now()
        with self.ctx.db.write() as conn:
            conn.execute(
                "UPDATE sessions SET ended_at = ? WHERE token_hash = ? AND ended_at IS NULL",
                (t, principal.session_id),
            )
        self._audit(principal.name, "auth.logout", "ok", "session ended", principal.origin)

    def whoami(self, principal: Principal) -> dict:
        now, _ = self._now()
        s = self.ctx.settings
        with self.ctx.db.read() as conn:
            user = self._require_user(conn, principal.name)
            row = conn.execute(
                "SELECT created_at, last_seen, stepup_at FROM sessions WHERE token_hash = ?",
                (principal.session_id,),
            ).fetchone()
            roles = user_roles(conn, user.id)
        created, last_seen, stepup = row if row else (to_epoch(now), to_epoch(now), None)
        expires = min(
            created + int(s["session_absolute_seconds"]), last_seen + int(s["session_idle_seconds"])
        )
        return {
            "user": user.name,
            "roles": sorted(roles),
            "session_started_at": rfc3339(from_epoch(created)),
            "session_expires_at": rfc3339(from_epoch(expires)),
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
        self._check_not_locked(user, "auth.passwd", principal.origin)
        if not user.password_hash or not crypto.password_verify(current or "", user.password_hash):
            self._fail(user, "auth.passwd", "wrong current password", principal.origin)
        phc = crypto.password_hash(new)
        _, t = self._now()
        with self.ctx.db.write() as conn:
            self._succeed(conn, user.id)
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (phc, user.id))
            conn.execute(
                "UPDATE sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL AND token_hash != ?",
                (t, user.id, principal.session_id or ""),
            )
        self._audit(
            user.name, "auth.passwd", "ok", "password changed; other sessions ended", principal.origin
        )

    # --- administration (admin role) ------------------------------------------------------------

    def _state(self, conn, user: UserRow, t: int) -> str:
        if user.disabled:
            return "disabled"
        until = self._lock_state(conn, user, t)
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
            users = [
                _user_from_row(r) for r in conn.execute(f"SELECT {USER_COLUMNS} FROM users ORDER BY name")
            ]
            return [self._view(conn, u, t) for u in users]

    def show(self, principal: Principal, name: str) -> dict:
        self.ctx.authorize(principal, Action.USER_SHOW)
        _, t = self._now()
        with self.ctx.db.read() as conn:
            user = self._require_user(conn, name)
            view = self._view(conn, user, t)
            until = self._lock_state(conn, user, t)
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

    def train(self, principal: Principal, name: str, until: datetime) -> dict:
        """Record a data-handling training attestation valid until ``until``."""

        def change(conn, user, t):
            conn.execute("UPDATE users SET training_valid_until = ? WHERE id = ?", (to_epoch(until), user.id))
            return {"name": name, "training_valid_until": rfc3339(until)}

        return self._admin_change(
            principal, Action.USER_TRAIN, name, change, f"training of {name} valid until {rfc3339(until)}"
        )
