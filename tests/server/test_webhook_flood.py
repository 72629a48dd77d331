"""Review S5: a stranger's requests to the PSA webhook (``POST /v1/sla/contract-events``, refused
before its HMAC is verified) must not write an audit event each, nor read a huge body.

Rebuilt from the review's description (its repro file was lost): a flood of bad-signature
requests from one loopback address (127.0.0.2, "another machine") against a real ``cvault serve``
over HTTPS, while the real integration sends from 127.0.0.1. The throttle's refill is set to one
token per 100 minutes (``--webhook-per-minute 0.01``), so nothing refills while a test runs: no
clock, no sleep. Audit rows are counted in the real SQLite file after the service stopped (its
stop writes the last summary events). The window and its summary are tested with an injected
clock in-process (``test_one_summary_event_per_source_per_window``)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import sqlite3
import time
from datetime import timedelta

import pytest

from tests.helpers import copy_vault
from tests.server.harness import assert_error_shape, start_service
from tests.server.test_http_edges import tls_socket
from vault.server.app import CONTRACT_EVENT_MAX_BODY, ServiceSettings, VaultPool
from vault.server.errors import RateLimited
from vault.server.jobs import BackgroundJobs
from vault.server.limits import MAX_BUCKETS, Dropped, RateLimiter
from vault.server.routes import Limits

PATH = "/v1/sla/contract-events"
BURST = 5
STRANGER = "127.0.0.2"


@pytest.fixture
def world(staff_template, tmp_path, request):
    """A service with the halopsa integration and the client globex; ``request.param``: its
    ``--workers`` (default 1)."""
    workers = getattr(request, "param", "1")
    vdir = copy_vault(staff_template.vdir, tmp_path)
    v = vdir.open()
    try:
        s = staff_template
        v.clients.add(s.amy.principal(v), "globex", sla_end=v.ctx.now() + timedelta(days=20))
        secret = v.integrations.add(s.alice.principal(v), "halopsa")["secret"]
    finally:
        v.close()
    service = start_service(
        vdir,
        tmp_path / "service",
        "--webhook-burst",
        str(BURST),
        "--webhook-per-minute",
        "0.01",
        "--workers",
        workers,
    )
    yield service, vdir, secret
    service.stop()


def _sign(secret: str, body: bytes, stamp: str) -> str:
    """docs/sla.md: hex HMAC-SHA256 under the secret's 32 bytes, over "<timestamp>.<body>"."""
    return "v1=" + hmac.new(bytes.fromhex(secret), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _headers(secret: str, body: bytes, integration: str = "halopsa", signature: str | None = None) -> dict:
    stamp = str(int(time.time()))
    return {
        "X-Cvault-Integration": integration,
        "X-Cvault-Timestamp": stamp,
        "X-Cvault-Signature": signature or _sign(secret, body, stamp),
    }


def _event(n: int, end: str = "2031-03-31") -> bytes:
    return json.dumps({"id": f"evt-{n}", "client": "globex", "contract_end": end}).encode()


def _bad(client, n: int, integration: str = "halopsa"):
    body = _event(n)
    return client.request("POST", PATH, raw=body, headers=_headers("", body, integration, "v1=" + "0" * 64))


def _good(service, secret, n: int, end: str):
    body = _event(n, end)
    return service.client().request("POST", PATH, raw=body, headers=_headers(secret, body))


def _denials(vdir) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        return db.execute(
            "SELECT actor, origin, reason FROM audit_events"
            " WHERE action = 'sla.contract_event' AND outcome = 'deny' ORDER BY seq"
        ).fetchall()
    finally:
        db.close()


def _summarised(summaries, what: str) -> int:
    """The dropped requests the summary events count: "throttled: K refused requests WHAT in W s"."""
    total = 0
    for _, _, reason in summaries:
        match = re.fullmatch(rf"throttled: (\d+) refused requests? {re.escape(what)} in \d+ s", reason)
        assert match, reason
        total += int(match[1])
    return total


@pytest.mark.parametrize("world", ["1", "2"], indirect=True, ids=["one-process", "workers-2"])
def test_a_flood_from_one_source_is_429_after_the_burst_and_writes_a_bounded_audit(world):
    """With ``--workers 2`` every request comes on a new connection (the kernel spreads them
    over both workers): the buckets and the counts are the supervisor's, so the bounds are the
    same as with one process, not twice them."""
    service, vdir, secret = world
    flood = 200
    stranger = service.client(source=STRANGER)
    statuses, retry_after = [], []
    for n in range(flood):
        status, body = _bad(stranger, n)
        stranger.close()
        statuses.append(status)
        if status == 429:
            assert assert_error_shape(body, "rate_limited")["exit_code"] == 8
            retry_after.append(int(stranger.headers["retry-after"]))
    assert statuses == [401] * BURST + [429] * (flood - BURST), statuses
    assert retry_after and min(retry_after) >= 1
    # meanwhile the real integration, from another source, still gets its events applied
    status, body = _good(service, secret, 1, "2031-03-31")
    assert status == 200 and body["change"] == "extend", body
    service.stop()  # its last round writes the summary events
    denied = [d for d in _denials(vdir) if d[1] == f"api:{STRANGER}"]
    one_by_one = [d for d in denied if d[2] == "bad signature"]
    summaries = [d for d in denied if d[2].startswith("throttled:")]
    assert len(one_by_one) == BURST, denied
    # one summary per round of the summary job (its first round comes 5 s after the start, so
    # a slow run may see two), together counting every dropped request
    assert 1 <= len(summaries) <= 2 and {a for a, _, _ in summaries} == {"integration:?"}, denied
    assert _summarised(summaries, f"from {STRANGER}") == flood - BURST, summaries
    assert len(denied) <= BURST + 2  # 200 requests, at most 7 rows


def test_many_sources_claiming_one_integration_are_summarised_and_it_still_works(world):
    """A spread flood: each source stays under its own burst, but refusals claiming "halopsa"
    past its bucket are answered (401, they were checked) without an audit event each; the real
    halopsa's signed events still apply, and its own refusals are still answered correctly."""
    service, vdir, secret = world
    sources = [f"127.0.0.{n}" for n in range(3, 13)]
    statuses = []
    for n, source in enumerate(sources):
        client = service.client(source=source)
        statuses += [_bad(client, 100 * n + k)[0] for k in range(BURST - 1)]
        client.close()
    assert statuses == [401] * len(statuses)  # no source past its own burst: all were checked
    status, body = _good(service, secret, 2, "2032-01-31")
    assert status == 200 and body["change"] == "extend", body
    status, body = _good(service, secret, 2, "2032-01-31")  # its replay: still answered 409
    assert status == 409 and body["error"]["code"] == "replayed", body
    service.stop()
    denied = _denials(vdir)
    one_by_one = [d for d in denied if not d[2].startswith("throttled:")]
    summaries = [d for d in denied if d[2].startswith("throttled:")]
    assert len(one_by_one) == BURST, denied  # the integration's bucket, whoever spent it
    claimed = len(statuses) + 1 - BURST  # the stranger's and the replay
    assert 1 <= len(summaries) <= 2, summaries
    assert {(a, o) for a, o, _ in summaries} == {("integration:halopsa", "api")}, summaries
    assert _summarised(summaries, "claiming integration halopsa") == claimed, summaries


def test_an_oversized_body_is_413_before_it_is_read_and_audits_nothing(world):
    service, vdir, secret = world
    # a body just over the webhook's limit, sent in full (it was read and checked before: 401)
    body = b'{"id": "evt-9", "pad": "' + b"x" * CONTRACT_EVENT_MAX_BODY + b'"}'
    status, answer = service.client().request("POST", PATH, raw=body, headers=_headers(secret, body))
    assert status == 413 and "64 KiB" in assert_error_shape(answer, "request_too_large")["message"]
    # a declared 1 GB: answered from the head alone, while the client has sent 5 bytes of it
    with tls_socket(service) as tls:
        tls.sendall(
            b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'X-Cvault-Integration: halopsa\r\nContent-Length: %d\r\n\r\n{"id"' % (1 << 30)
        )
        resp = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        resp.begin()
        status, answer = resp.status, json.loads(resp.read())
    assert status == 413 and assert_error_shape(answer, "request_too_large")["exit_code"] == 2
    service.stop()
    assert _denials(vdir) == []


def test_one_summary_event_per_source_per_window(vdir):
    """The window, with an injected clock: each round of ``webhook-summary`` writes one event per
    source that was throttled since the last round, counting its drops; a quiet round writes
    none; a bucket refills at its rate."""
    now = [0.0]

    def clock() -> float:
        return now[0]

    limits = Limits(
        RateLimiter(10, 1.0), RateLimiter(5, 1.0), RateLimiter(3, 1 / 60, clock=clock), Dropped(clock)
    )
    pool = VaultPool(vdir.home)
    pool.unseal("key_file", str(vdir.key_file))
    jobs = BackgroundJobs(pool, ServiceSettings(background=False), limits)
    try:
        for _ in range(3):  # three refusals checked and audited one by one
            limits.webhook_admit("192.0.2.7")
            assert limits.webhook_refused("192.0.2.7", "?") is True
        for _ in range(40):  # then 40 answered 429 unread
            with pytest.raises(RateLimited) as caught:
                limits.webhook_admit("192.0.2.7")
            assert caught.value.retry_after == pytest.approx(60)
        now[0] = 30.0
        limits.webhook_admit("198.51.100.1")  # another source is not affected
        assert jobs.run_once("webhook-summary")
        assert jobs.run_once("webhook-summary")  # a quiet round: nothing more
        now[0] = 45.0
        with pytest.raises(RateLimited):
            limits.webhook_admit("192.0.2.7")
        assert jobs.run_once("webhook-summary")
        now[0] = 105.0  # one token back (1 per minute)
        limits.webhook_admit("192.0.2.7")
    finally:
        pool.close()
    rows = [r for r in _denials(vdir) if r[2].startswith("throttled:")]
    assert rows == [
        ("integration:?", "api:192.0.2.7", "throttled: 40 refused requests from 192.0.2.7 in 30 s"),
        ("integration:?", "api:192.0.2.7", "throttled: 1 refused request from 192.0.2.7 in 1 s"),
    ]


def test_past_the_table_size_new_sources_are_counted_together_not_forgotten(vdir):
    dropped = Dropped(lambda: 0.0)
    for n in range(MAX_BUCKETS):
        dropped.add(f"source:10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    dropped.add("source:203.0.113.1", 7)
    dropped.add("source:203.0.113.2")
    drained = dict((key, count) for key, count, _ in dropped.drain())
    assert len(drained) == MAX_BUCKETS + 1 and drained["*"] == 8 and "source:203.0.113.1" not in drained
    assert dropped.drain() == []
    v = vdir.open()
    try:
        v.integrations.record_throttled("*", 8, 60.0)
    finally:
        v.close()
    assert _denials(vdir)[-1] == (
        "integration:?",
        "api",
        "throttled: 8 refused requests from other sources (too many to count apart) in 60 s",
    )
