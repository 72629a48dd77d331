"""review8 R8-2 (medium; the reviewer's repro was lost, written again): fresh decoy rows still
starved a tampered row's webhook alarm after review7 R7-2.

``Limits.webhook_alarm`` writes at most MAX_SUMMARY_EVENTS = 20 distinct integrity alarms by name
a summary round. R7-2's fix made an alarm never written by name *wait* (for ALARM_WAIT_ROUNDS = 60
rounds) and kept alarms written in an earlier round out of the slots while one waited, but a
*fresh* decoy, never named before, still took a slot ahead of the waiting one. A file writer
plants many tampered integrations rows (any MAC, plain sqlite3); a stranger on the network names
20 fresh ones in requests right after every summary round, before the PSA's own delivery meets
the really tampered row: the decoys take every slot of every round, the real alarm is only ever
counted in "integrity failures of other rows", and after 60 rounds it stops waiting, never
written by name. Its FIFO (``_waiting``) also forgot its *oldest* entry when full, so 10,000
decoys met after the real alarm pushed it out.

Now the waiting alarms are a FIFO in arrival order and each summary round writes the 20 oldest by
name (``waited:MESSAGE``, an ``integrity.row_failure`` event) before any new alarm takes a slot;
a full FIFO drops the newest arrival. Driven through the service's Limits and summarise, and
through the real contract-events route of ``create_app`` (called in-process over ASGI: no HTTP
client library is installed) on a real SQLite file the file writer edits, each summary round
run by the real ``webhook-summary`` job, so the rounds are the test's, not a clock's. FAILED on
main (fd868d6): the real alarm was named in no round of 70 (all three replays)."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from tests.helpers import copy_vault, run_coroutine
from tests.server.test_webhook_flood import STRANGER as LOOPBACK_STRANGER
from tests.server.test_webhook_flood import _bad, world  # noqa: F401
from tests.server.test_webhook_integrity_alarm import _alarms, _tamper
from vault.server.app import ServiceSettings, create_app
from vault.server.jobs import BackgroundJobs
from vault.server.limits import MAX_BUCKETS, MAX_SUMMARY_EVENTS, Dropped, RateLimiter, summarise
from vault.server.pool import VaultPool
from vault.server.routes import Limits

_MESSAGE = (
    "integrity failure: a integrations row (id {}) failed authentication"
    " (edited outside cvault?); run cvault doctor"
)
REAL = _MESSAGE.format(1)  # the PSA's own integration, tampered
#: more rounds than R7-2's ALARM_WAIT_ROUNDS (60), after which a waiting alarm was forgotten
ROUNDS = 70


def _decoy(n: int) -> str:
    return _MESSAGE.format(1000 + n)  # a planted row of the file writer's, never met before


def _limits() -> Limits:
    return Limits(RateLimiter(5, 1.0), RateLimiter(5, 1.0), dropped=Dropped(lambda: 0.0))


def _round(limits: Limits, met: list[str]) -> tuple[set[str], dict[str, int]]:
    """The alarms ``met`` (in order), then a summary round: (the alarms written by name, live or
    by the round, and every count: live writes, repeats, waited, others)."""
    named = {alarm for alarm in met if limits.webhook_alarm(alarm)}
    counts = {alarm: 1 for alarm in named}
    for event in summarise(limits.webhook_drain()):
        kind, _, alarm = event.key.partition(":")
        if kind == "waited":
            named.add(alarm)
        counts[event.key] = counts.get(event.key, 0) + event.total
    return named, counts


def test_fresh_decoys_named_first_in_every_round_do_not_keep_the_row_out_of_the_log():
    """The attacker's best order: 20 fresh decoys right after each drain, then the PSA's
    delivery meets the real row (three times a round), for more than 60 rounds."""
    limits = _limits()
    named_in: list[int] = []
    met_total = counted = 0
    fresh = iter(range(10**6))
    for r in range(ROUNDS):
        met = [_decoy(next(fresh)) for _ in range(MAX_SUMMARY_EVENTS)] + [REAL] * 3
        named, counts = _round(limits, met)
        met_total += len(met)
        counted += sum(counts.values())
        if REAL in named:
            named_in.append(r)
    assert named_in, f"in {ROUNDS} rounds the tampered row's alarm was never written by name"
    # nothing was waiting when it first met the round's slots taken: the next round names it
    assert named_in[0] == 0, named_in
    # and every meeting of every alarm is counted somewhere (those still waiting: at stop)
    stop = sum(count for key, count, _ in limits.webhook_drain(final=True))
    assert counted + stop == met_total


def test_an_alarm_is_named_within_the_bound_whatever_fresh_decoys_come_after():
    """95 decoys queued ahead of the real alarm, then 40 fresh decoys right after every drain
    (the FIFO grows behind it): it is named at the 95 // 20 + 1 = 5th round, not later."""
    limits = _limits()
    fresh = iter(range(10**6))
    ahead = 95
    first = [_decoy(next(fresh)) for _ in range(MAX_SUMMARY_EVENTS + ahead)] + [REAL]
    named, _ = _round(limits, first)
    rounds = 1
    while REAL not in named:
        assert rounds <= ahead // MAX_SUMMARY_EVENTS + 1, f"not named after {rounds} rounds"
        named, _ = _round(limits, [_decoy(next(fresh)) for _ in range(2 * MAX_SUMMARY_EVENTS)] + [REAL])
        rounds += 1
    assert rounds == ahead // MAX_SUMMARY_EVENTS + 1


