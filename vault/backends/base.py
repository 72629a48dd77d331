"""The storage backend contract (docs/spec.md §8; after restic's ``internal/backend``).

A backend stores opaque, already-encrypted blobs under opaque names. It never sees a client name,
a record path or a key. Names obey :func:`validate_blob_name`: lower-case ASCII letters, digits,
``-`` and ``_``, 1 to 128 characters, first character alphanumeric. That set is safe on every
filesystem and obeys OneDrive's name rules (no ``" * : < > ? / \\ |``, no leading or trailing
space or dot, no reserved names such as ``CON`` or ``.lock``), and being lower-case it behaves the
same on case-insensitive stores.

Per-method semantics:

``put(name, data)``
    Store ``data`` under ``name``, replacing any earlier content, atomically: a reader sees the
    old content or the new, never a mix or a truncated file. Returns only when the data is durable.
``get(name) -> bytes``
    The full content. Raises :class:`~vault.errors.BlobNotFound` if there is no such blob.
``delete(name)``
    Remove the blob *permanently* (no recycle bin, no version history where the store allows it).
    Idempotent: deleting a missing blob succeeds, so a shred can be retried after a crash.
``list() -> Iterator[str]``
    Every blob name currently stored, in no particular order.
``exists(name) -> bool``
    Whether ``get(name)`` would find the blob now.

Errors: :class:`~vault.errors.BlobNotFound` (the name is not there; only ``get`` raises it),
:class:`~vault.errors.TransientBackendError` (the same call may succeed if retried: time-outs,
throttling, 5xx) and :class:`~vault.errors.PermanentBackendError` (retrying will not help:
permissions, quota, a refused request). Backends never raise anything else for I/O problems.

Optional capabilities are Protocols of their own (after restic's ``FreezeBackend``/``AsBackend``),
so a caller states what it needs in its types instead of probing with ``getattr``:

* :class:`BulkBackend` -- the vault's own blob store (:class:`~vault.backends.local.LocalBackend`):
  non-durable writes and deletes made durable by one ``sync()``, a bulk writer for imports, bulk
  deletes and presence counts for the shred. ``VaultContext.blobs`` is one.
* :class:`HashListingBackend` -- a replica that lists names with a content hash in one call
  (OneDrive's quickXorHash), which ``sync pull`` and ``sync verify`` need.

Retries: the Graph client retries transient errors itself (``vault/backends/graph.py``: capped
attempts, exponential back-off with jitter, ``Retry-After`` honoured); the outbox then retries
what still failed, later (``vault/sync/outbox.py``). No backend here retries on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from vault.errors import InvalidInput

if TYPE_CHECKING:
    from pathlib import Path

BLOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")


def validate_blob_name(name: str) -> str:
    if not isinstance(name, str) or not BLOB_NAME.match(name):
        raise InvalidInput("invalid blob name (lower-case letters, digits, '-' and '_' only)")
    return name


@runtime_checkable
class Backend(Protocol):
    #: short human name of this location, used in sync status and shred certificates
    location: str

    def put(self, name: str, data: bytes) -> None: ...

    def get(self, name: str) -> bytes: ...

    def delete(self, name: str) -> None: ...

    def list(self) -> Iterator[str]: ...

    def exists(self, name: str) -> bool: ...


class BulkWriter(Protocol):
    """Many new blobs written in the background (the bulk import); durable after ``sync()``."""

    def add(self, name: str, data: bytes) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


@runtime_checkable
class BulkBackend(Backend, Protocol):
    """The vault's own blob store: the base contract plus non-durable writes made durable in bulk."""

    def put(self, name: str, data: bytes, *, durable: bool = True) -> None: ...

    def delete(self, name: str, *, durable: bool = True) -> None: ...

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Part of a blob (a packed record version); shorter if the blob is."""
        ...

    def sync(self) -> None:
        """Make every earlier non-durable put and delete durable."""
        ...

    def bulk_writer(self) -> BulkWriter: ...

    def delete_many(self, names: Iterable[str], *, durable: bool = True) -> tuple[int, int]:
        """Delete many blobs; ``(deleted, already_absent)``."""
        ...

    def count_present(self, names: Iterable[str]) -> int: ...

    def stray_temp_files(self) -> list[Path]:
        """Files an interrupted write left behind (reported by doctor)."""
        ...


@runtime_checkable
class HashListingBackend(Backend, Protocol):
    """A replica that lists every blob with its content hash and size in one pass."""

    def list_with_hashes(self) -> Iterator[tuple[str, str | None, int]]: ...
