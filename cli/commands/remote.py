"""``cvault remote set|show|remove|login``: where the OneDrive replica lives and how to reach it."""

from __future__ import annotations

import click

from cli.output import emit, fields_block, json_option
from cli.state import host_only


@host_only
@click.group("remote")
def remote():
    """Configure the OneDrive replica (Microsoft Graph, msal)."""


@remote.command("set")
@click.option("--tenant-id", required=True, help="Directory (tenant) id or domain.")
@click.option("--client-id", required=True, help="Application (client) id of the app registration.")
@click.option(
    "--credential",
    type=click.Choice(["secret-file", "secret-env", "certificate", "device-code"]),
    default="secret-file",
    show_default=True,
)
@click.option("--secret-file", default="", help="secret-file: file (0600) holding the client secret.")
@click.option(
    "--secret-env",
    default="CVAULT_GRAPH_CLIENT_SECRET",
    show_default=True,
    help="secret-env: environment variable holding the client secret.",
)
@click.option("--certificate-file", default="", help="certificate: PEM with the private key (0600).")
@click.option("--certificate-thumbprint", default="", help="certificate: SHA-1 thumbprint (hex).")
@click.option("--drive-id", default="", help="Drive id of the OneDrive or document library.")
@click.option("--site-hostname", default="", help="Instead of --drive-id: SharePoint host name.")
@click.option("--site-path", default="", help="... the site path (e.g. /sites/IT).")
@click.option("--library", default="", help="... the document library (default library if empty).")
@click.option("--root-folder", default="cvault", show_default=True, help="Folder for the blobs.")
@click.option("--authority-host", default="https://login.microsoftonline.com", show_default=True)
@click.option("--graph-base-url", default="https://graph.microsoft.com/v1.0", show_default=True)
@click.option("--no-instance-discovery", is_flag=True, help="Do not ask Entra ID to validate the authority.")
@json_option
@click.pass_obj
def remote_set(state, as_json, no_instance_discovery, **options):
    """Configure the OneDrive replica (no secret is stored: only where to read it)."""
    options["instance_discovery"] = not no_instance_discovery
    data = state.vault().sync.configure(state.principal(), options)
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"remote set: OneDrive {d['drive_id'] or d['site_hostname']} folder {d['root_folder']}"
        ),
    )


@remote.command("show")
@json_option
@click.pass_obj
def remote_show(state, as_json):
    """Show the remote configuration."""
    config = state.vault().sync.show_config(state.principal(allow_system=True, system_name="sync"))
    emit(config, as_json, lambda d: fields_block(d) if d else click.echo("no remote configured"))


@remote.command("remove")
@json_option
@click.pass_obj
def remote_remove(state, as_json):
    """Forget the remote configuration and its sealed token cache (remote blobs stay)."""
    state.vault().sync.remove_config(state.principal())
    emit({"removed": True}, as_json, lambda d: click.echo("remote removed"))


@remote.command("login")
@click.pass_obj
def remote_login(state):
    """Sign in with the device-code flow (credential device-code)."""
    account = state.vault().sync.sign_in(state.principal(), prompt=lambda msg: click.echo(msg, err=True))
    click.echo(f"signed in as {account}")
