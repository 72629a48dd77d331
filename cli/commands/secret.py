"""``cvault secret put|edit|restore|attach|detach|get|list|search|history|rm|import``.

Secret values never come through argv: the kind's main secret field comes from a hidden prompt,
``--from-stdin``, ``--file`` or ``--generate``; other secret fields (and secret custom fields) from
``--secret-file FIELD=PATH``, ``--secret-custom NAME`` (hidden prompt) or ``--fields-json FILE``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from cli.fastget import field_text, field_value, record_human, record_json, size_text
from cli.output import emit, json_option, progress, table, totp_option, wants_json
from vault.errors import InvalidInput, NotFound
from vault.records import CUSTOM, KINDS, MAIN_SECRET, MULTILINE_FIELDS, cli_fields


def complete_client(ctx, param, incomplete):
    """Client names for shell completion (cli.completion, imported only when completing)."""
    from cli.completion import complete_client as complete

    return complete(ctx, param, incomplete)


def complete_path(ctx, param, incomplete):
    """Record paths of the CLIENT argument for shell completion (cli.completion)."""
    from cli.completion import complete_path as complete

    return complete(ctx, param, incomplete)


@click.group("secret")
def secret():
    """Store and read client secrets (need-to-know)."""


def _field_options(fn):
    """One option per non-secret field of vault.records.FIELDS, named as the field (secret values
    never come through argv); older names are aliases."""
    for field in reversed(cli_fields()):
        repeat = field.type == "list"
        assert field.cli is not None  # cli_fields() holds only fields with an option
        fn = click.option(
            field.cli,
            *field.aliases,
            field.name,
            multiple=repeat,
            type=int if field.type == "int" else str,
            help=f"Field {field.name}" + (" (repeatable)" if repeat else "") + ".",
        )(fn)
    return fn


class _OptionSet:
    """A placeholder in a command's parameter list for a shared set of options, built on first use."""

    def __init__(self, build: Callable[[], list[click.Parameter]]):
        self.build = build


class LazyOptionsCommand(click.Command):
    """A command whose shared option sets (:class:`_OptionSet`) are built when something first
    reads its parameters (parsing, help, the reference): ``put`` and ``edit`` carry about 60
    options that ``cvault secret get`` would otherwise build on every run (docs/performance.md)."""

    _params: list[click.Parameter]

    @property
    def params(self) -> list[click.Parameter]:
        params = self._params
        if any(isinstance(p, _OptionSet) for p in params):
            built: list[click.Parameter] = []
            for p in params:
                built.extend(p.build() if isinstance(p, _OptionSet) else [p])
            self._params = params = built
        return params

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._params = value


def _input_options(fn):
    """The secret input channels ``put`` and ``edit`` share (values never come through argv), as
    one lazily built option set (the command needs ``cls=LazyOptionsCommand``)."""

    def build() -> list[click.Parameter]:
        def holder():
            """Collects the options in click's decorator order."""

        _build_input_options(holder)
        return list(reversed(holder.__click_params__))  # type: ignore[attr-defined]

    fn.__dict__.setdefault("__click_params__", []).append(_OptionSet(build))
    return fn


