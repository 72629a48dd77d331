"""``secret search`` and ``secret list --all`` (issue 16): need-to-know per client at that moment
(assignment ended, SLA expired, training lapsed: the client is absent), one audited decision per
client searched, never a match on or an output of a secret value, and a sealed index that is
never stale."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import assign, edit_rows
from tests.helpers import add_client, clock_at, make_vault, operator
from vault.errors import InvalidInput
from vault.records import search as index

SECRETS = ("hunter2-Secret", "PIN-7741", "JBSWY3DPEHPK3PXPJBSWY3DP", "ssh-key-body")


def _fill(v, principal, client):
    v.secrets.put(
        principal,
        client,
        "office/firewall",
        "access",
        {
            "host": f"fw.{client}.test",
            "username": "admin",
            "password": SECRETS[0],
            "totp": SECRETS[2],
            "ssh_private_key": SECRETS[3],
            "tags": ["VPN", "prod"],
            "custom": {
                "Serial": {"value": "FG-100", "secret": False},
                "PIN": {"value": SECRETS[1], "secret": True},
            },
        },
    )
    v.secrets.put(
        principal, client, "wifi/guest", "network", {"wifi_ssid": "Guest-VPN", "wifi_key": "k" * 12}
    )
    v.secrets.put(principal, client, "notes/vpn", "note", {"text": "the vpn runbook"})


@pytest.fixture
def staffed(staff):
    v = staff.vdir.open(clock=clock_at())
    amy = staff.amy.principal(v)
    v.clients.add(amy, "globex", sla_end=v.ctx.now() + timedelta(days=30))
    v.clients.add(amy, "initech", sla_end=v.ctx.now() + timedelta(days=365))
    assign(v, staff.bob, "globex")  # bob: acme and globex; carl: nobody
    bob = staff.bob.principal(v)
    for client in ("acme", "globex"):
        _fill(v, bob, client)
    assign(v, staff.carl, "initech")
    _fill(v, staff.carl.principal(v), "initech")
    yield staff, v
    v.close()


def _clients(hits):
    return sorted({h["client"] for h in hits})


def _decisions(v, since: int):
    return v.ctx.db.all(
        "SELECT client, outcome, reason FROM audit_events"
        " WHERE action = 'secret.search' AND seq > ? ORDER BY seq",
        (since,),
    )


def _head(v) -> int:
    return v.ctx.db.scalar("SELECT coalesce(max(seq), 0) FROM audit_events")


def test_search_finds_non_secret_terms_only_in_readable_clients(staffed):
    staff, v = staffed
    bob = staff.bob.principal(v)
    hits = v.secrets.search(bob, "vpn")
    assert _clients(hits) == ["acme", "globex"]  # initech (not assigned) is absent, not "denied"
    by_path = {h["path"]: h["matched"] for h in hits if h["client"] == "acme"}
    assert by_path == {"office/firewall": ["tags"], "wifi/guest": ["wifi_ssid"], "notes/vpn": ["path"]}
    assert v.secrets.search(bob, "fg-1")[0]["matched"] == ["custom.Serial"]
    assert {h["path"] for h in v.secrets.search(bob, "pin")} == {"office/firewall"}  # a custom field's name
    for secret in SECRETS:
        assert v.secrets.search(bob, secret) == []
        assert v.secrets.search(bob, secret[2:9]) == []
    assert v.secrets.search(bob, "runbook") == []  # a note's text is its secret
    assert [h["path"] for h in v.secrets.search(bob, "VPN", kind="network")] == ["wifi/guest", "wifi/guest"]
    assert _clients(v.secrets.search(bob, "vpn", client="globex")) == ["globex"]
    assert json.dumps(v.secrets.search(bob, "a")).count(SECRETS[0]) == 0


def test_each_client_searched_is_one_audited_decision(staffed):
    staff, v = staffed
    before = _head(v)
    v.secrets.search(staff.bob.principal(v), "fw.acme")
    decisions = _decisions(v, before)
    assert [(c, o) for c, o, _ in decisions] == [("acme", "allow"), ("globex", "allow"), ("acme", "ok")]
    # the term is kept, sealed under the client's audit-detail key, for the clients it matched in
    sealed = v.ctx.db.all(
        "SELECT detail_sealed FROM audit_events"
        " WHERE action = 'secret.search' AND outcome = 'ok' AND seq > ?",
        (before,),
    )
    assert len(sealed) == 1 and sealed[0][0] and b"fw.acme" not in sealed[0][0]
    before = _head(v)
    assert v.secrets.search(staff.bob.principal(v), "vpn", client="initech") == []
    assert [(c, o) for c, o, _ in _decisions(v, before)] == [("initech", "deny")]


def test_search_follows_need_to_know_at_that_moment(staffed):
    staff, v = staffed
    amy = staff.amy.principal(v)
    # the assignment ends
    v.access.unassign(amy, "globex", "bob")
    assert _clients(v.secrets.search(staff.bob.principal(v), "vpn")) == ["acme"]
    assign(v, staff.bob, "globex")
    assert _clients(v.secrets.search(staff.bob.principal(v), "vpn")) == ["acme", "globex"]
    # the SLA lapses (globex ends in 30 days; its grace does not give need-to-know)
    v.ctx.clock.advance(days=31)
    before = _head(v)
    assert _clients(v.secrets.search(staff.bob.principal(v), "vpn")) == ["acme"]
    assert ("globex", "deny") in [(c, o) for c, o, _ in _decisions(v, before)]
    assert [r["client"] for r in v.secrets.list_all(staff.bob.principal(v))] == ["acme"] * 3
    # training lapses: nothing at all
    edit_rows(v, "users", "training_valid_until = ?", (0,), "name = 'bob'")
    assert v.secrets.search(staff.bob.principal(v), "vpn") == []
    assert v.secrets.list_all(staff.bob.principal(v)) == []
    # other roles search nothing (admin never implies reading secrets)
    assert v.secrets.search(staff.alice.principal(v), "vpn") == []


def test_the_index_follows_every_change_and_is_sealed(tmp_path):
    vd = make_vault(tmp_path, clock=clock_at())
    v = vd.open(clock=clock_at())
    try:
        add_client(v, "acme")
        p = operator()
        v.secrets.put(p, "acme", "a/one", "access", {"host": "alpha.test", "password": "x"})
        assert [h["path"] for h in v.secrets.search(p, "alpha")] == ["a/one"]
        v.secrets.edit(p, "acme", "a/one", set_fields={"host": "beta.test"})
        assert v.secrets.search(p, "alpha") == [] and len(v.secrets.search(p, "beta")) == 1
        v.secrets.restore(p, "acme", "a/one", version=1)
        assert len(v.secrets.search(p, "alpha")) == 1
        v.secrets.rm(p, "acme", "a/one")
        assert v.secrets.search(p, "alpha") == []
        v.secrets.restore(p, "acme", "a/one", version=1)
        assert len(v.secrets.search(p, "alpha")) == 1
        v.clients.rotate_key(p, "acme")
        assert len(v.secrets.search(p, "alpha")) == 1  # rebuilt under the new key version
        sealed = v.ctx.db.scalar("SELECT sealed FROM search_index")
        assert b"alpha" not in sealed and b"a/one" not in sealed
        # a tampered index is rebuilt from the records, never trusted
        with v.ctx.db.write() as conn:
            conn.execute("UPDATE search_index SET sealed = ?", (sealed[:-1] + bytes([sealed[-1] ^ 1]),))
        assert len(v.secrets.search(p, "alpha")) == 1
        v.secrets.rm(p, "acme", "a/one", purge=True)
        assert v.secrets.search(p, "alpha") == [] and v.secrets.list_all(p) == []
    finally:
        v.close()


def test_bad_terms_are_refused(staffed):
    staff, v = staffed
    bob = staff.bob.principal(v)
    for bad in ("", "   ", "x" * 257, "a\nb"):
        with pytest.raises(InvalidInput):
            v.secrets.search(bob, bad)
    with pytest.raises(InvalidInput, match="unknown record type"):
        v.secrets.search(bob, "x", kind="card")


_word = st.text(alphabet="abcXYZ-ß.é", min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_word, st.lists(_word, max_size=3), _word), min_size=1, max_size=6), _word)
def test_index_match_equals_a_naive_scan(records, term):
    entries = [
        (f"p/{i}-{path}", "access", 1, 0, {"host": host, "tags": tags})
        for i, (path, tags, host) in enumerate(records)
    ]
    document = index.build(entries, bytes(32))
    got = {h["path"]: h["matched"] for h in index.match(document, term)}
    want = {}
    for path, _, _, _, terms in entries:
        fields = {"path": [path], "kind": ["access"], "host": [terms["host"]], "tags": terms["tags"]}
        matched = sorted(
            n for n, values in fields.items() if any(term.casefold() in x.casefold() for x in values)
        )
        if matched:
            want[path] = matched
    assert got == want


def test_secret_list_reads_the_index_but_never_an_older_copy_of_it(vdir):
    """secret list takes the names from the client's sealed search index (one unseal, issue 20
    item 6): an older copy of the index put back into vault.db (it lacks a record added since, and
    lists one deleted since) is not believed; the list is rebuilt from the records themselves."""
    v = vdir.open()
    add_client(v, "acme")
    op = operator()
    v.secrets.put(op, "acme", "a/one", "note", {"text": "1"})
    v.secrets.put(op, "acme", "a/two", "note", {"text": "2"})
    assert [r["path"] for r in v.secrets.list(op, "acme")] == ["a/one", "a/two"]
    old = v.ctx.db.all("SELECT client_id, key_version, sealed, built_at FROM search_index")
    assert len(old) == 1  # the listing built and stored the index
    v.secrets.put(op, "acme", "a/three", "note", {"text": "3"})
    v.secrets.rm(op, "acme", "a/one")
    with v.ctx.db.write() as conn:  # the attacker's write: the older sealed index back
        conn.execute("DELETE FROM search_index")
        conn.execute("INSERT INTO search_index VALUES (?, ?, ?, ?)", old[0])
    assert [r["path"] for r in v.secrets.list(op, "acme")] == ["a/three", "a/two"]
    assert [r["path"] for r in v.secrets.list(op, "acme")] == ["a/three", "a/two"]  # from the rebuilt one
    v.close()


def test_secret_list_from_the_index_still_refuses_an_edited_record_row(vdir):
    """The listing believes its index only while the records rows agree with it; a row edited to
    an older version (a rollback by someone who can write vault.db) sends it through the rebuild,
    whose row-MAC check refuses (exit 6), as before the index was used."""
    from vault.store.rowmac import RowTampered

    v = vdir.open()
    add_client(v, "acme")
    op = operator()
    v.secrets.put(op, "acme", "a/one", "note", {"text": "1"})
    v.secrets.put(op, "acme", "a/one", "note", {"text": "2"}, replace=True)
    assert [r["version"] for r in v.secrets.list(op, "acme")] == [2]  # (builds the index)
    (index,) = v.ctx.db.all("SELECT * FROM search_index")
    with v.ctx.db.write() as conn:  # the attacker keeps the index too: put back after the edit
        conn.execute("UPDATE records SET current_version = 1")  # (the schema's trigger drops it)
        conn.execute(f"INSERT INTO search_index VALUES ({','.join('?' * len(index))})", tuple(index))
    with pytest.raises(RowTampered):
        v.secrets.list(op, "acme")
    v.close()


@pytest.mark.parametrize("older_format", ["CVSI1", "CVSI2", "CVSI3", "CVSI4"])
def test_secret_list_rebuilds_an_index_of_the_older_format(vdir, older_format):
    """An index written before the listing section (CVSI1: scan and rows sections only), before
    the row MACs (CVSI2: no M section, review6 R6-8) or before their digest (CVSI3: the tags and
    MACs themselves, issue 16) or before the field names section (CVSI4: one JSON line per record
    instead), sealed under the right key, is not read by this build: secret list
    rebuilds it from the records (MAC-checked) and stores the current format, and lists the same
    records."""
    import struct

    v = vdir.open()
    add_client(v, "acme")
    op = operator()
    v.secrets.put(op, "acme", "a/one", "note", {"text": "1"})
    v.secrets.put(op, "acme", "a/two", "access", {"host": "alpha.test", "password": "x"})
    want = v.secrets.list(op, "acme")
    client = v.ctx.client("acme")
    keys = v.ctx.client_keys(client)
    document = keys.unseal_index(v.ctx.db.scalar("SELECT sealed FROM search_index"))
    scan, lst, _, rows = index._layout(document)  # (this build's N as CVSI1-4's B: never read)
    stored = v.ctx.db.all("SELECT path_tag, mac FROM records ORDER BY path_tag")
    tags, macs = b"".join(r[0] for r in stored), b"".join(r[1] for r in stored)  # CVSI3's T and M
    if older_format == "CVSI1":
        older = b"CVSI1" + struct.pack(">I", len(scan)) + scan + rows
    elif older_format == "CVSI2":
        older = b"CVSI2" + b"".join(struct.pack(">I", len(p)) + p for p in (scan, lst, tags)) + rows
    elif older_format == "CVSI3":
        older = b"CVSI3" + b"".join(struct.pack(">I", len(p)) + p for p in (scan, lst, tags, macs)) + rows
    else:
        older = b"CVSI4" + document[len(index.MAGIC) :]
    with v.ctx.db.write() as conn:
        conn.execute("UPDATE search_index SET sealed = ?", (keys.seal_index(older),))
    assert v.secrets.list(op, "acme") == want
    rebuilt = keys.unseal_index(v.ctx.db.scalar("SELECT sealed FROM search_index"))
    assert rebuilt.startswith(index.MAGIC)
    assert [e[:3] for e in index.entries(rebuilt)] == [(r["path"], r["kind"], r["version"]) for r in want]
    assert [h["path"] for h in v.secrets.search(op, "alpha")] == ["a/two"]
    v.close()


def test_secret_list_from_the_index_reports_a_missing_version_row(vdir):
    """A record whose current version row was deleted from vault.db (the index kept) is not
    listed from the index: the live records no longer match it, and the rebuild refuses the
    record with the missing row (exit 6), as before the index was used."""
    from vault.errors import IntegrityFailure

    v = vdir.open()
    add_client(v, "acme")
    op = operator()
    v.secrets.put(op, "acme", "a/one", "note", {"text": "1"})
    v.secrets.put(op, "acme", "a/two", "note", {"text": "2"})
    assert len(v.secrets.list(op, "acme")) == 2  # (builds the index)
    with v.ctx.db.write() as conn:
        conn.execute(
            "DELETE FROM record_versions WHERE record_id = (SELECT MIN(id) FROM records) AND version = 1"
        )
    assert v.ctx.db.scalar("SELECT COUNT(*) FROM search_index") == 1  # the index is still there
    with pytest.raises(IntegrityFailure):
        v.secrets.list(op, "acme")
    v.close()


def test_index_match_names_the_fields_of_odd_values():
    """A hit names exactly the fields that hold the term (casefolded: ß is ss), also for a value
    that holds a line break or U+001F (the scan section's separators), and only for its kind."""
    entries = [
        ("p/a", "access", 1, 0, {"host": "alpha\nbeta", "tags": ["beta"]}),
        ("p/b", "access", 1, 0, {"host": "gamma\x1fbeta", "tags": ["x"]}),
        ("p/c", "note", 2, 5, {"tags": ["Straße"]}),
    ]
    document = index.build(entries, bytes(32))
    got = {h["path"]: h["matched"] for h in index.match(document, "beta")}
    assert got == {"p/a": ["host", "tags"], "p/b": ["host"]}
    assert [(h["path"], h["matched"]) for h in index.match(document, "STRASSE")] == [("p/c", ["tags"])]
    assert index.match(document, "beta", kind="note") == []
    assert index.match(document, "strasse")[0] == {
        "path": "p/c",
        "kind": "note",
        "version": 2,
        "updated_at": 5,
        "matched": ["tags"],
    }


def test_search_and_list_all_never_believe_an_older_copy_of_the_index(vdir):
    """review4 R4-3: ``secret search`` and ``secret list --all`` believed any stored index that
    opened under the client key; a file writer who put back an older sealed copy made them show a
    record deleted since and hide one added since. They compare it with the live records now, as
    ``secret list`` does (guarantee 29), and rebuild on any difference."""
    from tests.helpers import add_client, file_sql, operator

    v = vdir.open()
    add_client(v, "acme")
    op = operator()
    v.secrets.put(op, "acme", "a/one", "access", {"host": "one.alpha.test", "password": "x"})
    v.secrets.put(op, "acme", "a/two", "access", {"host": "two.alpha.test", "password": "y"})
    assert [h["path"] for h in v.secrets.search(op, "alpha")] == ["a/one", "a/two"]  # builds the index
    (old,) = v.ctx.db.all("SELECT client_id, key_version, sealed, built_at FROM search_index")
    v.secrets.put(op, "acme", "a/three", "access", {"host": "three.alpha.test", "password": "z"})
    v.secrets.rm(op, "acme", "a/one")
    v.close()
    file_sql(vdir, "DELETE FROM search_index")  # the file writer: the older sealed index back
    file_sql(vdir, "INSERT INTO search_index VALUES (?, ?, ?, ?)", tuple(old))
    v = vdir.open()
    try:
        assert [h["path"] for h in v.secrets.search(op, "alpha")] == ["a/three", "a/two"]
        file_sql(vdir, "DELETE FROM search_index")
        file_sql(vdir, "INSERT INTO search_index VALUES (?, ?, ?, ?)", tuple(old))
        assert [r["path"] for r in v.secrets.list_all(op)] == ["a/three", "a/two"]
    finally:
        v.close()


def test_index_match_refuses_field_names_that_do_not_fit_the_scan_lines():
    """A hit's fields are named by section N (CVSI5): names that do not fit the hit line (another
    count of texts, a record without names) are not guessed at but refused as an unreadable index
    (ValueError: the search rebuilds it from the records)."""
    import json
    import struct
    import zlib

    entries = [
        ("p/a", "access", 1, 0, {"host": "alpha", "tags": ["beta"]}),
        ("p/b", "access", 1, 0, {"host": "beta", "tags": ["x", "y"]}),
    ]
    document = index.build(entries, bytes(32))
    assert [h["matched"] for h in index.match(document, "beta")] == [["tags"], ["host"]]
    scan, lst, digest, names = index._layout(document)
    shapes, shape_of = json.loads(zlib.decompress(names))
    assert shape_of == [0, 1] and len(shapes[1]) == len(shapes[0]) + 1
    head = index.MAGIC + b"".join(struct.pack(">I", len(p)) + p for p in (scan, lst, digest))
    for bad in ([shapes, [1, 0]], [shapes, [0]], [shapes[:1], [0, 1]], [shapes, [0, "1"]]):
        damaged = head + zlib.compress(json.dumps(bad).encode())
        with pytest.raises(ValueError, match="not a search index"):
            index.match(damaged, "beta")
