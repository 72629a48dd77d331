"""IT Glue, Hudu and generic CSV import: RFC 4180 (quoted newlines, BOM, CRLF), UTF-8 only."""

from __future__ import annotations

import pytest

from tests.importers.builders import FIXTURES, write_csv
from vault.errors import InvalidInput
from vault.importers import open_source, read_all


def test_itglue_export():
    raw = (FIXTURES / "itglue_passwords.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw  # the fixture really has both
    records, report = read_all("itglue", FIXTURES / "itglue_passwords.csv")
    assert [(r.client_hint, r.path) for r in records] == [
        ("Acme Corp", "Firewall admin"),
        ("Acme Corp", "Domain admin"),
        ("Globex", "Wi-Fi PSK"),
        ("Globex", "Firewall admin"),
    ]
    fw = records[0]
    assert fw.source_id == "1001"
    assert fw.fields["password"] == 'Fw,pass"word'
    assert fw.fields["notes"] == "Rack 2\r\nsecond line"  # quoted CRLF inside the field, kept
    assert fw.totp == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    assert fw.tags == ("Network",)
    dc = records[1]
    assert dc.fields["username"] == "ACME\\administrator"
    assert {c.name: (c.value, c.secret) for c in dc.custom_fields} == {
        "resource_type": ("configurations", False),
        "resource_id": ("4411", False),
    }
    wifi = records[2]
    assert wifi.fields["password"] == " Leading and trailing spaces "
    assert "username" not in wifi.fields and wifi.tags == ("Wireless", "archived")
    assert report.read == report.mapped == 4


def test_hudu_export():
    records, report = read_all("hudu", FIXTURES / "hudu_passwords.csv")
    assert [r.client_hint for r in records] == ["Acme Corp", "Acme Corp", "Initech"]
    bg = records[1]
    assert bg.fields["password"] == "Br3ak-Gl4ss-#1"
    assert bg.fields["notes"] == 'Stored offline too; "never" rotate without CAB'
    assert bg.totp == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    assert bg.tags == ("Cloud",)
    appliance = records[0]
    assert appliance.tags == ("Appliance", "Infrastructure")
    assert {c.name: c.value for c in appliance.custom_fields} == {
        "passwordable_type": "Asset",
        "passwordable_id": "901",
    }
    assert records[2].fields == {"password": "1234-5678"}
    assert report.warnings == []  # every column known


def test_hudu_spelled_out_headers_and_unknown_column(tmp_path):
    path = write_csv(
        tmp_path / "h.csv",
        ["Company Name", "Name", "Username", "Password", "OTP Secret", "Notes", "Recovery Codes"],
        [["Acme", "Portal", "me", "pw1", "", "n", "1111-2222 3333-4444"]],
    )
    (record,), report = read_all("hudu", path)
    assert record.client_hint == "Acme" and record.fields["notes"] == "n"
    (codes,) = record.custom_fields
    assert (codes.name, codes.value, codes.secret) == ("Recovery Codes", "1111-2222 3333-4444", True)
    assert report.warnings == ["columns kept as secret custom fields: 'Recovery Codes'"]


def test_vendor_csv_without_required_columns(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["organization", "username"], [["Acme", "u"]])
    with pytest.raises(InvalidInput, match="not a IT Glue passwords export: no 'name', 'password' column"):
        read_all("itglue", path)


def test_generic_csv_with_mapping():
    mapping = {
        "Customer": "client",
        "Device": "title",
        "Login": "username",
        "Secret": "password",
        "Port": "port",
        "Address": "host",
        "Remarks": "notes",
        "Internal ref": "custom:internal ref",
    }
    records, _ = read_all("csv", FIXTURES / "generic.csv", mapping=mapping)
    assert [(r.client_hint, r.path, r.fields["port"]) for r in records] == [
        ("Acme Corp", "edge-router", 22),
        ("Acme Corp", "nas", 443),
        ("Globex", "edge-router", 2222),
    ]
    assert records[0].fields["notes"] == "serial console\non port 1"
    assert records[0].custom_fields[0].value == "X-1" and not records[0].custom_fields[0].secret


def test_generic_csv_network_kind_and_per_row_kind(tmp_path):
    path = write_csv(
        tmp_path / "n.csv",
        ["site", "ssid", "psk", "dns", "kind", "text"],
        [
            ["HQ", "acme-staff", "Wpa2-Passphrase!", "1.1.1.1; 9.9.9.9", "network", ""],
            ["", "", "", "", "note", "door code 4321"],
        ],
    )
    mapping = {
        "site": "site",
        "ssid": "wifi_ssid",
        "psk": "wifi_key",
        "dns": "dns_servers",
        "kind": "kind",
        "text": "text",
    }
    records, _ = read_all("csv", path, mapping=mapping, kind="network")
    assert records[0].kind == "network"
    assert records[0].fields["dns_servers"] == ["1.1.1.1", "9.9.9.9"]
    assert records[0].fields["wifi_key"] == "Wpa2-Passphrase!"
    assert records[1].kind == "note" and records[1].fields["text"] == "door code 4321"
    assert [r.path for r in records] == ["row 1", "row 2"]  # no title column mapped


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            {"Customer": "client", "Device": "colour"},
            "--map Device=colour: unknown field 'colour' for kind 'access'",
        ),
        ({"Device": "title", "Login": "title"}, "both map to 'title'"),
        ({"Device": "custom:"}, "a custom field needs a name"),
        ({}, "needs a column mapping"),
    ],
)
def test_generic_csv_bad_mapping(mapping, expected):
    with pytest.raises(InvalidInput, match=expected):
        open_source("csv", FIXTURES / "generic.csv", mapping=mapping)