def _build_input_options(fn):
    from vault.records.generate import CHARSETS, DEFAULT_LENGTH, MAX_LENGTH, MIN_LENGTH

    options = [
        click.option("--from-stdin", is_flag=True, help="Read the main secret field from standard input."),
        click.option(
            "--file",
            "value_file",
            type=click.Path(dir_okay=False),
            help="Read the main secret field from this file.",
        ),
        click.option(
            "--fields-json",
            type=click.Path(dir_okay=False),
            help="Fields as a JSON object in this file (custom: {NAME: {value, secret}}).",
        ),
        click.option(
            "--secret-file",
            multiple=True,
            metavar="FIELD=PATH",
            help="Read another secret field (api_token, ssh_private_key, totp, custom.NAME) from a file.",
        ),
        click.option(
            "--custom",
            "custom",
            multiple=True,
            metavar="NAME=VALUE",
            help="A non-secret custom field (repeatable); secret ones: --secret-file custom.NAME=PATH.",
        ),
        click.option(
            "--secret-custom",
            multiple=True,
            metavar="NAME",
            help="A secret custom field, asked for with a hidden prompt (repeatable).",
        ),
        click.option("--generate", is_flag=True, help="Generate the main secret (a random password)."),
        click.option(
            "--length",
            type=click.IntRange(MIN_LENGTH, MAX_LENGTH),
            help=f"Length of a generated password (default {DEFAULT_LENGTH}).",
        ),
        click.option(
            "--charset", type=click.Choice(sorted(CHARSETS)), help="Characters of a generated password."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return _field_options(fn)


_LIST_FIELDS = frozenset(f.name for f in cli_fields() if f.type == "list")
_FIELD_NAMES = frozenset(f.name for f in cli_fields())


def _read_bytes(path: str, what: str) -> bytes:
    with _open_input(path, what) as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise InvalidInput(f"{what} file {path} cannot be read: {exc.strerror or exc}") from None


def _open_input(path: str, what: str):
    """A file the user named, open for reading bytes, or one line saying why it cannot be."""
    try:
        return open(path, "rb")
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


def _input_size(fh) -> int:
    """The size of a regular file being imported (0: a pipe or a terminal, no progress bar)."""
    import os
    import stat

    try:
        st = os.fstat(fh.fileno())
    except (OSError, ValueError):
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _stream_lines(fh, source: str, update: Callable[[int], None] | None):
    """An import's lines, read as a stream (never the whole input in memory): split on ``\n``
    alone (JSON Lines; a ``\r`` before it is JSON whitespace), each decoded as UTF-8 exactly
    (``\n`` never occurs inside a multi-byte UTF-8 sequence, so line by line is the same as the
    whole). Non-UTF-8 input is refused with the line of :func:`_text`."""
    done = 0
    for number, raw in enumerate(fh, 1):
        done += len(raw)
        if update is not None and number % 1000 == 0:
            update(done)
        yield _text(raw, "import", source)
    if update is not None:
        update(done)


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


def _gather(kind, options, *, ask_main: bool) -> dict:
    """The fields given on the command line, by every channel (``put`` and ``edit``)."""
    fields_json = options.pop("fields_json")
    fields: dict = _fields_json(fields_json) if fields_json else {}
    custom: dict = dict(fields.get(CUSTOM) or {}) if isinstance(fields.get(CUSTOM), dict) else {}
    for item in options.pop("custom"):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidInput("--custom takes NAME=VALUE")
        custom[name] = {"value": value, "secret": False}
    for name in options.pop("secret_custom"):
        if not sys.stdin.isatty():
            raise InvalidInput(
                f"--secret-custom {name} needs a terminal; use --secret-file custom.{name}=PATH"
            )
        custom[name] = {"value": click.prompt(name, hide_input=True, err=True), "secret": True}
    for item in options.pop("secret_file"):
        field, sep, file_path = item.partition("=")
        if not sep or not field:
            raise InvalidInput("--secret-file takes FIELD=PATH")
        if field.startswith("custom."):
            custom[field[7:]] = {"value": _read_file(file_path, field), "secret": True}
        elif field in _FIELD_NAMES:
            raise InvalidInput(f"{field} is not a secret field: use --{field.replace('_', '-')}")
        else:
            fields[field] = _read_file(file_path, field, multiline=field in MULTILINE_FIELDS)
    if custom:
        fields[CUSTOM] = custom
    from_stdin, value_file = options.pop("from_stdin"), options.pop("value_file")
    generate, length, charset = options.pop("generate"), options.pop("length"), options.pop("charset")
    for field, value in options.items():
        if value not in (None, ()):
            fields[field] = list(value) if field in _LIST_FIELDS else value
    if kind is None:
        return {"fields": fields, "main": (from_stdin, value_file, generate, length, charset)}
    _fill_main(kind, fields, from_stdin, value_file, generate, length, charset, ask=ask_main)
    return {"fields": fields}


def _fill_main(kind, fields, from_stdin, value_file, generate, length, charset, *, ask: bool) -> None:
    main = MAIN_SECRET[kind]
    if sum(map(bool, (from_stdin, value_file, generate))) > 1:
        raise InvalidInput("use one of --from-stdin, --file and --generate")
    if (length is not None or charset is not None) and not generate:
        raise InvalidInput("--length and --charset go with --generate")
    if generate:
        from vault.records.generate import for_kind

        fields[main] = for_kind(kind, length, charset)
    elif from_stdin:
        fields[main] = _stdin_value(main, multiline=main in MULTILINE_FIELDS)
    elif value_file:
        fields[main] = _read_file(value_file, main, multiline=main in MULTILINE_FIELDS)
    elif ask and main not in fields and sys.stdin.isatty():
        fields[main] = click.prompt(f"{main}", hide_input=True, confirmation_prompt=True, err=True)


@secret.command("put", cls=LazyOptionsCommand)
@click.argument("client", shell_complete=complete_client)
@click.argument("path", shell_complete=complete_path)
@click.option("--type", "kind", type=click.Choice(KINDS), required=True, help="Record kind.")
@click.option("--replace", is_flag=True, help="Store exactly these fields, dropping the others.")
@_input_options
@json_option
@click.pass_obj
def secret_put(state, client, path, kind, replace, as_json, **options):
    """Store a record (values by prompt, stdin or file, never argv).

    On an existing record, refuses to drop any field it holds unless --replace
    (use 'secret edit' to change some fields)."""
    fields = _gather(kind, options, ask_main=True)["fields"]
    vault = state.vault()
    data = vault.secrets.put(state.principal(), client, path, kind, fields, replace=replace)
    emit(data, as_json, lambda d: click.echo(f"stored {d['client']}/{d['path']} version {d['version']}"))


@secret.command("edit", cls=LazyOptionsCommand)
@click.argument("client", shell_complete=complete_client)
@click.argument("path", shell_complete=complete_path)
@click.option(
    "--unset",
    multiple=True,
    metavar="FIELD",
    help="Remove this field (custom.NAME: a custom field; repeatable).",
)
@click.option("--prompt", "ask", is_flag=True, help="Ask for the main secret field with a hidden prompt.")
@_input_options
@json_option
@click.pass_obj
def secret_edit(state, client, path, unset, ask, as_json, **options):
    """Change only the fields given, as a new version (the others stay)."""
    gathered = _gather(None, options, ask_main=False)
    fields = gathered["fields"]
    from_stdin, value_file, generate, length, charset = gathered["main"]
    vault = state.vault()
    principal = state.principal()
    if from_stdin or value_file or generate or ask or length is not None or charset is not None:
        kind = next((r["kind"] for r in vault.secrets.list(principal, client) if r["path"] == path), None)
        if kind is None:
            raise NotFound(f"no record {client}/{path}")
        if ask and not sys.stdin.isatty():
            raise InvalidInput("--prompt needs a terminal; use --from-stdin or --file")
        _fill_main(kind, fields, from_stdin, value_file, generate, length, charset, ask=ask)
    data = vault.secrets.edit(principal, client, path, set_fields=fields, unset=list(unset))
    emit(data, as_json, lambda d: click.echo(f"stored {d['client']}/{d['path']} version {d['version']}"))


@secret.command("restore")
@click.argument("client", shell_complete=complete_client)
@click.argument("path", shell_complete=complete_path)
@click.option(
    "--version", "version", type=click.IntRange(min=1), required=True, help="The version to bring back."
)
@json_option
@click.pass_obj
def secret_restore(state, client, path, version, as_json):
    """Make an older version's content the current version (also undeletes)."""
    data = state.vault().secrets.restore(state.principal(), client, path, version=version)
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"restored {d['client']}/{d['path']} version {d['restored_from']} as version {d['version']}"
        ),
    )


