"""``cvault user add|approve|enroll|list|show|disable|enable|grant|revoke|unlock|reset-totp|reset|
confirm|train|access``.

Everything but ``enroll`` is for admins (``train`` and ``confirm``: also account managers;
``access``: admins and security reviewers); ``enroll`` is run by the new user with the one-time
enrollment code the approving admin gave them (docs/identity.md, "Separation of duties").
"""

from __future__ import annotations

import click

from cli.output import emit, emit_line, fields_block, json_option, safe, table
from cli.render import (
    qr_file_options,
    refuse_existing_qr_files,
    show_access,
    show_enrollment,
    when,
    write_qr_file,
)
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
    """Request a new account: pending until another admin runs 'user approve' (no code yet).

    While the vault has fewer than two enrolled admins, adding an admin prints the code at once
    (a bootstrap step, listed by doctor and the audit report); so does a single-operator vault."""
    vault = state.vault()
    data = vault.users.add(state.principal(), name, list(roles))

    def human(d):
        if d["state"] == "pending_approval":
            click.echo(f"user {d['name']} requested ({', '.join(d['roles'])}): pending approval")
            click.echo(f"another admin runs: cvault user approve {d['name']}  (the code goes to them)")
            return
        how = " (bootstrap step: audited)" if d.get("mode") == "bootstrap" else ""
        click.echo(f"user {d['name']} added ({', '.join(d['roles'])}){how}")
        _show_code(d)

    emit(data, as_json, human)


def _show_code(d: dict) -> None:
    click.echo(f"enrollment code (one use, until {when(d['enrollment_expires_at'])}):")
    click.echo(f"  {d['enrollment_code']}")
    click.echo(f"give it to {d['name']} privately; they run: cvault user enroll {d['name']}")


@user.command("approve")
@click.argument("name")
@json_option
@click.pass_obj
def user_approve(state, name, as_json):
    """Approve another admin's account request or full reset: prints the enrollment code to you."""
    data = state.vault().users.approve(state.principal(), name)

    def human(d):
        what = "account" if d["kind"] == "create" else "full reset"
        click.echo(
            f"{what} of {d['name']} ({', '.join(d['roles'])}) approved; requested by {d['requested_by']}"
        )
        if d["kind"] == "reset":
            click.echo(
                "its roles and assignments stay suspended until a third person runs: "
                f"cvault user confirm {d['name']}"
            )
        _show_code(d)

    emit(data, as_json, human)


@user.command("reset")
@click.argument("name")
@json_option
@click.pass_obj
def user_reset(state, name, as_json):
    """Request a full reset (password and TOTP); another admin approves it."""
    data = state.vault().users.reset(state.principal(), name)

    def human(d):
        if d["state"] == "pending_approval":
            click.echo(
                f"full reset of {d['name']} requested: another admin runs: cvault user approve {d['name']}"
            )
        else:
            click.echo(f"{d['name']} reset (single-operator vault); sessions ended")
            _show_code(d)

    emit(data, as_json, human)


@user.command("confirm")
@click.argument("name")
@json_option
@click.pass_obj
def user_confirm(state, name, as_json):
    """Re-confirm the roles and assignments of an account after its full reset (a third person)."""
    data = state.vault().users.confirm(state.principal(), name)
    emit(data, as_json, lambda d: click.echo(f"{d['name']}: roles {', '.join(d['roles'])} re-confirmed"))


@user.command("enroll")
@click.argument("name")
@click.option(
    "--code",
    metavar="CODE",
    help="The enrollment code (asked for, hidden, otherwise). On the command line it stays valid "
    "until used: prefer the prompt or --code-stdin.",
)
@click.option(
    "--code-stdin",
    is_flag=True,
    help="Read the enrollment code from standard input (first line; the password on the next "
    "with --password-stdin).",
)
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@qr_file_options
@json_option
@click.pass_obj
def user_enroll(state, name, code, code_stdin, password_stdin, qr_png, qr_svg, as_json):
    """Redeem your enrollment code: set a password, get your TOTP secret and recovery codes."""
    import sys

    from cli.state import read_stdin_lines, warn_code_in_argv
    from vault.errors import InvalidInput

    if code is not None and code_stdin:
        raise InvalidInput("use either --code or --code-stdin")
    refuse_existing_qr_files(qr_png, qr_svg)
    vault = state.vault()
    password = None
    if code_stdin:
        if password_stdin:
            code, password = read_stdin_lines("enrollment code", "password")
        else:
            (code,) = read_stdin_lines("enrollment code")
    elif code is None:
        if not sys.stdin.isatty():
            raise InvalidInput("no enrollment code: use --code-stdin or run in a terminal")
        code = click.prompt("Enrollment code", hide_input=True, err=True)
    else:
        warn_code_in_argv("enrollment code", "--code")
    if password is None:
        if code_stdin and not sys.stdin.isatty():
            raise InvalidInput("no password: with --code-stdin, give --password-stdin too")
        password = read_password(password_stdin, "New password", confirm=True)
    data = vault.users.enroll(name, code, password)
    emit(data, as_json, lambda d: show_enrollment(d, qr_png, qr_svg))
    if as_json:
        for path, kind in ((qr_png, "png"), (qr_svg, "svg")):
            if path:
                write_qr_file(data["otpauth_uri"], path, kind)


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
        emit_line(data, as_json, lambda d: done.format(**d))

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
    """Withdraw a user's TOTP secret and recovery codes; print a re-enrollment code. The password
    stays: re-enrolling needs the code and the user's current password."""
    data = state.vault().users.reset_totp(state.principal(), name)

    def human(d):
        click.echo(
            f"TOTP of {d['name']} reset; sessions ended. Re-enrollment code "
            f"(one use, until {when(d['enrollment_expires_at'])}; "
            f"{d['name']} also needs their current password):"
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
    emit_line(data, as_json, lambda d: f"{d['name']}: {', '.join(d['roles'])}")


@user.command("revoke")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="Role to revoke.")
@json_option
@click.pass_obj
def user_revoke(state, name, role, as_json):
    """Revoke a role."""
    data = state.vault().users.revoke(state.principal(), name, role)
    emit_line(data, as_json, lambda d: f"{d['name']}: {', '.join(d['roles']) or '(no roles)'}")


@user.command("train")
@click.argument("name")
@click.option(
    "--until",
    "until",
    required=True,
    help="Training attestation valid until: ISO 8601 or relative (+365d). "
    "A bare date (2027-03-31) means the end of that day "
    "(23:59:59) in the vault's time zone (init --time-zone; default UTC).",
)
@json_option
@click.pass_obj
def user_train(state, name, until, as_json):
    """Record a data-handling training attestation valid until a date."""
    data = state.vault().users.train(state.principal(), name, until)
    emit_line(
        data, as_json, lambda d: f"training of {d['name']} valid until {when(d['training_valid_until'])}"
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
