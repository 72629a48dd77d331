"""``cvault backup`` and ``cvault restore`` (docs/sla.md section 6, "Backups and the restore drill").

A backup is a consistent online snapshot of ``vault.db`` (SQLite's backup API: readers and
writers go on meanwhile), every local blob, and the custody state, in one ``cvault-backup/v1``
file (vault/backup/container.py) encrypted under the root-derived ``backup`` key and signed
with the vault's audit key.

What a backup does **not** hold: the custody secrets. Restoring needs the custodian as it is *at
restore time* (the current custody file, or the Key Vault), so a backup taken before a shred opens
nothing of the shredded client afterwards (P1), while every other client is restored (P2). A
client a backup cannot restore (its custody was destroyed since: shredded, or rotated by a purge)
is named with the reason, and its rows and blobs are removed from the restored vault.

Blobs are always included, even when the OneDrive replica holds them: the backup is then
self-contained, and restoring needs no replica (the price: ciphertext stored twice in OneDrive
for ``--remote`` backups; record blobs are small).

Retention: a backup written into a folder (``--out DIR``) or to the replica (``--remote``,
``<root folder>-backups/`` next to the blob folder) keeps the newest ``keep`` (default 7) backups
of this vault there and permanently deletes older ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from vault import crypto, keys
from vault.audit import stored as audit_stored
from vault.backup import container as bc
from vault.clock import from_epoch, rfc3339, to_epoch
from vault.custody.rows import load_versions
from vault.errors import (
    AuthenticationFailed,
    BackendError,
    CryptoError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    VaultSealed,
)
from vault.home import fsync_dir
from vault.policy import Action
from vault.store import meta, rowmac
from vault.store.db import VaultConnection

DEFAULT_KEEP = 7
#: ``cvault-<vault id[:8]>-<UTC time>-<audit sequence>-<backup id[:8]>.cvbk``: sorting the names
#: sorts the backups by age, also two taken in the same second (each writes an audit entry first)
NAME = re.compile(r"^cvault-([0-9a-f]{8})-(\d{8}T\d{6}Z)-(\d{12})-([0-9a-f]{8})\.cvbk$")
Progress = Callable[[int, int], None]


def backup_name(vault_id: bytes, when: int, seq: int, backup_id: bytes) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return f"cvault-{vault_id.hex()[:8]}-{stamp}-{seq:012d}-{backup_id.hex()[:8]}.cvbk"


def _slots(db) -> list[dict]:
    import base64

    (count,) = db.one("SELECT count(*) FROM unseal_slots") or (0,)
    if count > keys.MAX_SLOTS:  # what a restore takes (review10 R10-2); slot add refuses more
        raise InvalidInput(
            f"the vault has {count} unseal slots and a backup holds at most {keys.MAX_SLOTS}:"
            " remove some first (cvault slot remove ID)"
        )
    slots = []
    for sid, kind, label, params, stored_salt, stored_wrapped, created in db.all(
        "SELECT id, kind, label, kdf_params, salt, wrapped_root, created_at FROM unseal_slots ORDER BY id"
    ):
        # the strict decoders (review8 R8-5): never json.loads or bytes() of a stored value
        kdf_params = keys.stored_kdf_params(sid, kind, params)
        salt, wrapped = keys.stored_slot_bytes(sid, stored_salt, stored_wrapped)
        slots.append(
            {
                "id": sid,
                "kind": kind,
                "label": label,
                "kdf_params": kdf_params,
                "salt": base64.b64encode(salt).decode(),
                "wrapped_root": base64.b64encode(wrapped).decode(),
                "created_at": created,
            }
        )
    return slots


def root_from_slots(slots: list[dict], vault_id: bytes, kind: str, secret: bytes) -> bytes:
    """The root key from a backup's slot rows, with the unseal secret of the backed-up vault."""
    import base64

    matching = [s for s in slots if s.get("kind") == kind]
    if not matching:
        raise VaultSealed(f"the backup has no {kind} slot")
    for slot in matching:
        if not keys.valid_kdf_params(kind, slot.get("kdf_params")):
            continue  # not a slot cvault wrote: no derivation at its costs (a 4 TiB memory cost)
        try:
            return keys.open_slot(
                kind,
                secret,
                salt=base64.b64decode(slot["salt"]),
                kdf_params=slot.get("kdf_params"),
                wrapped=base64.b64decode(slot["wrapped_root"]),
                vault_id=vault_id,
                slot_id=int(slot["id"]),
            )
        except (CryptoError, ValueError, KeyError, TypeError):
            continue
    raise AuthenticationFailed(f"wrong {kind.replace('keyfile', 'key file')}: no slot of the backup opened")