@secret.command("get")
@click.argument("client", shell_complete=complete_client)
@click.argument("path", shell_complete=complete_path)
@click.option("--field", "field", help="Print only this field's raw value (custom fields: custom.NAME).")
@click.option("--version", "version", type=click.IntRange(min=1), help="An older version.")
@click.option("--copy", is_flag=True, help="Copy the value to the clipboard (cleared after 30 s).")
@click.option("--otp", is_flag=True, help="Print the current code of the record's TOTP seed.")
@click.option("--reveal", is_flag=True, help="Show secret fields in clear on a terminal.")
@click.option(
    "--raw",
    is_flag=True,
    help="With --field on a terminal: print control characters as stored (else escaped).",
)
@click.option("--attachment", "attachment", metavar="NAME", help="Write this attached file to --out.")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where --attachment writes the file (a new 0600 file; - for standard output).",
)
@totp_option
@json_option
@click.pass_obj
def secret_get(state, client, path, field, version, copy, otp, reveal, raw, attachment, out, totp, as_json):
    """Read a record (all fields, or one with --field); secret fields masked on a terminal.

    Attached files are listed; --attachment NAME --out FILE writes one."""
    vault = state.vault()
    if attachment is not None or out is not None:
        if attachment is None or out is None:
            raise InvalidInput("--attachment NAME and --out FILE go together")
        if field is not None or copy or otp:
            raise InvalidInput("--attachment takes no --field, --copy or --otp")
        _write_attachment(state, vault, client, path, attachment, version, out, totp, as_json)
        return
    if otp:
        if field is not None or version is not None:
            raise InvalidInput("--otp gives the current code; it takes no --field or --version")
        code = state.with_stepup(lambda p: vault.secrets.otp(p, client, path), totp)
        if copy:
            from cli.clipboard import copy_with_timeout

            seconds = copy_with_timeout(code["code"])
            click.echo(f"copied the code of {client}/{path}; clears in {seconds} s", err=True)
            return
        tty = sys.stdout.isatty()
        emit(
            code,
            as_json,
            lambda d: click.echo(f"{d['code']}  ({d['seconds_left']} s left)" if tty else d["code"]),
        )
        return
    record = state.with_stepup(lambda p: vault.secrets.get(p, client, path, version=version), totp)
    if copy:
        from cli.clipboard import copy_with_timeout

        chosen = field or MAIN_SECRET[record.kind]
        if field is None and chosen not in record.fields:
            raise InvalidInput(f"{client}/{path} has no {chosen} to copy; use --field")
        seconds = copy_with_timeout(str(field_value(record, chosen)))
        click.echo(f"copied {chosen} of {client}/{path} to the clipboard; clears in {seconds} s", err=True)
        return
    if field is not None:
        value = field_value(record, field)
        # color=True: click would strip escape sequences from piped output; a pipe gets the
        # value exactly as stored, a terminal the escaped form (cli.text.for_terminal)
        emit(
            {"field": field, "value": value},
            as_json,
            lambda d: click.echo(field_text(value, raw), color=True),
        )
        return

    # the JSON form is made by the function cvault secret get without click uses (cli.fastget)
    emit(
        record_json(record) if as_json or wants_json() else record.as_dict(),
        as_json,
        lambda d: record_human(d, reveal, click.echo),
    )


