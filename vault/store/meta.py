"""The decoders of ``meta`` values that carry no row MAC (or are read before it is checked).

A file writer (docs/security.md, attacker A4) may put anything in ``meta.value``: text, JSON of
any shape, a number of any size, a REAL, a blob. Each value is decoded in one place, strictly,
by type (never ``bytes(value)``, ``int(value)`` or ``json.loads`` and hope): what is not a value
cvault wrote is an :class:`~vault.errors.IntegrityFailure` (one line, exit 6), never another
exception. The sealed audit mark has its own decoder (vault.audit.mark.decode_stored: its
failure is the integrity alarm), the settings theirs (vault.settings.decode_stored).
"""

from __future__ import annotations

from vault.clock import MAX_EPOCH as MAX_EPOCH  # re-exported: the bound the decoders keep
from vault.clock import is_stored_epoch
from vault.errors import IntegrityFailure
from vault.settings import loads_stored as loads


def unreadable(key: str) -> IntegrityFailure:
    return IntegrityFailure(
        f"integrity failure: meta row {key} is not a value cvault stored (vault.db was edited);"
        " run cvault doctor"
    )


def epoch(key: str, value: object) -> int:
    """An epoch-seconds value (``custody_migrated_at``): an INTEGER within :data:`MAX_EPOCH`."""
    if not is_stored_epoch(value):
        raise unreadable(key)
    return value


#: ``last_sweep``'s fields and their types (vault.sla.service.SLAService.record_sweep)
_SWEEP_FIELDS = {"run_at": int, "ok_at": int, "every_seconds": int, "run_ok": bool}


def last_sweep(value: object) -> dict:
    """``meta.last_sweep`` (None: no sweep recorded): JSON text of an object whose fields are
    those :data:`_SWEEP_FIELDS` names, each of its type (times within :data:`MAX_EPOCH`)."""
    if value is None:
        return {}
    if type(value) is not str:
        raise unreadable("last_sweep")
    try:
        info = loads(value)
    except ValueError:
        raise unreadable("last_sweep") from None
    if not isinstance(info, dict):
        raise unreadable("last_sweep")
    for name, item in info.items():
        kind = _SWEEP_FIELDS.get(name)
        if kind is None or type(item) is not kind:
            raise unreadable("last_sweep")
        if kind is int and not is_stored_epoch(item):
            raise unreadable("last_sweep")
    return info


def custody_format(value: object) -> int | None:
    """``custody_format`` (None: no row, a vault from before custody): a positive INTEGER."""
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= 255:
        raise unreadable("custody_format")
    return value
