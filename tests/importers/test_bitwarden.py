"""Bitwarden unencrypted JSON import: checked-in fixtures from the published format, malformed files."""

from __future__ import annotations

import json
import re

import pytest

from tests.importers.builders import FIXTURES, bitwarden_login, write_json
from vault.errors import InvalidInput
from vault.importers import read_all


def _by_title(records):
    out = {}
    for r in records:
        out.setdefault(r.title, []).append(r)
    return out


def test_personal_export():
    records, report = read_all("bitwarden", FIXTURES / "bitwarden_personal.json")
    got = _by_title(records)
    fw = got["Firewall admin"][0]
    assert fw.kind == "access" and fw.client_hint == "Acme Corp" and fw.path == "Firewall admin"
    assert fw.source_id == "5f1c2a8e-0000-4000-8000-000000000001"
    assert dict(fw.fields) == {
        "username": "admin",
        "password": "c0rrect-h0rse-Battery!",
        "url": "https://fw.acme.example:8443",
        "notes": "FortiGate 60F, rack 2",
    }
    assert fw.totp.startswith("otpauth://totp/Acme:admin?secret=JBSWY3DPEHPK3PXP")
    custom = {c.name: (c.value, c.secret) for c in fw.custom_fields}
    assert custom == {
        "uri 2": ("ssh://10.0.0.1", False),
        "support contract": ("FC-2024-118", False),
        "enable secret": ("En@ble-9931", True),  # hidden field (type 1)
        "HA pair": ("true", False),  # boolean field (type 2)
        "login alias": ("linked to username", False),  # linked field (type 3, linkedId 100)
    }
    m365 = got["Microsoft 365 global admin"][0]
    assert m365.totp == "JBSWY3DPEHPK3PXP JBSWY3DPEHPK3PXP"  # kept exactly as exported
    note = got["Core switch config notes"][0]
    assert note.kind == "note" and note.client_hint == "Globex/Network"
    assert note.fields["text"] == "VLAN 10 users\nVLAN 20 voice\r\nVLAN 99 management"
    ssh = got["Backup server key"][0]
    assert ssh.kind == "access" and ssh.fields["ssh_private_key"].startswith(
        "-----BEGIN OPENSSH PRIVATE KEY-----"
    )
    assert {c.name for c in ssh.custom_fields} == {"public key", "fingerprint"}
    # the second "Firewall admin" has no folder: another client hint, so no rename needed
    second = got["Firewall admin"][1]
    assert second.client_hint is None and second.path == "Firewall admin"
    assert "password" not in second.fields  # an empty password is no password
    by_type = report.as_dict()["by_type"]
    assert by_type["login"] == {"read": 3, "mapped": 3, "skipped": {}}
    assert by_type["card"] == {"read": 1, "mapped": 0, "skipped": {"card": 1}}
    assert by_type["identity"] == {"read": 1, "mapped": 0, "skipped": {"identity": 1}}
    assert by_type["secure_note"]["mapped"] == 1 and by_type["ssh_key"]["mapped"] == 1
    assert report.read == 7 and report.mapped == 5


def test_organisation_export_collections_become_client_hints():
    records, report = read_all("bitwarden", FIXTURES / "bitwarden_org.json")
    hints = {r.title: r.client_hint for r in records}
    assert hints == {
        "Our Shared Login": "Clients/Acme Corp",
        "Domain admin": "Clients/Globex",  # collectionIds written as one string, as in Bitwarden's sample
        "Shared VPN": "Clients/Globex",  # first of two collections, with a warning
        "Onboarding checklist": "Clients/Acme Corp",
    }
    assert any("2 collections" in w and "Shared VPN" in w for w in report.warnings)
    assert report.skipped == {"card": 1}
    vpn = next(r for r in records if r.title == "Shared VPN")
    assert vpn.fields["url"] == "vpn.example.net"


@pytest.mark.parametrize("fixture", ["bitwarden_encrypted_password.json", "bitwarden_encrypted_account.json"])
def test_encrypted_exports_are_refused(fixture):
    with pytest.raises(InvalidInput) as err:
        read_all("bitwarden", FIXTURES / fixture)
    message = str(err.value)
    assert "encrypted export" in message and "unencrypted" in message
    assert "\n" not in message and "2." not in message.split(":", 2)[2].split("(")[0]


