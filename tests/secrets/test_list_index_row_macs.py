"""review6 R6-8: `secret list`, `secret search` and `secret list --all` believed an older sealed
index when the file writer edited the records rows (their MACs now wrong) to match it: the fast
path compared the index with `store.live_records`, which reads the rows without their MACs, so an
index and a row that agree were both believed (guarantee 29 promised exit 6 for an edited row).
The index now seals each row's checked MAC (`records.mac`, format CVSI3) and the comparison takes
the row's stored MAC too: an edited row's MAC is not the one the index holds, so the listing goes
through the rebuild, which checks every row MAC (exit 6). No HMAC per record on the fast path."""

from __future__ import annotations

import pytest

from tests.helpers import add_client, file_sql, operator, run_cli
from tests.secrets.listings import LISTINGS, acme_index, listing, put_back
from vault.store.rowmac import RowTampered


def test_an_edited_row_that_matches_an_older_index_is_still_refused(vdir):
    """The review's reproduction: the row edited back to version 1 and its time, the index from
    then put back."""
    v = vdir.open()
    try:
        add_client(v, "acme")
        op = operator()
        v.secrets.put(op, "acme", "a/one", "note", {"text": "1"})
        assert [r["version"] for r in v.secrets.list(op, "acme")] == [1]  # builds the index
        old_index = acme_index(v)
        (old_updated,) = v.ctx.db.one("SELECT updated_at FROM records")
        v.secrets.put(op, "acme", "a/one", "note", {"text": "2"}, replace=True)
        assert [r["version"] for r in v.secrets.list(op, "acme")] == [2]
        with v.ctx.db.write() as conn:  # the file writer: the row edited back, the older index back
            conn.execute("UPDATE records SET current_version = 1, updated_at = ?", (old_updated,))
            put_back(conn, old_index)
        try:
            listed = v.secrets.list(op, "acme")
        except RowTampered:
            return  # fixed: the edited row is refused
        pytest.fail(f"secret list believed an older index matching an edited (unMACed) row: {listed}")
    finally:
        v.close()


@pytest.mark.parametrize("how", LISTINGS)
def test_a_deleted_record_edited_back_to_life_is_refused_by_every_listing(vdir, how):
    """The same edit brings back a deleted record: its row pointed back at the live version it had
    when the older index was built. Each of the three listings refuses it (exit 6 material)."""
    v = vdir.open()
    try:
        add_client(v, "acme")
        op = operator()
        v.secrets.put(op, "acme", "a/one", "access", {"host": "one.alpha.test", "password": "x"})
        v.secrets.put(op, "acme", "a/two", "access", {"host": "two.alpha.test", "password": "y"})
        assert len(v.secrets.list(op, "acme")) == 2  # builds the index
        old_index = acme_index(v)
        (rid, live_version, updated) = v.ctx.db.one(
            "SELECT id, current_version, updated_at FROM records ORDER BY id LIMIT 1"  # a/one's
        )
        v.secrets.rm(op, "acme", "a/one")
        assert len(v.secrets.list(op, "acme")) == 1
        with v.ctx.db.write() as conn:
            conn.execute(
                "UPDATE records SET current_version = ?, updated_at = ? WHERE id = ?",
                (live_version, updated, rid),
            )
            put_back(conn, old_index)
        with pytest.raises(RowTampered):
            listing(v, op, how)
    finally:
        v.close()


def test_the_cli_exits_6_with_one_line(vdir):
    """Through the real CLI, the edit made by plain sqlite3 on the closed vault's file."""
    v = vdir.open()
    try:
        add_client(v, "acme")
        op = operator()
        v.secrets.put(op, "acme", "a/one", "note", {"text": "1"})
        assert len(v.secrets.list(op, "acme")) == 1
        old_index = acme_index(v)
        (old_updated,) = v.ctx.db.one("SELECT updated_at FROM records")
        v.secrets.put(op, "acme", "a/one", "note", {"text": "2"}, replace=True)
        assert [r["version"] for r in v.secrets.list(op, "acme")] == [2]
    finally:
        v.close()
    file_sql(vdir, "UPDATE records SET current_version = 1, updated_at = ?", (old_updated,))
    file_sql(vdir, "DELETE FROM search_index")
    file_sql(vdir, f"INSERT INTO search_index VALUES ({','.join('?' * len(old_index))})", old_index)
    proc = run_cli("secret", "list", "acme", env=vdir.env())
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "integrity failure" in proc.stderr


@pytest.mark.parametrize("how", LISTINGS)
def test_an_empty_older_index_never_hides_records_edited_out_of_sight(vdir, how):
    """With no live record there is no row MAC to compare: an authentic older index listing none
    (built while every record was deleted) put back, and the current version rows edited to look
    like delete markers, hid the client's records from `search` and `list --all` (`list` checked
    every row then; now all three do, read-only)."""
    v = vdir.open()
    try:
        add_client(v, "acme")
        op = operator()
        v.secrets.put(op, "acme", "a/one", "access", {"host": "one.alpha.test", "password": "x"})
        v.secrets.rm(op, "acme", "a/one")
        assert v.secrets.search(op, "alpha") == []  # builds the (empty) index
        empty_index = acme_index(v)
        v.secrets.restore(op, "acme", "a/one", version=1)
        assert len(v.secrets.search(op, "alpha")) == 1
        with v.ctx.db.write() as conn:  # the current version made to look like a delete marker
            conn.execute(
                "UPDATE record_versions SET blob_name = NULL"
                " WHERE (record_id, version) IN (SELECT id, current_version FROM records)"
            )
            put_back(conn, empty_index)
        with pytest.raises(RowTampered):
            listing(v, op, how)
    finally:
        v.close()
