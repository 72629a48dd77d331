"""``cvault login | logout | whoami | passwd``: staff sessions (docs/spec.md §5).

Passwords come from a hidden prompt or ``--password-stdin``, never argv. A TOTP code may be
given as ``--totp CODE`` (it is dead within a minute); a recovery code comes from the prompt or
``--recovery-code-stdin`` (``--recovery-code CODE`` works, with a warning: it stays valid until used).
The session token is written to the session file (cli.session_file), never printed.
"""

from __future__ import annotations

import sys

import click

from cli.output import emit, fields_block, json_option
from cli.render import when
from cli.state import read_password, read_stdin_secret
from vault.errors import InvalidInput


@click.command("login")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--totp", "totp", metavar="CODE", help="The current TOTP code (asked for otherwise).")
@click.option(
    "--recovery-code",
    metavar="CODE",
    help="Use one of your single-use recovery codes instead of a TOTP code (on the command line "
    "it stays valid until used: prefer the prompt or --recovery-code-stdin).",
)
@click.option(
    "--recovery-code-stdin",
    is_flag=True,
    help="Read a recovery code from standard input (after the password with --password-stdin).",
)
@click.option("--yes", is_flag=True, help="Replace another user's session without asking.")
@json_option
@click.pass_obj
def login_cmd(state, name, password_stdin, totp, recovery_code, recovery_code_stdin, yes, as_json):
    """Log in with password and TOTP code; starts a session (8 h, 30 min idle). At the prompt a
    recovery code may be typed instead of the TOTP code.

    Replacing another user's session is announced first on a terminal, and needs --yes otherwise
    (or use --profile NAME to keep both)."""
    from cli.session_file import save_token, session_user
    from cli.state import read_stdin_lines, warn_code_in_argv
    from vault.identity import codes

    given = [x for x in (totp is not None, recovery_code is not None, recovery_code_stdin) if x]
    if len(given) > 1:
        raise InvalidInput("use one of --totp, --recovery-code or --recovery-code-stdin")
    vault = state.vault()
    current = session_user(vault.session_scope)[0]
    if current is not None and current != name and not yes:
        # (expired or not, the file is another user's) a person at a terminal is told before
        # anything is asked, and can stop there (Ctrl-C at the password prompt); a script is
        # refused: it must say --yes or use its own profile
        if not sys.stdin.isatty() or password_stdin:
            raise InvalidInput(
                f"this would replace {current}'s session: add --yes, or log in under another "
                "profile (--profile NAME)"
            )
        click.echo(
            f"cvault: warning: this replaces {current}'s session (use --profile NAME to keep both)",
            err=True,
        )
    if recovery_code_stdin:
        if password_stdin:
            password, recovery_code = read_stdin_lines("password", "recovery code")
        else:
            password = read_password(False)
            (recovery_code,) = read_stdin_lines("recovery code")
    else:
        if recovery_code is not None:
            warn_code_in_argv("recovery code", "--recovery-code")
        password = read_password(password_stdin)
    if totp is None and recovery_code is None:
        if not sys.stdin.isatty() or password_stdin:
            raise InvalidInput("no TOTP code: pass --totp CODE (or --recovery-code-stdin)")
        # a recovery code may be typed here instead (its form differs from six digits)
        typed = click.prompt("TOTP code", hide_input=True, err=True).strip()
        if codes.well_formed(typed):
            recovery_code = typed
        else:
            totp = typed
    result = vault.users.login(name, password, totp=totp, recovery_code=recovery_code)
    data = result.as_dict()
    data["session_file"] = str(save_token(vault.session_scope, name, result.token, data["expires_at"]))
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"logged in as {d['user']} ({', '.join(d['roles'])}); session until {when(d['expires_at'])}"
        ),
    )


@click.command("logout")
@json_option
@click.pass_obj
def logout_cmd(state, as_json):
    """End the session and delete the session file."""
    from cli.session_file import remove_token
    from vault.errors import AuthenticationFailed

    try:
        principal = state.principal()
    except AuthenticationFailed:
        principal = None
    if principal is not None:
        state.vault().users.logout(principal)
    remove_token()
    from cli.completion import clear_cache

    clear_cache()  # the completion cache is the session's
    data = {"logged_out": principal.name if principal else None}
    emit(
        data,
        as_json,
        lambda d: click.echo(f"logged out {d['logged_out']}" if d["logged_out"] else "not logged in"),
    )


@click.command("whoami")
@json_option
@click.pass_obj
def whoami_cmd(state, as_json):
    """Show the logged-in user, roles, and when the session and step-up expire."""
    data = state.vault().users.whoami(state.principal())

    def human(d):
        fields_block(
            {
                "user": d["user"],
                "roles": d["roles"],
                "session started": d["session_started_at"],
                # the idle expiry moves with every use; the absolute end does not
                "session idle expiry": d.get("session_idle_expires_at", d["session_expires_at"]),
                "session absolute end": d.get("session_absolute_expires_at", d["session_expires_at"]),
                "step-up valid until": d["stepup_valid_until"],
                "training valid until": d["training_valid_until"],
            }
        )

    emit(data, as_json, human)


@click.command("passwd")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the current and the new password from standard input (two lines).",
)
@json_option
@click.pass_obj
def passwd_cmd(state, password_stdin, as_json):
    """Change your password (other sessions end)."""
    vault = state.vault()
    principal = state.principal()
    if password_stdin:
        lines = read_stdin_secret("passwords", multiline=True).splitlines()
        if len(lines) < 2 or not lines[0] or not lines[1]:
            raise InvalidInput("--password-stdin needs two lines: the current and the new password")
        current, new = lines[0], lines[1]
    else:
        current = read_password(False, "Current password")
        new = read_password(False, "New password", confirm=True)
    vault.users.passwd(principal, current, new)
    emit(
        {"user": principal.name, "password_changed": True},
        as_json,
        lambda d: click.echo(f"password of {d['user']} changed; other sessions ended"),
    )
