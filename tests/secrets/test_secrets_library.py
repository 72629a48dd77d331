"""Records through the facade: versions, pruning, delete markers, purge, rotation, import/export."""

import json
import os
import stat

import pytest

from tests.helpers import add_client, clock_at, make_vault, operator
from vault.audit.checkpoints import BLOB_PREFIX as CHECKPOINT_BLOB_PREFIX
from vault.errors import InvalidInput, NotFound


@pytest.fixture
def vault(tmp_path):
    vd = make_vault(tmp_path, clock=clock_at())
    v = vd.open(clock=clock_at())
    add_client(v, "acme")
    add_client(v, "globex")
    yield v
    v.close()


def put(v, path, password, client="acme", **extra):
    return v.secrets.put(operator(), client, path, "access", {"password": password, **extra})


def test_put_get_roundtrip_and_versions(vault):
    assert put(vault, "office/firewall", "pw-1", host="10.0.0.1")["version"] == 1
    assert put(vault, "office/firewall", "pw-2", host="10.0.0.1")["version"] == 2
    rec = vault.secrets.get(operator(), "acme", "office/firewall")
    assert rec.version == 2 and rec.fields == {"password": "pw-2", "host": "10.0.0.1"}
    assert vault.secrets.get(operator(), "acme", "office/firewall", version=1).fields["password"] == "pw-1"
    with pytest.raises(NotFound):
        vault.secrets.get(operator(), "globex", "office/firewall")


def record_blobs(vault) -> list[str]:
    """The store's record blobs (the store also holds the signed audit checkpoint copies,
    ``audit-checkpoint-N``: docs/audit.md, which a record's history or purge never touches)."""
    return [name for name in vault.ctx.blobs.list() if not name.startswith(CHECKPOINT_BLOB_PREFIX)]


def test_only_the_last_ten_versions_are_kept_and_older_blobs_are_deleted(vault):
    for i in range(13):
        put(vault, "a/b", f"pw-{i}")
    history = vault.secrets.history(operator(), "acme", "a/b")
    assert [h["version"] for h in history] == list(range(4, 14))
    with pytest.raises(NotFound):
        vault.secrets.get(operator(), "acme", "a/b", version=3)
    rows = vault.ctx.db.all("SELECT count(*) FROM record_versions")[0][0]
    assert rows == 10
    assert len(record_blobs(vault)) == 10
    deletes = vault.ctx.db.all("SELECT count(*) FROM outbox WHERE op = 'delete'")[0][0]
    assert deletes == 3


def test_kind_is_fixed_per_record(vault):
    put(vault, "x", "pw")
    with pytest.raises(InvalidInput, match="is a access record"):
        vault.secrets.put(operator(), "acme", "x", "note", {"text": "hello"})


def test_rm_leaves_a_marker_and_put_revives(vault):
    put(vault, "x", "pw-1")
    vault.secrets.rm(operator(), "acme", "x")
    with pytest.raises(NotFound, match="was deleted"):
        vault.secrets.get(operator(), "acme", "x")
    assert vault.secrets.list(operator(), "acme") == []
    assert vault.secrets.get(operator(), "acme", "x", version=1).fields["password"] == "pw-1"
    assert put(vault, "x", "pw-3")["version"] == 3


def test_purge_destroys_every_version(vault):
    put(vault, "x", "pw-1")
    put(vault, "x", "pw-2")
    result = vault.secrets.rm(operator(), "acme", "x", purge=True)
    assert result["versions_destroyed"] == 2
    with pytest.raises(NotFound):
        vault.secrets.get(operator(), "acme", "x", version=1)
    assert record_blobs(vault) == []
    assert vault.ctx.db.all("SELECT count(*) FROM record_versions")[0][0] == 0


def test_rotation_rewraps_and_destroys_the_old_key(vault):
    put(vault, "x", "pw-1")
    put(vault, "y", "pw-2")
    before = vault.ctx.db.all("SELECT wrapped FROM client_keys")
    result = vault.clients.rotate_key(operator(), "acme")
    assert result == {"name": "acme", "key_version": 2, "records": 2, "fingerprint": result["fingerprint"]}
    versions = vault.ctx.db.all(
        "SELECT version FROM client_keys c JOIN clients k ON k.id = c.client_id WHERE k.name = 'acme'"
    )
    assert versions == [(2,)]
    assert vault.secrets.get(operator(), "acme", "x").fields["password"] == "pw-1"
    assert vault.secrets.get(operator(), "acme", "y").fields["password"] == "pw-2"
    assert vault.ctx.db.all("SELECT wrapped FROM client_keys") != before


