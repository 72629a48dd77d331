"""``cvault audit report``: what a security reviewer looks at (docs/spec.md §9; docs/audit.md section 8).

A pure function of the events in the window and the settings, so every section is testable with
hand-made events. The action names other components write are mapped in :data:`ACTIONS`, the one
table of this module.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo

from vault.errors import InvalidInput
from vault.policy import Action, AuditEvent
from vault.tuples import NamedTuple

#: report section -> (action name or prefix ending in ".", outcomes counted; None = any outcome)
ACTIONS: dict[str, tuple[str, frozenset[str] | None]] = {
    "failed_logins": (AuditEvent.AUTH_LOGIN.value, frozenset({"deny", "error"})),
    "failed_stepups": (AuditEvent.AUTH_STEPUP.value, frozenset({"deny", "error"})),
    "lockouts": (AuditEvent.AUTH_LOCKOUT.value, None),
    "totp_replays": (AuditEvent.AUTH_TOTP_REPLAY.value, None),
    "recovery_codes": (AuditEvent.AUTH_RECOVERY_CODE.value, frozenset({"ok", "allow"})),
    "secret_access": ("secret.", frozenset({"allow"})),
    "secret_reads": (Action.SECRET_GET.value, frozenset({"allow"})),
    "shreds": (AuditEvent.SLA_SHRED.value, None),  # "sla.shred" and any "sla.shred*" event
}
READ_ACTIONS = frozenset({Action.SECRET_GET.value, Action.SECRET_EXPORT.value})

#: actions that change who can do what (listed under "admin changes")
ADMIN_CHANGE_ACTIONS = frozenset(
    {
        "audit.recover",  # one admin restarts the audit signature (review R12: docs/security.md)
        "user.add",
        "user.enroll",
        "user.disable",
        "user.enable",
        "user.grant",
        "user.revoke",
        "user.unlock",
        "user.reset_totp",
        "user.train",
        "client.assign",
        "client.unassign",
        "client.assign_team",
        "client.unassign_team",
        # team changes: a membership gives need-to-know (docs/identity.md, "Teams")
        "team.add",
        "team.rm",
        "team.member_add",
        "team.member_rm",
    }
)
ADMIN_CHANGE_PREFIXES = ("slot.",)

#: a refusal "after an assignment ended" (vault.policy writes "<user>'s assignment to <client> has ended")
#: or, through a team, "<user> is no longer a member of team <team>" / "team <t>'s assignment ... ended"
ASSIGNMENT_ENDED = re.compile(r"assignment .*(ended|expired)|no longer a member of team", re.IGNORECASE)

DEFAULTS = {
    "audit_business_hours": "08:00-18:00",  # local time, [start, end)
    "audit_business_days": "mon-fri",
    "audit_timezone": "UTC",  # an IANA zone, e.g. "Europe/London"
    "audit_burst_reads": 20,  # more than this many secret reads ...
    "audit_burst_clients": 5,  # ... or reads of more than this many clients ...
    "audit_burst_minutes": 10,  # ... by one user within this many minutes
}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Event(NamedTuple):
    """One audit event as the report reads it (a tuple: a million of them are made per report)."""

    seq: int
    at: datetime
    actor: str
    action: str
    client: str | None
    outcome: str
    reason: str | None

    def brief(self, tz=None) -> dict:
        at = self.at.astimezone(tz) if tz is not None else self.at
        return {
            "seq": self.seq,
            "at": at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "client": self.client,
            "outcome": self.outcome,
            "reason": self.reason,
        }


def _sections_by_action(action: str, outcome: str) -> tuple[str, ...]:
    return tuple(
        s for s in IDENTITY_SECTIONS if matches(s, Event(0, datetime.min, "", action, None, outcome, None))
    )


IDENTITY_SECTIONS = ("failed_logins", "failed_stepups", "lockouts", "totp_replays", "recovery_codes")


def matches(section: str, e: Event) -> bool:
    name, outcomes = ACTIONS[section]
    hit = e.action.startswith(name) if name.endswith(".") or section == "shreds" else e.action == name
    return hit and (outcomes is None or e.outcome in outcomes)


@dataclass(frozen=True)
class ReportSettings:
    start: time
    end: time
    days: frozenset[int]
    tz: tzinfo
    burst_reads: int
    burst_clients: int
    burst_window: timedelta
    _minutes: dict[int, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: dict) -> ReportSettings:
        s = {**DEFAULTS, **{k: v for k, v in settings.items() if k in DEFAULTS}}
        try:
            a, b = str(s["audit_business_hours"]).split("-")
            start, end = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
        except ValueError:
            raise InvalidInput("setting audit_business_hours: use HH:MM-HH:MM (e.g. 08:00-18:00)") from None
        days = _parse_days(str(s["audit_business_days"]))
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            tz = ZoneInfo(str(s["audit_timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"setting audit_timezone: unknown time zone {s['audit_timezone']!r}") from None
        try:
            reads, clients, minutes = (
                int(s["audit_burst_reads"]),
                int(s["audit_burst_clients"]),
                int(s["audit_burst_minutes"]),
            )
        except (TypeError, ValueError):
            raise InvalidInput("settings audit_burst_*: whole numbers expected") from None
        if reads < 1 or clients < 1 or minutes < 1:
            raise InvalidInput("settings audit_burst_*: must be at least 1")
        return cls(start, end, days, tz, reads, clients, timedelta(minutes=minutes))

    def off_hours(self, when: datetime) -> bool:
        """Whether ``when`` is outside business hours; constant within a UTC minute (business
        hours are whole minutes and zone offsets too), so cached per minute."""
        minute = int(when.timestamp()) // 60
        cached = self._minutes.get(minute)
        if cached is None:
            if len(self._minutes) > 100_000:
                self._minutes.clear()
            cached = self._minutes[minute] = self._off_hours(when)
        return cached

    def _off_hours(self, when: datetime) -> bool:
        local = when.astimezone(self.tz)
        if local.weekday() not in self.days:
            return True
        t = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return not (self.start <= t < self.end)
        return self.end <= t < self.start  # hours spanning midnight, e.g. 22:00-06:00

    def describe(self) -> dict:
        return {
            "business_hours": f"{self.start:%H:%M}-{self.end:%H:%M}",
            "business_days": ",".join(_DAYS[d] for d in sorted(self.days)),
            "timezone": str(self.tz),
            "burst_reads": self.burst_reads,
            "burst_clients": self.burst_clients,
            "burst_minutes": int(self.burst_window.total_seconds() // 60),
        }


def _parse_days(text: str) -> frozenset[int]:
    days: set[int] = set()
    try:
        for part in text.lower().replace(" ", "").split(","):
            if "-" in part:
                a, b = part.split("-")
                i, j = _DAYS.index(a), _DAYS.index(b)
                days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
            elif part:
                days.add(_DAYS.index(part))
    except ValueError:
        raise InvalidInput("setting audit_business_days: use e.g. mon-fri or mon,tue,wed") from None
    return frozenset(days)


_SHRED_PREFIX = ACTIONS["shreds"][0]
#: entries listed per list section unless ``full``; the section's total is always given
SECTION_LIMIT = 100
LIST_SECTIONS = ("off_hours_access", "bursts", "after_assignment_ended", "admin_changes", "shreds")


class _Capped:
    """A list section that keeps its first ``limit`` entries (all with ``limit`` None) and counts
    the rest: the report's memory does not grow with the log (docs/audit.md section 8)."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.items: list = []
        self.total = 0

    def add(self, item) -> None:
        self.total += 1
        if self.limit is None or len(self.items) < self.limit:
            self.items.append(item)


