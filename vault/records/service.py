"""Client secrets: put, get, list, history, rm, import and export (docs/spec.md §4).

Write path: validate (pydantic, lazily imported) -> authorize + audit -> under the write lock:
encrypt with a fresh DEK, write the blob atomically, insert the version row with the wrapped DEK,
queue the upload, prune versions beyond the kept number (their DEKs are deleted, so their blobs are
unreadable everywhere) -> commit -> delete the pruned blobs locally. A crash before the commit
leaves at most an orphan blob, never a half-written record; after the commit the write is durable.

Read path (kept free of pydantic and anything heavy): authorize + audit -> tag lookup -> unwrap the
DEK -> read and decrypt the blob, checking that its header names this exact record version.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import TYPE_CHECKING, Any

from vault import blob as blobfmt
from vault import crypto, names
from vault.clock import from_epoch, rfc3339, stored_epoch, to_epoch
from vault.context import VaultContext
from vault.errors import (
    BlobNotFound,
    ClientUnavailable,
    CryptoError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
)
from vault.keys import ClientKeys
from vault.policy import Action
from vault.principal import Principal
from vault.records import SecretRecord
from vault.records.importfile import ImportFile
from vault.store import outbox
from vault.store import records as store
from vault.store.clients import ClientRow
from vault.store.records import VersionRow, version_row
from vault.store.rowmac import RowTampered
from vault.tuples import NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

Progress = Callable[[int, int], None]
MAX_VERSION = 2**31


class _PreparedWrite(NamedTuple):
    path: str
    kind: str
    plaintext: bytes
    #: the validated fields (what a new version holds: checked against the current one)
    fields: dict[str, Any]
    #: the attachment entries the new version lists (docs/format.md "Attachments"); None: those
    #: of the current version, carried over (no write drops an attachment silently)
    attachments: list[dict[str, Any]] | None = None


class SecretService:
    def __init__(self, ctx: VaultContext, *, fetch_lost_blob: Callable[[str], bytes | None] | None = None):
        self.ctx = ctx
        #: restores a blob lost locally from the remote replica, None if there is none (the facade
        #: passes the sync service's)
        self._fetch_lost_blob = fetch_lost_blob

    # --- helpers --------------------------------------------------------------------------------

    def _record_name(self, client: ClientRow, path: str, version: int | None = None) -> str:
        where = f"{client.name}/{path}"
        return where if version is None else f"{where} (version {version})"

    def _integrity(self, client: ClientRow, path: str, version: int | None = None) -> IntegrityFailure:
        return IntegrityFailure(
            f"integrity failure: record {self._record_name(client, path, version)} failed verification"
        )

    def _find(self, conn, client: ClientRow, keys: ClientKeys, path: str):
        row = store.find(conn, client.id, keys.path_tag(path))
        if row is None:
            return None
        record_id, meta_sealed, current_version = row
        try:
            meta = keys.unseal_meta(meta_sealed, record_id)
        except CryptoError:
            raise self._integrity(client, path) from None
        if not crypto.constant_time_equal(meta.get("path", ""), path):
            raise self._integrity(client, path)
        return record_id, meta, current_version

    def _require(self, conn, client: ClientRow, keys: ClientKeys, path: str):
        found = self._find(conn, client, keys, path)
        if found is None:
            raise NotFound(f"no record {client.name}/{path}")
        return found

    @staticmethod
    def _meta(client: ClientRow, keys: ClientKeys, record_id: int, meta_sealed: bytes) -> dict[str, Any]:
        """A listed record's encrypted name and kind (a listing names the record by its id)."""
        try:
            return keys.unseal_meta(meta_sealed, record_id)
        except CryptoError:
            raise IntegrityFailure(
                f"integrity failure: record {record_id} of client {client.name} failed verification"
            ) from None

    @staticmethod
    def _prepare(path: str, kind: str, fields: dict) -> _PreparedWrite:
        from vault.records import validate  # pydantic: write path only

        names.record_path(path)
        normalised = validate.validate(kind, fields)
        return _PreparedWrite(path, kind, validate.encode(kind, normalised), normalised)

    def _current_fields(
        self, conn, client: ClientRow, keys: ClientKeys, record_id: int, path: str, kind: str, current: int
    ) -> dict[str, Any] | None:
        """The fields of the current version, or None when it is a delete marker."""
        doc = self._current_doc(conn, client, keys, record_id, path, kind, current)
        return None if doc is None else doc[0]

    def _current_doc(
        self, conn, client: ClientRow, keys: ClientKeys, record_id: int, path: str, kind: str, current: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The fields and attachment entries of the current version (None: a delete marker)."""
        row = store.version(conn, record_id, current)
        if row is None or row[0] is None:
            return None
        record, entries = self._open(client, keys, record_id, path, kind, current, row)
        return dict(record.fields), entries

    @staticmethod
    def _refuse_drops(client: ClientRow, path: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        """``put`` never drops a field of an existing record silently (issue 16)."""
        from vault.records import field_keys

        dropped = sorted(field_keys(old) - field_keys(new))
        if dropped:
            raise InvalidInput(
                f"{client.name}/{path} already exists and this would drop {', '.join(dropped)}: "
                "use 'secret edit' to change some fields, or --replace to store exactly these"
            )

    # --- writes ---------------------------------------------------------------------------------

    def put(
        self,
        principal: Principal,
        client_name: str,
        path: str,
        kind: str,
        fields: dict[str, Any],
        *,
        replace: bool = False,
    ) -> dict:
        """Store a new version. On an existing record this refuses (naming them) to drop any field
        the current version holds, unless ``replace``: :meth:`edit` changes only some fields."""
        prepared = self._prepare(path, kind, fields)
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_PUT, client=client, detail=path)
        with self.ctx.db.write() as conn:
            version, pruned = self._write(conn, principal, client, prepared, durable=True, replace=replace)
        self._delete_local(pruned)
        return {"client": client.name, "path": path, "kind": kind, "version": version}

    def edit(
        self,
        principal: Principal,
        client_name: str,
        path: str,
        *,
        set_fields: dict[str, Any] | None = None,
        unset: builtins.list[str] | tuple[str, ...] = (),
    ) -> dict:
        """A new version with only the fields given changed: ``set_fields`` replaces fields
        (``custom`` merges by name), ``unset`` removes fields (``custom.NAME``: one custom field).
        The record must exist and not be deleted (``restore`` brings a deleted one back)."""
        from vault.records import CUSTOM

        names.record_path(path)
        changes = dict(set_fields or {})
        removals = builtins.list(dict.fromkeys(unset))
        if not changes and not removals:
            raise InvalidInput("nothing to change: give field options, --fields-json or --unset")
        for name in removals:
            if name in changes or (name.startswith("custom.") and name[7:] in (changes.get(CUSTOM) or {})):
                raise InvalidInput(f"field {name} is both set and unset")
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_EDIT, client=client, detail=path)
        with self.ctx.db.write() as conn:
            client = self.ctx.client(client.name, conn)  # as of this transaction (see _write)
            keys = self.ctx.client_keys(client, conn=conn)
            record_id, meta, current = self._require(conn, client, keys, path)
            kind = meta["kind"]
            doc = self._current_doc(conn, client, keys, record_id, path, kind, current)
            if doc is None:
                raise NotFound(
                    f"{client.name}/{path} was deleted (version {current}): "
                    "'secret restore --version N' brings it back"
                )
            merged = merge_fields(doc[0], changes, removals, where=f"{client.name}/{path}")
            prepared = self._prepare(path, kind, merged)._replace(attachments=doc[1])
            version, pruned = self._write(conn, principal, client, prepared, durable=True, replace=True)
        self._delete_local(pruned)
        return {"client": client.name, "path": path, "kind": kind, "version": version}

    def restore(self, principal: Principal, client_name: str, path: str, *, version: int) -> dict:
        """Make version ``version``'s content the new current version (also undeletes)."""
        names.record_path(path)
        client = self.ctx.client(client_name)
        self.ctx.authorize(
            principal, Action.SECRET_RESTORE, client=client, detail=f"{path} (version {version})"
        )
        with self.ctx.db.write() as conn:
            client = self.ctx.client(client.name, conn)  # as of this transaction (see _write)
            keys = self.ctx.client_keys(client, conn=conn)
            record_id, meta, current = self._require(conn, client, keys, path)
            kind = meta["kind"]
            row = store.version(conn, record_id, version)
            if row is None:
                raise NotFound(
                    f"no version {version} of {client.name}/{path} (kept: the last "
                    f"{self.ctx.settings['keep_versions']}; see 'secret history')"
                )
            if row[0] is None:
                raise InvalidInput(f"version {version} of {client.name}/{path} is a delete marker")
            record, entries = self._open(client, keys, record_id, path, kind, version, row)
            # version N's attachments too: their blobs are kept while N is (attachment_refs)
            prepared = self._prepare(path, kind, dict(record.fields))._replace(attachments=entries)
            new_version, pruned = self._write(conn, principal, client, prepared, durable=True, replace=True)
        self._delete_local(pruned)
        return {
            "client": client.name,
            "path": path,
            "kind": kind,
            "version": new_version,
            "restored_from": version,
        }

    # --- attachments (docs/format.md "Attachments") ----------------------------------------------

    def attach(self, principal: Principal, client_name: str, path: str, data: bytes, *, name: str) -> dict:
        """Attach a file (at most 25 MiB) to a record, as a new version listing it: its own key
        (kept only in the record version's encrypted document), an opaque blob name, a header
        binding it to client, record and attachment. A file of the same name is replaced (the
        older versions keep the old one)."""
        from vault.records import validate

        names.record_path(path)
        name = validate.attachment_name(name)
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidInput("an attachment is bytes")
        if len(data) > blobfmt.MAX_ATTACHMENT:
            raise InvalidInput(
                f"attachment {name} is {len(data) / 1048576:.1f} MiB: at most 25 MiB per attachment"
            )
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_PUT, client=client, detail=f"{path} (attach {name})")
        now = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            client = self.ctx.client(client.name, conn)  # as of this transaction (see _write)
            keys = self.ctx.client_keys(client, conn=conn)
            record_id, meta, current = self._require(conn, client, keys, path)
            kind = meta["kind"]
            doc = self._deleted_or_doc(conn, client, keys, record_id, path, kind, current)
            entries = [a for a in doc[1] if a["name"] != name]
            if len(entries) >= validate.MAX_ATTACHMENTS:
                raise InvalidInput(
                    f"{client.name}/{path} has {len(entries)} attachments: at most {validate.MAX_ATTACHMENTS}"
                )
            entries.append(
                self._store_attachment(conn, principal, client, record_id, name, data, now, durable=True)
            )
            prepared = self._prepare(path, kind, doc[0])._replace(attachments=entries)
            version, pruned = self._write(conn, principal, client, prepared, durable=True, replace=True)
        self._delete_local(pruned)
        return {"client": client.name, "path": path, "name": name, "size": len(data), "version": version}

    def _store_attachment(
        self,
        conn,
        principal: Principal,
        client: ClientRow,
        record_id: int,
        name: str,
        data: bytes,
        now: int,
        *,
        durable: bool,
    ) -> dict[str, Any]:
        """Encrypt one attached file under its own key and write its blob (before the row that
        lists it: docs/architecture.md), queued for upload; returns the entry the next version of
        the record lists (docs/format.md "Attachments"). Its id is the number of that version:
        the caller writes it next, in this transaction (``attach``, and the import's writer)."""
        import base64

        attachment_id = store.next_version(conn, record_id)  # the version that adds it
        key = crypto.new_key()
        blob = blobfmt.encrypt_attachment(
            key,
            bytes(data),
            vault_id=self.ctx.vault_id,
            client_id=client.id_bytes,
            record_id=record_id,
            attachment_id=attachment_id,
        )
        blob_name = self.ctx.keyring.attachment_blob_name(client.id, record_id, attachment_id)
        self.ctx.blobs.put(blob_name, blob, durable=durable)
        outbox.queue_put(conn, (blob_name,), now)
        return {
            "name": name,
            "id": attachment_id,
            "size": len(data),
            "key": base64.b64encode(key).decode(),
            "blob": blob_name,
            "added_at": now,
            "added_by": principal.name,
        }

    def detach(self, principal: Principal, client_name: str, path: str, *, name: str) -> dict:
        """A new version without the attachment ``name`` (older versions keep it, and restore
        brings it back, until they are pruned or the record is purged)."""
        names.record_path(path)
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_PUT, client=client, detail=f"{path} (detach {name})")
        with self.ctx.db.write() as conn:
            client = self.ctx.client(client.name, conn)  # as of this transaction (see _write)
            keys = self.ctx.client_keys(client, conn=conn)
            record_id, meta, current = self._require(conn, client, keys, path)
            kind = meta["kind"]
            fields, entries = self._deleted_or_doc(conn, client, keys, record_id, path, kind, current)
            kept = [a for a in entries if a["name"] != name]
            if len(kept) == len(entries):
                raise NotFound(f"{client.name}/{path} has no attachment {name!r}")
            prepared = self._prepare(path, kind, fields)._replace(attachments=kept)
            version, pruned = self._write(conn, principal, client, prepared, durable=True, replace=True)
        self._delete_local(pruned)
        return {"client": client.name, "path": path, "name": name, "version": version}

    def attachment(
        self, principal: Principal, client_name: str, path: str, name: str, version: int | None = None
    ) -> dict:
        """An attached file's bytes (a read: step-up, audited like ``get``): ``{"client", "path",
        "name", "size", "version", "data"}``. A blob that fails verification is an integrity
        failure (exit 6), naming the record and the attachment."""
        names.record_path(path)
        if version is not None and not 1 <= version <= MAX_VERSION:
            raise InvalidInput(f"version must be 1 to {MAX_VERSION}")
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_GET, client=client, detail=f"{path} (attachment {name})")

        def read(conn, client: ClientRow, keys: ClientKeys):
            record_id, meta, current = self._require(conn, client, keys, path)
            wanted = current if version is None else version
            return client, keys, record_id, meta, wanted, store.version(conn, record_id, wanted)

        client, keys, record_id, meta, wanted, row = self.ctx.read_client(client.name, read)
        if row is None:
            raise NotFound(f"no version {wanted} of {client.name}/{path}")
        if row[0] is None:
            raise NotFound(f"{client.name}/{path} was deleted (version {wanted})")
        _, entries = self._open(client, keys, record_id, path, meta["kind"], wanted, row)
        entry = next((a for a in entries if a["name"] == name), None)
        if entry is None:
            listed = ", ".join(a["name"] for a in entries) or "none"
            raise NotFound(f"{client.name}/{path} has no attachment {name!r} (attachments: {listed})")
        return {
            "client": client.name,
            "path": path,
            "name": name,
            "size": entry["size"],
            "version": wanted,
            "data": self._open_attachment(client, record_id, path, entry),
        }

    def _open_attachment(self, client: ClientRow, record_id: int, path: str, entry: dict[str, Any]) -> bytes:
        import base64
        import binascii

        failed = IntegrityFailure(
            f"integrity failure: attachment {entry['name']!r} of {client.name}/{path} failed verification"
        )
        try:
            key = base64.b64decode(entry["key"], validate=True)
            data = self.read_blob(entry["blob"])
        except (binascii.Error, ValueError):
            raise failed from None
        except BlobNotFound:
            raise IntegrityFailure(
                f"integrity failure: attachment {entry['name']!r} of {client.name}/{path}"
                " is missing from the blob store (try 'cvault sync pull')"
            ) from None
        try:
            plaintext = blobfmt.decrypt_attachment(
                data,
                key,
                vault_id=self.ctx.vault_id,
                client_id=client.id_bytes,
                record_id=record_id,
                attachment_id=entry["id"],
            )
        except CryptoError:
            raise failed from None
        if len(plaintext) != entry["size"]:
            raise failed
        return plaintext

    def _deleted_or_doc(self, conn, client: ClientRow, keys: ClientKeys, record_id, path, kind, current):
        doc = self._current_doc(conn, client, keys, record_id, path, kind, current)
        if doc is None:
            raise NotFound(
                f"{client.name}/{path} was deleted (version {current}): "
                "'secret restore --version N' brings it back"
            )
        return doc

    def _write(
        self,
        conn,
        principal: Principal,
        client: ClientRow,
        prepared: _PreparedWrite,
        *,
        durable: bool,
        replace: bool = False,
    ) -> tuple[int, list[str]]:
        # the client row as of this write transaction: a rotation that committed since the caller
        # read it has moved the client to a new key version (an old row would name a destroyed one)
        client = self.ctx.client(client.name, conn)
        keys = self.ctx.client_keys(client, conn=conn)
        now = to_epoch(self.ctx.now())
        found = self._find(conn, client, keys, prepared.path)
        if found:
            record_id, meta, current = found
            if meta["kind"] != prepared.kind:
                raise InvalidInput(
                    f"{client.name}/{prepared.path} is a {meta['kind']} record; "
                    f"remove it before storing a {prepared.kind} there"
                )
            attachments = prepared.attachments
            if not replace or attachments is None:
                old = self._current_doc(conn, client, keys, record_id, prepared.path, meta["kind"], current)
                if old is not None and not replace:
                    self._refuse_drops(client, prepared.path, old[0], prepared.fields)
                if attachments is None:
                    attachments = old[1] if old is not None else []
            version = store.next_version(conn, record_id)
        else:
            record_id = store.insert_record(conn, client.id, keys.path_tag(prepared.path), now)
            version = 1
            attachments = prepared.attachments or []
        plaintext = prepared.plaintext
        if attachments:
            from vault.records import validate

            plaintext = validate.encode(prepared.kind, prepared.fields, attachments)
        # the sealed name also carries the version's searchable terms (vault.records.search)
        store.set_meta(conn, record_id, keys.seal_meta(_meta_doc(prepared), record_id))
        dek = crypto.new_key()
        data = blobfmt.encrypt_record(
            dek,
            plaintext,
            vault_id=self.ctx.vault_id,
            client_id=client.id_bytes,
            record_id=record_id,
            record_version=version,
        )
        name = self.ctx.keyring.blob_name(client.id, record_id, version)
        self.ctx.blobs.put(name, data, durable=durable)
        wrapped = keys.wrap_dek(dek, record_id, version)
        store.insert_version(
            conn, version_row(record_id, version, keys.version, wrapped, name, len(data), now, principal.name)
        )
        if attachments:
            store.insert_attachment_refs(
                conn, record_id, version, [(a["blob"], a["size"]) for a in attachments]
            )
        store.set_current(conn, record_id, version, now)
        outbox.queue_put(conn, (name,), now)
        return version, self._prune(conn, record_id, now)

    def _prune(self, conn, record_id: int, now: int) -> list[str]:
        """Destroy the keys of versions beyond the kept number; returns their blob names."""
        blobs = store.prune(conn, record_id, int(self.ctx.settings["keep_versions"]))
        outbox.queue_delete(conn, blobs, now)
        return blobs

    def _delete_local(self, blob_names: list[str]) -> None:
        for name in blob_names:
            self.ctx.blobs.delete(name)

    def rm(self, principal: Principal, client_name: str, path: str, *, purge: bool = False) -> dict:
        """Delete a record. Without ``purge`` a delete marker becomes the current version (the
        older versions stay, within the kept number); with ``purge`` every version's key, the
        encrypted path and every blob are destroyed: the record is crypto-shredded everywhere."""
        names.record_path(path)
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_RM, client=client, detail=path)
        if not purge:
            return self._rm(principal, client, path, purge=False)
        # a purge starts a rotation: record and drive it as the one runner (see ClientService.rotate_key)
        with self.ctx.custody.runner_or_busy():
            return self._rm(principal, client, path, purge=True)

    def _rm(self, principal: Principal, client: ClientRow, path: str, *, purge: bool) -> dict:
        now = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            client = self.ctx.client(client.name, conn)  # as of this transaction (see _write)
            keys = self.ctx.client_keys(client, conn=conn)
            found = self._require(conn, client, keys, path)
            record_id, _, current = found
            if purge:
                destroyed, versions, attached = store.destroy(conn, record_id)
                blobs = versions + attached
                outbox.queue_delete(conn, blobs, now)
                # copies and backups of the vault still hold the record key under the client key
                # and custody version of today: rotate both and destroy the old ones (P1)
                self.ctx.custody.start_rotation(conn, client.id, "purge", rotate_client_key=True)
                result = {
                    "client": client.name,
                    "path": path,
                    "purged": True,
                    "versions_destroyed": destroyed,
                    "attachments_destroyed": len(attached),
                }
            else:
                marker = store.version(conn, record_id, current)
                if marker is not None and marker[1] is None:
                    raise NotFound(f"no record {client.name}/{path} (already deleted)")
                version = store.next_version(conn, record_id)
                store.insert_version(
                    conn, version_row(record_id, version, keys.version, None, None, 0, now, principal.name)
                )
                store.set_current(conn, record_id, version, now)
                blobs = self._prune(conn, record_id, now)
                result = {"client": client.name, "path": path, "purged": False, "version": version}
        self._delete_local(blobs)
        reason = "record deleted"
        pending = None
        if purge:
            from vault.errors import BackendError

            try:
                rotated = self.ctx.custody.run_jobs([client.id])
            except BackendError as exc:
                rotated, pending = {"done": 0}, exc
            result["custody_rotated"] = rotated["done"] == 1
            # the destroyed keys' old page images must leave the WAL and the main file too (the
            # rotation scrubbed already when it finished)
            result["scrubbed"] = rotated.get("scrubbed") or self.ctx.db.scrub()
            reason = "record purged (crypto-shredded; client key and custody rotated)"
            if not result["custody_rotated"]:
                reason = "record purged (crypto-shredded); custody rotation pending"
            if not result["scrubbed"]:
                reason += "; database scrub pending: another process kept the database open"
        self.ctx.record_outcome(principal, Action.SECRET_RM, "ok", client=client, detail=path, reason=reason)
        if pending is not None:
            from vault.custody.base import CustodyUnavailable

            raise CustodyUnavailable(
                f"record {client.name}/{path} purged from the vault, but its custody rotation is pending "
                f"({pending}); copies and backups taken before still open it until a later command "
                "finishes the rotation"
            )
        return result

    def import_records(
        self,
        principal: Principal,
        client_name: str,
        lines: Iterable[str],
        progress: Progress | None = None,
        *,
        replace: bool = False,
    ) -> dict:
        """Import JSON Lines ``{"path", "kind", "fields"}`` (the export format) in one transaction.

        ``lines`` is read once, as a stream (a file object, a generator): records are validated,
        encrypted and inserted :data:`IMPORT_BATCH` at a time, so memory stays bounded whatever
        the size of the input (docs/performance.md, "secret import"). A bad line names its number
        and nothing is imported: the transaction rolls back and the blobs already written for it
        are deleted (nothing refers to them). An input of at most one batch is validated whole
        before the decision is taken, as before; a longer one is authorized after its first batch
        validated ("streamed import") and its count audited with the outcome. Blobs are written
        without per-file fsync, then made durable with one sync before the commit
        (``LocalBackend.sync``: one syncfs of the blob filesystem on Linux)."""
        total = len(lines) if isinstance(lines, Sized) else 0
        batches = _parsed_batches(self._prepare, lines)
        first = next(batches, [])
        blocks, workers = self._parallel_plan(lines, first)
        second = None if blocks else next(batches, None)
        streamed = blocks is not None or second is not None
        client = self.ctx.client(client_name)
        detail = "streamed import" if streamed else f"{len(first)} records"
        self.ctx.authorize(principal, Action.SECRET_IMPORT, client=client, detail=detail)
        with self.ctx.db.write() as conn:
            bulk = _BulkWrite(self, conn, principal, client, progress, total, replace=replace)
            try:
                # a client with records takes the streamed path (its lookups use the connection),
                # and so does a process where a thread started meanwhile (fork copies one thread)
                if blocks and not bulk._had_records and isinstance(lines, ImportFile) and _one_thread():
                    from vault.records import parallel

                    at = bulk.reserve(len(first))
                    pool = parallel.start(bulk, lines, blocks, workers, self._prepare)
                    try:
                        seen = {bulk.keys.path_tag(item.path): 0 for item in first}
                        bulk.add(first, at=at)
                    except BaseException:
                        parallel.stop(pool, kill=True)
                        raise
                    del first
                    parallel.finish(bulk, lines, blocks, pool, seen)
                else:
                    bulk.add(first)
                    if second is not None:
                        bulk.add(second)
                        del second
                    for batch in batches:
                        bulk.add(batch)
                bulk.finish()
            except BaseException:
                bulk.abort()  # inside the write lock: no other writer can have reused a name yet
                raise
        self._delete_local(bulk.pruned)
        if streamed:
            self.ctx.record_outcome(
                principal, Action.SECRET_IMPORT, "ok", client=client, detail=f"{bulk.count} records"
            )
        return {"client": client.name, "imported": bulk.count}

    @staticmethod
    def _parallel_plan(lines: Iterable[str], first: list[_PreparedWrite]) -> tuple[list | None, int]:
        """The blocks for the encrypt workers (:mod:`vault.records.parallel`) and how many may be
        forked, or ``(None, 0)``: the streamed path alone, for standard input, a stream, a file of
        fewer than two batches, or no second core."""
        if not isinstance(lines, ImportFile) or len(first) < IMPORT_BATCH:
            return None, 0
        from vault.records import parallel

        workers = parallel.workers_wanted()
        if not workers or not _one_thread():
            return None, 0
        blocks = parallel.plan(lines, IMPORT_BATCH)
        if sum(block[3] for block in blocks) < IMPORT_BATCH:
            return None, 0
        return blocks, workers

    def import_file(
        self,
        principal: Principal,
        fmt: str,
        path: str | os.PathLike[str],
        *,
        clients: Mapping[str, str] | None = None,
        default_client: str | None = None,
        password: str | None = None,
        keyfile: str | os.PathLike[str] | bytes | None = None,
        mapping: Mapping[str, str] | None = None,
        kind: str = "access",
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> dict:
        """Import another tool's export file into one or many clients (``cvault import``; see
        :mod:`vault.records.importing`). Host-only: not in the API registry (docs/import.md)."""
        from vault.records.importing import Importer

        return Importer(self).run(
            principal,
            fmt,
            path,
            clients=clients,
            default_client=default_client,
            password=password,
            keyfile=keyfile,
            mapping=mapping,
            kind=kind,
            dry_run=dry_run,
            progress=progress,
        )

    def _write_many(
        self,
        conn,
        principal: Principal,
        client: ClientRow,
        prepared: list[_PreparedWrite],
        progress: Progress | None,
        *,
        replace: bool = False,
    ) -> _BulkWrite:
        """The import's writes inside its transaction (:class:`_BulkWrite`, in batches); returns
        the finished bulk write: its ``pruned`` blobs (to delete after the commit) and the
        ``created`` records' ids."""
        bulk = _BulkWrite(self, conn, principal, client, progress, len(prepared), replace=replace)
        try:
            for start in range(0, len(prepared), IMPORT_BATCH):
                bulk.add(prepared[start : start + IMPORT_BATCH])
            bulk.finish()
        except BaseException:
            bulk.abort()
            raise
        return bulk

    # --- reads ----------------------------------------------------------------------------------

    def get(
        self, principal: Principal, client_name: str, path: str, version: int | None = None
    ) -> SecretRecord:
        names.record_path(path)
        if version is not None and not 1 <= version <= MAX_VERSION:
            # the registry's bound (vault.api_spec, secrets.get); SQLite's integers end at 2**63
            raise InvalidInput(f"version must be 1 to {MAX_VERSION}")
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_GET, client=client, detail=path)

        def read(conn, client: ClientRow, keys: ClientKeys):
            record_id, meta, current = self._require(conn, client, keys, path)
            wanted = current if version is None else version
            return client, keys, record_id, meta, wanted, store.version(conn, record_id, wanted)

        try:
            client, keys, record_id, meta, wanted, row = self.ctx.read_client(client.name, read)
        except RowTampered as exc:
            self.ctx.integrity_alarm(principal, exc, Action.SECRET_GET.value)
            raise
        if row is None:
            raise NotFound(
                f"no version {wanted} of {client.name}/{path} (kept: the last "
                f"{self.ctx.settings['keep_versions']})"
            )
        if row[0] is None:
            raise NotFound(f"{client.name}/{path} was deleted (version {wanted})")
        return self.open_version(client, keys, record_id, path, meta["kind"], wanted, row)

    def otp(self, principal: Principal, client_name: str, path: str) -> dict:
        """The current RFC 6238 code of the record's ``totp`` seed (a read: step-up, audited like
        ``get``); the seed itself never leaves the service."""
        from vault.identity import totp as rfc6238
        from vault.records import TOTP, otp

        names.record_path(path)
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_GET, client=client, detail=f"{path} (otp)")

        def read(conn, client: ClientRow, keys: ClientKeys):
            record_id, meta, current = self._require(conn, client, keys, path)
            return client, keys, record_id, meta, current, store.version(conn, record_id, current)

        try:
            client, keys, record_id, meta, current, row = self.ctx.read_client(client.name, read)
        except RowTampered as exc:
            self.ctx.integrity_alarm(principal, exc, Action.SECRET_GET.value)
            raise
        if row is None or row[0] is None:
            raise NotFound(f"{client.name}/{path} was deleted (version {current})")
        record = self.open_version(client, keys, record_id, path, meta["kind"], current, row)
        seed = record.fields.get(TOTP)
        if not isinstance(seed, str):
            raise InvalidInput(f"{client.name}/{path} has no totp seed")
        # the rules the write path checked (vault.records.validate); a seed stored under other
        # rules is one clear line, never an internal error
        where = f"{client.name}/{path}"
        try:
            params = otp.parse(seed)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: the stored totp seed cannot give a code ({exc.message})") from None
        now = to_epoch(self.ctx.now())
        try:
            code = rfc6238.code_at(
                params.secret,
                now,
                digits=params.digits,
                step=params.period,
                digest=params.algorithm.lower(),
                min_secret_bits=otp.MIN_SECRET_BYTES * 8,
            )
        except (ValueError, TypeError, KeyError):
            raise InvalidInput(f"{where}: the stored totp seed cannot give a code") from None
        return {
            "client": client.name,
            "path": path,
            "code": code,
            "seconds_left": params.period - now % params.period,
            "period": params.period,
            "digits": params.digits,
            "algorithm": params.algorithm,
        }

    def open_version(
        self, client: ClientRow, keys: ClientKeys, record_id: int, path: str, kind: str, version: int, row
    ) -> SecretRecord:
        return self._open(client, keys, record_id, path, kind, version, row)[0]

    def _open(
        self, client: ClientRow, keys: ClientKeys, record_id: int, path: str, kind: str, version: int, row
    ) -> tuple[SecretRecord, builtins.list[dict[str, Any]]]:
        """The record as read, and its attachment entries with their keys (these stay here).
        ``row`` is :data:`vault.store.records.OPEN_COLUMNS`."""
        wrapped, blob_name, created_at, created_by, pack_offset, size = row
        try:
            dek = keys.unwrap_dek(wrapped, record_id, version)
        except CryptoError:
            raise self._integrity(client, path, version) from None
        try:
            if pack_offset is None:
                data = self.read_blob(blob_name)
            else:
                packed = self.read_packed(blob_name, pack_offset, size)
                if packed is None:
                    raise self._integrity(client, path, version)
                data = packed
        except BlobNotFound:
            raise IntegrityFailure(
                f"integrity failure: record {self._record_name(client, path, version)}"
                " is missing from the blob store (try 'cvault sync pull')"
            ) from None
        try:
            plaintext = blobfmt.decrypt_record(
                data,
                dek,
                vault_id=self.ctx.vault_id,
                client_id=client.id_bytes,
                record_id=record_id,
                record_version=version,
            )
            fields, entries = blobfmt.open_document_parts(plaintext, kind)
        except CryptoError:
            raise self._integrity(client, path, version) from None
        listing = tuple(
            {
                "name": a["name"],
                "size": a["size"],
                "added_at": rfc3339(from_epoch(a["added_at"])),
                "added_by": a["added_by"],
            }
            for a in entries
        )
        record = SecretRecord(
            client.name, path, kind, version, fields, rfc3339(from_epoch(created_at)), created_by, listing
        )
        return record, entries

    def read_blob(self, name: str) -> bytes:
        """The local copy of a blob; a blob lost locally is restored from the remote replica."""
        try:
            return self.ctx.blobs.get(name)
        except BlobNotFound:
            data = self._fetch_lost_blob(name) if self._fetch_lost_blob is not None else None
            if data is None:
                raise
            return data

    def read_packed(self, name: str, offset: Any, size: Any) -> bytes | None:
        """A packed version's bytes: ``size`` bytes at ``offset`` of the pack ``name`` (a pack
        lost locally is restored from the remote replica, like a blob). None for a place no
        writer gives (the row MAC refuses an edited one first wherever the row is read for a
        decision); a short pack gives fewer bytes, which then fail to decrypt."""
        if type(offset) is not int or type(size) is not int or offset < 0 or not 0 < size <= _MAX_PACKED:
            return None
        try:
            return self.ctx.blobs.get_range(name, offset, size)
        except BlobNotFound:
            data = self._fetch_lost_blob(name) if self._fetch_lost_blob is not None else None
            if data is None:
                raise
            return bytes(data[offset : offset + size])

    def blob_is_authentic(self, name: str, data: bytes) -> bool | None:
        """Whether ``data`` is the authentic content of the record version stored as ``name``
        (None if no live record version uses that name). Used by sync to choose between copies.
        A pack is authentic when its framing accounts for every byte of ``data`` (no trailing
        bytes, no gap: :func:`vault.blob.pack_framing`), its name is the one keyed on its first
        record, and every version kept in it opens from its place in ``data``."""

        def read(conn, touch):
            rows = store.by_blob_name(conn, name)
            if not rows:
                return None
            out = []
            for client_id, record_id, version, key_version, wrapped, offset, size in rows:
                touch(client_id)
                client = self.ctx.client_by_id(client_id, conn)
                keys = self.ctx.client_keys(client, key_version, conn)
                out.append((client, record_id, version, keys, wrapped, offset, size))
            return out

        try:
            found = self.ctx.db.read_retrying(read)
            if found is None:
                return self._attachment_is_authentic(name, data)
            packed = [f for f in found if f[5] is not None]
            if packed and not self._pack_is_framed(name, data, packed, len(found)):
                return False
            for client, record_id, version, keys, wrapped, offset, size in found:
                if offset is not None:
                    part = bytes(data[offset : offset + size])
                elif len(found) > 1:
                    return False  # a blob of its own is one version's only
                else:
                    part = data
                dek = keys.unwrap_dek(wrapped, record_id, version)
                blobfmt.decrypt_record(
                    part,
                    dek,
                    vault_id=self.ctx.vault_id,
                    client_id=client.id_bytes,
                    record_id=record_id,
                    record_version=version,
                )
            return True
        except (CryptoError, IntegrityFailure, ClientUnavailable):
            return False

    def pack_is_framed(self, name: str, data: bytes) -> bool:
        """doctor: whether ``data``, the pack stored as ``name``, is framed (its header, its name,
        every byte accounted for: :func:`vault.blob.pack_framing`). No version is opened here:
        doctor opens each kept version itself."""

        def read(conn, touch):
            out = []
            for client_id, record_id, version, _, _, offset, size in store.by_blob_name(conn, name):
                touch(client_id)
                out.append(
                    (self.ctx.client_by_id(client_id, conn), record_id, version, None, None, offset, size)
                )
            return out

        try:
            found = self.ctx.db.read_retrying(read)
            packed = [f for f in found if f[5] is not None]
            return bool(packed) and self._pack_is_framed(name, data, packed, len(found))
        except (CryptoError, IntegrityFailure, ClientUnavailable):
            return False

    def _pack_is_framed(self, name: str, data: bytes, packed: builtins.list[tuple], rows: int) -> bool:
        """Whether the pack ``data`` holds exactly its header and its record blobs (``packed``:
        the versions stored in it, as :meth:`blob_is_authentic` reads them; ``rows``: how many
        rows name it) and is named by its first record. Raises CryptoError for bad framing."""
        clients = {f[0].id for f in packed}
        if rows != len(packed) or len(clients) != 1:
            return False  # a pack is one client's, and never also a blob of its own
        places = []
        for _, record_id, version, _, _, offset, size in packed:
            if type(offset) is not int or type(size) is not int or offset < 0 or size <= 0:
                return False
            places.append((record_id, version, offset, size))
        client, keyring = packed[0][0], self.ctx.keyring
        first, count = blobfmt.pack_framing(data, self.ctx.vault_id, client.id_bytes, places)
        if crypto.constant_time_equal(
            keyring.pack_name(client.id, first, count, len(data)).encode(), name.encode()
        ):
            return True
        # a pack written before its name covered its count and length (non-guarantee 23)
        return crypto.constant_time_equal(keyring.pack_name_v1(client.id, first).encode(), name.encode())

    def _attachment_is_authentic(self, name: str, data: bytes) -> bool | None:
        """:meth:`blob_is_authentic` for an attachment blob: found through the newest kept
        version listing it, whose document holds its key. Raises CryptoError if it fails."""
        import base64

        def read(conn, touch):
            row = store.by_attachment_blob(conn, name)
            if row is None:
                return None
            client_id, record_id, version = row
            touch(client_id)
            client = self.ctx.client_by_id(client_id, conn)
            meta_sealed = conn.execute(
                "SELECT meta_sealed FROM records WHERE id = ?", (record_id,)
            ).fetchone()[0]
            keys = self.ctx.client_keys(client, conn=conn)
            return client, record_id, version, keys, meta_sealed, store.version(conn, record_id, version)

        found = self.ctx.db.read_retrying(read)
        if found is None:
            return None
        client, record_id, version, keys, meta_sealed, row = found
        if row is None or row[0] is None:
            return False
        meta = self._meta(client, keys, record_id, meta_sealed)
        _, entries = self._open(client, keys, record_id, meta["path"], meta["kind"], version, row)
        entry = next((a for a in entries if a["blob"] == name), None)
        if entry is None:
            return False
        blobfmt.decrypt_attachment(
            data,
            base64.b64decode(entry["key"]),
            vault_id=self.ctx.vault_id,
            client_id=client.id_bytes,
            record_id=record_id,
            attachment_id=entry["id"],
        )
        return True

    def list(self, principal: Principal, client_name: str) -> list[dict]:
        """The client's live records (path, kind, version, updated_at), from the client's sealed
        search index: one unseal instead of one metadata unseal and two row-MAC checks per record
        (100,000 records: docs/performance.md). The index is believed only when it was built from
        exactly the record rows' (path tag, version, updated_at, row MAC, live or deleted) as the
        records table has them now (:func:`_lists_exactly`); otherwise (dropped by a change since,
        an older copy put back, an edited row) it is rebuilt from the records' metadata, which
        checks every row MAC (exit 6 on an edited row).

        The index seals the digest of those rows as the rebuild checked them, each path's name tag
        computed from the MAC-checked metadata and each row's checked MAC (review6 R6-8: a row
        edited to match an older index no longer has it), so the comparison needs no HMAC per
        record and no Python row per record (issue 16)."""
        from vault.records.search import listing

        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_LIST, client=client)
        listed: tuple[builtins.list, ...] = ([], [], [], [])
        # believed only if built from exactly the record rows' (path tag, version, updated, MAC,
        # live or deleted); any difference (a change since, an older index put back, an edited
        # row) goes through the rebuild, which reads the records' metadata and checks every row MAC
        for _, document in self._indexes([client]):
            listed = listing(document)
        paths, kinds, versions, updated = listed
        stamps = _Stamps()  # records written in one import share their second
        out = [
            {"path": p, "kind": k, "version": v, "updated_at": stamps[u]}
            for p, k, v, u in zip(paths, kinds, versions, updated, strict=True)
        ]
        out.sort(key=lambda r: r["path"])
        return out

    def history(self, principal: Principal, client_name: str, path: str) -> builtins.list[dict]:
        names.record_path(path)
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_HISTORY, client=client, detail=path)

        def read(conn, client: ClientRow, keys: ClientKeys):
            found = self._require(conn, client, keys, path)
            return found, store.versions(conn, found[0])

        found, rows = self.ctx.read_client(client.name, read)
        return [
            {
                "version": v,
                "deleted": b is None,
                "size": s,
                "created_at": rfc3339(from_epoch(t)),
                "created_by": by,
                "current": v == found[2],
            }
            for v, b, s, t, by in rows
        ]

    # --- search and the listing across clients ---------------------------------------------------

    def _searchable_clients(self, principal: Principal, client_name: str | None) -> builtins.list[ClientRow]:
        """The clients a search or ``list --all`` decides on: the one named, or every client the
        principal can see (an engineer: their current assignments), shredded ones excluded."""
        from vault.identity import facts
        from vault.store import clients as client_store

        if client_name is not None:
            return [self.ctx.client(client_name)]
        visible = facts.visible_client_ids(self.ctx, principal)
        with self.ctx.db.read() as conn:
            rows = client_store.all_clients(conn)
        return [c for c in rows if not c.shred_state and (visible is None or c.id in visible)]

    def _indexes(self, clients: builtins.list[ClientRow]) -> Iterable[tuple[ClientRow, bytes]]:
        """Each client's search index document, rebuilt (and stored) where missing: the triggers
        of 0009_records.sql delete a client's index whenever its records change."""
        from vault.records.search import check as check_index

        ids = [c.id for c in clients]
        with self.ctx.db.read() as conn:
            stored = store.search_indexes(conn, ids)
            missing = [i for i in ids if i not in stored]
            nonempty = store.with_records(conn, missing) if missing else set()
        for client in clients:
            held = stored.get(client.id)
            if held is None and client.id not in nonempty:
                continue  # no records
            # the keys of the client's current version, read in one snapshot (a rotation may have
            # moved it on since ``clients`` was read: docs/architecture.md)
            client, keys, rows = self.ctx.read_client(
                client.name, lambda conn, c, k: (c, k, store.listing_summary(conn, c.id))
            )
            if held is not None and held[0] == keys.version:
                try:
                    document = keys.unseal_index(held[1])
                    check_index(document)
                    current = _lists_exactly(document, rows)
                except (CryptoError, ValueError):
                    current = False  # a damaged, foreign or older index: rebuilt from the records
                if current:
                    yield client, document
                    continue
            yield client, self._rebuild_index(client)

    def _rebuild_index(self, client: ClientRow) -> bytes:
        """The client's index from its records' sealed metadata; a record written before the
        metadata held search terms is opened once and its metadata upgraded."""
        from vault.records import search

        now = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            client = self.ctx.client(client.name, conn)  # as of this transaction (see _write)
            keys = self.ctx.client_keys(client, conn=conn)
            entries = []
            # (id, tag, version, updated, checked MAC, live) of every row, deleted ones too: their
            # digest is sealed (review6 R6-8, review9 R9-1)
            rows = []
            checked: dict[int, tuple[bytes, bytes]] = {}
            for record_id, meta_sealed, current, updated, *row in store.current_versions(
                conn, client.id, checked
            ):
                # no row MAC covers the time: one of another type is refused here (exit 6), not
                # sealed into the index's digest (nor, as BLOB, a TypeError of the listing's JSON)
                stored_epoch(updated, "records.updated_at")
                tag, mac = checked[record_id]
                if row[1] is None:
                    rows.append((record_id, tag, current, updated, mac, False))  # deleted
                    continue
                meta = self._meta(client, keys, record_id, meta_sealed)
                if "s" not in meta:
                    rec = self.open_version(client, keys, record_id, meta["path"], meta["kind"], current, row)
                    meta["s"] = search.terms_of(rec.kind, dict(rec.fields))
                    store.set_meta(conn, record_id, keys.seal_meta(meta, record_id))
                entries.append((meta["path"], meta["kind"], current, updated, meta["s"]))
                rows.append((record_id, keys.path_tag(meta["path"]), current, updated, mac, True))
            document = search.build(entries, search.rows_digest(rows))
            store.put_search_index(conn, client.id, keys.version, keys.seal_index(document), now)
        return document

    def search(
        self, principal: Principal, term: str, *, client: str | None = None, kind: str | None = None
    ) -> builtins.list[dict]:
        """Records whose path, kind, custom field names or non-secret fields contain ``term``
        (case-insensitive), across every client the principal may read now: one audited
        need-to-know decision per client searched; the others are absent. Never opens a secret
        field, never returns a value."""
        from vault.records import KINDS
        from vault.records.search import match

        if not isinstance(term, str) or not term.strip():
            raise InvalidInput("give a search term")
        if len(term) > 256 or any(ord(ch) < 32 for ch in term):
            raise InvalidInput("a search term is one line of at most 256 characters")
        if kind is not None and kind not in KINDS:
            raise InvalidInput(f"unknown record type: use one of {', '.join(KINDS)}")
        candidates = self._searchable_clients(principal, client)
        allowed = self.ctx.authorize_each(principal, Action.SECRET_SEARCH, candidates)
        out = []
        found: builtins.list[tuple[ClientRow, int]] = []
        stamps = _Stamps()
        for c, document in self._indexes(allowed):
            try:
                hits = match(document, term, kind)
            except ValueError:  # an index this build cannot read: rebuilt from the records
                hits = match(self._rebuild_index(c), term, kind)
            for hit in hits:
                hit["client"] = c.name
                hit["updated_at"] = stamps[hit["updated_at"]]
            out.extend(hits)
            if hits:
                found.append((c, len(hits)))
        # what was searched, sealed for each client it matched in (the decisions above carry no
        # detail: sealing the term for every client searched would cost a key unwrap each)
        self.ctx.record_outcomes(
            principal,
            Action.SECRET_SEARCH,
            [(c, f"search {term!r}: {n} match{'es' if n != 1 else ''}") for c, n in found],
        )
        out.sort(key=lambda r: (r["client"], r["path"]))
        return out

    def list_all(self, principal: Principal) -> builtins.list[dict]:
        """``secret list --all``: the records of every client the principal may read now (one
        audited decision per client, like search), from the search indexes."""
        from vault.records.search import entries

        allowed = self.ctx.authorize_each(
            principal, Action.SECRET_LIST, self._searchable_clients(principal, None)
        )
        out = []
        stamps = _Stamps()
        for c, document in self._indexes(allowed):
            for path, kind, version, updated in entries(document):
                out.append(
                    {
                        "client": c.name,
                        "path": path,
                        "kind": kind,
                        "version": version,
                        "updated_at": stamps[updated],
                    }
                )
        out.sort(key=lambda r: (r["client"], r["path"]))
        return out

    def export(self, principal: Principal, client_name: str, out: Path) -> dict:
        """Write the client's current records, decrypted, as JSON Lines to a new 0600 file."""
        from vault.records.export import write_export

        return write_export(out, self.export_records(principal, client_name))

    def export_records(self, principal: Principal, client_name: str) -> dict:
        """The client's current records, decrypted: ``{"client", "records": [{path, kind,
        fields}]}`` sorted by path (service mode: the remote CLI writes the file itself)."""
        client = self.ctx.client(client_name)
        self.ctx.authorize(principal, Action.SECRET_EXPORT, client=client, detail="export to file")
        records: builtins.list[dict[str, Any]] = []
        client, keys, rows = self.ctx.read_client(
            client.name, lambda conn, c, k: (c, k, store.current_versions(conn, c.id))
        )
        for record_id, meta_sealed, version, _, *row in rows:
            if row[0] is None:
                continue
            meta = self._meta(client, keys, record_id, meta_sealed)
            rec = self.open_version(client, keys, record_id, meta["path"], meta["kind"], version, row)
            records.append({"path": rec.path, "kind": rec.kind, "fields": rec.fields})
        records.sort(key=lambda r: r["path"])
        return {"client": client.name, "records": records}


