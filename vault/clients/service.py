"""Clients: creation with their SLA end, listing, and client-key rotation."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime

from vault import crypto, names
from vault.clock import rfc3339, to_epoch
from vault.context import VaultContext
from vault.dates import as_when, require_future
from vault.errors import ClientUnavailable, CryptoError, IntegrityFailure, InvalidInput
from vault.identity.facts import visible_client_ids
from vault.keys import ClientKeys
from vault.policy import Action
from vault.principal import Principal
from vault.store import clients as store
from vault.store import records as record_store
from vault.store.clients import ClientRow

Progress = Callable[[int, int], None]


def client_view(client: ClientRow, now: datetime) -> dict:
    return {
        "name": client.name,
        "id": client.id,
        "state": client.state(now),
        "sla_end": rfc3339(client.sla_end),
        "grace_days": client.grace_days,
        "key_version": client.key_version,
        "created_at": rfc3339(client.created_at),
    }


class ClientService:
    def __init__(self, ctx: VaultContext):
        self.ctx = ctx

    def add(
        self, principal: Principal, name: str, *, sla_end: datetime | str, grace_days: int | None = None
    ) -> dict:
        names.client_name(name)
        grace = self.ctx.settings["default_grace_days"] if grace_days is None else grace_days
        if not 0 <= grace <= 3650:
            raise InvalidInput("grace period must be 0 to 3650 days")
        now = self.ctx.now()
        sla_end = require_future(as_when(sla_end, now), now, "the SLA end")
        self.ctx.authorize(principal, Action.CLIENT_ADD, detail=None)
        client_id = crypto.random_bytes(16).hex()
        key = crypto.new_key()
        wrapped = self.ctx.keyring.wrap_client_key(key, client_id, 1)
        with self.ctx.db.write() as conn:
            if conn.execute("SELECT 1 FROM clients WHERE name = ?", (name,)).fetchone():
                raise InvalidInput(f"a client named {name!r} already exists")
            conn.execute(
                "INSERT INTO clients (id, name, created_at, created_by, sla_end, grace_days,"
                " current_key_version) VALUES (?, ?, ?, ?, ?, ?, 1)",
                (client_id, name, to_epoch(now), principal.name, to_epoch(sla_end), grace),
            )
            store.insert_key(conn, client_id, 1, wrapped, crypto.key_fingerprint(key), to_epoch(now))
        client = self.ctx.client(name)
        self.ctx.record_outcome(
            principal,
            Action.CLIENT_ADD,
            "ok",
            client=client,
            reason=f"client created, SLA end {rfc3339(sla_end)}",
        )
        return client_view(client, now)

    def list(self, principal: Principal) -> list[dict]:
        self.ctx.authorize(principal, Action.CLIENT_LIST)
        now = self.ctx.now()
        visible = self.visible_to(principal, store.all_clients(self.ctx.db.conn))
        return [client_view(c, now) for c in visible]

    def visible_to(self, principal: Principal, clients: builtins.list[ClientRow]) -> builtins.list[ClientRow]:
        """Engineers see their own clients only (SPEC 6); other roles see all."""
        allowed = visible_client_ids(self.ctx, principal)
        return clients if allowed is None else [c for c in clients if c.id in allowed]

    def show(self, principal: Principal, name: str) -> dict:
        client = self.ctx.client(name)
        self.ctx.authorize(principal, Action.CLIENT_SHOW, client=client)
        now = self.ctx.now()
        view = client_view(client, now)
        view["records"] = record_store.count(self.ctx.db.conn, client.id)
        return view

    def rotate_key(self, principal: Principal, name: str, progress: Progress | None = None) -> dict:
        """New client-key version; re-wrap every record key, re-seal names; destroy the old version.

        One transaction: a crash leaves the old version fully in force or the new one."""
        client = self.ctx.client(name)
        self.ctx.authorize(principal, Action.CLIENT_ROTATE_KEY, client=client)
        if client.state(self.ctx.now()) in ("shredding", "shredded"):
            raise ClientUnavailable(f"client {name} is {client.shred_state}")
        now = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            client = self.ctx.client(name, conn)  # re-read under the write lock
            old = self.ctx.client_keys(client, conn=conn)
            new_version = client.key_version + 1
            new_key = crypto.new_key()
            new = ClientKeys(self.ctx.keyring, client.id, new_version, new_key)
            wrapped = self.ctx.keyring.wrap_client_key(new_key, client.id, new_version)
            store.insert_key(conn, client.id, new_version, wrapped, new.fingerprint, now)
            records = record_store.of_client(conn, client.id)
            for done, (record_id, meta_sealed) in enumerate(records, 1):
                try:
                    meta = old.unseal_meta(meta_sealed, record_id)
                except CryptoError:
                    raise IntegrityFailure(
                        f"integrity failure: record {record_id} of client {name} "
                        "failed verification; key not rotated"
                    ) from None
                record_store.set_meta(
                    conn, record_id, new.seal_meta(meta, record_id), new.path_tag(meta["path"])
                )
                for version, wrapped_dek in record_store.wrapped_deks(conn, record_id):
                    try:
                        dek = old.unwrap_dek(wrapped_dek, record_id, version)
                    except CryptoError:
                        raise IntegrityFailure(
                            f"integrity failure: {name}/{meta['path']} (version {version}) failed "
                            "verification; key not rotated"
                        ) from None
                    record_store.rewrap(
                        conn, record_id, version, new.wrap_dek(dek, record_id, version), new_version
                    )
                if progress:
                    progress(done, len(records))
            conn.execute("UPDATE clients SET current_key_version = ? WHERE id = ?", (new_version, client.id))
            store.destroy_keys(conn, client.id, below_version=new_version)
        self.ctx.forget_client_keys(client.id)
        # the old wrapped key's page images may still sit in the WAL: fold it in and truncate
        self.ctx.db.checkpoint_truncate()
        client = self.ctx.client(name)
        self.ctx.record_outcome(
            principal,
            Action.CLIENT_ROTATE_KEY,
            "ok",
            client=client,
            reason=f"client key rotated to version {new_version}; "
            f"{len(records)} records re-wrapped; old version destroyed",
        )
        return {
            "name": name,
            "key_version": new_version,
            "records": len(records),
            "fingerprint": new.fingerprint,
        }