class _BurstTracker:
    """One user's sliding window over secret reads, fed in log order; each burst is reported once,
    from its first read to its last. Memory: the reads inside one window, not the user's history."""

    def __init__(self, user: str, s: ReportSettings, out: _Capped):
        self.user, self.s, self.out = user, s, out
        self.window: deque[Event] = deque()
        self.clients: Counter = Counter()
        self.current: dict | None = None

    def add(self, e: Event) -> None:
        s, window, clients = self.s, self.window, self.clients
        window.append(e)
        if e.client:
            clients[e.client] += 1
        while e.at - window[0].at > s.burst_window:
            old = window.popleft()
            if old.client:
                clients[old.client] -= 1
                if not clients[old.client]:
                    del clients[old.client]
        many_reads, many_clients = len(window) > s.burst_reads, len(clients) > s.burst_clients
        if not (many_reads or many_clients):
            self.current = None
            return
        current = self.current
        if current is None:
            current = self.current = {
                "user": self.user,
                "start": window[0].at.isoformat(),
                "first_seq": window[0].seq,
                "reads": len(window),
                "clients": set(clients),
                "kind": set(),
            }
            self.out.add(current)
        else:
            current["reads"] += 1
            if e.client:
                current["clients"].add(e.client)
        current["end"] = e.at.isoformat()
        current["last_seq"] = e.seq
        if many_reads:
            current["kind"].add(f"more than {s.burst_reads} reads")
        if many_clients:
            current["kind"].add(f"more than {s.burst_clients} clients")


