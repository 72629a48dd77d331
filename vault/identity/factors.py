"""The factors (docs/identity.md): password rules, the sealed TOTP secret with its once-per-step
rule, recovery codes, and enrollment (the one-time code that sets all three).

* enrollment code: 60 bits, one use, 24 h; recovery codes: 10 x 60 bits, one use each; both stored
  as keyed hashes (:mod:`vault.identity.codes`).
* password: Argon2id PHC string (``vault.crypto.password_hash``), at least 12 characters.
* TOTP (:mod:`vault.identity.totp`): 30 s, 6 digits, +-1 step; a time step is accepted at most once
  per user (``users.totp_last_step`` only moves forward, in one conditional UPDATE, so two
  processes racing with the same code cannot both win).

pyotp loads only when a code is checked, Argon2 only when a password is.
"""

from __future__ import annotations

from vault import crypto, names
from vault.clock import is_stored_epoch
from vault.errors import (
    AccessDenied,
    AuthenticationFailed,
    CryptoError,
    IntegrityFailure,
    InvalidInput,
    VaultLocked,
)
from vault.identity.facts import UserRow, end_sessions, note_admins, user_row
from vault.identity.lockout import GENERIC_FAILURE, LockoutMixin
from vault.policy import AuditEvent
from vault.store import rowmac, stored

ENROLL_SECONDS = 24 * 3600
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
ENROLL_FAILURE = "enrollment failed: unknown user or wrong enrollment code"

# A PHC string to verify against when the user does not exist, so that an unknown name costs the
# same Argon2 time as a wrong password (no user enumeration by timing). Computed once, lazily.
_DUMMY_PHC: list[str] = []


def check_password_rules(password: str | None) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"password too long: at most {MAX_PASSWORD} characters")
    if any(not ch.isprintable() for ch in password):
        raise InvalidInput("password contains control characters")


def audit_name(name: str) -> str:
    """A typed user name as it may appear in the audit log: only if it is a valid user name (so
    that a password typed into the name field by mistake is not recorded verbatim)."""
    try:
        return names.user_name(name)
    except InvalidInput:
        return "(invalid user name)"


