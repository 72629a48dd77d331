"""Issue 16: the listings' freshness check (guarantee 29) compares one digest, not Python rows.

`secret list`, `secret search` and `secret list --all` believe a client's sealed search index only
when the SHA-256 sealed into it (of the live records' path tags, row MACs, versions and times, as
the rebuild checked them) equals the digest of what SQLite reads from the records table now
(`vault.store.records.listing_summary`, one row per client). These tests replay what a file writer
with no key can do against that encoding, beyond the cases of test_search.py and
test_list_index_row_macs.py: a value of another type whose text is the same (a tag as TEXT, a
version or a time as a BLOB of its digits), bytes moved from one tag or MAC to the next (the same
concatenation), a row of another client put in the place of one of this client's, and that an
index built from the rows as they are is believed (no rebuild), so the fast path is real.
"""

from __future__ import annotations

import pytest

from tests.helpers import add_client, operator
from tests.secrets.listings import LISTINGS, listing
from vault.errors import IntegrityFailure
from vault.records import search as index
from vault.store import records as store


def _sealed(v) -> dict:
    """client id -> its stored search index row."""
    return {row[0]: tuple(row) for row in v.ctx.db.all("SELECT * FROM search_index")}


def _file_writer(vdir, statements: list[tuple[str, tuple]], indexes: dict) -> None:
    """The file writer (no key): the statements with plain sqlite3 on vault.db (no foreign keys
    enforced), then the search indexes put back as they were (the triggers dropped them)."""
    import sqlite3

    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        with db:
            for sql, params in statements:
                db.execute(sql, params)
            db.execute("DELETE FROM search_index")
            for row in indexes.values():
                db.execute(f"INSERT INTO search_index VALUES ({','.join('?' * len(row))})", row)
    finally:
        db.close()


def _two_records(v, op) -> tuple[int, int]:
    """acme with two live records (consecutive ids), its index built; their record ids."""
    add_client(v, "acme")
    v.secrets.put(op, "acme", "a/one", "access", {"host": "one.alpha.test", "password": "x"})
    v.secrets.put(op, "acme", "a/two", "access", {"host": "two.alpha.test", "password": "y"})
    assert len(v.secrets.list(op, "acme")) == 2  # builds the index
    first, second = (r[0] for r in v.ctx.db.all("SELECT id FROM records ORDER BY id"))
    return first, second


def test_an_index_built_from_the_rows_as_they_are_is_believed(vdir):
    """The digest SQLite computes equals the one the rebuild sealed, for a client whose record ids
    interleave with another client's, with a deleted record, a record at version 3, a restored
    one and a bulk import: the second listing of each kind reads the stored index (its sealed
    bytes unchanged: a rebuild seals anew, with a fresh nonce)."""
    import json

    v = vdir.open()
    try:
        op = operator()
        add_client(v, "acme")
        add_client(v, "beta")
        for i in range(4):
            for client in ("beta", "acme"):  # ids interleave: id order is not path order
                v.secrets.put(op, client, f"z{9 - i}/alpha-{i}", "note", {"text": str(i)})
        v.secrets.put(op, "acme", "z9/alpha-0", "note", {"text": "v2"}, replace=True)
        v.secrets.put(op, "acme", "z9/alpha-0", "note", {"text": "v3"}, replace=True)
        v.secrets.rm(op, "acme", "z8/alpha-1")
        v.secrets.rm(op, "acme", "z7/alpha-2")
        v.secrets.restore(op, "acme", "z7/alpha-2", version=1)
        record = {"kind": "note", "fields": {"text": "t"}}
        lines = [json.dumps({"path": f"m/alpha-{i}", **record}) for i in range(5)]
        v.secrets.import_records(op, "acme", lines)
        assert len(v.secrets.list(op, "acme")) == 8  # builds acme's index
        assert len(v.secrets.search(op, "alpha")) == 12  # builds beta's
        sealed = _sealed(v)
        assert len(sealed) == 2
        for how in LISTINGS:
            listing(v, op, how)
            assert _sealed(v) == sealed, f"{how} rebuilt an index built from the rows as they are"
        client = v.ctx.client("acme")
        document = v.ctx.client_keys(client).unseal_index(sealed[client.id][2])
        with v.ctx.db.read() as conn:
            count, typed, *values = store.listing_summary(conn, client.id)
        assert count == typed == 9 and index.digest(document) == index.listing_digest(
            count, *values
        )  # 8 live, 1 deleted
    finally:
        v.close()


