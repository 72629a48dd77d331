"""Parsing of user-entered dates and durations (docs/spec.md §10: ISO 8601 or relative forms like ``+90d``).

Dates cross the facade's boundary as text (``"+90d"``) and the service parses them with its own
clock (:func:`as_when`, :func:`as_since`, :func:`as_duration`): the CLI, the HTTP API and the
service client then never need the vault's time. Library callers may pass ``datetime`` and
``timedelta`` values as well.

Naive inputs are read as UTC and said so in docs/cli.md; inputs with an offset are converted to UTC.
A bare date (``2027-03-31``) given where an *end* is asked for (an SLA end, an assignment's or a
training's ``--until``: :func:`as_when` with ``end_of_day_in``) means the end of that day,
23:59:59, in the vault's time zone (``init --time-zone``, default UTC): "through the 31st", as
an account manager means it. Elsewhere (``--since``) a bare date is 00:00:00 UTC of that day.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo

from vault.clock import UTC
from vault.errors import InvalidInput

_RELATIVE = re.compile(r"^([+-]?)(\d{1,6})([smhdw])$")
_PLAIN_DURATION = re.compile(r"^\d{1,6}[smhdw]$")
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` -> timedelta."""
    m = _RELATIVE.match(text.strip())
    if not m or m.group(1) == "-":
        raise InvalidInput(f"invalid duration {text!r}: use a number and s, m, h, d or w (e.g. 30d)")
    return timedelta(**{_UNITS[m.group(3)]: int(m.group(2))})


MAX_YEAR = 2999  # far beyond any SLA, far from datetime's year-9999 overflow in date arithmetic


def parse_when(text: str, now: datetime) -> datetime:
    """An absolute ISO 8601 date/time or a relative form (``+90d``, ``-30d``, ``now``) -> aware UTC."""
    when = _parse_when(text, now)
    if not 1970 <= when.year <= MAX_YEAR:
        raise InvalidInput(f"date {text!r} is out of range (1970 to {MAX_YEAR})")
    return when


def _parse_when(text: str, now: datetime) -> datetime:
    text = (text or "").strip()
    if text == "now":
        return now
    m = _RELATIVE.match(text)
    if m and m.group(1):
        delta = timedelta(**{_UNITS[m.group(3)]: int(m.group(2))})
        try:
            return now + delta if m.group(1) == "+" else now - delta
        except OverflowError:
            raise InvalidInput(f"date {text!r} is out of range") from None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise InvalidInput(
            f"invalid date {text!r}: use ISO 8601 (2027-03-31, 2027-03-31T17:00+02:00) or +90d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def parse_since(text: str, now: datetime) -> datetime:
    """A point in the past for audit filters: ``30d`` (plain: that long ago), ``-30d``, ``+1d``,
    ``now`` or ISO 8601 -> aware UTC."""
    text = (text or "").strip()
    if _PLAIN_DURATION.match(text):
        return now - parse_duration(text)
    return parse_when(text, now)


def require_future(when: datetime, now: datetime, what: str) -> datetime:
    """An SLA end (or similar) must be after ``now`` and within the supported range."""
    if when <= now:
        raise InvalidInput(f"{what} {when.isoformat()} is not in the future")
    if when.year > MAX_YEAR:
        raise InvalidInput(f"{what} is out of range (before {MAX_YEAR + 1})")
    return when


def end_of_day(text: str, zone: tzinfo) -> datetime | None:
    """``2027-03-31`` -> 2027-03-31T23:59:59 in ``zone``, as aware UTC; None for any other text."""
    text = (text or "").strip()
    if not _BARE_DATE.match(text):
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise InvalidInput(f"invalid date {text!r}: use ISO 8601 (2027-03-31) or +90d") from None
    if not 1970 <= day.year <= MAX_YEAR:
        raise InvalidInput(f"date {text!r} is out of range (1970 to {MAX_YEAR})")
    return day.replace(hour=23, minute=59, second=59, tzinfo=zone).astimezone(UTC)


def as_when(value: datetime | str, now: datetime, end_of_day_in: tzinfo | None = None) -> datetime:
    """A date given as a ``datetime`` or as text for :func:`parse_when`. With ``end_of_day_in``
    (an end date), a bare date means the end of that day in that time zone."""
    if isinstance(value, datetime):
        return value
    if end_of_day_in is not None:
        end = end_of_day(value, end_of_day_in)
        if end is not None:
            return end
    return parse_when(value, now)


def as_since(value: datetime | str, now: datetime) -> datetime:
    """A date given as a ``datetime`` or as text for :func:`parse_since`."""
    return value if isinstance(value, datetime) else parse_since(value, now)


def as_duration(value: timedelta | str) -> timedelta:
    """A duration given as a ``timedelta`` or as text for :func:`parse_duration`."""
    return value if isinstance(value, timedelta) else parse_duration(value)
