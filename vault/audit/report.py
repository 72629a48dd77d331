"""``cvault audit report``: what a security reviewer looks at (docs/spec.md §9; docs/audit.md section 8).

A pure function of the events in the window and the settings, so every section is testable with
hand-made events. The action names other components write are mapped in :data:`ACTIONS`, the one
table of this module.
"""

from __future__ import annotations

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


def build_report(
    events: Iterable[Event],
    settings: ReportSettings,
    *,
    since: datetime,
    until: datetime,
    certificates: dict[str, dict] | None = None,
    full: bool = False,
) -> dict:
    """One pass over ``events`` (in log order), memory bounded by the number of users, clients and
    refusal reasons and by :data:`SECTION_LIMIT` entries per list section (``full``: every entry).
    Each list section's total is in ``totals``; ``truncated`` names the sections that were cut."""
    limit = None if full else SECTION_LIMIT
    per_user: dict[str, Counter] = defaultdict(Counter)
    per_client: dict[str, Counter] = defaultdict(Counter)
    refusals: Counter = Counter()
    identity: dict[str, Counter] = {k: Counter() for k in IDENTITY_SECTIONS}
    identity_of: dict[tuple[str, str], tuple[str, ...]] = {}  # (action, outcome) -> its sections
    sections = {name: _Capped(limit) for name in LIST_SECTIONS}
    bursts: dict[str, _BurstTracker] = {}
    # admin-change decisions ("allow") whose result (ok/error, same action and actor) has not come yet
    pending_changes: dict[tuple[str, str], list[Event]] = defaultdict(list)
    changes: list[Event] = []  # the admin changes in log order: rare events, kept whole until the end
    count = 0
    tz = settings.tz

    for e in events:
        count += 1
        if e.action.startswith("secret."):
            kind = (
                "reads"
                if e.action in READ_ACTIONS
                else "writes"
                if e.action in ("secret.put", "secret.rm", "secret.import")
                else "other"
            )
            if e.outcome == "allow":
                per_user[e.actor][kind] += 1
                if e.client:
                    per_client[e.client][kind] += 1
                if settings.off_hours(e.at):
                    sections["off_hours_access"].add(e.brief(tz))
                if e.action in READ_ACTIONS:
                    tracker = bursts.get(e.actor)
                    if tracker is None:
                        tracker = bursts[e.actor] = _BurstTracker(e.actor, settings, sections["bursts"])
                    tracker.add(e)
            elif e.outcome == "deny":
                per_user[e.actor]["denied"] += 1
                if e.client:
                    per_client[e.client]["denied"] += 1
        if e.outcome == "deny":
            refusals[e.reason or "(no reason)"] += 1
            if e.reason and ASSIGNMENT_ENDED.search(e.reason):
                sections["after_assignment_ended"].add(e.brief())
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

    # an allow decision with no later result is listed itself (the result is listed instead, so
    # one change is not listed twice)
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
        "refusals_by_reason": [{"reason": r, "count": n} for r, n in refusals.most_common()],
        "identity": {k: [{"user": u, "count": n} for u, n in sorted(v.items())] for k, v in identity.items()},
        **{name: sec.items for name, sec in sections.items()},
        "totals": {name: sec.total for name, sec in sections.items()},
        "truncated": sorted(name for name, sec in sections.items() if len(sec.items) < sec.total),
    }


def _certificate_for(e: Event, certificates: dict[str, dict]) -> dict | None:
    for digest, cert in certificates.items():
        if e.reason and digest in e.reason:
            return cert
    return None
