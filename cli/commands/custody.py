"""``cvault custody show|set``: where the custody secrets live (docs/sla.md section 6)."""

from __future__ import annotations

import click

from cli.output import emit, fields_block, json_option, progress
from cli.render import when
from cli.state import host_only


@host_only
@click.group("custody")
def custody():
    """Show or change the custodian of the per-client custody secrets."""


def _human(d: dict) -> None:
    c = d["custodian"]
    shown = {k: v for k, v in c.items() if k not in ("status", "current")}
    fields_block(shown)
    status = c.get("status") or {}
    if status:
        fields_block({f"status.{k}": v for k, v in status.items()})
    click.echo(f"clients under custody  {d['clients_under_custody']}")
    click.echo(f"versions destroyed     {d['versions_destroyed']}")
    if d["rotations_pending"]:
        click.echo(
            f"rotations pending      {len(d['rotations_pending'])} (doctor or the next command finishes them)"
        )
    if d.get("migrated_from_legacy_at"):
        click.echo(
            f"under custody since    {when(d['migrated_from_legacy_at'])} "
            "(copies from before open without it)"
        )


@custody.command("show")
@json_option
@click.pass_obj
def custody_show(state, as_json):
    """Show the custodian and the custody state (no secret)."""
    emit(state.vault().custody.show(state.principal()), as_json, _human)


@custody.group("set")
def custody_set():
    """Move every client's custody to another custodian (resumable; the old secrets are destroyed)."""


@custody_set.command("local")
@click.option(
    "--file",
    "file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Custody file, outside the vault folder (created 0600).",
)
@json_option
@click.pass_obj
def custody_set_local(state, file, as_json):
    """Keep the custody secrets in a local file (the default custodian)."""
    vault = state.vault()
    with progress("re-wrapping clients") as bar:
        data = vault.custody.set_local(state.principal(), file, progress=bar)
    emit(data, as_json, _human)


@custody_set.command("azure-keyvault")
@click.option(
    "--vault-url", required=True, help="https://NAME.vault.azure.net or https://NAME.managedhsm.azure.net"
)
@click.option("--tenant-id", required=True, help="Directory (tenant) id or domain.")
@click.option("--client-id", required=True, help="Application (client) id of the app registration.")
@click.option(
    "--credential",
    type=click.Choice(["certificate", "secret-file", "secret-env"]),
    default="certificate",
    show_default=True,
)
@click.option("--certificate-file", default="", help="certificate: PEM with the private key (0600).")
@click.option("--certificate-thumbprint", default="", help="certificate: SHA-1 thumbprint (hex).")
@click.option("--secret-file", default="", help="secret-file: file (0600) holding the client secret.")
@click.option("--secret-env", default="CVAULT_KEYVAULT_CLIENT_SECRET", show_default=True)
@click.option("--authority-host", default="https://login.microsoftonline.com", show_default=True)
@click.option("--no-instance-discovery", is_flag=True, help="Do not ask Entra ID to validate the authority.")
@click.option("--key-type", type=click.Choice(["RSA", "RSA-HSM", "oct-HSM"]), default=None)
@click.option("--key-size", type=int, default=0, help="RSA 2048/3072/4096 (default 3072); oct-HSM 256.")
@click.option("--key-prefix", default="cvault", show_default=True)
@click.option(
    "--service", type=click.Choice(["key-vault", "managed-hsm"]), default=None, help="Default: from the URL."
)
@click.option(
    "--resource", default="", help="Token audience (default: from the URL, e.g. https://vault.azure.net)."
)
@json_option
@click.pass_obj
def custody_set_keyvault(state, as_json, no_instance_discovery, key_type, service, **options):
    """Keep the custody secrets behind per-client Azure Key Vault / Managed HSM keys."""
    options["instance_discovery"] = not no_instance_discovery
    options["key_type"] = key_type or ""
    options["service"] = service or ""
    vault = state.vault()
    with progress("re-wrapping clients") as bar:
        data = vault.custody.set_keyvault(state.principal(), options, progress=bar)
    emit(data, as_json, _human)
