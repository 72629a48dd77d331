"""Packed record blobs (issue 20 item 5; docs/format.md section 9): a bulk import writes the new
versions of one client into pack files, each version still a record blob of its own (own key,
nonce, header as AAD) at the place its row gives under the row MAC. Every path that reads or
destroys a version's blob is proven here on a packed import: read (library and CLI), update
(the new version is a blob of its own), attach, history, retention, purge, doctor (a missing,
short or edited pack is reported per version), an edited offset or length (fails closed),
backup and restore, and a shred with its certificate. Sync: tests/sync/test_sync_packs.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import VaultDir, add_client, clock_at, make_vault, operator, run_cli
from vault import blob as blobfmt
from vault.audit.checkpoints import is_checkpoint_blob
from vault.errors import IntegrityFailure
from vault.principal import Principal
from vault.records.service import IMPORT_BATCH

N = IMPORT_BATCH + 5  # two batches: two packs


def _line(i: int) -> str:
    return json.dumps(
        {
            "path": f"site/{i // 100}/dev-{i}",
            "kind": "access",
            "fields": {"host": f"h{i}", "password": f"pw-{i}"},
        }
    )


@pytest.fixture
def packed(tmp_path):
    vd = make_vault(tmp_path, clock=clock_at())
    v = vd.open(clock=clock_at())
    add_client(v, "acme", grace_days=0)
    add_client(v, "globex")
    v.secrets.put(operator(), "globex", "solo", "access", {"password": "globex-pw"})
    v.secrets.import_records(operator(), "acme", (_line(i) for i in range(N)))
    yield vd, v
    v.close()


def _rows(v, client: str = "acme") -> list[tuple]:
    return v.ctx.db.all(
        "SELECT r.id, v.version, v.blob_name, v.pack_offset, v.size FROM records r"
        " JOIN record_versions v ON v.record_id = r.id JOIN clients c ON c.id = r.client_id"
        " WHERE c.name = ? ORDER BY r.id, v.version",
        (client,),
    )


def _record_blobs(v) -> set[str]:
    return {n for n in v.ctx.blobs.list() if not is_checkpoint_blob(n)}


def _pack_file(vd: VaultDir, name: str) -> Path:
    return vd.home / "blobs" / name[:2] / name


def _record_id(v, path_index: int) -> int:
    return _rows(v)[path_index][0]


def test_an_import_writes_one_pack_per_batch_and_one_outbox_row_each(packed):
    vd, v = packed
    rows = _rows(v)
    assert len(rows) == N and all(r[3] is not None for r in rows)
    packs = sorted({r[2] for r in rows})
    assert len(packs) == 2  # one per batch, not one file per record
    assert _record_blobs(v) == set(packs) | {r[2] for r in _rows(v, "globex")}
    queued = [r[0] for r in v.ctx.db.all("SELECT blob_name FROM outbox WHERE op = 'put'")]
    assert sorted(set(queued) & set(packs)) == packs and len([q for q in queued if q in packs]) == 2
    # the pack: a header naming the vault and the client, then each version as a record blob
    client = v.ctx.client("acme")
    for name in packs:
        data = v.ctx.blobs.get(name)
        assert data[:4] == blobfmt.PACK_MAGIC and data[4] == blobfmt.PACK_VERSION
        assert data[5:21] == v.ctx.vault_id and data[21:37] == client.id_bytes
        mine = sorted((r[3], r[4], r[0]) for r in rows if r[2] == name)
        assert mine[0][0] == blobfmt.PACK_HEADER_LEN
        assert all(a[0] + a[1] == b[0] for a, b in zip(mine, mine[1:], strict=False))  # back to back
        assert mine[-1][0] + mine[-1][1] == len(data)
        for offset, size, record_id in mine[:3]:
            header = blobfmt.parse_header(data[offset : offset + size])
            assert (header.client_id, header.record_id, header.record_version) == (
                client.id_bytes,
                record_id,
                1,
            )
        assert b"pw-" not in data
    # pack names are opaque: neither a record version's name nor derived from a path
    keyring = v.ctx.keyring
    assert not set(packs) & {keyring.blob_name(client.id, r[0], 1) for r in rows}


def test_packed_records_read_through_the_library_and_the_cli(packed):
    vd, v = packed
    for i in (0, 7, IMPORT_BATCH - 1, IMPORT_BATCH, N - 1):
        got = v.secrets.get(operator(), "acme", f"site/{i // 100}/dev-{i}")
        assert got.fields["password"] == f"pw-{i}" and got.version == 1
    proc = vd.cli("secret", "get", "acme", f"site/{(N - 1) // 100}/dev-{N - 1}", "--field", "password")
    assert proc.returncode == 0 and proc.stdout.strip() == f"pw-{N - 1}", proc.stderr
    exported = v.secrets.export_records(operator(), "acme")["records"]
    assert len(exported) == N and {r["fields"]["password"] for r in exported} == {f"pw-{i}" for i in range(N)}
    assert len(v.secrets.list(operator(), "acme")) == N
    assert [h["version"] for h in v.secrets.history(operator(), "acme", "site/0/dev-3")] == [1]


def test_an_update_writes_a_blob_of_its_own_and_the_packed_version_stays_readable(packed):
    vd, v = packed
    path = "site/0/dev-4"
    rid = _record_id(v, 4)
    v.secrets.edit(operator(), "acme", path, set_fields={"password": "changed"})
    versions = {r[1]: r for r in _rows(v) if r[0] == rid}
    assert versions[2][3] is None and versions[2][2] == v.ctx.keyring.blob_name(
        v.ctx.client("acme").id, rid, 2
    )
    assert versions[1][3] is not None  # still in its pack
    assert v.secrets.get(operator(), "acme", path).fields["password"] == "changed"
    assert v.secrets.get(operator(), "acme", path, version=1).fields["password"] == "pw-4"


def test_attach_to_a_packed_record(packed):
    vd, v = packed
    v.secrets.attach(operator(), "acme", "site/0/dev-5", b"\x00attached bytes", name="cfg.bin")
    assert (
        v.secrets.attachment(operator(), "acme", "site/0/dev-5", "cfg.bin")["data"] == b"\x00attached bytes"
    )
    assert v.secrets.get(operator(), "acme", "site/0/dev-5").fields["password"] == "pw-5"


def test_retention_never_deletes_a_pack_other_versions_still_use(packed):
    vd, v = packed
    pack = _rows(v)[6][2]
    keep = int(v.ctx.settings["keep_versions"])
    for i in range(keep + 1):  # version 1 (the packed one) is pruned
        v.secrets.edit(operator(), "acme", "site/0/dev-6", set_fields={"password": f"p{i}"})
    assert 1 not in {r[1] for r in _rows(v) if r[0] == _record_id(v, 6)}
    assert pack in _record_blobs(v)
    assert ("delete", pack) not in v.ctx.db.all("SELECT op, blob_name FROM outbox")
    assert v.secrets.get(operator(), "acme", "site/0/dev-8").fields["password"] == "pw-8"
    assert v.maintenance.doctor(Principal.system("cli")).ok


def test_purge_destroys_the_record_key_and_the_pack_goes_with_its_last_version(tmp_path):
    vd = make_vault(tmp_path, clock=clock_at())
    v = vd.open(clock=clock_at())
    try:
        add_client(v, "acme")
        v.secrets.import_records(operator(), "acme", [_line(i) for i in range(3)])
        [pack] = {r[2] for r in _rows(v)}
        first = _rows(v)[0]
        result = v.secrets.rm(operator(), "acme", "site/0/dev-0", purge=True)
        assert result["versions_destroyed"] == 1
        # its row (the wrapped record key, the place) is gone: the slice left in the pack is
        # ciphertext under a key nothing holds; the pack stays for the two other records
        assert v.ctx.db.all("SELECT count(*) FROM record_versions WHERE record_id = ?", (first[0],)) == [(0,)]
        assert pack in _record_blobs(v)
        assert ("delete", pack) not in v.ctx.db.all("SELECT op, blob_name FROM outbox")
        assert v.secrets.get(operator(), "acme", "site/0/dev-1").fields["password"] == "pw-1"
        v.secrets.rm(operator(), "acme", "site/0/dev-1", purge=True)
        assert pack in _record_blobs(v)
        v.secrets.rm(operator(), "acme", "site/0/dev-2", purge=True)
        assert pack not in _record_blobs(v)  # no live version points into it any more
        assert ("delete", pack) in v.ctx.db.all("SELECT op, blob_name FROM outbox")
    finally:
        v.close()


def test_doctor_reports_a_missing_pack_per_version(packed):
    vd, v = packed
    assert v.maintenance.doctor(Principal.system("cli")).ok
    rows = _rows(v)
    small = min({r[2] for r in rows}, key=lambda n: sum(r[2] == n for r in rows))  # the 5-record pack
    _pack_file(vd, small).unlink()
    report = v.maintenance.doctor(Principal.system("cli"))
    missing = [p for p in report.problems if "missing from the blob store" in p]
    assert len(missing) == sum(r[2] == small for r in rows) == 5
    with pytest.raises(IntegrityFailure, match="missing from the blob store"):
        v.secrets.get(operator(), "acme", f"site/{(N - 1) // 100}/dev-{N - 1}")


def test_doctor_reports_a_short_or_edited_pack_per_version(packed):
    vd, v = packed
    rows = _rows(v)
    small = min({r[2] for r in rows}, key=lambda n: sum(r[2] == n for r in rows))
    mine = sorted((r[3], r[4]) for r in rows if r[2] == small)
    path = _pack_file(vd, small)
    data = bytearray(path.read_bytes())
    data[mine[1][0] + 70] ^= 1  # a ciphertext byte of the second version
    path.write_bytes(bytes(data[: mine[-1][0] + 10]))  # and the last one cut short
    report = v.maintenance.doctor(Principal.system("cli"))
    failed = [p for p in report.problems if "failed verification" in p]
    assert len(failed) == 2, report.problems
    assert v.secrets.get(operator(), "acme", f"site/{IMPORT_BATCH // 100}/dev-{IMPORT_BATCH}").version == 1
    with pytest.raises(IntegrityFailure, match="failed verification"):
        v.secrets.get(operator(), "acme", f"site/{(N - 1) // 100}/dev-{N - 1}")


@pytest.mark.parametrize(
    "edit",
    [
        "pack_offset = pack_offset + size",  # points at its neighbour's slice
        "size = size - 1",
        "pack_offset = NULL",  # the whole pack as its blob
    ],
)
def test_an_edited_place_in_a_pack_fails_closed(packed, edit):
    """A file writer who moves a version's offset or length (say, onto another record's slice)
    gets an integrity failure (exit 6): the place is under the row MAC."""
    vd, v = packed
    rid = _record_id(v, 9)
    v.close()
    import sqlite3

    conn = sqlite3.connect(vd.home / "vault.db")
    with conn:
        conn.execute(f"UPDATE record_versions SET {edit} WHERE record_id = ?", (rid,))
    conn.close()
    proc = vd.cli("secret", "get", "acme", "site/0/dev-9", "--field", "password")
    assert proc.returncode == 6 and "integrity failure" in proc.stderr and "Traceback" not in proc.stderr
    assert "pw-" not in proc.stdout
    v2 = vd.open()
    try:
        report = v2.maintenance.doctor(Principal.system("cli"))
        assert any("record_versions row" in p for p in report.problems), report.problems
    finally:
        v2.close()


def test_backup_and_restore_carry_the_packs(packed, tmp_path):
    vd, v = packed
    v.close()
    out = tmp_path / "backups"
    out.mkdir(mode=0o700)
    made = vd.cli("--json", "backup", "--out", str(out))
    assert made.returncode == 0, made.stderr
    backup = json.loads(made.stdout)["file"]
    shutil.rmtree(vd.home)
    new_home = tmp_path / "restored" / "vault"
    proc = run_cli("--json", "--home", str(new_home), "restore", backup, env=vd.env())
    assert proc.returncode == 0, proc.stderr
    for i in (0, N - 1):
        got = run_cli(
            "secret",
            "get",
            "acme",
            f"site/{i // 100}/dev-{i}",
            "--field",
            "password",
            env=vd.env(CVAULT_HOME=str(new_home)),
        )
        assert got.returncode == 0 and got.stdout.strip() == f"pw-{i}", got.stderr
    rv = VaultDir(new_home, vd.key_file).open()
    try:
        assert rv.maintenance.doctor(Principal.system("cli")).ok
    finally:
        rv.close()


def test_a_shred_deletes_the_packs_and_certifies_them(packed):
    vd, v = packed
    packs = {r[2] for r in _rows(v)}
    manifest_blobs = len(packs)
    v.sla.expire(operator(), "acme", reason="contract ended")
    v.sla.sweep(Principal.system("sweep"))
    assert v.ctx.client("acme").shred_state == "shredded"
    assert not packs & _record_blobs(v)
    for name in packs:
        assert not _pack_file(vd, name).exists()
    cert = v.sla.certificate(operator(), "acme")["certificate"]
    local = cert["destroyed"]["blobs"][0]
    assert local["blobs"] == manifest_blobs and local["deleted"] == manifest_blobs, local
    queued = {b for op, b in v.ctx.db.all("SELECT op, blob_name FROM outbox") if op == "delete"}
    assert packs <= queued
    assert v.secrets.get(operator(), "globex", "solo").fields["password"] == "globex-pw"
    assert v.maintenance.doctor(Principal.system("cli")).ok


def test_the_bulk_rows_carry_the_macs_of_the_generic_encoding(packed):
    """insert_records / insert_versions encode the values a batch shares once; the MACs are
    exactly those of rowmac.encode (what every reader and doctor check)."""
    from vault.store import rowmac

    vd, v = packed
    conn = v.ctx.db.conn
    for table in ("records", "record_versions"):
        assert list(rowmac.verify_table(conn, table)) == []
    m = rowmac.macer(conn)
    for rid, version, name, offset, size in _rows(v)[:50]:
        created, by, tag = v.ctx.db.one(
            "SELECT created_at, created_by, mac FROM record_versions WHERE record_id = ? AND version = ?",
            (rid, version),
        )
        values = (rid, version, False, name, size, created, by, offset)
        assert m.verify(rowmac.encode("record_versions", values), bytes(tag))
        assert not m.verify(rowmac.encode("record_versions", values[:-1]), bytes(tag))


def test_a_failure_of_the_inserts_thread_imports_nothing_and_leaves_no_pack(tmp_path, monkeypatch):
    """A batch's inserts run on their own thread while the next batch is encrypted; what they
    raise reaches the import (fail closed): the transaction rolls back, the packs are deleted."""
    import sqlite3

    from vault.store import records as record_store

    vd = make_vault(tmp_path, clock=clock_at())
    v = vd.open(clock=clock_at())
    try:
        add_client(v, "acme")
        before = _record_blobs(v)
        outbox_rows = v.ctx.db.all("SELECT count(*) FROM outbox")
        monkeypatch.setattr(
            record_store,
            "INSERT_VERSIONS",
            record_store.INSERT_VERSIONS.replace("pack_offset,", "pack_ofset,"),
        )
        with pytest.raises(sqlite3.OperationalError):
            v.secrets.import_records(operator(), "acme", (_line(i) for i in range(N)))
        assert v.ctx.db.all("SELECT count(*) FROM records") == [(0,)]
        assert v.ctx.db.all("SELECT count(*) FROM outbox") == outbox_rows
        assert _record_blobs(v) == before
    finally:
        v.close()


def test_a_pack_is_authentic_only_when_its_framing_accounts_for_every_byte(tmp_path):
    """docs/format.md section 9, "Framing": destroyed versions (first, middle, last) stay framed
    by their own headers, so the pack is still authentic; one byte more or less anywhere is not."""
    vd = make_vault(tmp_path, clock=clock_at())
    v = vd.open(clock=clock_at())
    try:
        add_client(v, "acme")
        v.secrets.import_records(operator(), "acme", [_line(i) for i in range(6)])
        [pack] = {r[2] for r in _rows(v)}
        good = _pack_file(vd, pack).read_bytes()
        assert v.secrets.blob_is_authentic(pack, good) is True
        for i in (0, 2):  # the first, one between: their bytes stay in the pack
            v.secrets.rm(operator(), "acme", f"site/0/dev-{i}", purge=True)
            assert v.secrets.blob_is_authentic(pack, good) is True
        assert v.secrets.blob_is_authentic(pack, good + b"\0") is False
        assert v.secrets.blob_is_authentic(pack, good[:-1]) is False
        places = sorted((r[3], r[4]) for r in _rows(v))
        gone = places[0][0] + places[0][1]  # site/0/dev-2's destroyed blob follows the first kept one
        for forged in (
            good[:gone] + b"\0" + good[gone + 1 :],  # its header
            good[:gone] + b"\0" * 78 + good[gone:],  # a gap before it
            good[: blobfmt.PACK_HEADER_LEN] + good[blobfmt.PACK_HEADER_LEN + 1 :],
        ):
            assert v.secrets.blob_is_authentic(pack, forged) is False
        # the last one destroyed too: its row (its length) is gone, but the pack's name covers
        # its count and length, so the destroyed tail cannot grow, shrink or go
        v.secrets.rm(operator(), "acme", "site/0/dev-5", purge=True)
        assert v.secrets.blob_is_authentic(pack, good) is True
        for forged in (good + b"\0", good[:-1], good[: places[-1][0]]):  # dev-5 cut off whole
            assert v.secrets.blob_is_authentic(pack, forged) is False
    finally:
        v.close()


def test_a_pack_named_before_names_covered_its_length_keeps_the_destroyed_tail_residual(tmp_path):
    """A pack an older cvault wrote is named by its first record alone (keys.pack_name_v1): it is
    still read and its framing still checked, but bytes after a destroyed last version are not
    seen (docs/security.md non-guarantee 23); with its last version kept, they are."""
    from vault.store import rowmac

    vd = make_vault(tmp_path, clock=clock_at())
    v = vd.open(clock=clock_at())
    try:
        add_client(v, "acme")
        v.secrets.import_records(operator(), "acme", [_line(i) for i in range(3)])
        [pack] = {r[2] for r in _rows(v)}
        client = v.ctx.client("acme")
        old = v.ctx.keyring.pack_name_v1(client.id, _rows(v)[0][0])
        with v.ctx.db.write() as conn:  # the rows as the older cvault wrote them (MACed)
            rowmac.update(conn, "record_versions", "blob_name = ?", (old,), "blob_name = ?", (pack,))
        good = _pack_file(vd, pack).read_bytes()
        v.ctx.blobs.put(old, good)
        _pack_file(vd, pack).unlink()
        assert v.secrets.get(operator(), "acme", "site/0/dev-2").fields["password"] == "pw-2"
        assert v.secrets.blob_is_authentic(old, good) is True
        assert v.secrets.blob_is_authentic(old, good + b"\0") is False
        v.secrets.rm(operator(), "acme", "site/0/dev-2", purge=True)
        assert v.secrets.blob_is_authentic(old, good + b"\0") is True  # the residual
        assert v.secrets.blob_is_authentic(old, good[:40] + b"\0" + good[41:]) is False
    finally:
        v.close()
