"""Verification of the audit chain: the live log, or an export offline (docs/audit.md section 6).

The verifier needs no root key and no vault: only the entries, the checkpoints, the vault id (for
the genesis hash) and the audit public key. It stops at the first problem and names the first bad
sequence number:

* ``entry N was modified``: a field, the stored hash or the stored link differs;
* ``entry N missing`` / ``entry N is out of order`` / ``entry N appears twice (an entry was
  inserted)``;
* ``entries A-B were rewritten``: the chain is self-consistent but does not reach the hash signed
  in checkpoint B (the whole chain from A was recomputed);
* ``entry N missing: the log ends at entry N-1 but signed checkpoint C covers up to C`` (truncated);
* ``checkpoint C has an invalid signature``.

Speed: one SHA-256 per entry (``hashlib`` directly) over the canonical bytes built by
:func:`entry_bytes`, a hand-unrolled equivalent of :func:`vault.audit.log.canonical` (the same C
string encoder json.dumps uses, the keys in their sorted order); a test keeps the two identical.
"""

from __future__ import annotations

import base64
import hashlib
import json
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _q

from vault.audit.checkpoints import Checkpoint
from vault.audit.log import CHECKPOINT_EVERY, genesis_hash
from vault.audit.signing import verify_signature
from vault.errors import IntegrityFailure, InvalidInput
from vault.tuples import NamedTuple

EXPORT_FORMAT = "cvault-audit-export"
EXPORT_VERSION = 1
PROGRESS_EVERY = 20_000

_sha256 = hashlib.sha256

#: one entry as the verifier sees it: (seq, at, actor, action, client, outcome, reason, origin,
#: detail_sealed (bytes, or base64 text from an export, or None), detail_key, prev_hash, entry_hash)
Row = tuple


_TEMPLATE = (
    '{"action":%s,"actor":%s,"at":%s,"client":%s,"detail_key":%s,"detail_sealed":%s,'
    '"origin":%s,"outcome":%s,"reason":%s,"seq":%d}'
)


def entry_bytes(
    seq, at, actor, action, client, outcome, reason, origin, detail_sealed_b64, detail_key
) -> bytes:
    """``canonical(fields)`` of an entry, byte-identical to json.dumps(sort_keys, (",", ":"),
    ensure_ascii) and several times faster. Raises TypeError/ValueError on a malformed field.
    (verify_chain inlines this expression; tests keep both identical to the definition.)"""
    return (
        _TEMPLATE
        % (
            _q(action),
            _q(actor),
            _q(at),
            "null" if client is None else _q(client),
            "null" if detail_key is None else _q(detail_key),
            "null" if detail_sealed_b64 is None else _q(detail_sealed_b64),
            _q(origin),
            _q(outcome),
            "null" if reason is None else _q(reason),
            seq,
        )
    ).encode()


def sha256_hex(text: str) -> str:
    return _sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class DetailsChain:
    """The decrypted details of a JSON Lines export are not covered by the entry hashes (those
    cover the sealed bytes), so the export chains them too and signs the result in its trailer:
    ``D_0 = SHA-256("cvault/v1/audit-export-details" || vault_id)``,
    ``D_k = SHA-256(D_k-1 || canonical({"detail": detail, "seq": seq}))``; each entry line carries
    its ``detail_chain`` value, so a changed detail is pinned to its entry."""

    def __init__(self, vault_id: bytes):
        self.value = _sha256(b"cvault/v1/audit-export-details" + vault_id).digest()

    def add(self, seq: int, detail: str | None) -> bytes:
        body = f'{{"detail":{"null" if detail is None else _q(detail)},"seq":{int(seq)}}}'
        self.value = _sha256(self.value + body.encode()).digest()
        return self.value


TRAILER_LABEL = b"cvault/v1/audit-export\x00"


