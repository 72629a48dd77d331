"""The audit high-water mark and the integrity alarm (docs/audit.md section 3, "High-water mark").

Someone who can write ``vault.db`` but holds no unseal secret can delete the newest signed
checkpoints, their blob copies and the outbox rows, then cut or rebuild the chain (the genesis
hash needs only the vault id): the log they leave is self-consistent. The mark is what they
cannot rebuild. It is the meta row ``audit_mark``::

    seal_for("audit", mark, "audit-high-water-mark")
    mark = u64 cp_seq || cp_entry_hash || cp_digest || u64 head_seq || head_hash
           || u8 coverage || u8 flags                                            (114 bytes)

sealed under the root-derived audit purpose key: the last signed checkpoint (its sequence number,
the entry hash it signs and its digest, which the next checkpoint signs as ``prev``) and the head
of the log the last time an unsealed process appended. It is rewritten in the same transaction as
every unsealed append and every checkpoint, so it always describes a state the log had.

It also carries the vault's one-way facts (review4 R4-1, R4-6), which no row may be the only record
of, since a row can be deleted or put back from an older copy (and ``audit prune`` deletes old
events): ``coverage``, the highest row-MAC coverage the vault's authentic marker ever had, and
``flags`` bit :data:`BOOTSTRAP_CLOSED`, set once the MACed ``two_admins`` row existed. Each write
carries them forward and only raises them (:meth:`Mark.with_facts`), and the append that raises
one signs a checkpoint at once (``AuditLog._advance``), so every older copy of the mark names a
checkpoint that is no longer the newest. Those newer checkpoint rows can be deleted too (review6
R6-1), so every unsealed append also stores a root-keyed ``mark_tag`` on its entry
(:meth:`vault.keys.Keyring.audit_entry_tag`, migration 0041), in the transaction that moves the mark
past it: an entry after the mark's head with a valid tag shows the mark is an older copy put back.
Stripping the tags as well is not seen here (docs/security.md guarantee 40). A 112-byte mark
(written before these facts) reads as coverage 0, no flags, and gains them at its next write.

Before appending or signing (unsealed), :func:`find_break` checks that the log still extends the
mark: the entries at ``cp_seq`` and ``head_seq`` exist with the recorded hashes, the newest
checkpoint is the mark's, and no entry after ``head_seq`` carries a valid ``mark_tag``. Before
signing, the entries after the last checkpoint are re-hashed too (:func:`check_segment`). A break
raises :class:`~vault.errors.AuditAlarm` (exit 6, one line with the first bad sequence number) and
records the alarm in meta row ``audit_alarm``; from then on
every append is refused and nothing is signed until an admin runs ``cvault audit recover
--acknowledge N`` (:data:`ALARM_EXEMPT` are still written, unsigned: signing in, and what the
operator needs to look and recover). Deleting the alarm row does not help: the break is found again.

A missing mark row is an alarm as well when the audit key is sealed under the "marked" context
(every vault made or upgraded by this version: vault.audit.signing); only a vault from before the
mark gets its first mark, at its first unsealed append after the upgrade.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from vault import crypto
from vault.audit import stored
from vault.errors import AuditAlarm, CryptoError
from vault.keys import PURPOSE_AUDIT
from vault.tuples import NamedTuple

if TYPE_CHECKING:
    from vault.audit.checkpoints import Checkpoint
    from vault.keys import Keyring

_PACK = struct.Struct(">Q32s32sQ32s")
_PACK_FACTS = struct.Struct(">Q32s32sQ32sBB")

#: ``Mark.flags``: the vault has had two enrolled admins (the MACed ``two_admins`` row existed);
#: the bootstrap window (vault.identity.facts.bootstrap_open) never re-opens
BOOTSTRAP_CLOSED = 1
#: ``Mark.flags``: the vault's client keys are under custody (the MACed ``custody_format`` row
#: existed): a vault without the row is never migrated from before custody again (markfix)
CUSTODY = 2
#: ``Mark.flags``: the vault was migrated from before custody (the MACed ``custody_migrated_at``
#: row existed): a shred certificate without that row's residual line is refused (markfix)
MIGRATED = 4
#: the flags every vault of this build reaches (``MIGRATED`` only a migrated one)
_FINAL = BOOTSTRAP_CLOSED | CUSTODY

MARK_KEY = "audit_mark"
ALARM_KEY = "audit_alarm"
_CONTEXT = "audit-high-water-mark"

#: actions still appended (never signed) while an alarm is raised: signing in and stepping up,
#: and what the operator needs to investigate and recover
ALARM_EXEMPT = frozenset({"audit.recover", "audit.verify", "audit.log", "doctor"})
RECOVER_COMMAND = "cvault audit recover --acknowledge"


def is_exempt(action: str) -> bool:
    return action in ALARM_EXEMPT or action.startswith("auth.")


class Mark(NamedTuple):
    cp_seq: int
    cp_entry_hash: bytes
    cp_digest: bytes
    head_seq: int
    head_hash: bytes
    coverage: int = 0
    flags: int = 0

    def encode(self) -> bytes:
        """114 bytes: u64 cp_seq || cp_entry_hash || cp_digest || u64 head_seq || head_hash ||
        u8 coverage || u8 flags."""
        return _PACK_FACTS.pack(*self)

    @classmethod
    def decode(cls, data: bytes) -> Mark:
        """The mark of its 112 or 114 plaintext bytes; anything else raises struct.error."""
        if len(data) == _PACK.size:  # written before the one-way facts: none recorded yet
            return cls(*_PACK.unpack(data))
        if len(data) != _PACK_FACTS.size:
            raise struct.error(f"a mark is {_PACK.size} or {_PACK_FACTS.size} bytes")
        return cls(*_PACK_FACTS.unpack(data))

    @classmethod
    def at_checkpoint(
        cls, cp: Checkpoint, head_seq: int, head_hash: bytes, facts: Mark | None = None
    ) -> Mark:
        """The mark at a new checkpoint; ``facts``: the previous mark, whose one-way facts it keeps."""
        coverage, flags = (facts.coverage, facts.flags) if facts is not None else (0, 0)
        return cls(cp.seq, cp.entry_hash, cp.digest(), head_seq, head_hash, coverage, flags)

    @property
    def bootstrap_closed(self) -> bool:
        return bool(self.flags & BOOTSTRAP_CLOSED)

    def saturated(self, top_coverage: int) -> bool:
        """Whether the facts are at their final value (nothing left to raise; ``MIGRATED`` is
        raised together with ``CUSTODY`` by a migration, or never)."""
        return self.coverage >= top_coverage and self.flags & _FINAL == _FINAL

    def with_facts(self, coverage: int, bootstrap_closed: bool, flags: int = 0) -> Mark:
        """This mark with its facts raised to what the vault shows now (never lowered);
        ``flags``: :data:`CUSTODY`, :data:`MIGRATED` as the vault shows them."""
        return self._replace(
            coverage=min(max(self.coverage, coverage), 255),
            flags=self.flags | (BOOTSTRAP_CLOSED if bootstrap_closed else 0) | (flags & (CUSTODY | MIGRATED)),
        )


class MarkStore:
    """Reads and writes the sealed mark; the last value seen is kept, keyed by its sealed bytes,
    so an append that finds the row it wrote itself costs no decryption."""

    def __init__(self, keyring: Keyring):
        self.keyring = keyring
        self._seen: tuple[bytes, Mark] | None = None
        self._cp_seen: tuple[tuple[int, bytes], bytes] | None = None

    def rows(self, conn) -> tuple[object, tuple | None]:
        """(the mark row's value as stored, the alarm row's (value, mac)) in one query."""
        mark = alarm = None
        for key, value, tag in conn.execute(
            "SELECT key, value, mac FROM meta WHERE key IN (?, ?)", (MARK_KEY, ALARM_KEY)
        ).fetchall():
            if key == MARK_KEY:
                mark = value  # as stored: only read() decides what it is
            else:
                alarm = (value, tag)
        return mark, alarm

    def read(self, conn, sealed: object = None, *, fetch: bool = True) -> Mark | None:
        """The mark (None: no row); ``sealed``: the row's value as stored, already read (``fetch``
        False). Whatever the value is, the answer is a mark or an alarm: :func:`decode_stored`."""
        if fetch:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (MARK_KEY,)).fetchone()
            sealed = None if row is None else row[0]
        if sealed is None:
            return None
        seen = self._seen
        if seen is not None and type(sealed) is bytes and seen[0] == sealed:
            return seen[1]
        mark = decode_stored(self.keyring, sealed)
        if isinstance(sealed, bytes):  # always: decode_stored takes nothing else
            self._seen = (sealed, mark)
        return mark

    def newest_digest(self, conn, vault_id: bytes) -> bytes | None:
        """The digest of the newest checkpoint row (None: no checkpoint), remembered by the row's
        id and signature: the check before every append mostly meets the same checkpoint."""
        from vault.audit.checkpoints import Checkpoint
        from vault.audit.log import CHECKPOINT_COLUMNS

        row = conn.execute("SELECT id, signature FROM audit_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        if type(row[1]) is not bytes:
            raise stored.malformed_checkpoint(None)
        key = (row[0], row[1])
        seen = self._cp_seen
        if seen is not None and seen[0] == key:
            return seen[1]
        full = conn.execute(
            f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE id = ?",  # noqa: S608 - a constant column list; values are bound
            (row[0],),
        ).fetchone()
        digest = Checkpoint.from_row(vault_id, full).digest()
        self._cp_seen = (key, digest)
        return digest

    def write(self, conn, mark: Mark) -> None:
        sealer, aad = self.keyring.purpose_sealer(PURPOSE_AUDIT, _CONTEXT)
        sealed = sealer.seal(mark.encode(), aad)
        if not conn.execute("UPDATE meta SET value = ? WHERE key = ?", (sealed, MARK_KEY)).rowcount:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (MARK_KEY, sealed))
        self._seen = (sealed, mark)


#: a sealed mark's size as :meth:`MarkStore.write` stores it: nonce || 112 or 114 bytes || tag
SEALED_SIZES = frozenset(crypto.NONCE_LEN + n + crypto.TAG_LEN for n in (_PACK.size, _PACK_FACTS.size))
UNAUTHENTIC_MARK = "the audit high-water mark failed authentication (vault.db was edited)"


def decode_stored(keyring: Keyring, value: object) -> Mark:
    """The one decoder of the stored ``audit_mark`` value (a file writer may have put anything
    there: text, JSON, a number, a REAL, a blob of any size). Only a BLOB of a sealed mark's size
    is unsealed (never ``bytes(value)``: a number would allocate that many bytes, a string has no
    bytes); anything else, and a blob that fails authentication or holds no mark, is the alarm
    (exit 6, one line), never another exception."""
    if type(value) is not bytes or len(value) not in SEALED_SIZES:
        raise _alarm(UNAUTHENTIC_MARK, 1)
    sealer, aad = keyring.purpose_sealer(PURPOSE_AUDIT, _CONTEXT)
    try:
        return Mark.decode(sealer.unseal(value, aad))
    except (CryptoError, struct.error):
        raise _alarm(UNAUTHENTIC_MARK, 1) from None


def alarm_line(problem: str, first_bad_seq: int) -> str:
    return (
        f"integrity alarm: the audit log does not extend its high-water mark: {problem}; "
        f"first bad entry {first_bad_seq}; nothing is signed until an admin runs "
        f"'{RECOVER_COMMAND} {first_bad_seq}' (docs/audit.md section 3)"
    )


#: the line of an alarm row that fails its MAC (planted or damaged) or cannot be checked (sealed):
#: still an alarm (fail closed), but nothing of the row is shown or believed (review R6)
UNREADABLE = "an integrity alarm is recorded but its record fails authentication (planted or damaged)"
UNREADABLE_LINE = (
    f"integrity alarm: {UNREADABLE}; nothing is signed until an admin runs 'cvault audit verify' for the"
    f" first bad entry N, then '{RECOVER_COMMAND} N' (docs/audit.md section 3)"
)
UNCHECKED_LINE = (
    "integrity alarm: an integrity alarm is recorded (its record is checked when the vault is unsealed);"
    " an admin runs 'cvault audit verify' (docs/audit.md section 3)"
)


def _alarm_value(first_bad_seq: int, problem: str) -> str:
    return json.dumps({"first_bad_seq": first_bad_seq, "problem": problem}, sort_keys=True)


def read_alarm(conn, raw: tuple | None | bool = False) -> dict | None:
    """The raised alarm, or None: ``{"first_bad_seq", "problem", "message", "authentic"}``.
    ``raw``: the row's ``(value, mac)`` already read (None: no row), else it is read here.

    The row is ``{"first_bad_seq", "problem"}`` MACed with the row-MAC key (vault.store.rowmac,
    table "meta"); the message is always built here from the template :func:`alarm_line`, never
    stored. A row whose MAC is missing or wrong (a file writer planted or edited it) is an alarm
    that says so (:data:`UNREADABLE`, ``authentic`` False, ``first_bad_seq`` 1): nothing of it is
    shown or signed. Sealed (no row-MAC key), ``authentic`` is None and the line says the record
    is checked once unsealed."""
    from vault.errors import VaultSealed
    from vault.store import rowmac

    if raw is False:
        row = conn.execute("SELECT value, mac FROM meta WHERE key = ?", (ALARM_KEY,)).fetchone()
        raw = None if row is None else (row[0], row[1])
    if raw is None:
        return None
    value, tag = raw  # type: ignore[misc]
    unreadable = {"first_bad_seq": 1, "problem": UNREADABLE, "message": UNREADABLE_LINE, "authentic": False}
    try:
        rowmac.check(conn, "meta", (ALARM_KEY, value), tag)
    except VaultSealed:
        return {**unreadable, "message": UNCHECKED_LINE, "authentic": None}
    except rowmac.RowTampered:
        return unreadable
    from vault.settings import loads_stored as loads

    try:
        alarm = loads(value)
    except (ValueError, TypeError):
        return unreadable
    if not (
        isinstance(alarm, dict)
        and type(alarm.get("first_bad_seq")) is int
        and alarm["first_bad_seq"] >= 0
        and isinstance(alarm.get("problem"), str)
    ):
        return unreadable
    seq, problem = alarm["first_bad_seq"], alarm["problem"]
    return {"first_bad_seq": seq, "problem": problem, "message": alarm_line(problem, seq), "authentic": True}


def store_alarm(conn, alarm: AuditAlarm, problem: str) -> None:
    """Record the alarm (MACed; the first authentic alarm stays: it names the first break found).
    A row that fails its MAC is replaced by the real one."""
    from vault.store import rowmac

    existing = read_alarm(conn)
    if existing is not None and (existing["authentic"] is not False or not problem):
        return  # an alarm raised from the row itself (no problem found) never rewrites it
    value = _alarm_value(alarm.first_bad_seq or 1, problem or "the audit log does not extend its mark")
    tag = rowmac.mac(conn, "meta", (ALARM_KEY, value))
    conn.execute("DELETE FROM meta WHERE key = ?", (ALARM_KEY,))
    conn.execute("INSERT INTO meta (key, value, mac) VALUES (?, ?, ?)", (ALARM_KEY, value, tag))


def _entry_hash(conn, seq: int, start: Callable[[], tuple[int, bytes]]) -> bytes | None:
    """entry_hash of ``seq``; the chain start's hash for the base (0: genesis, or a prune base).
    A stored value that is not a hash is the alarm (entry N is malformed), as in
    :func:`check_segment`: recorded, so ``audit recover`` can acknowledge it."""
    row = conn.execute("SELECT entry_hash FROM audit_events WHERE seq = ?", (seq,)).fetchone()
    if row is not None:
        return _stored_entry_hash(row[0], seq)
    base = start()
    return base[1] if seq == base[0] else None


def _stored_entry_hash(value: object, seq: int) -> bytes:
    """An ``audit_events.entry_hash`` the mark check reads: 32 bytes, else the alarm."""
    if not stored.is_hash(value):
        raise _alarm(f"entry {seq} is malformed", seq)
    return value


def find_break(
    conn,
    vault_id: bytes,
    mark: Mark,
    start: Callable[[], tuple[int, bytes]],
    newest_digest: bytes | None,
    entry_tag: Callable[[int, bytes], bytes],
) -> AuditAlarm | None:
    """The first way the log fails to extend ``mark``, or None. ``start()``: (seq, hash) before
    the first entry (the genesis or the newest prune base), asked only when needed;
    ``newest_digest``: the digest of the newest checkpoint row, or None; ``entry_tag(seq,
    entry_hash)``: the ``mark_tag`` an unsealed process stores (Keyring.audit_entry_tag)."""
    for seq, want in ((mark.cp_seq, mark.cp_entry_hash), (mark.head_seq, mark.head_hash)):
        have = _entry_hash(conn, seq, start)
        if have is None:
            last_row = conn.execute("SELECT seq FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
            last = last_row[0] if last_row else start()[0]
            if last < seq:
                problem = (
                    f"entry {last + 1} missing: the log ends at entry {last} but the mark "
                    f"records entry {mark.head_seq} (entries were deleted)"
                )
                return _alarm(problem, last + 1)
            first = _first_missing(conn, start()[0], seq)
            return _alarm(f"entry {first} missing", first)
        if not crypto.constant_time_equal(have, want):
            first = _first_unproven(conn, vault_id, seq, start())
            problem = f"entries {first}-{seq} were rewritten: entry {seq} does not match the mark"
            return _alarm(problem, first)
    if newest_digest is None or not crypto.constant_time_equal(newest_digest, mark.cp_digest):
        return _alarm(f"signed checkpoint {mark.cp_seq} is missing from vault.db", max(mark.cp_seq, 1))
    return _newer_than_the_mark(conn, mark, entry_tag)


def _newer_than_the_mark(conn, mark: Mark, entry_tag: Callable[[int, bytes], bytes]) -> AuditAlarm | None:
    """An entry after the mark's head that an unsealed process wrote (a valid ``mark_tag``): that
    process moved the mark past it in the same transaction, so this mark is an older copy put
    back (review6 R6-1), or None. Only the tail after the head is read: normally no row at all
    (a sealed process's entries carry no tag; a tag that fails is a file writer's and proves
    nothing, as an untagged entry)."""
    for seq, entry_hash, tag in conn.execute(
        "SELECT seq, entry_hash, mark_tag FROM audit_events"
        " WHERE seq > ? AND mark_tag IS NOT NULL ORDER BY seq",
        (mark.head_seq,),
    ):
        if isinstance(tag, bytes) and crypto.constant_time_equal(
            entry_tag(seq, _stored_entry_hash(entry_hash, seq)), tag
        ):
            problem = (
                f"entry {seq} was appended by an unsealed process after the mark's head (entry"
                f" {mark.head_seq}): the mark is an older copy put back (newer checkpoints were deleted)"
            )
            return _alarm(problem, seq)
    return None


def check_segment(conn, after: tuple[int, bytes], head_seq: int) -> AuditAlarm | None:
    """Re-hash the entries after the last checkpoint up to ``head_seq`` before signing them
    (the verifier's canonical bytes: vault.audit.verify.entry_bytes)."""
    import base64

    from vault.audit.log import EVENT_COLUMNS
    from vault.audit.verify import entry_bytes

    expected, prev = after[0] + 1, after[1]
    for row in conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq",  # noqa: S608 - a constant column list; values are bound
        (after[0], head_seq),
    ):
        seq = row[0]
        if seq != expected:
            return _alarm(f"entry {expected} missing", expected)
        if row[8] is not None and type(row[8]) is not bytes:  # a file writer's text or number (R8-3)
            return _alarm(f"entry {seq} is malformed", seq)
        sealed = None if row[8] is None else base64.b64encode(row[8]).decode()
        try:
            digest = crypto.sha256(
                prev
                + entry_bytes(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], sealed, row[9])
            )
        except (TypeError, ValueError):
            return _alarm(f"entry {seq} is malformed", seq)
        if not (stored.is_hash(row[10]) and stored.is_hash(row[11])):
            return _alarm(f"entry {seq} is malformed", seq)
        if row[10] != prev or digest != row[11]:
            return _alarm(f"entry {seq} was modified", seq)
        prev = row[11]
        expected += 1
    if expected <= head_seq:
        return _alarm(f"entry {expected} missing", expected)
    return None


