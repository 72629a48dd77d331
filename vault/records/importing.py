"""The vault side of ``cvault import --from FORMAT FILE`` (issue 18; docs/import.md, "Writing").

The readers (:mod:`vault.importers`) turn an export file into validated records; this module puts
them into one or many clients:

1. **Read everything first.** The whole file is read and every entry validated before anything is
   written: a malformed file or entry gives one line naming it and nothing is imported.
2. **Map to clients.** Each record's ``client_hint`` (collection, group path, vault, organisation)
   goes to a client by ``clients`` (exact hint, or the nearest mapped parent group: ``Clients/Acme``
   also takes ``Clients/Acme/Network``), else to ``default_client``; a hint without a client is
   refused, all of them named. Paths are allocated again per client (two groups into one client
   cannot collide).
3. **Authorize every client** (``secret.import``: need-to-know on each) before writing to any.
4. **Plan per client.** A record's path already in the client is compared with what the file
   says now (the decrypted current version against the new plaintext, in constant time):

   ``new``        not in the client: created
   ``unchanged``  same content: skipped (a re-run changes nothing)
   ``changed``    written by an import, not edited since, the file says something else: a new version
   ``conflict``   the path holds a record nobody imported, or one edited in cvault since the last
                  import: kept as it is and listed, never overwritten

5. **Write** each client's new and changed records in one transaction (the bulk path of
   ``secret import``: one sync, one commit), and remember which version each import wrote
   (``import_origins``: record id, version, format; no content, no fingerprint). ``dry_run``
   stops after the plan.

Custom fields, tags and TOTP seeds go into the record kinds' own fields (issue 16:
:func:`record_fields`). Attachments go through the path of ``secret attach``
(:meth:`SecretService._store_attachment`: their own key, an opaque blob name, a header binding
client, record and attachment; at most 25 MiB and 100 per record), one new version per file after
the record's own, in the client's one transaction: a record the file gives two attachments is
written as versions 1 (its fields), 2 (the first file) and 3 (both). "Unchanged" compares them
too: names, sizes and the decrypted bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from vault import crypto
from vault.clock import to_epoch
from vault.errors import InvalidInput, NotFound
from vault.policy import Action
from vault.principal import Principal
from vault.store import records as store
from vault.store import rowmac
from vault.tuples import NamedTuple

if TYPE_CHECKING:
    from vault.importers import ImportedRecord
    from vault.records.service import SecretService, _PreparedWrite
    from vault.store.clients import ClientRow

Progress = Callable[[int, int], None]


class _Item(NamedTuple):
    record: ImportedRecord
    path: str
    prepared: _PreparedWrite


class _ClientPlan(NamedTuple):
    client: ClientRow
    new: list[_Item]
    changed: list[tuple[_Item, int]]  # (item, record id)
    unchanged: list[tuple[_Item, int, int]]  # (item, record id, current version)
    conflicts: list[tuple[_Item, str]]  # (item, why)


def client_for(hint: str | None, clients: Mapping[str, str], default_client: str | None) -> str | None:
    """The client a hint goes to: the hint itself, else its nearest mapped parent group
    (``A/B/C`` -> ``A/B`` -> ``A``), else the default."""
    if hint is not None:
        probe = hint
        while True:
            if probe in clients:
                return clients[probe]
            if "/" not in probe:
                break
            probe = probe.rsplit("/", 1)[0]
    return default_client


def record_fields(record: ImportedRecord) -> dict[str, Any]:
    """The record's fields with its extras in the record kinds' own fields (issue 16): the TOTP
    seed in ``totp`` (a secret custom field ``one-time password`` on a kind without one), custom
    fields in ``custom`` (a name that is a built-in field name gets `` (imported)``), tags in
    ``tags`` (past the 64 a record holds, the rest in a custom field ``tags (imported)``).
    Attachments are not fields: the writer stores them (:meth:`Importer._attach`)."""
    from vault.records import CUSTOM, FIELDS, MAX_CUSTOM_NAME, MAX_TAGS, TOTP

    fields = dict(record.fields)
    names = {f.name for f in FIELDS[record.kind]}
    builtin = {f.name for fs in FIELDS.values() for f in fs}
    custom: dict[str, dict[str, Any]] = {}

    def add(name: str, value: str, secret: bool) -> None:
        base = f"{name[: MAX_CUSTOM_NAME - 11]} (imported)" if name in builtin else name
        unique, n = base, 1
        while unique in custom or unique in builtin:
            n += 1
            unique = f"{base[: MAX_CUSTOM_NAME - 6]} ({n})"
        custom[unique] = {"value": value, "secret": secret}

    for item in record.custom_fields:
        add(item.name, item.value, item.secret)
    if record.totp:
        if TOTP in names:
            fields[TOTP] = record.totp
        else:
            add("one-time password", record.totp, True)
    if record.tags:
        fields["tags"] = list(record.tags[:MAX_TAGS])
        if len(record.tags) > MAX_TAGS:
            add("tags", ", ".join(record.tags[MAX_TAGS:]), False)
    if custom:
        fields[CUSTOM] = custom
    return fields


def check_attachments(record: ImportedRecord, source: str) -> None:
    """The limits of ``secret attach`` (issue 16), before anything is written: a name it takes,
    at most 25 MiB each (the readers refuse larger ones first), at most 100 per record. One line
    naming the entry."""
    from vault.blob import MAX_ATTACHMENT
    from vault.records import validate

    where = f"{source}: entry {record.index} ({record.title[:48]!r})"
    if len(record.attachments) > validate.MAX_ATTACHMENTS:
        raise InvalidInput(
            f"{where}: {len(record.attachments)} attachments: at most {validate.MAX_ATTACHMENTS} per record"
        )
    for item in record.attachments:
        try:
            validate.attachment_name(item.name)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: attachment {item.name[:48]!r}: {exc.message}") from None
        if len(item.data) > MAX_ATTACHMENT:
            raise InvalidInput(f"{where}: attachment {item.name[:48]!r} is larger than 25 MiB")


class Importer:
    """One ``import`` run (created by :meth:`SecretService.import_file`)."""

    def __init__(self, secrets: SecretService):
        self.secrets = secrets
        self.ctx = secrets.ctx

    def run(
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
    ) -> dict[str, Any]:
        from vault.importers import open_source
        from vault.importers.paths import PathAllocator

        clients = dict(clients or {})
        options: dict[str, Any] = {}
        if fmt == "keepass":
            options.update(password=password, keyfile=keyfile)
        elif fmt == "csv":
            options.update(mapping=mapping or {}, kind=kind)
        elif password is not None or keyfile is not None or mapping:
            open_source(fmt, path, password=password, keyfile=keyfile, mapping=mapping)  # refuses
        records, report = open_source(fmt, path, **options).read_all()

        # 2. clients
        targets: dict[str, list[ImportedRecord]] = {}
        unmapped: list[str] = []
        for record in records:
            name = client_for(record.client_hint, clients, default_client)
            if name is None:
                hint = record.client_hint or "(no group)"
                if hint not in unmapped:
                    unmapped.append(hint)
                continue
            targets.setdefault(name, []).append(record)
        if unmapped:
            shown = ", ".join(repr(h) for h in unmapped[:10]) + (" ..." if len(unmapped) > 10 else "")
            raise InvalidInput(
                f"{len(unmapped)} group(s) of the file map to no client: {shown}; "
                "add --client-map 'GROUP=CLIENT' or --client NAME"
            )
        rows: dict[str, ClientRow] = {}
        for name in targets:
            try:
                rows[name] = self.ctx.client(name)
            except NotFound:
                raise InvalidInput(f"no client named {name!r}: create it first (cvault client add)") from None

        # paths per client, then the plaintext each record becomes
        items: dict[str, list[_Item]] = {}
        renames: list[dict[str, Any]] = []
        for name, recs in targets.items():
            allocator = PathAllocator()
            out: list[_Item] = []
            for record in recs:
                where, why = allocator.allocate(record.path)
                if why:
                    renames.append(
                        {"entry": record.index, "title": record.title, "client": name, "path": where}
                    )
                check_attachments(record, report.source)
                try:
                    prepared = self.secrets._prepare(where, record.kind, record_fields(record))
                except InvalidInput as exc:
                    raise InvalidInput(
                        f"{report.source}: entry {record.index} ({record.title[:48]!r}): {exc.message}"
                    ) from None
                # the version with the fields lists none; the file's attachments follow it
                out.append(_Item(record, where, prepared._replace(attachments=[])))
            items[name] = out

        # 3. need-to-know on every client before anything is written
        for name, row in rows.items():
            detail = f"{'dry run: ' if dry_run else ''}import from {fmt}: {len(items[name])} records"
            self.ctx.authorize(principal, Action.SECRET_IMPORT, client=row, detail=detail)

        # 4. plan, 5. write: one transaction per client
        total = sum(len(v) for v in items.values())
        done = 0
        results: list[dict[str, Any]] = []
        for name, row in rows.items():
            plan = self._plan(row, items[name])
            written = False
            if not dry_run and (plan.new or plan.changed):
                base = done

                def step(n: int, _total: int, base: int = base) -> None:
                    if progress:
                        progress(base + n, total)

                self._write(principal, fmt, plan, step)
                written = True
            done += len(items[name])
            if progress:
                progress(done, total)
            results.append(self._summary(plan, written))
            if not dry_run and (plan.new or plan.changed or plan.conflicts):
                self.ctx.record_outcome(
                    principal,
                    Action.SECRET_IMPORT,
                    "ok",
                    client=row,
                    reason=(
                        f"import from {fmt}: {len(plan.new)} new, {len(plan.changed)} changed, "
                        f"{len(plan.unchanged)} unchanged, {len(plan.conflicts)} conflicts"
                    ),
                )
        summary = report.as_dict()
        summary["renames"] = summary["renames"] + renames
        return {
            "format": fmt,
            "file": os.fspath(path),
            "dry_run": dry_run,
            "read": summary["read"],
            "mapped": summary["mapped"],
            "skipped": summary["skipped"],
            "by_type": summary["by_type"],
            "clients": results,
            "renames": summary["renames"],
            "warnings": summary["warnings"],
            "attachments_not_imported": summary["attachments_not_imported"],
        }

    def _plan(self, client: ClientRow, items: list[_Item]) -> _ClientPlan:
        plan = _ClientPlan(client, [], [], [], [])
        with self.ctx.db.read() as conn:
            # the key version from this snapshot (docs/architecture.md, "Key versions under concurrency")
            client = self.ctx.client(client.name, conn)
            keys = self.ctx.client_keys(client, conn=conn)
            # each origin's row MAC verified (review4 R4-7: it decides whether a re-run overwrites)
            origins = {
                row[1]: row[2]
                for row in rowmac.select(
                    conn,
                    "import_origins",
                    "record_id IN (SELECT id FROM records WHERE client_id = ?)",
                    (client.id,),
                )
            }
            # one batched index lookup for the file's paths; a record is opened only where its
            # tag is stored (like secret import's bulk write: a path not stored is new)
            tags = [keys.path_tag(item.path) for item in items]
            stored = store.existing_tags(conn, client.id, tags)
            for item, tag in zip(items, tags, strict=True):
                found = self.secrets._find(conn, client, keys, item.path) if tag in stored else None
                if found is None:
                    plan.new.append(item)
                    continue
                record_id, meta, current = found
                row = store.version(conn, record_id, current)
                deleted = row is None or row[0] is None
                same = (
                    not deleted
                    and meta["kind"] == item.record.kind
                    and self._same(client, keys, record_id, item, current, row)
                )
                imported = origins.get(record_id)
                if same:
                    plan.unchanged.append((item, record_id, current))
                elif imported is None:
                    plan.conflicts.append((item, "a record not written by an import is there"))
                elif imported != current:
                    plan.conflicts.append((item, "edited in cvault since the last import"))
                elif meta["kind"] != item.record.kind:
                    plan.conflicts.append((item, f"the record there is a {meta['kind']} record"))
                else:
                    plan.changed.append((item, record_id))
        return plan

    def _same(
        self, client: ClientRow, keys: Any, record_id: int, item: _Item, version: int, row: Any
    ) -> bool:
        """Whether the stored version holds exactly what the file says now (a damaged record
        raises IntegrityFailure: never taken as "changed" and overwritten)."""
        from vault.records import validate

        kind = item.record.kind
        current, entries = self.secrets._open(client, keys, record_id, item.path, kind, version, row)
        stored = validate.encode(current.kind, current.fields)
        if not crypto.constant_time_equal(stored, item.prepared.plaintext):
            return False
        wanted = {a.name: a.data for a in item.record.attachments}
        if sorted(wanted) != sorted(e["name"] for e in entries):
            return False
        for entry in entries:
            data = wanted[entry["name"]]
            if entry["size"] != len(data):
                return False
            opened = self.secrets._open_attachment(client, record_id, item.path, entry)
            if not crypto.constant_time_equal(opened, data):
                return False
        return True

    def _write(self, principal: Principal, fmt: str, plan: _ClientPlan, progress: Progress) -> None:
        now = to_epoch(self.ctx.now())
        prepared = [i.prepared for i in plan.new] + [i.prepared for i, _ in plan.changed]
        with self.ctx.db.write() as conn:
            bulk = self.secrets._write_many(conn, principal, plan.client, prepared, progress)
            pruned = bulk.pruned
            keys = self.ctx.client_keys(self.ctx.client(plan.client.name, conn), conn=conn)
            origins = []
            attached = False
            for item in [*plan.new, *(i for i, _ in plan.changed)]:
                record_id = bulk.created.get(item.path)
                if record_id is not None:
                    version = 1
                else:  # a stored record the bulk write gave a new version
                    found = store.find(conn, plan.client.id, keys.path_tag(item.path))
                    if found is None:  # pragma: no cover - written just above in this transaction
                        raise InvalidInput(f"import of {plan.client.name}/{item.path} was not written")
                    record_id, version = found[0], found[2]
                if item.record.attachments:
                    version, gone = self._attach(conn, principal, plan.client, record_id, item, now)
                    pruned.extend(gone)
                    attached = True
                origins.append((record_id, version, fmt, now, principal.name))
            if attached:
                self.ctx.blobs.sync()  # the attachment blobs durable before the commit, like the rest
            # a record found unchanged is confirmed as imported at its current version
            origins += [(rid, version, fmt, now, principal.name) for _, rid, version in plan.unchanged]
            # each row MACed over the values meant (review4 R4-7: the origin decides whether a
            # re-run overwrites; a stored row was verified by _plan and is replaced whole)
            conn.executemany(
                "INSERT INTO import_origins (record_id, version, source, imported_at, imported_by, mac)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(record_id) DO UPDATE SET version = excluded.version,"
                " source = excluded.source, imported_at = excluded.imported_at,"
                " imported_by = excluded.imported_by, mac = excluded.mac",
                [(*o, rowmac.mac(conn, "import_origins", o[:3])) for o in origins],
            )
        self.secrets._delete_local(pruned)

    def _attach(
        self, conn: Any, principal: Principal, client: ClientRow, record_id: int, item: _Item, now: int
    ) -> tuple[int, list[str]]:
        """The file's attachments of one record just written, as ``secret attach`` adds them: one
        new version per file, each listing the files so far. Returns (the last version, the
        blobs its pruning freed)."""
        entries: list[dict[str, Any]] = []
        pruned: list[str] = []
        version = 0
        for attachment in item.record.attachments:
            entries.append(
                self.secrets._store_attachment(
                    conn, principal, client, record_id, attachment.name, attachment.data, now, durable=False
                )
            )
            prepared = item.prepared._replace(attachments=list(entries))
            version, gone = self.secrets._write(
                conn, principal, client, prepared, durable=False, replace=True
            )
            pruned.extend(gone)
        return version, pruned

    @staticmethod
    def _summary(plan: _ClientPlan, written: bool) -> dict[str, Any]:
        return {
            "client": plan.client.name,
            "written": written,
            "new": [{"path": i.path, "kind": i.record.kind, "entry": i.record.index} for i in plan.new],
            "changed": [
                {"path": i.path, "kind": i.record.kind, "entry": i.record.index} for i, _ in plan.changed
            ],
            "attachments": sum(len(i.record.attachments) for i in [*plan.new, *(i for i, _ in plan.changed)]),
            "unchanged": len(plan.unchanged),
            "conflicts": [
                {"path": i.path, "entry": i.record.index, "reason": why} for i, why in plan.conflicts
            ],
        }
