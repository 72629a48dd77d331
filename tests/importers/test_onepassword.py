"""1Password .1pux import: the checked-in export folder zipped into a real archive; broken archives."""

from __future__ import annotations

import zipfile

import pytest

from tests.importers.builders import FIXTURES, onepassword_export, onepassword_login, write_1pux
from vault.errors import InvalidInput
from vault.importers import read_all


@pytest.fixture
def export(tmp_path):
    return write_1pux(tmp_path / "WJ2XJ5QCGNGJ3CLZ6ZWUYRRYGI.1pux", folder=FIXTURES / "onepassword")


def test_fixture_export(export):
    records, report = read_all("1password", export)
    got = {r.title: r for r in records}
    assert set(got) == {
        "Core switch",
        "Office access",
        "Rack diagram",
        "Guest Wi-Fi (old)",
        "Hyper-V host hv01",
        "Backup API key",
        "Deploy key",
    }
    switch = got["Core switch"]
    assert switch.client_hint == "Acme Corp" and switch.kind == "access"
    assert switch.source_id == "fmhbsbjphbbtxcbq3egt7dmrui"
    assert dict(switch.fields) == {
        "username": "netadmin",
        "password": "Sup3r-S3cret!",
        "url": "https://switch.acme.example",
        "notes": "Managed switch stack",
    }
    assert switch.totp.startswith("otpauth://totp/Acme:netadmin?secret=GEZDGNBVGY3TQOJQ")
    assert switch.tags == ("network", "tier1")
    custom = {c.name: (c.value, c.secret) for c in switch.custom_fields}
    assert custom == {
        "uri 2": ("https://switch2.acme.example", False),
        "domain": ("ACME", False),
        "Out of band / console password": ("C0ns0le-only", True),
        "Out of band / console server": ("oob.acme.example", False),
        "Out of band / renewal": ("2025-01-01", False),
    }
    backup = (FIXTURES / "onepassword/files/fvzm3kcxyhnplp2wl4jnfwcuza__fw01-backup.conf").read_bytes()
    assert [(a.name, a.data) for a in switch.attachments] == [("fw01-backup.conf", backup)]
    assert got["Office access"].kind == "note"
    assert got["Office access"].fields["text"].startswith("Alarm code")
    rack = got["Rack diagram"]
    assert rack.kind == "note" and rack.attachments[0].name == "rack.png"
    assert rack.attachments[0].data.startswith(b"\x89PNG\r\n\x1a\n")
    old = got["Guest Wi-Fi (old)"]
    assert old.fields["password"] == "Old-WiFi-guest-2019" and old.tags == ("archived",)
    hv = got["Hyper-V host hv01"]
    assert hv.client_hint == "Globex"
    assert hv.fields["url"] == "https://hv01.globex.example:6516"
    assert hv.fields["username"] == "GLOBEX\\svc-hv" and hv.fields["password"] == "Hv-Service-2024"
    assert {c.name: c.secret for c in hv.custom_fields} == {
        "Admin Console / admin console URL": False,
        "Admin Console / console password": True,
    }
    api = got["Backup API key"]
    assert (
        api.fields["api_token"] == "sk_live_FAKE_0123456789abcdef"
        and api.fields["host"] == "api.backup.example"
    )
    assert {c.name: c.value for c in api.custom_fields} == {"expires": "2026-12"}
    key = got["Deploy key"]
    assert key.fields["ssh_private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert report.skipped == {"credit card": 1, "identity": 1}
    assert report.read == 9 and report.mapped == 7


def test_vault_attrs_after_items_still_name_the_client(tmp_path):
    data = onepassword_export({"Acme": [onepassword_login("u1", "Router", "admin", "pw")]})
    vault = data["accounts"][0]["vaults"][0]
    data["accounts"][0]["vaults"][0] = {"items": vault["items"], "attrs": vault["attrs"]}  # items first
    (record,), _ = read_all("1password", write_1pux(tmp_path / "x.1pux", data))
    assert record.client_hint == "Acme"


def test_older_wrapped_items_and_item_file(tmp_path):
    item = onepassword_login("u1", "Router", "admin", "pw")
    data = onepassword_export(
        {"Acme": [{"item": item, "file": {"attrs": {"name": "notes.txt"}, "path": "files/abc"}}]}
    )
    path = write_1pux(tmp_path / "x.1pux", data, files={"abc": b"hello"})
    (record,), _ = read_all("1password", path)
    assert record.fields["password"] == "pw"
    assert [(a.name, a.data) for a in record.attachments] == [("notes.txt", b"hello")]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda p: p.write_bytes(b"not a zip at all"), "not a 1PUX export (not a ZIP archive)"),
        (lambda p: zipfile.ZipFile(p, "w").writestr("other.txt", "x"), "no export.data in the archive"),
        (
            lambda p: write_1pux(p, {"accounts": []}, attributes={"version": 99}),
            "unsupported 1PUX version 99",
        ),
        (
            lambda p: _raw_data(
                p, b'{"accounts": [{"attrs": {}, "vaults": [{"attrs": {"name": "A"}, "items": [{"uu'
            ),
            "export.data: the file ends early (truncated?)",
        ),
        (lambda p: _raw_data(p, b"[]"), "export.data is not a JSON object"),
    ],
    ids=["not-zip", "no-export-data", "unknown-version", "truncated-json", "array"],
)
def test_broken_archives(tmp_path, build, expected):
    path = tmp_path / "x.1pux"
    build(path)
    with pytest.raises(InvalidInput) as err:
        read_all("1password", path)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_truncated_zip(tmp_path, export):
    cut = tmp_path / "cut.1pux"
    cut.write_bytes(export.read_bytes()[:-200])
    with pytest.raises(InvalidInput, match="not a ZIP archive|damaged"):
        read_all("1password", cut)


def test_missing_attachment_names_the_entry(tmp_path):
    section = {
        "title": "",
        "fields": [
            {"title": "f", "id": "f", "value": {"file": {"fileName": "a.conf", "documentId": "gone"}}}
        ],
    }
    data = onepassword_export(
        {"Acme": [onepassword_login("u1", "Router", "admin", "Sup3r", sections=[section])]}
    )
    with pytest.raises(InvalidInput) as err:
        read_all("1password", write_1pux(tmp_path / "x.1pux", data))
    assert str(err.value) == "1Password: entry 1 ('Router'): attached file 'a.conf' is missing from files/"


def test_oversized_attachment_is_refused_before_reading(tmp_path):
    section = {
        "title": "",
        "fields": [{"title": "f", "id": "f", "value": {"file": {"fileName": "big", "documentId": "d1"}}}],
    }
    data = onepassword_export({"Acme": [onepassword_login("u1", "Router", "a", "p", sections=[section])]})
    path = write_1pux(tmp_path / "x.1pux", data, files={"d1__big": b"\0" * (25 * 1024 * 1024 + 1)})
    with pytest.raises(InvalidInput, match="attached file 'big' is larger than 25 MiB"):
        read_all("1password", path)


def _raw_data(path, data: bytes):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("export.attributes", '{"version": 3}')
        archive.writestr("export.data", data)
