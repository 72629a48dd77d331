"""``cvault client add|list|show|export|rotate-key``."""

from __future__ import annotations

import click

from cli.output import emit, fields_block, json_option, progress, table


@click.group("client")
def client():
    """Manage clients and their keys."""


@client.command("add")
@click.argument("name")
@click.option("--sla-end", required=True, help="SLA end: ISO 8601 (2027-03-31) or relative (+365d).")
@click.option("--grace-days", type=click.IntRange(0, 3650), default=None,
              help="Days between SLA end and automatic shredding (default 30).")
@json_option
@click.pass_obj
def client_add(state, name, sla_end, grace_days, as_json):
    """Create a client with its SLA end."""
    from vault.dates import parse_when

    vault = state.vault()
    data = vault.clients.add(state.principal(), name, sla_end=parse_when(sla_end, vault.ctx.now()),
                             grace_days=grace_days)
    emit(data, as_json, lambda d: click.echo(f"client {d['name']} created (SLA ends {d['sla_end']})"))


@client.command("list")
@json_option
@click.pass_obj
def client_list(state, as_json):
    """List clients with their SLA state."""
    rows = state.vault().clients.list(state.principal())
    emit(rows, as_json, lambda r: table(r, [("name", "client"), ("state", "state"),
                                            ("sla_end", "sla end"), ("grace_days", "grace")]))


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
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="New file to write (created 0600; never overwritten).")
@json_option
@click.pass_obj
def client_export(state, name, out, as_json):
    """Export the client's decrypted records as JSON Lines (for portability)."""
    data = state.vault().secrets.export(state.principal(), name, out)
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
    emit(data, as_json, lambda d: click.echo(
        f"client {d['name']}: key version {d['key_version']}, {d['records']} records re-wrapped"))
