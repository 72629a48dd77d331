"""Readers for the export formats MSPs bring to cvault (issue 18; docs/import.md).

Each reader turns one export file into validated :class:`ImportedRecord` values and an
:class:`ImportReport`, and nothing else: no vault is opened, nothing is written, nothing is printed.
A format module is imported only when its format is used (pykeepass only for KeePass).

    source = open_source("bitwarden", "export.json")
    for record in source.records():      # streams; raises InvalidInput naming a bad entry
        ...
    source.report.as_dict()              # counts per source type, renames, warnings
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from vault.errors import InvalidInput
from vault.importers.model import (
    Attachment,
    CustomField,
    ImportedRecord,
    ImportReport,
    Rename,
    TypeCounts,
    keyed_fingerprint,
)

if TYPE_CHECKING:
    from vault.importers._reader import ImportSource

#: format name (``cvault import --from NAME``) -> (module, class)
FORMATS: dict[str, tuple[str, str]] = {
    "bitwarden": ("vault.importers.bitwarden", "BitwardenSource"),
    "keepass": ("vault.importers.keepass", "KeePassSource"),
    "1password": ("vault.importers.onepassword", "OnePasswordSource"),
    "itglue": ("vault.importers.vendor_csv", "ITGlueSource"),
    "hudu": ("vault.importers.vendor_csv", "HuduSource"),
    "csv": ("vault.importers.generic_csv", "GenericCsvSource"),
}


def open_source(
    fmt: str,
    path: str | os.PathLike[str],
    *,
    password: str | None = None,
    keyfile: str | os.PathLike[str] | bytes | None = None,
    mapping: Mapping[str, str] | None = None,
    kind: str = "access",
) -> ImportSource:
    """The reader for ``fmt`` over ``path``. ``password``/``keyfile`` are for ``keepass`` only,
    ``mapping``/``kind`` for ``csv`` only; giving them to another format is refused."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown import format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt != "keepass" and (password is not None or keyfile is not None):
        raise InvalidInput(f"a password or key file applies only to keepass, not {fmt}")
    if fmt != "csv" and mapping:
        raise InvalidInput(f"a column mapping applies only to csv, not {fmt}")
    module_name, class_name = FORMATS[fmt]
    cls = getattr(importlib.import_module(module_name), class_name)
    if fmt == "keepass":
        return cls(path, password=password, keyfile=keyfile)
    if fmt == "csv":
        return cls(path, mapping or {}, kind=kind)
    return cls(path)


def read_all(
    fmt: str, path: str | os.PathLike[str], **options: object
) -> tuple[list[ImportedRecord], ImportReport]:
    """Read a whole source into memory: ``(records, report)``. For small files and tests; the
    writer streams with :meth:`ImportSource.records`."""
    return open_source(fmt, path, **options).read_all()  # type: ignore[arg-type]


__all__ = [
    "FORMATS",
    "Attachment",
    "CustomField",
    "ImportReport",
    "ImportedRecord",
    "Rename",
    "TypeCounts",
    "keyed_fingerprint",
    "open_source",
    "read_all",
]