@dataclass(frozen=True)
class Trailer:
    """Last line of a JSON Lines export, signed: binds the header line, the entry count, the head
    and the details chain. Signing input: ``"cvault/v1/audit-export\\x00" || canonical(body)``."""

    vault_id: bytes
    head_seq: int
    entries: int
    header_sha256: str
    details_sha256: str

    def body(self) -> dict:
        return {
            "vault_id": self.vault_id.hex(),
            "head_seq": self.head_seq,
            "entries": self.entries,
            "header_sha256": self.header_sha256,
            "details_sha256": self.details_sha256,
        }

    def signing_input(self) -> bytes:
        return (
            TRAILER_LABEL
            + json.dumps(self.body(), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        )

    def signed(self, signature: bytes) -> dict:
        return {"type": "trailer", **self.body(), "signature": base64.b64encode(signature).decode()}


@dataclass
class VerifyResult:
    ok: bool = True
    problem: str | None = None
    bad_seq: int | None = None
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    base_seq: int = 0
    checkpoints: int = 0
    signed_up_to: int | None = None
    public_key: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: ranges of entries that verify but that no signature made when they were written proves:
    #: ``{"first_seq", "last_seq", "checkpoint", "reason"}``, reason ``"recovery"`` (after an
    #: integrity alarm, ``audit recover``) or ``"upgrade"`` (written by a cvault from before the
    #: audit high-water mark after its newest checkpoint; ``checkpoint``: the one that says so)
    unproven: list[dict] = field(default_factory=list)

    def fail(self, problem: str, bad_seq: int | None) -> VerifyResult:
        self.ok, self.problem, self.bad_seq = False, problem, bad_seq
        return self

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problem": self.problem,
            "bad_seq": self.bad_seq,
            "entries": self.entries,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "base_seq": self.base_seq,
            "checkpoints": self.checkpoints,
            "signed_up_to": self.signed_up_to,
            "public_key": self.public_key,
            "warnings": self.warnings,
            "unproven": self.unproven,
        }


def _no_progress(done: int, total: int) -> None:
    return None


def verify_chain(
    rows: Iterable[Row],
    checkpoints: Iterable[Checkpoint],
    *,
    vault_id: bytes,
    public_key: bytes,
    total: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    overdue_warning: bool = False,
    all_signatures: bool = False,
    tail: Callable[[], Span | None] | None = None,
) -> VerifyResult:
    """Walk the chain once, checking every link, every hash and every checkpoint on the way.

    Signatures: a checkpoint whose hash matches the chain adds nothing to the verdict unless it
    is the one that covers the end of the log, so by default only the signatures the verdict
    depends on are checked (the covering checkpoint, the prune base, any checkpoint that
    disagrees with the chain or claims entries beyond its end). ``all_signatures`` checks every
    one first. Either way an invalid signature the verdict depends on fails verification, and
    the earliest invalid checkpoint is named."""
    result = VerifyResult()
    cps = list(checkpoints)
    checked: dict[int, bool] = {}

    def sig_ok(cp: Checkpoint) -> bool:
        key = id(cp)
        if key not in checked:
            checked[key] = verify_signature(public_key, cp.signature, cp.signing_input())
        return checked[key]

    def first_invalid() -> VerifyResult:
        bad = min((cp for cp in cps if not sig_ok(cp)), key=lambda c: c.seq)
        return result.fail(f"checkpoint {bad.seq} has an invalid signature", bad.seq)

    for cp in cps:
        if cp.vault_id != vault_id:
            return result.fail(f"checkpoint {cp.seq} belongs to another vault", cp.seq)
    if all_signatures and not all(sig_ok(cp) for cp in cps):
        return first_invalid()
    result.checkpoints = len(cps)

    base_seq, base_hash, base_link = 0, genesis_hash(vault_id), None
    prunes = sorted((cp for cp in cps if cp.kind == "prune"), key=lambda c: c.base_seq or 0)
    if prunes:
        prune = prunes[-1]
        if not sig_ok(prune):
            return first_invalid()
        if prune.base_seq is None or prune.base_hash is None:
            return result.fail(f"prune checkpoint {prune.seq} names no base entry", prune.seq)
        base_seq, base_hash, base_link = prune.base_seq, prune.base_hash, prune.base_checkpoint
        for cp in cps:
            if cp.seq == base_seq and cp.entry_hash != base_hash and sig_ok(cp):
                return result.fail(f"two signed checkpoints disagree about entry {base_seq}", base_seq)
    result.base_seq = base_seq
    marks: dict[int, list[Checkpoint]] = {}
    for cp in cps:
        if cp.seq > base_seq:
            marks.setdefault(cp.seq, []).append(cp)

    expected, prev = base_seq + 1, base_hash
    last_mark = base_seq  # last checkpoint passed: a rewrite is pinned to the span after it
    pending = sorted(marks)
    pending.append(-1)
    step = PROGRESS_EVERY if progress is not None else -1
    walked = walk_entries(
        rows,
        result,
        marks,
        pending,
        WalkState(expected, prev, last_mark, 0),
        sig_ok,
        first_invalid,
        progress or _no_progress,
        base_seq + step if progress is not None else -1,
        step,
        base_seq,
        total,
    )
    if isinstance(walked, VerifyResult):
        if tail is not None:  # the problem is named by the one walk over the whole log
            raise SpanMismatch
        return walked
    if tail is not None:
        # the entries after ``rows``, walked by a helper (vault.audit.live): they must start where
        # these end and link to the last of them; otherwise (or when the helper failed) the
        # caller walks the whole log here, which names the problem
        span = tail()
        if span is None or span.first != walked.expected or span.link != walked.prev:
            raise SpanMismatch
        mark_i, passed = walked.mark_i, 0
        while pending[mark_i] != -1 and pending[mark_i] <= span.last:
            passed = pending[mark_i]
            mark_i += 1
        if passed != span.last_mark:  # the helper passed other checkpoints than these
            raise SpanMismatch
        walked = WalkState(span.last + 1, span.head, passed or walked.last_mark, mark_i)
    expected, prev, last_mark, mark_i = walked
    last = expected - 1
    result.entries = last - base_seq
    result.first_seq = base_seq + 1 if result.entries else None
    result.last_seq = last if result.entries else None
    if progress is not None:
        progress(result.entries, total or result.entries)
    beyond = [cp for s in pending[mark_i:-1] for cp in marks[s]]
    if beyond:
        valid = [cp.seq for cp in beyond if sig_ok(cp)]
        if not valid:
            return first_invalid()
        return result.fail(
            f"entry {last + 1} missing: the log ends at entry {last} but signed "
            f"checkpoint {max(valid)} covers up to entry {max(valid)} "
            "(entries were truncated)",
            last + 1,
        )
    covering = marks.get(last_mark, [])
    if covering and not all(sig_ok(cp) for cp in covering):
        return first_invalid()
    broken = _checkpoint_links(cps, vault_id, base_seq, bool(prunes), base_link, sig_ok, result)
    if broken is not None:
        if broken[1] is None:
            return first_invalid()
        return result.fail(*broken)
    result.signed_up_to = last_mark if (last_mark > base_seq or prunes) else None
    if result.entries and result.signed_up_to is None:
        result.warnings.append(
            "no signed checkpoint covers these entries: the chain proves their order, not their authenticity"
        )
    elif result.signed_up_to is not None and last > result.signed_up_to:
        unsigned = last - result.signed_up_to
        note = (
            f"entries {result.signed_up_to + 1}-{last} are after the last signed checkpoint: "
            "truncation there is detectable only against a checkpoint kept elsewhere"
        )
        if overdue_warning and unsigned > CHECKPOINT_EVERY:
            note += f" (checkpoint overdue: {unsigned} entries unsigned)"
        result.warnings.append(note)
    return result


