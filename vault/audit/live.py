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
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from vault import crypto
from vault.audit import stored
from vault.audit.checkpoints import Checkpoint, is_checkpoint_blob, parse_blob_name
from vault.audit.log import CHECKPOINT_COLUMNS, EVENT_COLUMNS
from vault.audit.signing import AuditSigner
from vault.audit.verify import Span, SpanMismatch, VerifyResult, verify_chain
from vault.errors import BackendError, BlobNotFound, VaultError

if TYPE_CHECKING:
    import subprocess

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
        if not crypto.constant_time_equal(public, signer.stored_public_key()) and result.ok:
            result.fail("the stored audit public key is not the vault's audit key (meta was edited)", None)
        alarm = ctx.audit.check_mark()
        if alarm is not None and (
            result.ok or result.bad_seq is None or (alarm.first_bad_seq or 0) < result.bad_seq
        ):
            result.fail(alarm.message, alarm.first_bad_seq)
        if result.ok:
            behind = _mark_behind_a_copy(ctx, external, public)
            if behind is not None:
                result.fail(*behind)
    if remote_problem:
        if complete and result.ok:
            result.fail(remote_problem, None)
        result.warnings.append(remote_problem)
    return result


def _mark_behind_a_copy(
    ctx: VaultContext, external: list[Checkpoint], public: bytes
) -> tuple[str, int] | None:
    """(problem, first bad seq) when a signed checkpoint copy outside vault.db (the blob store's
    newest, the replica's) is newer than the high-water mark's checkpoint and signs an entry the
    log still holds (review6 R6-1): every checkpoint moves the mark to itself in the transaction
    that signs it, so the mark is an older copy put back with the newer checkpoints deleted, even
    when the entries' tags were stripped too. A copy ahead of the log is the truncation check's."""
    from vault.errors import AuditAlarm, CryptoError

    try:
        mark = ctx.audit.marks.read(ctx.db.conn)
    except AuditAlarm:
        return None  # check_mark reported it
    if mark is None:
        return None
    for cp in external:
        if cp.seq <= mark.cp_seq or cp.vault_id != ctx.vault_id:
            continue
        row = ctx.db.conn.execute("SELECT entry_hash FROM audit_events WHERE seq = ?", (cp.seq,)).fetchone()
        if row is None or not stored.is_hash(row[0]) or not crypto.constant_time_equal(row[0], cp.entry_hash):
            continue
        try:
            crypto.ed25519_verify(public, cp.signature, cp.signing_input())
        except CryptoError:
            continue
        problem = (
            f"the signed checkpoint of entry {cp.seq} kept outside vault.db is newer than the audit"
            f" high-water mark's (entry {mark.cp_seq}): an older copy of the mark was put back and"
            " the newer checkpoints were deleted"
        )
        return problem, mark.cp_seq + 1
    return None


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
        result = _verify_with(conn, path, vault_id, public, external, progress, all_signatures)
    except sqlite3.OperationalError:
        if fallback is None:
            raise
        result = _verify_with(fallback, None, vault_id, public, external, progress, all_signatures)
    finally:
        conn.close()
    result.public_key = "ed25519:" + base64.b64encode(public).decode()
    return result


def _verify_with(
    conn: sqlite3.Connection,
    path,
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

        def walk(rows, tail=None) -> VerifyResult:
            return verify_chain(
                rows,
                checkpoints,
                vault_id=vault_id,
                public_key=public,
                total=total,
                progress=progress,
                overdue_warning=True,
                all_signatures=all_signatures,
                tail=tail,
            )

        helper = _SpanHelper.start(conn, path, checkpoints, total) if path is not None else None
        if helper is not None:
            try:
                head = conn.execute(
                    f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq < ? ORDER BY seq",  # noqa: S608 - a constant column list; the bound is bound
                    (helper.first,),
                )
                return walk(head, helper.result)
            except SpanMismatch:
                pass  # one walk over the whole log names the problem
            finally:
                helper.stop()
        return walk(conn.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events ORDER BY seq"))  # noqa: S608 - a constant column list; no input in the SQL
    finally:
        conn.execute("COMMIT")


#: a log of at least this many entries is verified on two cores (vault.audit.span); below it a
#: child process's start (~0.1 s) would cost more than it saves
PARALLEL_MIN = 200_000


class _SpanHelper:
    """The child process that walks the second half of the log (vault.audit.span)."""

    def __init__(self, proc: subprocess.Popen, first: int, last: int):
        self.proc, self.first, self.last = proc, first, last
        self.started = time.monotonic()

    @classmethod
    def start(
        cls, conn: sqlite3.Connection, path: str, checkpoints: list[Checkpoint], total: int
    ) -> _SpanHelper | None:
        if total < PARALLEL_MIN or (os.cpu_count() or 1) < 2:
            return None
        import subprocess

        middle = conn.execute(
            "SELECT seq FROM audit_events ORDER BY seq LIMIT 1 OFFSET ?", (total // 2,)
        ).fetchone()
        last = conn.execute("SELECT max(seq) FROM audit_events").fetchone()
        if middle is None or type(middle[0]) is not int or last is None or type(last[0]) is not int:
            return None
        first, end = middle[0], last[0]
        marks: dict[str, list[str]] = {}
        for cp in checkpoints:
            if first <= cp.seq <= end:
                marks.setdefault(str(cp.seq), []).append(cp.entry_hash.hex())
        request = json.dumps({"path": os.path.abspath(path), "first": first, "last": end, "marks": marks})
        from vault.hardening import CHILD_CWD, python_argv

        try:
            proc = subprocess.Popen(  # noqa: S603 - this interpreter, a constant program; the request goes on stdin
                python_argv(code="from vault.audit.span import main; main()"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=CHILD_CWD,
            )
        except OSError:
            return None
        helper = cls(proc, first, end)
        try:
            assert proc.stdin is not None  # noqa: S101 - stdin=PIPE
            proc.stdin.write(request.encode())
            proc.stdin.close()
            proc.stdin = None  # sent: communicate() then only reads the answer
        except OSError:
            helper.stop()
            return None
        return helper

    def result(self) -> Span | None:
        """The child's span, once it has answered (None: it failed, or found a problem)."""
        # generous: the child walks as many entries as the parent just did
        timeout = 30 + 4 * (time.monotonic() - self.started)
        import subprocess

        try:
            out, _ = self.proc.communicate(timeout=timeout)
            answer = json.loads(out)
        except (subprocess.TimeoutExpired, ValueError, OSError):
            return None
        if not isinstance(answer, dict) or answer.get("ok") is not True or self.proc.returncode != 0:
            return None
        if answer.get("first") != self.first or answer.get("last") != self.last:
            return None
        try:
            return Span(
                int(answer["first"]),
                int(answer["last"]),
                bytes.fromhex(answer["link"]),
                bytes.fromhex(answer["head"]),
                int(answer["last_mark"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stdin):
            if stream is not None:
                stream.close()
