"""``cvault import --from FORMAT FILE``: bring another tool's export into cvault (docs/import.md)."""

from __future__ import annotations

import sys

import click

from cli.output import emit, json_option, progress, safe
from cli.state import host_only, read_stdin_secret
from vault.errors import InvalidInput

FORMATS = ("bitwarden", "keepass", "1password", "itglue", "hudu", "csv")
KINDS = ("access", "account", "network", "note")


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, target = value.rpartition("=")
        if not sep or not key or not target:
            raise InvalidInput(f"{option} takes NAME=VALUE, got {value!r}")
        if key in out:
            raise InvalidInput(f"{option}: {key!r} given twice")
        out[key] = target
    return out


@host_only
@click.command("import")
@click.option("--from", "fmt", required=True, type=click.Choice(FORMATS), help="The export's format.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--client", "default_client", metavar="NAME", help="Client for every entry no --client-map takes."
)
@click.option(
    "--client-map",
    "client_map",
    multiple=True,
    metavar="GROUP=CLIENT",
    help="Client for a collection, group path, vault or organisation of the file (a group also takes "
    "its subgroups). Repeatable.",
)
@click.option("--map", "columns", multiple=True, metavar="COLUMN=FIELD", help="csv: where each column goes.")
@click.option(
    "--kind", type=click.Choice(KINDS), default="access", show_default=True, help="csv: record kind."
)
@click.option("--password-stdin", is_flag=True, help="keepass: read the database password from stdin.")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="keepass: the key file.")
@click.option(
    "--dry-run", is_flag=True, help="Show what would be created or changed, per client; write nothing."
)
@json_option
@click.pass_obj
def import_cmd(
    state, fmt, file, default_client, client_map, columns, kind, password_stdin, keyfile, dry_run, as_json
):
    """Import a Bitwarden, KeePass, 1Password, IT Glue, Hudu or CSV export into one or many clients.

    Everything is read and checked before anything is written; each client is written in one
    transaction; a re-run skips what is unchanged and reports what changed. The file is read, never
    copied: delete it afterwards."""
    clients = _pairs(client_map, "--client-map")
    mapping = _pairs(columns, "--map") if columns else None
    if mapping and fmt != "csv":
        raise InvalidInput("--map applies only to --from csv")
    password = None
    if fmt == "keepass":
        if password_stdin:
            password = read_stdin_secret("KeePass password")
        elif keyfile is None:
            if not sys.stdin.isatty():
                raise InvalidInput("a KeePass database needs --password-stdin or --keyfile")
            password = click.prompt("KeePass password", hide_input=True, err=True)
    elif password_stdin or keyfile:
        raise InvalidInput("--password-stdin and --keyfile apply only to --from keepass")
    if not clients and default_client is None:
        raise InvalidInput("say where the records go: --client NAME and/or --client-map GROUP=CLIENT")
    vault = state.vault()
    principal = state.principal()
    with progress("importing") as update:
        data = vault.secrets.import_file(
            principal,
            fmt,
            file,
            clients=clients,
            default_client=default_client,
            password=password,
            keyfile=keyfile,
            mapping=mapping,
            kind=kind,
            dry_run=dry_run,
            progress=update,
        )
    emit(data, as_json, _human)
    if not dry_run:
        click.echo(
            f"cvault: reminder: {file} holds every secret of the export in clear: delete it now "
            "(and empty the trash, and any copy in Downloads or a sync folder)",
            err=True,
        )


def _human(d: dict) -> None:
    if d["dry_run"]:
        click.echo("dry run: nothing written")
    skipped = ", ".join(f"{n} {safe(reason)}" for reason, n in sorted(d["skipped"].items()))
    click.echo(
        f"read {d['read']} entries from {safe(d['file'])} ({d['format']}): {d['mapped']} records"
        + (f"; skipped {skipped}" if skipped else "")
    )
    verb = "would be" if d["dry_run"] else ""
    for c in d["clients"]:
        click.echo(
            f"{safe(c['client'])}: {len(c['new'])} new, {len(c['changed'])} changed, "
            f"{c['unchanged']} unchanged, {len(c['conflicts'])} conflicts"
            + (f"; {c['attachments']} attachments" if c["attachments"] else "")
            + (f" ({verb} written)" if d["dry_run"] and (c["new"] or c["changed"]) else "")
        )
        if d["dry_run"]:
            for r in c["new"]:
                click.echo(f"  + {safe(r['path'])} ({r['kind']})")
            for r in c["changed"]:
                click.echo(f"  ~ {safe(r['path'])} ({r['kind']})")
        else:
            for r in c["changed"]:
                click.echo(f"  changed: {safe(r['path'])}")
        for r in c["conflicts"]:
            click.echo(f"  kept: {safe(r['path'])} (entry {r['entry']}): {safe(r['reason'])}")
    for r in d["renames"]:
        click.echo(f"renamed: entry {r['entry']} {safe(r['title'])!s} -> {safe(r['path'])}")
    for w in d["warnings"]:
        click.echo(f"warning: {safe(w)}")