#: records validated, encrypted and inserted at a time by a bulk import (bounds its memory)
IMPORT_BATCH = 2000
#: a pack is closed once it holds this many bytes (a batch of large records makes several packs;
#: a batch of typical ones, ~200 bytes each, one of ~0.5 MB)
_PACK_BYTES = 8 * 1024 * 1024
#: KiB of SQLite page cache for a bulk import's transaction (the default is 2,000 KiB)
_IMPORT_CACHE_KIB = 16384
#: a packed version is one record blob: header, at most 1 MiB of document, tag
_MAX_PACKED = blobfmt.HEADER_LEN + blobfmt.MAX_PLAINTEXT + crypto.TAG_LEN


def _parsed_batches(
    prepare: Callable[[str, str, dict], _PreparedWrite], lines: Iterable[str]
) -> Iterator[list[_PreparedWrite]]:
    """The import's lines, validated, :data:`IMPORT_BATCH` at a time. A bad line raises
    InvalidInput naming its number (blank lines count, and are skipped); so does a path given
    twice (only the paths are kept across batches)."""
    seen: set[str] = set()
    batch: list[_PreparedWrite] = []
    for number, line in enumerate(lines, 1):
        item = parse_line(prepare, number, line)
        if item is None:
            continue
        batch.append(item)
        path = item.path
        if path in seen:
            raise InvalidInput(f"line {number}: duplicate path {path}")
        seen.add(path)
        if len(batch) >= IMPORT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def parse_line(
    prepare: Callable[[str, str, dict], _PreparedWrite], number: int, line: str, loads=json.loads
) -> _PreparedWrite | None:
    """One import line validated (None: a blank line, skipped), or InvalidInput naming its number:
    the one reading of a line for the streamed path and the encrypt workers
    (:mod:`vault.records.parallel`) alike."""
    if not line.strip():
        return None
    try:
        item = loads(line)
        if not isinstance(item, dict):
            raise ValueError
        path, kind, fields = item["path"], item["kind"], item.get("fields", {})
    except RecursionError:
        raise InvalidInput(f"line {number}: JSON nested too deeply") from None
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(f"line {number}: not a JSON object with path, kind and fields") from None
    try:
        return prepare(path, kind, fields)
    except InvalidInput as exc:
        raise InvalidInput(f"line {number}: {exc.message}") from None


