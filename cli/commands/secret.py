"""``cvault secret put|get|list|history|rm|import``.

Secret values never come through argv: the kind's main secret field comes from a hidden prompt,
``--from-stdin`` or ``--file``; other secret fields from ``--secret-file FIELD=PATH`` or
``--fields-json FILE``.
"""

from __future__ import annotations

import json
import sys

import click

from cli.output import emit, fields_block, json_option, progress, table
from cli.state import totp_option
from vault.errors import InvalidInput
from vault.records import KINDS, MAIN_SECRET, MULTILINE_FIELDS, cli_fields


@click.group("secret")
def secret():
    """Store and read client secrets (need-to-know)."""


def _field_options(fn):
    """One option per non-secret field of vault.records.FIELDS (secret values never come
    through argv)."""
    for field in reversed(cli_fields()):
        repeat = field.type == "list"
        fn = click.option(
            field.cli or f"--{field.name}",
            field.name,
            multiple=repeat,
            type=int if field.type == "int" else str,
            help=f"Field {field.name}" + (" (repeatable)" if repeat else "") + ".",
        )(fn)
    return fn


_LIST_FIELDS = frozenset(f.name for f in cli_fields() if f.type == "list")


def _read_bytes(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise InvalidInput(f"{what} file {path} not found") from None
    except IsADirectoryError:
        raise InvalidInput(f"{what} file {path} is a folder") from None
    except OSError as exc:
        raise InvalidInput(f"{what} file {path} cannot be read: {exc.strerror or exc}") from None


def _text(data: bytes, what: str, source: str) -> str:
    """The bytes as UTF-8 text, exactly (no newline translation); binary is refused, never altered."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{what} from {source} is not UTF-8 text: store binary values base64-encoded "
            '(docs/cli.md, "Exact bytes")'
        ) from None


def secret_value(data: bytes, what: str, source: str, *, multiline: bool) -> str:
    """A field value from a file's or standard input's bytes (docs/cli.md, "Exact bytes"): the
    UTF-8 text byte for byte (``\\r\\n`` and a lone ``\\r`` kept), except the one final line feed a
    shell or an editor adds; a single-line field also drops the ``\\r`` of a final ``\\r\\n``."""
    text = _text(data, what, source)
    if text.endswith("\n"):
        text = text[:-1]
        if not multiline and text.endswith("\r"):
            text = text[:-1]
    return text


def _read_file(path: str, what: str, *, multiline: bool = True) -> str:
    return secret_value(_read_bytes(path, what), what, f"file {path}", multiline=multiline)


def _fields_json(path: str) -> dict:
    text = _text(_read_bytes(path, "fields"), "fields", f"file {path}")
    try:
        fields = json.loads(text)
    except RecursionError:
        raise InvalidInput(f"{path}: JSON nested too deeply") from None
    except ValueError:  # JSONDecodeError, and numbers with too many digits
        raise InvalidInput(f"{path} is not valid JSON") from None
    if not isinstance(fields, dict):
        raise InvalidInput(f"{path} must hold a JSON object of fields")
    return fields


def _stdin_value(what: str, *, multiline: bool) -> str:
    """The main field from standard input's bytes: all of it (multi-line fields) or its first line."""
    data = sys.stdin.buffer.read()
    if not multiline:
        data = data.split(b"\n", 1)[0]
    value = secret_value(data if multiline else data + b"\n", what, "standard input", multiline=multiline)
    if not value:
        raise InvalidInput(f"no {what} on standard input")
    return value


@secret.command("put")
@click.argument("client")
@click.argument("path")
@click.option("--type", "kind", type=click.Choice(KINDS), required=True, help="Record kind.")
@click.option("--from-stdin", is_flag=True, help="Read the main secret field from standard input.")
@click.option(
    "--file", "value_file", type=click.Path(dir_okay=False), help="Read the main secret field from this file."
)
@click.option(
    "--fields-json",
    type=click.Path(dir_okay=False),
    help="All fields at once, as a JSON object in this file.",
)
@click.option(
    "--secret-file",
    multiple=True,
    metavar="FIELD=PATH",
    help="Read another secret field (api_token, ssh_private_key, ...) from a file.",
)
@_field_options
@json_option
@click.pass_obj
def secret_put(
    state, client, path, kind, from_stdin, value_file, fields_json, secret_file, as_json, **options
):
    """Store a new version of a record (values by prompt, stdin or file, never argv)."""
    fields: dict = _fields_json(fields_json) if fields_json else {}
    for field, value in options.items():
        if value not in (None, ()):
            fields[field] = list(value) if field in _LIST_FIELDS else value
    for item in secret_file:
        field, sep, file_path = item.partition("=")
        if not sep or not field:
            raise InvalidInput("--secret-file takes FIELD=PATH")
        fields[field] = _read_file(file_path, field, multiline=field in MULTILINE_FIELDS)
    main = MAIN_SECRET[kind]
    if from_stdin and value_file:
        raise InvalidInput("use either --from-stdin or --file, not both")
    if from_stdin:
        fields[main] = _stdin_value(main, multiline=main in MULTILINE_FIELDS)
    elif value_file:
        fields[main] = _read_file(value_file, main, multiline=main in MULTILINE_FIELDS)
    elif main not in fields and sys.stdin.isatty():
        fields[main] = click.prompt(f"{main}", hide_input=True, confirmation_prompt=True, err=True)
    vault = state.vault()
    data = vault.secrets.put(state.principal(), client, path, kind, fields)
    emit(data, as_json, lambda d: click.echo(f"stored {d['client']}/{d['path']} version {d['version']}"))


@secret.command("get")
@click.argument("client")
@click.argument("path")
@click.option("--field", "field", help="Print only this field's raw value.")
@click.option("--version", "version", type=click.IntRange(min=1), help="An older version.")
@click.option("--copy", is_flag=True, help="Copy the value to the clipboard (cleared after 30 s).")
@totp_option
@json_option
@click.pass_obj
def secret_get(state, client, path, field, version, copy, totp, as_json):
    """Read a record (all fields, or one with --field)."""
    vault = state.vault()
    record = state.with_stepup(lambda p: vault.secrets.get(p, client, path, version=version), totp)
    if field is not None and field not in record.fields:
        raise InvalidInput(
            f"{client}/{path} has no field {field!r} (fields: {', '.join(sorted(record.fields))})"
        )
    if copy:
        from cli.clipboard import copy_with_timeout

        chosen = field or MAIN_SECRET[record.kind]
        if chosen not in record.fields:
            raise InvalidInput(f"{client}/{path} has no {chosen} to copy; use --field")
        seconds = copy_with_timeout(str(record.fields[chosen]))
        click.echo(f"copied {chosen} of {client}/{path} to the clipboard; clears in {seconds} s", err=True)
        return
    if field is not None:
        value = record.fields[field]
        emit(
            {"field": field, "value": value},
            as_json,
            lambda d: click.echo(", ".join(map(str, value)) if isinstance(value, list) else value),
        )
        return

    def human(d):
        click.echo(
            f"# {d['client']}/{d['path']}  ({d['kind']}, version {d['version']}, "
            f"{d['created_at']} by {d['created_by']})"
        )
        fields_block(d["fields"])

    emit(record.as_dict(), as_json, human)


@secret.command("list")
@click.argument("client")
@json_option
@click.pass_obj
def secret_list(state, client, as_json):
    """List a client's records (paths and kinds; no values)."""
    rows = state.vault().secrets.list(state.principal(), client)
    emit(
        rows,
        as_json,
        lambda r: table(
            r, [("path", "path"), ("kind", "kind"), ("version", "version"), ("updated_at", "updated")]
        ),
    )


@secret.command("history")
@click.argument("client")
@click.argument("path")
@json_option
@click.pass_obj
def secret_history(state, client, path, as_json):
    """List the kept versions of a record."""
    rows = state.vault().secrets.history(state.principal(), client, path)
    for r in rows:
        r["state"] = "deleted" if r["deleted"] else ("current" if r["current"] else "")
    emit(
        rows,
        as_json,
        lambda r: table(
            r,
            [
                ("version", "version"),
                ("created_at", "created"),
                ("created_by", "by"),
                ("size", "bytes"),
                ("state", "state"),
            ],
        ),
    )


@secret.command("rm")
@click.argument("client")
@click.argument("path")
@click.option("--purge", is_flag=True, help="Crypto-shred every version now (cannot be undone).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation of --purge.")
@json_option
@click.pass_obj
def secret_rm(state, client, path, purge, yes, as_json):
    """Delete a record (a delete marker), or crypto-shred it with --purge."""
    if purge and not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("--purge destroys every version: add --yes to confirm")
        click.confirm(f"Destroy every version of {client}/{path} for good?", abort=True, err=True)
    data = state.vault().secrets.rm(state.principal(), client, path, purge=purge)
    if purge and not data.get("scrubbed", True):
        click.echo(
            "cvault: warning: another process kept the vault database open, so the "
            "destroyed keys' old pages are not yet overwritten; run 'cvault doctor' later "
            "to finish",
            err=True,
        )
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"purged {d['client']}/{d['path']} ({d['versions_destroyed']} versions destroyed)"
            if d["purged"]
            else f"deleted {d['client']}/{d['path']}"
        ),
    )


@secret.command("import")
@click.argument("client")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@json_option
@click.pass_obj
def secret_import(state, client, file, as_json):
    """Import JSON Lines records ({"path","kind","fields"}) in one transaction."""
    data = sys.stdin.buffer.read() if file == "-" else _read_bytes(file, "import")
    # JSON Lines: one record per line ending in \n (\r\n accepted); the values inside are JSON
    # strings, so splitting on nothing else keeps every byte of them
    lines = _text(data, "import", "standard input" if file == "-" else f"file {file}").split("\n")
    vault = state.vault()
    with progress("importing") as update:
        data = vault.secrets.import_records(state.principal(), client, lines, progress=update)
    emit(data, as_json, lambda d: click.echo(f"imported {d['imported']} records into {d['client']}"))
