"""CSV exports (IT Glue, Hudu, generic): RFC 4180 read as a stream, UTF-8 only.

RFC 4180: fields separated by commas, records by CRLF (LF accepted), fields with commas, quotes or
line breaks in double quotes, a quote inside doubled. Python's csv module in ``strict`` mode reads
exactly that, including line breaks inside quoted fields (the file is opened with ``newline=""``,
as the csv documentation requires). A UTF-8 byte order mark (Excel's "CSV UTF-8" writes one) is
dropped; UTF-16 and other encodings are refused with a line saying how to re-export, never guessed
(a guessed encoding silently changes the bytes of a password).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from vault.blob import MAX_PLAINTEXT

if TYPE_CHECKING:
    from vault.importers._reader import ImportSource

#: one field may hold a whole record's notes (1 MiB, vault/blob.py); csv's default limit is 128 KiB
FIELD_LIMIT = MAX_PLAINTEXT + 1024


def normalise(name: str) -> str:
    """Header name as compared: lower case, spaces and dashes as underscores (``Company Name`` ->
    ``company_name``)."""
    return "_".join(name.strip().lower().replace("-", " ").split())


class CsvTable:
    """The header and the rows of one CSV file, read on demand."""

    def __init__(self, source: ImportSource) -> None:
        self.source = source

    def rows(self, on_header: Callable[[list[str]], None]) -> Iterator[tuple[int, str, list[str]]]:
        """Call ``on_header`` with the header row, then yield ``(row_number, where, values)`` for
        every record; ``where`` names the row in messages."""
        if csv.field_size_limit() < FIELD_LIMIT:
            # only ever raised, never lowered: other csv users in the process keep working
            csv.field_size_limit(FIELD_LIMIT)
        source = self.source
        with source.path.open("rb") as raw:
            head = raw.read(4)
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise source.fail_file("the file is UTF-16 text; save it as UTF-8 (Excel: 'CSV UTF-8')")
            raw.seek(0)
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
            reader = csv.reader(text, strict=True)
            row_number = 0
            try:
                header = next(reader, None)
                if not header or all(h.strip() == "" for h in header):
                    raise source.fail_file("the file is empty (no header row)")
                on_header(header)
                for values in reader:
                    if not values:  # a blank line between records
                        continue
                    row_number += 1
                    where = f"row {row_number} (ending on line {reader.line_num})"
                    if len(values) != len(header):
                        raise source.fail(
                            where, None, f"has {len(values)} fields but the header has {len(header)}"
                        )
                    yield row_number, where, values
            except csv.Error as exc:
                raise source.fail(
                    f"row {row_number + 1} (line {reader.line_num})", None, f"bad CSV: {exc}"
                ) from None
            except UnicodeDecodeError:
                raise source.fail_file(
                    f"not UTF-8 text (near line {reader.line_num + 1}); save it as UTF-8 (Excel: 'CSV UTF-8')"
                ) from None