class _BulkWrite:
    """A bulk import's writes inside its transaction, one batch at a time: the same rows, blobs
    and outbox entries as one :meth:`SecretService._write` per record. Paths already stored get
    a new version through ``_write``; new records get ids allocated up front (AUTOINCREMENT: above
    both the sequence and the largest id, exactly the ids one insert each would get), their rows
    are inserted with one ``executemany`` per table per batch, and their blobs go into one pack
    per batch (docs/format.md section 9: one file, one outbox row; each version still a record
    blob of its own, with its own key and nonces from one OS CSPRNG read per batch,
    :func:`vault.crypto.fresh_keys`, and its row giving its place in the pack under the row MAC).

    ``finish()`` makes every pack durable by one sync before the caller commits; ``abort()``
    (the transaction is rolling back) deletes the packs written, which no row refers to. A
    stored record whose current version has fields the line lacks is refused (naming it) unless
    ``replace``, like :meth:`SecretService.put`."""

    def __init__(
        self,
        service: SecretService,
        conn,
        principal: Principal,
        client: ClientRow,
        progress: Progress | None,
        total: int,
        *,
        replace: bool,
    ):
        ctx = service.ctx
        self.service, self.conn, self.principal = service, conn, principal
        self.client = ctx.client(client.name, conn)  # as of this transaction (see _write)
        self.keys = ctx.client_keys(self.client, conn=conn)
        self.now = to_epoch(ctx.now())
        self.progress, self.total, self.replace = progress, total, replace
        self.count = 0
        self.pruned: list[str] = []
        #: path -> id of each record this bulk write created (at version 1); a stored record
        #: given a new version is not listed
        self.created: dict[str, int] = {}
        #: the packs written so far (abort() deletes them; a new version of a stored record
        #: written before a failure is left as an orphan, which doctor reports)
        self._packs: list[str] = []
        #: whether the client had records when the import began: if not, no line can name a
        #: stored record (the import refuses a path given twice), so no batch needs the lookup
        #: of its tags (one random index probe per record); the UNIQUE (client_id, path_tag)
        #: constraint still refuses a stored tag, rolling the import back
        self._had_records = bool(store.with_records(conn, [self.client.id]))
        #: the id the next new record gets (allocated up front, batch after batch: inside the
        #: write lock nothing else inserts records); None until the first batch asks the table
        self._next_id: int | None = None
        #: the previous batch's inserts, running on their own thread while this batch is
        #: encrypted (SQLite releases the GIL while it steps); joined before anything else uses
        #: the connection, before the commit and before a rollback
        self._sql: Any = None
        self._sql_error: BaseException | None = None
        #: SQLite's page cache for the import's transaction: the UNIQUE (client_id, path_tag)
        #: index takes its inserts in random order, and with the default 2 MiB its pages were
        #: evicted (spilled to the WAL) and read back, ~5-9 us of system CPU a record at 100,000
        #: (docs/performance.md, "importfast"); restored when the bulk write ends
        self._cache = conn.execute("PRAGMA cache_size").fetchone()[0]
        conn.execute(f"PRAGMA cache_size=-{_IMPORT_CACHE_KIB}")

    def add(self, batch: list[_PreparedWrite], *, at: int | None = None) -> None:
        """Write one batch; ``at``: the first id of its new records, taken by :meth:`reserve`."""
        if not batch:
            return
        service, conn, client, keys = self.service, self.conn, self.client, self.keys
        progress, total = self.progress, self.total
        path_tag = keys.path_tag
        tags = [path_tag(item.path) for item in batch]
        if self._had_records:  # the lookups and new versions below use the connection
            self._wait()
            self._next_id = None
        existing = store.existing_tags(conn, client.id, tags) if self._had_records else set()
        fresh: list[tuple[_PreparedWrite, bytes]] = []
        for item, tag in zip(batch, tags, strict=True):
            if tag in existing:  # a new version of a stored record
                _, gone = service._write(
                    self.conn, self.principal, client, item, durable=False, replace=self.replace
                )
                self.pruned.extend(gone)
                self.count += 1
                if progress:
                    progress(self.count, total)
            else:
                fresh.append((item, tag))
        if not fresh:
            return
        first = at if at is not None else self.reserve(len(fresh))
        records, versions, packs = self.encrypt(fresh, first, self.write_pack)
        for (item, _), record_id in zip(fresh, range(first, first + len(fresh)), strict=True):
            self.created[item.path] = record_id
        self.store(records, versions, packs, len(fresh))

    def reserve(self, count: int) -> int:
        """The first of ``count`` new record ids taken up front (the encrypt workers' batches:
        :mod:`vault.records.parallel`), the same ids :meth:`add` would give them in order."""
        first = self._next_id
        if first is None:
            self._wait()
            first = store.next_record_id(self.conn)
        self._next_id = first + count
        return first

    def encrypt(
        self, fresh: list[tuple[_PreparedWrite, bytes]], first: int, sink: Callable[[str, bytes], None]
    ) -> tuple[list, list, list[str]]:
        """New records ``(prepared, path tag)`` with the ids from ``first`` on, encrypted: their
        records and versions rows with their MACs, and the names of the packs holding their blobs,
        each given to ``sink(name, bytes)`` as soon as it is closed. Uses keys in memory only,
        never the connection's SQL or the blob store itself (an encrypt worker runs it in a
        forked process, its sink the pipe: :mod:`vault.records.parallel`)."""
        service, conn, client, keys, now = self.service, self.conn, self.client, self.keys, self.now
        ctx = service.ctx
        vault_id, client_bytes, client_id = ctx.vault_id, client.id_bytes, client.id
        from vault.records.search import terms_of

        encrypt = blobfmt.encrypt_record
        wrap_dek, seal_meta = keys.wrap_dek, keys.seal_meta
        key_version, by = keys.version, self.principal.name
        record_rows: list = []
        version_rows: list[VersionRow] = []
        packs: list[str] = []
        header = blobfmt.pack_header(vault_id, client_bytes)
        #: the open pack: its first record, its parts, where the next blob goes, and its versions
        #: as (record id, wrapped DEK, size, offset) until it is named
        pack_first, parts, offset = 0, [header], _PACK_BYTES  # a pack starts at the first record
        pending: list[tuple[int, bytes, int, int]] = []

        def close_pack() -> None:
            """Name the open pack by its first record, its count and its length (docs/format.md
            section 9) and give its versions their rows (which name it)."""
            name = ctx.keyring.pack_name(client_id, pack_first, len(pending), offset)
            packs.append(name)
            sink(name, b"".join(parts))
            version_rows.extend(
                version_row(r, 1, key_version, w, name, s, now, by, o) for r, w, s, o in pending
            )
            pending.clear()

        material = crypto.fresh_keys(len(fresh), nonces=3)
        for record_id, (item, tag), (dek, blob_nonce, wrap_nonce, meta_nonce) in zip(
            range(first, first + len(fresh)), fresh, material, strict=True
        ):
            data = encrypt(
                dek,
                item.plaintext,
                vault_id=vault_id,
                client_id=client_bytes,
                record_id=record_id,
                record_version=1,
                nonce=blob_nonce,
            )
            if offset >= _PACK_BYTES:  # start a pack
                if pending:
                    close_pack()
                pack_first, parts, offset = record_id, [header], len(header)
            parts.append(data)
            sealed = seal_meta(_meta_doc(item, terms_of), record_id, nonce=meta_nonce)
            record_rows.append((record_id, client_id, tag, sealed, now, now))
            pending.append((record_id, wrap_dek(dek, record_id, 1, nonce=wrap_nonce), len(data), offset))
            offset += len(data)
        close_pack()
        parts.clear()
        records, versions = store.maced_records(conn, record_rows), store.maced_versions(conn, version_rows)
        return records, versions, packs

    def store(self, records: list, versions: list, packs: list[str], count: int) -> None:
        """Start the inserts of :meth:`encrypt`'s rows (on their thread, after the previous
        batch's; its packs written by :meth:`write_pack`); ``count`` records more were imported."""
        self._wait()
        self._start(records, versions, [(name, self.now) for name in packs])
        progress, total = self.progress, self.total
        if not progress:
            self.count += count
            return
        for _ in range(count):
            self.count += 1
            progress(self.count, total)

    def _start(self, records: list, versions: list, queued: list) -> None:
        import threading

        conn = self.conn

        def run() -> None:
            try:
                conn.executemany(store.INSERT_RECORDS, records)
                conn.executemany(store.INSERT_VERSIONS, versions)
                outbox.queue_puts(conn, queued)
            except BaseException as exc:  # noqa: BLE001 - handed to the importing thread by _wait
                self._sql_error = exc

        self._sql = threading.Thread(target=run, name="cvault-import-sql", daemon=True)
        self._sql.start()

    def _wait(self) -> None:
        """Join the running inserts; raise what they raised."""
        if self._sql is not None:
            self._sql.join()
            self._sql = None
        error, self._sql_error = self._sql_error, None
        if error is not None:
            raise error

    def write_pack(self, name: str, data: bytes) -> None:
        """One pack of the import (abort() deletes it): in place without fsync, as no committed
        row refers to the name before finish() syncs."""
        self._packs.append(name)
        self.service.ctx.blobs.put(name, data, durable=False)

    def finish(self) -> None:
        self._wait()
        self._restore_cache()
        self.service.ctx.blobs.sync()  # every pack durable before the caller's commit

    def _restore_cache(self) -> None:
        self.conn.execute(f"PRAGMA cache_size={int(self._cache)}")

    def abort(self) -> None:
        with contextlib.suppress(BaseException):
            self._wait()  # nothing may still be writing when the transaction rolls back
        with contextlib.suppress(Exception):
            self._restore_cache()
        for name in self._packs:
            with contextlib.suppress(Exception):
                self.service.ctx.blobs.delete(name, durable=False)


