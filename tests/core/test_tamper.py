"""Tampering with blobs or wrapped keys: exit 6, one line naming the record, never wrong plaintext."""

import shutil
import sqlite3

import pytest

from tests.helpers import add_client, operator


def _setup(vdir):
    v = vdir.open()
    add_client(v, "acme")
    add_client(v, "globex")
    p = operator()
    v.secrets.put(p, "acme", "office/firewall", "access", {"password": "fw-pass-1"})
    v.secrets.put(p, "acme", "office/firewall", "access", {"password": "fw-pass-2"})
    v.secrets.put(p, "acme", "office/router", "access", {"password": "router-pass"})
    v.secrets.put(p, "globex", "office/firewall", "access", {"password": "globex-pass"})
    names = {}
    for client, path in (
        ("acme", "office/firewall"),
        ("acme", "office/router"),
        ("globex", "office/firewall"),
    ):
        c = v.ctx.client(client)
        rows = v.ctx.db.all(
            "SELECT v.version, v.blob_name FROM record_versions v JOIN records r ON r.id = v.record_id"
            " WHERE r.client_id = ? AND r.path_tag = ? ORDER BY v.version",
            (c.id, v.ctx.client_keys(c).path_tag(path)),
        )
        names[(client, path)] = [vdir.home / "blobs" / n[:2] / n for _, n in rows]
    v.close()
    return names


def _assert_integrity_failure(proc, record):
    assert proc.returncode == 6, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("cvault: integrity failure") and record in lines[0]
    assert "pass" not in proc.stdout


@pytest.mark.parametrize("offset", [0, 4, 5, 6, 25, 40, 48, 55, 62, 70, -17, -1])
def test_flipped_byte_anywhere_in_a_blob(vdir, offset):
    names = _setup(vdir)
    target = names[("acme", "office/firewall")][-1]
    data = bytearray(target.read_bytes())
    data[offset] ^= 0x40
    target.write_bytes(bytes(data))
    _assert_integrity_failure(vdir.cli("secret", "get", "acme", "office/firewall"), "acme/office/firewall")


def test_truncated_blob(vdir):
    names = _setup(vdir)
    target = names[("acme", "office/firewall")][-1]
    target.write_bytes(target.read_bytes()[:30])
    _assert_integrity_failure(vdir.cli("secret", "get", "acme", "office/firewall"), "acme/office/firewall")


def test_blobs_swapped_within_a_client(vdir):
    names = _setup(vdir)
    a, b = names[("acme", "office/firewall")][-1], names[("acme", "office/router")][-1]
    tmp = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(tmp)
    _assert_integrity_failure(vdir.cli("secret", "get", "acme", "office/firewall"), "acme/office/firewall")
    _assert_integrity_failure(vdir.cli("secret", "get", "acme", "office/router"), "acme/office/router")


def test_blob_swapped_across_clients(vdir):
    names = _setup(vdir)
    shutil.copyfile(names[("globex", "office/firewall")][-1], names[("acme", "office/firewall")][-1])
    _assert_integrity_failure(vdir.cli("secret", "get", "acme", "office/firewall"), "acme/office/firewall")


def test_old_version_blob_in_place_of_current(vdir):
    names = _setup(vdir)
    old, current = names[("acme", "office/firewall")]
    shutil.copyfile(old, current)
    _assert_integrity_failure(vdir.cli("secret", "get", "acme", "office/firewall"), "acme/office/firewall")
    # the old version itself still reads correctly
    ok = vdir.cli("secret", "get", "acme", "office/firewall", "--version", "1", "--field", "password")
    assert ok.returncode == 0 and ok.stdout.strip() == "fw-pass-1"


def _edit_db(vdir, sql, params=()):
    conn = sqlite3.connect(vdir.home / "vault.db")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_edited_wrapped_record_key(vdir):
    _setup(vdir)
    _edit_db(
        vdir,
        "UPDATE record_versions SET wrapped_dek = substr(wrapped_dek, 1, 20) ||"
        " x'00' || substr(wrapped_dek, 22) WHERE version = 2",
    )
    _assert_integrity_failure(vdir.cli("secret", "get", "acme", "office/firewall"), "acme/office/firewall")


def test_wrapped_record_key_moved_to_another_version(vdir):
    _setup(vdir)
    _edit_db(
        vdir,
        "UPDATE record_versions SET wrapped_dek = (SELECT wrapped_dek FROM record_versions"
        " WHERE version = 1 ORDER BY record_id LIMIT 1) WHERE version = 2",
    )
    _assert_integrity_failure(vdir.cli("secret", "get", "acme", "office/firewall"), "acme/office/firewall")


def test_edited_wrapped_client_key(vdir):
    _setup(vdir)
    _edit_db(
        vdir,
        "UPDATE client_keys SET wrapped = substr(wrapped, 1, 15) || x'ff' ||"
        " substr(wrapped, 17) WHERE client_id = (SELECT id FROM clients WHERE name='acme')",
    )
    proc = vdir.cli("secret", "get", "acme", "office/firewall")
    assert proc.returncode == 6 and "client acme" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # the other client is untouched
    assert (
        vdir.cli("secret", "get", "globex", "office/firewall", "--field", "password").stdout.strip()
        == "globex-pass"
    )


def test_doctor_reports_tampering(vdir):
    names = _setup(vdir)
    target = names[("acme", "office/router")][-1]
    data = bytearray(target.read_bytes())
    data[-3] ^= 1
    target.write_bytes(bytes(data))
    proc = vdir.cli("doctor")
    assert proc.returncode == 6
    assert "acme/office/router" in proc.stdout
