"""``cvault integration add|list|rm``: PSA integrations calling ``POST /v1/sla/contract-events``."""

from __future__ import annotations

import click

from cli.output import emit, json_option, table


@click.group("integration")
def integration():
    """PSA integrations: the HMAC secrets that sign contract events (docs/sla.md)."""


@integration.command("add")
@click.argument("name")
@json_option
@click.pass_obj
def integration_add(state, name, as_json):
    """Add an integration; its signing secret is printed once (store it in the PSA or relay)."""
    data = state.vault().integrations.add(state.principal(), name)

    def human(d):
        click.echo(f"integration {d['name']} added; its signing secret (shown once, not stored in clear):")
        click.echo(d["secret"])

    emit(data, as_json, human)


@integration.command("list")
@json_option
@click.pass_obj
def integration_list(state, as_json):
    """Integrations, with their last event (never a secret)."""
    data = state.vault().integrations.list(state.principal())
    emit(
        data,
        as_json,
        lambda rows: table(
            rows,
            [
                ("name", "name"),
                ("created_at", "created"),
                ("last_event_at", "last event"),
                ("events", "events"),
            ],
            empty="(no integrations)",
        ),
    )


@integration.command("rm")
@click.argument("name")
@json_option
@click.pass_obj
def integration_rm(state, name, as_json):
    """Remove an integration: its secret is destroyed and its events are refused from now on."""
    data = state.vault().integrations.rm(state.principal(), name)
    emit(data, as_json, lambda d: click.echo(f"integration {d['name']} removed"))
