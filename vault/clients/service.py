"""Clients: creation with their SLA end, listing, and client-key rotation."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime

from vault import crypto, names
from vault.api_spec import grace_days_refusal
from vault.clock import rfc3339, rfc3339_seconds, to_epoch
from vault.context import VaultContext
from vault.dates import as_when, require_future
from vault.errors import ClientUnavailable, InvalidInput
from vault.identity.facts import visible_client_ids
from vault.policy import Action
from vault.principal import Principal
from vault.store import clients as store
from vault.store import records as record_store
from vault.store import rowmac
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
        floor = self.ctx.min_grace_days()
        grace = max(int(self.ctx.settings["default_grace_days"]), floor) if grace_days is None else grace_days
        refusal = grace_days_refusal(grace)
        if refusal:
            raise InvalidInput(refusal)
        now = self.ctx.now()
        sla_end = require_future(as_when(sla_end, now, self.ctx.zone), now, "the SLA end")
        self.ctx.authorize(principal, Action.CLIENT_ADD, detail=None)
        try:
            names.client_name(name)
        except InvalidInput as refused:  # "acme ", "acme\n": audited, the name itself not
            self.ctx.record_outcome(principal, Action.CLIENT_ADD, "deny", reason=refused.message)
            raise
        if grace < floor:
            message = f"grace period below the vault's minimum of {floor} days (changing it takes two people)"
            self.ctx.record_outcome(principal, Action.CLIENT_ADD, "deny", reason=message)
            raise InvalidInput(message)
        if self.ctx.db.one("SELECT 1 FROM clients WHERE name = ?", (name,)):
            raise InvalidInput(f"a client named {name!r} already exists")
        client_id = crypto.random_bytes(16).hex()
        key = crypto.new_key()
        # the custodian first (Key Vault down: nothing is created, exit 9); an aborted add leaves
        # at most a custody secret that wraps nothing
        custody, made = self.ctx.custody.create_first(client_id)
        wrapped = self.ctx.keyring.wrap_client_key(key, client_id, 1, custody=custody)
        with self.ctx.db.write() as conn:
            if conn.execute("SELECT 1 FROM clients WHERE name = ?", (name,)).fetchone():
                raise InvalidInput(f"a client named {name!r} already exists")
            rowmac.insert(
                conn,
                "clients",
                {
                    "id": client_id,
                    "name": name,
                    "created_at": to_epoch(now),
                    "created_by": principal.name,
                    "sla_end": to_epoch(sla_end),
                    "grace_days": grace,
                    "current_key_version": 1,
                    "sla_set_by": principal.name,
                    "sla_set_at": to_epoch(now),
                },
            )
            self.ctx.custody.record_first(conn, client_id, made, to_epoch(now))
            store.insert_key(conn, client_id, 1, wrapped, crypto.key_fingerprint(key), to_epoch(now))
        client = self.ctx.client(name)
        self.ctx.record_outcome(
            principal,
            Action.CLIENT_ADD,
            "ok",
            client=client,
            reason=f"client created, SLA end {rfc3339_seconds(sla_end)}",
        )
        return client_view(client, now)

    def list(self, principal: Principal) -> list[dict]:
        self.ctx.authorize(principal, Action.CLIENT_LIST)
        now = self.ctx.now()
        visible = self.visible_to(principal, store.all_clients(self.ctx.db.conn))
        return [client_view(c, now) for c in visible]

    def visible_to(self, principal: Principal, clients: builtins.list[ClientRow]) -> builtins.list[ClientRow]:
        """Engineers see their own clients only (docs/spec.md §6); other roles see all."""
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
        # a new client-key version (every record key re-wrapped, names re-sealed) under a new
        # custody version, old ones destroyed: the persisted custody rotation (docs/sla.md section 5)
        # One runner at a time (custody.runner): the job is recorded and driven to its end by this
        # command while it holds the runner lock, so no other process resumes it half-way and this
        # command reports its own rotation (docs/architecture.md, "Key versions under concurrency").
        with self.ctx.custody.runner_or_busy():
            with self.ctx.db.write() as conn:
                client = self.ctx.client(name, conn)  # re-read under the write lock
                self.ctx.client_keys(client, conn=conn)  # fails now if the current key does not open
                self.ctx.custody.start_rotation(conn, client.id, "rotate", rotate_client_key=True)
            self.ctx.custody.run_jobs([client.id], progress=progress)
        self.ctx.forget_client_keys(client.id)

        def result(conn, client, keys):
            count = conn.execute("SELECT count(*) FROM records WHERE client_id = ?", (client.id,)).fetchone()
            return client, keys, count[0]

        client, new, records = self.ctx.read_client(name, result)
        new_version = client.key_version
        self.ctx.record_outcome(
            principal,
            Action.CLIENT_ROTATE_KEY,
            "ok",
            client=client,
            reason=f"client key rotated to version {new_version}; "
            f"{records} records re-wrapped; old version destroyed",
        )
        return {
            "name": name,
            "key_version": new_version,
            "records": records,
            "fingerprint": new.fingerprint,
        }
