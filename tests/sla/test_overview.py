"""``sla.overview``, the console's clients table (issue 19): filters, sort and paging done in SQL
must give exactly what a per-client computation in Python gives (states and days left from
:meth:`ClientRow.state` and the SLA end, record counts, open shred requests), and the engineers
column must be "who can reach what"'s own paths (``access.client_access``: direct, or through a
team), including ended assignments, ended team assignments and members who left."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta

import pytest

from tests.factories import assign, person, sla_client
from tests.helpers import T0, clock_at, operator
from vault.errors import InvalidInput
from vault.sla.service import OVERVIEW_SORTS, STATES

DAY = 86400


@pytest.fixture
def world(vdir):
    clock = clock_at(T0)
    vault = vdir.open(clock)
    op = operator()
    maria = person(vault, "maria", "account_manager")
    mark = person(vault, "mark", "account_manager")
    eve, carl, dan, fay, wes = (person(vault, n, "engineer") for n in ("eve", "carl", "dan", "fay", "wes"))
    # SLA ends from 1 to 160 days ahead, grace 30 to 55 days (the vault's minimum is 30); the
    # clock then moves 50 days on: active, expired and shred_pending clients, with ties in days
    # left and grace. wes writes the records and stays assigned to every seventh client only.
    for i in range(30):
        name = f"c{i:02d}-{'north' if i % 3 else 'south'}"
        sla_client(
            vault, maria, name, days=1 + i * 5.5, grace_days=30 + (i % 6) * 5, records=i % 4, engineer=wes
        )
        if i % 7:
            vault.access.unassign(op, name, "wes")
        if i % 5 == 0:
            assign(vault, eve, name)
    vault.teams.add(op, "net-ops")
    vault.teams.add(op, "desk")
    vault.teams.member_add(op, "net-ops", "carl")
    vault.teams.member_add(op, "net-ops", "dan")
    vault.teams.member_add(op, "desk", "fay")
    for name in ("c20-north", "c21-south", "c22-north"):
        vault.teams.assign(op, name, "net-ops")
    vault.teams.assign(op, "c23-north", "desk", until=T0 + timedelta(days=2))  # ends while we look
    vault.teams.assign(op, "c24-south", "desk")
    assign(vault, dan, "c20-north")  # direct and through net-ops: the direct path counts
    assign(vault, carl, "c26-north")
    vault.access.unassign(op, "c26-north", "carl")  # ended: no longer reaches it
    vault.teams.member_add(op, "desk", "dan")
    vault.teams.member_rm(op, "desk", "dan")  # left desk: no path through it
    vault.sla.request_shred(maria.principal(), "c28-north", reason="asked")
    vault.sla.request_shred(maria.principal(), "c29-north", reason="asked")
    vault.sla.approve_shred(mark.principal(), "c29-north")
    clock.set(T0 + timedelta(days=50, hours=5))
    yield vault, maria
    vault.close()


def reference(vault) -> list[dict]:
    """Every client computed one by one in Python, the engineers from access.client_access."""
    now = vault.ctx.now()
    n = int(now.timestamp())
    out = []
    for row in vault.clients.list(operator()):
        client = vault.ctx.client(row["name"])
        end = int(client.sla_end.timestamp())
        view = vault.sla.show(operator(), client.name)
        access = vault.access.client_access(operator(), client.name)
        out.append(
            {
                "client": client.name,
                "state": client.state(now),
                "sla_end_epoch": end,
                "days_left": math.floor((end - n) / DAY) if end > n else -math.ceil((n - end) / DAY),
                "grace_days": client.grace_days,
                "records": int(client.name[1:3]) % 4,  # as the fixture wrote them
                "engineers": [
                    {"user": u["user"], "team": u["via"][5:] if u["via"].startswith("team ") else None}
                    for u in access["users"]
                    if u["via"]
                ],
                "requested": view["shred_request"] is not None,
            }
        )
    return out


def test_every_row_matches_the_per_client_computation(world):
    vault, maria = world
    got = vault.sla.overview(maria.principal())
    expected = {r["client"]: r for r in reference(vault)}
    assert got["total"] == len(expected) == 30 and got["offset"] == 0
    assert {r["state"] for r in got["rows"]} == {"active", "expired", "shred_pending"}
    for row in got["rows"]:
        want = expected[row["client"]]
        assert row["state"] == want["state"], row["client"]
        assert row["days_left"] == want["days_left"], row["client"]
        assert row["grace_days"] == want["grace_days"]
        assert row["records"] == want["records"], row["client"]
        assert row["engineers"] == want["engineers"], row["client"]
        assert (row["shred_request"] is not None) == want["requested"], row["client"]
    by = {r["client"]: r["engineers"] for r in got["rows"]}
    assert by["c20-north"] == [
        {"user": "carl", "team": "net-ops"},
        {"user": "dan", "team": None},  # direct wins over net-ops, as in who-can-reach-what
        {"user": "eve", "team": None},
    ]
    assert by["c21-south"] == [
        {"user": "carl", "team": "net-ops"},
        {"user": "dan", "team": "net-ops"},
        {"user": "wes", "team": None},
    ]
    assert by["c23-north"] == []  # desk's assignment ended on day 2
    assert by["c24-south"] == [{"user": "fay", "team": "desk"}]  # dan left desk
    assert by["c26-north"] == []  # carl's assignment ended
    assert by["c00-south"] == [{"user": "eve", "team": None}, {"user": "wes", "team": None}]
    assert by["c01-north"] == []  # wes's assignment ended
    assert [r["shred_request"]["approved_by"] for r in got["rows"] if r["client"] >= "c28"] == [None, "mark"]


def test_filters_sort_and_pages_match_python(world):
    vault, maria = world
    ref = reference(vault)
    cases = itertools.product(
        ("", "NORTH", "c1"),
        ("", *STATES[:3]),
        ("", "carl", "dan", "eve", "fay", "wes", "nobody"),
        (None, 30, 60),
    )
    for q, state, engineer, within in cases:
        want = [
            r
            for r in ref
            if q.lower() in r["client"].lower()
            and (not state or r["state"] == state)
            and (not engineer or engineer in [e["user"] for e in r["engineers"]])
            and (within is None or (r["state"] == "active" and r["days_left"] <= within))
        ]
        got = vault.sla.overview(
            maria.principal(), name_contains=q, state=state, engineer=engineer, within_days=within
        )
        assert got["total"] == len(want), (q, state, engineer, within)
        assert [r["client"] for r in got["rows"]] == sorted(r["client"] for r in want)
    for sort, descending in itertools.product(OVERVIEW_SORTS, (False, True)):
        key = {"sla_end": "sla_end_epoch", "days_left": "sla_end_epoch"}.get(sort, sort)
        want = sorted(ref, key=lambda r: (r[key], r["client"]), reverse=descending)
        pages = [
            vault.sla.overview(maria.principal(), sort=sort, descending=descending, offset=o, limit=7)
            for o in range(0, 35, 7)
        ]
        assert all(p["total"] == 30 for p in pages)
        assert [r["client"] for p in pages for r in p["rows"]] == [r["client"] for r in want], sort
        assert len(pages[-1]["rows"]) == 2 and pages[0]["offset"] == 0 and pages[2]["offset"] == 14


def test_bad_sort_state_or_page_is_one_clear_line(world):
    vault, maria = world
    for kwargs in ({"sort": "name; DROP TABLE clients"}, {"state": "gone"}, {"offset": -1}):
        with pytest.raises(InvalidInput) as err:
            vault.sla.overview(maria.principal(), **kwargs)
        assert "\n" not in err.value.message
    assert vault.sla.overview(maria.principal())["total"] == 30