def _write_attachment(state, vault, client, path, name, version, out, totp, as_json) -> None:
    """``secret get --attachment NAME --out FILE``: the bytes exactly, to a new 0600 file (never
    over an existing one) or to standard output."""
    import os

    if out != "-" and os.path.lexists(out):
        raise InvalidInput(f"{out} already exists: give a new file name (nothing is overwritten)")
    got = state.with_stepup(lambda p: vault.secrets.attachment(p, client, path, name, version), totp)
    data = got.pop("data")
    if out == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    from vault.home import write_private_file

    try:
        write_private_file(out, data, exclusive=True)
    except FileExistsError:
        raise InvalidInput(f"{out} already exists: give a new file name (nothing is overwritten)") from None
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror or exc}") from None
    got["out"] = out
    emit(
        got,
        as_json,
        lambda d: click.echo(
            f"wrote {d['name']} of {d['client']}/{d['path']} to {out} ({size_text(d['size'])})", err=True
        ),
    )


@secret.command("attach")
@click.argument("client", shell_complete=complete_client)
@click.argument("path", shell_complete=complete_path)
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--name", "name", help="The attachment's name (default: the file's name).")
@json_option
@click.pass_obj
def secret_attach(state, client, path, file, name, as_json):
    """Attach a file (at most 25 MiB) to a record, as a new version; encrypted with its own key.

    A file of the same name is replaced; older versions keep theirs."""
    import os

    from vault.blob import MAX_ATTACHMENT

    if file == "-":
        if name is None:
            raise InvalidInput("an attachment from standard input needs --name")
        data = sys.stdin.buffer.read(MAX_ATTACHMENT + 1)
    else:
        try:
            size = os.stat(file).st_size
        except FileNotFoundError:
            raise InvalidInput(f"file {file} not found") from None
        except OSError as exc:
            raise InvalidInput(f"file {file} cannot be read: {exc.strerror or exc}") from None
        if size > MAX_ATTACHMENT:
            raise InvalidInput(f"{file} is {size / 1048576:.1f} MiB: at most 25 MiB per attachment")
        data = _read_bytes(file, "attachment")
    if len(data) > MAX_ATTACHMENT:
        raise InvalidInput(f"{file} is over 25 MiB: at most 25 MiB per attachment")
    label = name if name is not None else os.path.basename(file)
    result = state.vault().secrets.attach(state.principal(), client, path, data, name=label)
    emit(
        result,
        as_json,
        lambda d: click.echo(
            f"attached {d['name']} ({size_text(d['size'])}) to {d['client']}/{d['path']}"
            f" version {d['version']}"
        ),
    )


