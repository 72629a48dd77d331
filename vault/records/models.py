"""The pydantic model of each record kind (docs/spec.md §4): the reference of record validation.

Loaded only when :func:`vault.records.validate.validate` is not sure of a record through its fast
path (:func:`vault.records.validate.fast_validate`), and by the tests that check the two agree:
importing pydantic and building these models costs ~0.2 s of CPU, which a ``secret put`` or a
``secret import`` of plain records no longer pays (docs/performance.md, "importfast").
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vault.blob import MAX_PLAINTEXT
from vault.errors import InvalidInput
from vault.records import FIELDS, MAX_CUSTOM_FIELDS, MAX_CUSTOM_NAME, MAX_TAG, MAX_TAGS, otp
from vault.records.validate import _CONTROL, _EMAIL, _MULTILINE, _ip

Short = Annotated[str, Field(min_length=1, max_length=256)]
Text = Annotated[str, Field(max_length=MAX_PLAINTEXT)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_in_short_fields(cls, value: Any, info) -> Any:
        # multi-line values (notes, keys, text) may hold newlines and tabs; nothing else may hold
        # control characters
        if isinstance(value, str) and info.field_name not in _MULTILINE and _CONTROL.search(value):
            raise ValueError("control characters are not allowed")
        if isinstance(value, str) and info.field_name not in _MULTILINE and "\n" in value:
            raise ValueError("must be a single line")
        return value


class CustomValue(BaseModel):
    """One custom field: its value (may span lines) and whether it is a secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: Text
    secret: bool = False

    @field_validator("value")
    @classmethod
    def _no_control(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("control characters are not allowed")
        return value


Tag = Annotated[str, Field(min_length=1, max_length=MAX_TAG)]
Tags = Annotated[list[Tag], Field(default_factory=list, max_length=MAX_TAGS)]
Custom = Annotated[dict[str, CustomValue], Field(max_length=MAX_CUSTOM_FIELDS)]


class _Common(_Record):
    """Checks of the fields every kind has (tags, custom fields: vault.records._COMMON) and of the
    TOTP seed; each model declares the fields themselves, in the order of the table."""

    @field_validator("tags", check_fields=False)
    @classmethod
    def _tags(cls, values: list[str]) -> list[str]:
        for tag in values:
            if _CONTROL.search(tag) or "\n" in tag or "\t" in tag:
                raise ValueError("a tag is one line without control characters")
        # kept in the order given, once each (a tag is a label: --tag vpn twice is one tag)
        return list(dict.fromkeys(values))

    @field_validator("totp", check_fields=False)
    @classmethod
    def _totp(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                otp.parse(value)
            except InvalidInput as exc:
                raise ValueError(exc.message.removeprefix("invalid totp: ")) from None
        return value

    @field_validator("custom", check_fields=False)
    @classmethod
    def _custom_names(cls, value: dict | None) -> dict | None:
        if not value:
            return None
        builtin = {f.name for fs in FIELDS.values() for f in fs}
        for name in value:
            if not 1 <= len(name) <= MAX_CUSTOM_NAME or _CONTROL.search(name) or "\n" in name:
                raise ValueError(f"custom field names are 1-{MAX_CUSTOM_NAME} characters on one line")
            if name != name.strip():
                raise ValueError(f"custom field name {name!r} starts or ends with a space")
            if name in builtin:
                raise ValueError(f"custom field name {name!r} is a built-in field name")
        return value


class NetworkRecord(_Common):
    kind: Literal["network"] = "network"
    site: Short | None = None
    hostname: Short | None = None
    addresses: list[str] = Field(default_factory=list, max_length=256)
    vlan: int | None = Field(default=None, ge=1, le=4094)
    gateway: str | None = None
    dns_servers: list[str] = Field(default_factory=list, max_length=16)
    wifi_ssid: Annotated[str, Field(min_length=1, max_length=32)] | None = None  # 802.11: 32 octets
    wifi_key: Annotated[str, Field(min_length=8, max_length=64)] | None = None  # WPA2 PSK: 8-63 or 64 hex
    notes: Text | None = None
    tags: Tags
    custom: Custom | None = None

    @field_validator("addresses")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        out = []
        for v in values:
            try:
                out.append(str(ipaddress.ip_interface(v.strip())))
            except ValueError:
                raise ValueError("not an IP address or CIDR") from None  # never the value (R9-4)
        return out

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str | None) -> str | None:
        return None if value is None else _ip(value)

    @field_validator("dns_servers")
    @classmethod
    def _dns(cls, values: list[str]) -> list[str]:
        return [_ip(v) for v in values]


class AccountRecord(_Common):
    kind: Literal["account"] = "account"
    username: Short
    display_name: Short | None = None
    email: Short | None = None
    password: Text | None = None
    totp: Short | None = None
    mfa_notes: Text | None = None
    tags: Tags
    custom: Custom | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("not an email address")
        return value


class AccessRecord(_Common):
    kind: Literal["access"] = "access"
    system: Short | None = None
    url: Short | None = None
    host: Short | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    username: Short | None = None
    password: Text | None = None
    api_token: Text | None = None
    ssh_private_key: Text | None = None
    totp: Short | None = None
    notes: Text | None = None
    tags: Tags
    custom: Custom | None = None


class NoteRecord(_Common):
    kind: Literal["note"] = "note"
    text: Text
    tags: Tags
    custom: Custom | None = None


MODELS: dict[str, type[_Record]] = {
    "network": NetworkRecord,
    "account": AccountRecord,
    "access": AccessRecord,
    "note": NoteRecord,
}
