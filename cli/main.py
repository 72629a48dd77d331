"""``cvault`` entry point: global options, lazy command loading, and the one error handler.

Subcommand modules are imported only when their command runs, so ``cvault secret get`` loads
click, the ``secret`` commands and the vault core, nothing else.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from cli.state import CliState

#: command name -> "module:attribute" (docs/spec.md §10)
COMMANDS = {
    "init": "cli.commands.setup:init_cmd",
    "demo": "cli.commands.demo:demo_cmd",
    "doctor": "cli.commands.setup:doctor_cmd",
    "upgrade": "cli.commands.setup:upgrade_cmd",
    "slot": "cli.commands.slot:slot",
    "client": "cli.commands.client:client",
    "secret": "cli.commands.secret:secret",
    "import": "cli.commands.importing:import_cmd",
    "user": "cli.commands.user:user",
    "team": "cli.commands.team:team",
    "login": "cli.commands.session:login_cmd",
    "logout": "cli.commands.session:logout_cmd",
    "whoami": "cli.commands.session:whoami_cmd",
    "passwd": "cli.commands.session:passwd_cmd",
    "sla": "cli.commands.sla:sla",
    "integration": "cli.commands.integration:integration",
    "audit": "cli.commands.audit:audit",
    "sync": "cli.commands.sync:sync",
    "remote": "cli.commands.remote:remote",
    "serve": "cli.commands.serve:serve_cmd",
    "operator": "cli.commands.serve:operator",
    "custody": "cli.commands.custody:custody",
    "backup": "cli.commands.backup:backup",
    "restore": "cli.commands.backup:restore_cmd",
    "generate": "cli.commands.generate:generate_cmd",
    "agent": "cli.commands.agent:agent",
    "completion": "cli.commands.completion:completion_cmd",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or help lists it)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        _full_short_help(command)
        return command


def _full_short_help(command: click.Command) -> None:
    """Give every command a short help that is its whole first paragraph, so that the lists of
    ``cvault --help`` and ``cvault GROUP --help`` wrap the text instead of cutting it at 45
    characters with "..." (click's default)."""
    if command.short_help is None and command.help:
        first = command.help.split("\n\n", 1)[0]
        command.short_help = " ".join(first.split())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _full_short_help(sub)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="CVAULT_HOME",
    metavar="DIR",
    help="Vault folder (default: $CVAULT_HOME or the platform's user data folder).",
)
@click.option("--addr", envvar="CVAULT_ADDR", help="URL of a cvault service (service mode).")
@click.option(
    "--profile",
    envvar="CVAULT_PROFILE",
    metavar="NAME",
    help="Session profile: one login per profile (default: $CVAULT_PROFILE or none).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
# an explicit message keeps click from loading gettext/locale on every run
@click.version_option(package_name="client-config-vault", prog_name="cvault", message="%(prog)s %(version)s")
@click.pass_context
def cli(
    ctx: click.Context, home: str | None, addr: str | None, profile: str | None, as_json: bool, debug: bool
) -> None:
    """cvault: encrypted client-configuration vault for managed service providers.

    Exit codes: 0 ok, 1 error, 2 usage or invalid input, 3 authentication failed, 4 access denied,
    5 not found, 6 integrity failure, 7 client expired or shredded, 8 vault sealed or locked,
    9 storage backend unavailable.
    """
    if profile:
        from cli.session_file import check_profile

        # the session file functions read it from the environment (cli.session_file.profile)
        os.environ["CVAULT_PROFILE"] = check_profile(profile)
    else:
        os.environ.pop("CVAULT_PROFILE", None)
    if isinstance(ctx.obj, CliState):  # given by the caller (the agent runs commands this way)
        ctx.obj.configure(home=home, addr=addr, json=as_json, debug=debug)
    else:
        ctx.obj = CliState(home=home, addr=addr, json=as_json, debug=debug)
    ctx.call_on_close(ctx.obj.close)
    # click has resolved (imported) the subcommand by now; host-only ones act on local files
    group = ctx.command
    name = ctx.invoked_subcommand
    command = group.get_command(ctx, name) if isinstance(group, click.Group) and name else None
    if addr and getattr(command, "host_only", False):
        from vault.errors import InvalidInput

        raise InvalidInput(
            f"cvault {ctx.invoked_subcommand} works on the vault's own host only, "
            "not in service mode (unset --addr / CVAULT_ADDR)"
        )


def run(argv: list[str] | None = None, *, obj: CliState | None = None) -> int:
    """Run the CLI and return its exit code; every error becomes one line on stderr.

    ``obj``: the state commands use instead of a new :class:`CliState` (the agent's)."""
    os.umask(0o077)  # anything the CLI creates is private to the user
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="cvault", standalone_mode=False, obj=obj)
    except SystemExit as exc:  # a command chose its exit code (doctor, sync, verify...)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Abort:
        click.echo("cvault: aborted", err=True)
        return 1
    except click.exceptions.UsageError as exc:
        # one line, as every other error (docs/cli.md): what is wrong, and where help is
        where = exc.ctx.command_path if exc.ctx is not None else "cvault"
        message = " ".join(exc.format_message().split()).rstrip(".")
        message = message[:1].lower() + message[1:]
        click.echo(f"cvault: {message} (see '{where} --help')", err=True)
        return 2
    except click.exceptions.ClickException as exc:
        click.echo(f"cvault: {' '.join(exc.format_message().split())}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - the one place that turns every error into one line and an exit code
        from cli.errors import report

        return report(exc, debug, lambda line: click.echo(line, err=True))
    return rv if isinstance(rv, int) else 0


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run, flush, and leave without interpreter teardown.

    By the time ``run`` returns, click has closed the vault (its database connection is closed,
    every transaction committed) and nothing is left to clean up; tearing down the ~150 loaded
    modules would still cost about 10 ms on every ``cvault secret get`` (docs/performance.md)."""
    from cli.launcher import leave  # loaded already when bin/cvault started this process

    leave(run(argv))


if __name__ == "__main__":
    main()
