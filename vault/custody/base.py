"""The custodian contract (docs/sla.md section 6; docs/format.md, "custody").

A custodian keeps one 32-byte secret ``S(c, n)`` per client ``c`` and custody version ``n``
outside the vault folder. The vault stores only a :class:`CustodyRef` (the fingerprint of S and,
for a custodian that wraps S remotely, the wrapped bytes and the wrapping key's identifier).

Operations, all idempotent so that the persisted shred and rotation jobs can repeat them after a
crash:

* :meth:`Custodian.create` makes (or, after a crash, finds again) S for each ``(client, version)``;
* :meth:`Custodian.open` returns S for a stored reference, checking its fingerprint;
* :meth:`Custodian.destroy` destroys versions of a client and returns one :class:`Destroyed`
  receipt per version: what was destroyed, when it is gone for good, and what could still undo it
  (the shred certificate lists these, docs/sla.md section 4);
* :meth:`Custodian.describe` says where custody lives, for ``cvault custody show``.

Errors: :class:`CustodyUnavailable` (exit 9, the custodian could not be reached: retry, nothing
changed), :class:`CustodyRefused` (exit 9, the custodian answered no: configuration or
permission), :class:`CustodyDestroyed` (exit 6, the secret no longer exists: the client cannot be
opened with this vault copy), :class:`CustodyMissing` (exit 8, the custody file is not there).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from vault.errors import (
    IntegrityFailure,
    PermanentBackendError,
    TransientBackendError,
    VaultSealed,
)
from vault.tuples import NamedTuple

#: bytes of one custody secret S(c, n): a full AES-256 key's worth of entropy
SECRET_LEN = 32
_HEX_DIGITS = frozenset("0123456789abcdef")
#: custody versions are positive; 2**31 keeps them inside every integer type we store them in
MAX_VERSION = 2**31 - 1


class CustodyUnavailable(TransientBackendError):
    """the custodian could not be reached; nothing was changed, try again."""

    code = "custody_unavailable"


class CustodyRefused(PermanentBackendError):
    """the custodian refused the operation (check its configuration and permissions)."""

    code = "custody_refused"


class CustodyDestroyed(IntegrityFailure):
    """the client's custody secret no longer exists: its keys cannot be opened."""

    code = "custody_destroyed"


class CustodyMissing(VaultSealed):
    """the custody file is missing or unreadable: the vault's client keys cannot be opened."""

    code = "custody_missing"


# NamedTuples, not dataclasses: ``cvault secret get`` goes through here and dataclasses is not
# otherwise imported on that path (docs/performance.md, the 1.3 x floor budget).


class CustodyRef(NamedTuple):
    """What ``vault.db`` keeps about one custody version (never S itself)."""

    client_id: str
    version: int
    #: ``vault.crypto.key_fingerprint(S)``: identifies S without revealing it
    fingerprint: str
    #: remote custodians: the key identifier that wrapped S (Key Vault ``kid``, with version)
    key_id: str | None = None
    #: remote custodians: S wrapped by that key (the ``wrapKey`` result)
    wrapped: bytes | None = None


class Created:
    """A custody secret just made (or found again) and the reference the vault stores."""

    __slots__ = ("secret", "ref")

    def __init__(self, secret: bytes, ref: CustodyRef):
        self.secret = secret
        self.ref = ref

    def __repr__(self) -> str:  # never the secret
        return f"Created(ref={self.ref!r})"


class Destroyed(NamedTuple):
    """Receipt of one destroyed custody version."""

    client_id: str
    version: int
    #: what held the secret, e.g. "custody file /etc/cvault/vault.custody" or a Key Vault key id
    what: str
    #: Unix seconds when the destruction was done (or found done)
    destroyed_at: int
    #: Unix seconds from which no copy the custodian controls exists; None if not known
    permanent_at: int | None
    #: True when a repeated call found it already destroyed
    already_absent: bool = False
    #: precisely what could still bring the secret back (the certificate lists these)
    residual: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        out = self._asdict()
        out["residual"] = list(self.residual)
        return out


class Custodian(Protocol):
    #: "local" or "azure-keyvault"
    kind: str

    def describe(self) -> dict: ...

    def create(self, items: Sequence[tuple[str, int]]) -> list[Created]: ...

    def open(self, ref: CustodyRef) -> bytes: ...

    def destroy(
        self, client_id: str, versions: Iterable[int], *, every_version: bool = False
    ) -> list[Destroyed]: ...

    def close(self) -> None: ...


def check_item(client_id: str, version: int) -> None:
    """Refuse malformed identifiers before they reach a file or a URL."""
    if not isinstance(client_id, str) or len(client_id) != 32 or not _HEX_DIGITS.issuperset(client_id):
        raise ValueError("custody: client id must be 32 lower-case hex digits")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise ValueError("custody: version must be a positive integer")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url (RFC 4648 section 5); ValueError on anything else."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