def test_generic_csv_unmapped_or_missing_columns(tmp_path):
    with pytest.raises(
        InvalidInput, match="columns not mapped: 'Port', 'Address', 'Remarks', 'Internal ref'"
    ):
        read_all(
            "csv",
            FIXTURES / "generic.csv",
            mapping={"Customer": "client", "Device": "title", "Login": "username", "Secret": "password"},
        )
    with pytest.raises(InvalidInput, match="--map names columns that are not in the file: 'hostname'"):
        read_all("csv", FIXTURES / "generic.csv", mapping={"hostname": "host"})


def test_generic_csv_bad_value_names_row_not_value(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["t", "p", "port"], [["a", "pw", "22"], ["b", "Sekr1t", "ssh"]])
    with pytest.raises(InvalidInput) as err:
        read_all("csv", path, mapping={"t": "title", "p": "password", "port": "port"})
    assert str(err.value) == "CSV: row 2 (ending on line 3) ('b'): column 'port' (port) is not a whole number"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'name,password\r\na,"unterminated\r\n', "row 1 (line 2): bad CSV: unexpected end of data"),
        (b'name,password\r\na,"x"y\r\n', "bad CSV: ',' expected after '\"'"),
        (b"name,password\r\na,b,c\r\n", "row 1 (ending on line 2): has 3 fields but the header has 2"),
        (b"name,password\r\na,caf\xe9\r\n", "not UTF-8 text"),
        ("name,password\r\na,b\r\n".encode("utf-16"), "the file is UTF-16 text; save it as UTF-8"),
        (b"", "the file is empty (no header row)"),
        (b"name,password\r\na,b\x00c\r\n", "password: control characters are not allowed"),
        (b"name,name,password\r\n", "the column 'name' appears twice"),
    ],
    ids=[
        "unterminated-quote",
        "junk-after-quote",
        "extra-field",
        "latin1",
        "utf16",
        "empty",
        "nul",
        "dup-header",
    ],
)
def test_malformed_csv(tmp_path, data, expected):
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    with pytest.raises(InvalidInput) as err:
        read_all("hudu", path)
    assert expected in str(err.value)
    assert "\n" not in str(err.value) and "caf" not in str(err.value)


def test_blank_lines_and_lf_only_and_very_long_field(tmp_path):
    notes = "x" * 600_000  # beyond csv's default 128 KiB field limit
    path = tmp_path / "x.csv"
    path.write_bytes(b'name,password,notes\n\nA,pw,"' + notes.encode() + b'"\n\n')
    (record,), _ = read_all("itglue", path)
    assert record.fields["notes"] == notes


def test_option_misuse_is_refused():
    with pytest.raises(InvalidInput, match="only to keepass"):
        open_source("hudu", FIXTURES / "hudu_passwords.csv", password="x")
    with pytest.raises(InvalidInput, match="only to csv"):
        open_source("bitwarden", FIXTURES / "bitwarden_org.json", mapping={"a": "title"})
    with pytest.raises(InvalidInput, match="unknown import format 'lastpass'"):
        open_source("lastpass", FIXTURES / "generic.csv")
    with pytest.raises(InvalidInput, match="no such file"):
        read_all("hudu", FIXTURES / "missing.csv")
