"""review10 R10-3 (medium, file writer A4): variants of review9 R9-1 that took a record out of the
set the listings' freshness digest covers without any row MAC being checked: with an authentic
older index put back (built while only a/one existed), ``secret list``/``search``/``list --all``
believed it and a/two was hidden, exit 0.

* ``version_row_deleted``: a/two's current ``record_versions`` row deleted;
* ``current_version_moved``: ``records.current_version`` (under the records row MAC) pointed at a
  version that has no row.

Both were left out by the inner join of ``store.listing_summary``; it is a LEFT JOIN now, and
such a row is in the digest with the state ``M``, which no rebuild seals (the rebuild refuses
it): the listing rebuilds and refuses the row (exit 6). FAILED on main 573033a.

The third variant of the review, ``records.client_id`` set to another client's id, takes the row
out of acme's rows altogether: for acme's listings that is a deleted record row, non-guarantee 14
(deleting rows: no MAC sees a row that is not there). The moved row is refused where it now is: the other
client's listings and ``cvault doctor`` (``test_a_record_moved_to_another_client_is_refused_there``)."""

from __future__ import annotations

import pytest

from tests.helpers import add_client, file_sql, operator, run_cli
from tests.secrets.listings import LISTINGS, acme_index, listing, put_back
from vault.errors import IntegrityFailure

TWO = "(SELECT max(id) FROM records)"
EDITS = {
    "version_row_deleted": (
        "DELETE FROM record_versions WHERE (record_id, version) IN"
        f" (SELECT id, current_version FROM records WHERE id = {TWO})"
    ),
    "current_version_moved": f"UPDATE records SET current_version = current_version + 100 WHERE id = {TWO}",
}
MOVED = "UPDATE records SET client_id = (SELECT id FROM clients WHERE name = 'globex') WHERE id = " + TWO


def _two_records_and_the_older_index(v):
    add_client(v, "acme")
    add_client(v, "globex")
    op = operator()
    v.secrets.put(op, "acme", "a/one", "access", {"host": "one.alpha.test", "password": "x"})
    assert len(v.secrets.search(op, "alpha")) == 1  # builds acme's index listing a/one only
    older = acme_index(v)
    v.secrets.put(op, "acme", "a/two", "access", {"host": "two.alpha.test", "password": "y"})
    assert len(v.secrets.search(op, "alpha")) == 2
    return op, older


@pytest.mark.parametrize("how", LISTINGS)
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_older_index_never_hides_a_record_taken_out_of_the_live_set(vdir, edit, how):
    v = vdir.open()
    try:
        op, older = _two_records_and_the_older_index(v)
        with v.ctx.db.write() as conn:  # the file writer (no key): one edit, the older index back
            assert conn.execute(EDITS[edit]).rowcount == 1
            put_back(conn, older)
        try:
            listed = listing(v, op, how)
        except IntegrityFailure:
            return  # fixed: the edited record is found
        pytest.fail(f"{how} believed an older index and hid a/two ({edit}): {listed}")
    finally:
        v.close()


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_the_cli_exits_6_with_one_line(vdir, edit):
    v = vdir.open()
    try:
        _, older = _two_records_and_the_older_index(v)
    finally:
        v.close()
    file_sql(vdir, EDITS[edit])
    file_sql(vdir, "DELETE FROM search_index WHERE client_id = ?", (older[0],))
    file_sql(vdir, f"INSERT INTO search_index VALUES ({','.join('?' * len(older))})", older)
    proc = run_cli("secret", "list", "acme", env=vdir.env())
    assert proc.returncode == 6, (proc.returncode, proc.stdout + proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_record_moved_to_another_client_is_refused_there(vdir):
    """The row moved to globex no longer has a valid MAC where it is: globex's listings rebuild
    (the digest of globex's rows changed) and refuse it, and ``cvault doctor`` names it."""
    v = vdir.open()
    try:
        op, older = _two_records_and_the_older_index(v)
        with v.ctx.db.write() as conn:
            assert conn.execute(MOVED).rowcount == 1
            put_back(conn, older)
        with pytest.raises(IntegrityFailure):
            v.secrets.list(op, "globex")
        with pytest.raises(IntegrityFailure):
            v.secrets.search(op, "alpha")
    finally:
        v.close()
    proc = vdir.cli("doctor")
    assert proc.returncode != 0 and "records" in (proc.stdout + proc.stderr), proc.stdout + proc.stderr
