"""KeePass 2 import from real .kdbx files written by pykeepass (KDBX 3.1 and 4)."""

from __future__ import annotations

import pytest

from tests.importers.builders import KpEntry, write_kdbx, xml_keyfile
from vault.errors import InvalidInput
from vault.importers import open_source, read_all

PASSWORD = "correct horse battery staple"

ENTRIES = [
    KpEntry(
        "Firewall admin",
        username="admin",
        password="Fw-P@ss w0rd ",  # trailing space: must survive
        url="https://fw.acme.example",
        notes="rack 2\r\nport 1",
        group=("Clients", "Acme Corp"),
        otp="otpauth://totp/Acme:admin?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&period=30&digits=6",
        tags=["network", "tier1"],
        custom={
            "enable secret": ("En@ble-42", True),
            "serial": ("FGT60F0001", False),
            'odd "quoted" key': ("value with \"quotes\" and 'apostrophes'", False),
        },
        attachments={
            "fw01.conf": b"config system global\n set hostname fw01\nend\n",
            "blob.bin": bytes(range(256)),
        },
    ),
    KpEntry("Office Wi-Fi", username="", password="Gu3st-N3twork", group=("Clients", "Acme Corp")),
    KpEntry(
        "Domain admin", username="GLOBEX\\administrator", password="Gl0bex!", group=("Clients", "Globex")
    ),
    KpEntry("Runbook", notes="1. check backups\n2. patch", group=("Clients", "Globex")),
    KpEntry("Root entry", username="root", password="r00t"),
    KpEntry(
        "Legacy TOTP",
        username="u",
        password="p",
        group=("Clients", "Globex"),
        custom={"TOTP Seed": ("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", True), "TOTP Settings": ("30;8", False)},
    ),
]


def _by_title(records):
    return {r.title: r for r in records}


@pytest.fixture(params=[3, 4], ids=["kdbx3.1", "kdbx4"])
def kdbx(request, tmp_path):
    version = request.param
    path = write_kdbx(
        tmp_path / f"v{version}.kdbx",
        ENTRIES,
        version=version,
        password=PASSWORD,
        recycled=[KpEntry("Deleted thing", username="x", password="gone")],
    )
    return version, path


def test_versions_are_real(kdbx):
    from pykeepass import PyKeePass

    version, path = kdbx
    assert PyKeePass(str(path), password=PASSWORD).version == ((3, 1) if version == 3 else (4, 0))


def test_groups_fields_custom_attachments_otp(kdbx):
    _, path = kdbx
    records, report = read_all("keepass", path, password=PASSWORD)
    got = _by_title(records)
    assert set(got) == {e.title for e in ENTRIES}
    fw = got["Firewall admin"]
    assert fw.client_hint == "Clients/Acme Corp"
    assert fw.kind == "access"
    assert fw.fields["username"] == "admin"
    assert fw.fields["password"] == "Fw-P@ss w0rd "
    assert fw.fields["url"] == "https://fw.acme.example"
    assert fw.fields["notes"] == "rack 2\r\nport 1"
    assert fw.totp == ENTRIES[0].otp
    assert fw.tags == ("network", "tier1")
    custom = {c.name: c for c in fw.custom_fields}
    assert custom["enable secret"].value == "En@ble-42" and custom["enable secret"].secret
    assert custom["serial"].value == "FGT60F0001" and not custom["serial"].secret
    assert custom['odd "quoted" key'].value == "value with \"quotes\" and 'apostrophes'"
    assert {a.name: a.data for a in fw.attachments} == ENTRIES[0].attachments
    assert got["Root entry"].client_hint is None
    assert got["Runbook"].kind == "note" and got["Runbook"].fields["text"] == "1. check backups\n2. patch"
    legacy = got["Legacy TOTP"]
    assert (
        legacy.totp
        == "otpauth://totp/Legacy%20TOTP?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&period=30&digits=8"
    )
    assert not any(c.name.startswith("TOTP") for c in legacy.custom_fields)
    # counts match the source: every entry read, the recycled one skipped with its reason
    assert report.read == len(ENTRIES) + 1
    assert report.mapped == len(ENTRIES)
    assert report.skipped == {"in recycle bin": 1}
    assert report.complete


