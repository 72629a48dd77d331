"""The neutral representation every import reader produces (docs/import.md).

A reader turns one export file into a stream of :class:`ImportedRecord` values and one
:class:`ImportReport`. Records are already validated: ``fields`` passed
:func:`vault.records.validate` for ``kind``, ``path`` passed :func:`vault.names.record_path`, the
TOTP seed passed :func:`vault.importers.totp.validate_totp`. Nothing here writes to a vault.

Secret values live only in ``fields`` (the kind's secret fields, :data:`vault.records.SECRET_FIELDS`),
in custom fields marked ``secret``, in ``totp`` and in attachments. ``repr()`` of a record never
shows them, and no message built from a record names them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from vault.blob import MAX_PLAINTEXT
from vault.records import SECRET_FIELDS

#: 25 MiB per attachment: the attachment limit of issue 16 (records engineers can live with)
MAX_ATTACHMENT = 25 * 1024 * 1024
#: custom field names are labels shown in lists and searched (issue 16): one line, at most 128 characters
MAX_CUSTOM_NAME = 128
#: tags are short labels (issue 16 `--tag`): one line, at most 64 characters
MAX_TAG = 64
#: version label at the start of :meth:`ImportedRecord.canonical_bytes`; bump if the layout changes
CANONICAL_LABEL = b"cvault-import-record-v1\n"


@dataclass(frozen=True, slots=True)
class CustomField:
    """A named value outside the kind's schema. ``secret`` values are masked and never searched."""

    name: str
    value: str
    secret: bool

    def __repr__(self) -> str:
        shown = "<secret>" if self.secret else repr(self.value)
        return f"CustomField(name={self.name!r}, value={shown}, secret={self.secret})"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a record: its name as given and its exact bytes."""

    name: str
    data: bytes

    def __repr__(self) -> str:
        return f"Attachment(name={self.name!r}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class ImportedRecord:
    """One source entry, mapped onto a cvault record kind.

    ``index`` is the entry's 1-based position in the source (the number error messages use);
    ``source_id`` the source's own identifier (a UUID, an IT Glue id) or ``"entry N"``/``"row N"``;
    ``title`` the entry name exactly as given; ``client_hint`` the organisation, collection, vault,
    group or folder path exactly as given (``None`` when the source has none): the writer maps it to
    a client. ``path`` is the proposed record path, unique (case-insensitively) among the records of
    the same ``client_hint``.
    """

    index: int
    source_id: str
    title: str
    client_hint: str | None
    path: str
    kind: str
    fields: Mapping[str, Any]
    custom_fields: tuple[CustomField, ...] = ()
    tags: tuple[str, ...] = ()
    totp: str | None = None
    attachments: tuple[Attachment, ...] = ()

    def __post_init__(self) -> None:
        # read-only view: a record handed to the writer cannot be changed behind the fingerprint
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def __repr__(self) -> str:
        secret = SECRET_FIELDS.get(self.kind, frozenset())
        shown = {k: ("<secret>" if k in secret else v) for k, v in self.fields.items()}
        return (
            f"ImportedRecord(index={self.index}, source_id={self.source_id!r}, title={self.title!r}, "
            f"client_hint={self.client_hint!r}, path={self.path!r}, kind={self.kind!r}, fields={shown}, "
            f"custom_fields={list(self.custom_fields)}, tags={list(self.tags)}, "
            f"totp={'<secret>' if self.totp else None}, attachments={list(self.attachments)})"
        )

    def canonical_bytes(self) -> bytes:
        """The record's content in one canonical byte string, for change detection.

        Covers kind, fields, custom fields (sorted), tags (sorted), TOTP and attachments (name, size
        and SHA-256 of the bytes, so a 25 MiB file does not have to be kept around). It does not
        cover where the record goes (client, path) or where it came from (index, id, title): moving
        a record is not a change of its content.

        The result contains secret values in clear. Feed it only to a keyed MAC under a vault key
        (:func:`keyed_fingerprint`); never store, log or hash it bare: an unkeyed hash of a short
        password is a password hash anyone can brute-force.
        """
        document = {
            "kind": self.kind,
            "fields": dict(self.fields),
            "custom_fields": sorted([c.name, c.value, c.secret] for c in self.custom_fields),
            "tags": sorted(self.tags),
            "totp": self.totp,
            "attachments": sorted(
                [a.name, len(a.data), hashlib.sha256(a.data).hexdigest()] for a in self.attachments
            ),
        }
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return CANONICAL_LABEL + body.encode("utf-8")


def keyed_fingerprint(record: ImportedRecord, key: bytes) -> bytes:
    """HMAC-SHA256 of :meth:`ImportedRecord.canonical_bytes` under ``key`` (at least 32 bytes).

    The writer passes a key derived from the vault (a purpose key), so equal fingerprints mean
    "unchanged" without the fingerprint revealing anything about the secrets to someone who does not
    hold the key. Compare fingerprints with ``vault.crypto.constant_time_equal``."""
    if len(key) < 32:
        raise ValueError("fingerprint key must be at least 32 bytes")
    return hmac.new(key, record.canonical_bytes(), hashlib.sha256).digest()


@dataclass(slots=True)
class TypeCounts:
    """What happened to the entries of one source type (``login``, ``card``, ``entry``, ``row``...)."""

    read: int = 0
    mapped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


@dataclass(frozen=True, slots=True)
class Rename:
    """A title that could not be used as a record path as it was, and the path chosen instead."""

    index: int
    title: str
    client_hint: str | None
    path: str
    reason: str


@dataclass(slots=True)
class ImportReport:
    """Counts per source type, renames and warnings of one pass over a source.

    ``read == mapped + skipped`` holds for every type once the pass is complete. Warnings and
    renames name entries by number and title, never by a secret value."""

    source: str
    by_type: dict[str, TypeCounts] = field(default_factory=dict)
    renames: list[Rename] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    complete: bool = False
    #: attachments the source lists but does not carry (a Bitwarden JSON export): not imported
    attachments_missing: int = 0

    def counts(self, source_type: str) -> TypeCounts:
        return self.by_type.setdefault(source_type, TypeCounts())

    @property
    def read(self) -> int:
        return sum(c.read for c in self.by_type.values())

    @property
    def mapped(self) -> int:
        return sum(c.mapped for c in self.by_type.values())

    @property
    def skipped(self) -> dict[str, int]:
        """Skipped entries per reason, over all types."""
        out: dict[str, int] = {}
        for counts in self.by_type.values():
            for reason, n in counts.skipped.items():
                out[reason] = out.get(reason, 0) + n
        return out

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the shape a ``--json`` dry run can print)."""
        return {
            "source": self.source,
            "complete": self.complete,
            "read": self.read,
            "mapped": self.mapped,
            "skipped": self.skipped,
            "by_type": {
                name: {"read": c.read, "mapped": c.mapped, "skipped": dict(c.skipped)}
                for name, c in sorted(self.by_type.items())
            },
            "renames": [
                {
                    "entry": r.index,
                    "title": r.title,
                    "client": r.client_hint,
                    "path": r.path,
                    "reason": r.reason,
                }
                for r in self.renames
            ],
            "warnings": list(self.warnings),
            "attachments_not_imported": self.attachments_missing,
        }


__all__ = [
    "MAX_ATTACHMENT",
    "MAX_CUSTOM_NAME",
    "MAX_PLAINTEXT",
    "MAX_TAG",
    "Attachment",
    "CustomField",
    "ImportReport",
    "ImportedRecord",
    "Rename",
    "TypeCounts",
    "keyed_fingerprint",
]