def test_import_is_all_or_nothing_and_export_roundtrips(vault, tmp_path):
    lines = [
        json.dumps({"path": f"site/{i}", "kind": "note", "fields": {"text": f"t{i}"}}) for i in range(50)
    ]
    bad = lines + [
        json.dumps({"path": "site/bad", "kind": "network", "fields": {"addresses": ["999.1.1.1"]}})
    ]
    with pytest.raises(InvalidInput, match="line 51"):
        vault.secrets.import_records(operator(), "acme", bad)
    assert vault.secrets.list(operator(), "acme") == []
    assert vault.secrets.import_records(operator(), "acme", lines)["imported"] == 50
    out = tmp_path / "export.jsonl"
    assert vault.secrets.export(operator(), "acme", out)["exported"] == 50
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(e["path"] for e in exported) == sorted(f"site/{i}" for i in range(50))
    with pytest.raises(InvalidInput, match="already exists"):
        vault.secrets.export(operator(), "acme", out)
    # the export is importable as is into another client
    assert vault.secrets.import_records(operator(), "globex", out.read_text().splitlines())["imported"] == 50


@pytest.mark.parametrize(
    "kind,fields,message",
    [
        ("network", {"addresses": ["10.0.0.0/33"]}, "addresses"),
        ("network", {"vlan": 5000}, "vlan"),
        ("network", {"gateway": "nope"}, "gateway"),
        ("account", {"password": "x"}, "username"),
        ("account", {"username": "bob", "email": "not-an-email"}, "email"),
        ("access", {"port": 70000}, "port"),
        ("access", {"host": "a\x00b"}, "host"),
        ("note", {}, "text"),
        ("note", {"text": "x", "extra": 1}, "extra"),
        ("bogus", {}, "unknown record type"),
    ],
)
def test_invalid_records_are_refused_with_one_line(vault, kind, fields, message):
    with pytest.raises(InvalidInput) as err:
        vault.secrets.put(operator(), "acme", "r", kind, fields)
    assert message in err.value.message and "\n" not in err.value.message


def test_record_size_limit(vault):
    with pytest.raises(InvalidInput, match="too large"):
        vault.secrets.put(operator(), "acme", "big", "note", {"text": "x" * (1024 * 1024)})
    vault.secrets.put(operator(), "acme", "big", "note", {"text": "x" * (1024 * 1024 - 100)})


@pytest.mark.parametrize(
    "path", ["", "/x", "x/", "a//b", "../x", "a/./b", "a\nb", "x" * 300, "/".join("a" * 9)]
)
def test_bad_paths_are_refused(vault, path):
    with pytest.raises(InvalidInput):
        put(vault, path, "pw")


def test_validation_errors_never_echo_secret_values(vault):
    with pytest.raises(InvalidInput) as err:
        vault.secrets.put(operator(), "acme", "w", "network", {"wifi_key": "short"})
    assert "short" not in err.value.message


def test_purge_with_a_concurrent_reader_reports_the_pending_scrub_and_doctor_finishes_it(tmp_path):
    """The destroyed keys' old page images stay while another connection pins the WAL; the purge
    says so instead of claiming success, and doctor completes the scrub once the reader is gone."""
    import sqlite3

    from tests.helpers import grep_tree

    vd = make_vault(tmp_path)
    v = vd.open()
    add_client(v, "acme")
    put(v, "people/jsmith", "jsmith-password")
    wrapped = v.ctx.db.one("SELECT wrapped_dek FROM record_versions")[0]
    v.ctx.db.checkpoint_truncate()
    reader = sqlite3.connect(vd.home / "vault.db")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM record_versions").fetchone()  # an open read snapshot
    result = v.secrets.rm(operator(), "acme", "people/jsmith", purge=True)
    assert result["purged"] and result["scrubbed"] is False
    reader.execute("COMMIT")
    reader.close()
    assert v.maintenance.doctor(operator()).ok
    v.close()
    assert grep_tree(vd.home, bytes(wrapped)) == []
