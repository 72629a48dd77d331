"""Typed record kinds (docs/spec.md §4), validated on every write.

Imported only where records are written or validated (put, import): ``secret get`` decodes the
stored JSON document without loading it. The reference is one pydantic model per kind of
:data:`vault.records.FIELDS` (:mod:`vault.records.models`: the fields, their order, types and
roles, a test checks that the two agree, plus what a table cannot say: bounds, address and e-mail
syntax); this module holds the fast path that vouches for plain records without the models, so
pydantic loads only when a record needs the model (a refusal, a value to normalise).

The stored plaintext is the canonical JSON document ``{"kind": KIND, "fields": {...}}`` with
``None`` fields left out.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from vault.blob import MAX_PLAINTEXT
from vault.errors import InvalidInput
from vault.records import (
    FIELDS,
    KINDS,
    MAX_CUSTOM_FIELDS,
    MAX_CUSTOM_NAME,
    MAX_TAG,
    MAX_TAGS,
    MULTILINE_FIELDS,
    otp,
)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MULTILINE = MULTILINE_FIELDS
_MODEL_NAMES = ("MODELS", "NetworkRecord", "AccountRecord", "AccessRecord", "NoteRecord", "CustomValue")


def __getattr__(name: str) -> Any:
    """The models by their old names here (``validate.MODELS``), loading pydantic on first use."""
    if name in _MODEL_NAMES:
        from vault.records import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        # the field is named by the caller, the refused value never (a secret pasted into the
        # wrong field or column would be printed back: review9 R9-4)
        raise ValueError("not an IP address") from None


def _surrogates(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if depth > 4:
        return False  # deeper than any field's type: the model refuses it anyway
    if isinstance(value, dict):
        return any(_surrogates(k, depth + 1) or _surrogates(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_surrogates(v, depth + 1) for v in value)
    return False


def validate(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate fields for a kind; return the normalised fields (``None`` and empty lists dropped).

    Raises InvalidInput with one line naming the first bad field, never echoing its value.

    A record of plain JSON values that :func:`fast_validate` vouches for is taken as it returns
    it (no pydantic call); everything else, every refusal included, goes through the model, so
    the result and the message are the model's."""
    fast = fast_validate(kind, fields)
    if fast is not None:
        return fast
    return model_validate(kind, fields)


