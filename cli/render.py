"""Human output: the one time format, values and labels for people, and renderers shared by
several command groups (command modules never import each other): enrollment output, the
who-can-read-what table, the new-passphrase prompt.

Human output has one time format (docs/cli.md "Output"): UTC, whole seconds, a ``Z`` suffix
(``2027-03-31T23:59:59Z``), whatever the facade's value looked like (a ``datetime``, ISO 8601
with ``+00:00`` or with microseconds). ``--json`` output is left exactly as the facade returns it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from cli.text import when
from vault.errors import InvalidInput


def human_value(value: Any) -> str:
    """A facade value as people read it: times in the one format, ``-`` for none, yes/no for
    booleans, lists joined with commas (never a Python repr)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(human_value(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{label(k)} {human_value(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (datetime, str)):
        return when(value) if value != "" else ""
    return str(value)


def label(key: str) -> str:
    """A facade key as a human label: ``training_valid_until`` -> ``training valid until``."""
    return key.replace("_", " ")


def prompt_new_passphrase() -> str:
    value = click.prompt("New vault passphrase", hide_input=True, confirmation_prompt=True, err=True)
    if len(value) < 8:
        raise InvalidInput("passphrase too short: use at least 8 characters")
    return value


#: explicit colours for every cell of the QR code: black modules on a white ground whatever the
#: terminal's theme (a light theme would otherwise invert a code drawn in its default colours)
QR_COLOURS = "\x1b[30;107m"  # foreground black, background bright white
QR_RESET = "\x1b[0m"
QR_QUIET_ZONE = 4  # modules of light border on every side (ISO/IEC 18004 asks for 4)


def qr_terminal_lines(uri: str) -> list[str]:
    """The QR code of ``uri`` as terminal lines: two modules per character cell (half blocks),
    a quiet zone of 4 modules, and explicit colours on every line, so phone scanners read it on
    light and dark terminals alike (tests/identity/test_enrollment_qr.py decodes it)."""
    import segno  # lazily: only enrollment draws a QR code

    rows = [list(r) for r in segno.make(uri, error="m").matrix_iter(scale=1, border=QR_QUIET_ZONE)]
    if len(rows) % 2:
        rows.append([0] * len(rows[0]))
    glyph = {(True, True): "\u2588", (True, False): "\u2580", (False, True): "\u2584", (False, False): " "}
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        cells = "".join(glyph[(bool(a), bool(b))] for a, b in zip(top, bottom, strict=True))
        lines.append(QR_COLOURS + cells + QR_RESET)
    return lines


def write_qr_file(uri: str, path: str, kind: str) -> str:
    """Write the QR code as a PNG or SVG file (new, 0600: it holds the TOTP secret)."""
    import io
    from pathlib import Path

    import segno

    from vault.home import write_private_file

    target = Path(path)
    buf = io.BytesIO()
    segno.make(uri, error="m").save(
        buf, kind=kind, scale=8 if kind == "png" else 4, border=QR_QUIET_ZONE, dark="black", light="white"
    )
    try:
        write_private_file(target, buf.getvalue(), exclusive=True)
    except FileExistsError:
        raise InvalidInput(f"{target} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise InvalidInput(f"cannot write {target}: {exc.strerror}") from None
    return str(target)


def refuse_existing_qr_files(*paths: str | None) -> None:
    """Before enrolling: a QR file that exists (or whose folder does not) is refused now, not after
    the one-time enrollment output was spent."""
    from pathlib import Path

    for path in paths:
        if path and Path(path).exists():
            raise InvalidInput(f"{path} already exists; refusing to overwrite it")
        if path and not Path(path).resolve().parent.is_dir():
            raise InvalidInput(f"cannot write {path}: no such folder")


def show_enrollment(d: dict, qr_png: str | None = None, qr_svg: str | None = None) -> None:
    """Human output of an enrollment: otpauth URI, QR code in the terminal (and in files when
    asked), recovery codes."""
    click.echo(f"Enrolled {d['name']}. Add this account to your authenticator app:")
    click.echo("")
    click.echo(f"  {d['otpauth_uri']}")
    click.echo("")
    for line in qr_terminal_lines(d["otpauth_uri"]):
        click.echo(line, color=True)  # the colours are the code's: kept even when piped
    for path, kind in ((qr_png, "png"), (qr_svg, "svg")):
        if path:
            written = write_qr_file(d["otpauth_uri"], path, kind)
            click.echo(
                f"QR code written to {written} (0600; it holds the TOTP secret: delete it after scanning)"
            )
    click.echo("")
    click.echo("Recovery codes (each works once instead of a TOTP code; store them offline):")
    for code in d["recovery_codes"]:
        click.echo(f"  {code}")
    click.echo("")
    click.echo(f"The TOTP factor becomes active at your first login: cvault login {d['name']}")


def qr_file_options(command):
    """``--qr-png FILE`` and ``--qr-svg FILE`` for the commands that enroll someone."""
    command = click.option(
        "--qr-svg",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Also write the TOTP QR code as an SVG file (new, 0600; delete it after scanning).",
    )(command)
    return click.option(
        "--qr-png",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Also write the TOTP QR code as a PNG file (new, 0600; delete it after scanning).",
    )(command)


def _team_paths(paths: list[dict]) -> str:
    """``noc (until 2027-01-01)``, ``desk (left)``, ``ops (ended)``: every team path of a row."""
    out = []
    for p in paths:
        state = (
            "left"
            if not p["member"]
            else "ended"
            if p["ended"]
            else (f"until {when(p['until'])}" if p["until"] else "no end")
        )
        out.append(f"{p['team']} ({state})")
    return ", ".join(out) or "-"


def show_access(d: dict, key: str) -> None:
    from cli.output import table

    rows = [
        {
            "who": r[key],
            "can_read": "yes" if r["can_read"] else "no",
            "reason": r["reason"],
            "assigned_until": (
                ("ended " + when(r["assignment"]["ended_at"] or r["assignment"]["until"]))
                if r["assignment"] and r["assignment"]["ended"]
                else (when(r["assignment"]["until"]) if r["assignment"]["until"] else "no end")
                if r["assignment"]
                else "-"
            ),
            "teams": _team_paths(r.get("teams") or []),
            "training": when(r["training_valid_until"]),
            "sla": r["sla_state"],
            "account": r["account"],
        }
        for r in d["users" if key == "user" else "clients"]
    ]
    table(
        rows,
        [
            ("who", key),
            ("can_read", "can read"),
            ("assigned_until", "assigned until"),
            ("teams", "through teams"),
            ("training", "training until"),
            ("sla", "sla"),
            ("account", "account"),
            ("reason", "why"),
        ],
        empty="(no one)",
    )
