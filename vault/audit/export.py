"""Audit export formats (docs/audit.md section 5): JSON Lines (verifiable), CSV and CEF.

Every format escapes control characters, so no stored value (a reason, an actor name, a record
path) can start a new line or fake a field:

* JSON Lines: ``json.dumps(..., ensure_ascii=True)``: every control and non-ASCII character is a
  ``\\u`` escape (four hex digits).
* CSV (RFC 4180: CRLF line ends, quoting by Python ``csv``): control characters (and Unicode
  line/paragraph separators, bidi controls: everything that is not printable) are written as
  Python-style escapes (``\\n``, ``\\x1b``, ``\\u2028``); a cell of a *text* column that starts
  with ``= + - @`` is prefixed with ``'`` so a spreadsheet does not run it as a formula. The other
  columns (numbers, times, hex hashes, base64) are written exactly, so they still decode.
* CEF (ArcSight Common Event Format, version 0): header fields escape ``\\`` and ``|``; extension
  values escape ``\\`` and ``=`` and write newlines as ``\\n`` and ``\\r``; other control characters are
  first written as Python-style escapes as in CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime

from vault.policy import Action, AuditEvent

CSV_COLUMNS = (
    "seq",
    "at",
    "actor",
    "action",
    "client",
    "outcome",
    "reason",
    "origin",
    "detail",
    "detail_key",
    "detail_sealed",
    "prev_hash",
    "entry_hash",
)

#: the columns that hold free text (names, reasons, paths): the only ones a spreadsheet could be
#: tricked into evaluating, and so the only ones neutralised
CSV_TEXT_COLUMNS = frozenset({"actor", "action", "client", "outcome", "reason", "origin", "detail"})

CEF_VENDOR = "cvault"
CEF_PRODUCT = "client-config-vault"

_FORMULA_START = ("=", "+", "-", "@")

#: what ends a line in each format: RFC 4180 says CRLF for CSV
LINE_END = {"jsonl": "\n", "csv": "\r\n", "cef": "\n"}


def line_end(format: str) -> str:
    return LINE_END.get(format, "\n")


def escape_controls(text) -> str:
    """Non-printable characters (C0/C1 controls, line separators, bidi controls) -> escapes."""
    s = "" if text is None else str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in s)


def jsonl_line(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# --- CSV ------------------------------------------------------------------------------------------


def _csv_cell(value, text: bool = True) -> str:
    if value is None:
        return ""
    s = escape_controls(value)
    return "'" + s if text and s.startswith(_FORMULA_START) else s


def csv_lines(entries: Iterator[dict]) -> Iterator[str]:
    """One CSV record per entry, without its line end (the writer adds :data:`LINE_END`)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buf.getvalue()[:-2]
    for e in entries:
        buf.seek(0)
        buf.truncate()
        writer.writerow([_csv_cell(e.get(c), c in CSV_TEXT_COLUMNS) for c in CSV_COLUMNS])
        yield buf.getvalue()[:-2]


# --- CEF ------------------------------------------------------------------------------------------


def cef_header_field(value) -> str:
    return escape_controls(value).replace("\\", "\\\\").replace("|", "\\|")


def cef_ext_value(value) -> str:
    s = "" if value is None else str(value)
    s = "".join(ch if ch in "\n\r" or ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in s)
    return s.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


def cef_severity(action: str, outcome: str) -> int:
    """0-10: refusals and errors stand out; identity alarms and shreds above routine events."""
    if action in (AuditEvent.AUTH_LOCKOUT, AuditEvent.AUTH_TOTP_REPLAY):
        return 8
    if outcome == "error":
        return 7
    if outcome == "deny":
        return 6
    if action.startswith(AuditEvent.SLA_SHRED.value) or action == Action.AUDIT_PRUNE:
        return 5
    return 2


def _source_address(origin: str | None) -> str | None:
    """The client address of an API origin (``api:192.0.2.7``), for CEF ``src``; else None."""
    if not origin or not origin.startswith("api:"):
        return None
    import ipaddress

    text = origin[4:]
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def cef_line(e: dict, version: str, vault_name: str | None = None, vault_id: str | None = None) -> str:
    at = datetime.fromisoformat(e["at"].replace("Z", "+00:00"))
    header = [
        "CEF:0",
        cef_header_field(CEF_VENDOR),
        cef_header_field(CEF_PRODUCT),
        cef_header_field(version),
        cef_header_field(e["action"]),
        cef_header_field(f"{e['action']} {e['outcome']}"),
        str(cef_severity(e["action"], e["outcome"])),
    ]
    ext = [
        ("rt", int(at.timestamp() * 1000)),
        ("dvchost", vault_name),
        ("deviceExternalId", vault_id),
        ("externalId", e["seq"]),
        ("suser", e["actor"]),
        ("act", e["action"]),
        ("outcome", e["outcome"]),
        ("reason", e.get("reason")),
        ("src", _source_address(e.get("origin"))),
    ]
    for n, (label, key) in enumerate(
        (("client", "client"), ("origin", "origin"), ("detail", "detail"), ("entryHash", "entry_hash")), 1
    ):
        if e.get(key) is not None:
            ext += [(f"cs{n}Label", label), (f"cs{n}", e[key])]
    body = " ".join(f"{k}={cef_ext_value(v)}" for k, v in ext if v is not None)
    return "|".join(header) + "|" + body


def cef_lines(
    entries: Iterator[dict], version: str, vault_name: str | None = None, vault_id: str | None = None
) -> Iterator[str]:
    for e in entries:
        yield cef_line(e, version, vault_name, vault_id)
