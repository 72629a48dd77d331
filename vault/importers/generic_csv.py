"""Any CSV, with a column mapping (``--map column=field``) (docs/import.md, "Generic CSV").

``mapping`` maps a column of the file (matched like the vendor readers: case, spaces and dashes
ignored) to one of:

- a field of the record kind (``username``, ``password``, ``url``, ``host``, ``port``,
  ``wifi_ssid``...: the fields of vault.records.FIELDS for ``kind``);
- ``title`` (the record name, from which the path is made), ``client`` (the client, optional),
  ``totp``, ``tags`` (split on ``;`` and ``,``), ``id`` (the source's identifier), ``kind`` (a column
  holding each row's kind);
- ``custom:NAME`` (a custom field) or ``secret:NAME`` (a secret custom field);
- ``ignore``.

Every column must be mapped, if only to ``ignore``: a column nobody mentioned is refused rather than
dropped, so no value is lost without the user having said so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from vault.errors import InvalidInput
from vault.importers._csv import CsvTable, normalise
from vault.importers._reader import Draft, ImportSource, Skip
from vault.importers.model import ImportReport
from vault.records import FIELDS, KINDS

KIND_LIST = ", ".join(KINDS)
SPECIAL = frozenset({"title", "client", "totp", "tags", "id", "kind", "ignore"})
INT_FIELDS = frozenset({"port", "vlan"})
LIST_FIELDS = frozenset({"addresses", "dns_servers"})
_SPLIT_LIST = re.compile(r"[,;\s]+")
_SPLIT_TAGS = re.compile(r"[;,]")


def kind_fields() -> dict[str, frozenset[str]]:
    """The fields of every kind, from the one table (vault.records.FIELDS)."""
    return {kind: frozenset(f.name for f in fields) for kind, fields in FIELDS.items()}


class GenericCsvSource(ImportSource):
    format = "csv"
    label = "CSV"

    def __init__(
        self, path: str | os.PathLike[str], mapping: Mapping[str, str], *, kind: str = "access"
    ) -> None:
        super().__init__(path)
        if kind not in KINDS:
            raise InvalidInput(f"unknown record type {kind!r}: use one of {', '.join(KINDS)}")
        if not mapping:
            raise InvalidInput("CSV import needs a column mapping: --map COLUMN=FIELD for every column")
        self.kind = kind
        fields = kind_fields()
        self._fields = fields
        per_row_kind = "kind" in mapping.values()
        allowed = set().union(*fields.values()) if per_row_kind else set(fields[kind])
        self.mapping: dict[str, str] = {}
        singles: dict[str, str] = {}
        for column, target in mapping.items():
            target = target.strip()
            if target.startswith(("custom:", "secret:")):
                if not target.split(":", 1)[1].strip():
                    raise InvalidInput(
                        f"--map {column}={target}: a custom field needs a name after the colon"
                    )
            elif target not in SPECIAL and target not in allowed:
                scope = "any kind" if per_row_kind else f"kind {kind!r}"
                choices = ", ".join(sorted(allowed | SPECIAL)) + ", custom:NAME, secret:NAME"
                raise InvalidInput(
                    f"--map {column}={target}: unknown field {target!r} for {scope}: use one of {choices}"
                )
            elif target != "ignore" and target != "tags":
                if target in singles:
                    raise InvalidInput(
                        f"--map: columns {singles[target]!r} and {column!r} both map to {target!r}"
                    )
                singles[target] = column
            key = normalise(column)
            if key in self.mapping:
                raise InvalidInput(f"--map: column {column!r} is mapped twice")
            self.mapping[key] = target

    def _entries(self, report: ImportReport) -> Iterator[Draft | Skip]:
        targets: list[tuple[str, str]] = []

        def check(header: list[str]) -> None:
            keys = [normalise(h) for h in header]
            if len(set(keys)) != len(keys):
                raise self.fail_file("two columns have the same name")
            missing = [c for c in self.mapping if c not in keys]
            if missing:
                raise self.fail_file(
                    f"--map names columns that are not in the file: {', '.join(repr(m) for m in missing)}"
                    f" (its columns: {', '.join(repr(h) for h in header)})"
                )
            unmapped = [h for h, k in zip(header, keys, strict=True) if k not in self.mapping]
            if unmapped:
                raise self.fail_file(
                    f"columns not mapped: {', '.join(repr(u) for u in unmapped)}; map each to a field "
                    "or to 'ignore' (--map COLUMN=ignore), so that no value is dropped unnoticed"
                )
            targets.extend((h, self.mapping[k]) for h, k in zip(header, keys, strict=True))
            if "title" not in self.mapping.values():
                report.warnings.append("no column is mapped to 'title'; records are named 'row 1', 'row 2'")

        for row, where, values in CsvTable(self).rows(check):
            yield self._row(row, where, targets, values)

    def _row(self, row: int, where: str, targets: list[tuple[str, str]], values: list[str]) -> Draft:
        cells = {target: value for (_, target), value in zip(targets, values, strict=True)}
        kind = self.kind
        if "kind" in cells:
            kind = cells["kind"].strip() or self.kind
            if kind not in KINDS:
                # not the cell itself: a shifted column puts a secret here (review9 R9-4)
                raise self.fail(where, cells.get("title"), f"unknown kind: use one of {', '.join(KINDS)}")
        title = cells.get("title", "") if "title" in cells else f"row {row}"
        draft = Draft(
            row, where, "row", cells.get("id") or f"row {row}", title, cells.get("client") or None, kind
        )
        allowed = self._fields[kind]
        for (column, target), value in zip(targets, values, strict=True):
            if target in SPECIAL and target != "tags":
                continue
            if target == "tags":
                draft.tags.extend(t for t in _SPLIT_TAGS.split(value))
            elif target.startswith("custom:"):
                draft.custom(target.split(":", 1)[1].strip(), value, secret=False)
            elif target.startswith("secret:"):
                draft.custom(target.split(":", 1)[1].strip(), value, secret=True)
            elif value != "":
                if target not in allowed:
                    raise self.fail(
                        where, title, f"column {column!r} maps to {target!r}, not a field of kind {kind!r}"
                    )
                draft.fields[target] = self._convert(where, title, column, target, value)
        draft.totp = cells.get("totp") or None
        if kind == "note" and "text" not in draft.fields:
            draft.fields["text"] = ""
        return draft

    def _convert(self, where: str, title: str, column: str, target: str, value: str) -> Any:
        if target in INT_FIELDS:
            if not value.strip().isdigit():
                raise self.fail(where, title, f"column {column!r} ({target}) is not a whole number")
            return int(value.strip())
        if target in LIST_FIELDS:
            return [v for v in _SPLIT_LIST.split(value) if v]
        return value
