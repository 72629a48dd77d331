"""The one audit event writer. Every operation's decision goes through :meth:`AuditLog.append`.

Each entry is hash-chained: ``entry_hash = SHA-256(prev_hash || canonical(entry))`` where
``canonical`` is the compact, key-sorted, ASCII-only JSON of the entry's fields (so control
characters in any field are escaped and no input can forge a line). The first entry's
``prev_hash`` is ``SHA-256("cvault/v1/audit-genesis" || vault_id)``.

Fail closed: any failure to write raises :class:`~vault.errors.AuditFailure`, and the caller
refuses the operation it was about to perform.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import dataclass

from vault import crypto
from vault.clock import Clock, rfc3339
from vault.errors import AuditFailure

OUTCOMES = ("allow", "deny", "ok", "error")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    client: str | None
    outcome: str
    reason: str | None
    origin: str
    detail_sealed: bytes | None
    detail_key: str | None
    prev_hash: bytes
    entry_hash: bytes

    def fields(self) -> dict:
        return {
            "seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
            "client": self.client, "outcome": self.outcome, "reason": self.reason,
            "origin": self.origin,
            "detail_sealed": _b64(self.detail_sealed), "detail_key": self.detail_key,
        }


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def canonical(fields: dict) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def chain_hash(prev_hash: bytes, fields: dict) -> bytes:
    return crypto.sha256(prev_hash + canonical(fields))


def genesis_hash(vault_id: bytes) -> bytes:
    return crypto.sha256(b"cvault/v1/audit-genesis" + vault_id)


class AuditLog:
    def __init__(self, db, clock: Clock, vault_id: bytes):
        self.db = db
        self.clock = clock
        self.vault_id = vault_id
        #: test hook point for the fail-closed tests: a callable raising to simulate a write failure
        self.fail_injector = None

    def append(self, *, actor: str, action: str, outcome: str, client: str | None = None,
               reason: str | None = None, origin: str = "cli", detail_sealed: bytes | None = None,
               detail_key: str | None = None) -> int:
        """Write one event in its own committed transaction; returns its sequence number."""
        if outcome not in OUTCOMES:
            raise ValueError(f"bad audit outcome {outcome}")
        try:
            if self.fail_injector is not None:
                self.fail_injector()
            with self.db.write() as conn:
                return self._append(conn, actor, action, outcome, client, reason, origin,
                                    detail_sealed, detail_key)
        except (sqlite3.Error, OSError) as exc:
            raise AuditFailure(f"the audit log could not be written ({type(exc).__name__}); "
                               "operation refused") from None

    def _append(self, conn, actor, action, outcome, client, reason, origin, detail_sealed,
                detail_key) -> int:
        last = conn.execute("SELECT seq, entry_hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, genesis_hash(self.vault_id))
        entry = AuditEntry(seq, rfc3339(self.clock.now()), actor, action, client, outcome, reason,
                           origin, detail_sealed, detail_key, prev, b"")
        digest = chain_hash(prev, entry.fields())
        conn.execute(
            "INSERT INTO audit_events (seq, at, actor, action, client, outcome, reason, origin,"
            " detail_sealed, detail_key, prev_hash, entry_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (seq, entry.at, actor, action, client, outcome, reason, origin, detail_sealed,
             detail_key, prev, digest),
        )
        return seq