def test_key_file_only_and_password_plus_key_file(tmp_path):
    keyfile = xml_keyfile(tmp_path / "db.keyx")
    for version in (3, 4):
        both = write_kdbx(
            tmp_path / f"both{version}.kdbx", ENTRIES[:2], version=version, keyfile=str(keyfile)
        )
        records, _ = read_all("keepass", both, password="correct horse", keyfile=str(keyfile))
        assert len(records) == 2
        only = write_kdbx(
            tmp_path / f"only{version}.kdbx",
            ENTRIES[:1],
            version=version,
            password=None,
            keyfile=str(keyfile),
        )
        records, _ = read_all("keepass", only, keyfile=keyfile.read_bytes())  # the key file as bytes
        assert records[0].fields["password"] == ENTRIES[0].password
        with pytest.raises(InvalidInput, match="wrong password or key file"):
            read_all("keepass", both, password="correct horse")  # key file missing


@pytest.mark.parametrize("version", [3, 4])
def test_wrong_password_is_one_line_without_secrets(tmp_path, version):
    path = write_kdbx(tmp_path / "db.kdbx", ENTRIES[:1], version=version, password=PASSWORD)
    with pytest.raises(InvalidInput) as err:
        read_all("keepass", path, password="Tr0ub4dor&3-wrong")
    message = str(err.value)
    assert message == "KeePass: db.kdbx: wrong password or key file (the database could not be decrypted)"
    assert "Tr0ub4dor" not in message and PASSWORD not in message


def test_credentials_are_required_and_never_shown(tmp_path):
    path = write_kdbx(tmp_path / "db.kdbx", ENTRIES[:1])
    with pytest.raises(InvalidInput, match="needs its password, its key file, or both"):
        open_source("keepass", path)
    source = open_source("keepass", path, password="s3cret-Pw")
    assert "s3cret-Pw" not in repr(source) and "s3cret-Pw" not in repr(vars(source).get("path"))


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda b: b[: len(b) // 2], "truncated or damaged"),
        (lambda b: b[:40], "truncated or damaged"),
        (lambda b: b"", "truncated or damaged"),
        (lambda b: b"PK\x03\x04" + b"\x00" * 200, "not a KeePass 2 database"),
        (lambda b: b[:-64] + bytes([b[-64] ^ 0xFF]) + b[-63:], "damaged"),
    ],
    ids=["half", "header-only", "empty", "zip-not-kdbx", "flipped-byte"],
)
@pytest.mark.parametrize("version", [3, 4])
def test_damaged_databases(tmp_path, version, mangle, expected):
    good = write_kdbx(tmp_path / "good.kdbx", ENTRIES[:2], version=version)
    bad = tmp_path / "bad.kdbx"
    bad.write_bytes(mangle(good.read_bytes()))
    with pytest.raises(InvalidInput, match=expected) as err:
        read_all("keepass", bad, password="correct horse")
    assert "\n" not in str(err.value)


def test_damaged_key_file(tmp_path):
    keyfile = xml_keyfile(tmp_path / "k.keyx")
    path = write_kdbx(tmp_path / "db.kdbx", ENTRIES[:1], keyfile=str(keyfile))
    keyfile.write_text(keyfile.read_text().replace('Hash="', 'Hash="0'))  # hash no longer matches
    with pytest.raises(InvalidInput, match="key file"):
        read_all("keepass", path, password="correct horse", keyfile=str(keyfile))
    with pytest.raises(InvalidInput, match="key file does not exist"):
        read_all("keepass", path, password="correct horse", keyfile=str(tmp_path / "missing.keyx"))


def test_invalid_otp_names_the_entry(tmp_path):
    path = write_kdbx(
        tmp_path / "db.kdbx",
        [KpEntry("Bad OTP", username="u", password="hunter2", otp="otpauth://totp/x?secret=SHORT")],
    )
    with pytest.raises(InvalidInput) as err:
        read_all("keepass", path, password="correct horse")
    assert str(err.value).startswith("KeePass: entry 1 ('Bad OTP'): invalid TOTP seed")
    assert "SHORT" not in str(err.value) and "hunter2" not in str(err.value)


