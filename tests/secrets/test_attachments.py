"""Attachments (issue 16 item 5): 25 MiB round trips locally, through the CLI and through the
OneDrive fake (an upload session), tamper -> integrity failure (exit 6), gone after a shred and a
purge, kept by every other write, dropped only by ``detach`` and by pruning the versions that
listed them."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from tests.helpers import add_client, clock_at, files_under, grep_tree, make_vault, operator
from vault import blob as blobfmt
from vault.errors import IntegrityFailure, InvalidInput, NotFound

MiB = 1024 * 1024


def payload(size: int, marker: bytes = b"ATTACHMENT-PLAINTEXT-MARKER") -> bytes:
    """Recognizable plaintext: a marker every 64 KiB, random bytes between (so a leak of any part
    of it, not only its start, is found by the scans below)."""
    chunk = 64 * 1024
    out = bytearray()
    while len(out) < size:
        out += marker + os.urandom(chunk - len(marker))
    return bytes(out[:size])


@pytest.fixture
def vault(vdir):
    v = vdir.open()
    add_client(v, "acme")
    add_client(v, "globex")
    v.secrets.put(operator(), "acme", "office/firewall", "access", {"password": "pw", "host": "fw1"})
    yield v
    v.close()


def _refs(v):
    return v.ctx.db.all("SELECT record_id, version, blob_name, size FROM attachment_refs ORDER BY version")


def test_25_mib_round_trip_and_listing(vault):
    data = payload(25 * MiB)
    got = vault.secrets.attach(operator(), "acme", "office/firewall", data, name="running-config.bin")
    assert got == {
        "client": "acme",
        "path": "office/firewall",
        "name": "running-config.bin",
        "size": 25 * MiB,
        "version": 2,
    }
    record = vault.secrets.get(operator(), "acme", "office/firewall")
    assert [a["name"] for a in record.attachments] == ["running-config.bin"]
    assert record.attachments[0]["size"] == 25 * MiB and "key" not in record.attachments[0]
    assert record.fields == {"password": "pw", "host": "fw1"}  # the fields are untouched
    back = vault.secrets.attachment(operator(), "acme", "office/firewall", "running-config.bin")
    assert back["data"] == data and back["size"] == 25 * MiB
    # one byte more is refused with one line, before anything is written
    with pytest.raises(InvalidInput, match="at most 25 MiB"):
        vault.secrets.attach(operator(), "acme", "office/firewall", data + b"x", name="big")
    assert len(_refs(vault)) == 1


def test_the_blob_is_opaque_and_bound_to_client_record_and_attachment(vault):
    data = payload(100_000)
    vault.secrets.attach(operator(), "acme", "office/firewall", data, name="a.cfg")
    vault.secrets.put(operator(), "acme", "other", "note", {"text": "t"})
    vault.secrets.attach(operator(), "acme", "other", payload(1000), name="a.cfg")
    (_, _, blob_a, _), *_ = _refs(vault)
    assert len(blob_a) == 40 and "a.cfg" not in blob_a  # a keyed hash, not the name
    stored = vault.ctx.blobs.get(blob_a)
    header = blobfmt.parse_header(stored, blobfmt.TYPE_ATTACHMENT)
    assert header.blob_type == blobfmt.TYPE_ATTACHMENT and header.record_version == 2
    with pytest.raises(Exception):  # noqa: B017 - a record blob reader refuses an attachment blob
        blobfmt.parse_header(stored)
    # the other record's attachment blob put in place of this one: refused (AAD names the record)
    other = [r for r in _refs(vault) if r[2] != blob_a][-1][2]
    vault.ctx.blobs.put(blob_a, vault.ctx.blobs.get(other))
    with pytest.raises(IntegrityFailure, match="attachment 'a.cfg' of acme/office/firewall"):
        vault.secrets.attachment(operator(), "acme", "office/firewall", "a.cfg")


@pytest.mark.parametrize("where", ["header", "middle", "tag", "truncated"])
def test_tamper_is_an_integrity_failure(vault, where):
    vault.secrets.attach(operator(), "acme", "office/firewall", payload(300_000), name="diagram.png")
    blob_name = _refs(vault)[0][2]
    data = bytearray(vault.ctx.blobs.get(blob_name))
    if where == "header":
        data[40] ^= 1
    elif where == "middle":
        data[len(data) // 2] ^= 0x80
    elif where == "tag":
        data[-1] ^= 1
    else:
        data = data[:-100]
    vault.ctx.blobs.put(blob_name, bytes(data))
    with pytest.raises(IntegrityFailure) as failed:
        vault.secrets.attachment(operator(), "acme", "office/firewall", "diagram.png")
    assert failed.value.exit_code == 6
    # the record itself still reads (its own blob is intact)
    assert vault.secrets.get(operator(), "acme", "office/firewall").fields["host"] == "fw1"


def test_every_write_keeps_attachments_and_restore_brings_back_an_older_set(vault):
    p = operator()
    one, two = payload(5000, b"ONE"), payload(7000, b"TWO")
    vault.secrets.attach(p, "acme", "office/firewall", one, name="one")  # v2
    vault.secrets.edit(p, "acme", "office/firewall", set_fields={"host": "fw2"})  # v3
    vault.secrets.put(p, "acme", "office/firewall", "access", {"password": "pw2", "host": "fw2"})  # v4
    vault.secrets.put(p, "acme", "office/firewall", "access", {"password": "pw3"}, replace=True)  # v5
    vault.secrets.attach(p, "acme", "office/firewall", two, name="two")  # v6
    names = [a["name"] for a in vault.secrets.get(p, "acme", "office/firewall").attachments]
    assert names == ["one", "two"]
    vault.secrets.detach(p, "acme", "office/firewall", name="one")  # v7
    assert [a["name"] for a in vault.secrets.get(p, "acme", "office/firewall").attachments] == ["two"]
    with pytest.raises(NotFound, match="has no attachment 'one'"):
        vault.secrets.attachment(p, "acme", "office/firewall", "one")
    # the older version still has it, and restore makes that set current again
    assert vault.secrets.attachment(p, "acme", "office/firewall", "one", version=6)["data"] == one
    vault.secrets.restore(p, "acme", "office/firewall", version=3)  # v8: fields of v3, attachment one
    record = vault.secrets.get(p, "acme", "office/firewall")
    assert [a["name"] for a in record.attachments] == ["one"] and record.fields["host"] == "fw2"
    assert vault.secrets.attachment(p, "acme", "office/firewall", "one")["data"] == one
    # delete and undelete (restore) carry them too
    vault.secrets.rm(p, "acme", "office/firewall")
    vault.secrets.restore(p, "acme", "office/firewall", version=8)
    assert vault.secrets.attachment(p, "acme", "office/firewall", "one")["data"] == one
    # same name again: replaced in the new version, the old bytes stay in the old one
    vault.secrets.attach(p, "acme", "office/firewall", two, name="one")
    assert vault.secrets.attachment(p, "acme", "office/firewall", "one")["data"] == two


def test_pruned_versions_take_their_attachments_with_them(vault):
    p = operator()
    vault.secrets.attach(p, "acme", "office/firewall", payload(2000), name="old")
    blob_old = _refs(vault)[0][2]
    vault.secrets.detach(p, "acme", "office/firewall", name="old")
    keep = int(vault.ctx.settings["keep_versions"])
    for i in range(keep):
        vault.secrets.edit(p, "acme", "office/firewall", set_fields={"host": f"h{i}"})
    assert blob_old not in set(vault.ctx.blobs.list())
    assert all(r[2] != blob_old for r in _refs(vault))
    assert ("delete", blob_old) in vault.ctx.db.all("SELECT op, blob_name FROM outbox")


def test_purge_destroys_every_attachment_blob(vault, vdir):
    p = operator()
    data = payload(3 * MiB)
    vault.secrets.attach(p, "acme", "office/firewall", data, name="backup.tgz")
    vault.secrets.attach(p, "acme", "office/firewall", payload(1000, b"SECOND-ATT"), name="b")
    blobs = {r[2] for r in _refs(vault)}
    assert len(blobs) == 2
    result = vault.secrets.rm(p, "acme", "office/firewall", purge=True)
    assert result["attachments_destroyed"] == 2 and result["versions_destroyed"] == 3
    assert not blobs & set(vault.ctx.blobs.list()) and _refs(vault) == []
    queued = {b for op, b in vault.ctx.db.all("SELECT op, blob_name FROM outbox") if op == "delete"}
    assert blobs <= queued
    for needle in (b"ATTACHMENT-PLAINTEXT-MARKER", b"SECOND-ATT", b"backup.tgz", data[1000:1032]):
        assert grep_tree(vdir.home, needle) == []


def test_shred_destroys_attachments_and_counts_them_on_the_certificate(tmp_path):
    from vault.principal import Principal

    system = Principal.system("sweep")
    clock = clock_at()
    vd = make_vault(tmp_path, clock=clock)
    v = vd.open(clock=clock)
    add_client(v, "acme", days=10)
    add_client(v, "globex")
    p = operator()
    v.secrets.put(p, "acme", "fw", "access", {"password": "pw"})
    v.secrets.attach(p, "acme", "fw", payload(2 * MiB), name="config.bak")
    v.secrets.attach(p, "acme", "fw", payload(1000, b"SECOND-ATT"), name="diagram.svg")
    v.secrets.put(p, "globex", "fw", "access", {"password": "pw"})
    v.secrets.attach(p, "globex", "fw", b"globex keeps this", name="keep.txt")
    acme_blobs = {
        r[0]
        for r in v.ctx.db.all(
            "SELECT a.blob_name FROM attachment_refs a JOIN records r ON r.id = a.record_id"
            " JOIN clients c ON c.id = r.client_id WHERE c.name = 'acme'"
        )
    }
    clock.advance(days=10 + 31)
    v.sla.sweep(system)
    cert = v.sla.certificate(p, "acme")["certificate"]
    assert cert["destroyed"]["attachments"] == 2
    local = cert["destroyed"]["blobs"][0]
    assert local["blobs"] == 5 and local["deleted"] == 5  # 3 record versions + 2 attachments
    assert not acme_blobs & set(v.ctx.blobs.list())
    assert v.secrets.attachment(p, "globex", "fw", "keep.txt")["data"] == b"globex keeps this"
    v.close()
    for needle in (b"ATTACHMENT-PLAINTEXT-MARKER", b"SECOND-ATT", b"config.bak", b"diagram.svg"):
        assert grep_tree(vd.home, needle) == []
    assert all(b"ATTACHMENT-PLAINTEXT" not in f.read_bytes() for f in files_under(vd.home))


def test_bad_names_and_missing_records_are_refused(vault):
    p = operator()
    for bad in ("", "a/b", "..", "x\ny", "c\\d", "n" * 256):
        with pytest.raises(InvalidInput):
            vault.secrets.attach(p, "acme", "office/firewall", b"data", name=bad)
    with pytest.raises(NotFound):
        vault.secrets.attach(p, "acme", "no/such", b"data", name="x")
    vault.secrets.rm(p, "acme", "office/firewall")
    with pytest.raises(NotFound, match="was deleted"):
        vault.secrets.attach(p, "acme", "office/firewall", b"data", name="x")
    assert _refs(vault) == []


def test_attach_and_read_are_audited_with_the_name_sealed(vault):
    p = operator()
    before = vault.ctx.db.scalar("SELECT max(seq) FROM audit_events")
    vault.secrets.attach(p, "acme", "office/firewall", b"x" * 10, name="secret-plan.pdf")
    vault.secrets.attachment(p, "acme", "office/firewall", "secret-plan.pdf")
    rows = vault.ctx.db.all(
        "SELECT action, outcome, detail_sealed FROM audit_events WHERE seq > ? ORDER BY seq", (before,)
    )
    assert [(a, o) for a, o, _ in rows if o == "allow"] == [("secret.put", "allow"), ("secret.get", "allow")]
    assert all(b"secret-plan" not in (d or b"") for _, _, d in rows)


# --- the CLI (a real subprocess) ---------------------------------------------------------------------


@pytest.mark.slow
def test_cli_attach_get_out_listing_and_limits(vdir, tmp_path):
    def ok(proc):
        assert proc.returncode == 0, proc.stderr
        return proc

    ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    ok(vdir.cli("secret", "put", "acme", "fw", "--type", "access", "--host", "fw1", input="pw\n"))
    src = tmp_path / "running config.txt"
    data = payload(25 * MiB)
    src.write_bytes(data)
    got = json.loads(ok(vdir.cli("secret", "attach", "acme", "fw", str(src), "--json", timeout=120)).stdout)
    assert got["name"] == "running config.txt" and got["size"] == 25 * MiB
    ok(vdir.cli("secret", "attach", "acme", "fw", str(src), "--name", "copy.txt", timeout=120))
    listing = json.loads(ok(vdir.cli("secret", "get", "acme", "fw", "--json")).stdout)["attachments"]
    assert [a["name"] for a in listing] == ["running config.txt", "copy.txt"]
    human = ok(vdir.cli("secret", "get", "acme", "fw")).stdout
    assert "running config.txt (25.0 MiB" in human
    out = tmp_path / "out.txt"
    ok(vdir.cli("secret", "get", "acme", "fw", "--attachment", "copy.txt", "--out", str(out), timeout=120))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert (out.stat().st_mode & 0o777) == 0o600
    again = vdir.cli("secret", "get", "acme", "fw", "--attachment", "copy.txt", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(25 * MiB + 1)
    refused = vdir.cli("secret", "attach", "acme", "fw", str(big))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "at most 25 MiB" in refused.stderr
    missing = vdir.cli("secret", "get", "acme", "fw", "--attachment", "nope", "--out", str(tmp_path / "n"))
    assert missing.returncode == 5 and "has no attachment 'nope'" in missing.stderr
    # tamper with the stored blob: exit 6, one line, nothing written
    v = vdir.open()
    ((blob_name,),) = v.ctx.db.all("SELECT blob_name FROM attachment_refs WHERE version = 2")  # the first
    stored = bytearray(v.ctx.blobs.get(blob_name))
    stored[1000] ^= 1
    v.ctx.blobs.put(blob_name, bytes(stored))
    v.close()
    bad = tmp_path / "bad.txt"
    broken = vdir.cli("secret", "get", "acme", "fw", "--attachment", "running config.txt", "--out", str(bad))
    assert broken.returncode == 6 and broken.stderr.count("\n") == 1, broken.stderr
    assert "integrity failure" in broken.stderr and not bad.exists()


# --- the OneDrive replica (fake Graph over HTTPS): an upload session above 4 MiB --------------------------


@pytest.mark.slow
def test_a_25_mib_attachment_replicates_through_an_upload_session_and_restores(
    vdir, remote_config, recording_sleep, fake_graph
):
    v = vdir.open(service_options={"sync": {"graph_options": {"sleep": recording_sleep}}})
    try:
        v.sync.configure(operator(), remote_config)
        add_client(v, "acme")
        v.secrets.put(operator(), "acme", "fw", "access", {"password": "pw"})
        data = payload(25 * MiB)
        v.secrets.attach(operator(), "acme", "fw", data, name="firmware.img")
        (blob_name,) = {r[0] for r in v.ctx.db.all("SELECT blob_name FROM attachment_refs")}
        result = v.sync.push(operator())
        assert result["failed"] == 0
        sessions = [r for r in fake_graph.log if r.path.endswith("createUploadSession")]
        assert sessions, "a blob above 4 MiB goes through an upload session"
        remote = {path.rsplit("/", 1)[-1]: body for path, body in fake_graph.files().items()}
        assert remote[blob_name] == v.ctx.blobs.get(blob_name)
        assert b"ATTACHMENT-PLAINTEXT-MARKER" not in remote[blob_name]
        # lost locally: sync pull restores it (verified under its key), and it reads back
        v.ctx.blobs.delete(blob_name)
        pulled = v.sync.pull(operator())
        assert pulled["restored"] == 1 and pulled["errors"] == []
        assert v.secrets.attachment(operator(), "acme", "fw", "firmware.img")["data"] == data
        # a corrupted copy is never taken for the attachment
        assert v.secrets.blob_is_authentic(blob_name, remote[blob_name][:-1] + b"\0") is False
        assert v.secrets.blob_is_authentic(blob_name, remote[blob_name]) is True
    finally:
        v.close()


def test_cli_out_dash_writes_the_exact_bytes_to_standard_output(vdir, tmp_path):
    assert vdir.cli("client", "add", "acme", "--sla-end", "+30d").returncode == 0
    assert vdir.cli("secret", "put", "acme", "fw", "--type", "access", input="pw\n").returncode == 0
    data = bytes(range(256)) * 4 + b"\r\n\x1b]0;title\x07 no newline at the end"
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    assert vdir.cli("secret", "attach", "acme", "fw", str(src), "--name", "b.bin").returncode == 0
    got = vdir.cli("secret", "get", "acme", "fw", "--attachment", "b.bin", "--out", "-", input=b"")
    assert got.returncode == 0, got.stderr
    assert got.stdout == data
    both = vdir.cli("secret", "get", "acme", "fw", "--attachment", "b.bin")
    assert both.returncode == 2 and "go together" in both.stderr