class WalkState(NamedTuple):
    """Where a walk over consecutive entries stopped: the next sequence number expected, the
    stored hash of the last entry, the last checkpoint passed and the index of the next one in
    ``pending``."""

    expected: int
    prev: bytes
    last_mark: int
    mark_i: int


@dataclass
class Span:
    """What a helper process established about entries ``first``..``last`` of a log
    (vault.audit.live): every entry's hash is right and links to the entry before it, every
    checkpoint among them matches its entry; ``link`` is the stored link of entry ``first``,
    ``head`` the stored hash of entry ``last``, ``last_mark`` the last checkpoint among them (or
    0)."""

    first: int
    last: int
    link: bytes
    head: bytes
    last_mark: int


class SpanMismatch(Exception):
    """A helper's span does not continue the entries walked here (or the helper failed): the
    caller verifies the whole log in one walk instead."""


def walk_entries(
    rows: Iterable[Row],
    result: VerifyResult,
    marks: dict[int, list[Checkpoint]],
    pending: list[int],
    start: WalkState,
    sig_ok: Callable[[Checkpoint], bool],
    first_invalid: Callable[[], VerifyResult],
    report: Callable[[int, int], None],
    next_report: int,
    step: int,
    base_seq: int,
    total: int | None,
) -> VerifyResult | WalkState:
    """Walk consecutive entries from ``at``: every link, every hash, every checkpoint on the way
    (``pending``: their sequence numbers in order, ending with -1). Returns where it stopped, or
    the failed result."""
    expected, prev, last_mark, mark_i = start
    next_mark = pending[mark_i]
    # the hot loop: one SHA-256 per entry and as little Python around it as possible (the
    # canonical form of entry_bytes() is inlined; checkpoints and progress are compared by
    # sequence number instead of looked up)
    template = _TEMPLATE
    q = _q
    b64 = b2a_base64
    sha = _sha256
    int_ = int
    str_ = str
    it = iter(rows)
    for row in it:
        try:
            seq, at, actor, action, client, outcome, reason, origin, sealed, key, link, stored = row
            if seq != expected or seq.__class__ is not int_:
                return _diagnose(result, row, expected, prev, it)
            if sealed is not None and sealed.__class__ is not str_:
                sealed = b64(sealed, newline=False).decode()
            digest = sha(
                prev
                + (
                    template
                    % (
                        q(action),
                        q(actor),
                        q(at),
                        "null" if client is None else q(client),
                        "null" if key is None else q(key),
                        "null" if sealed is None else q(sealed),
                        q(origin),
                        q(outcome),
                        "null" if reason is None else q(reason),
                        seq,
                    )
                ).encode()
            ).digest()
        except (TypeError, ValueError, AttributeError):
            return result.fail(f"entry {expected} is malformed", expected)
        if digest != stored or link != prev:
            return result.fail(f"entry {seq} was modified", seq)
        if seq == next_mark:
            for cp in marks[seq]:
                if cp.entry_hash != digest:
                    if not sig_ok(cp):
                        return first_invalid()
                    return result.fail(
                        f"entries {last_mark + 1}-{seq} were rewritten: entry {seq} "
                        f"does not match signed checkpoint {seq}",
                        last_mark + 1,
                    )
            last_mark = seq
            mark_i += 1
            next_mark = pending[mark_i]
        if seq == next_report:
            report(seq - base_seq, total or 0)
            next_report += step
        prev = digest
        expected += 1
    return WalkState(expected, prev, last_mark, mark_i)