def test_a_full_fifo_drops_the_newest_arrival_never_the_oldest():
    """The real alarm waits first; then the attacker meets MAX_BUCKETS more fresh decoys in the
    same round: the last one finds the FIFO full and is counted in ``alarm:*``; the real alarm
    (the oldest) is written by name at the next round, and the rounds after write the others
    by name in arrival order, all but the newest, which never got in."""
    limits = _limits()
    met = [_decoy(n) for n in range(MAX_SUMMARY_EVENTS)] + [REAL]
    met += [_decoy(MAX_SUMMARY_EVENTS + n) for n in range(MAX_BUCKETS)]
    assert [limits.webhook_alarm(alarm) for alarm in met].count(True) == MAX_SUMMARY_EVENTS
    order: list[str] = []
    others = 0
    for _ in range(MAX_BUCKETS // MAX_SUMMARY_EVENTS + 1):
        drained = limits.webhook_drain()
        order += [key.partition(":")[2] for key, _, _ in drained if key.startswith("waited:")]
        others += sum(count for key, count, _ in drained if key == "alarm:*")
    assert order[0] == REAL, "the oldest waiting alarm was dropped from a full FIFO"
    assert order == met[MAX_SUMMARY_EVENTS:-1] and others == 1  # the newest: counted, not queued
    assert limits.webhook_drain() == []


def test_the_round_at_stop_counts_the_alarms_still_waiting():
    limits = _limits()
    extra = 7
    for n in range(3 * MAX_SUMMARY_EVENTS + extra):
        limits.webhook_alarm(_decoy(n))
    drained = dict((key, count) for key, count, _ in limits.webhook_drain(final=True))
    assert sum(key.startswith("waited:") for key in drained) == MAX_SUMMARY_EVENTS
    assert drained["alarm:*"] == MAX_SUMMARY_EVENTS + extra
    assert limits.webhook_drain() == []  # nothing left waiting


# --- through the service: the real route, the real job, a real SQLite file -------------------------

PATH = "/v1/sla/contract-events"
STRANGER = ("203.0.113.9", 40000)
PSA = ("198.51.100.7", 40000)


def _plant(vdir, count: int) -> list[str]:
    """The file writer plants ``count`` integrations rows (no key: any MAC); their names."""
    names = [f"decoy{n}" for n in range(count)]
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        db.executemany(
            "INSERT INTO integrations (name, secret_sealed, created_at, created_by, mac)"
            " VALUES (?, x'00', 0, 'mallory', x'00')",
            [(name,) for name in names],
        )
        db.commit()
    finally:
        db.close()
    return names


def _post(app, integration: str, n: int, client: tuple[str, int]):
    """One contract event with a well-formed head and a wrong signature, through the ASGI app."""
    body = json.dumps({"id": f"evt-{n}", "client": "globex", "contract_end": "2031-03-31"}).encode()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-cvault-integration", integration.encode()),
        (b"x-cvault-timestamp", str(int(time.time())).encode()),
        (b"x-cvault-signature", b"v1=" + b"0" * 64),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": client,
        "server": ("127.0.0.1", 443),
    }
    sent = [{"type": "http.request", "body": body, "more_body": False}]
    answers: list[dict] = []

    async def receive():
        return sent.pop(0) if sent else {"type": "http.disconnect"}

    async def send(message):
        answers.append(message)

    return app(scope, receive, send), answers


def _requests(app, names: list[tuple[str, tuple[str, int]]], n0: int) -> list[int]:
    calls = [_post(app, name, n0 + i, client) for i, (name, client) in enumerate(names)]

    async def main():
        for call, _ in calls:
            await call

    run_coroutine(main())
    return [next(m["status"] for m in answers if m["type"] == "http.response.start") for _, answers in calls]