class FactorsMixin(LockoutMixin):
    def _code_key(self) -> bytes:
        from vault.identity import codes

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
        from vault.identity import codes

        code = codes.new_code()
        expires = t + ENROLL_SECONDS
        conn.execute("DELETE FROM enrollment WHERE user_id = ?", (user_id,))
        conn.execute(
            "INSERT INTO enrollment (user_id, code_hash, expires_at, created_at, created_by)"
            " VALUES (?, ?, ?, ?, ?)",
            (user_id, codes.code_hash(self._code_key(), "enroll", user_id, code), expires, t, by),
        )
        return code, expires

    def _accept_totp(
        self,
        user: UserRow,
        code: str | None,
        request: str,
        event: AuditEvent,
        origin: str,
        message: str = GENERIC_FAILURE,
    ) -> None:
        """Verify ``code`` for ``user`` now; record its time step (once per user, ever)."""
        from vault.identity import totp

        now, _ = self._now()
        code = (code or "").strip().replace(" ", "")
        if not totp.well_formed(code):
            self._fail(user, event, "malformed TOTP code", origin, message)
        step = totp.match_step(self._unseal_totp(user), code, now)
        if step is None:
            self._fail(user, event, "wrong TOTP code", origin, message)
        with self.ctx.db.write() as conn:
            won = conn.execute(
                "UPDATE users SET totp_last_step = ? WHERE id = ? AND"
                " (totp_last_step IS NULL OR totp_last_step < ?)",
                (step, user.id, step),
            ).rowcount
        if not won:
            self._audit(
                user.name,
                AuditEvent.AUTH_TOTP_REPLAY,
                "deny",
                f"TOTP time step already used (request: {request})",
                origin,
            )
            self._fail(user, event, "TOTP code replayed", origin, message)

    def _use_recovery_code(
        self, user: UserRow, code: str | None, request: str, event: AuditEvent, origin: str
    ) -> None:
        from vault.identity import codes

        _, t = self._now()
        if not code or not codes.well_formed(code):
            self._fail(user, event, "malformed recovery code", origin)
        wanted = codes.code_hash(self._code_key(), "recovery", user.id, code)
        with self.ctx.db.write() as conn:
            rows = conn.execute(
                "SELECT id, code_hash FROM recovery_codes WHERE user_id = ? AND used_at IS NULL", (user.id,)
            ).fetchall()
            match = None
            for row_id, value in rows:  # compare with every unused code, in constant time each
                hashed = stored.blob(value, crypto.MAC_LEN, f"recovery_codes row {row_id}")  # R9-5
                if crypto.constant_time_equal(hashed, wanted) and match is None:
                    match = row_id
            if match is not None:
                conn.execute(
                    "UPDATE recovery_codes SET used_at = ? WHERE id = ? AND used_at IS NULL", (t, match)
                )
            left = len(rows) - (1 if match is not None else 0)
        if match is None:
            self._fail(
                user, AuditEvent.AUTH_RECOVERY_CODE, f"wrong or used recovery code ({request})", origin
            )
        self._audit(
            user.name,
            AuditEvent.AUTH_RECOVERY_CODE,
            "ok",
            f"recovery code used for {request}; {left} left",
            origin,
        )

    def _spend_recovery_code(self, conn, user: UserRow, code: str | None, t: int) -> tuple[bool, int]:
        """In the caller's write transaction: mark one unused recovery code of ``user`` used if
        ``code`` is one (each compared in constant time). Returns (matched, codes left)."""
        from vault.identity import codes

        rows = conn.execute(
            "SELECT id, code_hash FROM recovery_codes WHERE user_id = ? AND used_at IS NULL", (user.id,)
        ).fetchall()
        if not code or not codes.well_formed(code):
            return False, len(rows)
        wanted = codes.code_hash(self._code_key(), "recovery", user.id, code)
        match = None
        for row_id, value in rows:
            hashed = stored.blob(value, crypto.MAC_LEN, f"recovery_codes row {row_id}")  # review9 R9-5
            if crypto.constant_time_equal(hashed, wanted) and match is None:
                match = row_id
        if match is None:
            return False, len(rows)
        conn.execute("UPDATE recovery_codes SET used_at = ? WHERE id = ? AND used_at IS NULL", (t, match))
        return True, len(rows) - 1

    def enroll(self, name: str, code: str, password: str, *, origin: str = "cli") -> dict:
        """Redeem an enrollment code: set the password, issue the TOTP secret and recovery codes.

        After a TOTP reset the account keeps its password: ``password`` must be the *current*
        one, so whoever holds the re-enrollment code (the admin who reset it) cannot complete it.
        Every path costs one Argon2id computation, so the time taken does not tell whether the
        name exists; an unknown name is audited only as a keyed tag."""
        from vault.identity import codes

        check_password_rules(password)  # before the code is spent
        now, t = self._now()
        with self.ctx.db.read() as conn:
            user = user_row(conn, name)
        if user is None:
            self._dummy_verify(password)
            self._audit(self._unknown_name(name), AuditEvent.AUTH_ENROLL, "deny", "unknown user", origin)
            raise AuthenticationFailed(ENROLL_FAILURE)
        try:
            self._check_not_locked(user, AuditEvent.AUTH_ENROLL, origin)
        except VaultLocked:
            self._dummy_verify(password)  # a locked account answers in the same time too
            raise
        key = self._code_key()
        with self.ctx.db.read() as conn:
            row = conn.execute(
                "SELECT code_hash, expires_at FROM enrollment WHERE user_id = ?", (user.id,)
            ).fetchone()
        stored_hash = None
        if row is not None:
            # no row MAC covers enrollment: a file writer's text or huge INTEGER is exit 6, never
            # converted (bytes(2**31) allocated 2 GiB on every attempt: review9 R9-5)
            where = f"enrollment row of user {user.name}"
            stored_hash = stored.blob(row[0], crypto.MAC_LEN, where)
            if not is_stored_epoch(row[1]):
                raise stored.not_stored(where)
        good = (
            stored_hash is not None
            and codes.well_formed(code or "")
            and crypto.constant_time_equal(codes.code_hash(key, "enroll", user.id, code), stored_hash)
        )
        if not good:
            self._dummy_verify(password)
            self._fail(user, AuditEvent.AUTH_ENROLL, "wrong enrollment code", origin, ENROLL_FAILURE)
        if t >= row[1]:
            self._dummy_verify(password)
            self._fail(
                user,
                AuditEvent.AUTH_ENROLL,
                "enrollment code expired",
                origin,
                "enrollment failed: the enrollment code has expired; ask an admin for a new one",
            )
        if user.disabled:
            self._dummy_verify(password)
            self._audit(user.name, AuditEvent.AUTH_ENROLL, "deny", f"{name} is disabled", origin)
            raise AccessDenied(f"access denied: {name} is disabled")
        keep = None
        if user.password_hash is not None:  # a TOTP reset: the current password proves the person
            if not self._verify_password(user, password, AuditEvent.AUTH_ENROLL, origin):
                self._fail(
                    user,
                    AuditEvent.AUTH_ENROLL,
                    "wrong current password for re-enrollment",
                    origin,
                    "enrollment failed: after a TOTP reset, give your current password",
                )
            keep = user.password_hash
        return self._complete_enrollment(user, password, origin, code_hash=stored_hash, keep_hash=keep)

    def _unknown_name(self, name: str) -> str:
        """How an unknown typed name appears in the audit log: never in clear (it may be a
        password typed into the name field), as a keyed tag that repeats for the same name."""
        try:
            tag = crypto.hmac_sha256(self._code_key(), b"unknown-name\x00" + name.encode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - sealed or no key: no tag, still nothing in clear
            return "(unknown user)"
        return f"(unknown user {tag.hex()[:12]})"

    def _verify_password(self, user: UserRow, password: str, event: AuditEvent, origin: str) -> bool:
        """True for the right password, False for a wrong one; any other failure (the Argon2id
        queue full, a broken library) raises without counting as a failed attempt. A stored hash
        that is not one cvault writes (no row MAC covers its value: a file writer's 2**32 - 1
        passes, review10 R10-4) is the integrity failure naming the user, before any derivation."""
        if not crypto.password_phc_ok(user.password_hash):
            raise stored.not_stored(f"password hash of user {user.name}")
        return crypto.password_verify(password or "", user.password_hash)

    def _complete_enrollment(
        self,
        user: UserRow,
        password: str,
        origin: str,
        code_hash: bytes | None = None,
        keep_hash: str | None = None,
    ) -> dict:
        from vault.identity import codes, totp

        _, t = self._now()
        secret = totp.new_secret()
        recovery = [codes.new_code() for _ in range(codes.RECOVERY_CODES)]
        key = self._code_key()
        phc = keep_hash if keep_hash is not None else crypto.password_hash(password)
        with self.ctx.db.write() as conn:
            if code_hash is not None:  # spend the code under the write lock: one enrollment wins
                spent = conn.execute(
                    "DELETE FROM enrollment WHERE user_id = ? AND code_hash = ?", (user.id, code_hash)
                ).rowcount
                if not spent:
                    raise AuthenticationFailed(ENROLL_FAILURE)
            rowmac.update(
                conn,
                "users",
                "password_hash = ?, totp_sealed = ?, totp_active = 0, totp_last_step = NULL,"
                " enrolled_at = ?, failed_count = 0, locked_until = NULL",
                (phc, self._seal_totp(user.id, secret), t),
                "id = ?",
                (user.id,),
            )
            conn.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user.id,))
            conn.executemany(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
                [(user.id, codes.code_hash(key, "recovery", user.id, c)) for c in recovery],
            )
            end_sessions(conn, user.id, t)
            note_admins(conn)  # review2 S1: the second admin enrolled closes the bootstrap window
        self._audit(
            user.name,
            AuditEvent.AUTH_ENROLL,
            "ok",
            f"password set; TOTP secret issued (active at first login); "
            f"{len(recovery)} recovery codes issued",
            origin,
        )
        return {
            "name": user.name,
            "otpauth_uri": totp.provisioning_uri(secret, user.name, self.ctx.totp_issuer),
            "recovery_codes": recovery,
            "totp_active": False,
        }
