"""The strict reader of a stored BLOB column that no row MAC covers (review7 R7-4, review9 R9-5).

A file writer (docs/security.md, attacker A4) may put any SQLite type in such a column: text, a
REAL, an INTEGER of any size. ``bytes(value)`` of it is a ``TypeError`` (text) or allocates that
many zero bytes (an INTEGER: 2**31 is 2 GiB, on every request that reads the row). A column is
read here, by type and exact length, and anything but a BLOB of the size cvault writes is an
:class:`~vault.errors.IntegrityFailure` (one line, exit 6) naming the table and row. The one
helper of every such reader: the audit columns (:mod:`vault.audit.stored`), the enrollment and
recovery code hashes, the shred certificate's signature, the client audit-detail key, the wrapped
keys a shred manifest and custody read. The ``meta`` values have their decoders in
:mod:`vault.store.meta`; the unseal slots theirs in :mod:`vault.keys` (a layer below this one).
"""

from __future__ import annotations

from typing import TypeGuard

from vault import crypto
from vault.errors import IntegrityFailure

#: what ``crypto.seal`` makes of a key (a wrapped DEK, client key or client audit key)
SEALED_KEY_LEN = crypto.NONCE_LEN + crypto.KEY_LEN + crypto.TAG_LEN
#: an Ed25519 signature (a shred certificate's)
SIGNATURE_LEN = 64


def is_blob(value: object, size: int) -> TypeGuard[bytes]:
    """Whether a stored value is a BLOB of exactly ``size`` bytes (never converted)."""
    return type(value) is bytes and len(value) == size


def not_stored(where: str) -> IntegrityFailure:
    """The failure for ``where`` (the table and row, e.g. ``enrollment row of user dora``)."""
    return IntegrityFailure(
        f"integrity failure: the {where} in vault.db is not a value cvault stored (vault.db was"
        " edited); run cvault doctor"
    )


def blob(value: object, size: int, where: str) -> bytes:
    """A stored BLOB of exactly ``size`` bytes, else :func:`not_stored` for ``where``."""
    if type(value) is bytes and len(value) == size:
        return value
    raise not_stored(where)
