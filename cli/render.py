"""Renderers and prompts shared by several command groups (command modules never import each
other): enrollment output, the who-can-read-what table, the new-passphrase prompt."""

from __future__ import annotations

import click

from cli.output import table
from vault.errors import InvalidInput


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
    rows = [
        {
            "who": r[key],
            "can_read": "yes" if r["can_read"] else "no",
            "reason": r["reason"],
            "assigned_until": (
                ("ended " + (r["assignment"]["ended_at"] or r["assignment"]["until"]))
                if r["assignment"] and r["assignment"]["ended"]
                else (r["assignment"]["until"] or "no end")
                if r["assignment"]
                else "-"
            ),
            "training": r["training_valid_until"] or "-",
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