@secret.command("detach")
@click.argument("client", shell_complete=complete_client)
@click.argument("path", shell_complete=complete_path)
@click.argument("name")
@json_option
@click.pass_obj
def secret_detach(state, client, path, name, as_json):
    """Remove an attachment, as a new version (older versions keep it: restore brings it back)."""
    result = state.vault().secrets.detach(state.principal(), client, path, name=name)
    emit(
        result,
        as_json,
        lambda d: click.echo(f"detached {d['name']} from {d['client']}/{d['path']} version {d['version']}"),
    )


@secret.command("list")
@click.argument("client", required=False, shell_complete=complete_client)
@click.option("--all", "all_clients", is_flag=True, help="Every client you may read now.")
@json_option
@click.pass_obj
def secret_list(state, client, all_clients, as_json):
    """List a client's records, or with --all every readable client's (paths and kinds; no values)."""
    if all_clients == (client is not None):
        raise InvalidInput("give a CLIENT or --all")
    vault = state.vault()
    if all_clients:
        rows = vault.secrets.list_all(state.principal())
        columns = [("client", "client"), ("path", "path"), ("kind", "kind"), ("version", "version")]
    else:
        rows = vault.secrets.list(state.principal(), client)
        columns = [("path", "path"), ("kind", "kind"), ("version", "version")]
    emit(rows, as_json, lambda r: table(r, [*columns, ("updated_at", "updated")]))


@secret.command("search")
@click.argument("term")
@click.option("--client", help="Search only this client.")
@click.option("--kind", type=click.Choice(KINDS), help="Only records of this kind.")
@json_option
@click.pass_obj
def secret_search(state, term, client, kind, as_json):
    """Find records by path, kind, tags, custom field names and non-secret fields, across every
    client you may read now (never matches or prints a secret value)."""
    rows = state.vault().secrets.search(state.principal(), term, client=client, kind=kind)
    emit(
        rows,
        as_json,
        lambda r: table(
            [{**row, "matched": ", ".join(row["matched"])} for row in r],
            [
                ("client", "client"),
                ("path", "path"),
                ("kind", "kind"),
                ("matched", "matched"),
                ("version", "version"),
            ],
            empty="(no matches)",
        ),
    )


@secret.command("history")
@click.argument("client", shell_complete=complete_client)
@click.argument("path", shell_complete=complete_path)
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
@click.argument("client", shell_complete=complete_client)
@click.argument("path", shell_complete=complete_path)
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
    source = "standard input" if file == "-" else f"file {file}"
    fh = sys.stdin.buffer if file == "-" else _open_input(file, "import")
    try:
        vault = state.vault()
        with progress("importing") as update:
            size = _input_size(fh)
            report = (lambda done: update(done, size)) if size else None
            if fh is not sys.stdin.buffer and size:
                # a named regular file: the library may read its rest by byte ranges on a second
                # core (vault.records.parallel); iterated, it is the same stream of lines
                from vault.records.importfile import ImportFile

                lines = ImportFile(fh, lambda raw: _text(raw, "import", source), report)
            else:
                lines = _stream_lines(fh, source, report)
            data = vault.secrets.import_records(state.principal(), client, lines)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
    emit(data, as_json, lambda d: click.echo(f"imported {d['imported']} records into {d['client']}"))
