"""Every secret comes through byte-exact, in every format; counts match the source at 10,000 entries."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.importers.builders import (
    KpEntry,
    bitwarden_login,
    onepassword_export,
    onepassword_login,
    write_1pux,
    write_csv,
    write_json,
    write_kdbx,
)
from vault.importers import read_all

# one-line secrets: any printable character of any script, spaces included (leading and trailing
# too), but no control characters, which the record kinds refuse in one-line fields, and no
# U+FFFE/U+FFFF, which XML (and so KeePass) cannot hold
SECRET = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"),
    min_size=1,
    max_size=80,
)
# multi-line notes: the same, plus line breaks and tabs
NOTES = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"),
        st.sampled_from("\t\n\r"),
    ),
    min_size=1,
    max_size=200,
)
# titles: anything XML can hold (KeePass stores them in XML); the other formats get the same
TITLE = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"),
    max_size=40,
)
ENTRIES = st.lists(st.tuples(TITLE, SECRET, SECRET, NOTES), min_size=1, max_size=12)
SLOW_FORMAT = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(records, entries, *, password_of=lambda r: r.fields["password"], secret_of, notes_of):
    assert len(records) == len(entries)
    for record, (_, password, secret, notes) in zip(records, entries, strict=True):
        assert password_of(record) == password
        assert secret_of(record) == secret
        assert notes_of(record) == notes


def _custom(name):
    def get(record):
        (field,) = [c for c in record.custom_fields if c.name == name]
        assert field.secret
        return field.value

    return get


@SLOW_FORMAT
@given(ENTRIES)
def test_bitwarden_secrets_byte_exact(entries):
    items = [
        bitwarden_login(
            n, title, "user", password, notes=notes, fields=[{"name": "pin", "value": secret, "type": 1}]
        )
        for n, (title, password, secret, notes) in enumerate(entries)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        records, report = read_all("bitwarden", write_json(Path(tmp) / "bw.json", {"items": items}))
    _check(records, entries, secret_of=_custom("pin"), notes_of=lambda r: r.fields["notes"])
    assert report.read == report.mapped == len(entries)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ENTRIES, st.sampled_from([3, 4]))
def test_keepass_secrets_byte_exact(entries, version):
    kp_entries = [
        KpEntry(title, username="user", password=password, notes=notes, custom={"pin": (secret, True)})
        for title, password, secret, notes in entries
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_kdbx(Path(tmp) / "db.kdbx", kp_entries, version=version)
        records, _ = read_all("keepass", path, password="correct horse")
    _check(records, entries, secret_of=_custom("pin"), notes_of=lambda r: r.fields["notes"])


@SLOW_FORMAT
@given(ENTRIES)
def test_onepassword_secrets_byte_exact(entries):
    items = [
        onepassword_login(
            f"u{n}",
            title,
            "user",
            password,
            notes=notes,
            sections=[
                {"title": "", "fields": [{"title": "pin", "id": "pin", "value": {"concealed": secret}}]}
            ],
        )
        for n, (title, password, secret, notes) in enumerate(entries)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        records, _ = read_all(
            "1password", write_1pux(Path(tmp) / "x.1pux", onepassword_export({"Acme": items}))
        )
    _check(records, entries, secret_of=_custom("pin"), notes_of=lambda r: r.fields["notes"])


@SLOW_FORMAT
@given(ENTRIES, st.booleans(), st.sampled_from(["\r\n", "\n"]))
def test_csv_secrets_byte_exact(entries, bom, newline):
    rows = [["Acme", title, "user", password, secret, notes] for title, password, secret, notes in entries]
    with tempfile.TemporaryDirectory() as tmp:
        hudu = write_csv(
            Path(tmp) / "h.csv",
            ["company_name", "name", "username", "password", "pin", "description"],
            rows,
            bom=bom,
            newline=newline,
        )
        records, _ = read_all("hudu", hudu)
        _check(records, entries, secret_of=_custom("pin"), notes_of=lambda r: r.fields["notes"])
        itglue = write_csv(
            Path(tmp) / "i.csv",
            ["organization", "name", "username", "password", "pin", "notes"],
            rows,
            bom=bom,
        )
        records, _ = read_all("itglue", itglue)
        _check(records, entries, secret_of=_custom("pin"), notes_of=lambda r: r.fields["notes"])
        mapping = {
            "c": "client",
            "t": "title",
            "u": "username",
            "p": "password",
            "s": "secret:pin",
            "n": "notes",
        }
        generic = write_csv(Path(tmp) / "g.csv", list(mapping), rows, bom=bom, newline=newline)
        records, _ = read_all("csv", generic, mapping=mapping)
        _check(records, entries, secret_of=_custom("pin"), notes_of=lambda r: r.fields["notes"])


# -- 10,000 entries --------------------------------------------------------------------------------

N = 10_000


def _password(n: int) -> str:
    # unicode, quotes, commas and spaces in every password, unique per entry
    return f' pw-{n}-"quoted",ünï-𝄞 '


def _title(n: int) -> str:
    return f"Server {n % 9_900}"  # the last 100 titles repeat earlier ones: duplicates to rename


def _check_large(records, report, *, client_of=lambda n: f"Client {n % 50}"):
    assert report.read == report.mapped == N and report.complete
    assert len(records) == N
    for n, record in enumerate(records):
        assert record.fields["password"] == _password(n)
        assert record.client_hint == client_of(n)
    per_client: dict[str | None, set[str]] = {}
    for record in records:
        paths = per_client.setdefault(record.client_hint, set())
        assert record.path.lower() not in paths
        paths.add(record.path.lower())
    assert sum(1 for r in report.renames if "duplicate" in r.reason) == 100


def test_bitwarden_10000_entries(tmp_path):
    folders = [{"id": f"f{c}", "name": f"Client {c}"} for c in range(50)]
    items = [bitwarden_login(n, _title(n), f"user{n}", _password(n), folderId=f"f{n % 50}") for n in range(N)]
    records, report = read_all(
        "bitwarden", write_json(tmp_path / "bw.json", {"folders": folders, "items": items})
    )
    _check_large(records, report)


@pytest.mark.slow  # pykeepass builds and saves a 10,000-entry database: about 10 s
@pytest.mark.parametrize("version", [3, 4])
def test_keepass_10000_entries(tmp_path, version):
    entries = [
        KpEntry(_title(n), username=f"user{n}", password=_password(n), group=("Clients", f"Client {n % 50}"))
        for n in range(N)
    ]
    path = write_kdbx(tmp_path / "big.kdbx", entries, version=version)
    records, report = read_all("keepass", path, password="correct horse")
    records.sort(key=lambda r: int(r.fields["username"][4:]))  # KeePass lists entries group by group
    _check_large(records, report, client_of=lambda n: f"Clients/Client {n % 50}")


def test_onepassword_10000_entries(tmp_path):
    vaults: dict[str, list] = {f"Client {c}": [] for c in range(50)}
    order = []
    for n in range(N):
        vaults[f"Client {n % 50}"].append(onepassword_login(f"u{n}", _title(n), f"user{n}", _password(n)))
    for c in range(50):
        order.extend(range(c, N, 50))
    records, report = read_all("1password", write_1pux(tmp_path / "big.1pux", onepassword_export(vaults)))
    by_n = dict(zip(order, records, strict=True))
    _check_large([by_n[n] for n in range(N)], report)


@pytest.mark.parametrize("fmt", ["itglue", "hudu", "csv"])
def test_csv_10000_entries(tmp_path, fmt):
    header = {
        "itglue": ["organization", "name", "username", "password", "notes"],
        "hudu": ["company_name", "name", "username", "password", "description"],
        "csv": ["client", "title", "username", "password", "notes"],
    }[fmt]
    rows = [[f"Client {n % 50}", _title(n), f"user{n}", _password(n), f"line 1\nline {n}"] for n in range(N)]
    path = write_csv(tmp_path / "big.csv", header, rows, bom=True)
    options = {"mapping": {h: h for h in header}} if fmt == "csv" else {}
    records, report = read_all(fmt, path, **options)
    _check_large(records, report)
