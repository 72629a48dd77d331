"""Real export files for the import tests: KDBX written by pykeepass, 1PUX zipped, JSON/CSV.

KDBX 4 databases start from pykeepass's own blank database (what ``create_database`` copies). pykeepass has no
"create a KDBX 3.1 database" call, so :func:`new_kdbx3` builds the KDBX 3.1 outer header (AES-KDF
transform seed and rounds, Salsa20 inner stream key, stream start bytes; the layout pykeepass's
``kdbx_parsing/kdbx3.py`` parses) around pykeepass's blank XML with pykeepass's own construct
structures, then every entry is added and the file saved by pykeepass like any other database.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import secrets
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class KpEntry:
    title: str
    username: str | None = None
    password: str | None = None
    url: str | None = None
    notes: str | None = None
    group: tuple[str, ...] = ()
    otp: str | None = None
    tags: list[str] = field(default_factory=list)
    custom: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (value, protected)
    attachments: dict[str, bytes] = field(default_factory=dict)


@functools.cache
def _blank_key() -> bytes:
    """The transformed key of pykeepass's blank KDBX 4 database, derived once per test process:
    its Argon2 costs 64 MiB and 14 passes, and paying that per test would cost minutes."""
    from pykeepass import PyKeePass
    from pykeepass.pykeepass import BLANK_DATABASE_LOCATION, BLANK_DATABASE_PASSWORD

    return PyKeePass(BLANK_DATABASE_LOCATION, password=BLANK_DATABASE_PASSWORD).transformed_key


def _open_blank() -> Any:
    from pykeepass import PyKeePass
    from pykeepass.pykeepass import BLANK_DATABASE_LOCATION

    return PyKeePass(BLANK_DATABASE_LOCATION, transformed_key=_blank_key())


def new_kdbx4(path: Path, password: str | None, keyfile: str | None, *, fast_kdf: bool) -> Any:
    """An empty KDBX 4 database, as ``create_database`` makes it (pykeepass's blank, new
    credentials, fresh seeds on save), opened."""
    from pykeepass import PyKeePass

    kp = _open_blank()
    if fast_kdf:
        params = kp.kdbx.header.value.dynamic_header.kdf_parameters.data.dict
        params["I"].value = 2
        params["M"].value = 1024 * 1024
    kp.password = password
    kp.keyfile = keyfile
    kp.save(str(path))
    kp = PyKeePass(str(path), password=password, keyfile=keyfile)
    assert kp.version == (4, 0)
    return kp


def new_kdbx3(path: Path, password: str | None, keyfile: str | None) -> Any:
    """An empty KDBX 3.1 database (AES-256, AES-KDF, gzip, Salsa20 inner stream), opened."""
    from construct import Container
    from lxml import etree
    from pykeepass import PyKeePass
    from pykeepass.kdbx_parsing import KDBX

    tree = _open_blank().tree
    meta = tree.find("Meta")
    if meta.find("Binaries") is None:  # KDBX 3.1 keeps attachments in Meta/Binaries
        etree.SubElement(meta, "Binaries")

    def item(name: str, data: Any) -> Any:
        return Container(id=name, data=data)

    dynamic = Container(
        cipher_id=item("cipher_id", "aes256"),
        compression_flags=item("compression_flags", Container(compression=True)),
        master_seed=item("master_seed", secrets.token_bytes(32)),
        transform_seed=item("transform_seed", secrets.token_bytes(32)),
        transform_rounds=item("transform_rounds", 1000),  # low: test speed, not a real database
        encryption_iv=item("encryption_iv", secrets.token_bytes(16)),
        protected_stream_key=item("protected_stream_key", secrets.token_bytes(32)),
        stream_start_bytes=item("stream_start_bytes", secrets.token_bytes(32)),
        protected_stream_id=item("protected_stream_id", "salsa20"),
        end=item("end", b"\r\n\r\n"),
    )
    header = Container(
        sig1=b"\x03\xd9\xa2\x9a",
        sig2=b"\x67\xfb\x4b\xb5",
        sig_check=None,
        minor_version=1,
        major_version=3,
        dynamic_header=dynamic,
    )
    kdbx = Container(
        header=Container(value=header), body=Container(payload=Container(cred_check=None, xml=tree))
    )
    KDBX.build_file(kdbx, str(path), password=password, keyfile=keyfile, transformed_key=None, decrypt=True)
    kp = PyKeePass(str(path), password=password, keyfile=keyfile)
    assert kp.version == (3, 1)
    return kp


def write_kdbx(
    path: Path,
    entries: list[KpEntry],
    *,
    version: int = 4,
    password: str | None = "correct horse",
    keyfile: str | None = None,
    recycled: list[KpEntry] = (),  # type: ignore[assignment]
    fast_kdf: bool = True,
) -> Path:
    """Write ``entries`` into a new KDBX 3.1 or 4 database with pykeepass.

    ``fast_kdf`` lowers the KDBX 4 Argon2 cost from pykeepass's default (14 passes, 64 MiB) to
    2 passes over 1 MiB, still a valid KDBX 4 database, so that tests do not spend seconds in the
    KDF; one test keeps the default."""
    if version == 3:
        kp = new_kdbx3(path, password, keyfile)
    else:
        kp = new_kdbx4(path, password, keyfile, fast_kdf=fast_kdf)
    groups: dict[tuple[str, ...], Any] = {(): kp.root_group}

    def group_for(names: tuple[str, ...]) -> Any:
        if names not in groups:
            parent = group_for(names[:-1])
            groups[names] = kp.add_group(parent, names[-1])
        return groups[names]

    from pykeepass.entry import Entry

    def add(entry: KpEntry, where: Any) -> Any:
        # what kp.add_entry does, without its duplicate look-up: that look-up is an XPath query
        # over the group per entry (quadratic for 10,000 entries) with the title inside the
        # XPath string (a title with a double quote breaks it)
        e = Entry(
            title=entry.title,
            username=entry.username or "",
            password=entry.password or "",
            url=entry.url,
            notes=entry.notes,
            tags=entry.tags or None,
            otp=entry.otp,
            kp=kp,
        )
        where.append(e)
        for name, (value, protected) in entry.custom.items():
            if '"' in name:
                # KeePass allows any field name; pykeepass's setter puts the name in an XPath
                # string and fails on a quote, so such a field is written into the XML directly
                from lxml.builder import E

                attrs = {"Protected": "True"} if protected else {}
                e._element.append(E.String(E.Key(name), E.Value(value, **attrs)))
            else:
                e.set_custom_property(name, value, protect=protected)
        for name, data in entry.attachments.items():
            e.add_attachment(kp.add_binary(data), name)
        return e

    for entry in entries:
        add(entry, group_for(entry.group))
    for entry in recycled:
        kp.trash_entry(add(entry, kp.root_group))
    kp.save()
    return path


def xml_keyfile(path: Path) -> Path:
    """A KeePass 2.x XML key file, version 2.0 (what KeePass 2.47+ and KeePassXC write)."""
    import hashlib

    key = secrets.token_bytes(32)
    digest = hashlib.sha256(key).digest()[:4].hex().upper()
    hexkey = key.hex().upper()
    groups = " ".join(hexkey[i : i + 8] for i in range(0, 64, 8))
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<KeyFile>\n\t<Meta>\n\t\t<Version>2.0</Version>\n\t</Meta>\n'
        f'\t<Key>\n\t\t<Data Hash="{digest}">{groups}</Data>\n\t</Key>\n</KeyFile>\n',
        encoding="utf-8",
    )
    return path


def write_1pux(
    path: Path,
    data: dict[str, Any] | None = None,
    *,
    files: dict[str, bytes] | None = None,
    attributes: dict[str, Any] | None = None,
    folder: Path | None = None,
) -> Path:
    """A .1pux archive: from a fixture folder, or from an export.data document and files."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if folder is not None:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    archive.write(file, file.relative_to(folder).as_posix())
            return path
        archive.writestr(
            "export.attributes",
            json.dumps(
                attributes or {"version": 3, "description": "1Password Unencrypted Export", "createdAt": 1}
            ),
        )
        archive.writestr("export.data", json.dumps(data, ensure_ascii=False))
        for name, blob in (files or {}).items():
            archive.writestr(f"files/{name}", blob)
    return path