def _items(tmp_path, items, **top):
    return write_json(tmp_path / "bw.json", {"encrypted": False, "folders": [], **top, "items": items})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '{"encrypted": false, "items": [{"type": 1, "name": "a", "login": {"password": "p1"}}, '
            '{"type": 1, "na',
            "the file ends early (truncated?) after entry 1",
        ),
        ('{"encrypted": false, "items": [', "the file ends early"),
        ("", "the file is empty"),
        ("[1, 2]", "top level is not an object"),
        ('{"encrypted": false, "folders": []}', "no 'items' list"),
        (
            '{"items": [{"type": 1, "name": "x", "login": {"password": "p"}},, ]}',
            "not valid JSON after entry 1",
        ),
        ('{"items": "nope"}', "'items' is not a list"),
        (b"\xef\xbb\xbf" + b'{"items": []}', None),  # a UTF-8 BOM is accepted
        (b'{"items": [{"type": 1, "name": "caf\xe9"}]}', "not valid JSON"),  # Latin-1, not UTF-8
    ],
    ids=[
        "truncated-in-item",
        "truncated-early",
        "empty",
        "array",
        "no-items",
        "bad-syntax",
        "items-string",
        "bom",
        "latin1",
    ],
)
def test_malformed_json(tmp_path, content, expected):
    path = tmp_path / "bw.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if expected is None:
        assert read_all("bitwarden", path)[0] == []
        return
    with pytest.raises(InvalidInput, match=re.escape(expected)) as err:
        read_all("bitwarden", path)
    assert "\n" not in str(err.value) and "p1" not in str(err.value)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"type": "1", "name": "Router"}, "entry 1 ('Router'): item 'type' is missing or not a number"),
        ({"type": 1, "name": "Router", "login": "admin:pw"}, "entry 1 ('Router'): 'login' is not an object"),
        (
            {"type": 1, "name": "Router", "login": {"password": {"v": "s3cret"}}},
            "entry 1 ('Router'): a value is",
        ),
        (
            {"type": 1, "name": "Router", "login": {"totp": "not-base32!"}},
            "entry 1 ('Router'): invalid TOTP seed",
        ),
        ({"type": 1, "name": "Router", "folderId": "nope"}, "refers to a folder that is not in the export"),
        ({"type": 1, "name": "Router", "collectionIds": ["nope"]}, "refers only to collections"),
        (
            {"type": 1, "name": "R", "login": {"username": "u\x00"}},
            "entry 1 ('R'): invalid access record: username",
        ),
        ({"type": 5, "name": "Key"}, "'sshKey' is missing"),
        ("just a string", "entry 1: an item is not a JSON object"),
    ],
)
def test_bad_entry_names_the_entry_and_never_the_secret(tmp_path, item, expected):
    with pytest.raises(InvalidInput) as err:
        read_all("bitwarden", _items(tmp_path, [item]))
    assert str(err.value).startswith("Bitwarden: ")
    assert expected in str(err.value)
    assert "s3cret" not in str(err.value) and "not-base32" not in str(err.value)


def test_unknown_and_deleted_items_are_counted(tmp_path):
    items = [
        bitwarden_login(1, "ok", "u", "p"),
        {"type": 9, "name": "future type"},
        {**bitwarden_login(2, "binned", "u", "p"), "deletedDate": "2024-01-01T00:00:00Z"},
    ]
    records, report = read_all("bitwarden", _items(tmp_path, items))
    assert [r.title for r in records] == ["ok"]
    assert report.skipped == {"unsupported item type": 1, "in trash": 1}
    assert report.read == 3


def test_folders_after_items_still_resolve(tmp_path):
    # key order is not guaranteed by JSON; the reader takes the names in a first pass
    path = tmp_path / "bw.json"
    doc = {
        "items": [bitwarden_login(1, "a", "u", "p", folderId="f1")],
        "folders": [{"id": "f1", "name": "Acme"}],
    }
    path.write_text(json.dumps(doc))
    assert read_all("bitwarden", path)[0][0].client_hint == "Acme"


def test_hotp_and_steam_otp_are_kept_as_secret_custom_fields(tmp_path):
    items = [
        bitwarden_login(
            1, "hotp", "u", "p", totp="otpauth://hotp/x?secret=JBSWY3DPEHPK3PXPJBSWY3DP&counter=1"
        ),
        bitwarden_login(2, "steam", "u", "p", totp="steam://JBSWY3DPEHPK3PXP"),
    ]
    records, report = read_all("bitwarden", _items(tmp_path, items))
    for r in records:
        assert r.totp is None
        (otp,) = [c for c in r.custom_fields if c.name == "one-time password"]
        assert otp.secret and otp.value.startswith(("otpauth://hotp", "steam://"))
    assert len(report.warnings) == 2


def test_long_uri_and_long_username_move_to_custom_fields(tmp_path):
    long_uri = "https://portal.example/" + "q" * 400
    items = [bitwarden_login(1, "long", "u" * 300, "p", uris=[{"uri": long_uri}])]
    (record,), _ = read_all("bitwarden", _items(tmp_path, items))
    assert "url" not in record.fields and "username" not in record.fields
    custom = {c.name: c.value for c in record.custom_fields}
    assert custom == {"uri": long_uri, "username": "u" * 300}
