"""Strict readers of the audit tables' stored columns (review7 R7-4).

A file writer (docs/security.md, attacker A4) may put any SQLite type in ``audit_events`` and
``audit_checkpoints``: text, a REAL, an INTEGER of any size. A hash column is read here, by type
and length, never with ``bytes(value)`` (a number would allocate that many bytes, a string has
none): what is not a value cvault wrote is an :class:`~vault.errors.IntegrityFailure` (one line,
exit 6) naming the entry or checkpoint, never a TypeError or MemoryError. The test of a value is
the one of every unMACed BLOB column (:func:`vault.store.stored.is_blob`).
"""

from __future__ import annotations

from typing import TypeGuard

from vault.errors import IntegrityFailure
from vault.store.stored import is_blob

#: SHA-256: every entry hash, prev_hash, checkpoint digest and prune base hash
HASH_SIZE = 32
#: the largest seq another entry can follow: seq + 1 still fits an SQLite INTEGER (review8 R8-4)
MAX_SEQ_BEFORE_NEXT = 2**63 - 2


def is_hash(value: object) -> TypeGuard[bytes]:
    return is_blob(value, HASH_SIZE)


def malformed_entry(seq: object) -> IntegrityFailure:
    return IntegrityFailure(
        f"integrity failure: audit entry {seq if type(seq) is int else '?'} in vault.db is malformed"
        " (vault.db was edited); run cvault audit verify"
    )


def malformed_checkpoint(seq: object) -> IntegrityFailure:
    return IntegrityFailure(
        f"integrity failure: audit checkpoint {seq if type(seq) is int else '?'} in vault.db is"
        " malformed (vault.db was edited); run cvault audit verify"
    )


def entry_hash(value: object, seq: object) -> bytes:
    """An ``audit_events.entry_hash`` / ``prev_hash`` value: 32 bytes, else IntegrityFailure."""
    if is_blob(value, HASH_SIZE):
        return value
    raise malformed_entry(seq)


def checkpoint_hash(value: object, seq: object) -> bytes:
    """A hash column of ``audit_checkpoints`` (entry_hash, base_hash, prev, base_checkpoint)."""
    if is_blob(value, HASH_SIZE):
        return value
    raise malformed_checkpoint(seq)


def sealed_detail(value: object, seq: object) -> bytes | None:
    """An ``audit_events.detail_sealed`` value: None or a BLOB, else IntegrityFailure."""
    if value is None or type(value) is bytes:
        return value
    raise malformed_entry(seq)