#: the secret actions a read, a write; every other ``secret.*`` action is "other"
WRITE_ACTIONS = frozenset({"secret.put", "secret.rm", "secret.import"})
#: the columns of a listed event, in :class:`Event` order
_ROW = "seq, at, actor, action, client, outcome, reason"
_SECRET = "action >= 'secret.' AND action < 'secret/'"  # noqa: S105 - SQL: every action starting "secret."


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _event(row) -> Event:
    seq, at, actor, action, client, outcome, reason = row
    return Event(seq, _when(at), actor, action, client, outcome, reason)


def window_bounds(since: datetime, until: datetime) -> tuple[str, str]:
    """The text bounds of the window in whole seconds: every event from ``since``'s second up to
    and including ``until``'s (``at`` is RFC 3339 UTC text, which sorts by time to the second;
    '~' sorts after 'Z' and '.')."""
    from vault.clock import rfc3339

    def second(when: datetime) -> str:
        return rfc3339(when.replace(microsecond=0)).rstrip("Z")

    return second(since), second(until) + "~"


def build_report(
    events: Iterable[Event],
    settings: ReportSettings,
    *,
    since: datetime,
    until: datetime,
    certificates: dict[str, dict] | None = None,
    full: bool = False,
) -> dict:
    """The report over hand-made ``events`` (tests, tools): they are loaded into an in-memory
    table of the log's columns and reported by :func:`report_from_db`, the one implementation."""
    import sqlite3

    from vault.clock import rfc3339

    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(
            "CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,"
            " action TEXT NOT NULL, client TEXT, outcome TEXT NOT NULL, reason TEXT)"
        )
        conn.execute(
            "CREATE INDEX audit_events_at_report ON audit_events(at, action, outcome, actor, client)"
        )
        conn.executemany(
            f"INSERT INTO audit_events ({_ROW}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant columns
            ((e.seq, rfc3339(e.at), e.actor, e.action, e.client, e.outcome, e.reason) for e in events),
        )
        return report_from_db(conn, settings, since=since, until=until, certificates=certificates, full=full)
    finally:
        conn.close()


