"""Time is a parameter (STYLE habit 7): every component asks a Clock, never ``datetime.now``.

Times are timezone-aware UTC ``datetime`` objects; they are stored as integer Unix seconds (or
RFC 3339 strings in the audit log) so that SQLite comparisons are exact.
"""

from __future__ import annotations

from datetime import UTC as UTC  # re-exported: vault code imports UTC from here
from datetime import datetime, timedelta
from typing import Protocol, TypeGuard


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A settable clock for tests and simulations."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        self._now = self._now + timedelta(seconds=seconds, **kwargs)
        return self._now


def to_epoch(when: datetime) -> int:
    return int(when.timestamp())


def from_epoch(seconds: int | float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


#: a time cvault wrote: epoch seconds of year 1970 .. 9999 (what :func:`from_epoch` takes)
MAX_EPOCH = 253_402_300_799


def is_stored_epoch(value: object) -> TypeGuard[int]:
    """Whether a stored value is an epoch second cvault could have written: an INTEGER (not a
    bool, a REAL or text) within :data:`MAX_EPOCH`."""
    return type(value) is int and 0 <= value <= MAX_EPOCH


def stored_epoch(value: object, what: str) -> datetime:
    """A time column no row MAC covers (``what``: the table and column, e.g. ``clients.created_at``):
    an INTEGER within :data:`MAX_EPOCH`, else an IntegrityFailure (exit 6, one line; review7 R7-4:
    a file writer's text or huge number was a TypeError/ValueError)."""
    if not is_stored_epoch(value):
        from vault.errors import IntegrityFailure

        raise IntegrityFailure(
            f"integrity failure: {what} of a row in vault.db is not a time cvault stored"
            " (vault.db was edited); run cvault doctor"
        )
    return datetime.fromtimestamp(value, UTC)


def rfc3339(when: datetime) -> str:
    """UTC RFC 3339 with a Z suffix and second precision (microseconds when present)."""
    # isoformat (C, several times faster than strftime: lists of 10,000 clients format 20,000
    # times) gives exactly these two forms for a naive datetime
    return when.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def rfc3339_seconds(when: datetime) -> str:
    """:func:`rfc3339` to the second: the one time format of text people read (audit reasons)."""
    return rfc3339(when.replace(microsecond=0))