def model_validate(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """:func:`validate` through the pydantic model alone (the reference fast_validate is tested
    against)."""
    from pydantic import ValidationError

    from vault.records.models import MODELS

    model = MODELS.get(kind)
    if model is None:
        raise InvalidInput(f"unknown record type: use one of {', '.join(KINDS)}")
    if not isinstance(fields, dict):
        raise InvalidInput("record fields must be a JSON object")
    if _surrogates(fields):
        # a lone surrogate ("\ud800" in JSON) is not text and cannot be stored as UTF-8
        raise InvalidInput(f"invalid {kind} record: text must be valid Unicode (no lone surrogates)")
    try:
        record = model(**{k: v for k, v in fields.items() if k != "kind"})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or kind
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        raise InvalidInput(f"invalid {kind} record: {where}: {msg}") from None
    except TypeError:
        raise InvalidInput(f"invalid {kind} record") from None
    data = record.model_dump(exclude_none=True)
    data.pop("kind", None)
    return {k: v for k, v in data.items() if v != []}


# --- the fast path of bulk writes ---------------------------------------------------------------
#
# ``secret import`` validates every record; through pydantic that was the largest item of its
# profile after SQLite (a model instance, a dump and a walk for lone surrogates per record).
# fast_validate enforces the very same rules on the plain values JSON gives (exact str, int, bool,
# list and dict; nothing a model would coerce) and answers None whenever it is not sure, so the
# caller asks the model: it never refuses anything itself, and never accepts a record the model
# would refuse or normalise differently (tests/secrets/test_fast_validate.py checks both with
# hypothesis against the models).

#: forbidden in a single-line field: the control characters of _CONTROL, a line feed, surrogates
_BAD_LINE = re.compile("[\x00-\x08\x0a-\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: forbidden in a multi-line field (the models check nothing else there): lone surrogates
_BAD_TEXT = _SURROGATE
#: forbidden in a custom value: the control characters of _CONTROL, surrogates
_BAD_VALUE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: forbidden in a tag: as in a single-line field, and a tab (a carriage return is allowed)
_BAD_TAG = re.compile("[\x00-\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_BUILTIN = frozenset(f.name for fs in FIELDS.values() for f in fs)

_STR, _INT, _LIST, _TAGS, _CUSTOM = range(5)


class _Spec:
    """What the model of a kind says of one field: (type, bounds, extra check)."""

    __slots__ = ("name", "type", "low", "high", "required", "check", "bad")

    def __init__(self, name, type_, low=0, high=MAX_PLAINTEXT, *, required=False, check=None):
        self.name, self.type, self.low, self.high = name, type_, low, high
        self.required, self.check = required, check
        self.bad = _BAD_TEXT if name in _MULTILINE else _BAD_LINE


def _email_ok(value: str) -> str | None:
    return value if _EMAIL.match(value) else None


def _totp_ok(value: str) -> str | None:
    try:
        otp.parse(value)
    except Exception:  # noqa: BLE001 - not sure: the model decides (and names the error)
        return None
    return value


def _ip_ok(value: str) -> str | None:
    try:
        return _ip(value)
    except ValueError:
        return None


def _cidr_ok(value: str) -> str | None:
    try:
        return str(ipaddress.ip_interface(value.strip()))
    except ValueError:
        return None


_SHORT = 256
_S = _Spec
_SPECS: dict[str, tuple[_Spec, ...]] = {
    "network": (
        _S("site", _STR, 1, _SHORT),
        _S("hostname", _STR, 1, _SHORT),
        _S("addresses", _LIST, 0, 256, check=_cidr_ok),
        _S("vlan", _INT, 1, 4094),
        _S("gateway", _STR, 0, None, check=_ip_ok),
        _S("dns_servers", _LIST, 0, 16, check=_ip_ok),
        _S("wifi_ssid", _STR, 1, 32),
        _S("wifi_key", _STR, 8, 64),
        _S("notes", _STR),
        _S("tags", _TAGS),
        _S("custom", _CUSTOM),
    ),
    "account": (
        _S("username", _STR, 1, _SHORT, required=True),
        _S("display_name", _STR, 1, _SHORT),
        _S("email", _STR, 1, _SHORT, check=_email_ok),
        _S("password", _STR),
        _S("totp", _STR, 1, _SHORT, check=_totp_ok),
        _S("mfa_notes", _STR),
        _S("tags", _TAGS),
        _S("custom", _CUSTOM),
    ),
    "access": (
        _S("system", _STR, 1, _SHORT),
        _S("url", _STR, 1, _SHORT),
        _S("host", _STR, 1, _SHORT),
        _S("port", _INT, 1, 65535),
        _S("protocol", _STR, 1, 32),
        _S("username", _STR, 1, _SHORT),
        _S("password", _STR),
        _S("api_token", _STR),
        _S("ssh_private_key", _STR),
        _S("totp", _STR, 1, _SHORT, check=_totp_ok),
        _S("notes", _STR),
        _S("tags", _TAGS),
        _S("custom", _CUSTOM),
    ),
    "note": (_S("text", _STR, required=True), _S("tags", _TAGS), _S("custom", _CUSTOM)),
}
del _S
_NAMES = {kind: frozenset(s.name for s in specs) for kind, specs in _SPECS.items()}
_ABSENT = object()


def fast_validate(kind: str, fields: Any) -> dict[str, Any] | None:
    """The normalised fields exactly as :func:`validate` returns them through the model, or None
    when this path is not sure (then the model decides; see the comment above)."""
    specs = _SPECS.get(kind)
    if specs is None or type(fields) is not dict or not fields.keys() <= _NAMES[kind]:
        return None
    out: dict[str, Any] = {}
    for spec in specs:
        value = fields.get(spec.name, _ABSENT)
        if value is _ABSENT:
            if spec.required:
                return None
            continue
        if value is None:
            if spec.required or spec.type is _TAGS or spec.type is _LIST:  # lists are never null
                return None
            continue
        kind_of = spec.type
        if kind_of is _STR:
            if type(value) is not str or spec.bad.search(value) is not None:
                return None
            if spec.high is not None and not spec.low <= len(value) <= spec.high:
                return None
            if spec.check is not None:
                value = spec.check(value)
                if value is None:
                    return None
            out[spec.name] = value
        elif kind_of is _INT:
            if type(value) is not int or not spec.low <= value <= spec.high:
                return None
            out[spec.name] = value
        elif kind_of is _LIST:
            if type(value) is not list or len(value) > spec.high:
                return None
            items = []
            for item in value:
                if type(item) is not str or _SURROGATE.search(item) is not None:
                    return None
                item = spec.check(item)
                if item is None:
                    return None
                items.append(item)
            if items:
                out[spec.name] = items
        elif kind_of is _TAGS:
            if type(value) is not list or len(value) > MAX_TAGS:
                return None
            for tag in value:
                if type(tag) is not str or not 1 <= len(tag) <= MAX_TAG or _BAD_TAG.search(tag) is not None:
                    return None
            if value:
                out[spec.name] = list(dict.fromkeys(value))
        else:  # custom fields
            custom = _fast_custom(value)
            if custom is None:
                return None
            if custom:
                out[spec.name] = custom
    return out


def _fast_custom(value: Any) -> dict[str, dict[str, Any]] | None:
    """Custom fields as the model dumps them (``{}``: none), or None when not sure."""
    if type(value) is not dict or len(value) > MAX_CUSTOM_FIELDS:
        return None
    out = {}
    for name, entry in value.items():
        if (
            type(name) is not str
            or not 1 <= len(name) <= MAX_CUSTOM_NAME
            or _BAD_LINE.search(name) is not None
            or name != name.strip()
            or name in _BUILTIN
            or type(entry) is not dict
            or not entry.keys() <= {"value", "secret"}
        ):
            return None
        text, secret = entry.get("value"), entry.get("secret", False)
        if type(text) is not str or len(text) > MAX_PLAINTEXT or _BAD_VALUE.search(text) is not None:
            return None
        if type(secret) is not bool:
            return None
        out[name] = {"value": text, "secret": secret}
    return out


#: ``json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)``, the
#: encoder built once (json.dumps builds one per call for non-default options)
_DOCUMENT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def encode(kind: str, fields: dict[str, Any], attachments: list[dict[str, Any]] | None = None) -> bytes:
    """Canonical plaintext document for a validated record (with the entries of its attachments,
    docs/format.md "Attachments", when it has any); enforces the 1 MiB limit."""
    document: dict[str, Any] = {"kind": kind, "fields": fields}
    if attachments:
        document["attachments"] = attachments
    data = _DOCUMENT_JSON(document).encode("utf-8")
    if len(data) > MAX_PLAINTEXT:
        raise InvalidInput(f"record too large: {len(data)} bytes (limit 1 MiB)")
    return data


#: at most this many attachments per record version (their entries live in its 1 MiB document)
MAX_ATTACHMENTS = 100
MAX_ATTACHMENT_NAME = 255


def attachment_name(name: object) -> str:
    """An attachment's name as given (a file name: one line, no folder separators), or
    InvalidInput. The name is stored only inside the encrypted record document."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("an attachment needs a name (--name)")
    if len(name) > MAX_ATTACHMENT_NAME:
        raise InvalidInput(f"attachment name longer than {MAX_ATTACHMENT_NAME} characters")
    if name in (".", "..") or any(ch in "/\\" or ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidInput("an attachment name is a file name: one line, without / or \\")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("an attachment name must be valid Unicode") from None
    return name
