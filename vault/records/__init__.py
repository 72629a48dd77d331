"""Record kinds and their fields, described once (docs/spec.md §4), and a record as read.

Light on purpose (no pydantic): ``cvault secret get`` and the service client import it. The one
table :data:`FIELDS` drives

* validation: :mod:`vault.records.validate` (pydantic, loaded on the write path only) has one model
  per kind, and ``tests/secrets/test_fields_table.py`` checks each against this table (names, order,
  types, required, multi-line);
* the CLI: ``cvault secret put`` has one option per field with a ``cli`` name (secret fields have
  none: their values never come through argv) and fills the kind's ``main`` field from a hidden
  prompt, ``--from-stdin`` or ``--file``.

:mod:`vault.records.service` is the secrets service (put, get, ...).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Field:
    """One field of a kind. A plain slotted class, not a NamedTuple: this module is on the
    ``secret get`` path, and a NamedTuple class costs about 0.1 ms to create at import."""

    __slots__ = ("name", "type", "secret", "main", "required", "multiline", "cli")

    def __init__(
        self,
        name: str,
        type: str = "str",
        *,
        secret: bool = False,
        main: bool = False,
        required: bool = False,
        multiline: bool = False,
        cli: str | None = None,
    ):
        self.name = name
        #: "str", "int" (a JSON integer) or "list" (a list of strings)
        self.type = type
        #: the value is a secret: never an argv option; the kind's ``main`` field is prompted for
        self.secret = secret
        self.main = main
        self.required = required
        #: may span several lines (newlines and tabs allowed; other fields refuse control characters)
        self.multiline = multiline
        #: the ``cvault secret put`` option setting this field (None: only through --fields-json)
        self.cli = cli

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.type!r})"


F = Field
FIELDS: dict[str, tuple[Field, ...]] = {
    "network": (
        F("site", cli="--site"),
        F("hostname", cli="--hostname"),
        F("addresses", "list", cli="--address"),
        F("vlan", "int", cli="--vlan"),
        F("gateway", cli="--gateway"),
        F("dns_servers", "list", cli="--dns"),
        F("wifi_ssid", cli="--ssid"),
        F("wifi_key", secret=True, main=True),
        F("notes", multiline=True, cli="--notes"),
    ),
    "account": (
        F("username", required=True, cli="--username"),
        F("display_name", cli="--display-name"),
        F("email", cli="--email"),
        F("password", secret=True, main=True),
        F("mfa_notes", multiline=True),
    ),
    "access": (
        F("system", cli="--system"),
        F("url", cli="--url"),
        F("host", cli="--host"),
        F("port", "int", cli="--port"),
        F("protocol", cli="--protocol"),
        F("username", cli="--username"),
        F("password", secret=True, main=True),
        F("api_token", secret=True),
        F("ssh_private_key", secret=True, multiline=True),
        F("notes", multiline=True, cli="--notes"),
    ),
    "note": (F("text", secret=True, main=True, required=True, multiline=True),),
}
del F

KINDS: tuple[str, ...] = tuple(FIELDS)
#: the field a hidden prompt, --from-stdin or --file fills for each kind (docs/spec.md §10)
MAIN_SECRET: dict[str, str] = {kind: next(f.name for f in fs if f.main) for kind, fs in FIELDS.items()}
#: each kind's secret fields (the importers keep exactly these out of everything but ``fields``)
SECRET_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(f.name for f in fs if f.secret) for kind, fs in FIELDS.items()
}
#: fields that may span several lines (any kind)
MULTILINE_FIELDS: frozenset[str] = frozenset(f.name for fs in FIELDS.values() for f in fs if f.multiline)


def cli_fields() -> list[Field]:
    """The fields ``secret put`` has options for, one per option: single-line fields first, in
    the order of the table, then the multi-line ones (long values, usually given as a file)."""
    seen: dict[str, Field] = {}
    for fields in FIELDS.values():
        for f in fields:
            if f.cli is not None and f.cli not in seen:
                seen[f.cli] = f
    ordered = list(seen.values())
    return [f for f in ordered if not f.multiline] + [f for f in ordered if f.multiline]


class SecretRecord(NamedTuple):
    """A record as read (``secret get``); rebuilt from JSON by the service client."""

    client: str
    path: str
    kind: str
    version: int
    fields: dict[str, Any]
    created_at: str
    created_by: str

    def as_dict(self) -> dict:
        return {
            "client": self.client,
            "path": self.path,
            "kind": self.kind,
            "version": self.version,
            "fields": self.fields,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }
