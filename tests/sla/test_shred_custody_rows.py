"""A shred's custody manifest is read from authenticated rows (independent review 2, S7).

Before coverage 4 a file writer who marked a client's `client_custody` rows `destroyed` before
its shred emptied the manifest: the custodian was never asked, the certificate was signed, and a
pre-shred copy of the vault folder still opened the client with the custody secret that lived on.
Now every version row is MAC-checked before its state is believed: the shred refuses (an
integrity failure), no certificate is issued, and the client's custody secret stays for a
correct shred."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from tests.factories import sla_client, sla_staff
from tests.helpers import T0, clock_at
from vault.errors import IntegrityFailure
from vault.principal import Principal

SYSTEM = Principal.system("sweep")


def test_custody_rows_marked_destroyed_never_get_a_certificate(vdir):
    clock = clock_at(T0)
    vault = vdir.open(clock)
    people = sla_staff(vault)
    sla_client(vault, people.manager, "acme", days=10, grace_days=5, records=2, engineer=people.engineer)
    acme_id = vault.ctx.client("acme").id
    vault.close()
    db = sqlite3.connect(vdir.home / "vault.db")  # the file writer, before the shred starts
    db.execute("UPDATE client_custody SET state = 'destroyed' WHERE client_id = ?", (acme_id,))
    db.commit()
    db.close()
    vault = vdir.open(clock)
    try:
        clock.set(T0 + timedelta(days=15))
        with pytest.raises(IntegrityFailure):
            for _ in range(3):
                vault.sla.sweep(SYSTEM)
    finally:
        vault.close()
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        assert db.execute("SELECT count(*) FROM shred_certificates").fetchone() == (0,)
    finally:
        db.close()