def test_non_standard_totp_settings_are_warned_about_without_their_value(tmp_path):
    """review9 R9-4: the warning quoted the ``TOTP Settings`` value; a value in the wrong field
    is often a secret, so the warning names the field and the entry only."""
    secret = "s3cr3t-in-the-wrong-field"
    custom = {"TOTP Seed": ("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", True), "TOTP Settings": (secret, False)}
    path = write_kdbx(tmp_path / "db.kdbx", [KpEntry("Odd TOTP", username="u", password="p", custom=custom)])
    _, report = read_all("keepass", path, password="correct horse")
    assert [w for w in report.warnings if "TOTP Settings" in w] == [
        "entry 1 ('Odd TOTP'): its TOTP Settings are not standard TOTP;"
        " the seed is kept as a secret custom field"
    ], report.warnings
    assert not any(secret in w for w in report.warnings)


def test_duplicate_titles_and_unicode_titles_get_stable_paths(tmp_path):
    entries = [
        KpEntry("Router", username="a", password="1", group=("Acme",)),
        KpEntry("router", username="b", password="2", group=("Acme",)),
        KpEntry("Router", username="c", password="3", group=("Globex",)),
        KpEntry("Büro-Drucker 🖨", username="d", password="4", group=("Acme",)),
        KpEntry("مرحبا", username="e", password="5", group=("Acme",)),
    ]
    path = write_kdbx(tmp_path / "db.kdbx", entries)
    records, report = read_all("keepass", path, password="correct horse")
    paths = {r.fields["username"]: (r.client_hint, r.path) for r in records}
    assert paths["a"] == ("Acme", "Router")
    assert paths["b"] == ("Acme", "router-2")  # case-insensitive duplicate of "Router"
    assert paths["c"] == ("Globex", "Router")  # another client: no clash
    assert paths["d"] == ("Acme", "Buro-Drucker")
    assert paths["e"][1].startswith("item-")
    again, _ = read_all("keepass", path, password="correct horse")
    assert {r.fields["username"]: (r.client_hint, r.path) for r in again} == paths  # deterministic
    assert sorted(r.reason for r in report.renames) == ["duplicate", "sanitised", "sanitised"]


@pytest.mark.slow  # three Argon2 derivations at 64 MiB x 14 passes: about 12 s on 2 cores
def test_kdbx4_with_pykeepass_default_argon2(tmp_path):
    # the other tests lower the Argon2 cost for speed; this one reads a database with the cost
    # pykeepass (and KeePassXC) use by default
    from pykeepass import PyKeePass

    path = write_kdbx(tmp_path / "default.kdbx", ENTRIES[:1], fast_kdf=False, password=PASSWORD)
    params = PyKeePass(str(path), password=PASSWORD).kdbx.header.value.dynamic_header.kdf_parameters.data.dict
    assert params["M"].value == 64 * 1024 * 1024
    records, _ = read_all("keepass", path, password=PASSWORD)
    assert records[0].fields["password"] == ENTRIES[0].password


def test_without_pykeepass_the_reader_says_how_to_get_it(tmp_path, monkeypatch):
    from vault.errors import VaultError

    path = write_kdbx(tmp_path / "db.kdbx", ENTRIES[:1])
    monkeypatch.setitem(__import__("sys").modules, "pykeepass", None)  # as if the extra were absent
    with pytest.raises(VaultError) as err:
        read_all("keepass", path, password="correct horse")
    assert not isinstance(err.value, InvalidInput)
    assert str(err.value) == "KeePass import needs pykeepass: pip install 'client-config-vault[keepass]'"


def test_importing_the_package_loads_neither_pykeepass_nor_pydantic():
    import subprocess
    import sys

    code = (
        "import sys, vault.importers, vault.importers.bitwarden, vault.importers.vendor_csv;"
        "print(sorted(m for m in ('pykeepass', 'pydantic', 'lxml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