def _checkpoint_links(
    cps: list[Checkpoint],
    vault_id: bytes,
    base_seq: int,
    pruned: bool,
    base_link: bytes | None,
    sig_ok: Callable[[Checkpoint], bool],
    result: VerifyResult,
) -> tuple[str, int | None] | None:
    """The signed checkpoints form a chain of their own (each signs the previous one's digest,
    docs/audit.md section 3): a deleted checkpoint is a missing link. Checkpoints from before the
    chain (no ``prev``) are skipped; the first one after the newest prune base follows a pruned
    one: the one the prune checkpoint signs as ``base_checkpoint`` (``base_link``; review5 R5-2),
    or any for a prune from before that field. A recovery checkpoint is reported; one written
    since markfix (``"linked"``) links to the newest checkpoint row at its recovery and is checked
    like any other (so no kept checkpoint before it can be deleted unnoticed, the first after a
    prune included), an older one restarts the chain unchecked. An upgrade's first
    mark that signs entries as unproven is reported too (``result.unproven`` and a warning).
    Returns (problem, first bad seq), (problem, None) for an invalid signature, or None."""
    from vault.audit.checkpoints import checkpoint_genesis

    seen: set[bytes] = set()
    ordered: list[Checkpoint] = []
    for cp in sorted(cps, key=lambda c: c.seq):  # stable: creation order within one seq
        if cp.seq < base_seq or (pruned and cp.seq == base_seq and cp.kind != "prune"):
            continue
        digest = cp.digest()
        if digest not in seen:
            seen.add(digest)
            ordered.append(cp)
    for i, cp in enumerate(ordered):
        if cp.recovery is not None:
            if not sig_ok(cp):
                return "", None
            r = cp.recovery
            result.warnings.append(
                f"the log was recovered at entry {cp.seq} after an integrity alarm (first bad entry "
                f"{r['first_bad_seq']}: {r['problem']}): entries {r['first_bad_seq']}-{cp.seq} are "
                "not proven by any signature made before the alarm"
            )
            result.unproven.append(
                {
                    "first_seq": r["first_bad_seq"],
                    "last_seq": cp.seq,
                    "checkpoint": cp.seq,
                    "reason": "recovery",
                }
            )
            if not r.get("linked"):
                continue  # written before markfix: it linked to the mark's checkpoint, unchecked
        if cp.unproven is not None:
            if not sig_ok(cp):
                return "", None
            first, last = max(cp.unproven["first_seq"], base_seq + 1), cp.unproven["last_seq"]
            if first <= last:
                result.warnings.append(
                    f"entries {first}-{last} were written by a cvault from before the audit high-water"
                    f" mark after its newest signed checkpoint: no signature proves them (cvault upgrade"
                    f" signed them as unproven in checkpoint {cp.seq})"
                )
                result.unproven.append(
                    {"first_seq": first, "last_seq": last, "checkpoint": cp.seq, "reason": "upgrade"}
                )
        if cp.prev is None:
            continue
        if i == 0:
            if base_link is not None:
                if cp.prev == base_link:
                    continue
                if not sig_ok(cp):
                    return "", None
                return (
                    f"signed checkpoints missing before checkpoint {cp.seq}: it does not sign the "
                    f"checkpoint the prune at entry {base_seq} deleted last, so checkpoints after "
                    "the prune base were deleted",
                    base_seq + 1,
                )
            if pruned or cp.prev == checkpoint_genesis(vault_id):
                continue
            if not sig_ok(cp):
                return "", None
            return (
                f"signed checkpoints missing before checkpoint {cp.seq}: it signs a previous "
                "checkpoint that is not in the log (checkpoints were deleted)",
                base_seq + 1,
            )
        before = ordered[i - 1]
        if cp.prev != before.digest():
            if not sig_ok(cp):
                return "", None
            return (
                f"signed checkpoint missing after checkpoint {before.seq}: checkpoint {cp.seq} "
                "signs a previous checkpoint that is not in the log (checkpoints were deleted)",
                before.seq + 1,
            )
    return None


