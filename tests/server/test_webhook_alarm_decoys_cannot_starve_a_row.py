"""review7 R7-2 (goes in tests/server/): the per-round cap on distinct webhook integrity alarms
(12858d3, review5 R5-4: ``Limits.webhook_alarm``, at most MAX_SUMMARY_EVENTS = 20 distinct alarms a
summary round, first come first served, the set cleared at every drain) lets a file writer keep
ONE tampered row's alarm out of the log by name forever: plant 20 decoy integrations rows (any
MAC), and from the network name each decoy in a request right after every summary round (a
request every few ms per decoy, unauthenticated). The 20 slots of every round go to the decoys;
the real tampered row (the PSA's integration, met by the PSA's own deliveries) is only ever
counted in "integrity failures of other rows: K times", never named, in any round.

Driven through the service's own Limits, summarise and IntegrationService._alarm's contract
(``alarmed(message)`` True = write the alarm now); the messages are the ones rowmac writes.
FAILED on main (d04042f): the real row was named in no round; fixed by Limits.webhook_alarm's waiting
alarms (an alarm never written comes before one written in an earlier round). Fresh decoys in
every round still starved it (review8 R8-2, its replays in
tests/server/test_webhook_alarm_fresh_decoys_cannot_starve_a_row.py): a waiting alarm is now
written by name by the summary round (``waited:MESSAGE``)."""

from __future__ import annotations

from vault.server.limits import RateLimiter, summarise
from vault.server.routes import Limits

_MESSAGE = (
    "integrity failure: a integrations row (id {}) failed authentication"
    " (edited outside cvault?); run cvault doctor"
)
REAL = _MESSAGE.format(1)  # the PSA's own integration, tampered


def _decoy(n: int) -> str:
    return _MESSAGE.format(100 + n)  # a planted row of the file writer's


def test_a_tampered_row_is_named_in_the_log_within_a_few_rounds_whatever_the_decoys():
    limits = Limits(RateLimiter(5, 1.0), RateLimiter(5, 1.0))
    named_rounds = 0
    for _round in range(10):
        written: list[str] = []
        # the attacker's requests right after the drain: one per decoy row
        for n in range(20):
            if limits.webhook_alarm(_decoy(n)):
                written.append(_decoy(n))
        # the PSA's delivery meets the real tampered integrations row
        for _ in range(3):
            if limits.webhook_alarm(REAL):
                written.append(REAL)
        summary = summarise(limits.webhook_drain())
        summary_keys = [event.key for event in summary]
        if REAL in written or {"alarm:" + REAL, "waited:" + REAL} & set(summary_keys):
            named_rounds += 1
    assert named_rounds > 0, (
        "in 10 summary rounds the tampered row's alarm was never written by name: only"
        f" counted as alarm:* ({summary_keys})"
    )
