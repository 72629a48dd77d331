"""Human output: the one time format, values and labels for people, and renderers shared by
several command groups (command modules never import each other): enrollment output, the
who-can-read-what table, the new-passphrase prompt.

Human output has one time format (docs/cli.md "Output"): UTC, whole seconds, a ``Z`` suffix
(``2027-03-31T23:59:59Z``), whatever the facade's value looked like (a ``datetime``, ISO 8601
with ``+00:00`` or with microseconds). ``--json`` output is left exactly as the facade returns it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import click

from vault.errors import InvalidInput

#: an ISO 8601 date-time as the facade returns them (offset or Z, optional fraction)
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$")


def when(value: Any) -> str:
    """The human form of a point in time: ``2027-03-31T23:59:59Z`` (UTC, seconds). ``None`` is
    ``-``; text that is not an ISO 8601 date-time is returned unchanged."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, str) and _ISO_TIME.match(value.strip()):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            return value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        return str(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def show_enrollment(d: dict) -> None:
    """Human output of an enrollment: otpauth URI, QR code in the terminal, recovery codes."""
    click.echo(f"Enrolled {d['name']}. Add this account to your authenticator app:")
    click.echo("")
    click.echo(f"  {d['otpauth_uri']}")
    click.echo("")
    import io

    import segno  # lazily: only enrollment draws a QR code

    buf = io.StringIO()
    segno.make(d["otpauth_uri"], error="m").terminal(out=buf, compact=True)
    click.echo(buf.getvalue().rstrip("\n"))
    click.echo("")
    click.echo("Recovery codes (each works once instead of a TOTP code; store them offline):")
    for code in d["recovery_codes"]:
        click.echo(f"  {code}")
    click.echo("")
    click.echo(f"The TOTP factor becomes active at your first login: cvault login {d['name']}")


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
            ("training", "training until"),
            ("sla", "sla"),
            ("account", "account"),
            ("reason", "why"),
        ],
        empty="(no one)",
    )