@pytest.mark.parametrize("how", LISTINGS)
@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE records SET path_tag = CAST(path_tag AS TEXT) WHERE id = :id",
        "UPDATE records SET mac = CAST(mac AS TEXT) WHERE id = :id",
        "UPDATE records SET updated_at = CAST(CAST(updated_at AS TEXT) AS BLOB) WHERE id = :id",
        # the version row too, so that the record still joins its current version
        "UPDATE record_versions SET version = CAST(CAST(version AS TEXT) AS BLOB) WHERE record_id = :id;"
        " UPDATE records SET current_version = CAST(CAST(current_version AS TEXT) AS BLOB) WHERE id = :id",
    ],
    ids=["tag as text", "mac as text", "time as blob", "version as blob"],
)
def test_a_value_of_another_type_with_the_same_text_is_refused(vdir, how, edit):
    """group_concat gives a TEXT tag the bytes of the BLOB it was, and a BLOB of digits the text of
    the INTEGER: the digests would be equal. The listing counts the rows of their columns' types
    and believes the index only if every row is, so such a row goes through the rebuild, which
    refuses it (exit 6: the row MAC, or for the time the stored-time check)."""
    v = vdir.open()
    try:
        op = operator()
        first, _ = _two_records(v, op)
        sealed = _sealed(v)
        _file_writer(vdir, [(statement, {"id": first}) for statement in edit.split(";")], sealed)
        with pytest.raises(IntegrityFailure):
            listing(v, op, how)
    finally:
        v.close()


@pytest.mark.parametrize("how", LISTINGS)
@pytest.mark.parametrize("column", ["path_tag", "mac"])
def test_bytes_moved_from_one_tag_or_mac_to_the_next_are_refused(vdir, how, column):
    """The tags (and the MACs) are concatenated without separators: the first row's value one
    byte longer and the next one byte shorter give the same text. Every value must be 32 bytes."""
    v = vdir.open()
    try:
        op = operator()
        first, second = _two_records(v, op)
        sealed = _sealed(v)
        (head,) = v.ctx.db.one(f"SELECT substr({column}, 1, 1) FROM records WHERE id = ?", (second,))
        longer = f"UPDATE records SET {column} = CAST({column} || ? AS BLOB) WHERE id = ?"
        shorter = f"UPDATE records SET {column} = substr({column}, 2) WHERE id = ?"
        _file_writer(vdir, [(longer, (head, first)), (shorter, (second,))], sealed)
        with v.ctx.db.read() as conn:  # the same concatenation: only the lengths tell
            count, typed, *values = store.listing_summary(conn, v.ctx.client("acme").id)
        client = v.ctx.client("acme")
        document = v.ctx.client_keys(client).unseal_index(sealed[client.id][2])
        assert index.digest(document) == index.listing_digest(count, *values) and typed == count - 2
        with pytest.raises(IntegrityFailure):
            listing(v, op, how)
    finally:
        v.close()


@pytest.mark.parametrize("how", LISTINGS)
def test_a_row_of_another_client_in_place_of_one_of_this_clients_is_refused(vdir, how):
    """The file writer deletes one of acme's record rows and moves one of beta's records into acme
    (as many live records as the index lists): its tag and MAC are not the ones sealed, so the
    listing rebuilds, and the moved row fails its MAC (it covers the client)."""
    v = vdir.open()
    try:
        op = operator()
        _, second = _two_records(v, op)
        add_client(v, "beta")
        v.secrets.put(op, "beta", "a/two", "access", {"host": "two.alpha.test", "password": "z"})
        sealed = _sealed(v)
        acme = v.ctx.client("acme").id
        moved = "UPDATE records SET client_id = ? WHERE id = (SELECT max(id) FROM records)"  # beta's
        _file_writer(vdir, [("DELETE FROM records WHERE id = ?", (second,)), (moved, (acme,))], sealed)
        with pytest.raises(IntegrityFailure):
            listing(v, op, how)
    finally:
        v.close()
