"""review5 finding R5-3: the webhook throttle's summary wrote one audit event per source key per
round, so an attacker with an IPv6 /48 (65,536 /64s, each its own source key) or many IPv4
addresses who rotates sources still grew the log by O(sources) a round: the flood the throttle
was meant to stop, one step removed.

The fix: a round names at most ``MAX_SUMMARY_EVENTS`` (20) sources or claimed integrations, those
with the most refusals; all the others go into one ``*`` event with their total ("from N other
sources"), so a round writes at most 21 summary events whatever the number of sources, and every
dropped request is still counted. The throttle's seam as ``test_webhook_flood`` uses it (the
service's ``Limits`` and its ``webhook-summary`` job, an injected clock, the real SQLite file).
Both tests fail with the one-event-per-key summary put back."""

from __future__ import annotations

import re

import pytest

from tests.server.test_webhook_flood import _denials
from vault.server.app import ServiceSettings, VaultPool
from vault.server.errors import RateLimited
from vault.server.jobs import BackgroundJobs
from vault.server.limits import MAX_BUCKETS, MAX_SUMMARY_EVENTS, Dropped, RateLimiter, source_key
from vault.server.routes import Limits

SUMMARY = re.compile(r"throttled: (\d+) refused requests? (.+) in \d+ s")


def _throttle(vdir):
    """The service's webhook throttle with a frozen clock (nothing refills) and one checked
    refusal per source and per claimed integration, and its summary job over a real pool."""
    limits = Limits(
        RateLimiter(10, 1.0),
        RateLimiter(5, 1.0),
        RateLimiter(1, 1 / 6000, clock=lambda: 0.0),
        Dropped(lambda: 0.0),
    )
    pool = VaultPool(vdir.home)
    pool.unseal("key_file", str(vdir.key_file))
    return limits, pool, BackgroundJobs(pool, ServiceSettings(background=False), limits)


def _summaries(vdir) -> list[tuple[str, str, int, str]]:
    """(actor, origin, count, what) of each summary event, in order."""
    out = []
    for actor, origin, reason in _denials(vdir):
        match = SUMMARY.fullmatch(reason)
        if match:
            out.append((actor, origin, int(match[1]), match[2]))
    return out


def test_sources_rotated_through_an_ipv6_48_write_a_bounded_summary_per_round(vdir):
    limits, pool, jobs = _throttle(vdir)
    # 1,500 /64s of one /48: each source one checked refusal, then one answered 429 unread; three
    # of them keep going (50 more each)
    sources = [source_key(f"2001:db8:77:{n:x}::1") for n in range(1500)]
    assert len(set(sources)) == len(sources)
    dropped = 0
    try:
        for round_ in range(2):
            for n, source in enumerate(sources):
                if round_ == 0:
                    limits.webhook_refused(source, "?")  # checked (the first per source)
                for _ in range(51 if n < 3 else 1):
                    with pytest.raises(RateLimited):
                        limits.webhook_admit(source)
                    dropped += 1
            assert jobs.run_once("webhook-summary")
    finally:
        pool.close()
    dropped += len(sources) - 1  # the checked refusals past the one of "integration:?"
    events = _summaries(vdir)
    # two rounds: at most 21 events each, not 1,501 (the sources and the claimed "?")
    assert len(events) <= 2 * (MAX_SUMMARY_EVENTS + 1), len(events)
    assert sum(count for _, _, count, _ in events) == dropped  # nothing uncounted
    first = events[: MAX_SUMMARY_EVENTS + 1]
    assert len(first) == MAX_SUMMARY_EVENTS + 1 and len(events) == 2 * len(first)
    named = {origin for _, origin, _, _ in first[:MAX_SUMMARY_EVENTS]}
    # the heaviest are named: the three that kept going, and the claimed unknown integration
    assert {f"api:{s}" for s in sources[:3]} <= named
    assert ("integration:?", "api", len(sources) - 1, "claiming an unknown integration") in first
    assert first[-1][:2] == ("integration:?", "api")
    others = len(sources) + 1 - MAX_SUMMARY_EVENTS
    assert first[-1][3] == f"from {others} other sources", first[-1]


def test_past_the_table_size_the_rest_event_says_more_than(vdir):
    """The dropped table stays bounded in memory (MAX_BUCKETS keys, then ``*``); the round's
    events are bounded too, and the rest event says its count of sources is a lower bound."""
    limits, pool, jobs = _throttle(vdir)
    try:
        for n in range(MAX_BUCKETS + 500):
            limits.dropped.add(f"source:10.{n // 65536}.{n // 256 % 256}.{n % 256}")
        assert len(limits.dropped._counts) == MAX_BUCKETS + 1
        assert jobs.run_once("webhook-summary")
    finally:
        pool.close()
    events = _summaries(vdir)
    assert len(events) == MAX_SUMMARY_EVENTS + 1
    assert sum(count for _, _, count, _ in events) == MAX_BUCKETS + 500
    assert events[-1][3] == f"from more than {MAX_BUCKETS - MAX_SUMMARY_EVENTS} other sources"


def test_a_round_that_cannot_write_puts_every_count_back(vdir, monkeypatch):
    """A summary event that cannot be written (the audit log unwritable for a moment): it and the
    round's later ones, the ``*`` event's members included, are counted again next round."""
    limits, pool, jobs = _throttle(vdir)
    from vault.sla.contracts import IntegrationService

    written = IntegrationService.record_throttled
    calls = []

    def failing(self, key, *args, **kw):
        calls.append(key)
        if len(calls) == 2:
            raise OSError("disk full")
        return written(self, key, *args, **kw)

    try:
        for n in range(50):  # 25 of them twice: those are named, the integrations are not
            limits.dropped.add(f"source:192.0.2.{n}", 1 + (n < 25))
        for n in range(3):
            limits.dropped.add(f"integration:psa{n}")
        monkeypatch.setattr(IntegrationService, "record_throttled", failing)
        assert not jobs.run_once("webhook-summary")
        monkeypatch.setattr(IntegrationService, "record_throttled", written)
        assert jobs.run_once("webhook-summary")
    finally:
        pool.close()
    events = _summaries(vdir)
    assert sum(count for _, _, count, _ in events) == 50 + 25 + 3  # the first event and the rest
    assert len(events) == 1 + MAX_SUMMARY_EVENTS + 1
    assert events[-1][3] == "from 29 other sources or claiming 3 other integrations", events[-1]
