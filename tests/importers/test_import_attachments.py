"""Imported attachments (issue 18 item 1 with issue 16 item 5; docs/import.md, "Attachments").

KeePass ``Binary`` attachments (a real KDBX written by pykeepass here) and 1Password 1PUX files
(``files/<documentId>__<fileName>`` in the archive) are stored as ``secret attach`` stores a file:
their own key, an opaque blob name, a header binding client, record and attachment. They read
back byte for byte, a second run changes nothing, a changed file is a new version, an oversized
one is one line naming the entry and nothing is imported, and no plaintext of any of them is left
in the vault folder.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers import add_client, grep_tree, operator
from tests.importers.builders import (
    KpEntry,
    onepassword_export,
    onepassword_login,
    write_1pux,
    write_kdbx,
)
from vault.errors import InvalidInput


def _marker(tag: str, size: int = 4096) -> bytes:
    """Bytes a plaintext scan can find: a unique marker, then random bytes (incompressible, so a
    compressed copy would not hide them either: the scan also looks for a slice of them)."""
    return f"ATTACHMENT-PLAINTEXT-{tag}-".encode() + os.urandom(size)


@pytest.fixture
def two_clients(vdir):
    v = vdir.open()
    add_client(v, "acme")
    add_client(v, "globex")
    yield vdir, v
    v.close()


def _kdbx(tmp_path, files: dict[str, dict[str, bytes]], name: str = "clients.kdbx"):
    entries = [
        KpEntry(title, "admin", f"pw-{title}", group=("Clients", group), attachments=attached)
        for (group, title), attached in (
            (("Acme Corp", "Firewall"), files.get("Firewall", {})),
            (("Acme Corp", "Switch"), files.get("Switch", {})),
            (("Globex", "Router"), files.get("Router", {})),
        )
    ]
    return write_kdbx(tmp_path / name, entries, password="pw")


KP_MAP = {"Clients/Acme Corp": "acme", "Clients/Globex": "globex"}


def _attachments(v, client: str, path: str) -> dict[str, bytes]:
    listed = v.secrets.get(operator(), client, path).attachments
    return {a["name"]: v.secrets.attachment(operator(), client, path, a["name"])["data"] for a in listed}


def test_keepass_attachments_round_trip_once_and_leave_no_plaintext(two_clients, tmp_path):
    vdir, v = two_clients
    files = {
        "Firewall": {"fw01.conf": _marker("fw-conf"), "diagram.png": b"\x89PNG\r\n\x1a\n" + _marker("png")},
        "Router": {"router.cfg": _marker("router"), "empty.txt": b""},
    }
    path = _kdbx(tmp_path, files)

    dry = v.secrets.import_file(operator(), "keepass", path, clients=KP_MAP, password="pw", dry_run=True)
    assert {c["client"]: c["attachments"] for c in dry["clients"]} == {"acme": 2, "globex": 2}
    assert v.secrets.list(operator(), "acme") == []

    first = v.secrets.import_file(operator(), "keepass", path, clients=KP_MAP, password="pw")
    assert {c["client"]: c["attachments"] for c in first["clients"]} == {"acme": 2, "globex": 2}
    assert _attachments(v, "acme", "Firewall") == files["Firewall"]
    assert _attachments(v, "globex", "Router") == files["Router"]
    assert _attachments(v, "acme", "Switch") == {}
    # one version per attached file after the record's own (the path of secret attach)
    versions = {r["path"]: r["version"] for r in v.secrets.list(operator(), "acme")}
    assert versions == {"Firewall": 3, "Switch": 1}

    second = v.secrets.import_file(operator(), "keepass", path, clients=KP_MAP, password="pw")
    for c in second["clients"]:
        assert (c["new"], c["changed"], c["conflicts"], c["written"]) == ([], [], [], False), c
    assert sum(c["unchanged"] for c in second["clients"]) == 3
    assert {r["path"]: r["version"] for r in v.secrets.list(operator(), "acme")} == versions

    v.close()
    for attached in files.values():
        for data in attached.values():
            if data:
                assert grep_tree(vdir.home, data[:24]) == []
                assert grep_tree(vdir.home, data[-64:]) == []


def test_a_changed_attachment_is_a_new_version_with_exactly_the_files_of_the_file(two_clients, tmp_path):
    _, v = two_clients
    old = {"Firewall": {"fw01.conf": _marker("old"), "notes.txt": b"keep me"}}
    v.secrets.import_file(operator(), "keepass", _kdbx(tmp_path, old), clients=KP_MAP, password="pw")
    new = {"Firewall": {"fw01.conf": _marker("new")}}  # one file changed, the other gone
    again = v.secrets.import_file(
        operator(), "keepass", _kdbx(tmp_path, new, "v2.kdbx"), clients=KP_MAP, password="pw"
    )
    acme = next(c for c in again["clients"] if c["client"] == "acme")
    assert [r["path"] for r in acme["changed"]] == ["Firewall"] and acme["unchanged"] == 1
    assert _attachments(v, "acme", "Firewall") == new["Firewall"]
    # versions 1-3 were the first import (fields, then one file each); 4 and 5 this one: version
    # 3 still lists the old files (history, restore)
    assert [h["version"] for h in v.secrets.history(operator(), "acme", "Firewall")] == [1, 2, 3, 4, 5]
    assert v.secrets.attachment(operator(), "acme", "Firewall", "notes.txt", 3)["data"] == b"keep me"
    assert (
        v.secrets.attachment(operator(), "acme", "Firewall", "fw01.conf", 3)["data"]
        == old["Firewall"]["fw01.conf"]
    )


def test_an_attachment_added_by_hand_is_never_overwritten(two_clients, tmp_path):
    _, v = two_clients
    path = _kdbx(tmp_path, {"Firewall": {"fw01.conf": b"from keepass"}})
    v.secrets.import_file(operator(), "keepass", path, clients=KP_MAP, password="pw")
    v.secrets.attach(operator(), "acme", "Firewall", b"by hand", name="photo.jpg")
    again = v.secrets.import_file(operator(), "keepass", path, clients=KP_MAP, password="pw")
    acme = next(c for c in again["clients"] if c["client"] == "acme")
    assert [r["path"] for r in acme["conflicts"]] == ["Firewall"]
    assert _attachments(v, "acme", "Firewall") == {"fw01.conf": b"from keepass", "photo.jpg": b"by hand"}


def test_an_oversized_attachment_names_the_entry_and_nothing_is_imported(two_clients, tmp_path):
    _, v = two_clients
    big = b"\x00" * (25 * 1024 * 1024 + 1)
    path = _kdbx(tmp_path, {"Firewall": {"small.txt": b"ok"}, "Router": {"image.bin": big}})
    with pytest.raises(InvalidInput) as err:
        v.secrets.import_file(operator(), "keepass", path, clients=KP_MAP, password="pw")
    assert str(err.value) == "KeePass: entry 3 ('Router'): attachment 'image.bin' is larger than 25 MiB"
    assert v.secrets.list(operator(), "acme") == [] and v.secrets.list(operator(), "globex") == []


def test_onepassword_files_round_trip_once(two_clients, tmp_path):
    vdir, v = two_clients
    config, photo = _marker("1p-conf"), _marker("1p-photo")

    def file_field(document_id: str, name: str, size: int) -> dict:
        return {
            "title": name,
            "id": document_id,
            "value": {"file": {"fileName": name, "documentId": document_id, "fileSize": size}},
        }

    switch = onepassword_login(
        "s" * 26,
        "Core switch",
        "netadmin",
        "Sw-pw",
        sections=[{"title": "files", "fields": [file_field("doc1", "switch.conf", len(config))]}],
    )
    rack = onepassword_login(
        "r" * 26,
        "Rack",
        "x",
        "Rack-pw",
        sections=[{"title": "", "fields": [file_field("doc2", "rack photo.jpg", len(photo))]}],
    )
    archive = write_1pux(
        tmp_path / "export.1pux",
        onepassword_export({"Acme Corp": [switch], "Globex": [rack]}),
        files={"doc1__switch.conf": config, "doc2__rack photo.jpg": photo},
    )
    clients = {"Acme Corp": "acme", "Globex": "globex"}
    v.secrets.import_file(operator(), "1password", archive, clients=clients)
    assert _attachments(v, "acme", "Core switch") == {"switch.conf": config}
    assert _attachments(v, "globex", "Rack") == {"rack photo.jpg": photo}
    second = v.secrets.import_file(operator(), "1password", archive, clients=clients)
    assert (
        all(not c["written"] for c in second["clients"])
        and sum(c["unchanged"] for c in second["clients"]) == 2
    )
    v.close()
    for data in (config, photo):
        assert grep_tree(vdir.home, data[:24]) == [] and grep_tree(vdir.home, data[-64:]) == []


def test_the_cli_imports_attachments_and_gets_them_back(vdir, tmp_path):
    """Through the real CLI: ``import --from keepass`` then ``secret get --attachment N --out F``
    gives the same bytes; the summary counts them and prints no content."""
    v = vdir.open()
    add_client(v, "acme")
    add_client(v, "globex")
    v.close()
    data = _marker("cli")
    path = _kdbx(tmp_path, {"Switch": {"stack.cfg": data}})
    proc = vdir.cli(
        "--json",
        "import",
        "--from",
        "keepass",
        str(path),
        "--client-map",
        "Clients/Acme Corp=acme",
        "--client-map",
        "Clients/Globex=globex",
        "--password-stdin",
        input="pw\n",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert {c["client"]: c["attachments"] for c in summary["clients"]} == {"acme": 1, "globex": 0}
    assert data[:24] not in (proc.stdout + proc.stderr).encode()
    out = tmp_path / "got.cfg"
    got = vdir.cli("secret", "get", "acme", "Switch", "--attachment", "stack.cfg", "--out", str(out))
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == data


def test_bitwarden_attachments_are_counted_and_warned_not_invented(two_clients, tmp_path):
    """A Bitwarden JSON export holds no file contents; an item listing attachments (``bw list
    items`` output: id, fileName, size, url) gets its fields imported, and the files are counted
    (``attachments_not_imported``) and named in a warning, never fetched or faked."""
    from tests.importers.builders import bitwarden_login, write_json

    _, v = two_clients
    item = bitwarden_login(1, "Firewall", "admin", "Bw-pw-1")
    item["attachments"] = [
        {"id": "att1", "fileName": "fw.conf", "size": "1024", "url": "https://example.invalid/a"},
        {"id": "att2", "fileName": "cert.pem", "size": "2048", "url": "https://example.invalid/b"},
    ]
    path = write_json(tmp_path / "bw.json", {"encrypted": False, "folders": [], "items": [item]})
    got = v.secrets.import_file(operator(), "bitwarden", path, default_client="acme")
    assert got["attachments_not_imported"] == 2
    assert any("2 attachment(s) listed but not in the export" in w for w in got["warnings"]), got
    assert got["clients"][0]["attachments"] == 0
    assert v.secrets.get(operator(), "acme", "Firewall").fields["password"] == "Bw-pw-1"
    assert list(v.secrets.get(operator(), "acme", "Firewall").attachments) == []
