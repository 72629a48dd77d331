"""``cvault secret get`` without click: the same read, the same bytes, a third less work.

click costs ~119 M instructions to import, 60 % of the import floor and more than the whole read
(docs/performance.md, "secret get without click"). For the command lines below, the console script
(:mod:`cli.launcher`) runs the read here instead of through click; the read itself is the click
command's own code (:class:`cli.state.CliState`: open, unseal, session, step-up), its output is
made by the same functions (:func:`field_value`, :func:`field_text`, :func:`record_json`,
:func:`record_human`, :mod:`cli.text`) and every error goes through the CLI's one error report
(:func:`cli.errors.report`).

Served (everything else runs the full click CLI, exactly as before)::

    cvault [--json] [--home DIR] [--profile NAME] secret get CLIENT PATH [...]

with ``--field``, ``--version N``, ``--totp CODE`` (each at most once, ``--opt VALUE`` or
``--opt=VALUE``), ``--json``, ``--raw``, ``--reveal``, in any order around the two arguments.
:func:`parse` declines (None) whatever click could read differently or that needs click's own
output: a third argument, an unknown or repeated option, a value or argument starting with ``-``,
``--`` , help, ``--debug`` (its traceback shows click's frames), ``--copy``/``--otp``/
``--attachment``/``--out``, service mode
(``--addr``/``CVAULT_ADDR``), shell completion, and streams click would re-wrap (an ASCII
encoding). tests/cli/test_fastget.py runs both paths over many command lines, good and bad, and
compares exit codes, stdout and stderr byte for byte.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vault.tuples import NamedTuple

if TYPE_CHECKING:
    from vault.records import SecretRecord as Record

#: options of ``secret get`` this path reads, with a value
_VALUE_OPTIONS = ("--field", "--version", "--totp")
#: flags of ``secret get`` this path reads
_FLAGS = ("--json", "--raw", "--reveal")


class GetRequest(NamedTuple):
    client: str
    path: str
    field: str | None
    version: int | None
    totp: str | None
    as_json: bool
    #: ``cvault --json``: the state's own flag (the command's ``--json`` is not)
    global_json: bool
    raw: bool
    reveal: bool
    home: str | None
    profile: str | None


def _option(argv: list[str], i: int, names: tuple[str, ...]) -> tuple[str, str, int] | None:
    """``(name, value, next index)`` when ``argv[i]`` is one of ``names`` with a value (``--opt V``
    or ``--opt=V``) that click reads as this path does; None otherwise."""
    arg = argv[i]
    name, eq, value = arg.partition("=")
    if name not in names:
        return None
    if not eq:
        if i + 1 >= len(argv):
            return None
        value, i = argv[i + 1], i + 1
    if not value or value.startswith("-"):
        return None
    return name, value, i + 1


def parse(argv: list[str], environ: os._Environ[str] | dict[str, str] = os.environ) -> GetRequest | None:
    """The read ``argv`` asks for, when this path serves it exactly as click would; else None."""
    gjson = False
    home: str | None = None
    profile: str | None = None
    i = 0
    while i < len(argv) and argv[i] != "secret":
        if argv[i] == "--json":
            gjson, i = True, i + 1
            continue
        found = _option(argv, i, ("--home", "--profile"))
        if found is None:
            return None
        name, value, i = found
        if name == "--home":
            if home is not None:
                return None
            home = value
        else:
            if profile is not None:
                return None
            profile = value
    if argv[i : i + 2] != ["secret", "get"]:
        return None
    seen: dict[str, str] = {}
    flags: set[str] = set()
    positional: list[str] = []
    i += 2
    while i < len(argv):
        arg = argv[i]
        if arg in _FLAGS:
            if arg in flags:
                return None
            flags.add(arg)
            i += 1
            continue
        if not arg.startswith("-"):
            positional.append(arg)
            i += 1
            continue
        found = _option(argv, i, _VALUE_OPTIONS)
        if found is None or found[0] in seen:
            return None
        seen[found[0]] = found[1]
        i = found[2]
    if len(positional) != 2:
        return None
    version = seen.get("--version")
    if version is not None and not (version.isascii() and version.isdigit() and len(version) < 16):
        return None
    if version is not None and int(version) < 1:
        return None
    as_json = gjson or "--json" in flags
    field = seen.get("--field")
    # click reads these from the environment when the option is not given (empty means unset)
    if environ.get("CVAULT_ADDR") or "_CVAULT_COMPLETE" in environ:
        return None
    return GetRequest(
        client=positional[0],
        path=positional[1],
        field=field,
        version=int(version) if version is not None else None,
        totp=seen.get("--totp"),
        as_json=as_json,
        global_json=gjson,
        raw="--raw" in flags,
        reveal="--reveal" in flags,
        home=home if home is not None else environ.get("CVAULT_HOME") or None,
        profile=profile if profile is not None else environ.get("CVAULT_PROFILE") or None,
    )


def streams_are_plain() -> bool:
    """True when click.echo would write to ``sys.stdout``/``sys.stderr`` as they are (it wraps
    streams with no or an ASCII encoding in a new writer)."""
    import codecs
    import io

    if sys.platform == "win32":
        return False
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper) or stream.errors is None or not stream.encoding:
            return False
        try:
            if codecs.lookup(stream.encoding).name == "ascii":
                return False
        except LookupError:
            pass
    return True


def field_value(record: Record, field: str) -> Any:
    """``--field``: a built-in field, or a custom one as ``custom.NAME`` (or its bare name)."""
    from vault.errors import InvalidInput
    from vault.records import CUSTOM

    custom = record.fields.get(CUSTOM) or {}
    if field in record.fields and field != CUSTOM:
        return record.fields[field]
    name = field[7:] if field.startswith("custom.") else field
    if name in custom:
        return custom[name].get("value")
    available = sorted([k for k in record.fields if k != CUSTOM] + [f"custom.{n}" for n in custom])
    raise InvalidInput(
        f"{record.client}/{record.path} has no field {field!r} (fields: {', '.join(available)})"
    )


def field_text(value: Any, raw: bool) -> str:
    """``--field`` without ``--json``: the value as stored when piped (or ``--raw``), control
    characters escaped on a terminal (:func:`cli.text.for_terminal`)."""
    from cli.text import for_terminal

    return for_terminal(", ".join(map(str, value)) if isinstance(value, list) else value, raw)


def record_json(record: Record) -> dict:
    """``secret get --json``: the record, its TOTP seed left out (``"totp": true`` says there is one)."""
    from vault.records import TOTP

    data = record.as_dict()
    fields = dict(data["fields"])
    data["totp"] = fields.pop(TOTP, None) is not None
    data["fields"] = fields
    return data


#: a masked secret value in the human view
MASK = "\u2022" * 8


def shown_fields(fields: dict, kind: str, *, reveal: bool) -> dict:
    """The fields of the human view: custom fields as ``custom.NAME``, secret values masked unless
    ``reveal``, the TOTP seed never (``--otp`` for its code, ``--field totp`` for the seed)."""
    from vault.records import CUSTOM, TOTP, is_secret

    shown: dict = {}
    for key, value in fields.items():
        if key == CUSTOM:
            for name, entry in value.items():
                secret_value = entry.get("secret", True)
                shown[f"custom.{name}"] = entry.get("value") if reveal or not secret_value else MASK
        elif key == TOTP:
            shown[key] = "(set: --otp for the code, --field totp for the seed)"
        elif is_secret(kind, key) and not reveal:
            shown[key] = MASK
        else:
            shown[key] = value
    return shown


def size_text(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1048576:.1f} MiB"


def record_human(d: dict, reveal: bool, echo: Callable[[str], object]) -> None:
    """The human view of a record (``secret get`` without ``--field``/``--json``): a header line,
    then its fields, secrets masked on a terminal unless ``reveal``, and its attachments."""
    from cli.text import fields_block, when

    echo(
        f"# {d['client']}/{d['path']}  ({d['kind']}, version {d['version']}, "
        f"{when(d['created_at'])} by {d['created_by']})"
    )
    shown = shown_fields(d["fields"], d["kind"], reveal=reveal or not sys.stdout.isatty())
    for n, a in enumerate(d.get("attachments") or [], 1):
        shown[f"attachment {n}"] = (
            f"{a['name']} ({size_text(a['size'])}, {when(a['added_at'])} by {a['added_by']})"
        )
    fields_block(shown, True, echo)


def run(request: GetRequest) -> int:
    """Run the read as the click command does and return the exit code (output written)."""
    from cli.errors import report
    from cli.text import echo, json_text

    os.umask(0o077)  # as cli.main.run: anything the CLI creates is private to the user
    state = None
    try:
        # the ``cli`` group's callback
        if request.profile:
            from cli.session_file import check_profile

            os.environ["CVAULT_PROFILE"] = check_profile(request.profile)
        else:
            os.environ.pop("CVAULT_PROFILE", None)
        from cli.state import CliState

        state = CliState(home=request.home, addr=None, json=request.global_json, debug=False)
        try:
            # the command (cli.commands.secret.secret_get)
            vault = state.vault()
            client, path, version = request.client, request.path, request.version
            record = state.with_stepup(
                lambda p: vault.secrets.get(p, client, path, version=version), request.totp
            )
            if request.field is not None:
                value = field_value(record, request.field)
                if request.as_json:
                    echo(json_text({"field": request.field, "value": value}))
                else:
                    echo(field_text(value, request.raw), color=True)
            elif request.as_json:
                echo(json_text(record_json(record)))
            else:
                record_human(record.as_dict(), request.reveal, echo)
        finally:
            state.close()  # click's call_on_close
    except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - as cli.main.run: one line and an exit code
        click = sys.modules.get("click")  # a prompt (passphrase, step-up) loads click
        if click is not None and isinstance(exc, click.exceptions.Abort):
            echo("cvault: aborted", err=True)
            return 1
        return report(exc, False, lambda line: echo(line, err=True))
    return 0


def try_fast(argv: list[str]) -> int | None:
    """The exit code when this path ran ``argv`` (output written), None when click must."""
    request = parse(argv)
    if request is None or not streams_are_plain():
        return None
    return run(request)