class BackupService:
    def __init__(self, ctx, *, remote: Callable[[], object] | None = None):
        self.ctx = ctx
        self._remote_backend = remote  # the facade wires the sync service's replica in

    # --- taking a backup ------------------------------------------------------------------------

    def create(
        self,
        principal,
        *,
        out: Path | str | None = None,
        remote: bool = False,
        keep: int | None = None,
        progress: Progress | None = None,
    ) -> dict:
        """Write a backup to ``out`` (a file, or a folder to keep ``keep`` backups in) or to the
        OneDrive replica; returns what was written and how fast."""
        if bool(out) == bool(remote):
            raise InvalidInput("give --out FILE|DIR or --remote")
        keep = DEFAULT_KEEP if keep is None else keep
        if not 1 <= keep <= 1000:
            raise InvalidInput("keep must be 1 to 1000 backups")
        self.ctx.authorize(principal, Action.BACKUP)
        now = to_epoch(self.ctx.now())
        backup_id = crypto.random_bytes(16)
        seq = self.ctx.db.one("SELECT max(seq) FROM audit_events")[0] or 0
        name = backup_name(self.ctx.vault_id, now, seq, backup_id)
        folder = None
        if remote:
            sync = self._remote()
            target = self.ctx.home.root / f".{name}.tmp"
        elif out is not None:
            # a trailing slash names a folder, made (0700) if it does not exist yet: never a
            # file called like the folder the user meant
            as_folder = str(out).endswith(("/", os.sep))
            out = Path(out).expanduser()
            if as_folder and not out.exists():
                out.mkdir(mode=0o700, parents=True)
            if out.is_dir():
                folder, target = out, out / name
            else:
                if out.exists():
                    raise InvalidInput(f"{out} exists; refusing to overwrite it")
                target = out
        started = time.perf_counter()
        partial = target.with_name(f".{target.name}.partial")
        try:
            try:
                info = self._write(partial, backup_id, now, progress)
            except rowmac.RowTampered as exc:
                self.ctx.integrity_alarm(principal, exc, Action.BACKUP.value)
                raise
            os.replace(partial, target)
            fsync_dir(target.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        seconds = max(time.perf_counter() - started, 1e-9)
        pruned: list[str] = []
        where = str(target)
        try:
            if remote:
                where, pruned = self._upload(sync, target, name, keep)
            elif folder is not None:
                pruned = prune_folder(folder, self.ctx.vault_id, keep)
        finally:
            if remote:
                target.unlink(missing_ok=True)
        result = {
            "backup_id": backup_id.hex(),
            "file": where,
            "bytes": info["bytes"],
            "seconds": round(seconds, 3),
            "mb_per_s": round(info["bytes"] / 1e6 / seconds, 1),
            "clients": info["clients"],
            "blobs": info["blobs"],
            "created_at": rfc3339(from_epoch(now)),
            "sha256": info["sha256"],
            "pruned": pruned,
        }
        self.ctx.record_outcome(
            principal,
            Action.BACKUP,
            "ok",
            reason=f"backup {name} written ({info['bytes']} bytes, {info['clients']} clients, "
            f"sha256 {info['sha256'][:16]}); {len(pruned)} older deleted",
        )
        return result

    def _write(self, path: Path, backup_id: bytes, now: int, progress: Progress | None) -> dict:
        ctx = self.ctx
        snapshot = ctx.home.root / f".snapshot-{backup_id.hex()}.db"
        fd = os.open(snapshot, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        try:
            dest = sqlite3.connect(snapshot, factory=VaultConnection)
            dest.keyring = ctx.keyring  # the summary's rows are MAC-checked on the snapshot itself
            try:
                ctx.db.conn.backup(dest)  # one consistent snapshot, online
                clients = len(rowmac.select(dest, "clients", "shred_state IS NULL"))
                custody = _custody_state(dest)
                head = dest.execute(
                    "SELECT seq, entry_hash FROM audit_events ORDER BY seq DESC LIMIT 1"
                ).fetchone()
            finally:
                dest.close()
            names = sorted(ctx.blobs.list())
            from vault.audit.signing import AuditSigner

            signer = AuditSigner(ctx.db, ctx.keyring)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                writer = bc.BackupWriter(
                    fh,
                    vault_id=ctx.vault_id,
                    backup_key=ctx.keyring.purpose_key(keys.PURPOSE_BACKUP),
                    slots=_slots(ctx.db),
                    created_at=now,
                    backup_id=backup_id,
                )
                with open(snapshot, "rb") as src:
                    writer.add(bc.KIND_DATABASE, "vault.db", src, os.fstat(src.fileno()).st_size)
                for done, name in enumerate(names, 1):
                    writer.add(bc.KIND_BLOB, name, ctx.blobs.get(name))
                    if progress:
                        progress(done, len(names))
                writer.add(bc.KIND_CUSTODY, "custody.json", bc.canonical(custody))
                trailer = writer.finish(
                    {
                        "created_at": now,
                        "clients": clients,
                        "blobs": len(names),
                        "audit_head": {
                            "seq": head[0],
                            "hash": audit_stored.entry_hash(head[1], head[0]).hex(),
                        }
                        if head
                        else None,
                        "custody_format": custody.get("format"),
                    },
                    signer.sign,
                    signer.trusted_public_key()[0],
                )
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            snapshot.unlink(missing_ok=True)
        return {
            "bytes": path.stat().st_size,
            "clients": clients,
            "blobs": len(names),
            "sha256": trailer["sha256"],
        }

    # --- the replica ----------------------------------------------------------------------------

    def _remote(self):
        backend = self._remote_backend() if self._remote_backend is not None else None
        if backend is None:
            raise NotFound("no remote configured: run 'cvault remote set' (or use --out)")
        return backend

    def _upload(self, backend, local: Path, name: str, keep: int) -> tuple[str, list[str]]:
        """Upload (sessions above 4 MiB, GraphClient.upload), then keep the newest ``keep``."""
        folder = f"{backend.root_folder}-backups"
        client, drive = backend.client, backend.drive_id
        client.upload_file(drive, f"{folder}/{name}", local)  # streamed: one fragment in memory
        mine = sorted(
            child["name"]
            for child in client.children(drive, folder)
            if isinstance(child.get("name"), str)
            and (m := NAME.match(child["name"]))
            and m.group(1) == self.ctx.vault_id.hex()[:8]
        )
        pruned = mine[:-keep] if len(mine) > keep else []
        for old in pruned:
            client.delete_permanently(drive, f"{folder}/{old}")
        return f"onedrive:{folder}/{name}", pruned


def prune_folder(folder: Path, vault_id: bytes, keep: int) -> list[str]:
    """Keep the newest ``keep`` backups of this vault in ``folder``; delete the older ones."""
    mine = sorted(
        p.name for p in folder.iterdir() if (m := NAME.match(p.name)) and m.group(1) == vault_id.hex()[:8]
    )
    pruned = mine[:-keep] if len(mine) > keep else []
    for name in pruned:
        (folder / name).unlink(missing_ok=True)
    if pruned:
        fsync_dir(folder)
    return pruned


def _custody_state(conn) -> dict:
    """Which custodian held which client's current custody version when the backup was taken:
    every row MAC-checked (an edited or planted custodian or custody row raises RowTampered and
    no backup is written, docs/security.md guarantee 46)."""
    custodians = [
        {"id": i, "kind": k, "config": json.loads(c), "retired": r is not None}
        for _, i, k, c, _, r in rowmac.select(conn, "custodians", "1", (), "id")
    ]
    # every version row is read and verified, the current ones kept here: a condition in the
    # select would leave an edited state (a current version marked destroyed) unread
    clients = [
        {
            "client_id": v.client_id,
            "version": v.version,
            "custodian_id": v.custodian_id,
            "fingerprint": v.fingerprint,
        }
        for v in load_versions(conn, "1", (), "client_id, version")
        if v.state == "current"
    ]
    return {
        "format": meta.custody_format(rowmac.meta_value(conn, "custody_format")),  # MACed (coverage 7)
        "custodians": custodians,
        "clients": clients,
    }


# --- restore ---------------------------------------------------------------------------------------


def restore(
    file: Path | str,
    home: Path | str,
    *,
    unseal: tuple[str, bytes],
    open_vault: Callable,
    custody_file: Path | str | None = None,
    custody_options=None,
    clock=None,
) -> dict:
    """Restore a backup into a new, empty vault folder ``home``.

    ``unseal`` is ``(kind, secret)`` of the backed-up vault: ``("keyfile", bytes)``,
    ``("passphrase", UTF-8 bytes)`` or ``("recovery", bytes)``. The custodian is the one recorded in
    the backup; ``custody_file`` says where the custody file is on this host. ``open_vault`` is
    ``Vault.open`` (the facade calls this as ``Vault.restore``). Returns the clients restored and,
    with the reason, those that could not be."""
    from vault.audit.signing import AuditSigner
    from vault.backends.local import LocalBackend
    from vault.custody.base import CustodyDestroyed
    from vault.home import VaultHome
    from vault.principal import Principal

    file, home = Path(file), Path(home).expanduser()
    if home.exists() and any(home.iterdir()):
        raise InvalidInput(f"{home} is not empty: restore into a new folder")
    with open(file, "rb") as fp:
        header = bc.read_header(fp)
        root = root_from_slots(header.slots, header.vault_id, unseal[0], unseal[1])
        ring = keys.Keyring(header.vault_id)
        ring.load_root(root)
        vhome = VaultHome(home)
        vhome.create()
        try:
            reader = bc.BackupReader(fp, header, ring.purpose_key(keys.PURPOSE_BACKUP))
            blobs = LocalBackend(vhome.blobs)
            for kind, name, _size, chunks in reader.entries():
                if kind == bc.KIND_DATABASE:
                    fd = os.open(vhome.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        for chunk in chunks:
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                elif kind == bc.KIND_BLOB:
                    blobs.put(name, b"".join(chunks), durable=False)
            blobs.sync()
            reader.read_trailer()
            vault = open_vault(home, clock=clock, custody_file=custody_file, custody_options=custody_options)
        except BaseException:
            _remove_tree(home)
            raise
    done = False
    try:
        vault.ctx.keyring.load_root(root)
        public = AuditSigner(vault.ctx.db, vault.ctx.keyring).trusted_public_key()[0]
        manifest = reader.verify_manifest(public)
        report = _check_clients(vault, CustodyDestroyed)
        taken = rfc3339(from_epoch(int(manifest["metadata"]["created_at"])))
        gone = "; ".join(f"{c['client']}: {c['reason']}" for c in report["not_restorable"]) or "none"
        vault.ctx.record_outcome(
            Principal.system("restore"),
            Action.RESTORE,
            "ok",
            reason=f"restored from backup {header.backup_id.hex()} taken {taken}: "
            f"{len(report['restored'])} clients restored; not restorable: {gone}"[:900],
        )
        report.update({"backup_id": header.backup_id.hex(), "taken_at": taken, "home": str(home)})
        done = True
        return report
    finally:
        vault.close()
        if not done:
            _remove_tree(home)


def _check_clients(vault, destroyed_error) -> dict:
    """Open every live client's key with the custodian as it is now; drop those that do not open."""
    ctx = vault.ctx
    restored, lost = [], []
    for (name,) in ctx.db.all("SELECT name FROM clients WHERE shred_state IS NULL ORDER BY name"):
        client = ctx.client(name)
        try:
            ctx.client_keys(client)
            restored.append(name)
        except destroyed_error as exc:
            lost.append({"client": name, "reason": _reason(str(exc))})
        except BackendError:
            raise  # the custodian is unreachable: nothing is decided, the restore is undone
        except IntegrityFailure as exc:
            lost.append({"client": name, "reason": _reason(str(exc))})
    if lost:
        with ctx.db.write() as conn:
            for entry in lost:
                client_id = ctx.client(entry["client"], conn).id
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT v.blob_name FROM records r JOIN record_versions v ON v.record_id = r.id"
                        " WHERE r.client_id = ? AND v.blob_name IS NOT NULL"
                        " UNION SELECT a.blob_name FROM records r JOIN attachment_refs a"
                        " ON a.record_id = r.id WHERE r.client_id = ?",
                        (client_id, client_id),
                    )
                ]
                conn.execute(
                    "DELETE FROM attachment_refs WHERE record_id IN (SELECT id FROM records WHERE"
                    " client_id = ?)",
                    (client_id,),
                )
                conn.execute(
                    "DELETE FROM record_versions WHERE record_id IN (SELECT id FROM records WHERE"
                    " client_id = ?)",
                    (client_id,),
                )
                for table in (
                    "records",
                    "client_keys",
                    "client_audit_keys",
                    "client_custody",
                    "custody_jobs",
                ):
                    conn.execute(f"DELETE FROM {table} WHERE client_id = ?", (client_id,))  # noqa: S608 - the table names come from the constant tuple above; values are bound
                rowmac.update(conn, "clients", "shred_state = 'shredded'", (), "id = ?", (client_id,))
                ctx.blobs.delete_many(names, durable=True)
        ctx.db.scrub()
    return {"restored": restored, "not_restorable": lost}


def _reason(message: str) -> str:
    return " ".join(message.split())[:300]


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
