"""``cvault sync status|push|pull|verify``: the OneDrive replica and the outbox."""

from __future__ import annotations

import sys

import click

from cli.output import emit, json_option, progress
from vault import api_spec as spec

workers_option = click.option(
    "--workers",
    type=click.IntRange(*spec.param("sync.push", "workers").limits),
    default=spec.param("sync.push", "workers").default,
    show_default=True,
    help="Concurrent transfers.",
)


@click.group("sync")
def sync():
    """Replicate encrypted blobs to the remote (OneDrive) and check the replica."""


@sync.command("status")
@json_option
@click.pass_obj
def sync_status(state, as_json):
    """Show the remote and what is waiting in the outbox."""
    vault = state.vault()
    data = vault.sync.status(state.principal(allow_system=True, system_name="sync"))

    def human(d):
        remote = d["remote"]
        click.echo(
            "remote:  "
            + (
                f"OneDrive drive {remote['drive_id']} folder {remote['root_folder']}"
                if remote
                else "none configured"
            )
        )
        p = d["pending"]
        click.echo(
            f"pending: {p['put']} uploads, {p['delete']} deletes ({p['failing']} failing)"
            + (f", oldest {p['oldest']}" if p["oldest"] else "")
        )
        if p.get("needs_attention"):
            click.echo(
                f"needs attention: {p['needs_attention']} blob(s) failed permanently and are not "
                "retried; fix the cause (the last error says it), then run 'cvault sync push --now'"
            )
        if d["last_error"]:
            click.echo(f"last error: {d['last_error']}")

    emit(data, as_json, human)


@sync.command("push")
@workers_option
@click.option("--now", "force", is_flag=True, help="Retry failed items now, ignoring back-off.")
@json_option
@click.pass_obj
def sync_push(state, workers, force, as_json):
    """Upload queued blobs and carry out queued permanent deletes."""
    vault = state.vault()
    with progress("pushing") as update:
        data = vault.sync.push(
            state.principal(allow_system=True, system_name="sync"),
            workers=workers,
            progress=update,
            force=force,
        )

    def human(d):
        if d.get("skipped"):
            click.echo(f"push skipped: {d['skipped']}")
            return
        click.echo(
            f"uploaded {d['uploaded']}, deleted {d['deleted']}, failed {d['failed']}; "
            f"still queued: {d['pending']['put']} uploads, {d['pending']['delete']} deletes"
        )
        for e in d["errors"]:
            click.echo(f"  {e}")

    emit(data, as_json, human)
    if data["failed"]:
        sys.exit(9)


@sync.command("pull")
@workers_option
@json_option
@click.pass_obj
def sync_pull(state, workers, as_json):
    """Restore missing or corrupt local blobs from the remote."""
    vault = state.vault()
    with progress("pulling") as update:
        data = vault.sync.pull(
            state.principal(allow_system=True, system_name="sync"), workers=workers, progress=update
        )

    def human(d):
        click.echo(f"checked {d['checked']}, restored {d['restored']}")
        for name in d["missing_remote"]:
            click.echo(f"  not on the remote: {name}")
        for e in d["errors"]:
            click.echo(f"  {e}")

    emit(data, as_json, human)
    if data["errors"]:
        sys.exit(9)


@sync.command("verify")
@json_option
@click.pass_obj
def sync_verify(state, as_json):
    """Compare the remote's hashes with the local blobs."""
    vault = state.vault()
    with progress("verifying") as update:
        data = vault.sync.verify(state.principal(allow_system=True, system_name="sync"), progress=update)

    def human(d):
        click.echo(f"checked {d['checked']}: {d['matching']} match")
        for key, label in (
            ("mismatched", "corrupt on the remote"),
            ("missing_remote", "missing on the remote"),
            ("pending_upload", "queued for upload"),
            ("extra_remote", "only on the remote"),
        ):
            for name in d[key]:
                click.echo(f"  {label}: {name}")
        click.echo("ok" if d["ok"] else "remote replica differs from the local store")

    emit(data, as_json, human)
    if not data["ok"]:
        sys.exit(6)
