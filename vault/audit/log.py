"""The one audit event writer. Every operation's decision goes through :meth:`AuditLog.append`.

Each entry is hash-chained: ``entry_hash = SHA-256(prev_hash || canonical(entry))`` where
``canonical`` is the compact, key-sorted, ASCII-only JSON of the entry's fields (so control
characters in any field are escaped and no input can forge a line). The first entry's
``prev_hash`` is ``SHA-256("cvault/v1/audit-genesis" || vault_id)``.

Checkpoints (docs/audit.md section 3): inside the same transaction as an append, whenever 100 or
more entries have been written since the last checkpoint and the vault is unsealed, the head is
signed with the vault's Ed25519 audit key and stored in ``audit_checkpoints``; after the commit a
copy is put in the blob store (``audit-checkpoint-<seq>``) and queued for the remote replica.
:meth:`AuditLog.checkpoint` does the same on demand (SLA sweeps and shreds, exports).

Fail closed: any failure to write the event raises :class:`~vault.errors.AuditFailure`, and the
caller refuses the operation it was about to perform.

Group commit (service mode, :class:`GroupCommit`): concurrent requests' events share one write
transaction and one fsync; each ``append`` still returns only after a commit that contains its own
event (docs/architecture.md, "Audit group commit").
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from vault import crypto
from vault.audit import mark as hwm
from vault.audit import stored
from vault.audit.checkpoints import Checkpoint, checkpoint_genesis
from vault.clock import Clock, rfc3339, to_epoch
from vault.errors import (
    AuditAlarm,
    AuditFailure,
    BackendError,
    IntegrityFailure,
    StorageFull,
    StorageReadOnly,
    VaultError,
    VaultSealed,
)
from vault.policy import AuditEvent
from vault.tuples import NamedTuple

if TYPE_CHECKING:
    from vault.backends.base import Backend
    from vault.keys import Keyring
    from vault.store.db import Database

OUTCOMES = ("allow", "deny", "ok", "error")

#: write a signed checkpoint at least every this many entries (docs/spec.md §9)
CHECKPOINT_EVERY = 100

EVENT_COLUMNS = (
    "seq, at, actor, action, client, outcome, reason, origin, detail_sealed,"
    " detail_key, prev_hash, entry_hash"
)
CHECKPOINT_COLUMNS = (
    "seq, entry_hash, at, kind, base_seq, base_hash, signature, prev_checkpoint, recovery, unproven,"
    " base_checkpoint"
)


class AuditEntry(NamedTuple):
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
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "client": self.client,
            "outcome": self.outcome,
            "reason": self.reason,
            "origin": self.origin,
            "detail_sealed": _b64(self.detail_sealed),
            "detail_key": self.detail_key,
        }


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def canonical(fields: dict) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def chain_hash(prev_hash: bytes, fields: dict) -> bytes:
    return crypto.sha256(prev_hash + canonical(fields))


def genesis_hash(vault_id: bytes) -> bytes:
    return crypto.sha256(b"cvault/v1/audit-genesis" + vault_id)


class _Waiting:
    __slots__ = ("done", "error", "event", "seq", "wake")

    def __init__(self, event: tuple):
        self.event = event
        self.done = False
        self.seq = 0
        self.error: BaseException | None = None
        #: set once: when this event's batch is committed (``done``), or when this waiter is
        #: handed the lead of the next batch
        self.wake = threading.Event()


class GroupCommit:
    """Leader/follower group commit of audit events for one process (the service's pool).

    A request's ``append`` queues its event. If no batch is being written, it becomes the leader:
    it takes every queued event (up to ``max_batch``), writes them in one transaction on its own
    connection (one commit, one fsync: ``synchronous=FULL``), then wakes exactly the requests of
    that batch, each on its own event (no herd: a waiter whose event is still queued sleeps on),
    and hands the lead to the oldest request still queued, whose batch starts with its own event.
    Every ``append`` returns only after the commit that holds its own event, or raises the
    batch's AuditFailure: fail closed is per event, as without batching.

    Invariant: the queue is never left non-empty without a leader (``_leading``), so no event
    waits for a commit nobody is making.
    """

    def __init__(self, max_batch: int = 256):
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._leading = False
        self.batches = 0  # for tests and the benchmark: commits made
        self.events = 0

    def append(self, log: AuditLog, event: tuple) -> int:
        me = _Waiting(event)
        with self._lock:
            self._queue.append(me)
            lead = not self._leading
            self._leading = True
        if not lead:
            me.wake.wait()
            if me.done:
                return self._result(me)
            # handed the lead: the queue starts with this event
        with self._lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        try:
            self._write(log, batch)
        finally:
            with self._lock:
                for w in batch:
                    w.done = True
                self.batches += 1
                self.events += len(batch)
                successor = self._queue[0] if self._queue else None
                self._leading = successor is not None
            for w in batch:
                w.wake.set()
            if successor is not None:
                successor.wake.set()
        return self._result(me)

    @staticmethod
    def _write(log: AuditLog, batch: list[_Waiting]) -> None:
        try:
            try:
                seqs = log.append_batch([w.event for w in batch])
                for w, seq in zip(batch, seqs, strict=True):
                    w.seq = seq
            except AuditAlarm:
                if len(batch) == 1:
                    raise
                # an alarm refuses each event on its own: the exempt ones (signing in, the
                # operator's audit log, verify, doctor, recover) are still written
                for w in batch:
                    try:
                        w.seq = log.append_batch([w.event])[0]
                    except BaseException as exc:  # noqa: BLE001 - this waiter's own failure
                        w.error = exc
        except BaseException as exc:  # noqa: BLE001 - every waiter of the batch gets the failure
            for w in batch:
                w.error = exc

    @staticmethod
    def _result(w: _Waiting) -> int:
        if w.error is not None:
            raise w.error
        return w.seq


class _Guard(NamedTuple):
    """What the mark check of one write transaction decided (:meth:`AuditLog._guard`)."""

    sign: bool  # checkpoints may be signed and the mark moved
    mark: hwm.Mark | None  # the mark the log extends (None: a vault from before the mark)
    #: the first mark of a vault from before the mark (cvault upgrade): the entries its older
    #: cvault wrote after its newest checkpoint, (first, last), which that checkpoint signs as
    #: unproven; None: there are none
    unproven: tuple[int, int] | None = None


_NO_SIGNING = _Guard(False, None)


class AuditLog:
    """The writer. While the keyring is sealed no checkpoint is signed (the next append that
    finds the vault unsealed catches up); each checkpoint is also copied to ``blobs``.

    Unsealed, every write transaction first checks the high-water mark (vault/audit/mark.py)
    and moves it forward in the same transaction."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        vault_id: bytes,
        *,
        keyring: Keyring,
        blobs: Backend,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ):
        self.db = db
        self.clock = clock
        self.vault_id = vault_id
        self.keyring = keyring
        self.blobs = blobs
        self.checkpoint_every = checkpoint_every
        #: test hook point for the fail-closed tests: a callable raising to simulate a write failure
        self.fail_injector: Callable[[], None] | None = None
        #: shared by every connection of one process to this vault (the service's pool), or None
        self.group: GroupCommit | None = None
        #: the OneDrive replica when one is configured, or None (set by the facade): a CLI process
        #: pushes each checkpoint copy at once; the service's outbox job pushes them
        self.remote: Callable[[], Backend | None] | None = None
        self.marks = hwm.MarkStore(keyring)
        #: set only by ``cvault upgrade`` (VaultContext.upgrade_format) once it has verified the
        #: whole log: the head it verified (seq, entry_hash) and the last entry a signed
        #: checkpoint (a row or a copy) proved. A vault whose audit key is from before the mark
        #: gets its first mark at the next append, over that head and nothing else (review S4),
        #: never silently otherwise
        self.first_mark_over: tuple[int, bytes, int] | None = None
        #: set only by ``Vault.init`` until its signed empty log exists: the one time appends run
        #: before the vault has an audit key (a vault without one later had it deleted: review R5)
        self.initializing = False
        from vault.audit.details import DetailKeys

        self.details = DetailKeys(db, keyring, clock)

    # --- events -----------------------------------------------------------------------------------

    def append(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        client: str | None = None,
        reason: str | None = None,
        origin: str = "cli",
        detail_sealed: bytes | None = None,
        detail_key: str | None = None,
    ) -> int:
        """Write one event in its own committed transaction; returns its sequence number."""
        if outcome not in OUTCOMES:
            raise ValueError(f"bad audit outcome {outcome}")
        event = (actor, action, outcome, client, reason, origin, detail_sealed, detail_key)
        if self.group is not None and not self.db.conn.in_transaction:
            return self.group.append(self, event)
        return self.append_batch([event])[0]

    def append_batch(self, events: list[tuple]) -> list[int]:
        """Write ``events`` (``append``'s fields, in order) in one committed transaction; their
        sequence numbers. Raises AuditFailure (nothing written) if the transaction fails, and
        AuditAlarm (nothing written) if the log does not extend its high-water mark."""
        checkpoints: list[Checkpoint] = []
        try:
            if self.fail_injector is not None:
                self.fail_injector()
            with self.db.write() as conn:
                guard = self._guard(conn, [event[1] for event in events])
                seqs = []
                seq, digest = 0, b""
                last: tuple[int, bytes] | None = None  # the batch's newest entry: no re-read
                signed = None  # the newest checkpoint's seq, read once per batch
                for event in events:
                    seq, digest = self._append(conn, *event, last=last, tag=guard.sign)
                    last = (seq, digest)
                    seqs.append(seq)
                    checkpoint, signed = self._periodic_checkpoint(conn, seq, digest, guard, signed)
                    if checkpoint is not None:
                        checkpoints.append(checkpoint)
                        guard = guard._replace(mark=self.marks.read(conn))
                self._advance(
                    conn, guard, seq, digest, checkpoints, origin=events[-1][5] if events else "cli"
                )
        except AuditAlarm as exc:
            self._record_alarm(exc)
            raise
        except (StorageFull, StorageReadOnly) as exc:
            # say exactly why (exit 9): the audit rule needs this write before anything runs
            action = ", ".join(sorted({event[1] for event in events}))
            if isinstance(exc, StorageFull):
                raise StorageFull(
                    f"no space left on the vault's storage: the audit event of {action} cannot be "
                    "written, so the operation was refused; nothing was changed (free space and retry)"
                ) from None
            raise StorageReadOnly(
                f"the vault's storage is read-only: the audit event of {action} must be written "
                "before it runs, so it was refused; nothing was changed (copy the vault folder to "
                "writable storage to use it)"
            ) from None
        except (sqlite3.Error, OSError) as exc:
            raise AuditFailure(
                f"the audit log could not be written ({type(exc).__name__}); operation refused"
            ) from None
        self._copy_all(checkpoints)
        return seqs

    def append_many(self, events: list[dict]) -> list[int]:
        """Write several events (each the keyword arguments of :meth:`append`) in one committed
        transaction, chained in order: one decision per client of a search, one fsync."""
        for event in events:
            if event["outcome"] not in OUTCOMES:
                raise ValueError(f"bad audit outcome {event['outcome']}")
        return self.append_batch(
            [
                (
                    e["actor"],
                    e["action"],
                    e["outcome"],
                    e.get("client"),
                    e.get("reason"),
                    e.get("origin", "cli"),
                    e.get("detail_sealed"),
                    e.get("detail_key"),
                )
                for e in events
            ]
        )

    def _copy_all(self, checkpoints: list[Checkpoint]) -> None:
        for checkpoint in checkpoints:
            # the signed row is in the table; the next checkpoint is copied again
            with contextlib.suppress(BackendError, sqlite3.Error, OSError):
                self._copy_to_backend(checkpoint)

    # --- the high-water mark (vault/audit/mark.py) -----------------------------------------------

    def _guard(self, conn, actions: list[str]) -> _Guard:
        """Inside the write transaction, before anything is appended: may this transaction sign
        and move the mark? Raises AuditAlarm when the log does not extend the mark (or an alarm
        is raised already), unless every action is one of :data:`vault.audit.mark.ALARM_EXEMPT`:
        those are written, unsigned, and the alarm is recorded in the same transaction."""
        exempt = bool(actions) and all(hwm.is_exempt(a) for a in actions)
        sealed_mark, raw_alarm = self.marks.rows(conn)
        raised = hwm.read_alarm(conn, raw_alarm)
        if raised is not None:
            found = None
            if raised["authentic"] is False and self._can_sign():
                # a planted or damaged alarm row (review R6): the break the log really has, if
                # any, replaces it (stored below, MACed), so the number to acknowledge is stable
                found = self.find_break_now(conn)
            if found is None:
                if exempt:
                    return _NO_SIGNING
                raise AuditAlarm(raised["message"], raised["first_bad_seq"])
            if not exempt:
                raise found
            hwm.store_alarm(conn, found, getattr(found, "problem", ""))
            return _NO_SIGNING
        if not self._can_sign():
            return _NO_SIGNING
        try:
            mark = self.marks.read(conn, sealed_mark, fetch=False)
            if mark is None:
                from vault.audit.signing import AuditSigner

                marked = AuditSigner(self.db, self.keyring).marked(conn)
                if marked is None:
                    if not self.initializing:  # the key rows were deleted (review R5)
                        raise hwm._alarm("the audit key is missing from vault.db", self._chain_start(conn)[0])
                    return _NO_SIGNING  # inside init, before the audit key exists
                if not marked:
                    if self.first_mark_over is not None:
                        # cvault upgrade: the first mark at this append, over the log it verified
                        return _Guard(True, None, self._unproven_before_mark(conn))
                    # a legacy-sealed key is a vault from before the mark, or an older copy of the
                    # key row put back (review R5): only the operator's explicit upgrade decides
                    from vault.errors import UpgradeRequired

                    raise UpgradeRequired(
                        "vault sealed: this vault's audit key is from before the audit high-water"
                        " mark (an older cvault, or an older copy of the key row put back); an"
                        " operator checks the vault and runs 'cvault upgrade' (docs/format.md, \"Upgrades\")"
                    )
                first = self._chain_start(conn)[0]
                raise hwm._alarm("the audit high-water mark is missing from vault.db", first)
            alarm = hwm.find_break(
                conn,
                self.vault_id,
                mark,
                lambda: self._start(conn),
                self.marks.newest_digest(conn, self.vault_id),
                self.keyring.audit_entry_tag,
            )
            if alarm is not None:
                raise alarm
        except AuditAlarm as alarm:
            if not exempt:
                raise
            hwm.store_alarm(conn, alarm, getattr(alarm, "problem", ""))
            return _NO_SIGNING
        return _Guard(True, mark)

    def _unproven_before_mark(self, conn) -> tuple[int, int] | None:
        """Inside the transaction of a vault's first mark (``cvault upgrade``): the head must still
        be the one the upgrade verified (else an integrity failure: the log changed in between,
        e.g. a file writer appended); returns
        the entries after the newest old checkpoint that matched (its row or a copy) up to that
        head, which no signature proves (review S4), or None when that checkpoint is the head."""
        verified = self.first_mark_over
        assert verified is not None  # noqa: S101 - only called when set
        verified_seq, verified_hash, signed = verified
        head_seq, head_hash = self.head(conn)
        if head_seq != verified_seq or not crypto.constant_time_equal(head_hash, verified_hash):
            # nothing is signed (the transaction rolls back); no alarm is stored: the next
            # cvault upgrade verifies the log as it is then
            raise IntegrityFailure(
                f"integrity failure: the audit log changed after cvault upgrade verified it (its head"
                f" was entry {verified_seq}, now {head_seq}); nothing signed: run cvault upgrade again"
            )
        first = max(self._chain_start(conn)[0], signed + 1)
        return (first, head_seq) if first <= head_seq else None

    def record_alarm(self, alarm: AuditAlarm) -> None:
        """After a transaction that raised ``alarm`` rolled back (``user add``'s chain proof):
        record it, so ``audit recover`` can acknowledge it."""
        self._record_alarm(alarm)

    def _record_alarm(self, alarm: AuditAlarm) -> None:
        """The transaction that found the break was rolled back: record the alarm on its own."""
        with contextlib.suppress(sqlite3.Error, OSError, VaultError), self.db.write() as conn:
            hwm.store_alarm(conn, alarm, getattr(alarm, "problem", ""))

    def _advance(
        self,
        conn,
        guard: _Guard,
        seq: int,
        digest: bytes,
        checkpoints: list[Checkpoint],
        *,
        origin: str = "cli",
    ) -> None:
        """After this transaction's appends: move the mark's head (a vault from before the mark
        gets its first checkpoint and mark here). ``origin``: of the transaction's last event."""
        if not guard.sign or not seq:
            return
        if guard.mark is None:
            checkpoints.append(self._write_checkpoint(conn, seq, digest, "manual", guard=guard))
            return
        mark = self._with_facts(conn, guard.mark._replace(head_seq=seq, head_hash=digest))
        if (mark.coverage, mark.flags) != (guard.mark.coverage, guard.mark.flags):
            # a one-way fact rose (at most twice in a vault's life): signed at once, so every
            # older mark names a checkpoint that is no longer the newest, which find_break
            # refuses; an older copy of the mark put back cannot lower the fact (review5 R5-6)
            if mark.bootstrap_closed and not guard.mark.bootstrap_closed:
                # and in the hash chain: an entry no file writer removes without rebuilding the
                # chain after it (vault.identity.facts.bootstrap_open reads it; review6 R6-1)
                seq, digest = self._append(
                    conn,
                    "cvault",
                    AuditEvent.INTEGRITY_BOOTSTRAP_CLOSED.value,
                    "ok",
                    None,
                    "two enrolled admins: the bootstrap window is closed",
                    origin,
                    None,
                    None,
                    last=(seq, digest),
                    tag=True,
                )
            checkpoints.append(self._write_checkpoint(conn, seq, digest, "manual", guard=guard))
            return
        if mark != guard.mark:
            self.marks.write(conn, mark)

    def bootstrap_closed(self, conn) -> bool:
        """The mark's one-way fact that the vault had two enrolled admins (review4 R4-6). A mark
        that fails authentication raises the alarm (fail closed); no mark yet: False."""
        mark = self.marks.read(conn)
        return mark is not None and mark.bootstrap_closed

    def chain_proven(self, conn) -> bool:
        """Before a bootstrap step (vault.identity.facts.bootstrap_open asks only when every row
        says the window is open: a new vault's short log; review7 R7-3): re-hash the whole chain,
        every entry from its columns, every link and sequence number (the verifier's walk,
        vault.audit.verify.walk_entries), after the mark checks of the guard, which compare the
        stored hashes at the sealed mark's checkpoint and head with the mark. Together: the entries
        up to the mark's head are the ones the mark sealed, so an edited or deleted
        ``integrity.bootstrap_closed`` entry shows. True: the log proves itself; False: the first
        bad entry lies in a range an ``audit recover`` acknowledged (its entries prove nothing: the
        window stays closed). Any other break raises the integrity alarm (exit 6)."""
        from vault.audit.verify import VerifyResult, WalkState, walk_entries

        found = self.find_break_now(conn, segment=False)
        if found is not None:
            raise found
        first, prev = self._proven_chain_start(conn)
        rows = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq >= ? ORDER BY seq",  # noqa: S608 - a constant column list; values are bound
            (first,),
        )
        result = VerifyResult()
        walked = walk_entries(
            rows, result, {}, [-1], WalkState(first, prev, first - 1, 0),
            lambda cp: False, lambda: result, lambda done, total: None, -1, -1, first - 1, None,
        )  # fmt: skip
        if not isinstance(walked, VerifyResult):
            return True
        bad = result.bad_seq or first
        for cp in self.checkpoints(conn):
            if cp.recovery is not None and int(cp.recovery.get("first_bad_seq", cp.seq + 1)) <= bad <= cp.seq:
                return False
        raise hwm._alarm(result.problem or f"entry {bad} was modified", bad)

    def _proven_chain_start(self, conn) -> tuple[int, bytes]:
        """review8 R8-1: the chain start of :meth:`chain_proven` and of the mark check
        (:func:`vault.audit.mark.find_break`) only from a prune checkpoint whose signature
        verifies under the audit key (a file writer's unsigned row would move the start past
        every entry, or stand in for the entries up to the mark's checkpoint he deleted); else
        the integrity alarm. The key is the one derived from the sealed private key, never the
        clear copy in ``meta`` (a file writer who replaces that signs his own prune row)."""
        row = conn.execute(
            f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE kind = 'prune'"  # noqa: S608 - a constant column list
            " ORDER BY base_seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return 1, genesis_hash(self.vault_id)
        from vault.audit.signing import AuditSigner
        from vault.errors import CryptoError

        cp, base_seq, base_hash = self._prune_base(row)
        # the key derived from the sealed private key, never the clear copy in meta, which a file
        # writer replaces with his own to sign the planted row (review9 R9-6)
        public, trusted = AuditSigner(self.db, self.keyring).trusted_public_key()
        try:
            if not trusted:  # sealed: nothing to check the signature against
                raise CryptoError("the audit key is sealed")
            crypto.ed25519_verify(public, cp.signature, cp.signing_input())
        except CryptoError:
            raise hwm._alarm(f"prune checkpoint {cp.seq} is not signed by the audit key", 1) from None
        return base_seq + 1, base_hash

    def migration_recorded(self, conn) -> bool:
        """The mark's one-way fact that the vault was migrated from before custody (markfix).
        Sealed (no audit key to read the mark with): False; an unreadable mark: the alarm."""
        if not self.keyring.unsealed:
            return False
        mark = self.marks.read(conn)
        return mark is not None and bool(mark.flags & hwm.MIGRATED)

    @staticmethod
    def _with_facts(conn, mark: hwm.Mark) -> hwm.Mark:
        """``mark`` with its one-way facts raised to what the vault's authentic rows show now
        (review4 R4-1, R4-6): the row-MAC marker's coverage, and whether the MACed ``two_admins``
        row exists, and whether the MACed custody rows do (markfix). Nothing is read once final. A
        row failing its MAC raises nothing (the mark keeps what it had; whoever reads it refuses it)."""
        from vault.errors import VaultSealed
        from vault.identity.facts import TWO_ADMINS
        from vault.store import rowmac

        if mark.saturated(rowmac.COVERAGE):
            return mark
        coverage, closed, flags = 0, False, 0
        facts = {"custody_format": hwm.CUSTODY, "custody_migrated_at": hwm.MIGRATED}
        for key, value, tag in conn.execute(
            "SELECT key, value, mac FROM meta WHERE key IN (?, ?, ?, ?)", (rowmac.MARKER, TWO_ADMINS, *facts)
        ).fetchall():
            try:
                rowmac.check(conn, "meta", (key, value), tag)
            except (rowmac.RowTampered, VaultSealed):
                continue
            if key == rowmac.MARKER and type(value) is int and 1 <= value <= rowmac.COVERAGE:
                coverage = value
            elif key == TWO_ADMINS:
                closed = True
            elif key in facts:
                flags |= facts[key]
        return mark.with_facts(coverage, closed, flags)

    def _start(self, conn) -> tuple[int, bytes]:
        """The mark check's chain start (unsealed): only from a signed prune (review8 R8-1)."""
        seq, prev = self._proven_chain_start(conn)
        return seq - 1, prev

    def _newest_link(self, conn) -> bytes:
        """The ``prev`` of a recovery: the digest of the last checkpoint in the verifier's order
        (seq, then creation), or the genesis link when none is left."""
        row = conn.execute(
            f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq DESC, id DESC LIMIT 1"  # noqa: S608 - a constant column list
        ).fetchone()
        if row is None:
            return checkpoint_genesis(self.vault_id)
        return Checkpoint.from_row(self.vault_id, row).digest()

    def _newest_checkpoint(self, conn) -> Checkpoint | None:
        row = conn.execute(
            f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY id DESC LIMIT 1"  # noqa: S608 - a constant column list
        ).fetchone()
        return None if row is None else Checkpoint.from_row(self.vault_id, row)

    def alarm(self) -> dict | None:
        """The raised integrity alarm, or None."""
        return hwm.read_alarm(self.db.conn)

    def check_mark(self, conn=None) -> AuditAlarm | None:
        """For ``audit verify`` and ``doctor`` (unsealed): the raised alarm, or the break the
        mark check finds now, or None. Writes nothing."""
        conn = conn or self.db.conn
        raised = hwm.read_alarm(conn)
        if raised is not None:
            if raised["authentic"] is False and self._can_sign():
                # a planted or damaged alarm row: name the break the log really has, if any
                found = self.find_break_now(conn)
                if found is not None:
                    return found
            return AuditAlarm(raised["message"], raised["first_bad_seq"])
        if not self._can_sign():
            return None
        return self.find_break_now(conn, segment=False)

    def find_break_now(self, conn, *, segment: bool = True) -> AuditAlarm | None:
        """The break the log has now, ignoring any recorded alarm (unsealed), or None: the mark
        checks of the guard and, with ``segment``, the re-hash of the entries after the mark's
        checkpoint that signing does (``audit recover`` signs this, never the stored row)."""
        try:
            mark = self.marks.read(conn)
            if mark is None:
                from vault.audit.signing import AuditSigner

                marked = AuditSigner(self.db, self.keyring).marked(conn)
                if marked is None and self.has_history(conn):
                    return hwm._alarm("the audit key is missing from vault.db", self._chain_start(conn)[0])
                if not marked:
                    return None
                return hwm._alarm(
                    "the audit high-water mark is missing from vault.db", self._chain_start(conn)[0]
                )
            found = hwm.find_break(
                conn,
                self.vault_id,
                mark,
                lambda: self._start(conn),
                self.marks.newest_digest(conn, self.vault_id),
                self.keyring.audit_entry_tag,
            )
            if found is None and segment:
                found = hwm.check_segment(conn, (mark.cp_seq, mark.cp_entry_hash), self.head(conn)[0])
            return found
        except AuditAlarm as alarm:
            return alarm

    def _append(
        self,
        conn,
        actor,
        action,
        outcome,
        client,
        reason,
        origin,
        detail_sealed,
        detail_key,
        *,
        last: tuple[int, bytes] | None = None,
        tag: bool = False,
    ) -> tuple[int, bytes]:
        """``last``: the (seq, entry_hash) this transaction wrote just before (a batch), else the
        newest row is read. ``tag``: this transaction moves the mark past the entry (``_guard``
        let it sign), so the entry gets its ``mark_tag`` (review6 R6-1; vault.audit.mark)."""
        if last is None:
            last = conn.execute(
                "SELECT seq, entry_hash FROM audit_events ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        if last:
            # recorded by append_batch, as the mark check's: a hash that is none, or a planted
            # seq no entry fits after (2**63 - 1 was exit 2 "a number is out of range")
            if not stored.is_hash(last[1]) or last[0] > stored.MAX_SEQ_BEFORE_NEXT:
                raise hwm._alarm(f"entry {last[0]} is malformed", last[0])
            seq, prev = last[0] + 1, last[1]
        else:
            seq, prev = self._chain_start(conn)
        entry = AuditEntry(
            seq,
            rfc3339(self.clock.now()),
            actor,
            action,
            client,
            outcome,
            reason,
            origin,
            detail_sealed,
            detail_key,
            prev,
            b"",
        )
        digest = chain_hash(prev, entry.fields())
        conn.execute(
            f"INSERT INTO audit_events ({EVENT_COLUMNS}, mark_tag) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608 - a constant column list; values are bound
            (
                seq,
                entry.at,
                actor,
                action,
                client,
                outcome,
                reason,
                origin,
                detail_sealed,
                detail_key,
                prev,
                digest,
                self.keyring.audit_entry_tag(seq, digest) if tag else None,
            ),
        )
        return seq, digest

    @staticmethod
    def has_history(conn) -> bool:
        """Whether the log holds any entry or checkpoint: past ``init`` (a vault without an audit
        key then had it deleted: independent review R1/R5)."""
        return (
            conn.execute("SELECT 1 FROM audit_events LIMIT 1").fetchone() is not None
            or conn.execute("SELECT 1 FROM audit_checkpoints LIMIT 1").fetchone() is not None
        )

    def _chain_start(self, conn) -> tuple[int, bytes]:
        """Where the next entry goes in an empty table: after the newest prune base, else seq 1."""
        row = conn.execute(
            f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE kind = 'prune'"  # noqa: S608 - a constant column list
            " ORDER BY base_seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return 1, genesis_hash(self.vault_id)
        _cp, base_seq, base_hash = self._prune_base(row)
        return base_seq + 1, base_hash

    def _prune_base(self, row) -> tuple[Checkpoint, int, bytes]:
        """The newest prune row (``CHECKPOINT_COLUMNS``) through the strict reader (review8 R8-4):
        its base an INTEGER from 0 to its own seq below 2**63 - 1 (the next entry's seq fits) and a
        32-byte hash. A file writer's TEXT, NULL, REAL or 2**63 - 1 is the integrity alarm (exit 6,
        one line; recorded by the transaction's guard), never arithmetic on it."""
        try:
            cp = Checkpoint.from_row(self.vault_id, row)
        except IntegrityFailure:
            cp = None
        if cp is None or cp.base_seq is None or cp.base_hash is None:
            seq = row[0] if type(row[0]) is int else "?"
            raise hwm._alarm(f"prune checkpoint {seq} is malformed", 1)
        return cp, cp.base_seq, cp.base_hash

    def head(self, conn=None) -> tuple[int, bytes]:
        """(seq, entry_hash) of the newest entry; (0, genesis hash) for an empty log."""
        conn = conn or self.db.conn
        last = conn.execute("SELECT seq, entry_hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
        if last:
            return last[0], stored.entry_hash(last[1], last[0])
        seq, prev = self._chain_start(conn)
        return seq - 1, prev

    # --- checkpoints ------------------------------------------------------------------------------

    def _can_sign(self) -> bool:
        return self.keyring.unsealed

    def _periodic_checkpoint(
        self, conn, seq: int, digest: bytes, guard: _Guard, last: int | None = None
    ) -> tuple[Checkpoint | None, int | None]:
        """The checkpoint written after entry ``seq`` (or None), and the newest checkpoint's seq
        (``last``: as returned for the previous entry of the same transaction; None reads it)."""
        if not guard.sign:
            return None, last
        if last is None:
            last = conn.execute("SELECT max(seq) FROM audit_checkpoints").fetchone()[0] or 0
        # at every multiple of checkpoint_every, and after that many unsigned entries (a sealed
        # stretch caught up)
        if seq - last < self.checkpoint_every and (seq % self.checkpoint_every or seq <= last):
            return None, last
        try:
            return self._write_checkpoint(conn, seq, digest, "periodic", guard=guard), seq
        except AuditAlarm:
            raise
        except (IntegrityFailure, VaultSealed):
            # a damaged audit key must not stop every operation; `audit verify` and `doctor`
            # report the overdue checkpoint
            return None, None

    def _write_checkpoint(
        self,
        conn,
        seq: int,
        digest: bytes,
        kind: str,
        base: tuple[int, bytes] | None = None,
        *,
        guard: _Guard,
        recovery: dict | None = None,
        base_checkpoint: bytes | None = None,
        prev: bytes | None = None,
    ) -> Checkpoint:
        """Sign (seq, digest) with the previous checkpoint's digest, and move the mark to it.
        Unless this is a recovery, the entries since the mark's checkpoint are re-hashed first:
        nothing is signed over a chain that does not extend the mark."""
        from vault.audit.signing import AuditSigner

        signer = AuditSigner(self.db, self.keyring)
        mark = guard.mark
        if mark is not None and recovery is None:
            alarm = hwm.check_segment(conn, (mark.cp_seq, mark.cp_entry_hash), seq)
            if alarm is not None:
                raise alarm
            prev = mark.cp_digest
        elif prev is not None:  # a recovery: the newest checkpoint row (recover)
            pass
        elif mark is not None:
            prev = mark.cp_digest
        else:
            newest = self._newest_checkpoint(conn)
            prev = newest.digest() if newest is not None else checkpoint_genesis(self.vault_id)
        unproven = guard.unproven if mark is None else None
        unsigned = Checkpoint(
            self.vault_id,
            seq,
            digest,
            rfc3339(self.clock.now()),
            kind,
            base[0] if base else None,
            base[1] if base else None,
            b"",
            prev,
            recovery,
            None if unproven is None else {"first_seq": unproven[0], "last_seq": unproven[1]},
            base_checkpoint,
        )
        cp = unsigned._replace(signature=signer.sign(unsigned.signing_input()))
        conn.execute(
            f"INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608 - a constant column list; values are bound
            (
                cp.seq,
                cp.entry_hash,
                cp.at,
                cp.kind,
                cp.base_seq,
                cp.base_hash,
                cp.signature,
                cp.prev,
                None if recovery is None else json.dumps(recovery, sort_keys=True),
                None if cp.unproven is None else json.dumps(cp.unproven, sort_keys=True),
                cp.base_checkpoint,
            ),
        )
        if mark is None:
            signer.reseal_marked(conn)
        head_seq, head_hash = self.head(conn)
        self.marks.write(conn, self._with_facts(conn, hwm.Mark.at_checkpoint(cp, head_seq, head_hash, mark)))
        return cp

    def _copy_to_backend(self, cp: Checkpoint) -> None:
        """Put the checkpoint in the blob store (after its commit, so a copy always refers to
        committed entries) and queue it for the remote replica; a CLI process with a replica
        configured pushes it at once (the queued row is then settled)."""
        data = cp.to_json().encode()
        self.blobs.put(cp.blob_name, data)
        with self.db.write() as conn:
            row_id = conn.execute(
                "INSERT INTO outbox (op, blob_name, queued_at) VALUES ('put', ?, ?)",
                (cp.blob_name, to_epoch(self.clock.now())),
            ).lastrowid
        if self.group is None and self.remote is not None:
            # the replica unreachable, throttling or refusing the token: the queued row stays for
            # the next `sync push` (the operation that wrote the checkpoint is not failed by it)
            with contextlib.suppress(VaultError, OSError, sqlite3.Error):
                remote = self.remote()
                if remote is not None:
                    remote.put(cp.blob_name, data)
                    with self.db.write() as conn:
                        conn.execute(
                            "DELETE FROM outbox WHERE blob_name = ? AND id <= ?", (cp.blob_name, row_id)
                        )

    def start(self) -> Checkpoint:
        """At ``init``: sign the empty log (seq 0, the genesis hash) and write the first mark."""
        with self.db.write() as conn:
            seq, digest = self.head(conn)
            cp = self._write_checkpoint(conn, seq, digest, "manual", guard=_Guard(True, None))
        self._copy_all([cp])
        return cp

    def checkpoint(self, kind: str = "manual") -> Checkpoint:
        """Sign the current head now (SLA sweeps and shreds call this; exports too).

        Idempotent: if the head already has a checkpoint, that one is returned. Needs the vault
        unsealed (the audit signing key is sealed under the root key). The blob-store copy is
        made before returning; if the store fails, the signed row is still committed and the next
        checkpoint is copied (callers such as the shred are not failed by a full disk).
        Raises AuditAlarm if the log does not extend its high-water mark."""
        if kind not in ("manual", "periodic"):
            raise ValueError(f"bad checkpoint kind {kind}")
        if not self._can_sign():
            raise VaultSealed("vault sealed: a checkpoint needs the audit signing key")
        try:
            with self.db.write() as conn:
                guard = self._guard(conn, [])
                seq, digest = self.head(conn)
                row = conn.execute(
                    f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq = ? AND kind != 'prune'"  # noqa: S608 - a constant column list; values are bound
                    " ORDER BY id DESC LIMIT 1",
                    (seq,),
                ).fetchone()
                if row is not None and row[1] == digest:
                    return Checkpoint.from_row(self.vault_id, row)
                cp = self._write_checkpoint(conn, seq, digest, kind, guard=guard)
        except AuditAlarm as exc:
            self._record_alarm(exc)
            raise
        except sqlite3.Error as exc:
            raise AuditFailure(f"the audit checkpoint could not be written ({type(exc).__name__})") from None
        self._copy_all([cp])
        return cp

    def prune_checkpoint(self, conn, base: tuple[int, bytes]) -> Checkpoint:
        """Inside the prune's transaction: sign the head together with the new chain base and the
        digest of the newest checkpoint the prune deletes (the ``prev`` the first checkpoint kept
        after the base signs: review5 R5-2)."""
        guard = self._guard(conn, [])
        if not guard.sign:
            raise VaultSealed("vault sealed: a prune checkpoint needs the audit signing key")
        seq, digest = self.head(conn)
        row = conn.execute(
            f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq <= ?"  # noqa: S608 - a constant column list; values are bound
            " ORDER BY seq DESC, id DESC LIMIT 1",
            (base[0],),
        ).fetchone()
        deleted = None if row is None else Checkpoint.from_row(self.vault_id, row).digest()
        return self._write_checkpoint(conn, seq, digest, "prune", base, guard=guard, base_checkpoint=deleted)

    def recover(self, acknowledged: int) -> tuple[Checkpoint, dict]:
        """``cvault audit recover`` (after its authorization and audit event): sign the head as a
        recovery checkpoint naming the alarm it acknowledges, restart the mark there and clear
        the alarm. The entries before stay as they are; the verifier reports the recovery."""
        from vault.errors import InvalidInput

        if not self._can_sign():
            raise VaultSealed("vault sealed: recovery signs a checkpoint with the audit key")
        with self.db.write() as conn:
            raised = hwm.read_alarm(conn)
            if raised is None:
                raise InvalidInput("no integrity alarm is raised: there is nothing to recover")
            # what is signed is the break found now, never the stored row's story (review R6): an
            # authentic record names the first bad entry (exempt appends since may have moved what
            # a fresh check sees); a record that fails its MAC names nothing, so the break found
            # now is what must be acknowledged
            found = self.find_break_now(conn)
            if raised["authentic"]:
                first, problem = raised["first_bad_seq"], raised["problem"]
                if found is not None:
                    first, problem = min(first, found.first_bad_seq or first), found.problem  # type: ignore[attr-defined]
            elif found is not None:
                first, problem = found.first_bad_seq or 1, found.problem  # type: ignore[attr-defined]
            else:
                first, problem = 1, f"{hwm.UNREADABLE}; no break found in the log at recovery"
            if acknowledged != first:
                raise InvalidInput(
                    f"--acknowledge must be the first bad entry of the break ({first}): "
                    f"{hwm.alarm_line(problem, first)}"
                )
            try:
                old = self.marks.read(conn)
            except AuditAlarm:
                old = None
            seq, digest = self.head(conn)
            recovery = {
                "first_bad_seq": first,
                "mark_seq": old.cp_seq if old is not None else 0,
                "problem": problem,
            }
            # the recovery links to the newest checkpoint the log holds now (not the mark's,
            # which the break may have deleted) and says so ("linked"): the verifier checks its
            # link like any other, so no checkpoint before it can go unnoticed (R5-2 extended)
            cp = self._write_checkpoint(
                conn,
                seq,
                digest,
                "manual",
                guard=_Guard(True, old),
                recovery={**recovery, "linked": True},
                prev=self._newest_link(conn),
            )
            conn.execute("DELETE FROM meta WHERE key = ?", (hwm.ALARM_KEY,))
        self._copy_all([cp])
        return cp, recovery

    def checkpoints(self, conn=None) -> list[Checkpoint]:
        conn = conn or self.db.conn
        return [
            Checkpoint.from_row(self.vault_id, r)
            for r in conn.execute(f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq, id")  # noqa: S608 - a constant column list; values are bound
        ]

    def copy_to_backend(self, cp: Checkpoint) -> None:
        try:
            self._copy_to_backend(cp)
        except VaultError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise AuditFailure(f"the audit checkpoint could not be copied ({type(exc).__name__})") from None
