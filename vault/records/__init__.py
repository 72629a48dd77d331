"""Record kinds and their fields, described once (docs/spec.md §4), and a record as read.

Light on purpose (no pydantic): ``cvault secret get`` and the service client import it. The one
table :data:`FIELDS` drives

* validation: :mod:`vault.records.validate` (pydantic, loaded on the write path only) has one model
  per kind, and ``tests/secrets/test_fields_table.py`` checks each against this table (names, order,
  types, required, multi-line);
* the CLI: ``cvault secret put|edit`` has one option per non-secret field, named exactly as the
  field (``wifi_ssid``: ``--wifi-ssid``; the older names live on as ``aliases``), and fills the
  kind's ``main`` field from a hidden prompt, ``--from-stdin`` or ``--file`` (secret values never
  come through argv);
* masking (secret fields are masked on a terminal) and ``secret search`` (``search`` fields only,
  never a secret one).

:mod:`vault.records.service` is the secrets service (put, get, ...).
"""

from __future__ import annotations

from typing import Any

from vault.tuples import NamedTuple


class Field:
    """One field of a kind. A plain slotted class, not a NamedTuple: this module is on the
    ``secret get`` path, and a NamedTuple class costs about 0.1 ms to create at import."""

    __slots__ = ("name", "type", "secret", "main", "required", "multiline", "search", "aliases")

    def __init__(
        self,
        name: str,
        type: str = "str",
        *,
        secret: bool = False,
        main: bool = False,
        required: bool = False,
        multiline: bool = False,
        search: bool = False,
        aliases: tuple[str, ...] = (),
    ):
        self.name = name
        #: "str", "int" (a JSON integer), "list" (a list of strings) or "custom" (custom fields:
        #: ``{NAME: {"value": str, "secret": bool}}``)
        self.type = type
        #: the value is a secret: never an argv option, masked on a terminal, never searched
        self.secret = secret
        #: the field a hidden prompt, ``--from-stdin`` or ``--file`` fills
        self.main = main
        self.required = required
        #: may span several lines (newlines and tabs allowed; other fields refuse control characters)
        self.multiline = multiline
        #: ``secret search`` matches on this field (non-secret fields only)
        self.search = search
        #: older option names still accepted (``--ssid`` for ``--wifi-ssid``; docs/cli.md)
        self.aliases = aliases

    @property
    def cli(self) -> str | None:
        """The ``secret put|edit`` option setting this field: the field's own name (``wifi_ssid``:
        ``--wifi-ssid``). Secret fields have none: their values never come through argv."""
        if self.secret or self.type == "custom":
            return None
        return "--" + self.name.replace("_", "-")

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.type!r})"


F = Field
#: on every kind: labels (repeatable ``--tags``/``--tag``) and custom fields, searchable
_COMMON = (
    F("tags", "list", search=True, aliases=("--tag",)),
    F("custom", "custom", search=True),
)
#: an account's MFA seed (base32 or an ``otpauth://totp/`` URI): ``secret get --otp`` prints its code
_TOTP = F("totp", secret=True)
FIELDS: dict[str, tuple[Field, ...]] = {
    "network": (
        F("site", search=True),
        F("hostname", search=True),
        F("addresses", "list", search=True, aliases=("--address",)),
        F("vlan", "int"),
        F("gateway"),
        F("dns_servers", "list", aliases=("--dns",)),
        F("wifi_ssid", search=True, aliases=("--ssid",)),
        F("wifi_key", secret=True, main=True),
        F("notes", multiline=True),
        *_COMMON,
    ),
    "account": (
        F("username", required=True, search=True),
        F("display_name", search=True),
        F("email", search=True),
        F("password", secret=True, main=True),
        _TOTP,
        F("mfa_notes", multiline=True),
        *_COMMON,
    ),
    "access": (
        F("system", search=True),
        F("url", search=True),
        F("host", search=True),
        F("port", "int"),
        F("protocol"),
        F("username", search=True),
        F("password", secret=True, main=True),
        F("api_token", secret=True),
        F("ssh_private_key", secret=True, multiline=True),
        _TOTP,
        F("notes", multiline=True),
        *_COMMON,
    ),
    "note": (F("text", secret=True, main=True, required=True, multiline=True), *_COMMON),
}
del F

KINDS: tuple[str, ...] = tuple(FIELDS)
#: the field a hidden prompt, --from-stdin or --file fills for each kind (docs/spec.md §10)
MAIN_SECRET: dict[str, str] = {kind: next(f.name for f in fs if f.main) for kind, fs in FIELDS.items()}
#: each kind's secret fields (the importers keep exactly these out of everything but ``fields``)
SECRET_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(f.name for f in fs if f.secret) for kind, fs in FIELDS.items()
}
#: each kind's fields ``secret search`` matches on (custom: the names, and non-secret values)
SEARCH_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(f.name for f in fs if f.search) for kind, fs in FIELDS.items()
}
#: fields that may span several lines (any kind)
MULTILINE_FIELDS: frozenset[str] = frozenset(f.name for fs in FIELDS.values() for f in fs if f.multiline)
#: the custom-fields field and the kinds with a TOTP seed
CUSTOM = "custom"
TOTP = "totp"
#: one custom field name: a label, one line (vault.records.validate checks the characters)
MAX_CUSTOM_NAME = 128
MAX_TAG = 64
MAX_TAGS = 64
MAX_CUSTOM_FIELDS = 256


def field_names(kind: str) -> tuple[str, ...]:
    return tuple(f.name for f in FIELDS[kind])


def is_secret(kind: str, name: str, fields: dict[str, Any] | None = None) -> bool:
    """Whether a shown field is secret: a built-in secret field, or a custom field marked so
    (``custom.NAME``, looked up in ``fields``)."""
    if name.startswith("custom."):
        entry = ((fields or {}).get(CUSTOM) or {}).get(name[7:])
        return not isinstance(entry, dict) or bool(entry.get("secret", True))
    return name in SECRET_FIELDS.get(kind, frozenset())


def field_keys(fields: dict[str, Any]) -> set[str]:
    """The names a record's fields hold, custom fields as ``custom.NAME`` (what ``put`` would drop)."""
    out = {k for k in fields if k != CUSTOM}
    out.update(f"custom.{n}" for n in (fields.get(CUSTOM) or {}))
    return out


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
    #: the version's attachments: ``{"name", "size", "added_at", "added_by"}`` each (never a key)
    attachments: tuple[dict[str, Any], ...] | list[dict[str, Any]] = ()

    def as_dict(self) -> dict:
        return {
            "client": self.client,
            "path": self.path,
            "kind": self.kind,
            "version": self.version,
            "fields": self.fields,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "attachments": list(self.attachments),
        }
