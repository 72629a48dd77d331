"""``cvault generate``: a random password on standard output (vault.records.generate; no vault)."""

from __future__ import annotations

import click

from cli.output import emit, json_option
from vault.records.generate import CHARSETS, DEFAULT_LENGTH, MAX_LENGTH, MIN_LENGTH, generate


@click.command("generate")
@click.option(
    "--length",
    type=click.IntRange(MIN_LENGTH, MAX_LENGTH),
    default=DEFAULT_LENGTH,
    show_default=True,
    help="Number of characters.",
)
@click.option(
    "--charset",
    type=click.Choice(sorted(CHARSETS)),
    default="full",
    show_default=True,
    help="Characters used.",
)
@json_option
def generate_cmd(length, charset, as_json):
    """Print a random password (the secrets module; one of each character class)."""
    value = generate(length, charset)
    emit(
        {"password": value, "length": length, "charset": charset},
        as_json,
        lambda d: click.echo(d["password"]),
    )
