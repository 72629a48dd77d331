"""Bitwarden unencrypted JSON exports, personal and organisation (docs/import.md, "Bitwarden").

Format: bitwarden.com/help "Condition a Bitwarden .csv or .json" (identical to what "Export vault"
writes) and the export model of bitwarden/clients (``libs/common/src/models/export``): a top-level
object with ``encrypted``, ``folders`` (personal) or ``collections`` (organisation) and ``items``;
each item has ``id``, ``organizationId``, ``folderId``, ``collectionIds``, ``type`` (1 login,
2 secure note, 3 card, 4 identity, 5 SSH key), ``name``, ``notes``, ``fields`` (``name``,
``value``, ``type`` 0 text, 1 hidden, 2 boolean, 3 linked with ``linkedId``) and the type's object
(``login`` with ``uris[].uri``, ``username``, ``password``, ``totp``; ``sshKey`` with
``privateKey``, ``publicKey``, ``keyFingerprint``).

The file is read twice, each time as a stream: first for the folder and collection names (which a
writer may put after the items), then item by item.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vault.importers import _json
from vault.importers._reader import Draft, ImportSource, Skip, describe
from vault.importers.model import ImportReport

SKIPPED_TYPES = {3: "card", 4: "identity"}
TYPE_NAMES = {1: "login", 2: "secure_note", 3: "card", 4: "identity", 5: "ssh_key"}
#: LoginLinkedId of bitwarden/clients (libs/common/src/vault/enums/linked-id-type.enum.ts)
LINKED_LOGIN = {100: "username", 101: "password", 102: "totp"}
FIELD_TEXT, FIELD_HIDDEN, FIELD_BOOLEAN, FIELD_LINKED = 0, 1, 2, 3


class BitwardenSource(ImportSource):
    format = "bitwarden"
    label = "Bitwarden"

    def _entries(self, report: ImportReport) -> Iterator[Draft | Skip]:
        folders, collections = self._directory()
        index = 0
        try:
            with self.path.open("rb") as raw:
                # pass 2 builds each item in ijson's C code: the items are the bulk of the file
                for item in _json.items(raw, "items.item"):
                    index += 1
                    try:
                        mapped = self._map(index, item, folders, collections, report)
                    except NotText:
                        title = item.get("name") if isinstance(item, dict) else None
                        raise self.fail(
                            f"entry {index}",
                            title if isinstance(title, str) else None,
                            "a value is an object or a list where text was expected",
                        ) from None
                    yield mapped
        except _json.JSON_ERRORS as exc:
            raise self._bad_json(exc, index) from None

    def _bad_json(self, exc: BaseException, index: int) -> Exception:
        after = f" after entry {index}" if index else ""
        return self.fail_file(f"{_json.explain(exc)}{after}")

    def _directory(self) -> tuple[dict[str, str], dict[str, str]]:
        """Pass 1: refuse encrypted exports, collect folder and collection names."""
        top: dict[str, Any] = {}
        lists: dict[str, list[Any]] = {"folders": [], "collections": []}
        seen_items = False
        complete = 0
        if self.path.stat().st_size == 0:
            raise self.fail_file("the file is empty")
        try:
            with self.path.open("rb") as raw:
                stream = _json.events(raw)
                first = next(stream, None)
                if first is None or first[1] != "start_map":
                    raise self.fail_file("not a Bitwarden JSON export (the top level is not an object)")
                for prefix, event, value in stream:
                    if prefix in ("folders.item", "collections.item") and event != "end_array":
                        lists[prefix.split(".")[0]].append(_json.build_value(stream, event, value))
                    elif prefix == "items" and event == "start_array":
                        seen_items = True
                    elif prefix == "items.item" and event != "end_array":
                        _json.skip_value(stream, event)
                        complete += 1
                    elif prefix == "items" and event not in ("null", "end_array"):
                        raise self.fail_file("'items' is not a list")
                    elif (
                        prefix
                        and "." not in prefix
                        and event not in ("map_key", "end_map", "start_map", "end_array")
                    ):
                        top[prefix] = value
        except _json.JSON_ERRORS as exc:
            raise self._bad_json(exc, complete) from None
        if top.get("encrypted") is True or "encKeyValidation_DO_NOT_EDIT" in top or "data" in top:
            raise self.fail_file(
                "this is an encrypted export; cvault reads only unencrypted exports: export again in "
                "Bitwarden choosing the format '.json' (not '.json (Encrypted)'), import it, then delete it"
            )
        if not seen_items:
            raise self.fail_file("not a Bitwarden JSON export (no 'items' list)")
        return _names(lists["folders"]), _names(lists["collections"])

    def _map(
        self,
        index: int,
        item: Any,
        folders: dict[str, str],
        collections: dict[str, str],
        report: ImportReport,
    ) -> Draft | Skip:
        where = f"entry {index}"
        if not isinstance(item, dict):
            raise self.fail(where, None, "an item is not a JSON object")
        title = _text(item.get("name")) or ""
        kind_code = item.get("type")
        if not isinstance(kind_code, int) or isinstance(kind_code, bool):
            raise self.fail(where, title, "item 'type' is missing or not a number")
        source_type = TYPE_NAMES.get(kind_code, f"type {kind_code}")
        if item.get("deletedDate"):
            return Skip(index, source_type, "in trash")
        if kind_code in SKIPPED_TYPES:
            return Skip(index, source_type, SKIPPED_TYPES[kind_code])
        if kind_code not in TYPE_NAMES:
            return Skip(index, source_type, "unsupported item type")
        hint = self._hint(where, title, item, folders, collections, report)
        source_id = _text(item.get("id")) or where
        notes = _text(item.get("notes"))
        if kind_code == 2:
            draft = Draft(index, where, source_type, source_id, title, hint, "note")
            draft.fields["text"] = notes or ""
        else:
            draft = Draft(index, where, source_type, source_id, title, hint, "access")
            draft.put("notes", notes)
            if kind_code == 1:
                self._login(draft, item.get("login"))
            else:
                self._ssh_key(draft, item.get("sshKey"))
        self._custom_fields(draft, item.get("fields"))
        listed = item.get("attachments")
        if isinstance(listed, list) and listed:
            # a JSON export carries no file contents (bitwarden/clients CipherExport has no
            # attachments; `bw list items` output lists them by id and URL only): counted, warned
            report.attachments_missing += len(listed)
            report.warnings.append(
                f"{where} ({describe(title)}): {len(listed)} attachment(s) listed but not in the"
                " export (a Bitwarden JSON export holds no file contents): download them from"
                " Bitwarden and add them with 'cvault secret attach CLIENT PATH FILE'"
            )
        return draft

    def _hint(
        self,
        where: str,
        title: str,
        item: dict[str, Any],
        folders: dict[str, str],
        collections: dict[str, str],
        report: ImportReport,
    ) -> str | None:
        ids = item.get("collectionIds")
        if isinstance(ids, str):  # the "Condition a .json" sample writes a single id as a string
            ids = [ids]
        if ids:
            names = [collections[i] for i in ids if isinstance(i, str) and i in collections]
            if not names:
                # a wrong guess would file the record under another client: refuse instead
                raise self.fail(where, title, "refers only to collections that are not in the export")
            if len(names) > 1:
                report.warnings.append(
                    f"{where} ({describe(title)}) is in {len(names)} collections; "
                    f"using the first, {names[0]!r}"
                )
            return names[0]
        folder_id = item.get("folderId")
        if isinstance(folder_id, str) and folder_id:
            if folder_id not in folders:
                raise self.fail(where, title, "refers to a folder that is not in the export")
            return folders[folder_id]
        return None

    def _login(self, draft: Draft, login: Any) -> None:
        if login is None:
            return
        if not isinstance(login, dict):
            raise self.fail(draft.where, draft.title, "'login' is not an object")
        draft.put_short("username", _text(login.get("username")), overflow="username")
        draft.put("password", _text(login.get("password")))
        draft.totp = _text(login.get("totp"))
        uris = login.get("uris") or []
        if not isinstance(uris, list):
            raise self.fail(draft.where, draft.title, "'login.uris' is not a list")
        values = [_text(u.get("uri")) for u in uris if isinstance(u, dict)]
        for n, uri in enumerate(v for v in values if v):
            if n == 0:
                draft.put_short("url", uri, overflow="uri")
            else:
                draft.custom(f"uri {n + 1}", uri, secret=False)

    def _ssh_key(self, draft: Draft, key: Any) -> None:
        if not isinstance(key, dict):
            raise self.fail(draft.where, draft.title, "'sshKey' is missing or not an object")
        draft.put("ssh_private_key", _text(key.get("privateKey")))
        draft.custom("public key", _text(key.get("publicKey")), secret=False)
        draft.custom("fingerprint", _text(key.get("keyFingerprint")), secret=False)

    def _custom_fields(self, draft: Draft, fields: Any) -> None:
        if fields is None:
            return
        if not isinstance(fields, list):
            raise self.fail(draft.where, draft.title, "'fields' is not a list")
        for n, f in enumerate(fields, 1):
            if not isinstance(f, dict):
                raise self.fail(draft.where, draft.title, f"custom field {n} is not an object")
            name = _text(f.get("name")) or f"field {n}"
            kind = f.get("type", FIELD_TEXT)
            if kind == FIELD_LINKED:
                linked = f.get("linkedId")
                target = (
                    LINKED_LOGIN.get(linked, f"field {linked}")
                    if isinstance(linked, int)
                    else f"field {linked}"
                )
                draft.custom(name, f"linked to {target}", secret=False)
                continue
            value = f.get("value")
            if kind == FIELD_BOOLEAN and isinstance(value, bool):
                value = "true" if value else "false"
            # hidden fields and field types this reader does not know are secret: fail closed
            draft.custom(name, _text(value), secret=kind not in (FIELD_TEXT, FIELD_BOOLEAN))


def _names(entries: list[Any]) -> dict[str, str]:
    out = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            name = entry.get("name")
            out[entry["id"]] = name if isinstance(name, str) else ""
    return out


class NotText(TypeError):
    """A JSON object or list where the format has text."""


def _text(value: Any) -> str | None:
    """A JSON scalar as text (numbers written as numbers stay readable), ``None`` for null;
    NotText for an object or a list, so that no value is dropped silently."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise NotText
