"""Benchmark: verifying a 1,000,000-entry audit log (target >= 200,000 entries/s).

Builds the log directly in a scratch SQLite database with the vault's schema (entries
synthesized and hash-chained, a signed checkpoint every 100 entries: 10,000 Ed25519 signatures),
then times the live verifier (``vault.audit.verify.verify_chain`` over the SQLite rows, exactly
what ``cvault audit verify`` runs) against a floor measured in the same run: a bare
``hashlib.sha256`` chain over the same entries' precomputed canonical bytes. Prints one JSON
line::

    {"name": "audit_verify", "unit": "entries/s", "median": ..., "floor": ..., "ratio": ...,
     "target": 200000, ...}

``ratio`` = floor throughput / verifier throughput (how many times slower than bare hashing).
``all_signatures`` is the throughput of ``audit verify --all-signatures`` (one run), which also
checks the signature of every checkpoint the chain matched (10,000 Ed25519 verifications).
The checkpoints are chained as the vault writes them (each signs the previous one's digest,
docs/audit.md section 3), so the checkpoint-chain walk is in the timed verifier.

``mark_check_us`` (issue 12 item 3): what the high-water mark costs each audited operation, on a
real vault made by ``Vault.init``: the check before an append (``AuditLog._guard``: the alarm and
mark rows, two entry lookups, the newest checkpoint's digest) and moving the mark after it
(``mark_write_us``: seal and write the meta row), each timed over 2,000 calls, against the whole
append of one event (``append_us``, median of 200: its transaction and fsync are the floor the
mark adds to); ``mark_share`` = (check + write) / append. Target: tens of microseconds, under
10 % of an append.

Usage: python bench/audit_verify.py [--entries N] [--runs R]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import column_names, insert_statement
from vault import crypto
from vault.audit.checkpoints import Checkpoint, checkpoint_genesis
from vault.audit.live import verify_database
from vault.audit.log import CHECKPOINT_COLUMNS, EVENT_COLUMNS, genesis_hash
from vault.audit.verify import entry_bytes
from vault.clock import rfc3339
from vault.store.db import Database

TARGET = 200_000
ACTIONS = ["secret.get", "secret.put", "secret.list", "auth.login", "client.show", "audit.log"]


def build(db: Database, n: int, vault_id: bytes, private: bytes) -> list[bytes]:
    """Insert n chained entries and a signed checkpoint every 100; returns the canonical bytes."""
    rng = random.Random(1)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    prev = genesis_hash(vault_id)
    canon: list[bytes] = []
    rows, cps = [], []
    prev_cp = checkpoint_genesis(vault_id)
    users = [f"user{i}" for i in range(40)]
    clients = [f"client-{i}" for i in range(200)]
    for seq in range(1, n + 1):
        at = rfc3339(start + timedelta(microseconds=seq * 1_700_013))
        action = ACTIONS[seq % len(ACTIONS)]
        client = clients[rng.randrange(200)] if action.startswith("secret") else None
        sealed = os.urandom(48) if client else None
        key = f"audit:{f'{rng.getrandbits(128):032x}'}" if client else None
        outcome = "deny" if seq % 17 == 0 else "allow"
        reason = (
            "need-to-know: assigned, trained, SLA active"
            if outcome == "allow"
            else "user is not assigned to that client"
        )
        actor = users[seq % 40]
        c = entry_bytes(
            seq,
            at,
            actor,
            action,
            client,
            outcome,
            reason,
            "cli",
            None if sealed is None else base64.b64encode(sealed).decode(),
            key,
        )
        digest = hashlib.sha256(prev + c).digest()
        canon.append(c)
        rows.append((seq, at, actor, action, client, outcome, reason, "cli", sealed, key, prev, digest))
        if seq % 100 == 0:
            cp = Checkpoint(vault_id, seq, digest, at, "periodic", prev=prev_cp)
            sig = crypto.ed25519_sign(private, cp.signing_input())
            cps.append(_checkpoint_row(seq, digest, at, sig, prev_cp))
            prev_cp = cp.digest()
        prev = digest
        if len(rows) >= 50_000:
            _flush(db, rows, cps)
    _flush(db, rows, cps)
    return canon


def _checkpoint_row(seq: int, digest: bytes, at: str, signature: bytes, prev: bytes) -> tuple:
    """A periodic checkpoint's row in :data:`CHECKPOINT_COLUMNS` order: every column a later
    migration added (recovery, unproven, base_checkpoint ...) is NULL for a periodic one."""
    row = dict.fromkeys(column_names(CHECKPOINT_COLUMNS))
    row.update(seq=seq, entry_hash=digest, at=at, kind="periodic", signature=signature, prev_checkpoint=prev)
    return tuple(row.values())


def _flush(db: Database, rows: list, cps: list) -> None:
    with db.write() as conn:
        conn.executemany(insert_statement("audit_events", EVENT_COLUMNS), rows)
        conn.executemany(insert_statement("audit_checkpoints", CHECKPOINT_COLUMNS), cps)
    rows.clear()
    cps.clear()


def floor_run(canon: list[bytes], vault_id: bytes) -> float:
    sha = hashlib.sha256
    t = time.perf_counter()
    h = genesis_hash(vault_id)
    for c in canon:
        h = sha(h + c).digest()
    return time.perf_counter() - t


def verify_run(db: Database, vault_id: bytes, public: bytes, all_signatures: bool = False) -> float:
    """Exactly what ``cvault audit verify`` runs after authorizing (verify_live's core)."""
    t = time.perf_counter()
    result = verify_database(db.path, vault_id, public, all_signatures=all_signatures)
    elapsed = time.perf_counter() - t
    if not result.ok:
        raise SystemExit(f"benchmark log failed to verify: {result.problem}")
    return elapsed


def mark_check(base: Path, calls: int = 2000, appends: int = 200) -> dict:
    """Microseconds of the high-water-mark check per append, and of one whole append."""
    from vault.facade import Vault

    vault, _ = Vault.init(base / "vault", key_file=base / "key")
    log = vault.ctx.audit
    try:
        append_times = []
        for _ in range(appends):
            t = time.perf_counter()
            log.append(actor="bench", action="secret.get", outcome="allow", reason="bench")
            append_times.append(time.perf_counter() - t)
        with vault.ctx.db.read() as conn:
            guard = log._guard(conn, ["secret.get"])
            assert guard.sign and guard.mark is not None, "the bench vault has no mark"
            t = time.perf_counter()
            for _ in range(calls):
                log._guard(conn, ["secret.get"])
            check = (time.perf_counter() - t) / calls
        with vault.ctx.db.write() as conn:  # moving the mark: sealed and written once per commit
            mark = guard.mark
            t = time.perf_counter()
            for i in range(calls):
                log.marks.write(conn, mark._replace(head_seq=mark.head_seq + 1 + i % 2))
            move = (time.perf_counter() - t) / calls
            log.marks.write(conn, mark)
    finally:
        vault.close()
    append = statistics.median(append_times)
    return {
        "mark_check_us": round(check * 1e6, 1),
        "mark_write_us": round(move * 1e6, 1),
        "append_us": round(append * 1e6, 1),
        "mark_share": round((check + move) / append, 4),
        "mark_meets_target": (check + move) / append < 0.1,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    n = args.entries
    vault_id = os.urandom(16)
    private, public = crypto.ed25519_generate()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "vault.db", create=True)
        db.migrate()
        t = time.perf_counter()
        canon = build(db, n, vault_id, private)
        build_s = time.perf_counter() - t
        verify_times, floor_times = [], []
        for _ in range(args.runs):
            floor_times.append(floor_run(canon, vault_id))
            verify_times.append(verify_run(db, vault_id, public))
        strict = verify_run(db, vault_id, public, all_signatures=True)  # --all-signatures, once
        db.close()
        marks = mark_check(Path(tmp))
    median = n / statistics.median(verify_times)
    floor = n / statistics.median(floor_times)
    print(
        json.dumps(
            {
                "name": "audit_verify",
                "unit": "entries/s",
                "entries": n,
                "checkpoints": n // 100,
                "median": round(median),
                "floor": round(floor),
                "ratio": round(floor / median, 2),
                "target": TARGET,
                "meets_target": median >= TARGET,
                "runs": args.runs,
                "build_seconds": round(build_s, 1),
                "all_signatures": round(n / strict),  # every checkpoint signature checked (one run)
                "floor_is": "bare hashlib.sha256 chain over the same precomputed canonical bytes",
                **marks,
            }
        )
    )


if __name__ == "__main__":
    main()
