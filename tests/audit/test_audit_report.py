"""``audit report``: every section from hand-made events, plus one run over a real vault."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.factories import audit_cast, client_with_secrets
from tests.helpers import clock_at
from vault.audit.report import ACTIONS, Event, ReportSettings, build_report, report_from_db
from vault.clock import UTC, rfc3339
from vault.errors import AccessDenied, InvalidInput

MON = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # a Monday; Europe/London is UTC+1 (BST)


class Log:
    def __init__(self):
        self.events: list[Event] = []

    def add(self, at, actor, action, outcome="allow", client=None, reason=None):
        self.events.append(Event(len(self.events) + 1, at, actor, action, client, outcome, reason))


def report(log: Log, **settings):
    s = ReportSettings.from_settings(settings)
    return build_report(
        log.events,
        s,
        since=MON - timedelta(days=30),
        until=MON + timedelta(days=30),
        certificates={"ab" * 32: {"digest": "ab" * 32, "client": "gone"}},
    )


def test_access_per_user_and_client_and_refusals():
    log = Log()
    log.add(MON, "eve", "secret.get", client="acme")
    log.add(MON, "eve", "secret.put", client="acme")
    log.add(MON, "eve", "secret.list", client="beta")
    log.add(MON, "bob", "secret.get", "deny", "acme", "bob is not assigned to acme")
    log.add(MON, "bob", "secret.get", "deny", "acme", "bob is not assigned to acme")
    log.add(MON, "bob", "client.add", "deny", None, "bob has no role allowed to client.add")
    r = report(log)
    users = {u["user"]: u for u in r["access_per_user"]}
    assert (users["eve"]["reads"], users["eve"]["writes"], users["eve"]["other"]) == (1, 1, 1)
    assert users["bob"]["denied"] == 2
    clients = {c["client"]: c for c in r["access_per_client"]}
    assert clients["acme"]["total"] == 4 and clients["beta"]["other"] == 1
    assert r["refusals_by_reason"][0] == {"reason": "bob is not assigned to acme", "count": 2}
    assert len(r["refusals_by_reason"]) == 2


def test_identity_sections_use_the_action_table():
    log = Log()
    for _ in range(3):
        log.add(MON, "bob", ACTIONS["failed_logins"][0], "deny", reason="wrong password (failure 1)")
    log.add(MON, "bob", "auth.login", "ok", reason="password + TOTP")
    log.add(MON, "bob", ACTIONS["lockouts"][0], "deny", reason="locked for 5 minutes")
    log.add(MON, "eve", ACTIONS["totp_replays"][0], "deny", reason="TOTP code already used")
    log.add(MON, "eve", ACTIONS["recovery_codes"][0], "ok", reason="recovery code used; 9 left")
    log.add(MON, "eve", ACTIONS["failed_stepups"][0], "deny", reason="wrong TOTP code")
    log.add(MON, "eve", "auth.stepup", "ok", reason="TOTP verified for reading secrets")
    r = report(log)["identity"]
    assert r["failed_stepups"] == [{"user": "eve", "count": 1}]
    assert r["failed_logins"] == [{"user": "bob", "count": 3}]
    assert r["lockouts"] == [{"user": "bob", "count": 1}]
    assert r["totp_replays"] == [{"user": "eve", "count": 1}]
    assert r["recovery_codes"] == [{"user": "eve", "count": 1}]


def test_off_hours_in_the_configured_time_zone():
    log = Log()
    log.add(MON.replace(hour=7, minute=30), "eve", "secret.get", client="acme")  # 08:30 London: in
    log.add(MON.replace(hour=17, minute=30), "eve", "secret.get", client="acme")  # 18:30 London: off
    log.add(MON.replace(hour=6, minute=59), "eve", "secret.get", client="acme")  # 07:59 London: off
    log.add(MON + timedelta(days=5), "eve", "secret.get", client="acme")  # Saturday: off
    log.add(MON.replace(hour=7, minute=30), "eve", "secret.get", "deny", "acme", "x")  # denials: not access
    r = report(log, audit_timezone="Europe/London", audit_business_hours="08:00-18:00")
    assert [e["seq"] for e in r["off_hours_access"]] == [2, 3, 4]
    assert r["off_hours_access"][0]["at"].endswith("+01:00")  # shown in local time
    utc = report(log)  # default: UTC, 08:00-18:00, mon-fri
    assert [e["seq"] for e in utc["off_hours_access"]] == [1, 3, 4]


def test_bursts_of_reads_and_of_clients():
    log = Log()
    for i in range(21):  # 21 reads in 10 minutes: more than 20
        log.add(MON + timedelta(seconds=25 * i), "eve", "secret.get", client="acme")
    for i in range(20):  # exactly 20 reads: not a burst
        log.add(MON + timedelta(hours=2, seconds=25 * i), "bob", "secret.get", client="acme")
    for i in range(6):  # 6 clients in 5 minutes: more than 5
        log.add(MON + timedelta(hours=4, minutes=i), "carl", "secret.get", client=f"c{i}")
    r = report(log)
    bursts = {b["user"]: b for b in r["bursts"]}
    assert set(bursts) == {"eve", "carl"}
    assert bursts["eve"]["reads"] == 21 and "reads" in bursts["eve"]["kind"]
    assert bursts["carl"]["clients"] == [f"c{i}" for i in range(6)] and "clients" in bursts["carl"]["kind"]
    tighter = report(log, audit_burst_reads=5, audit_burst_minutes=3)
    assert "bob" in {b["user"] for b in tighter["bursts"]}


def test_attempts_after_assignment_ended_admin_changes_and_shreds():
    log = Log()
    log.add(MON, "eve", "secret.get", "deny", "acme", "eve's assignment to acme has ended")
    log.add(MON, "eve", "secret.get", "deny", "acme", "eve is not assigned to acme")
    log.add(MON, "ada", "user.grant", "allow", reason="role admin")
    log.add(MON, "ada", "user.grant", "ok", reason="role engineer granted to eve")
    log.add(MON, "ada", "user.list", "allow")
    log.add(MON, "maria", "client.assign", "allow")
    log.add(MON, "operator", "slot.add", "ok", reason="slot 3 added")
    log.add(
        MON, "system:sweep", "sla.shred", "ok", "gone", f"client shredded; certificate sha256 {'ab' * 32}"
    )
    log.add(MON, "system:sweep", "sla.shred_failed", "error", "other", "remote delete pending")
    r = report(log)
    assert [e["seq"] for e in r["after_assignment_ended"]] == [1]
    assert [e["seq"] for e in r["admin_changes"]] == [4, 6, 7]  # the grant once; its result
    assert [e["seq"] for e in r["shreds"]] == [8, 9]
    assert r["shreds"][0]["certificate"]["digest"] == "ab" * 32 and r["shreds"][1]["certificate"] is None


def test_bad_settings_are_one_clear_error():
    for bad in (
        {"audit_timezone": "Mars/Olympus"},
        {"audit_business_hours": "9-5"},
        {"audit_business_days": "someday"},
        {"audit_burst_reads": 0},
    ):
        with pytest.raises(InvalidInput):
            ReportSettings.from_settings(bad)


def test_report_over_a_real_vault(vdir):
    clock = clock_at(MON)
    v = vdir.open(clock)
    c = audit_cast(v)
    client_with_secrets(v, c)
    clock.set(MON.replace(hour=22))
    v.secrets.get(c.engineer.principal(), "acme", "office/firewall")
    with pytest.raises(AccessDenied):
        v.secrets.get(c.reviewer.principal(), "acme", "office/firewall")
    r = v.audit.report(c.reviewer.principal())
    users = {u["user"]: u for u in r["access_per_user"]}
    assert users["eve"]["reads"] == 1 and users["eve"]["writes"] == 1
    assert users["rita"]["denied"] == 1
    assert [e["actor"] for e in r["off_hours_access"]] == ["eve"]
    v.close()


# --- streaming: one pass, bounded sections (issue 20 item 6) -----------------------------------


def test_list_sections_are_capped_with_their_totals_and_full_lists_all():
    log = Log()
    saturday = MON + timedelta(days=5)
    for i in range(250):  # 250 weekend reads by one user, 11 minutes apart (no burst)
        log.add(saturday + timedelta(minutes=i * 11), "eve", "secret.get", client="acme")
    r = report(log)
    assert len(r["off_hours_access"]) == 100
    assert r["totals"]["off_hours_access"] == 250
    assert r["truncated"] == ["off_hours_access"]
    assert [e["seq"] for e in r["off_hours_access"]] == list(range(1, 101))  # the first, in log order
    s = ReportSettings.from_settings({})
    everything = build_report(log.events, s, since=MON, until=MON + timedelta(days=30), full=True)
    assert len(everything["off_hours_access"]) == 250 and everything["truncated"] == []


def _log_db(path, n: int):
    """A vault database (every migration) holding ``n`` secret reads by 7 users of 5 clients,
    spread over the same two days whatever ``n`` (the minutes with access do not grow with it)."""
    from vault.store.db import Database

    db = Database(path, create=True)
    db.migrate()
    with db.write() as conn:
        conn.executemany(
            "INSERT INTO audit_events (seq, at, actor, action, client, outcome, reason, origin,"
            " prev_hash, entry_hash) VALUES (?, ?, ?, 'secret.get', ?, 'allow', '', 'cli', x'', x'')",
            (
                (i + 1, rfc3339(MON + timedelta(seconds=i * 172_800 / n)), f"u{i % 7}", f"c{i % 5}")
                for i in range(n)
            ),
        )
    return db


def test_the_report_holds_no_python_object_per_event(tmp_path):
    """A million-event log must not be held: the report over a real vault database is SQL
    aggregates, so its Python memory does not grow with the number of events."""
    import tracemalloc

    s = ReportSettings.from_settings({})

    def peak(n):
        db = _log_db(tmp_path / f"{n}.db", n)
        tracemalloc.start()
        with db.read() as conn:
            r = report_from_db(conn, s, since=MON, until=MON + timedelta(days=30))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        db.close()
        assert r["window"]["events"] == n and sum(u["reads"] for u in r["access_per_user"]) == n
        return top

    small, large = peak(2_000), peak(40_000)
    assert large < small * 3, (small, large)  # 20 x the events, not 20 x the memory


def test_the_report_counts_from_the_report_index(tmp_path):
    """The counting sections read the window's range of audit_events_at_report (migration 0020),
    which holds every column they group by: no table row is read per event."""
    db = _log_db(tmp_path / "plan.db", 10)
    plan = " ".join(
        str(row)
        for row in db.conn.execute(
            "EXPLAIN QUERY PLAN SELECT actor, client, action, outcome, count(*) FROM audit_events"
            " WHERE at >= ? AND at <= ? AND action >= 'secret.' AND action < 'secret/'"
            " AND outcome IN ('allow', 'deny') GROUP BY actor, client, action, outcome",
            ("2026", "2027"),
        )
    )
    db.close()
    assert "COVERING INDEX audit_events_at_report" in plan, plan


def test_the_window_is_whole_seconds():
    """docs/audit.md section 8: events from since's second up to and including until's."""
    log = Log()
    log.add(MON.replace(microsecond=100), "eve", "secret.get", client="acme")
    log.add(MON.replace(second=1, microsecond=999_999), "eve", "secret.get", client="acme")
    log.add(MON.replace(second=2), "eve", "secret.get", client="acme")
    s = ReportSettings.from_settings({})
    r = build_report(log.events, s, since=MON.replace(microsecond=500), until=MON.replace(second=1))
    assert r["window"]["events"] == 2


def test_admin_change_decisions_without_a_result_are_listed_once():
    log = Log()
    log.add(MON, "alice", "user.grant", "allow")
    log.add(MON, "alice", "user.grant", "ok", reason="granted engineer to bob")
    log.add(MON, "alice", "user.train", "allow")  # no result follows: listed itself
    log.add(MON, "alice", "client.assign", "deny", reason="nobody assigns themselves")
    r = report(log)
    assert [(e["action"], e["outcome"]) for e in r["admin_changes"]] == [
        ("user.grant", "ok"),
        ("user.train", "allow"),
        ("client.assign", "deny"),
    ]


def test_an_audit_recovery_is_listed_with_the_admin_changes():
    """Review R12: recovery is one admin's act (docs/security.md non-guarantee); a reviewer sees
    each one (refused or done) in `audit report`."""
    log = Log()
    log.add(MON, "ada", "audit.recover", "allow")
    log.add(MON, "ada", "audit.recover", "ok", reason="integrity alarm acknowledged (first bad entry 121): x")
    log.add(MON, "eve", "audit.recover", "deny")
    r = report(log)
    assert [(e["seq"], e["action"], e["outcome"]) for e in r["admin_changes"]] == [
        (2, "audit.recover", "ok"),
        (3, "audit.recover", "deny"),
    ], r["admin_changes"]
