"""One-time codes typed by people: enrollment codes and recovery codes.

Both are random, shown once, and stored only as keyed hashes: HMAC-SHA256 under a key derived
from the root-derived ``totp-seal`` purpose key (HKDF label ``cvault/v1/auth-code-hash``), with the
code's kind and the user id in the message. A keyed hash (not a fast plain hash) because these
codes carry 60 bits: offline guessing against a stolen ``vault.db`` would be feasible with a plain
hash, and is not without the root key. Checking compares hashes in constant time.

Format: 12 characters of an unambiguous base32 alphabet in groups of four (``k7qm-3xwd-9hra``,
Crockford base32), 60 bits. Input is normalised (case, spaces and dashes ignored), so
``K7QM 3XWD 9HRA`` works too.
"""

from __future__ import annotations

from vault import crypto

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32: no i, l, o, u
CODE_CHARS = 12
RECOVERY_CODES = 10


def new_code() -> str:
    raw = crypto.random_bytes(CODE_CHARS)
    # 256 is a multiple of 32: taking each byte mod 32 is unbiased
    chars = "".join(ALPHABET[b % 32] for b in raw)
    return "-".join(chars[i : i + 4] for i in range(0, CODE_CHARS, 4))


def normalise(code: str) -> str:
    return "".join(ch for ch in (code or "").lower() if ch.isalnum())


def hash_key(keyring) -> bytes:
    return crypto.hkdf_sha256(
        keyring.purpose_key("totp-seal"), salt=keyring.vault_id, info=b"cvault/v1/auth-code-hash"
    )


def code_hash(key: bytes, kind: str, user_id: int, code: str) -> bytes:
    message = b"\x00".join([kind.encode(), str(user_id).encode(), normalise(code).encode()])
    return crypto.hmac_sha256(key, message)


def well_formed(code: str) -> bool:
    norm = normalise(code)
    return len(norm) == CODE_CHARS and all(ch in ALPHABET for ch in norm)
