"""The vault's Ed25519 audit key: signs audit checkpoints and shred certificates.

The private key is stored only sealed under the root-derived ``audit`` purpose key (meta row
``audit_private_sealed``); the public key is stored in the clear (``audit_public_key``) so that a
reviewer can print it without unsealing, and verify exports and certificates offline with it alone.
"""

from __future__ import annotations

import base64

from vault import crypto
from vault.errors import CryptoError, IntegrityFailure
from vault.keys import PURPOSE_AUDIT, Keyring


class AuditSigner:
    def __init__(self, db, keyring: Keyring):
        self.db = db
        self.keyring = keyring

    def ensure(self) -> bytes:
        """Create the key pair if the vault has none; returns the public key."""
        existing = self.db.one("SELECT value FROM meta WHERE key = 'audit_public_key'")
        if existing:
            return bytes(existing[0])
        private, public = crypto.ed25519_generate()
        sealed = self.keyring.seal_for(PURPOSE_AUDIT, private, "audit-signing-key")
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM meta WHERE key = 'audit_public_key'").fetchone():
                return self.public_key()
            conn.execute("INSERT INTO meta (key, value) VALUES ('audit_public_key', ?)", (public,))
            conn.execute("INSERT INTO meta (key, value) VALUES ('audit_private_sealed', ?)", (sealed,))
        return public

    def public_key(self) -> bytes:
        row = self.db.one("SELECT value FROM meta WHERE key = 'audit_public_key'")
        if row is None:
            raise IntegrityFailure("integrity failure: the vault has no audit key")
        return bytes(row[0])

    def public_key_text(self) -> str:
        """``ed25519:<base64>``: the form printed by ``cvault audit pubkey`` and taken by --pubkey."""
        return "ed25519:" + base64.b64encode(self.public_key()).decode()

    def check_public_key(self) -> None:
        """The stored public key must belong to the sealed private key (someone able to write
        vault.db could otherwise swap both the key and a re-signed log)."""
        if not crypto.constant_time_equal(crypto.ed25519_public_key(self._private()), self.public_key()):
            raise IntegrityFailure(
                "integrity failure: the stored audit public key is not the vault's audit key"
            )

    def _private(self) -> bytes:
        row = self.db.one("SELECT value FROM meta WHERE key = 'audit_private_sealed'")
        if row is None:
            raise IntegrityFailure("integrity failure: the vault has no audit key")
        try:
            return self.keyring.unseal_for(PURPOSE_AUDIT, bytes(row[0]), "audit-signing-key")
        except CryptoError:
            raise IntegrityFailure("integrity failure: the audit signing key failed authentication") from None

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
