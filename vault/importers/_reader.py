"""What every reader shares: the pass over a source, counting, validation, paths, error messages.

A format module subclasses :class:`ImportSource` and implements :meth:`ImportSource._entries`, a
generator of :class:`Draft` (an entry mapped onto a kind, not yet validated) and :class:`Skip`
(an entry deliberately not imported, with its reason). :meth:`ImportSource.records` turns drafts
into validated :class:`~vault.importers.model.ImportedRecord` values and keeps the report.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault.errors import InvalidInput
from vault.importers.model import (
    MAX_ATTACHMENT,
    MAX_CUSTOM_NAME,
    MAX_PLAINTEXT,
    MAX_TAG,
    Attachment,
    CustomField,
    ImportedRecord,
    ImportReport,
    Rename,
)
from vault.importers.paths import PathAllocator
from vault.importers.totp import classify_totp

#: kinds that carry a TOTP seed of their own (issue 16: ``totp`` on account and access)
TOTP_KINDS = frozenset({"access", "account"})
TOTP_PROBLEM = (
    "invalid TOTP seed: expected a base32 secret (at least 16 characters) or an otpauth://totp/ URI"
)
#: the Short fields of vault/records/validate.py: one line, at most 256 characters
SHORT_LIMIT = 256


@dataclass(slots=True)
class Draft:
    """An entry mapped onto a kind by a reader, before validation."""

    index: int
    where: str  # "entry 12", "row 7 (line 9)": how messages name the entry
    source_type: str
    source_id: str
    title: str
    client_hint: str | None
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    custom_fields: list[CustomField] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    totp: str | None = None
    attachments: list[Attachment] = field(default_factory=list)

    def custom(self, name: str, value: Any, *, secret: bool) -> None:
        """Add a custom field unless the value is empty."""
        if value is None:
            return
        text = value if isinstance(value, str) else str(value)
        if text != "":
            self.custom_fields.append(CustomField(name, text, secret))

    def put(self, name: str, value: Any) -> None:
        """Set a kind field unless the value is empty."""
        if value is not None and value != "":
            self.fields[name] = value

    def put_short(self, name: str, value: Any, *, overflow: str, secret: bool = False) -> None:
        """Set a one-line field of at most 256 characters; a longer or multi-line value is kept
        whole as a custom field named ``overflow`` instead of failing the entry."""
        if value is None or value == "":
            return
        if not isinstance(value, str):
            value = str(value)
        if len(value) <= SHORT_LIMIT and "\n" not in value and "\r" not in value and name not in self.fields:
            self.fields[name] = value
        else:
            self.custom(overflow, value, secret=secret)


@dataclass(frozen=True, slots=True)
class Skip:
    """An entry read but deliberately not imported."""

    index: int
    source_type: str
    reason: str


def describe(title: str, limit: int = 48) -> str:
    """A title fit for a one-line message: printable characters only, shortened."""
    text = "".join(ch if ch.isprintable() else " " for ch in title).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text)


class ImportSource(abc.ABC):
    """One export file of one format. :meth:`records` may be called more than once (for a dry
    run and then the real import): each call reads the file again and starts a new report."""

    #: the format name used by ``cvault import --from`` (``bitwarden``, ``keepass``...)
    format = ""
    #: the publisher's product name, at the start of every message
    label = ""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.report = ImportReport(self.format)

    # -- for format modules -------------------------------------------------------------------

    @abc.abstractmethod
    def _entries(self, report: ImportReport) -> Iterator[Draft | Skip]:
        """The format's pass over the file: a :class:`Draft` per entry to import, a
        :class:`Skip` per entry deliberately left out, in source order."""

    def fail(self, where: str, title: str | None, problem: str) -> InvalidInput:
        """The one-line error for a bad entry: format, entry number and title, the problem."""
        named = f"{where} ({describe(title)})" if title else where
        return InvalidInput(f"{self.label}: {named}: {problem}")

    def fail_file(self, problem: str) -> InvalidInput:
        return InvalidInput(f"{self.label}: {self.path.name}: {problem}")

    def _open_check(self) -> None:
        if not self.path.is_file():
            raise self.fail_file("no such file")

    # -- the pass -------------------------------------------------------------------------------

    def records(self) -> Iterator[ImportedRecord]:
        """Read the source once, yielding each mapped record; skipped entries are counted in
        :attr:`report`, which is complete once the iterator is exhausted."""
        report = ImportReport(self.format)
        self.report = report
        allocators: dict[str | None, PathAllocator] = {}
        self._open_check()
        for item in self._entries(report):
            counts = report.counts(item.source_type)
            counts.read += 1
            if isinstance(item, Skip):
                counts.skipped[item.reason] = counts.skipped.get(item.reason, 0) + 1
                continue
            record = self._finish(item, allocators, report)
            counts.mapped += 1
            yield record
        report.complete = True

    def read_all(self) -> tuple[list[ImportedRecord], ImportReport]:
        records = list(self.records())
        return records, self.report

    def _finish(
        self, draft: Draft, allocators: dict[str | None, PathAllocator], report: ImportReport
    ) -> ImportedRecord:
        from vault.records.validate import encode, validate  # pydantic: loaded only when importing

        where, title = draft.where, draft.title
        totp = self._place_totp(draft, report)
        try:
            fields = validate(draft.kind, draft.fields)
            if _may_exceed_limit(fields):
                encode(draft.kind, fields)  # the 1 MiB record limit, exactly as the writer applies it
        except InvalidInput as exc:
            raise self.fail(where, title, exc.message) from None
        custom = self._clean_custom(draft)
        tags = _clean_tags(draft.tags)
        attachments = self._clean_attachments(draft)
        hint = draft.client_hint if draft.client_hint not in ("", None) else None
        allocator = allocators.setdefault(hint, PathAllocator())
        path, reason = allocator.allocate(title)
        if reason is not None:
            report.renames.append(Rename(draft.index, title, hint, path, reason))
        return ImportedRecord(
            index=draft.index,
            source_id=draft.source_id,
            title=title,
            client_hint=hint,
            path=path,
            kind=draft.kind,
            fields=fields,
            custom_fields=custom,
            tags=tags,
            totp=totp,
            attachments=attachments,
        )

    def _place_totp(self, draft: Draft, report: ImportReport) -> str | None:
        value = draft.totp
        if value is None or value == "":
            return None
        verdict = classify_totp(value)
        if verdict == "invalid":
            raise self.fail(draft.where, draft.title, TOTP_PROBLEM)
        if verdict == "other" or draft.kind not in TOTP_KINDS:
            # kept, never dropped: a seed cvault cannot compute (HOTP, Steam) or on a kind without a
            # TOTP field goes into a secret custom field
            draft.custom_fields.append(CustomField("one-time password", value, True))
            if verdict == "other":
                report.warnings.append(
                    f"{draft.where} ({describe(draft.title)}): one-time password is not TOTP "
                    "(HOTP or Steam); kept as a secret custom field"
                )
            return None
        return value

    def _clean_custom(self, draft: Draft) -> tuple[CustomField, ...]:
        out: list[CustomField] = []
        seen: set[str] = set()
        for item in draft.custom_fields:
            if len(item.value.encode("utf-8", "surrogatepass")) > MAX_PLAINTEXT:
                raise self.fail(
                    draft.where, draft.title, f"custom field {describe(item.name)} is larger than 1 MiB"
                )
            if "\x00" in item.value:
                raise self.fail(
                    draft.where, draft.title, f"custom field {describe(item.name)} contains a NUL byte"
                )
            name = _one_line(item.name, MAX_CUSTOM_NAME) or "field"
            unique, n = name, 1
            while unique.lower() in seen:
                n += 1
                unique = f"{name[: MAX_CUSTOM_NAME - 6]} ({n})"
            seen.add(unique.lower())
            out.append(CustomField(unique, item.value, item.secret))
        return tuple(out)

    def _clean_attachments(self, draft: Draft) -> tuple[Attachment, ...]:
        out: list[Attachment] = []
        seen: set[str] = set()
        for item in draft.attachments:
            if len(item.data) > MAX_ATTACHMENT:
                raise self.fail(
                    draft.where, draft.title, f"attachment {describe(item.name)} is larger than 25 MiB"
                )
            name = _one_line(item.name.replace("/", "_").replace("\\", "_"), 255) or "attachment"
            unique, n = name, 1
            while unique.lower() in seen:
                n += 1
                stem, dot, ext = name.rpartition(".")
                unique = f"{stem} ({n}).{ext}" if dot and stem else f"{name} ({n})"
            seen.add(unique.lower())
            out.append(Attachment(unique, item.data))
        return tuple(out)


def _may_exceed_limit(fields: dict[str, Any]) -> bool:
    """Whether the encoded record could reach 1 MiB: JSON escaping at most sextuples a character
    (\\uXXXX) and UTF-8 takes at most 4 bytes, so below 1/6 MiB of text it cannot."""
    size = sum(
        len(k) + (len(v) if isinstance(v, str) else 64 * (len(v) if isinstance(v, list) else 1))
        for k, v in fields.items()
    )
    return size * 6 + 1024 >= MAX_PLAINTEXT


def _one_line(text: str, limit: int) -> str:
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return cleaned[:limit].rstrip()


def _clean_tags(tags: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        cleaned = _one_line(tag, MAX_TAG)
        if cleaned and cleaned.lower() not in seen:
            seen.add(cleaned.lower())
            out.append(cleaned)
    return tuple(out)