def test_through_the_service_fresh_decoys_every_round_do_not_keep_the_row_out(staff_template, tmp_path):
    vdir = copy_vault(staff_template.vdir, tmp_path)
    v = vdir.open()
    try:
        v.integrations.add(staff_template.alice.principal(v), "halopsa")
    finally:
        v.close()
    rounds = ROUNDS
    decoys = iter(_plant(vdir, rounds * MAX_SUMMARY_EVENTS))
    _tamper(vdir, "UPDATE integrations SET created_by = 'mallory' WHERE name = 'halopsa'")
    (real_id,) = (
        sqlite3.connect(vdir.home / "vault.db")
        .execute("SELECT id FROM integrations WHERE name = 'halopsa'")
        .fetchone()
    )
    real = _MESSAGE.format(real_id)
    settings = ServiceSettings(background=False)
    clock = lambda: 0.0  # noqa: E731 - the rounds are the test's: no time passes
    limits = Limits(
        RateLimiter(5, 1.0), RateLimiter(5, 1.0), RateLimiter(5, 1 / 60, clock=clock), Dropped(clock)
    )
    pool = VaultPool(vdir.home)
    pool.unseal("key_file", str(vdir.key_file))
    app = create_app(pool, settings, limits=limits)
    jobs = BackgroundJobs(pool, settings, limits)
    statuses: set[int] = set()
    try:
        for r in range(rounds):
            # right after the drain: 20 fresh decoys from the stranger, then the PSA's delivery
            met = [(next(decoys), STRANGER) for _ in range(MAX_SUMMARY_EVENTS)] + [("halopsa", PSA)]
            statuses |= set(_requests(app, met, r * 100))
            assert jobs.run_once("webhook-summary")
    finally:
        pool.close()
    assert statuses <= {409, 429}, statuses  # integrity failures, some past the source's bucket
    alarms = _alarms(vdir)
    by_name = [a for a in alarms if real in a and "again" not in a]
    assert by_name, (
        f"{rounds} rounds of fresh decoys: the tampered halopsa row's alarm was never written by"
        f" name ({len(alarms)} alarms, {sum('other rows' in a for a in alarms)} 'other rows' counts)"
    )
    assert by_name[0] == (
        f"sla.contract_event: {real} (met 1 time in 1 s while a round's alarms were taken;"
        " written by the summary round)"
    ), by_name
    assert "mallory" not in " ".join(alarms)
    # at most 20 alarms by name a round (the first ones written by the job that starts it)
    by_any_name = [a for a in alarms if "again" not in a and "other rows" not in a]
    assert len(by_any_name) <= (rounds + 1) * MAX_SUMMARY_EVENTS


@pytest.mark.parametrize("world", ["1", "2"], indirect=True, ids=["one-process", "workers-2"])
def test_a_real_service_writes_a_waiting_alarm_by_name_in_its_summary_round(world):  # noqa: F811
    """A real ``cvault serve`` (also ``--workers 2``: the workers ask the supervisor's Limits,
    whose summary job writes the waiting alarms): a stranger meets 20 fresh decoy rows, then
    the tampered halopsa row; its alarm finds the round's slots taken and waits, and the round
    at stop writes it by name."""
    service, vdir, _secret = world
    decoys = _plant(vdir, MAX_SUMMARY_EVENTS)
    _tamper(vdir, "UPDATE integrations SET created_by = 'mallory' WHERE name = 'halopsa'")
    stranger = service.client(source=LOOPBACK_STRANGER)
    statuses = []
    for n, name in enumerate([*decoys, "halopsa"]):
        statuses.append(_bad(stranger, 300 + n, integration=name)[0])
        stranger.close()
    assert set(statuses) <= {409, 429}, statuses
    service.stop()
    alarms = _alarms(vdir)
    ids = dict(sqlite3.connect(vdir.home / "vault.db").execute("SELECT name, id FROM integrations"))
    by_name = [a for a in alarms if _MESSAGE.format(ids["halopsa"]) in a and "again" not in a]
    assert len(by_name) == 1, alarms
    for name in decoys:  # and every decoy's alarm once
        assert [a for a in alarms if _MESSAGE.format(ids[name]) in a and "again" not in a], name
    assert "mallory" not in " ".join(alarms)


def test_a_waiting_alarm_its_round_cannot_write_is_written_by_name_the_next(vdir, monkeypatch):
    """The audit log unwritable for a moment when the round writes a waiting alarm: it is put
    back (``waited:``, kept apart) and the next round writes it by name, once."""
    from vault.sla.contracts import IntegrationService

    limits = _limits()
    pool = VaultPool(vdir.home)
    pool.unseal("key_file", str(vdir.key_file))
    jobs = BackgroundJobs(pool, ServiceSettings(background=False), limits)
    written = IntegrationService.record_throttled

    def failing(self, key, *args, **kw):
        raise OSError("disk full")

    try:
        for alarm in [_decoy(n) for n in range(MAX_SUMMARY_EVENTS)] + [REAL, REAL]:
            limits.webhook_alarm(alarm)
        monkeypatch.setattr(IntegrationService, "record_throttled", failing)
        assert not jobs.run_once("webhook-summary")
        monkeypatch.setattr(IntegrationService, "record_throttled", written)
        assert jobs.run_once("webhook-summary")
        assert jobs.run_once("webhook-summary")
    finally:
        pool.close()
    assert [a for a in _alarms(vdir) if REAL in a] == [
        f"sla.contract_event: {REAL} (met 2 times in 1 s while a round's alarms were taken;"
        " written by the summary round)"
    ]
