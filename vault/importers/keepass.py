"""KeePass 2 databases, KDBX 3.1 and KDBX 4, through pykeepass (docs/import.md, "KeePass").

The only module that imports pykeepass (GPL-3.0, optional extra ``keepass``: docs/dependencies.md).
Credentials are parameters: a password string and/or a key file (a path or its bytes); they are
never logged, never put in a message, never passed on a command line.

KDBX encrypts the whole database as one block, so it cannot be streamed: the file is decrypted in
memory, once, up to :data:`MAX_KDBX_BYTES`. Entries are then read straight from the decrypted XML
(``KeePassFile/Root/Group``; ``Entry`` with ``String`` Key/Value pairs, ``Value`` ``Protected``,
``Binary`` Key/``Value Ref``, ``Tags``, ``History``) rather than through pykeepass's per-field XPath
look-ups, which put the key name inside an XPath string (a property called ``a"b`` would break
them) and cost one XPath query per field.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

from vault import crypto
from vault.errors import VaultError
from vault.importers._reader import Draft, ImportSource, Skip, describe
from vault.importers.model import Attachment, ImportReport
from vault.importers.totp import seed_with_settings

#: 256 MiB: a KDBX file is decrypted in memory as a whole (pykeepass holds it about three times:
#: ciphertext, plaintext XML and the parsed tree); real databases with attachments stay far below
MAX_KDBX_BYTES = 256 * 1024 * 1024
#: the most key-derivation work an imported database may ask for before it is opened (review10:
#: its KDF costs are in the file's clear header, and 2**32 - 1 passes would never end). Argon2
#: (KDBX 4): at most the memory of the costliest unseal slot cvault opens (vault.crypto's 1 GiB)
#: and no more work than that slot (memory x passes <= 1 GiB x 64 passes), at most 256 lanes;
#: AES-KDF (KDBX 3.1 and 4): at most 50,000,000 rounds (about as long as that slot in
#: pykeepass's per-round loop). Below them it is the user's own file: any lower cost is accepted.
MAX_ARGON2_MEMORY_BYTES = crypto.ARGON2_MAX_MEMORY_KIB * 1024
MAX_ARGON2_WORK_KIB_PASSES = crypto.ARGON2_MAX_MEMORY_KIB * crypto.ARGON2_MAX_ITERATIONS
MAX_ARGON2_LANES = 256
MAX_AES_KDF_ROUNDS = 50_000_000
#: the fields KeePass itself defines on every entry (KeePass 2 "Entry" dialog; pykeepass reserved_keys)
STANDARD = {"Title", "UserName", "Password", "URL", "Notes"}
#: TOTP: KeePassXC and KeePass plugins store an otpauth:// URI in ``otp`` (pykeepass Entry.otp, the
#: KeePassOTP and KeePassium documentation); KeeTrayTOTP and KeePassXC before 2.6 used ``TOTP Seed``
#: with ``TOTP Settings`` "period;digits" (KeePassium, "How to setup TOTP")
OTP_KEYS = {"otp", "TOTP Seed", "TOTP Settings"}


class KeePassSource(ImportSource):
    format = "keepass"
    label = "KeePass"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        password: str | None = None,
        keyfile: str | os.PathLike[str] | bytes | None = None,
        max_bytes: int = MAX_KDBX_BYTES,
    ) -> None:
        super().__init__(path)
        if password is None and keyfile is None:
            raise self.fail_file("a KeePass database needs its password, its key file, or both")
        self._password = password
        self._keyfile = keyfile
        self._max_bytes = max_bytes

    def __repr__(self) -> str:  # never show the credentials
        return f"KeePassSource({str(self.path)!r})"

    def _open(self) -> Any:
        try:
            from pykeepass import PyKeePass
            from pykeepass.exceptions import CredentialsError, HeaderChecksumError, PayloadChecksumError
        except ImportError:
            raise VaultError(
                "KeePass import needs pykeepass: pip install 'client-config-vault[keepass]'"
            ) from None
        from construct import ConstructError
        from lxml.etree import LxmlError

        if self.path.stat().st_size > self._max_bytes:
            raise self.fail_file(f"larger than {self._max_bytes // (1024 * 1024)} MiB")
        keyfile: Any = self._keyfile
        if isinstance(keyfile, bytes | bytearray):
            keyfile = io.BytesIO(bytes(keyfile))
        elif keyfile is not None and not os.path.isfile(keyfile):
            raise self.fail_file("the key file does not exist")
        self._check_kdf_costs()
        try:
            return PyKeePass(str(self.path), password=self._password, keyfile=keyfile)
        except CredentialsError:
            raise self.fail_file("wrong password or key file (the database could not be decrypted)") from None
        except HeaderChecksumError:
            raise self.fail_file("not a KeePass 2 database, or its header is damaged") from None
        except PayloadChecksumError:
            raise self.fail_file("the database contents are damaged (checksum mismatch)") from None
        except (AssertionError, ConstructError, LxmlError, zlib.error, UnicodeDecodeError, ValueError):
            if keyfile is not None and not _keyfile_readable(keyfile):
                # pykeepass checks the hash of an XML v2.0 key file with an assert, and its hex
                # with bytes.fromhex: tell a damaged key file from a damaged database
                raise self.fail_file("the key file is damaged (not a key KeePass can read)") from None
            # a cut-off or altered file fails somewhere in parsing, decryption (block length,
            # padding), decompression or XML: all of them mean the same thing to the user
            raise self.fail_file("truncated or damaged KeePass database") from None
        except OSError:
            raise self.fail_file("the database or its key file cannot be read") from None

    def _check_kdf_costs(self) -> None:
        """Refuse a database whose clear header asks for more key-derivation work than
        :data:`MAX_ARGON2_WORK_KIB_PASSES` / :data:`MAX_AES_KDF_ROUNDS` allow, before pykeepass
        derives anything (one line, exit 2). A header that does not parse is left to pykeepass's
        own open, which says why (not a KeePass database, damaged)."""
        from pykeepass.kdbx_parsing import KDBX

        try:
            with open(self.path, "rb") as fp:
                header = KDBX.subcons[0].parse_stream(fp).value
            dynamic = header.dynamic_header
            if header.major_version == 3:
                rounds, argon2 = dynamic.transform_rounds.data, None
            else:
                params = dynamic.kdf_parameters.data.dict
                rounds = params["R"].value if "R" in params else None
                argon2 = None if "R" in params else tuple(params[k].value for k in ("M", "I", "P"))
        except Exception:  # noqa: BLE001 - not a header pykeepass reads: its own open says why
            return
        if argon2 is None:
            if type(rounds) is not int or rounds > MAX_AES_KDF_ROUNDS:
                raise self.fail_file(
                    f"its key derivation asks for more than {MAX_AES_KDF_ROUNDS:,} AES-KDF rounds:"
                    " lower them in KeePass (Database settings, Security) and export again"
                )
            return
        memory, passes, lanes = argon2
        if not (
            type(memory) is int
            and type(passes) is int
            and type(lanes) is int
            and memory <= MAX_ARGON2_MEMORY_BYTES
            and lanes <= MAX_ARGON2_LANES
            and (memory // 1024) * passes <= MAX_ARGON2_WORK_KIB_PASSES
        ):
            raise self.fail_file(
                "its Argon2 key derivation asks for more than cvault derives for any key (1 GiB,"
                " 64 passes at that memory, 256 lanes): lower it in KeePass (Database settings,"
                " Security) and export again"
            )

    def _entries(self, report: ImportReport) -> Iterator[Draft | Skip]:
        kp = self._open()
        major, minor = kp.version
        if (major, minor) not in ((3, 1), (4, 0), (4, 1)):
            raise self.fail_file(f"unsupported KDBX version {major}.{minor}")
        root = kp.tree.getroot()
        binaries = kp.binaries
        recycle = _recycle_bin_uuid(root)
        top = root.find("Root/Group")
        if top is None:
            raise self.fail_file("the database has no root group")
        counter = [0]
        yield from self._group(top, [], recycle, binaries, counter, report, in_bin=False)

    def _group(
        self,
        group: Any,
        names: list[str],
        recycle: str | None,
        binaries: list[bytes],
        counter: list[int],
        report: ImportReport,
        *,
        in_bin: bool,
    ) -> Iterator[Draft | Skip]:
        for child in group:
            if child.tag == "Entry":
                counter[0] += 1
                index = counter[0]
                if in_bin:
                    yield Skip(index, "entry", "in recycle bin")
                else:
                    yield self._entry(index, child, names, binaries, report)
            elif child.tag == "Group":
                name = child.findtext("Name") or ""
                uid = child.findtext("UUID")
                yield from self._group(
                    child,
                    [*names, name],
                    recycle,
                    binaries,
                    counter,
                    report,
                    in_bin=in_bin or (recycle is not None and uid == recycle),
                )

    def _entry(
        self, index: int, element: Any, names: list[str], binaries: list[bytes], report: ImportReport
    ) -> Draft:
        where = f"entry {index}"
        strings: dict[str, tuple[str, bool]] = {}
        # one pass over the entry's children (each findall/findtext would walk them again: the
        # largest part of reading a big database after its key derivation)
        uuid_text: str | None = None
        tags_text: str | None = None
        binary_items: list[Any] = []
        for child in element:
            tag = child.tag
            if tag == "String":
                key = None
                value_el = None
                for part in child:
                    if part.tag == "Key" and key is None:
                        key = part.text or ""
                    elif part.tag == "Value" and value_el is None:
                        value_el = part
                if key is None or value_el is None:
                    continue
                protected = (value_el.get("Protected") or "").lower() == "true"
                strings[key] = (value_el.text or "", protected)
            elif tag == "UUID" and uuid_text is None:
                uuid_text = child.text or ""
            elif tag == "Tags" and tags_text is None:
                tags_text = child.text or ""
            elif tag == "Binary":
                binary_items.append(child)
        title = strings.get("Title", ("", False))[0]

        def get(key: str) -> str:
            return strings.get(key, ("", False))[0]

        username, password, url, notes = get("UserName"), get("Password"), get("URL"), get("Notes")
        otp = get("otp")
        if not otp and get("TOTP Seed"):
            otp = seed_with_settings(get("TOTP Seed"), get("TOTP Settings") or None, title) or ""
            if not otp:
                report.warnings.append(
                    f"{where} ({describe(title)}): its TOTP Settings are not "
                    "standard TOTP; the seed is kept as a secret custom field"
                )
        is_note = not (username or password or url or otp) and bool(notes)
        hint = "/".join(names) if names else None
        source_id = _uuid(uuid_text) or where
        draft = Draft(index, where, "entry", source_id, title, hint, "note" if is_note else "access")
        if is_note:
            draft.fields["text"] = notes
        else:
            draft.put_short("username", username, overflow="username")
            draft.put("password", password)
            draft.put_short("url", url, overflow="url")
            draft.put("notes", notes)
            draft.totp = otp or None
        for key, (value, protected) in strings.items():
            if key in STANDARD or (key in OTP_KEYS and draft.totp):
                continue
            draft.custom(key, value, secret=protected or key in OTP_KEYS)
        if any("{REF:" in value for value, _ in strings.values()):
            report.warnings.append(
                f"{where} ({describe(title)}) uses a KeePass field reference ({{REF:...}}); "
                "imported as written"
            )
        tags = tags_text or ""
        draft.tags = [t for t in tags.replace(",", ";").split(";") if t.strip()]
        for item in binary_items:
            name = item.findtext("Key") or "attachment"
            ref = item.find("Value")
            ref_id = ref.get("Ref") if ref is not None else None
            if ref_id is None or not ref_id.isdigit() or int(ref_id) >= len(binaries):
                raise self.fail(
                    where, title, f"attachment {name!r} refers to a binary that is not in the database"
                )
            draft.attachments.append(Attachment(name, bytes(binaries[int(ref_id)])))
        return draft


def _keyfile_readable(keyfile: Any) -> bool:
    from lxml.etree import LxmlError
    from pykeepass.kdbx_parsing.common import compute_key_composite

    try:
        compute_key_composite(password=None, keyfile=keyfile)
    except (AssertionError, AttributeError, LxmlError, ValueError, OSError):
        return False
    return True


def _recycle_bin_uuid(root: Any) -> str | None:
    if (root.findtext("Meta/RecycleBinEnabled") or "").strip().lower() != "true":
        return None
    value = (root.findtext("Meta/RecycleBinUUID") or "").strip()
    # the all-zero UUID means "no recycle bin yet"
    return value if value and value != "AAAAAAAAAAAAAAAAAAAAAA==" else None


def _uuid(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return str(uuid.UUID(bytes=base64.b64decode(text)))
    except (binascii.Error, ValueError):
        return None
