"""``import --from FORMAT FILE`` into a real vault (issue 18 item 1; docs/import.md, "Writing").

Every format: counts match the source, every secret reads back exactly, a second run changes
nothing, a malformed file names the entry and imports nothing, no plaintext in the vault folder.
The files are real: KDBX written by pykeepass here, JSON/CSV/1PUX built from the published formats
with unicode, empty fields and duplicate names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import add_client, file_sql, grep_tree, operator
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
from vault.errors import IntegrityFailure, InvalidInput

#: (group, title, username, password, notes): unicode, an empty user name, a duplicate title in
#: one group, the same title in another group, quotes, commas and backslashes, spaces kept
ENTRIES = [
    ("Acme Corp", "Firewall", "admin", "pässwörd-🔐-Acme-1", "Rack 2\r\nsecond line"),
    ("Acme Corp", "Firewall", "admin2", 'dup "title", pw\\2', ""),
    ("Acme Corp", "Büro Drucker 🖨", "", "  spaces kept  ", "Raum 1.04"),
    ("Globex", "Firewall", "root", "Gl0bex-FW-ünïcode", ""),
    ("Globex", "日本語", "gx", "東京-pw-3", "multi\nline"),
]
MAP = {"Acme Corp": "acme", "Globex": "globex"}


def _bitwarden(tmp: Path) -> tuple[Path, dict]:
    cols = {g: f"c0000000-0000-4000-8000-00000000000{n}" for n, g in enumerate(MAP, 1)}
    items = []
    for n, (group, title, user, password, notes) in enumerate(ENTRIES, 1):
        item = bitwarden_login(n, title, user, password, notes=notes or None)
        item["organizationId"] = "a0000000-0000-4000-8000-000000000001"
        item["collectionIds"] = [cols[group]]
        items.append(item)
    items.append({"id": "card-1", "type": 3, "name": "Company card", "card": {"number": "4111"}})
    doc = {
        "encrypted": False,
        "collections": [
            {"id": i, "organizationId": "o", "name": g, "externalId": None} for g, i in cols.items()
        ],
        "items": items,
    }
    return write_json(tmp / "bitwarden.json", doc), {}


def _keepass(tmp: Path) -> tuple[Path, dict]:
    entries = [
        KpEntry(title, user or None, password, notes=notes or None, group=("Clients", group))
        for group, title, user, password, notes in ENTRIES
    ]
    path = write_kdbx(tmp / "clients.kdbx", entries, password="correct horse")
    return path, {"password": "correct horse"}


def _onepassword(tmp: Path) -> tuple[Path, dict]:
    vaults: dict[str, list] = {g: [] for g in MAP}
    for n, (group, title, user, password, notes) in enumerate(ENTRIES, 1):
        vaults[group].append(onepassword_login(f"uuid{n:022d}", title, user, password, notes=notes))
    return write_1pux(tmp / "export.1pux", onepassword_export(vaults)), {}


def _itglue(tmp: Path) -> tuple[Path, dict]:
    header = ["id", "organization", "name", "password_category", "resource_type", "resource_id"]
    header += ["username", "password", "otp_secret", "archived", "url", "notes"]
    rows = [
        [str(1000 + n), g, t, "", "", "", u, p, "", "No", "", notes]
        for n, (g, t, u, p, notes) in enumerate(ENTRIES)
    ]
    return write_csv(tmp / "passwords.csv", header, rows, bom=True), {}


def _hudu(tmp: Path) -> tuple[Path, dict]:
    header = ["id", "company_name", "name", "username", "password", "otp_secret", "url", "description"]
    rows = [[str(50 + n), g, t, u, p, "", "", notes] for n, (g, t, u, p, notes) in enumerate(ENTRIES)]
    return write_csv(tmp / "hudu.csv", header, rows), {}


def _csv(tmp: Path) -> tuple[Path, dict]:
    header = ["Customer", "Device", "Login", "Secret", "Remarks"]
    rows = [[g, t, u, p, notes] for g, t, u, p, notes in ENTRIES]
    mapping = {"Customer": "client", "Device": "title", "Login": "username", "Secret": "password"}
    return write_csv(tmp / "generic.csv", header, rows), {"mapping": {**mapping, "Remarks": "notes"}}


SOURCES = {
    "bitwarden": _bitwarden,
    "keepass": _keepass,
    "1password": _onepassword,
    "itglue": _itglue,
    "hudu": _hudu,
    "csv": _csv,
}


def _clients_map(fmt: str) -> dict[str, str]:
    # KeePass groups sit under "Clients": the parent-group rule maps the subgroups
    return {f"Clients/{g}": c for g, c in MAP.items()} if fmt == "keepass" else dict(MAP)


def _passwords(v, client: str) -> list[str]:
    return sorted(
        v.secrets.get(operator(), client, r["path"]).fields["password"]
        for r in v.secrets.list(operator(), client)
    )


@pytest.fixture
def two_clients(vdir):
    v = vdir.open()
    add_client(v, "acme")
    add_client(v, "globex")
    yield vdir, v
    v.close()


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_every_format_imports_exactly_once_and_leaves_no_plaintext(fmt, two_clients, tmp_path):
    vdir, v = two_clients
    path, options = SOURCES[fmt](tmp_path)
    clients = _clients_map(fmt)

    dry = v.secrets.import_file(operator(), fmt, path, clients=clients, dry_run=True, **options)
    assert dry["dry_run"] and [len(c["new"]) for c in dry["clients"]] == [3, 2]
    assert v.secrets.list(operator(), "acme") == []  # a dry run writes nothing

    first = v.secrets.import_file(operator(), fmt, path, clients=clients, **options)
    by_client = {c["client"]: c for c in first["clients"]}
    assert first["mapped"] == len(ENTRIES)
    assert {n: len(c["new"]) for n, c in by_client.items()} == {"acme": 3, "globex": 2}
    # every secret reads back exactly, in the client its group maps to
    assert _passwords(v, "acme") == sorted(p for g, _, _, p, _ in ENTRIES if g == "Acme Corp")
    assert _passwords(v, "globex") == sorted(p for g, _, _, p, _ in ENTRIES if g == "Globex")
    paths = {r["path"] for r in v.secrets.list(operator(), "acme")}
    assert {"Firewall", "Firewall-2"} <= paths  # the duplicate title got its own path

    second = v.secrets.import_file(operator(), fmt, path, clients=clients, **options)
    for c in second["clients"]:
        assert (c["new"], c["changed"], c["conflicts"], c["written"]) == ([], [], [], False)
    assert sum(c["unchanged"] for c in second["clients"]) == len(ENTRIES)
    assert all(r["version"] == 1 for r in v.secrets.list(operator(), "acme"))  # nothing rewritten

    v.close()
    for _, _, _, password, _ in ENTRIES:
        assert grep_tree(vdir.home, password.encode()) == []


def test_a_changed_entry_is_updated_and_an_edited_record_is_kept(two_clients, tmp_path):
    _, v = two_clients
    path, _ = _bitwarden(tmp_path)
    v.secrets.import_file(operator(), "bitwarden", path, clients=MAP)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["items"][0]["login"]["password"] = "rotated-at-the-source"
    doc["items"][3]["login"]["password"] = "globex-rotated-too"
    path.write_text(json.dumps(doc), encoding="utf-8")
    # someone edited globex/Firewall in cvault after the import: the file must not overwrite it
    edited = dict(v.secrets.get(operator(), "globex", "Firewall").fields, password="changed-in-cvault")
    v.secrets.put(operator(), "globex", "Firewall", "access", edited)

    dry = v.secrets.import_file(operator(), "bitwarden", path, clients=MAP, dry_run=True)
    result = v.secrets.import_file(operator(), "bitwarden", path, clients=MAP)
    for summary in (dry, result):
        acme, globex = summary["clients"]
        assert [c["path"] for c in acme["changed"]] == ["Firewall"]
        assert globex["conflicts"] == [
            {"path": "Firewall", "entry": 4, "reason": "edited in cvault since the last import"}
        ]
    assert v.secrets.get(operator(), "acme", "Firewall").fields["password"] == "rotated-at-the-source"
    assert v.secrets.get(operator(), "acme", "Firewall").version == 2
    assert v.secrets.get(operator(), "globex", "Firewall").fields["password"] == "changed-in-cvault"
    again = v.secrets.import_file(operator(), "bitwarden", path, clients=MAP)
    assert [c["changed"] for c in again["clients"]] == [[], []]


def test_a_record_made_by_hand_is_never_overwritten(two_clients, tmp_path):
    _, v = two_clients
    v.secrets.put(operator(), "acme", "Firewall", "access", {"password": "typed by hand"})
    path, _ = _bitwarden(tmp_path)
    result = v.secrets.import_file(operator(), "bitwarden", path, clients=MAP)
    assert result["clients"][0]["conflicts"][0]["reason"] == "a record not written by an import is there"
    assert v.secrets.get(operator(), "acme", "Firewall").fields["password"] == "typed by hand"


@pytest.mark.parametrize("forgery", ["edited", "planted"])
def test_a_forged_import_origin_never_lets_an_import_overwrite_an_edit(vdir, tmp_path, forgery):
    """review4 R4-7: the import origin says "written by the last import, not edited since" and so
    decides whether a re-run overwrites. It was unMACed: the file writer set it to the version
    edited in cvault (or planted one for a record typed by hand) and the same file, imported
    again, put the file's old password back as the current version. It carries a row MAC now
    (coverage 6): the re-run is an integrity failure (exit 6) and writes nothing."""
    v = vdir.open()
    add_client(v, "acme")
    add_client(v, "globex")
    path, _ = _bitwarden(tmp_path)
    if forgery == "planted":  # a record typed by hand, never imported
        v.secrets.put(operator(), "globex", "Firewall", "access", {"password": "typed-in-cvault"})
    v.secrets.import_file(operator(), "bitwarden", path, clients=MAP)
    if forgery == "edited":  # rotated in cvault after the move-in: version 2
        fields = dict(v.secrets.get(operator(), "globex", "Firewall").fields, password="typed-in-cvault")
        v.secrets.put(operator(), "globex", "Firewall", "access", fields)
    current = v.secrets.get(operator(), "globex", "Firewall")
    record_id = v.ctx.db.scalar(
        "SELECT r.id FROM records r JOIN clients c ON c.id = r.client_id"
        " WHERE c.name = 'globex' AND r.current_version = ?",
        (current.version,),
    )
    v.close()
    file_sql(
        vdir,
        "INSERT INTO import_origins (record_id, version, source, imported_at, imported_by)"
        " VALUES (?, ?, 'bitwarden', 0, 'op')"
        " ON CONFLICT(record_id) DO UPDATE SET version = excluded.version",
        (record_id, current.version),
    )
    v = vdir.open()
    try:
        with pytest.raises(IntegrityFailure):
            v.secrets.import_file(operator(), "bitwarden", path, clients=MAP)  # the same file again
        assert v.secrets.get(operator(), "globex", "Firewall").fields["password"] == "typed-in-cvault"
    finally:
        v.close()


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_a_malformed_entry_is_named_and_nothing_is_imported(fmt, two_clients, tmp_path):
    _, v = two_clients
    if fmt == "bitwarden":
        path, options = _bitwarden(tmp_path)
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["items"][3]["login"]["username"] = "two\nlines\x07bell"  # a control character
        doc["items"][3]["login"]["password"] = "x\x00y"
        path.write_text(json.dumps(doc), encoding="utf-8")
        where = "entry 4"
    elif fmt == "keepass":
        path, options = _keepass(tmp_path)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte in the encrypted payload
        path.write_bytes(bytes(data))
        where = "KeePass"
    elif fmt == "1password":
        path, options = _onepassword(tmp_path)
        import zipfile

        with zipfile.ZipFile(path) as archive:
            members = {n: archive.read(n) for n in archive.namelist()}
        doc = json.loads(members["export.data"])
        doc["accounts"][0]["vaults"][1]["items"][1]["details"]["loginFields"][0]["value"] = "a\x07b"
        members["export.data"] = json.dumps(doc).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        where = "entry 5"
    elif fmt == "itglue":
        path, options = _itglue(tmp_path)
        path.write_bytes(path.read_bytes() + b'9,Globex,Broken,,,,u,"unterminated\r\n')
        where = "row"
    else:  # hudu, csv: a row with a control character in a one-line field, the last row
        path, options = SOURCES[fmt](tmp_path)
        path.write_bytes(path.read_bytes() + b"Globex,Switch,ro\x07ot,Gl0bex-sw,\r\n")
        if fmt == "hudu":
            path.write_bytes(path.read_bytes().replace(b"Globex,Switch,ro", b"99,Globex,Switch,ro"))
        where = "row 6"
    with pytest.raises(InvalidInput) as caught:
        v.secrets.import_file(operator(), fmt, path, clients=_clients_map(fmt), **options)
    message = caught.value.message
    assert "\n" not in message and where in message
    assert "Gl0bex" not in message and "pässwörd" not in message
    assert v.secrets.list(operator(), "acme") == [] and v.secrets.list(operator(), "globex") == []


def test_groups_without_a_client_are_refused_before_anything_is_written(two_clients, tmp_path):
    _, v = two_clients
    path, _ = _bitwarden(tmp_path)
    with pytest.raises(InvalidInput, match="'Globex'.*--client-map"):
        v.secrets.import_file(operator(), "bitwarden", path, clients={"Acme Corp": "acme"})
    with pytest.raises(InvalidInput, match="no client named 'initech'"):
        v.secrets.import_file(
            operator(), "bitwarden", path, clients={"Acme Corp": "acme", "Globex": "initech"}
        )
    assert v.secrets.list(operator(), "acme") == []
    # one default client takes every group; paths are allocated again, so nothing collides
    result = v.secrets.import_file(operator(), "bitwarden", path, default_client="acme")
    assert len(result["clients"][0]["new"]) == len(ENTRIES)
    assert {r["path"] for r in v.secrets.list(operator(), "acme")} >= {"Firewall", "Firewall-2", "Firewall-3"}


def test_need_to_know_is_checked_on_every_client_before_any_write(vdir, tmp_path):
    from tests.factories import person

    v = vdir.open()
    try:
        add_client(v, "acme")
        add_client(v, "globex")
        eve = person(v, "eve", "engineer")
        from tests.factories import assign

        assign(v, eve, "acme")  # not globex
        path, _ = _bitwarden(tmp_path)
        from vault.errors import AccessDenied

        with pytest.raises(AccessDenied):
            v.secrets.import_file(eve.principal(v), "bitwarden", path, clients=MAP)
        assert v.secrets.list(operator(), "acme") == []
    finally:
        v.close()


def test_extras_land_in_the_records_own_fields(two_clients, tmp_path):
    """TOTP seeds, custom fields and tags go into the record kinds' fields (issue 16), a custom
    field named like a built-in field is renamed, a seed on a note becomes a secret custom field."""
    _, v = two_clients
    item = bitwarden_login(
        1,
        "With extras",
        "u",
        "p",
        notes="own notes",
        totp="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        fields=[
            {"name": "pin", "value": "4711 ünï", "type": 1},
            {"name": "rack", "value": "R2", "type": 0},
            {"name": "host", "value": "10.0.0.1", "type": 0},
        ],
    )
    path = write_json(tmp_path / "bw.json", {"encrypted": False, "folders": [], "items": [item]})
    v.secrets.import_file(operator(), "bitwarden", path, default_client="acme")
    fields = v.secrets.get(operator(), "acme", "With extras").fields
    assert fields["notes"] == "own notes"
    assert fields["totp"] == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    assert fields["custom"] == {
        "pin": {"value": "4711 ünï", "secret": True},
        "rack": {"value": "R2", "secret": False},
        "host (imported)": {"value": "10.0.0.1", "secret": False},
    }
    again = v.secrets.import_file(operator(), "bitwarden", path, default_client="acme")
    assert again["clients"][0]["unchanged"] == 1  # the mapping is stable: a re-run changes nothing

    entries = [
        KpEntry("Tagged", "admin", "pw", tags=["vpn", "core"], group=("Clients", "Acme Corp")),
    ]
    kdbx = write_kdbx(tmp_path / "t.kdbx", entries, password="pw")
    v.secrets.import_file(operator(), "keepass", kdbx, default_client="globex", password="pw")
    assert v.secrets.get(operator(), "globex", "Tagged").fields["tags"] == ["vpn", "core"]

    from vault.importers import ImportedRecord
    from vault.records.importing import record_fields

    seeded_note = ImportedRecord(
        1,
        "n",
        "n",
        None,
        "n",
        "note",
        {"text": "t"},
        tags=tuple(f"t{i}" for i in range(70)),
        totp="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    )
    fields = record_fields(seeded_note)
    assert fields["custom"]["one-time password"] == {
        "value": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        "secret": True,
    }
    assert len(fields["tags"]) == 64 and fields["custom"]["tags (imported)"]["value"].startswith("t64, t65")


def test_the_cli_imports_keepass_with_a_dry_run_first_and_never_prints_a_secret(vdir, tmp_path):
    v = vdir.open()
    try:
        add_client(v, "acme")
        add_client(v, "globex")
    finally:
        v.close()
    path, _ = _keepass(tmp_path)
    args = ["import", "--from", "keepass", str(path), "--password-stdin"]
    args += ["--client-map", "Clients/Acme Corp=acme", "--client-map", "Clients/Globex=globex"]
    dry = vdir.cli(*args, "--dry-run", input="correct horse\n")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("dry run: nothing written\n")
    assert "acme: 3 new, 0 changed, 0 unchanged, 0 conflicts (would be written)" in dry.stdout
    assert "  + Firewall-2 (access)" in dry.stdout and "reminder" not in dry.stderr
    real = vdir.cli(*args, input="correct horse\n")
    assert real.returncode == 0, real.stderr
    assert "globex: 2 new" in real.stdout
    assert f"reminder: {path} holds every secret" in real.stderr
    again = vdir.cli(*args, "--json", input="correct horse\n")
    data = json.loads(again.stdout)
    assert [(len(c["new"]), c["unchanged"]) for c in data["clients"]] == [(0, 3), (0, 2)]
    for proc in (dry, real, again):
        for _, _, _, password, _notes in ENTRIES:
            assert password not in proc.stdout + proc.stderr
    wrong = vdir.cli(*args, input="wrong password\n")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert "wrong password or key file" in wrong.stderr
    assert vdir.cli("--addr", "https://127.0.0.1:9", *args).returncode == 2  # host-only


@pytest.mark.slow  # 10,000 records written, then read back and re-run: about 20 s
def test_10000_entries_through_the_cli_count_read_back_and_rerun(vdir, tmp_path):
    """A 10,000-entry Bitwarden export into 50 clients through a real ``cvault import``: counts
    match, every password reads back exactly, a second run writes nothing, and the progress
    callback reaches the total once per record, in order."""
    n_entries, n_clients = 10_000, 5
    v = vdir.open()
    try:
        for c in range(n_clients):
            add_client(v, f"c{c}")
    finally:
        v.close()
    folders = [{"id": f"f{c}", "name": f"Client {c}"} for c in range(n_clients)]
    items = [
        bitwarden_login(
            n, f"Server {n % 9_900}", f"user{n}", f' pw-{n}-"q",ü-𝄞 ', folderId=f"f{n % n_clients}"
        )
        for n in range(n_entries)
    ]
    path = write_json(tmp_path / "bw.json", {"encrypted": False, "folders": folders, "items": items})
    args = ["import", "--from", "bitwarden", str(path), "--json"]
    for c in range(n_clients):
        args += ["--client-map", f"Client {c}=c{c}"]
    first = vdir.cli(*args)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["read"] == data["mapped"] == n_entries
    assert sum(len(c["new"]) for c in data["clients"]) == n_entries
    assert "pw-" not in first.stdout + first.stderr
    second = json.loads(vdir.cli(*args).stdout)
    assert sum(c["unchanged"] for c in second["clients"]) == n_entries
    assert not any(c["written"] for c in second["clients"])
    v = vdir.open()
    try:
        got = {}
        for c in range(n_clients):
            assert all(r["version"] == 1 for r in v.secrets.list(operator(), f"c{c}"))
            for rec in v.secrets.export_records(operator(), f"c{c}")["records"]:
                got[rec["fields"]["username"]] = rec["fields"]["password"]
        assert got == {f"user{n}": f' pw-{n}-"q",ü-𝄞 ' for n in range(n_entries)}
        seen: list[tuple[int, int]] = []
        v.secrets.import_file(
            operator(),
            "bitwarden",
            path,
            clients={f"Client {c}": f"c{c}" for c in range(n_clients)},
            dry_run=True,
            progress=lambda done, total: seen.append((done, total)),
        )
        assert seen[-1] == (n_entries, n_entries)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    finally:
        v.close()