def _one_thread() -> bool:
    import threading

    return threading.active_count() == 1


def _meta_doc(prepared: _PreparedWrite, terms_of: Callable[[str, dict], dict] | None = None) -> dict:
    """A record's sealed name: its path, kind and search terms. ``terms_of``: the bulk write's
    :func:`vault.records.search.terms_of`, looked up once (an import statement per record cost
    ~0.5 us)."""
    if terms_of is None:
        from vault.records import search

        terms_of = search.terms_of
    return {"path": prepared.path, "kind": prepared.kind, "s": terms_of(prepared.kind, prepared.fields)}


def merge_fields(
    old: dict[str, Any], changes: dict[str, Any], removals: Iterable[str], *, where: str
) -> dict[str, Any]:
    """``old`` with ``changes`` applied (custom fields merged by name) and ``removals`` removed."""
    from vault.records import CUSTOM

    merged = dict(old)
    for key, value in changes.items():
        if key == CUSTOM and isinstance(value, dict) and isinstance(merged.get(CUSTOM), dict):
            merged[CUSTOM] = {**merged[CUSTOM], **value}
        else:
            merged[key] = value
    for name in removals:
        if name.startswith("custom."):
            custom = dict(merged.get(CUSTOM) or {})
            if name[7:] not in custom:
                raise InvalidInput(f"{where} has no custom field {name[7:]!r}")
            del custom[name[7:]]
            if custom:
                merged[CUSTOM] = custom
            else:
                merged.pop(CUSTOM, None)
        elif name in merged:
            del merged[name]
        else:
            raise InvalidInput(f"{where} has no field {name!r}")
    return merged


