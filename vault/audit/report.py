"""``cvault audit report``: what a security reviewer looks at (docs/spec.md §9; docs/audit.md section 8).

A pure function of the events in the window and the settings, so every section is testable with
hand-made events. The action names other components write are mapped in :data:`ACTIONS`, the one
table of this module.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from vault.errors import InvalidInput
from vault.policy import Action, AuditEvent

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
    }
)
ADMIN_CHANGE_PREFIXES = ("slot.",)

#: a refusal "after an assignment ended" (vault.policy writes "<user>'s assignment to <client> has ended")
ASSIGNMENT_ENDED = re.compile(r"assignment .*(ended|expired)", re.IGNORECASE)

DEFAULTS = {
    "audit_business_hours": "08:00-18:00",  # local time, [start, end)
    "audit_business_days": "mon-fri",
    "audit_timezone": "UTC",  # an IANA zone, e.g. "Europe/London"
    "audit_burst_reads": 20,  # more than this many secret reads ...
    "audit_burst_clients": 5,  # ... or reads of more than this many clients ...
    "audit_burst_minutes": 10,  # ... by one user within this many minutes
}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Event:
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


def build_report(
    events: Iterable[Event],
    settings: ReportSettings,
    *,
    since: datetime,
    until: datetime,
    certificates: dict[str, dict] | None = None,
) -> dict:
    events = list(events)
    per_user: dict[str, Counter] = defaultdict(Counter)
    per_client: dict[str, Counter] = defaultdict(Counter)
    refusals: Counter = Counter()
    identity: dict[str, Counter] = {
        k: Counter()
        for k in ("failed_logins", "failed_stepups", "lockouts", "totp_replays", "recovery_codes")
    }
    off_hours, after_assignment, admin_changes, shreds = [], [], [], []
    reads_by_user: dict[str, list[Event]] = defaultdict(list)

    for e in events:
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
                    off_hours.append(e)
                if e.action in READ_ACTIONS:
                    reads_by_user[e.actor].append(e)
            elif e.outcome == "deny":
                per_user[e.actor]["denied"] += 1
                if e.client:
                    per_client[e.client]["denied"] += 1
        if e.outcome == "deny":
            refusals[e.reason or "(no reason)"] += 1
            if e.reason and ASSIGNMENT_ENDED.search(e.reason):
                after_assignment.append(e)
        for section in identity:
            if matches(section, e):
                identity[section][e.actor] += 1
        if (
            (e.action in ADMIN_CHANGE_ACTIONS or e.action.startswith(ADMIN_CHANGE_PREFIXES))
            and e.outcome in ("ok", "deny", "error")
            or (e.action in ADMIN_CHANGE_ACTIONS and e.outcome == "allow" and not _has_result(events, e))
        ):
            admin_changes.append(e)
        if matches("shreds", e):
            shreds.append(e)

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

    tz = settings.tz
    return {
        "window": {"since": since.isoformat(), "until": until.isoformat(), "events": len(events)},
        "settings": settings.describe(),
        "access_per_user": rows(per_user, "user"),
        "access_per_client": rows(per_client, "client"),
        "refusals_by_reason": [{"reason": r, "count": n} for r, n in refusals.most_common()],
        "identity": {k: [{"user": u, "count": n} for u, n in sorted(v.items())] for k, v in identity.items()},
        "off_hours_access": [e.brief(tz) for e in off_hours],
        "bursts": _bursts(reads_by_user, settings),
        "after_assignment_ended": [e.brief() for e in after_assignment],
        "admin_changes": [e.brief() for e in admin_changes],
        "shreds": [{**e.brief(), "certificate": _certificate_for(e, certificates or {})} for e in shreds],
    }


def _has_result(events: list[Event], e: Event) -> bool:
    """Whether an allow decision has a later ok/error event of the same action and actor (the
    result is listed instead, so one change is not listed twice)."""
    for other in events:
        if (
            other.seq > e.seq
            and other.action == e.action
            and other.actor == e.actor
            and other.outcome in ("ok", "error")
        ):
            return True
    return False


def _certificate_for(e: Event, certificates: dict[str, dict]) -> dict | None:
    for digest, cert in certificates.items():
        if e.reason and digest in e.reason:
            return cert
    return None


def _bursts(reads_by_user: dict[str, list[Event]], s: ReportSettings) -> list[dict]:
    """Sliding window per user; each burst is reported once, from its first read to its last."""
    found = []
    for user, reads in sorted(reads_by_user.items()):
        window: deque[Event] = deque()
        current: dict | None = None
        for e in sorted(reads, key=lambda x: x.seq):
            window.append(e)
            while e.at - window[0].at > s.burst_window:
                window.popleft()
            clients = {w.client for w in window if w.client}
            hot = len(window) > s.burst_reads or len(clients) > s.burst_clients
            if hot:
                if current is None:
                    current = {
                        "user": user,
                        "start": window[0].at.isoformat(),
                        "first_seq": window[0].seq,
                        "reads": 0,
                        "clients": set(),
                        "kind": set(),
                    }
                    found.append(current)
                    seen = {w.seq for w in window}
                    current["reads"] = len(seen)
                    current["clients"].update(clients)
                else:
                    current["reads"] += 1
                    if e.client:
                        current["clients"].add(e.client)
                current["end"] = e.at.isoformat()
                current["last_seq"] = e.seq
                if len(window) > s.burst_reads:
                    current["kind"].add(f"more than {s.burst_reads} reads")
                if len(clients) > s.burst_clients:
                    current["kind"].add(f"more than {s.burst_clients} clients")
            else:
                current = None
    for b in found:
        b["clients"] = sorted(b["clients"])
        b["kind"] = " and ".join(sorted(b["kind"]))
    return found