def _diagnose(
    result: VerifyResult, row: Row, expected: int, prev: bytes, rest: Iterator[Row]
) -> VerifyResult:
    seq = row[0]
    if type(seq) is not int:
        return result.fail(f"entry {expected} is malformed", expected)
    if seq < expected:
        return result.fail(f"entry {seq} appears twice or out of order (an entry was inserted or moved)", seq)
    if row[10] == prev:
        # it links to the previous entry: its own sequence number was changed
        return result.fail(f"entry {expected} was modified", expected)
    for later in rest:
        if later and later[0] == expected:
            return result.fail(f"entry {expected} is out of order (found after entry {seq})", expected)
    return result.fail(f"entry {expected} missing", expected)


# --- exports (JSON Lines) ---------------------------------------------------------------------------


@dataclass
class ExportFile:
    header: dict
    header_line: str
    vault_id: bytes
    public_key_text: str | None
    checkpoints: list[Checkpoint]
    rows: list[Row]
    details: list[tuple]  # (seq, detail, detail_chain) per entry line
    trailer: dict | None


def read_export(lines: Iterable[str]) -> ExportFile:
    """Parse a JSON Lines export; raises InvalidInput for a file that is not one, IntegrityFailure
    naming the sequence number for a line that does not parse as an entry."""
    header = header_line = trailer = None
    checkpoints: list[Checkpoint] = []
    rows: list[Row] = []
    details: list[tuple] = []
    loads = json.loads
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if trailer is not None:
            raise IntegrityFailure(f"audit verify: line {number} follows the export's trailer")
        try:
            item = loads(line)
        except ValueError:
            raise IntegrityFailure(f"audit verify: line {number} is not JSON{_after(rows)}") from None
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "entry":
            try:
                rows.append(
                    (
                        item["seq"],
                        item["at"],
                        item["actor"],
                        item["action"],
                        item["client"],
                        item["outcome"],
                        item["reason"],
                        item["origin"],
                        item["detail_sealed"],
                        item["detail_key"],
                        bytes.fromhex(item["prev_hash"]),
                        bytes.fromhex(item["entry_hash"]),
                    )
                )
                details.append((item["seq"], item.get("detail"), item.get("detail_chain")))
            except (KeyError, TypeError, ValueError):
                seq = item.get("seq")
                raise IntegrityFailure(
                    f"audit verify: entry {seq if type(seq) is int else '?'} (line {number}) is malformed"
                ) from None
        elif kind == "checkpoint":
            try:
                checkpoints.append(Checkpoint.from_dict(item))
            except ValueError:
                raise IntegrityFailure(f"audit verify: checkpoint on line {number} is malformed") from None
        elif kind == "header" and header is None and number == 1:
            header, header_line = item, line
        elif kind == "trailer":
            trailer = item
        else:
            raise IntegrityFailure(f"audit verify: line {number} is not an entry, checkpoint or header")
    if header is None or header_line is None or header.get("format") != EXPORT_FORMAT:
        raise InvalidInput(
            "not a cvault audit export (JSON Lines with a header line); "
            "only --format jsonl exports can be verified"
        )
    if header.get("version") != EXPORT_VERSION:
        raise InvalidInput(f"unsupported audit export version {header.get('version')!r}")
    try:
        vault_id = bytes.fromhex(header["vault_id"])
        if len(vault_id) != 16:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("the export header has no valid vault_id") from None
    return ExportFile(
        header, header_line, vault_id, header.get("public_key"), checkpoints, rows, details, trailer
    )


