"""1Password Unencrypted Export (``.1pux``) (docs/import.md, "1Password").

Format: support.1password.com "About the 1Password Unencrypted Export format": a ZIP archive with
``export.attributes`` (``version``, ``description``, ``createdAt``), ``export.data`` (JSON:
``accounts[].attrs``, ``accounts[].vaults[].attrs``, ``accounts[].vaults[].items[]``) and
``files/`` (attached files). Item fields as exported by 1Password 8 and read by the 1PUX importer
of bitwarden/clients (``onepassword-1pux-importer-types.ts``): ``uuid``, ``state``,
``categoryUuid``, ``overview`` (``title``, ``url``, ``urls[].url``, ``tags``), ``details``
(``loginFields[]`` with ``designation`` username/password and ``fieldType``, ``notesPlain``,
``password``, ``sections[].fields[]`` with ``title``, ``id`` and a one-key ``value`` such as
``concealed``, ``string``, ``totp``, ``url``, ``email``, ``date``, ``monthYear``, ``address``,
``file``, ``sshKey``; ``documentAttributes`` ``fileName``/``documentId``).

``export.data`` is streamed out of the archive (never extracted to disk), twice: first for the
vault names, then item by item; attachments are read from the archive one item at a time.
"""

from __future__ import annotations

import datetime
import json
import os
import zipfile
from collections.abc import Iterator
from typing import Any

from vault.importers import _json
from vault.importers._reader import Draft, ImportSource, Skip
from vault.importers.model import MAX_ATTACHMENT, Attachment, ImportReport

#: export.attributes versions this reader knows (the 1Password page shows 2 and 3)
KNOWN_VERSIONS = frozenset({1, 2, 3})
#: 1 GiB: the largest export.data we stream (a zip member declares its size; a bomb declares a lot)
MAX_EXPORT_DATA = 1024 * 1024 * 1024

ITEMS = "accounts.item.vaults.item.items.item"
VAULT = "accounts.item.vaults.item"
SKIP = None
#: categoryUuid -> (source type, cvault kind or SKIP); codes from bitwarden/clients' Category enum
CATEGORIES: dict[str, tuple[str, str | None]] = {
    "001": ("login", "access"),
    "002": ("credit_card", SKIP),
    "003": ("secure_note", "note"),
    "004": ("identity", SKIP),
    "005": ("password", "access"),
    "006": ("document", "note"),
    "100": ("software_license", "note"),
    "101": ("bank_account", SKIP),
    "102": ("database", "access"),
    "103": ("drivers_license", SKIP),
    "104": ("outdoor_license", SKIP),
    "105": ("membership", SKIP),
    "106": ("passport", SKIP),
    "107": ("rewards_program", SKIP),
    "108": ("social_security_number", SKIP),
    "109": ("wireless_router", "access"),
    "110": ("server", "access"),
    "111": ("email_account", "access"),
    "112": ("api_credential", "access"),
    "113": ("medical_record", SKIP),
    "114": ("ssh_key", "access"),
}
#: section field ids (or titles) that fill an access record's own fields
ACCESS_FIELDS = {
    "username": "username",
    "password": "password",
    "hostname": "host",
    "server": "host",
    "host": "host",
    "url": "url",
    "website": "url",
    "port": "port",
    "credential": "api_token",
}
SECRET_ACCESS = frozenset({"password", "api_token"})


