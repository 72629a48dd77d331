"""review5 finding R5-1: a stranger who shares the PSA's source address starves the legitimate
integration: after ``--webhook-burst`` bad-signature requests from that address, every request
from it is answered 429 before its signature is checked, the real PSA's signed contract events
included, for as long as the stranger keeps sending one bad request per refill (10/min default:
one every 6 s). docs/security.md guarantee 43 says "A valid signed event is never throttled by
others' refusals".

Shared sources are the normal case, not an edge: the service runs with ``proxy_headers=False``, so
behind the reverse proxy that non-guarantee 22 recommends every webhook comes from the proxy's
address; a cloud PSA sends all its tenants' webhooks from the same egress addresses (another
tenant of the same PSA, or anyone on the same NAT, is "the same source"). Contract events end a
client's access (sla): delaying them keeps access open.

The fix: past the source's limit a request whose head could be a valid signed event is still read
(at most 64 KiB) and its signature checked (a read, no write); a valid one is processed, an
invalid one is 429 and counted for the summary. Both tests fail with the pre-body 429 put back
(the route calling ``Limits.webhook_admit`` for every request). Also with ``--workers 2``."""

from __future__ import annotations

import pytest

from tests.server.test_webhook_flood import BURST, _bad, _good, world  # noqa: F401 - the fixture


@pytest.mark.parametrize("world", ["1", "2"], indirect=True, ids=["one-process", "workers-2"])
def test_refusals_from_a_shared_source_do_not_throttle_the_real_integrations_signed_event(world):  # noqa: F811
    service, vdir, secret = world
    # the stranger, from the address the PSA's requests also come from (the proxy / the PSA cloud)
    shared = service.client()
    statuses = []
    for n in range(BURST + 3):
        statuses.append(_bad(shared, 1000 + n)[0])
        shared.close()
    assert statuses[:BURST] == [401] * BURST  # checked and refused
    # the real PSA's correctly signed event, from that same address
    assert statuses[BURST:] == [429] * 3  # past the limit: read, checked, refused unaudited
    status, body = _good(service, secret, 7, "2031-03-31")
    assert status == 200 and body["change"] == "extend", (status, body)
    assert _bad(shared, 2000)[0] == 429  # the stranger still is throttled


def test_the_psas_own_redeliveries_do_not_throttle_its_new_events(world):  # noqa: F811
    """No stranger at all: the PSA redelivers an event it had delivered (it retries on a timeout)
    a few times; each redelivery is correctly signed and refused 409 ``replayed``, and spends its
    source's bucket, so its next new event is answered 429 unread."""
    service, vdir, secret = world
    status, body = _good(service, secret, 1, "2031-03-31")
    assert status == 200, body
    for _ in range(BURST):
        status, body = _good(service, secret, 1, "2031-03-31")  # a redelivery
        assert status == 409 and body["error"]["code"] == "replayed", body
    status, body = _good(service, secret, 2, "2032-03-31")  # a new event
    assert status == 200 and body["change"] == "extend", (status, body)
