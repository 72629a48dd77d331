"""Unseal slots: list, add, remove (like LUKS key slots; docs/spec.md §3).

Managing slots needs the vault unsealed, which already proves possession of one unseal secret;
every change is audited. The last slot can never be removed.
"""

from __future__ import annotations

import json
from pathlib import Path

from vault import crypto, keys
from vault.clock import rfc3339, stored_epoch, to_epoch
from vault.context import VaultContext
from vault.errors import InvalidInput, NotFound
from vault.home import write_private_file
from vault.policy import AuditEvent
from vault.store.db import inserted_id


class SlotService:
    def __init__(self, ctx: VaultContext):
        self.ctx = ctx

    def list_slots(self) -> list[dict]:
        rows = self.ctx.db.all("SELECT id, kind, label, kdf_params, created_at FROM unseal_slots ORDER BY id")
        return [
            {
                "id": r[0],
                "kind": r[1],
                "label": r[2],
                "kdf": keys.stored_kdf_params(r[0], r[1], r[3]),
                "created_at": rfc3339(stored_epoch(r[4], "unseal_slots.created_at")),
            }
            for r in rows
        ]

    def add_slot(
        self, kind: str, secret: bytes, *, label: str, kdf_params: dict | None = None, actor: str = "operator"
    ) -> int:
        if kind not in keys.SLOT_KINDS:
            raise InvalidInput(f"unknown slot kind {kind!r}")
        root = self.ctx.keyring.root()
        salt = crypto.random_bytes(16)
        if kind == "passphrase":
            if len(secret) < 8:
                raise InvalidInput("passphrase too short: use at least 8 characters")
            secret = _normalized_passphrase(secret)
            kdf_params = {
                **(kdf_params or crypto.calibrate_argon2id()),
                "normalize": keys.PASSPHRASE_NORMALIZATION,
            }
            if not keys.valid_kdf_params(kind, kdf_params):  # the bounds every reader keeps
                raise InvalidInput(
                    "Argon2id parameters outside cvault's bounds: memory_kib 65536 to 1048576,"
                    " iterations 1 to 64, lanes 1 to 4"
                )
        else:
            kdf_params = None
        if (self.ctx.db.one("SELECT count(*) FROM unseal_slots") or (0,))[0] >= keys.MAX_SLOTS:
            raise InvalidInput(f"a vault has at most {keys.MAX_SLOTS} unseal slots: remove one first")
        kek = keys.slot_kek(kind, secret, salt, kdf_params)
        with self.ctx.db.write() as conn:
            # the row id is part of the wrap's associated data: reserve it first
            if conn.execute("SELECT count(*) FROM unseal_slots").fetchone()[0] >= keys.MAX_SLOTS:
                raise InvalidInput(f"a vault has at most {keys.MAX_SLOTS} unseal slots: remove one first")
            cur = conn.execute(
                "INSERT INTO unseal_slots (kind, label, kdf_params, salt, wrapped_root, created_at)"
                " VALUES (?, ?, ?, ?, x'', ?)",
                (kind, label, json.dumps(kdf_params) if kdf_params else None, salt, to_epoch(self.ctx.now())),
            )
            slot_id = inserted_id(cur)
            wrapped = keys.wrap_root(root, kek, self.ctx.vault_id, slot_id, kind)
            conn.execute("UPDATE unseal_slots SET wrapped_root = ? WHERE id = ?", (wrapped, slot_id))
        self.ctx.audit.append(
            actor=actor,
            action=AuditEvent.SLOT_ADD.value,
            outcome="ok",
            reason=f"slot {slot_id} ({kind}) added",
        )
        return slot_id

    def migrate_passphrase_slot(self, slot_id: int, secret: bytes, *, actor: str = "system:unseal") -> bool:
        """Re-wrap a passphrase slot made before normalisation (the passphrase's bytes as typed)
        under the NFC form of the passphrase that just opened it: a new salt, the same Argon2id
        costs, ``normalize`` recorded (docs/format.md section 2.1). One transaction; a slot another
        process migrated or changed meanwhile is left alone. True if this call migrated it."""
        root = self.ctx.keyring.root()
        row = self.ctx.db.one("SELECT kind, kdf_params, salt FROM unseal_slots WHERE id = ?", (slot_id,))
        if row is None or row[0] != "passphrase":
            return False
        params = dict(keys.stored_kdf_params(slot_id, row[0], row[1]) or {})
        if keys.slot_is_normalized("passphrase", params):
            return False
        params["normalize"] = keys.PASSPHRASE_NORMALIZATION
        salt = crypto.random_bytes(16)
        kek = keys.slot_kek("passphrase", _normalized_passphrase(secret), salt, params)
        wrapped = keys.wrap_root(root, kek, self.ctx.vault_id, slot_id, "passphrase")
        with self.ctx.db.write() as conn:
            cur = conn.execute(
                "UPDATE unseal_slots SET kdf_params = ?, salt = ?, wrapped_root = ?"
                " WHERE id = ? AND salt = ?",
                (json.dumps(params), salt, wrapped, slot_id, row[2]),
            )
            if cur.rowcount != 1:
                return False
        self.ctx.audit.append(
            actor=actor,
            action=AuditEvent.SLOT_MIGRATE.value,
            outcome="ok",
            reason=f"slot {slot_id} (passphrase) re-wrapped under its NFC-normalised passphrase",
        )
        return True

    def create_key_file_slot(self, path: Path, *, actor: str = "operator") -> int:
        """Write a new key file (0600, refusing to overwrite) and add its slot."""
        secret, text = keys.new_key_file_text()
        try:
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private_file(Path(path), text.encode(), exclusive=True)
        except FileExistsError:
            raise InvalidInput(f"key file {path} already exists; refusing to overwrite it") from None
        except OSError as exc:
            raise InvalidInput(f"cannot write key file {path}: {exc.strerror}") from None
        return self.add_slot("keyfile", secret, label=f"key file {Path(path).name}", actor=actor)

    def add_recovery_slot(self, *, actor: str = "operator") -> tuple[int, str]:
        secret, text = keys.new_recovery_key()
        return self.add_slot("recovery", secret, label="recovery key", actor=actor), text

    def remove(self, slot_id: int, *, actor: str = "operator") -> None:
        self.ctx.keyring.root()  # only an unsealed vault may change its slots
        with self.ctx.db.write() as conn:
            row = conn.execute("SELECT kind FROM unseal_slots WHERE id = ?", (slot_id,)).fetchone()
            if row is None:
                raise NotFound(f"no unseal slot {slot_id}")
            count = conn.execute("SELECT count(*) FROM unseal_slots").fetchone()[0]
            if count <= 1:
                raise InvalidInput("refusing to remove the last unseal slot (the vault would be lost)")
            conn.execute("DELETE FROM unseal_slots WHERE id = ?", (slot_id,))
        self.ctx.audit.append(
            actor=actor,
            action=AuditEvent.SLOT_REMOVE.value,
            outcome="ok",
            reason=f"slot {slot_id} ({row[0]}) removed",
        )


def _normalized_passphrase(secret: bytes) -> bytes:
    try:
        return keys.passphrase_bytes(secret.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput("the passphrase is not valid UTF-8 text") from None
