"""review9 R9-1 (medium, file writer A4): 8be7c34 (the R6-8 follow-up) MAC-checks every row of a
client before believing its sealed search index only when the client has *no* live record. With
one live record left, the same attack still works: an authentic older index (built while only
a/one existed) put back, and a/two's current version row edited to look like a delete marker
(``record_versions.blob_name = NULL``, a column under the row MAC). ``store.live_records`` leaves
a/two out without checking any MAC, the older index lists exactly the remaining live record's
(path tag, version, updated, MAC), so it is believed: ``secret list``, ``secret search`` and
``secret list --all`` show one record, exit 0, and a/two is hidden without the integrity failure
(guarantee 29). FAILED on main fd868d6 (and with searchfast's digest of the live rows). Now the
sealed digest covers every record row of the client, deleted ones included, with whether each is
live (``vault.store.records.listing_summary``): the edited row no longer matches what the older
index says of it, and the rebuild finds the edited version row (exit 6). A fix that only
compared the number of rows would miss the swap below: which record looks deleted changes, the
numbers do not."""

from __future__ import annotations

import pytest

from tests.helpers import add_client, file_sql, operator, run_cli
from tests.secrets.listings import LISTINGS, acme_index, listing, put_back
from vault.store.rowmac import RowTampered

HIDE_TWO = (
    "UPDATE record_versions SET blob_name = NULL WHERE (record_id, version) IN"
    " (SELECT id, current_version FROM records WHERE id = (SELECT max(id) FROM records))"
)


def _two_records_and_the_older_index(v):
    add_client(v, "acme")
    op = operator()
    v.secrets.put(op, "acme", "a/one", "access", {"host": "one.alpha.test", "password": "x"})
    assert len(v.secrets.search(op, "alpha")) == 1  # builds the index listing a/one only
    older = acme_index(v)
    v.secrets.put(op, "acme", "a/two", "access", {"host": "two.alpha.test", "password": "y"})
    assert len(v.secrets.search(op, "alpha")) == 2
    return op, older


@pytest.mark.parametrize("how", LISTINGS)
def test_an_older_index_with_one_live_record_left_does_not_hide_the_other(vdir, how):
    v = vdir.open()
    try:
        op, older = _two_records_and_the_older_index(v)
        with v.ctx.db.write() as conn:  # the file writer: a/two made to look deleted, the index back
            assert conn.execute(HIDE_TWO).rowcount == 1
            put_back(conn, older)
        try:
            listed = listing(v, op, how)
        except RowTampered:
            return  # fixed: the edited version row is found
        pytest.fail(f"{how} believed an older index and hid a/two (edited to look deleted): {listed}")
    finally:
        v.close()


def test_the_cli_exits_6_with_one_line(vdir):
    v = vdir.open()
    try:
        _, older = _two_records_and_the_older_index(v)
    finally:
        v.close()
    file_sql(vdir, HIDE_TWO)
    file_sql(vdir, "DELETE FROM search_index")
    file_sql(vdir, f"INSERT INTO search_index VALUES ({','.join('?' * len(older))})", older)
    proc = run_cli("secret", "list", "acme", env=vdir.env())
    assert proc.returncode == 6, (proc.returncode, proc.stdout + proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "integrity failure" in proc.stderr


def test_an_older_index_from_when_another_record_was_deleted_is_not_believed(vdir):
    """The swap: the older index was built while a/three was deleted (a/one, a/two live); a/three
    was written again since. The file writer makes a/three look deleted again (its new current
    version edited to a marker) and puts the older index back: the same number of rows, of live
    rows and of deleted rows as the older index had."""
    v = vdir.open()
    try:
        add_client(v, "acme")
        op = operator()
        for name in ("one", "two", "three"):
            v.secrets.put(op, "acme", f"a/{name}", "access", {"host": f"{name}.alpha.test", "password": "x"})
        v.secrets.rm(op, "acme", "a/three")
        assert len(v.secrets.search(op, "alpha")) == 2
        older = acme_index(v)
        v.secrets.put(op, "acme", "a/three", "access", {"host": "three.alpha.test", "password": "z"})
        assert len(v.secrets.search(op, "alpha")) == 3
        with v.ctx.db.write() as conn:
            assert conn.execute(HIDE_TWO).rowcount == 1  # the newest record: a/three
            put_back(conn, older)
        for how in ("list", "search", "list --all"):
            with pytest.raises(RowTampered):
                listing(v, op, how)
    finally:
        v.close()
