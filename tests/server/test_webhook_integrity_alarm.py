"""review5 finding R5-4: when the webhook throttle said "not audited" (``refused(...)`` returned
False or raised RateLimited), ``IntegrationService._enabled`` skipped ``ctx.integrity_alarm`` for
an integrations row that FAILED ITS MAC. A file writer's tampering was then never alarmed if the
attacker first spent the bucket: the stranger's junk requests buy the file writer silence.

An integrity failure of a row is not a refusal to be summarised: it always reaches the log, once
per summary round per alarm (the table and row id it names), its repeats counted in the round's
summary (``Limits.webhook_alarm``; in the supervisor with ``--workers``). The same held, throttle
or not, for a verified event naming a client whose row failed its MAC (``plan``): it was never
alarmed at all. Against a real ``cvault serve`` over loopback HTTPS, the file writer's edit made
with plain sqlite3 on the running service's file; the audit rows read from the SQLite file after
the service stopped (its stop writes the last summary). Both tests fail with the alarm back behind
the throttle (``_enabled``) or not written (``plan``)."""

from __future__ import annotations

import re
import sqlite3

import pytest

from tests.server.test_webhook_flood import BURST, STRANGER, _bad, _denials, _good, world  # noqa: F401
from vault.store import rowmac


def _alarms(vdir) -> list[str]:
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        rows = db.execute(
            "SELECT reason FROM audit_events WHERE action = 'integrity.row_failure' ORDER BY seq"
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


def _tamper(vdir, sql: str) -> None:
    """The file writer: plain sqlite3 on the service's file, no key."""
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        db.execute(sql)
        db.commit()
    finally:
        db.close()


def _repeats(alarms: list[str], what: str) -> tuple[int, int]:
    """(alarms written one by one, repeats the summaries count) of the alarms naming ``what``."""
    once = [a for a in alarms if what in a and "again" not in a]
    again = [re.search(r"again (\d+) times?", a) for a in alarms if what in a and "again" in a]
    return len(once), sum(int(m[1]) for m in again if m)


@pytest.mark.parametrize("world", ["1", "2"], indirect=True, ids=["one-process", "workers-2"])
def test_a_tampered_integrations_row_is_alarmed_though_the_attacker_spent_the_bucket(world):  # noqa: F811
    service, vdir, secret = world
    stranger = service.client(source=STRANGER)
    # the stranger spends its source's bucket (and the unknown names') with junk first
    statuses = []
    for n in range(BURST):
        statuses.append(_bad(stranger, n, integration="nosuch")[0])
        stranger.close()
    assert statuses == [401] * BURST
    # the file writer edits halopsa's row; the stranger's requests now meet it, throttled
    _tamper(vdir, "UPDATE integrations SET created_by = 'mallory' WHERE name = 'halopsa'")
    flood = 12
    statuses = []
    for n in range(flood):
        statuses.append(_bad(stranger, 100 + n)[0])
        stranger.close()
    assert statuses == [429] * flood, statuses  # throttled: not audited one by one as refusals
    service.stop()
    alarms = _alarms(vdir)
    # alarmed: once a summary round (first at 5 s, then at stop), the repeats counted
    once, again = _repeats(alarms, "a integrations row")
    assert 1 <= once <= 2 and once + again == flood, alarms
    assert all(a.startswith("sla.contract_event: ") and "mallory" not in a for a in alarms), alarms
    assert secret not in " ".join(alarms + [d[2] for d in _denials(vdir)])


def test_a_verified_event_naming_a_tampered_client_row_is_alarmed_throttled_or_not(world):  # noqa: F811
    service, vdir, secret = world
    _tamper(vdir, "UPDATE clients SET grace_days = grace_days + 30 WHERE name = 'globex'")
    answers = []
    for n in range(BURST + 3):  # the PSA's own events: past its source's bucket, not audited each
        status, body = _good(service, secret, 50 + n, "2031-03-31")
        answers.append((status, body["error"]["code"], body["error"]["exit_code"]))
    assert answers == [(409, "integrity_failure", 6)] * (BURST + 3), answers
    service.stop()
    alarms = _alarms(vdir)
    once, again = _repeats(alarms, "a clients row")
    assert 1 <= once <= 2 and once + again == BURST + 3, alarms
    refused = [d for d in _denials(vdir) if "the client's row failed authentication" in d[2]]
    assert len(refused) == BURST, refused  # then the source's bucket is spent: summarised


def _reseal_under_another_id(vdir, secret: str) -> None:
    """halopsa's secret sealed under another integration's id, its row MAC recomputed: what a
    swapped seal looks like once the MAC verifies (a file writer cannot recompute the MAC
    without the key; the library's own seal is the seam, webhookfix2)."""
    v = vdir.open()
    try:
        with v.ctx.db.write() as conn:
            (row_id,) = conn.execute("SELECT id FROM integrations WHERE name = 'halopsa'").fetchone()
            sealed = v.integrations._seal(row_id + 1000, bytes.fromhex(secret))
            assert rowmac.update(conn, "integrations", "secret_sealed = ?", (sealed,), "id = ?", (row_id,))
    finally:
        v.close()


def test_a_sealed_secret_that_does_not_open_under_its_id_is_alarmed_and_refused(world):  # noqa: F811
    """webhookfix2: the integrations row verified, its sealed secret does not open under its id
    (``_unseal``'s IntegrityFailure): 409 ``integrity_failure`` exit 6 was answered, but neither
    alarmed nor audited as a refusal. Now alarmed like a row that failed its MAC (once a round,
    the repeats counted, before the throttle: the requests past the source's bucket, which
    cannot be verified without the secret, are 429) and each audited as a refused event."""
    service, vdir, secret = world
    _reseal_under_another_id(vdir, secret)
    statuses = []
    for n in range(BURST + 3):  # the PSA's own events, signed with the real secret
        status, body = _good(service, secret, 60 + n, "2031-03-31")
        statuses.append((status, body["error"]["code"]))
    assert statuses == [(409, "integrity_failure")] * BURST + [(429, "rate_limited")] * 3, statuses
    service.stop()
    alarms = _alarms(vdir)
    once, again = _repeats(alarms, "the secret of integration")
    assert 1 <= once <= 2 and once + again == BURST + 3, alarms  # main: no alarm at all
    refused = [
        d
        for d in _denials(vdir)
        if d[2] == "integrity failure: the integration's secret failed authentication"
    ]
    assert len(refused) == BURST and {d[0] for d in refused} == {"integration:halopsa"}, refused
    assert secret not in " ".join(alarms + [d[2] for d in _denials(vdir)])
