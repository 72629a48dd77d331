"""``cvault team add|list|show|rm`` and ``team member add|rm`` (docs/identity.md, "Teams")."""

from __future__ import annotations

import click

from cli.output import emit, emit_line, json_option, safe, table
from cli.render import when


@click.group("team")
def team():
    """Teams: need-to-know for a group of engineers (each still needs their own training)."""


@team.command("add")
@click.argument("name")
@click.option("--description", default="", help="One line saying what the team is for.")
@json_option
@click.pass_obj
def team_add(state, name, description, as_json):
    """Create a team."""
    data = state.vault().teams.add(state.principal(), name, description=description)
    emit_line(data, as_json, lambda d: f"team {d['name']} created")


@team.command("list")
@json_option
@click.pass_obj
def team_list(state, as_json):
    """Teams with their members and the clients they are assigned to."""
    data = state.vault().teams.list(state.principal())

    def human(rows):
        table(
            [{**r, "members": ", ".join(r["members"]), "clients": ", ".join(r["clients"])} for r in rows],
            [
                ("name", "team"),
                ("members", "members"),
                ("clients", "clients"),
                ("description", "description"),
            ],
            empty="(no teams)",
        )

    emit(data, as_json, human)


@team.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def team_show(state, name, as_json):
    """A team's members, former members and client assignments."""
    data = state.vault().teams.show(state.principal(), name)

    def human(d):
        click.echo(f"team {safe(d['name'])}" + (f": {safe(d['description'])}" if d["description"] else ""))
        click.echo(f"created {when(d['created_at'])} by {safe(d['created_by'])}")
        click.echo("members:")
        table(d["members"], [("user", "user"), ("since", "since"), ("by", "added by")])
        if d["former_members"]:
            click.echo("former members:")
            table(d["former_members"], [("user", "user"), ("since", "since"), ("left_at", "left")])
        click.echo("clients:")
        table(
            [
                {**c, "state": "ended" if c["ended"] else "active", "until": c["until"] or "no end"}
                for c in d["clients"]
            ],
            [("client", "client"), ("since", "since"), ("until", "until"), ("state", "state")],
        )

    emit(data, as_json, human)


@team.command("rm")
@click.argument("name")
@json_option
@click.pass_obj
def team_rm(state, name, as_json):
    """Remove a team: its memberships and client assignments end (access through it stops)."""
    data = state.vault().teams.rm(state.principal(), name)
    emit_line(data, as_json, lambda d: f"team {d['name']} removed")


@team.group("member")
def member():
    """Team membership."""


@member.command("add")
@click.argument("team_name", metavar="TEAM")
@click.argument("user")
@json_option
@click.pass_obj
def member_add(state, team_name, user, as_json):
    """Add an engineer to a team (nobody adds themselves)."""
    data = state.vault().teams.member_add(state.principal(), team_name, user)
    emit_line(
        data,
        as_json,
        lambda d: (
            f"{d['user']} added to team {d['team']}"
            + (f" (reaches {', '.join(d['clients'])})" if d["clients"] else "")
        ),
    )


@member.command("rm")
@click.argument("team_name", metavar="TEAM")
@click.argument("user")
@json_option
@click.pass_obj
def member_rm(state, team_name, user, as_json):
    """Remove a member from a team (their access through it stops at once)."""
    data = state.vault().teams.member_rm(state.principal(), team_name, user)
    emit_line(data, as_json, lambda d: f"{d['user']} removed from team {d['team']}")