def _alarm(problem: str, first_bad_seq: int) -> AuditAlarm:
    alarm = AuditAlarm(alarm_line(problem, first_bad_seq), first_bad_seq)
    alarm.problem = problem  # type: ignore[attr-defined]
    return alarm


def _first_missing(conn, base: int, upto: int) -> int:
    expected = base + 1
    for (seq,) in conn.execute(
        "SELECT seq FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq", (base, upto)
    ):
        if seq != expected:
            return expected
        expected += 1
    return expected


def _first_unproven(conn, vault_id: bytes, upto: int, start: tuple[int, bytes]) -> int:
    """The entry after the newest checkpoint (< ``upto``) that still matches the log: the first
    entry nothing left in the vault proves (the start of the chain if no checkpoint does)."""
    from vault.audit.checkpoints import Checkpoint
    from vault.audit.log import CHECKPOINT_COLUMNS

    for row in conn.execute(
        f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq < ? ORDER BY seq DESC",  # noqa: S608 - a constant column list; values are bound
        (upto,),
    ):
        cp = Checkpoint.from_row(vault_id, row)
        have = _entry_hash(conn, cp.seq, lambda: start)
        if have is not None and crypto.constant_time_equal(have, cp.entry_hash):
            return cp.seq + 1
    return start[0] + 1
