"""``cvault client add|list|show|export|rotate-key|assign|unassign|access``."""

from __future__ import annotations

import click

from cli.output import emit, fields_block, json_option, progress, table, totp_option
from cli.render import show_access, when
from vault import api_spec as spec
from vault.errors import InvalidInput


@click.group("client")
def client():
    """Manage clients and their keys."""


@client.command("add")
@click.argument("name")
@click.option(
    "--sla-end",
    required=True,
    help="SLA end: ISO 8601 (2027-03-31, 2027-03-31T17:00+02:00) or relative (+365d). "
    "A bare date (2027-03-31) means the end of that day "
    "(23:59:59) in the vault's time zone (init --time-zone; default UTC).",
)
@click.option(
    "--grace-days",
    type=click.IntRange(*spec.param("clients.add", "grace_days").limits),
    default=None,
    help="Days between SLA end and automatic shredding (default 30).",
)
@json_option
@click.pass_obj
def client_add(state, name, sla_end, grace_days, as_json):
    """Create a client with its SLA end."""
    data = state.vault().clients.add(state.principal(), name, sla_end=sla_end, grace_days=grace_days)
    emit(data, as_json, lambda d: click.echo(f"client {d['name']} created (SLA ends {when(d['sla_end'])})"))


@client.command("list")
@json_option
@click.pass_obj
def client_list(state, as_json):
    """List clients with their SLA state."""
    rows = state.vault().clients.list(state.principal())
    emit(
        rows,
        as_json,
        lambda r: table(
            r, [("name", "client"), ("state", "state"), ("sla_end", "sla end"), ("grace_days", "grace")]
        ),
    )


@client.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def client_show(state, name, as_json):
    """Show one client."""
    data = state.vault().clients.show(state.principal(), name)
    emit(data, as_json, fields_block)


@client.command("export")
@click.argument("name")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    help="New file to write (created 0600; never overwritten).",
)
@totp_option
@json_option
@click.pass_obj
def client_export(state, name, out, totp, as_json):
    """Export the client's decrypted records as JSON Lines (for portability)."""
    vault = state.vault()
    data = state.with_stepup(lambda p: vault.secrets.export(p, name, out), totp)
    emit(data, as_json, lambda d: click.echo(f"exported {d['exported']} records to {d['file']}"))


@client.command("rotate-key")
@click.argument("name")
@json_option
@click.pass_obj
def client_rotate(state, name, as_json):
    """New client-key version; re-wrap every record key; destroy the old version."""
    vault = state.vault()
    with progress("re-wrapping record keys") as update:
        data = vault.clients.rotate_key(state.principal(), name, progress=update)
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"client {d['name']}: key version {d['key_version']}, {d['records']} records re-wrapped"
        ),
    )


@client.command("assign")
@click.argument("name")
@click.argument("user", required=False)
@click.option("--team", "team", metavar="TEAM", help="Assign a team instead of one engineer.")
@click.option(
    "--until",
    "until",
    help="Assignment end: ISO 8601 or relative (+90d); default none. "
    "A bare date (2027-03-31) means the end of that day "
    "(23:59:59) in the vault's time zone (init --time-zone; default UTC).",
)
@json_option
@click.pass_obj
def client_assign(state, name, user, team, until, as_json):
    """Assign an engineer (USER) or a team (--team) to the client (need-to-know), optionally until
    a date. Each member of a team still needs their own training and the SLA."""
    if (user is None) == (team is None):
        raise InvalidInput("give either USER or --team TEAM")
    if team is not None:
        data = state.vault().teams.assign(state.principal(), name, team, until=until or None)
        who = f"team {data['team']}"
    else:
        data = state.vault().access.assign(state.principal(), name, user, until=until or None)
        who = data["user"]
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"{who} assigned to {d['client']}" + (f" until {when(d['until'])}" if d["until"] else "")
        ),
    )


@client.command("unassign")
@click.argument("name")
@click.argument("user", required=False)
@click.option("--team", "team", metavar="TEAM", help="End a team's assignment instead.")
@json_option
@click.pass_obj
def client_unassign(state, name, user, team, as_json):
    """End an engineer's (USER) or a team's (--team) assignment to the client."""
    if (user is None) == (team is None):
        raise InvalidInput("give either USER or --team TEAM")
    if team is not None:
        data = state.vault().teams.unassign(state.principal(), name, team)
        who = f"team {data['team']}"
    else:
        data = state.vault().access.unassign(state.principal(), name, user)
        who = data["user"]
    emit(data, as_json, lambda d: click.echo(f"{who} unassigned from {d['client']}"))


@client.command("access")
@click.argument("name")
@json_option
@click.pass_obj
def client_access(state, name, as_json):
    """Who can read this client's secrets right now, and why (reviewers, admins)."""
    data = state.vault().access.client_access(state.principal(), name)

    def human(d):
        readers = [r["user"] for r in d["users"] if r["can_read"]]
        click.echo(
            f"client {d['client']} (SLA {d['sla_state']}, ends {when(d['sla_end'])}) at {when(d['at'])}: "
            f"readable by {', '.join(readers) or 'no one'}"
        )
        show_access(d, "user")

    emit(data, as_json, human)
