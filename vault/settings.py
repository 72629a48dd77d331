"""Vault-wide settings chosen at ``init`` (docs/cli.md): the vault's name, the TOTP issuer and the
time zone of date-only inputs. Stored in the ``settings`` JSON of ``meta`` next to the policy
settings (vault.context.DEFAULT_SETTINGS); checked here before anything is created."""

from __future__ import annotations

from datetime import tzinfo

from vault.clock import UTC
from vault.errors import IntegrityFailure, InvalidInput

MAX_NAME = 64


def _name(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > MAX_NAME or not text.isprintable() or ":" in text:
        raise InvalidInput(
            f"invalid {what}: 1 to {MAX_NAME} printable characters, no ':' (authenticator apps "
            "split the account label at the colon)"
        )
    return text


def zone(name: str) -> tzinfo:
    """The ``tzinfo`` of an IANA time zone name (``UTC``, ``Europe/Amsterdam``)."""
    if name in ("UTC", "Z", "Etc/UTC"):
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {name!r}: use an IANA name such as Europe/Amsterdam") from None


def check_settings(
    *, vault_name: str | None = None, totp_issuer: str | None = None, time_zone: str | None = None
) -> dict:
    """The settings ``init`` stores, validated; only those given."""
    out: dict = {}
    if (name := _name(vault_name, "vault name")) is not None:
        out["vault_name"] = name
    if (issuer := _name(totp_issuer, "TOTP issuer")) is not None:
        out["totp_issuer"] = issuer
    if time_zone is not None:
        zone(time_zone)
        out["time_zone"] = time_zone
    return out


def loads_stored(text: str) -> object:
    """``json.loads`` of a stored value: any text that is not JSON cvault could have written raises
    ValueError, nesting deeper than the recursion limit included (json raises RecursionError
    there, which the top-level handler would report as the user's "input nested too deeply",
    exit 2; review7 R7-1). Every strict decoder of a stored JSON value goes through here."""
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def decode_stored(value: object) -> dict:
    """The one decoder of the stored ``meta.settings`` value (None: no row, no settings): JSON text
    of an object, else an integrity failure (one line, exit 6). A file writer may put anything
    there (a number, a blob, a list, text that is not JSON); the sealed reader (vault name, TOTP
    issuer, time zone before unsealing) reads it unauthenticated, the unsealed ones after its row
    MAC (vault.store.rowmac), and both through here."""
    if value is None:
        return {}
    if type(value) is not str:
        raise IntegrityFailure(_UNREADABLE)
    try:
        stored = loads_stored(value)
    except ValueError:
        raise IntegrityFailure(_UNREADABLE) from None
    if not isinstance(stored, dict):
        raise IntegrityFailure(_UNREADABLE)
    return stored


_UNREADABLE = (
    "integrity failure: the vault's settings are not a value cvault stored (vault.db was edited);"
    " run cvault doctor"
)
