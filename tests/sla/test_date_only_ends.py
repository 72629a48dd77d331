"""A bare date in an end means the end of that day in the vault's time zone (issue 17): an
account manager's ``--sla-end 2027-03-31`` keeps the 31st as a contract day."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.factories import person
from tests.helpers import clock_at, seed_operator
from vault.clock import UTC
from vault.dates import as_when, end_of_day
from vault.errors import InvalidInput
from vault.facade import Vault
from vault.settings import zone

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "tz", "end"),
    [
        ("2027-03-31", "UTC", datetime(2027, 3, 31, 23, 59, 59, tzinfo=UTC)),
        ("2027-03-31", "Europe/Amsterdam", datetime(2027, 3, 31, 21, 59, 59, tzinfo=UTC)),  # CEST
        ("2027-01-31", "Europe/Amsterdam", datetime(2027, 1, 31, 22, 59, 59, tzinfo=UTC)),  # CET
        ("2027-03-31", "America/New_York", datetime(2027, 4, 1, 3, 59, 59, tzinfo=UTC)),
    ],
)
def test_a_bare_end_date_is_the_end_of_that_day(text, tz, end):
    assert as_when(text, NOW, zone(tz)) == end


def test_times_and_relative_forms_are_unchanged():
    amsterdam = zone("Europe/Amsterdam")
    assert as_when("2027-03-31T00:00+02:00", NOW, amsterdam) == datetime(2027, 3, 30, 22, 0, tzinfo=UTC)
    assert as_when("+1d", NOW, amsterdam) == NOW + timedelta(days=1)
    assert as_when("2027-03-31", NOW) == datetime(2027, 3, 31, tzinfo=UTC)  # not an end: midnight
    assert end_of_day("+30d", amsterdam) is None
    with pytest.raises(InvalidInput):
        end_of_day("2027-02-30", amsterdam)
    with pytest.raises(InvalidInput):
        zone("Mars/Olympus_Mons")


@pytest.mark.parametrize("tz", ["UTC", "Europe/Amsterdam"])
def test_sla_end_keeps_the_last_day_active(tmp_path, tz):
    clock = clock_at(datetime(2027, 3, 1, tzinfo=UTC))
    vault, _ = Vault.init(tmp_path / "v", key_file=tmp_path / "k", clock=clock, settings={"time_zone": tz})
    op = seed_operator(vault)
    amy = person(vault, "amy", "account_manager")
    vault.clients.add(amy.principal(), "acme", sla_end="2027-03-31")
    last_day = datetime(2027, 3, 31, 21, 0, tzinfo=UTC)  # 23:00 in Amsterdam (CEST), 21:00 UTC
    clock.set(last_day)
    assert vault.sla.show(op.principal(), "acme")["state"] == "active"
    clock.set(as_when("2027-03-31", NOW, zone(tz)) + timedelta(seconds=1))
    assert vault.sla.show(op.principal(), "acme")["state"] != "active"
    # assignments and training end the same way
    vault.access.assign(amy.principal(), "acme", "operator", until="2027-04-30")
    row = vault.ctx.db.one("SELECT ends_at FROM assignments ORDER BY id DESC LIMIT 1")
    assert datetime.fromtimestamp(row[0], UTC) == as_when("2027-04-30", NOW, zone(tz))
    vault.close()
