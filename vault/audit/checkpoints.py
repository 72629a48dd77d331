"""Signed checkpoints of the audit chain (docs/audit.md section 3).

A checkpoint states, under the vault's Ed25519 audit key, "in vault V the entry with sequence
number S has entry_hash H" (and for a prune checkpoint also "the chain now starts after entry B
whose hash is BH"). Signing input, byte for byte::

    b"cvault/v1/audit-checkpoint\\x00" || canonical(body)

where ``body`` is the JSON object ``{"at", "base_hash", "base_seq", "entry_hash", "kind", "seq",
"vault_id"}`` (hashes and vault id as lower-case hex, ``null`` for the absent prune fields) and
``canonical`` is the audit log's encoding: keys sorted, separators ``,`` ``:``, ASCII only. The
label keeps a checkpoint signature from ever being valid as a shred-certificate signature.

Checkpoints written by this version also sign ``"prev"``: the hash (:meth:`Checkpoint.digest`,
SHA-256 of the signing input) of the checkpoint written before it, or of
:func:`checkpoint_genesis` for a vault's first one, so the signed checkpoints form a chain of their
own and a deleted checkpoint is missing from it (docs/audit.md section 3). A recovery checkpoint
(``cvault audit recover``) also signs ``"recovery"``: the integrity alarm it acknowledges. The
first checkpoint ``cvault upgrade`` signs over a log an older cvault wrote also signs
``"unproven"``: ``{"first_seq", "last_seq"}``, the entries that older cvault wrote after its newest
checkpoint, which no signature proves (docs/audit.md section 3, "A vault from before the mark").
A prune checkpoint written by this version also signs ``"base_checkpoint"``: the digest of the
newest checkpoint the prune deletes, which the first checkpoint kept after the base must name as
its ``prev`` (so no kept checkpoint can be deleted after a prune without a missing link).
Checkpoints from before (no ``prev`` key) verify as they always did.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from vault import crypto
from vault.audit.stored import MAX_SEQ_BEFORE_NEXT
from vault.tuples import NamedTuple

SIGNING_LABEL = b"cvault/v1/audit-checkpoint\x00"
KINDS = ("periodic", "manual", "prune")
BLOB_PREFIX = "audit-checkpoint-"
#: compiled on first use (re's cache), not at import on every command
_BLOB_NAME = r"^audit-checkpoint-(\d{1,19})(-prune)?$"


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class Checkpoint(NamedTuple):
    vault_id: bytes
    seq: int
    entry_hash: bytes
    at: str
    kind: str
    base_seq: int | None = None
    base_hash: bytes | None = None
    signature: bytes = b""
    #: digest of the previous checkpoint (None: a checkpoint from before the checkpoint chain)
    prev: bytes | None = None
    #: a recovery checkpoint: the alarm it acknowledges ({"first_bad_seq", "mark_seq", "problem"})
    recovery: dict | None = None
    #: the first mark of an upgraded vault: the entries no older signature proves
    #: ({"first_seq", "last_seq"})
    unproven: dict | None = None
    #: a prune checkpoint: the digest of the newest checkpoint the prune deletes (None: a prune
    #: from before this field, or another kind)
    base_checkpoint: bytes | None = None

    def body(self) -> dict:
        body = {
            "vault_id": self.vault_id.hex(),
            "seq": self.seq,
            "entry_hash": self.entry_hash.hex(),
            "at": self.at,
            "kind": self.kind,
            "base_seq": self.base_seq,
            "base_hash": None if self.base_hash is None else self.base_hash.hex(),
        }
        if self.prev is not None:
            body["prev"] = self.prev.hex()
        if self.recovery is not None:
            body["recovery"] = self.recovery
        if self.unproven is not None:
            body["unproven"] = self.unproven
        if self.base_checkpoint is not None:
            body["base_checkpoint"] = self.base_checkpoint.hex()
        return body

    def signing_input(self) -> bytes:
        return SIGNING_LABEL + _canonical(self.body())

    def digest(self) -> bytes:
        """What the next checkpoint's ``prev`` names: SHA-256 of this one's signing input."""
        return crypto.sha256(self.signing_input())

    def as_dict(self) -> dict:
        """The JSON Lines checkpoint line (and the blob-store copy)."""
        return {"type": "checkpoint", **self.body(), "signature": base64.b64encode(self.signature).decode()}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def blob_name(self) -> str:
        return f"{BLOB_PREFIX}{self.seq}" + ("-prune" if self.kind == "prune" else "")

    @classmethod
    def from_row(cls, vault_id: bytes, row) -> Checkpoint:
        """A row of ``SELECT CHECKPOINT_COLUMNS``, each column checked by type (review7 R7-4):
        one that is not what cvault stores is an IntegrityFailure naming the checkpoint."""
        from vault.audit.stored import checkpoint_hash, malformed_checkpoint
        from vault.settings import loads_stored

        seq, entry_hash, at, kind, base_seq, base_hash, signature, prev, recovery, unproven, base_cp = row
        if (
            type(seq) is not int
            or seq < 0
            or type(at) is not str
            or type(kind) is not str
            or type(signature) is not bytes
            or not _valid_base(kind, base_seq, base_hash, seq)
        ):
            raise malformed_checkpoint(seq)

        def document(value):
            if value is None:
                return None
            if type(value) is not str:
                raise malformed_checkpoint(seq)
            try:
                return loads_stored(value)
            except ValueError:
                raise malformed_checkpoint(seq) from None

        recovery, unproven = document(recovery), document(unproven)
        if (recovery is not None and not _valid_recovery(recovery)) or (
            unproven is not None and not _valid_unproven(unproven, seq)
        ):
            raise malformed_checkpoint(seq)
        return cls(
            vault_id,
            seq,
            checkpoint_hash(entry_hash, seq),
            at,
            kind,
            base_seq,
            None if base_hash is None else checkpoint_hash(base_hash, seq),
            signature,
            None if prev is None else checkpoint_hash(prev, seq),
            recovery,
            unproven,
            None if base_cp is None else checkpoint_hash(base_cp, seq),
        )

    @classmethod
    def from_dict(cls, d) -> Checkpoint:
        """Parse a checkpoint line or blob; raises ValueError if any field is malformed."""
        if not isinstance(d, dict):
            raise ValueError("not an object")
        seq, base_seq = d.get("seq"), d.get("base_seq")
        if type(seq) is not int or seq < 0:
            raise ValueError("bad seq")
        kind = d.get("kind")
        if kind not in KINDS:
            raise ValueError("bad kind")
        base_hash: bytes | None = None
        base_cp: bytes | None = None
        if kind == "prune":
            if type(base_seq) is not int or not 0 <= base_seq <= seq:
                raise ValueError("bad base_seq")
            base_hash = _hex(d.get("base_hash"), 32)
            base_cp = _hex(d["base_checkpoint"], 32) if "base_checkpoint" in d else None
        else:
            if base_seq is not None or d.get("base_hash") is not None or "base_checkpoint" in d:
                raise ValueError("base fields on a non-prune checkpoint")
        at = d.get("at")
        if not isinstance(at, str):
            raise ValueError("bad at")
        try:
            signature = base64.b64decode(d.get("signature") or "", validate=True)
        except (binascii.Error, TypeError):
            raise ValueError("bad signature encoding") from None
        prev = _hex(d["prev"], 32) if "prev" in d else None
        recovery = d.get("recovery")
        if "recovery" in d and not _valid_recovery(recovery):
            raise ValueError("bad recovery")
        unproven = d.get("unproven")
        if "unproven" in d and not _valid_unproven(unproven, seq):
            raise ValueError("bad unproven")
        return cls(
            _hex(d.get("vault_id"), 16),
            seq,
            _hex(d.get("entry_hash"), 32),
            at,
            kind,
            base_seq,
            base_hash,
            signature,
            prev,
            recovery,
            unproven,
            base_cp,
        )


#: the largest prune base a row may name: the next entry's seq (base + 1) still fits an SQLite
#: INTEGER (review8 R8-4)
MAX_BASE_SEQ = MAX_SEQ_BEFORE_NEXT


def _valid_base(kind: str, base_seq: object, base_hash: object, seq: int) -> bool:
    """A row's prune base as cvault writes it: both NULL on a checkpoint that is not a prune; on a
    prune an INTEGER from 0 to the checkpoint's own seq (and :data:`MAX_BASE_SEQ`) and a hash
    (checked by type and length with the other hash columns)."""
    if kind != "prune":
        return base_seq is None and base_hash is None
    return type(base_seq) is int and 0 <= base_seq <= min(seq, MAX_BASE_SEQ) and base_hash is not None


def _valid_unproven(value, seq: int) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"first_seq", "last_seq"}
        and type(value["first_seq"]) is int
        and type(value["last_seq"]) is int
        and 1 <= value["first_seq"] <= value["last_seq"] <= seq
    )


def _valid_recovery(value) -> bool:
    """``{"first_bad_seq", "mark_seq", "problem"}``, and ``"linked": true`` on a recovery written
    since markfix: its ``prev`` is the newest checkpoint row's digest, checked like any other
    checkpoint's (vault.audit.verify._checkpoint_links; review5 R5-2 extended)."""
    keys = {"first_bad_seq", "mark_seq", "problem"}
    return (
        isinstance(value, dict)
        and (set(value) == keys or (set(value) == keys | {"linked"} and value["linked"] is True))
        and type(value["first_bad_seq"]) is int
        and type(value["mark_seq"]) is int
        and isinstance(value["problem"], str)
    )


def checkpoint_genesis(vault_id: bytes) -> bytes:
    """The ``prev`` of a vault's first checkpoint."""
    return crypto.sha256(b"cvault/v1/audit-checkpoint-genesis" + vault_id)


def authentic_blob(data: bytes, name: str, vault_id: bytes, public_key: bytes) -> bool:
    """Whether ``data`` is a checkpoint of this vault, stored under its own name, signed by the
    vault's audit key (sync pull checks this before restoring a copy from the remote)."""
    from vault.audit.signing import verify_signature

    try:
        cp = Checkpoint.from_dict(json.loads(data))
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        cp.vault_id == vault_id
        and cp.blob_name == name
        and verify_signature(public_key, cp.signature, cp.signing_input())
    )


def _hex(value, length: int) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected hex")
    raw = bytes.fromhex(value)
    if len(raw) != length:
        raise ValueError("wrong length")
    return raw


def parse_blob_name(name: str) -> int | None:
    """The sequence number of a checkpoint blob name, or None for any other blob."""
    m = re.match(_BLOB_NAME, name)
    return int(m.group(1)) if m else None


def is_checkpoint_blob(name: str) -> bool:
    return name.startswith(BLOB_PREFIX)
