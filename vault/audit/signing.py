"""The vault's Ed25519 audit key: signs audit checkpoints and shred certificates.

The private key is stored only sealed under the root-derived ``audit`` purpose key (meta row
``audit_private_sealed``); the public key is stored in the clear (``audit_public_key``) so that a
reviewer can print it without unsealing, and verify exports and certificates offline with it alone.
Anyone who can write ``vault.db`` can replace that clear copy, so the key handed to reviewers
(:meth:`AuditSigner.trusted_public_key`) is derived from the sealed private key whenever the vault
is unsealed, and a sealed ``audit pubkey`` says it is unverified (docs/audit.md section 3).

Since the audit high-water mark (vault/audit/mark.py) the private key is sealed with the context
``("audit-signing-key", "marked")``: a vault whose key opens under it must have a mark, so deleting
the mark row is an integrity alarm, not a fresh start. A key sealed under the old context
``("audit-signing-key",)`` belongs to a vault from before the mark; it is re-sealed when the mark is
first written (the first unsealed append after the upgrade).
"""

from __future__ import annotations

import base64

from vault import crypto
from vault.errors import CryptoError, IntegrityFailure
from vault.keys import PURPOSE_AUDIT, Keyring

_LEGACY_CONTEXT: tuple[str, ...] = ("audit-signing-key",)
_MARKED_CONTEXT: tuple[str, ...] = ("audit-signing-key", "marked")


def fingerprint(public: bytes) -> str:
    """The audit key's fingerprint (printed at init, in export headers, on certificates):
    ``SHA256:`` and the first 32 hex digits of SHA-256 of the 32-byte public key."""
    return "SHA256:" + crypto.sha256(public).hex()[:32]


def _stored(value: object, what: str) -> bytes:
    """The one decoder of the audit key rows' values as stored: a BLOB, else an integrity
    failure (one line, exit 6). Never ``bytes(value)``: a number a file writer put there would
    allocate that many bytes, a string has none."""
    if type(value) is not bytes or not value:
        raise IntegrityFailure(
            f"integrity failure: the vault's {what} is not a value cvault stored (vault.db was edited);"
            " run cvault doctor"
        )
    return value


class AuditSigner:
    def __init__(self, db, keyring: Keyring):
        self.db = db
        self.keyring = keyring

    def ensure(self) -> bytes:
        """Create the key pair if the vault has none; returns the public key."""
        existing = self.db.one("SELECT value FROM meta WHERE key = 'audit_public_key'")
        if existing is not None:
            return _stored(existing[0], "audit public key")
        private, public = crypto.ed25519_generate()
        sealed = self.keyring.seal_for(PURPOSE_AUDIT, private, *_MARKED_CONTEXT)
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM meta WHERE key = 'audit_public_key'").fetchone():
                return self.stored_public_key()
            conn.execute("INSERT INTO meta (key, value) VALUES ('audit_public_key', ?)", (public,))
            conn.execute("INSERT INTO meta (key, value) VALUES ('audit_private_sealed', ?)", (sealed,))
        return public

    def stored_public_key(self) -> bytes:
        """The clear copy in ``meta``: anyone able to write vault.db can replace it, so it only
        ever checks a signature where the vault is sealed (use :meth:`trusted_public_key`; review9
        R9-6: a prune checkpoint signed by a swapped-in key was believed)."""
        row = self.db.one("SELECT value FROM meta WHERE key = 'audit_public_key'")
        if row is None:
            raise IntegrityFailure("integrity failure: the vault has no audit key")
        return _stored(row[0], "audit public key")

    def trusted_public_key(self) -> tuple[bytes, bool]:
        """(key, verified): derived from the sealed private key when the vault is unsealed (the
        clear copy in meta may have been replaced), else the clear copy, unverified."""
        if self.keyring.unsealed:
            return crypto.ed25519_public_key(self._private()), True
        return self.stored_public_key(), False

    def trusted_public_key_text(self) -> str:
        """``ed25519:<base64>``: the form printed by ``cvault audit pubkey`` and taken by --pubkey."""
        return "ed25519:" + base64.b64encode(self.trusted_public_key()[0]).decode()

    def _private(self, conn=None) -> bytes:
        return self._open(conn)[0]

    def _open(self, conn=None) -> tuple[bytes, bool]:
        """(private key, marked): whether it is sealed under the context of a vault with a mark."""
        row = (
            (conn or self.db.conn)
            .execute("SELECT value FROM meta WHERE key = 'audit_private_sealed'")
            .fetchone()
        )
        if row is None:
            raise IntegrityFailure("integrity failure: the vault has no audit key")
        sealed = _stored(row[0], "sealed audit key")
        for context, marked in ((_MARKED_CONTEXT, True), (_LEGACY_CONTEXT, False)):
            try:
                return self.keyring.unseal_for(PURPOSE_AUDIT, sealed, *context), marked
            except CryptoError:
                continue
        raise IntegrityFailure("integrity failure: the audit signing key failed authentication")

    def marked(self, conn) -> bool | None:
        """Whether this vault's key says it has a high-water mark (see the module docstring);
        None while the vault has no audit key yet (inside ``init``)."""
        if conn.execute("SELECT 1 FROM meta WHERE key = 'audit_private_sealed'").fetchone() is None:
            return None
        return self._open(conn)[1]

    def reseal_marked(self, conn) -> None:
        """Inside the transaction that writes the first mark: re-seal the key under the marked
        context, so from now on a missing mark is an alarm."""
        private, marked = self._open(conn)
        if not marked:
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'audit_private_sealed'",
                (self.keyring.seal_for(PURPOSE_AUDIT, private, *_MARKED_CONTEXT),),
            )

    def sign(self, message: bytes) -> bytes:
        return crypto.ed25519_sign(self._private(), message)


def parse_public_key_text(text: str) -> bytes:
    """Accept ``ed25519:<base64>`` or bare base64 of the 32-byte key."""
    from vault.errors import InvalidInput

    body = text.strip().removeprefix("ed25519:")
    try:
        raw = base64.b64decode(body, validate=True)
    except ValueError:
        raise InvalidInput("invalid public key: expected ed25519:<base64>") from None
    if len(raw) != 32:
        raise InvalidInput("invalid public key: expected 32 bytes")
    return raw


def verify_signature(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        crypto.ed25519_verify(public, signature, message)
        return True
    except CryptoError:
        return False
