"""``cvault slot list|add|remove``: unseal slots (like LUKS key slots)."""

from __future__ import annotations

import sys

import click

from cli.output import emit, json_option, table
from cli.render import prompt_new_passphrase
from cli.state import host_only, read_secret_file


@host_only
@click.group("slot")
def slot():
    """Manage the unseal slots that each wrap the vault's root key."""


@slot.command("list")
@json_option
@click.pass_obj
def slot_list(state, as_json):
    """List unseal slots (no secrets are shown)."""
    slots = state.vault(unseal=False).slots.list_slots()
    emit(
        slots,
        as_json,
        lambda rows: table(
            rows, [("id", "id"), ("kind", "kind"), ("label", "label"), ("created_at", "created")]
        ),
    )


@slot.command("add")
@click.option("--kind", type=click.Choice(["passphrase", "keyfile", "recovery"]), required=True)
@click.option("--key-file", type=click.Path(dir_okay=False), help="keyfile: where to write the new key file.")
@click.option(
    "--passphrase-file", type=click.Path(dir_okay=False), help="passphrase: read it from this file."
)
@json_option
@click.pass_obj
def slot_add(state, kind, key_file, passphrase_file, as_json):
    """Add an unseal slot (needs the vault unsealed by an existing slot)."""
    from vault.errors import InvalidInput

    vault = state.vault()
    data = {"kind": kind}
    if kind == "keyfile":
        if not key_file:
            raise InvalidInput("--kind keyfile needs --key-file PATH for the new key file")
        data["id"] = vault.slots.create_key_file_slot(key_file)
        data["key_file"] = key_file
    elif kind == "passphrase":
        if passphrase_file:
            phrase = read_secret_file(passphrase_file, "passphrase")
        elif sys.stdin.isatty():
            phrase = prompt_new_passphrase()
        else:
            raise InvalidInput("no passphrase: use --passphrase-file or a terminal")
        data["id"] = vault.slots.add_slot("passphrase", phrase.encode(), label="passphrase")
    else:
        data["id"], data["recovery_key"] = vault.slots.add_recovery_slot()

    def human(d):
        click.echo(f"slot {d['id']} ({d['kind']}) added")
        if "recovery_key" in d:
            click.echo("Recovery key (shown once):")
            click.echo(f"  {d['recovery_key']}")

    emit(data, as_json, human)


@slot.command("remove")
@click.argument("slot_id", type=int)
@json_option
@click.pass_obj
def slot_remove(state, slot_id, as_json):
    """Remove an unseal slot (never the last one)."""
    state.vault().slots.remove(slot_id)
    emit({"removed": slot_id}, as_json, lambda d: click.echo(f"slot {d['removed']} removed"))
