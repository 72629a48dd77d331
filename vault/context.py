"""Shared state of one open vault, and the authorize-then-audit pipeline every operation uses.

The services in :mod:`vault.services` receive one :class:`VaultContext`. The rule of SPEC 2 is
kept here, in :meth:`VaultContext.authorize`: gather the facts, let :mod:`vault.policy` decide,
write the decision to the audit log (refusing if that fails), and only then let the caller act.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import NamedTuple

from vault import policy
from vault.audit.log import AuditLog
from vault.backends.local import LocalBackend
from vault.clock import Clock, from_epoch
from vault.errors import (
    AccessDenied,
    ClientUnavailable,
    IntegrityFailure,
    NotFound,
    StepUpRequired,
    VaultSealed,
)
from vault.home import VaultHome
from vault.keys import ClientKeys, Keyring
from vault.policy import Action, Decision
from vault.principal import Principal
from vault.store.db import Database

DEFAULT_SETTINGS = {
    "keep_versions": 10,  # SPEC 4: record versions kept
    "stepup_window_seconds": 900,  # SPEC 5: TOTP freshness for reading a secret
    "session_absolute_seconds": 8 * 3600,  # SPEC 5: a session lives at most 8 h
    "session_idle_seconds": 30 * 60,  # SPEC 5: ... and ends after 30 min without use
    "default_grace_days": 30,  # SPEC 7
    "audit_min_retention_days": 365,  # audit prune never deletes entries younger than this
}


class ClientRow(NamedTuple):
    id: str
    name: str
    sla_end: datetime
    grace_days: int
    key_version: int
    shred_state: str | None
    created_at: datetime

    @property
    def id_bytes(self) -> bytes:
        return bytes.fromhex(self.id)

    def state(self, now: datetime) -> str:
        """active -> expired (SLA end passed) -> shred_pending (grace passed) -> shredding/shredded."""
        if self.shred_state:
            return self.shred_state
        if now < self.sla_end:
            return "active"
        if now < self.sla_end + timedelta(days=self.grace_days):
            return "expired"
        return "shred_pending"


CLIENT_COLUMNS = "id, name, sla_end, grace_days, current_key_version, shred_state, created_at"


def client_from_row(row) -> ClientRow:
    return ClientRow(row[0], row[1], from_epoch(row[2]), row[3], row[4], row[5], from_epoch(row[6]))


class VaultContext:
    def __init__(
        self,
        home: VaultHome,
        db: Database,
        clock: Clock,
        keyring: Keyring,
        blobs: LocalBackend,
        settings: dict,
    ):
        self.home = home
        self.db = db
        self.clock = clock
        self.keyring = keyring
        self.blobs = blobs
        self.settings = settings
        self.audit = AuditLog(db, clock, keyring.vault_id, keyring=keyring, blobs=blobs)
        self._client_keys: dict[tuple[str, int], ClientKeys] = {}
        #: service mode: a shared, time-bounded cache replaces the per-command dict above
        self.client_key_cache = None
        #: set by the facade: restores a blob lost locally from the remote replica
        self.fetch_lost_blob = None
        #: set by the facade: the custody of this vault (vault.custody.service.CustodyManager)
        self.custody = None

    @property
    def vault_id(self) -> bytes:
        return self.keyring.vault_id

    def now(self) -> datetime:
        return self.clock.now()

    @staticmethod
    def load_settings(db: Database) -> dict:
        row = db.one("SELECT value FROM meta WHERE key = 'settings'")
        settings = dict(DEFAULT_SETTINGS)
        if row:
            settings.update(json.loads(row[0]))
        return settings

    # --- clients and their keys ---------------------------------------------------------------

    def client(self, name: str, conn=None) -> ClientRow:
        row = (
            (conn or self.db.conn)
            .execute(f"SELECT {CLIENT_COLUMNS} FROM clients WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no client named {name!r}")
        return client_from_row(row)

    def client_by_id(self, client_id: str, conn=None) -> ClientRow:
        row = (
            (conn or self.db.conn)
            .execute(f"SELECT {CLIENT_COLUMNS} FROM clients WHERE id = ?", (client_id,))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no client with id {client_id}")
        return client_from_row(row)

    def client_keys(self, client: ClientRow, version: int | None = None, conn=None) -> ClientKeys:
        if client.shred_state:
            # from the first shred step on, no one unwraps this client's key (SPEC 7; docs/sla.md)
            raise ClientUnavailable(f"client {client.name} is {client.shred_state}: its keys are destroyed")
        version = client.key_version if version is None else version
        shared = self.client_key_cache
        cache_key = (client.id, version)
        cached = shared.get(cache_key) if shared is not None else self._client_keys.get(cache_key)
        if cached is not None:
            return cached
        row = (
            (conn or self.db.conn)
            .execute(
                "SELECT wrapped FROM client_keys WHERE client_id = ? AND version = ?", (client.id, version)
            )
            .fetchone()
        )
        if row is None:
            if client.shred_state:
                raise ClientUnavailable(
                    f"client {client.name} is {client.shred_state}: its keys were destroyed"
                )
            raise IntegrityFailure(
                f"integrity failure: key of client {client.name} (version {version}) is missing"
            )
        key = self.keyring.unwrap_client_key(row[0], client.id, version, client.name, conn=conn)
        keys = ClientKeys(self.keyring, client.id, version, key)
        if shared is not None:
            shared.put((client.id, version), keys)
        else:
            self._client_keys[(client.id, version)] = keys
        return keys

    def forget_client_keys(self, client_id: str) -> None:
        """Drop the client's unwrapped keys and custody secrets held in memory (a shred, a rotation)."""
        for k in [k for k in self._client_keys if k[0] == client_id]:
            del self._client_keys[k]
        if self.client_key_cache is not None:
            self.client_key_cache.forget_client(client_id)
        if self.custody is not None:
            self.custody.forget(client_id)

    # --- authorization ------------------------------------------------------------------------

    def gather_facts(
        self, principal: Principal, client: ClientRow | None, now: datetime
    ) -> tuple[policy.AccountFacts | None, policy.ClientFacts | None]:
        """Read the facts the policy needs, fresh, for this one decision (one read snapshot):
        account state, roles, training, session (absolute + idle), step-up time, assignment."""
        if principal.kind != "user":
            client_facts = None
            if client is not None:
                client_facts = policy.ClientFacts(name=client.name, state=client.state(now))
            return None, client_facts
        from vault.services import identity  # the identity tables' reader

        with self.db.read() as conn:
            account, user_id, touch = identity.account_facts(conn, self.settings, principal, now)
            client_facts = None
            if client is not None:
                client_facts = identity.client_facts(conn, client, user_id, now)
        if touch:
            identity.touch_session(self.db, principal.session_id, now)
        return account, client_facts

    def authorize(
        self,
        principal: Principal,
        action: Action,
        *,
        client: ClientRow | None = None,
        detail: str | None = None,
        subject: str | None = None,
    ) -> Decision:
        """Decide, audit the decision (fail closed), and raise if denied. ``subject``: the user
        an administrative action changes (nobody may grant, train or assign themselves)."""
        now = self.now()
        account, client_facts = self.gather_facts(principal, client, now)
        decision = policy.decide(
            principal,
            action,
            now=now,
            account=account,
            client=client_facts,
            stepup_window_seconds=self.settings["stepup_window_seconds"],
            subject=subject,
        )
        sealed, key_ref = self.seal_detail(client, detail)
        self.audit.append(
            actor=principal.name,
            action=action.value,
            outcome="allow" if decision.allowed else "deny",
            client=client.name if client else None,
            reason=decision.reason,
            origin=principal.origin,
            detail_sealed=sealed,
            detail_key=key_ref,
        )
        if not decision.allowed:
            if decision.kind == "client":
                raise ClientUnavailable(f"access refused: {decision.reason}")
            if decision.kind == "stepup":
                raise StepUpRequired(decision.reason)
            raise AccessDenied(f"access denied: {decision.reason}")
        return decision

    def record_outcome(
        self,
        principal: Principal,
        action: Action,
        outcome: str,
        *,
        client: ClientRow | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Audit an event that is not an authorization decision (a result, an error)."""
        sealed, key_ref = self.seal_detail(client, detail)
        self.audit.append(
            actor=principal.name,
            action=action.value,
            outcome=outcome,
            client=client.name if client else None,
            reason=reason,
            origin=principal.origin,
            detail_sealed=sealed,
            detail_key=key_ref,
        )

    def seal_detail(self, client: ClientRow | None, detail: str | None) -> tuple[bytes | None, str | None]:
        """Client-revealing audit detail (a record path) sealed under the client's audit-detail
        key (vault.audit.details: it survives key rotation and is destroyed by the shred)."""
        if detail is None or client is None or client.shred_state:
            return None, None
        try:
            return self.audit.details.seal(client.id, client.name, detail)
        except VaultSealed:
            return None, None
