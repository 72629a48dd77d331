"""``cvault user add|enroll|list|show|disable|enable|grant|revoke|unlock|reset-totp|train|access``.

Everything but ``enroll`` is for admins (``access``: admins and security reviewers); ``enroll`` is
run by the new user with the one-time enrollment code an admin gave them.
"""

from __future__ import annotations

import click

from cli.output import emit, fields_block, json_option, safe, table
from cli.render import show_access, show_enrollment, when
from cli.state import read_password
from vault.principal import ROLES


@click.group("user")
def user():
    """Manage staff accounts: onboarding, roles, locks, TOTP, training."""


@user.command("add")
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(ROLES),
    help="Role to grant (repeatable).",
)
@json_option
@click.pass_obj
def user_add(state, name, roles, as_json):
    """Add a user and print a one-time enrollment code (valid 24 h)."""
    vault = state.vault()
    data = vault.users.add(state.principal(), name, list(roles))

    def human(d):
        click.echo(f"user {d['name']} added ({', '.join(d['roles'])})")
        click.echo(f"enrollment code (one use, until {when(d['enrollment_expires_at'])}):")
        click.echo(f"  {d['enrollment_code']}")
        click.echo(f"give it to {d['name']} privately; they run: cvault user enroll {d['name']}")

    emit(data, as_json, human)


@user.command("enroll")
@click.argument("name")
@click.option("--code", metavar="CODE", help="The enrollment code (asked for, hidden, otherwise).")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@json_option
@click.pass_obj
def user_enroll(state, name, code, password_stdin, as_json):
    """Redeem your enrollment code: set a password, get your TOTP secret and recovery codes."""
    import sys

    from vault.errors import InvalidInput

    vault = state.vault()
    if code is None:
        if not sys.stdin.isatty():
            raise InvalidInput("no enrollment code: pass --code CODE or run in a terminal")
        code = click.prompt("Enrollment code", hide_input=True, err=True)
    password = read_password(password_stdin, "New password", confirm=True)
    data = vault.users.enroll(name, code, password)
    emit(data, as_json, show_enrollment)


@user.command("list")
@json_option
@click.pass_obj
def user_list(state, as_json):
    """List users with roles, state and training date."""
    rows = state.vault().users.list(state.principal())
    emit(
        rows,
        as_json,
        lambda r: table(
            [dict(x, roles=",".join(x["roles"])) for x in r],
            [
                ("name", "user"),
                ("roles", "roles"),
                ("state", "state"),
                ("training_valid_until", "training until"),
            ],
        ),
    )


@user.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def user_show(state, name, as_json):
    """Show one user: roles, state, lock, failures, assignments."""
    data = state.vault().users.show(state.principal(), name)

    def human(d):
        shown = {k: v for k, v in d.items() if k != "assignments"}
        fields_block(shown)
        click.echo("assignments:" + ("" if d["assignments"] else " (none)"))
        for a in d["assignments"]:
            click.echo(f"  {safe(a['client'])}  since {when(a['since'])}  until {when(a['until'])}")

    emit(data, as_json, human)


def _simple(name: str, method: str, help_text: str, done: str):
    @user.command(name, help=help_text)
    @click.argument("name")
    @json_option
    @click.pass_obj
    def command(state, name, as_json):
        data = getattr(state.vault().users, method)(state.principal(), name)
        emit(data, as_json, lambda d: click.echo(done.format(**d)))

    return command


user_disable = _simple(
    "disable", "disable", "Disable a user (sessions end; nothing is deleted).", "user {name} disabled"
)
user_enable = _simple("enable", "enable", "Enable a disabled user.", "user {name} enabled")
user_unlock = _simple("unlock", "unlock", "Unlock a user locked by failed attempts.", "user {name} unlocked")


@user.command("reset-totp")
@click.argument("name")
@json_option
@click.pass_obj
def user_reset_totp(state, name, as_json):
    """Withdraw a user's TOTP secret and recovery codes; print a new enrollment code."""
    data = state.vault().users.reset_totp(state.principal(), name)

    def human(d):
        click.echo(
            f"TOTP of {d['name']} reset; sessions ended. Re-enrollment code "
            f"(one use, until {when(d['enrollment_expires_at'])}):"
        )
        click.echo(f"  {d['enrollment_code']}")

    emit(data, as_json, human)


@user.command("grant")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="Role to grant.")
@json_option
@click.pass_obj
def user_grant(state, name, role, as_json):
    """Grant a role."""
    data = state.vault().users.grant(state.principal(), name, role)
    emit(data, as_json, lambda d: click.echo(f"{d['name']}: {', '.join(d['roles'])}"))


@user.command("revoke")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="Role to revoke.")
@json_option
@click.pass_obj
def user_revoke(state, name, role, as_json):
    """Revoke a role."""
    data = state.vault().users.revoke(state.principal(), name, role)
    emit(data, as_json, lambda d: click.echo(f"{d['name']}: {', '.join(d['roles']) or '(no roles)'}"))


@user.command("train")
@click.argument("name")
@click.option(
    "--until", "until", required=True, help="Training attestation valid until: ISO 8601 or relative (+365d)."
)
@json_option
@click.pass_obj
def user_train(state, name, until, as_json):
    """Record a data-handling training attestation valid until a date."""
    data = state.vault().users.train(state.principal(), name, until)
    emit(
        data,
        as_json,
        lambda d: click.echo(f"training of {d['name']} valid until {when(d['training_valid_until'])}"),
    )


@user.command("access")
@click.argument("name")
@json_option
@click.pass_obj
def user_access(state, name, as_json):
    """Which clients' secrets this user can read right now, and why (reviewers, admins)."""
    data = state.vault().access.user_access(state.principal(), name)

    def human(d):
        click.echo(
            f"{d['user']} ({', '.join(d['roles']) or 'no roles'}) at {when(d['at'])}: can read "
            f"{', '.join(d['can_read']) or 'no client'}"
        )
        show_access(d, "client")

    emit(data, as_json, human)