def _lists_exactly(document: bytes, rows: tuple[int, int, bytes, bytes, bytes, bytes, bytes]) -> bool:
    """Whether the index was built from exactly the record rows' (path tag, version, updated_at,
    row MAC, live or deleted) as the records table has them now (guarantee 29; review4 R4-3: for
    ``list``, ``search`` and ``list --all`` alike; ``rows``:
    :func:`vault.store.records.listing_summary`): an index dropped by a change since, an older
    sealed copy put back or an edited row is not believed but rebuilt, which checks every row MAC.
    The index seals the digest of the rows the rebuild checked (each live path's name tag from its
    MAC-checked metadata, each row's checked MAC), so a row edited to match an older index (review6
    R6-8) differs in its MAC, with no HMAC per record: a row's authentic MAC is only known from an
    authentic row. The deleted rows count too (review9 R9-1: a live record edited to look deleted,
    with an older index put back that never listed it, left the live rows as that index had them).
    Every row must have its columns' types (a text or a number is no tag, a BLOB no version), so
    the digest's text is one list of rows; the digests are compared in constant time."""
    from vault.crypto import constant_time_equal
    from vault.records.search import digest, listing_digest

    count, typed, *values = rows
    return typed == count and constant_time_equal(digest(document), listing_digest(count, *values))


class _Stamps(dict):
    """``stamps[epoch]``: the RFC 3339 text of an epoch second, computed once per second (the
    records of one import share theirs: ``secret list`` of 100,000 records)."""

    def __missing__(self, epoch: int) -> str:
        text = self[epoch] = rfc3339(stored_epoch(epoch, "records.updated_at"))  # no row MAC covers it
        return text
