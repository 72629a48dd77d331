"""``cvault backup`` and ``cvault restore`` (docs/sla.md section 6, the restore drill)."""

from __future__ import annotations

import os
import sys

import click

from cli.output import emit, json_option, progress
from cli.render import when
from cli.state import host_only


@host_only
@click.group("backup", invoke_without_command=True)
@click.option(
    "--out",
    type=click.Path(),
    help="A new backup file, or a folder (existing, or a path ending in / made 0700) that keeps "
    "the newest --keep backups of this vault.",
)
@click.option("--remote", is_flag=True, help="Upload to the OneDrive replica (<root folder>-backups/).")
@click.option(
    "--keep",
    type=click.IntRange(1, 1000),
    default=7,
    show_default=True,
    help="Backups kept (folder or remote).",
)
@json_option
@click.pass_context
def backup(ctx, out, remote, keep, as_json):
    """Take an encrypted, signed backup: vault.db snapshot, blobs and custody state.

    It holds no custody secret: restoring needs the custodian as it is then, so a backup from
    before a shred never brings the shredded client back."""
    if ctx.invoked_subcommand is not None:
        return
    state = ctx.obj
    vault = state.vault()
    principal = state.principal(allow_system=True, system_name="backup")
    with progress("backing up blobs") as update:
        data = vault.backups.create(principal, out=out, remote=remote, keep=keep, progress=update)
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"backup {d['file']}: {d['bytes']} bytes, {d['clients']} clients, {d['blobs']} blobs, "
            f"{d['mb_per_s']} MB/s" + (f"; {len(d['pruned'])} older deleted" if d["pruned"] else "")
        ),
    )


@backup.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--pubkey",
    default=None,
    help="The vault's audit public key (ed25519:... or a file); default: the key named in the file.",
)
@json_option
def backup_verify(file, pubkey, as_json):
    """Check a backup file without any secret: whole, unedited and signed (exit 6 otherwise)."""
    from vault.audit.signing import parse_public_key_text
    from vault.backup.container import verify_trailer

    key = None
    if pubkey:
        from pathlib import Path

        text = Path(pubkey).read_text().strip() if os.path.isfile(pubkey) else pubkey
        key = parse_public_key_text(text)
    body = verify_trailer(file, key)
    emit(
        body,
        as_json,
        lambda d: click.echo(f"backup {d['backup_id']} of vault {d['vault_id']}: signature and contents ok"),
    )


@host_only
@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--custody-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where the custody file is on this host (or CVAULT_CUSTODY_FILE).",
)
@click.option(
    "--recovery-key-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Unseal with the recovery key in this file.",
)
@json_option
@click.pass_obj
def restore_cmd(state, file, custody_file, recovery_key_file, as_json):
    """Restore a backup into a new, empty vault folder (--home / CVAULT_HOME).

    Unsealed with CVAULT_KEY_FILE, CVAULT_PASSPHRASE_FILE, --recovery-key-file or a passphrase
    prompt; the custodian must be reachable. Clients whose custody was destroyed since the backup
    (shredded, or a purge rotated it) are not restored: one line each says why."""
    from cli.state import read_secret_file
    from vault import keys
    from vault.errors import VaultSealed
    from vault.facade import Vault

    key_file = os.environ.get("CVAULT_KEY_FILE")
    pass_file = os.environ.get("CVAULT_PASSPHRASE_FILE")
    if recovery_key_file:
        unseal = ("recovery", keys.parse_recovery_key(read_secret_file(recovery_key_file, "recovery key")))
    elif key_file:
        from vault.home import read_private_file

        try:
            text = read_private_file(key_file, "key file").decode("utf-8")
        except (OSError, UnicodeDecodeError):
            raise VaultSealed(f"vault sealed: key file {key_file} cannot be read") from None
        unseal = ("keyfile", keys.parse_key_file_text(text))
    elif pass_file:
        unseal = ("passphrase", read_secret_file(pass_file, "passphrase").encode("utf-8"))
    elif sys.stdin.isatty():
        unseal = ("passphrase", click.prompt("Vault passphrase", hide_input=True, err=True).encode("utf-8"))
    else:
        raise VaultSealed(
            "vault sealed: set CVAULT_KEY_FILE or CVAULT_PASSPHRASE_FILE, or give --recovery-key-file"
        )
    report = Vault.restore(file, state.home, unseal=unseal, custody_file=custody_file)

    def human(d):
        click.echo(f"restored backup {d['backup_id']} (taken {when(d['taken_at'])}) into {d['home']}")
        click.echo(f"clients restored: {len(d['restored'])}")

    emit(report, as_json, human)
    for lost in report["not_restorable"]:  # one line each, also with --json
        click.echo(f"cvault: not restored: {lost['client']}: {lost['reason']}", err=True)