def _after(rows: list[Row]) -> str:
    return f" (after entry {rows[-1][0]})" if rows else ""


def verify_export(
    lines: Iterable[str],
    *,
    public_key_text: str | None = None,
    extra_checkpoints: Iterable[dict] = (),
    progress: Callable[[int, int], None] | None = None,
    all_signatures: bool = False,
) -> VerifyResult:
    """Offline verification of an export: no vault, no root key. ``public_key_text`` is the key
    the reviewer trusts (``cvault audit pubkey``); without it the key in the export's header is
    used and a warning says so. ``extra_checkpoints`` are checkpoints kept elsewhere (the blob
    store copy), which catch a tail cut together with its checkpoint lines."""
    from vault.audit.signing import parse_public_key_text

    export = read_export(lines)
    warnings = []
    if public_key_text is None:
        if not export.public_key_text:
            raise InvalidInput("the export carries no public key: give --pubkey")
        key_text = export.public_key_text
        from vault.audit.signing import fingerprint

        warnings.append(
            "public key taken from the export itself (fingerprint "
            f"{fingerprint(parse_public_key_text(key_text))}): compare it with the fingerprint "
            "noted at init or 'cvault audit pubkey' from a copy you trust, or pass --pubkey"
        )
    else:
        key_text = public_key_text
        if export.public_key_text and parse_public_key_text(export.public_key_text) != parse_public_key_text(
            public_key_text
        ):
            warnings.append("the export's header names a different public key; verified with --pubkey")
    public = parse_public_key_text(key_text)
    checkpoints = list(export.checkpoints)
    for d in extra_checkpoints:
        try:
            checkpoints.append(Checkpoint.from_dict(d))
        except ValueError:
            raise InvalidInput("an external checkpoint file is malformed") from None
    result = verify_chain(
        export.rows,
        checkpoints,
        vault_id=export.vault_id,
        public_key=public,
        total=len(export.rows),
        progress=progress,
        all_signatures=all_signatures,
    )
    result.public_key = "ed25519:" + base64.b64encode(public).decode()
    result.warnings[:0] = warnings
    problem = _check_details(export, public)
    if problem is not None and (
        result.ok or (problem[1] is not None and result.bad_seq is not None and problem[1] < result.bad_seq)
    ):
        result.fail(*problem)
    return result


def _check_details(export: ExportFile, public: bytes) -> tuple[str, int | None] | None:
    """The decrypted details and the header against the signed trailer; None if all is well."""
    chain = DetailsChain(export.vault_id)
    for seq, detail, recorded in export.details:
        try:
            value = chain.add(seq, detail)
        except (TypeError, ValueError):
            return f"entry {seq} is malformed", seq if type(seq) is int else None
        if recorded != value.hex():
            return f"entry {seq} was modified (its decrypted detail)", seq
    last = export.details[-1][0] if export.details else None
    t = export.trailer
    if t is None:
        nxt = last + 1 if type(last) is int else None
        return (
            f"the export's signed trailer is missing: the file was cut after entry {last}"
            if last is not None
            else "the export's signed trailer is missing"
        ), nxt
    try:
        trailer = Trailer(
            bytes.fromhex(t["vault_id"]), t["head_seq"], t["entries"], t["header_sha256"], t["details_sha256"]
        )
        signature = base64.b64decode(t["signature"], validate=True)
    except (KeyError, TypeError, ValueError):
        return "the export's trailer is malformed", None
    if trailer.vault_id != export.vault_id or not verify_signature(
        public, signature, trailer.signing_input()
    ):
        return "the export's trailer has an invalid signature", None
    header_text = json.dumps(export.header, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if trailer.header_sha256 != sha256_hex(header_text):
        return "the export's header line was modified", None
    if trailer.entries != len(export.details) or trailer.head_seq != (
        last if last is not None else trailer.head_seq
    ):
        return (
            f"the export holds {len(export.details)} entries but its trailer signs "
            f"{trailer.entries} up to entry {trailer.head_seq}"
        ), None
    if trailer.details_sha256 != chain.value.hex():
        return "the export's details do not match its signed trailer", None
    return None