def onepassword_login(uuid: str, title: str, username: str, password: str, **extra: Any) -> dict[str, Any]:
    """One 1PUX Login item (categoryUuid 001) in the shape 1Password 8 exports."""
    item = {
        "uuid": uuid,
        "favIndex": 0,
        "createdAt": 1619466000,
        "updatedAt": 1619466000,
        "state": "active",
        "categoryUuid": "001",
        "details": {
            "loginFields": [
                {
                    "value": username,
                    "id": "",
                    "name": "username",
                    "fieldType": "T",
                    "designation": "username",
                },
                {
                    "value": password,
                    "id": "",
                    "name": "password",
                    "fieldType": "P",
                    "designation": "password",
                },
            ],
            "notesPlain": extra.pop("notes", ""),
            "sections": extra.pop("sections", []),
        },
        "overview": {"subtitle": username, "title": title, "url": extra.pop("url", ""), "tags": []},
    }
    item.update(extra)
    return item


def onepassword_export(vaults: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "accounts": [
            {
                "attrs": {
                    "accountName": "MSP",
                    "name": "Ops",
                    "avatar": "",
                    "email": "ops@msp.example",
                    "uuid": "ACCOUNT",
                    "domain": "https://msp.1password.com/",
                },
                "vaults": [
                    {
                        "attrs": {"uuid": f"v{n}", "desc": "", "avatar": "", "name": name, "type": "U"},
                        "items": items,
                    }
                    for n, (name, items) in enumerate(vaults.items())
                ],
            }
        ]
    }


def bitwarden_login(n: int, name: str, username: str, password: str, **extra: Any) -> dict[str, Any]:
    item = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "organizationId": None,
        "folderId": extra.pop("folderId", None),
        "type": 1,
        "reprompt": 0,
        "name": name,
        "notes": extra.pop("notes", None),
        "favorite": False,
        "fields": extra.pop("fields", []),
        "login": {
            "uris": extra.pop("uris", []),
            "username": username,
            "password": password,
            "totp": extra.pop("totp", None),
        },
        "collectionIds": None,
    }
    item.update(extra)
    return item


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def write_csv(
    path: Path, header: list[str], rows: list[list[str]], *, bom: bool = False, newline: str = "\r\n"
) -> Path:
    """RFC 4180 CSV (CRLF by default, quotes where needed) as Excel and the vendors write it."""
    buffer = io.StringIO(newline="")
    # csv's minimal quoting looks only at the characters of the line terminator: with a bare LF
    # terminator a field holding a lone CR would go out unquoted, which RFC 4180 forbids
    quoting = csv.QUOTE_MINIMAL if newline == "\r\n" else csv.QUOTE_ALL
    writer = csv.writer(buffer, lineterminator=newline, quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