def report_from_db(
    conn,
    settings: ReportSettings,
    *,
    since: datetime,
    until: datetime,
    certificates: dict[str, dict] | None = None,
    full: bool = False,
) -> dict:
    """The report over the window's events of ``conn``'s ``audit_events`` (one read snapshot).

    The counting sections are SQL aggregates over the window's range of the index
    ``audit_events_at_report`` (no Python object per event); Python sees only what it lists or
    decides on: the secret reads (bursts), the refusals' distinct reasons, the admin changes and
    shreds (rare), the first off-hours accesses, and one row per minute with secret access.
    Memory is bounded by the numbers of users, clients, reasons and minutes in the window and by
    :data:`SECTION_LIMIT` entries per list section (``full``: every entry). Each list section's
    total is in ``totals``; ``truncated`` names the sections that were cut."""
    limit = None if full else SECTION_LIMIT
    lo, hi = window_bounds(since, until)
    win = "at >= ? AND at <= ?"
    span = (lo, hi)
    tz = settings.tz
    sections = {name: _Capped(limit) for name in LIST_SECTIONS}

    def q(sql: str, *params):
        return conn.execute(sql, (*span, *params))

    count = q(f"SELECT count(*) FROM audit_events WHERE {win}").fetchone()[0]  # noqa: S608 - constant

    # access per user and client: one GROUP BY over the secret decisions
    per_user: dict[str, Counter] = defaultdict(Counter)
    per_client: dict[str, Counter] = defaultdict(Counter)
    for actor, client, action, outcome, n in q(
        f"SELECT actor, client, action, outcome, count(*) FROM audit_events WHERE {win} AND {_SECRET}"  # noqa: S608 - constant
        " AND outcome IN ('allow', 'deny') GROUP BY actor, client, action, outcome"
    ):
        if outcome == "deny":
            kind = "denied"
        else:
            kind = "reads" if action in READ_ACTIONS else "writes" if action in WRITE_ACTIONS else "other"
        per_user[actor][kind] += n
        if client:
            per_client[client][kind] += n

    # refusals by reason (most first, ties in the order they first happened)
    refusals = q(
        f"SELECT coalesce(reason, '(no reason)') AS r, count(*), min(seq) FROM audit_events"  # noqa: S608 - constant
        f" WHERE {win} AND outcome = 'deny' GROUP BY r ORDER BY count(*) DESC, min(seq)"
    ).fetchall()
    ended = [r for r, _n, _s in refusals if ASSIGNMENT_ENDED.search(r)]
    if ended:
        sections["after_assignment_ended"].total = sum(n for r, n, _s in refusals if r in set(ended))
        _list(
            sections["after_assignment_ended"],
            q(
                f"SELECT {_ROW} FROM audit_events WHERE {win} AND outcome = 'deny'"  # noqa: S608 - constant
                " AND reason IN (SELECT value FROM json_each(?)) ORDER BY seq" + _limit(limit),
                json.dumps(ended),
            ),
            lambda e: e.brief(),
        )

    # off-hours access: the minutes with secret access, each decided once by the settings
    off_minutes, off_total = set(), 0
    for minute, n in q(
        f"SELECT substr(at, 1, 16) AS m, count(*) FROM audit_events WHERE {win} AND {_SECRET}"  # noqa: S608 - constant
        " AND outcome = 'allow' GROUP BY m"
    ):
        if settings.off_hours(_when(minute + ":00+00:00")):
            off_minutes.add(minute)
            off_total += n
    off = sections["off_hours_access"]
    off.total = off_total
    if off_total:
        # in log order straight from the table ("+at": not through the time index, whose order
        # would need a sort of the whole window), so the scan stops at the first ``limit``
        for row in q(
            f"SELECT {_ROW} FROM audit_events WHERE +at >= ? AND +at <= ? AND {_SECRET}"  # noqa: S608 - constant
            " AND outcome = 'allow' ORDER BY seq"
        ):
            if row[1][:16] in off_minutes:
                off.items.append(_event(row).brief(tz))
                if limit is not None and len(off.items) >= limit:
                    break

    # bursts: each user's secret reads through a sliding window, in log order
    bursts: dict[str, _BurstTracker] = {}
    reads = f"{win} AND action IN ({', '.join(repr(a) for a in sorted(READ_ACTIONS))}) AND outcome = 'allow'"
    # only users who may have one are walked: a burst at a read needs at least k = min(reads,
    # clients) earlier reads in its window, so a read at least k back (in log order) no more
    # than the window's length earlier (plus a second: julianday is a float); SQL finds them
    k = min(settings.burst_reads, settings.burst_clients)
    seconds = settings.burst_window.total_seconds() + 1
    suspects = [
        actor
        for (actor,) in q(
            "SELECT DISTINCT actor FROM (SELECT actor, julianday(at) AS t, max(julianday(at)) OVER"  # noqa: S608 - constant and int()
            f" (PARTITION BY actor ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND {int(k)} PRECEDING)"
            f" AS back FROM audit_events WHERE {reads}) WHERE (t - back) * 86400.0 <= ?",
            seconds,
        )
    ]
    for seq, at, actor, client in (
        q(
            f"SELECT seq, at, actor, client FROM audit_events WHERE {reads}"  # noqa: S608 - constant
            " AND actor IN (SELECT value FROM json_each(?)) ORDER BY seq",
            json.dumps(suspects),
        )
        if suspects
        else ()
    ):
        tracker = bursts.get(actor)
        if tracker is None:
            tracker = bursts[actor] = _BurstTracker(actor, settings, sections["bursts"])
        tracker.add(Event(seq, _when(at), actor, "", client, "allow", None))

    # the rare events, in one scan: identity alarms, admin changes, shreds
    identity: dict[str, Counter] = {k: Counter() for k in IDENTITY_SECTIONS}
    identity_of: dict[tuple[str, str], tuple[str, ...]] = {}  # (action, outcome) -> its sections
    # (SQL conditions and their parameters: the identity sections' action and outcomes, the admin
    # changes' names and prefixes, the shreds' prefix)
    rare: list[str] = []
    params: list[str] = []
    for section_name in IDENTITY_SECTIONS:
        name, outcomes = ACTIONS[section_name]
        rare.append("action = ?" + ("" if outcomes is None else f" AND outcome IN ({_marks(outcomes)})"))
        params += [name, *sorted(outcomes or ())]
    rare.append(f"action IN ({_marks(ADMIN_CHANGE_ACTIONS)})")
    params += sorted(ADMIN_CHANGE_ACTIONS)
    for prefix in (*ADMIN_CHANGE_PREFIXES, _SHRED_PREFIX):
        rare.append("action >= ? AND action < ?")
        params += [prefix, prefix + "\uffff"]  # every action that starts with the prefix
    # an admin-change decision ("allow") is listed only when no result (ok/error, same action and
    # actor) follows it, so that one change is not listed twice
    pending_changes: dict[tuple[str, str], list[Event]] = defaultdict(list)
    changes: list[Event] = []  # the admin changes in log order: rare events, kept whole until the end
    for row in q(
        f"SELECT {_ROW} FROM audit_events WHERE {win} AND ("  # noqa: S608 - constant conditions
        + " OR ".join(f"({c})" for c in rare)
        + ") ORDER BY seq",
        *params,
    ):
        e = _event(row)
        key = (e.action, e.outcome)
        hits = identity_of.get(key)
        if hits is None:
            hits = identity_of[key] = _sections_by_action(*key)
        for section in hits:
            identity[section][e.actor] += 1
        if e.action in ADMIN_CHANGE_ACTIONS or e.action.startswith(ADMIN_CHANGE_PREFIXES):
            if e.outcome in ("ok", "deny", "error"):
                changes.append(e)
                if e.outcome in ("ok", "error"):  # the result of the earlier allow decisions
                    pending_changes.pop((e.action, e.actor), None)
            elif e.outcome == "allow" and e.action in ADMIN_CHANGE_ACTIONS:
                pending_changes[(e.action, e.actor)].append(e)
        if e.action.startswith(_SHRED_PREFIX) and matches("shreds", e):
            sections["shreds"].add({**e.brief(), "certificate": _certificate_for(e, certificates or {})})
    changes.extend(e for pending in pending_changes.values() for e in pending)
    for e in sorted(changes, key=lambda x: x.seq):
        sections["admin_changes"].add(e.brief())

    for b in sections["bursts"].items:
        b["clients"] = sorted(b["clients"])
        b["kind"] = " and ".join(sorted(b["kind"]))

    def rows(counter_map: dict[str, Counter], key: str) -> list[dict]:
        out = []
        for name, c in sorted(counter_map.items()):
            out.append(
                {
                    key: name,
                    "reads": c["reads"],
                    "writes": c["writes"],
                    "other": c["other"],
                    "denied": c["denied"],
                    "total": c["reads"] + c["writes"] + c["other"] + c["denied"],
                }
            )
        return out

    return {
        "window": {"since": since.isoformat(), "until": until.isoformat(), "events": count},
        "settings": settings.describe(),
        "access_per_user": rows(per_user, "user"),
        "access_per_client": rows(per_client, "client"),
        "refusals_by_reason": [{"reason": r, "count": n} for r, n, _s in refusals],
        "identity": {k: [{"user": u, "count": n} for u, n in sorted(v.items())] for k, v in identity.items()},
        **{name: sec.items for name, sec in sections.items()},
        "totals": {name: sec.total for name, sec in sections.items()},
        "truncated": sorted(name for name, sec in sections.items() if len(sec.items) < sec.total),
    }


def _marks(values) -> str:
    return ", ".join("?" for _ in values)


def _limit(limit: int | None) -> str:
    return "" if limit is None else f" LIMIT {int(limit)}"


def _list(section: _Capped, rows, brief) -> None:
    """Fill a list section whose total is counted already from rows in log order."""
    for row in rows:
        section.items.append(brief(_event(row)))
        if section.limit is not None and len(section.items) >= section.limit:
            break


def _certificate_for(e: Event, certificates: dict[str, dict]) -> dict | None:
    for digest, cert in certificates.items():
        if e.reason and digest in e.reason:
            return cert
    return None
