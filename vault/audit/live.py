"""Verification of the vault's own audit log (``audit verify``, ``audit prune``, ``doctor``).

The chain itself is checked by :mod:`vault.audit.verify` (which also verifies exports offline);
this module reads the live database in one snapshot and adds the newest checkpoint copy of the
blob store and, when one is configured, of the OneDrive replica, which catch a tail cut together
with the checkpoint rows (the replica also a whole-folder rollback: docs/security.md). Unsealed,
the high-water mark is checked as well (vault/audit/mark.py).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from vault import crypto
from vault.audit.checkpoints import Checkpoint, is_checkpoint_blob, parse_blob_name
from vault.audit.log import CHECKPOINT_COLUMNS, EVENT_COLUMNS
from vault.audit.signing import AuditSigner
from vault.audit.verify import VerifyResult, verify_chain
from vault.errors import BackendError, BlobNotFound, VaultError

if TYPE_CHECKING:
    from vault.context import VaultContext

Progress = Callable[[int, int], None]


def latest_backend_checkpoint(ctx: VaultContext, backend=None, listing=None) -> Checkpoint | None:
    """The newest checkpoint copy in the blob store (or in ``backend``: the replica, whose
    ``listing`` may be given), or None."""
    return next(backend_checkpoints(ctx, backend, listing), None)


def backend_checkpoints(ctx: VaultContext, backend=None, listing=None) -> Iterator[Checkpoint]:
    """The checkpoint copies in the blob store (or in ``backend``), newest first; a copy that
    does not parse is skipped (the next older one counts)."""
    store = ctx.blobs if backend is None else backend
    try:
        names = [
            (parse_blob_name(n), n)
            for n in (store.list() if listing is None else listing)
            if is_checkpoint_blob(n)
        ]
    except BackendError:
        return
    for _, name in sorted((s, n) for s, n in names if s is not None)[::-1]:
        try:
            yield Checkpoint.from_dict(json.loads(store.get(name)))
        except (BlobNotFound, BackendError, ValueError):
            continue


def replica_checkpoint(ctx: VaultContext) -> tuple[Checkpoint | None, str | None]:
    """(newest checkpoint copy on the replica, None) when one is configured; (None, why) when it
    cannot be read; (None, None) without a replica."""
    hook = ctx.audit.remote
    try:
        remote = hook() if hook is not None else None
    except VaultError as exc:
        return None, f"the replica's checkpoint copies could not be read ({exc.code})"
    if remote is None:
        return None, None
    try:
        names = list(remote.list())  # a lazy listing fails here, not silently as "no copy"
    except VaultError as exc:
        return None, f"the replica's checkpoint copies could not be read ({exc.code})"
    return latest_backend_checkpoint(ctx, remote, names), None


def verify_live(
    ctx: VaultContext,
    progress: Progress | None = None,
    *,
    all_signatures: bool = False,
    complete: bool = False,
) -> VerifyResult:
    """Verify the vault's own log (no authorization: the callers have done it). ``complete``
    (``cvault upgrade``, before a vault's first mark): every blob-store copy, not only the
    newest, and a replica that is configured but cannot be read fails verification."""
    # the copies are read before the entries: they never run ahead of what was committed
    if complete:
        external = list(backend_checkpoints(ctx))
    else:
        external = [cp for cp in (latest_backend_checkpoint(ctx),) if cp is not None]
    remote_cp, remote_problem = replica_checkpoint(ctx)
    if remote_cp is not None:
        external.append(remote_cp)
    signer = AuditSigner(ctx.db, ctx.keyring)
    # unsealed: the key derived from the sealed private key, never the clear copy alone
    public = signer.trusted_public_key()[0]
    result = verify_database(
        ctx.db.path,
        ctx.vault_id,
        public,
        external=external,
        progress=progress,
        all_signatures=all_signatures,
        fallback=ctx.db.conn,
    )
    if ctx.keyring.unsealed:
        if not crypto.constant_time_equal(public, signer.public_key()) and result.ok:
            result.fail("the stored audit public key is not the vault's audit key (meta was edited)", None)
        alarm = ctx.audit.check_mark()
        if alarm is not None and (
            result.ok or result.bad_seq is None or (alarm.first_bad_seq or 0) < result.bad_seq
        ):
            result.fail(alarm.message, alarm.first_bad_seq)
    if remote_problem:
        if complete and result.ok:
            result.fail(remote_problem, None)
        result.warnings.append(remote_problem)
    return result


def verify_database(
    path,
    vault_id: bytes,
    public: bytes,
    *,
    external: list[Checkpoint] | None = None,
    progress: Progress | None = None,
    all_signatures: bool = False,
    fallback: sqlite3.Connection | None = None,
) -> VerifyResult:
    """Verify the log in the SQLite file at ``path`` in one read snapshot.

    Reads through its own connection with SQLite's own UTF-8 decoding (the vault connection's
    lenient text factory is a Python call per column: a third of the time on a large log); if a
    row's text does not decode, the ``fallback`` (lenient) connection re-reads and reports it."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA cache_size=-32768")  # 32 MiB: one sequential pass over a large log
        result = _verify_with(conn, vault_id, public, external, progress, all_signatures)
    except sqlite3.OperationalError:
        if fallback is None:
            raise
        result = _verify_with(fallback, vault_id, public, external, progress, all_signatures)
    finally:
        conn.close()
    result.public_key = "ed25519:" + base64.b64encode(public).decode()
    return result


def _verify_with(
    conn: sqlite3.Connection,
    vault_id: bytes,
    public: bytes,
    external: list[Checkpoint] | None,
    progress: Progress | None,
    all_signatures: bool,
) -> VerifyResult:
    conn.execute("BEGIN")  # one snapshot for the checkpoints and the entries
    try:
        checkpoints = [
            Checkpoint.from_row(vault_id, r)
            for r in conn.execute(f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq, id")  # noqa: S608 - a constant column list; no input in the SQL
        ]
        checkpoints.extend(external or ())
        total = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
        rows = conn.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events ORDER BY seq")  # noqa: S608 - a constant column list; no input in the SQL
        return verify_chain(
            rows,
            checkpoints,
            vault_id=vault_id,
            public_key=public,
            total=total,
            progress=progress,
            overdue_warning=True,
            all_signatures=all_signatures,
        )
    finally:
        conn.execute("COMMIT")