class OnePasswordSource(ImportSource):
    format = "1password"
    label = "1Password"

    def _archive(self) -> zipfile.ZipFile:
        try:
            archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError):
            raise self.fail_file("not a 1PUX export (not a ZIP archive)") from None
        names = set(archive.namelist())
        if "export.data" not in names:
            archive.close()
            raise self.fail_file("not a 1PUX export (no export.data in the archive)")
        return archive

    def _entries(self, report: ImportReport) -> Iterator[Draft | Skip]:
        with self._archive() as archive:
            self._check_attributes(archive, report)
            info = archive.getinfo("export.data")
            if info.file_size > MAX_EXPORT_DATA:
                raise self.fail_file("export.data is larger than 1 GiB")
            vaults = self._vault_names(archive)
            files = _file_index(archive)
            index = 0
            try:
                with archive.open("export.data") as raw:
                    stream = _json.events(raw)
                    account = vault = 0
                    for prefix, event, value in stream:
                        if prefix == "accounts.item" and event == "start_map":
                            account, vault = account + 1, 0
                        elif prefix == VAULT and event == "start_map":
                            vault += 1
                        elif prefix == ITEMS and event != "end_array":
                            index += 1
                            item = _json.build_value(stream, event, value)
                            yield self._map(index, item, vaults.get((account, vault)), archive, files, report)
            except (*_json.JSON_ERRORS, zipfile.BadZipFile) as exc:
                raise self._bad_data(exc, index) from None
            except RuntimeError:  # zipfile: "File is encrypted, password required"
                raise self.fail_file("the archive is password-protected; export again unencrypted") from None

    def _bad_data(self, exc: BaseException, index: int) -> Exception:
        after = f" after entry {index}" if index else ""
        reason = "the archive is damaged" if isinstance(exc, zipfile.BadZipFile) else _json.explain(exc)
        return self.fail_file(f"export.data: {reason}{after}")

    def _check_attributes(self, archive: zipfile.ZipFile, report: ImportReport) -> None:
        try:
            raw = archive.read("export.attributes")
        except KeyError:
            report.warnings.append("export.attributes is missing; reading export.data anyway")
            return
        except (zipfile.BadZipFile, RuntimeError, OSError):
            raise self.fail_file("export.attributes cannot be read (damaged or encrypted archive)") from None
        try:
            attributes = json.loads(raw.decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            raise self.fail_file("export.attributes is not valid JSON") from None
        version = attributes.get("version") if isinstance(attributes, dict) else None
        if version not in KNOWN_VERSIONS:
            raise self.fail_file(f"unsupported 1PUX version {version!r} (this reader knows 1 to 3)")

    def _vault_names(self, archive: zipfile.ZipFile) -> dict[tuple[int, int], str]:
        names: dict[tuple[int, int], str] = {}
        try:
            with archive.open("export.data") as raw:
                stream = _json.events(raw)
                first = next(stream, None)
                if first is None or first[1] != "start_map":
                    raise self.fail_file("export.data is not a JSON object")
                account = vault = 0
                for prefix, event, value in stream:
                    if prefix == "accounts.item" and event == "start_map":
                        account, vault = account + 1, 0
                    elif prefix == VAULT and event == "start_map":
                        vault += 1
                    elif prefix == VAULT + ".attrs" and event == "start_map":
                        attrs = _json.build_value(stream, event, value)
                        name = attrs.get("name") if isinstance(attrs, dict) else None
                        names[(account, vault)] = name if isinstance(name, str) else ""
                    elif prefix == VAULT + ".items" and event == "start_array":
                        _json.skip_value(stream, event)
        except (*_json.JSON_ERRORS, zipfile.BadZipFile) as exc:
            raise self._bad_data(exc, 0) from None
        except RuntimeError:
            raise self.fail_file("the archive is password-protected; export again unencrypted") from None
        return names

    # -- one item -------------------------------------------------------------------------------

    def _map(
        self,
        index: int,
        element: Any,
        vault_name: str | None,
        archive: zipfile.ZipFile,
        files: dict[str, str],
        report: ImportReport,
    ) -> Draft | Skip:
        where = f"entry {index}"
        if not isinstance(element, dict):
            raise self.fail(where, None, "an item is not a JSON object")
        item = element
        if "item" in element and isinstance(element["item"], dict) and "uuid" not in element:
            item = element["item"]  # older exports wrap each item: {"item": {...}, "file": {...}}
        overview = _obj(item.get("overview"))
        details = _obj(item.get("details"))
        title = _str(overview.get("title"))
        category = _str(item.get("categoryUuid"))
        source_type, kind = CATEGORIES.get(category, (f"category {category}", "unsupported"))
        state = _str(item.get("state")) or "active"
        if state == "trashed":
            return Skip(index, source_type, "in trash")
        if kind is SKIP:
            return Skip(index, source_type, source_type.replace("_", " "))
        if kind == "unsupported":
            return Skip(index, source_type, "unsupported category")
        source_id = _str(item.get("uuid")) or where
        draft = Draft(index, where, source_type, source_id, title, vault_name, kind)
        try:
            self._fill(draft, overview, details, archive, files, element)
        except _NotText:
            raise self.fail(where, title, "a value has an unexpected shape") from None
        if state == "archived":
            draft.tags.append("archived")
        return draft

    def _fill(
        self,
        draft: Draft,
        overview: dict[str, Any],
        details: dict[str, Any],
        archive: zipfile.ZipFile,
        files: dict[str, str],
        element: dict[str, Any],
    ) -> None:
        notes = _str(details.get("notesPlain"))
        if draft.kind == "note":
            draft.fields["text"] = notes
        else:
            draft.put("notes", notes)
            draft.put("password", _str(details.get("password")))
        tags = overview.get("tags")
        if isinstance(tags, list):
            draft.tags.extend(t for t in tags if isinstance(t, str))
        urls = [_str(overview.get("url"))]
        for entry in overview.get("urls") or []:
            if isinstance(entry, dict):
                urls.append(_str(entry.get("url")))
        self._urls(draft, urls)
        for field in details.get("loginFields") or []:
            self._login_field(draft, _obj(field))
        for section in details.get("sections") or []:
            section = _obj(section)
            section_title = _str(section.get("title"))
            for field in section.get("fields") or []:
                self._section_field(draft, section_title, _obj(field), archive, files)
        document = details.get("documentAttributes")
        if isinstance(document, dict):
            self._attach(draft, document, archive, files)
        item_file = element.get("file")
        if isinstance(item_file, dict) and not draft.attachments:
            path = _str(item_file.get("path"))
            attrs = _obj(item_file.get("attrs"))
            name = _str(attrs.get("name")) or os.path.basename(path)
            if path:
                draft.attachments.append(Attachment(name, self._read_member(draft, path, name, archive)))

    def _urls(self, draft: Draft, urls: list[str]) -> None:
        unique: list[str] = []
        for url in urls:
            if url and url not in unique:
                unique.append(url)
        for n, url in enumerate(unique):
            if n == 0 and draft.kind == "access":
                draft.put_short("url", url, overflow="url")
            else:
                draft.custom(f"uri {n + 1}", url, secret=False)

    def _login_field(self, draft: Draft, field: dict[str, Any]) -> None:
        raw = field.get("value")
        if isinstance(raw, dict):
            # linked-account values arrive as an object (bitwarden/clients LoginFieldsEntity)
            raw = raw.get("string") or raw.get("email_address")
        value = _str(raw)
        if value == "":
            return
        designation = _str(field.get("designation"))
        if draft.kind == "access" and designation == "username" and "username" not in draft.fields:
            draft.put_short("username", value, overflow="username")
        elif draft.kind == "access" and designation == "password" and "password" not in draft.fields:
            draft.put("password", value)
        else:
            name = _str(field.get("name")) or _str(field.get("id")) or "login field"
            draft.custom(name, value, secret=_str(field.get("fieldType")) == "P" or designation == "password")

    def _section_field(
        self,
        draft: Draft,
        section_title: str,
        field: dict[str, Any],
        archive: zipfile.ZipFile,
        files: dict[str, str],
    ) -> None:
        value = _obj(field.get("value"))
        if len(value) != 1:
            return
        ((key, raw),) = value.items()
        if raw is None or raw == "":
            return
        field_title = _str(field.get("title"))
        field_id = _str(field.get("id"))
        name = " / ".join(p for p in (section_title, field_title or field_id) if p) or "field"
        if key == "file":
            self._attach(draft, _obj(raw), archive, files)
            return
        if key == "sshKey":
            key_obj = _obj(raw)
            private = _str(_obj(key_obj.get("metadata")).get("privateKey")) or _str(key_obj.get("privateKey"))
            if draft.kind == "access" and "ssh_private_key" not in draft.fields:
                draft.put("ssh_private_key", private)
            else:
                draft.custom(name, private, secret=True)
            metadata = _obj(key_obj.get("metadata"))
            draft.custom("public key", _str(metadata.get("publicKey")), secret=False)
            draft.custom("fingerprint", _str(metadata.get("fingerprint")), secret=False)
            return
        if key == "totp":
            text = _str(raw)
            if draft.totp is None:
                draft.totp = text
            else:
                draft.custom(name, text, secret=True)
            return
        text = _render(key, raw)
        target = None
        if draft.kind == "access":
            target = ACCESS_FIELDS.get(field_id.lower()) or ACCESS_FIELDS.get(field_title.lower())
        if target is not None and target not in draft.fields:
            if target == "port":
                if text.isdigit() and 1 <= int(text) <= 65535:
                    draft.fields["port"] = int(text)
                    return
            elif target in SECRET_ACCESS:
                draft.put(target, text)
                return
            else:
                draft.put_short(target, text, overflow=name)
                return
        draft.custom(name, text, secret=key not in _PLAIN_KEYS)

    def _attach(
        self, draft: Draft, document: dict[str, Any], archive: zipfile.ZipFile, files: dict[str, str]
    ) -> None:
        document_id = _str(document.get("documentId"))
        file_name = _str(document.get("fileName")) or "attachment"
        member = files.get(document_id) if document_id else None
        if member is None:
            raise self.fail(draft.where, draft.title, f"attached file {file_name!r} is missing from files/")
        draft.attachments.append(Attachment(file_name, self._read_member(draft, member, file_name, archive)))

    def _read_member(self, draft: Draft, member: str, name: str, archive: zipfile.ZipFile) -> bytes:
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise self.fail(
                draft.where, draft.title, f"attached file {name!r} is missing from the archive"
            ) from None
        if info.file_size > MAX_ATTACHMENT:
            raise self.fail(draft.where, draft.title, f"attached file {name!r} is larger than 25 MiB")
        return archive.read(member)


#: value keys whose text is not secret (everything else, known or not, is kept as a secret field)
_PLAIN_KEYS = frozenset(
    {
        "string",
        "url",
        "email",
        "phone",
        "menu",
        "gender",
        "date",
        "monthYear",
        "address",
        "reference",
        "creditCardType",
    }
)


def _render(key: str, raw: Any) -> str:
    if key == "date" and isinstance(raw, int | float):
        return datetime.datetime.fromtimestamp(raw, tz=datetime.UTC).date().isoformat()
    if key == "monthYear" and isinstance(raw, int):
        return f"{raw // 100:04d}-{raw % 100:02d}"
    if key == "email" and isinstance(raw, dict):
        return _str(raw.get("email_address"))
    if key == "address" and isinstance(raw, dict):
        parts = (_str(raw.get(k)) for k in ("street", "city", "state", "zip", "country"))
        return ", ".join(p for p in parts if p)
    if isinstance(raw, dict | list):
        return json.dumps(raw, ensure_ascii=False, sort_keys=True)
    return _str(raw)


def _file_index(archive: zipfile.ZipFile) -> dict[str, str]:
    """documentId -> archive member: attached files are stored as ``files/<documentId>__<fileName>``
    (the convention 1Password 8 writes; some tools write three underscores, or only the id)."""
    out: dict[str, str] = {}
    for name in archive.namelist():
        if not name.startswith("files/") or name.endswith("/"):
            continue
        base = name[len("files/") :]
        document_id = base.split("__", 1)[0] if "__" in base else base
        out.setdefault(document_id, name)
    return out


class _NotText(TypeError):
    pass


def _obj(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise _NotText


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise _NotText
