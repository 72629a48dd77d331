"""The audit chain, checkpoints, exports and the offline verifier (docs/spec.md §9; docs/audit.md).

Every kind of tampering with an export is detected and the first bad sequence number named;
the untouched export verifies; the live log's tampering is detected too.
"""

from __future__ import annotations

import json
import random
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import audit_cast, client_with_secrets
from tests.helpers import ROOT, clock_at, run_cli
from vault.audit.log import AuditEntry, canonical
from vault.audit.verify import entry_bytes, verify_export
from vault.errors import VaultError

ENTRY_FIELDS = (
    "seq",
    "at",
    "actor",
    "action",
    "client",
    "outcome",
    "reason",
    "origin",
    "detail_sealed",
    "detail_key",
    "prev_hash",
    "entry_hash",
    "detail",
)


@pytest.fixture
def busy(vdir):
    """A vault with ~260 events (checkpoints at 100 and 200), its cast and an open Vault."""
    clock = clock_at()
    v = vdir.open(clock)
    c = audit_cast(v)
    client_with_secrets(v, c, paths=("office/firewall", "office/wifi", "home/router"))
    for i in range(230):
        clock.advance(7)
        if i % 50 == 0:
            p = c.engineer.principal()  # a fresh step-up: the window is 15 minutes
        v.secrets.get(p, "acme", ("office/firewall", "office/wifi", "home/router")[i % 3])
    yield vdir, v, c
    v.close()


def export_lines(v, c, tmp_path, name="audit.jsonl") -> list[str]:
    out = tmp_path / name
    v.audit.export(c.reviewer.principal(), "jsonl", out=out)
    return out.read_text().splitlines()


def entry_index(lines: list[str], seq: int) -> int:
    for i, line in enumerate(lines):
        d = json.loads(line)
        if d.get("type") == "entry" and d["seq"] == seq:
            return i
    raise AssertionError(seq)


def edit(lines: list[str], at_seq: int, **changes) -> list[str]:
    out = list(lines)
    i = entry_index(out, at_seq)
    d = json.loads(out[i])
    d.update(changes)
    out[i] = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return out


def first_detail_seq(lines: list[str], at_least: int) -> int:
    for line in lines:
        d = json.loads(line)
        if d.get("type") == "entry" and d["seq"] >= at_least and d["detail_sealed"]:
            return d["seq"]
    raise AssertionError("no entry with a detail")


# --- the canonical encoding -------------------------------------------------------------------------


text = st.text(alphabet=st.characters(), max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(min_value=0, max_value=2**62),
    at=text,
    actor=text,
    action=text,
    client=st.none() | text,
    outcome=text,
    reason=st.none() | text,
    origin=text,
    sealed=st.none() | st.binary(max_size=60),
    key=st.none() | text,
)
def test_fast_canonical_is_byte_identical_to_the_definition(
    seq, at, actor, action, client, outcome, reason, origin, sealed, key
):
    entry = AuditEntry(seq, at, actor, action, client, outcome, reason, origin, sealed, key, b"", b"")
    fields = entry.fields()
    assert entry_bytes(
        seq, at, actor, action, client, outcome, reason, origin, fields["detail_sealed"], key
    ) == canonical(fields)


def test_control_characters_cannot_forge_a_line_in_the_canonical_form():
    raw = canonical({"reason": 'ok\n{"seq":1}\r\x1b[2J\u2028', "seq": 1})
    assert b"\n" not in raw and b"\r" not in raw and b"\x1b" not in raw
    assert raw.isascii()


# --- exports: tampering is detected and pinpointed --------------------------------------------------


def test_untouched_export_verifies(busy, tmp_path):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    result = verify_export(lines, public_key_text=v.audit.public_key()["public_key"])
    assert result.ok, result.problem
    assert result.entries > 230 and result.checkpoints >= 3
    assert result.signed_up_to == result.last_seq  # the export signs its own head


@pytest.mark.parametrize(
    "field",
    [
        "at",
        "actor",
        "action",
        "client",
        "outcome",
        "reason",
        "origin",
        "detail_sealed",
        "detail_key",
        "seq",
        "prev_hash",
        "entry_hash",
        "detail",
    ],
)
def test_changing_any_field_is_detected_at_that_entry(busy, tmp_path, field):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    seq = first_detail_seq(lines, 57)
    d = json.loads(lines[entry_index(lines, seq)])
    new = {
        "seq": 10_000,
        "prev_hash": "00" * 32,
        "entry_hash": "11" * 32,
        "detail_sealed": "QUFBQQ==",
        "detail": "office/other",
    }.get(field)
    if new is None:
        new = (d[field] or "") + "x"
    tampered = edit(lines, seq, **{field: new})
    result = verify_export(tampered, public_key_text=v.audit.public_key()["public_key"])
    assert not result.ok
    assert result.bad_seq == seq, result.problem
    assert f"entry {seq}" in result.problem


def test_deleting_an_entry_is_detected(busy, tmp_path):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    tampered = [line for i, line in enumerate(lines) if i != entry_index(lines, 57)]
    result = verify_export(tampered)
    assert (result.ok, result.bad_seq) == (False, 57)
    assert "entry 57 missing" in result.problem


def test_inserting_an_entry_is_detected(busy, tmp_path):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    i = entry_index(lines, 57)
    forged = json.loads(lines[i])
    forged.update(reason="forged", actor="mallory")
    result = verify_export(lines[:i] + [json.dumps(forged)] + lines[i:])
    assert (result.ok, result.bad_seq) == (False, 57), result.problem


def test_inserting_a_correctly_hashed_entry_is_detected(busy, tmp_path):
    """The forger recomputes the inserted entry's hash; the next genuine entry then repeats 57."""
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    i = entry_index(lines, 57)
    prev = json.loads(lines[i])
    forged = dict(prev, reason="forged", detail_sealed=None, detail_key=None, detail=None)
    f = [forged[k] for k in ENTRY_FIELDS[:10]]
    import hashlib

    forged["entry_hash"] = hashlib.sha256(bytes.fromhex(prev["prev_hash"]) + entry_bytes(*f)).hexdigest()
    result = verify_export(lines[:i] + [json.dumps(forged)] + lines[i:])
    assert (result.ok, result.bad_seq) == (False, 57), result.problem


def test_swapping_two_entries_is_detected(busy, tmp_path):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    i, j = entry_index(lines, 57), entry_index(lines, 58)
    lines[i], lines[j] = lines[j], lines[i]
    result = verify_export(lines)
    assert (result.ok, result.bad_seq) == (False, 57)
    assert "out of order" in result.problem


def test_cutting_the_tail_before_the_last_checkpoint_is_detected(busy, tmp_path):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    cut = lines[: entry_index(lines, 150)]
    result = verify_export(cut)
    assert (result.ok, result.bad_seq) == (False, 150)
    assert "truncated" in result.problem


def test_cutting_the_tail_and_its_checkpoint_lines_is_caught_by_an_external_checkpoint(busy, tmp_path):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    kept = [
        line
        for line in lines[: entry_index(lines, 150)]
        if not (json.loads(line).get("type") == "checkpoint" and json.loads(line)["seq"] >= 150)
    ]
    blob = json.loads(v.ctx.blobs.get("audit-checkpoint-200"))
    result = verify_export(kept, extra_checkpoints=[blob])
    assert (result.ok, result.bad_seq) == (False, 150)


def test_rewriting_the_whole_chain_is_caught_by_the_signed_checkpoint(busy, tmp_path):
    """A forger who recomputes every hash after a change still cannot forge the checkpoint."""
    import hashlib

    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    out, prev = [], None
    for line in lines:
        d = json.loads(line)
        if d.get("type") == "entry":
            if d["seq"] == 120:
                d["reason"] = "nothing to see"
            if prev is not None:
                d["prev_hash"] = prev
            d["entry_hash"] = hashlib.sha256(
                bytes.fromhex(d["prev_hash"]) + entry_bytes(*[d[k] for k in ENTRY_FIELDS[:10]])
            ).hexdigest()
            prev = d["entry_hash"]
        out.append(json.dumps(d))
    result = verify_export(out)
    assert not result.ok
    assert result.bad_seq == 101 and "rewritten" in result.problem and "checkpoint 200" in result.problem


def test_a_forged_checkpoint_signature_is_detected(busy, tmp_path):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    out = []
    for line in lines:
        d = json.loads(line)
        if d.get("type") == "checkpoint" and d["seq"] == 100:
            d["entry_hash"] = "22" * 32
        out.append(json.dumps(d))
    result = verify_export(out)
    assert (result.ok, result.bad_seq) == (False, 100)
    assert "invalid signature" in result.problem


def test_a_different_public_key_fails(busy, tmp_path):
    _, v, c = busy
    import base64

    from vault import crypto

    other = "ed25519:" + base64.b64encode(crypto.ed25519_generate()[1]).decode()
    result = verify_export(export_lines(v, c, tmp_path), public_key_text=other)
    assert not result.ok and "invalid signature" in result.problem


def test_random_single_byte_corruption_never_verifies(busy, tmp_path):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    rng = random.Random(4)
    for _ in range(25):
        i = rng.randrange(entry_index(lines, 1), len(lines))
        line = lines[i]
        k = rng.randrange(len(line))
        ch = "0" if line[k] != "0" else "1"
        tampered = lines[:i] + [line[:k] + ch + line[k + 1 :]] + lines[i + 1 :]
        try:
            result = verify_export(tampered)
        except VaultError:  # a line that no longer parses is refused with a named error
            continue
        assert not result.ok, (i, k)


def test_offline_verify_through_the_cli_with_no_vault(busy, tmp_path):
    vdir, v, c = busy
    lines = export_lines(v, c, tmp_path)
    pub = v.audit.public_key()["public_key"]
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(lines) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(edit(lines, 57, actor="someone-else")) + "\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    nowhere = str(tmp_path / "no-such-vault")
    ok = run_cli("--home", nowhere, "audit", "verify", "--file", str(good), "--pubkey", pub, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    failed = run_cli("--home", nowhere, "audit", "verify", "--file", str(bad), "--pubkey", pub, env=env)
    assert failed.returncode == 6
    assert failed.stderr.strip() == "cvault: audit verify: entry 57 was modified"
    as_json = run_cli(
        "--home", nowhere, "--json", "audit", "verify", "--file", str(bad), "--trust-embedded-key", env=env
    )
    assert as_json.returncode == 6 and json.loads(as_json.stdout)["bad_seq"] == 57


# --- the live log ---------------------------------------------------------------------------------


def test_checkpoints_are_written_every_100_entries_signed_and_copied(busy):
    _, v, _ = busy
    rows = v.ctx.db.all("SELECT seq, kind FROM audit_checkpoints WHERE kind = 'periodic' ORDER BY seq")
    assert [r[0] for r in rows][:2] == [100, 200]
    names = set(v.ctx.blobs.list())
    assert {"audit-checkpoint-100", "audit-checkpoint-200"} <= names
    queued = {r[0] for r in v.ctx.db.all("SELECT blob_name FROM outbox WHERE op = 'put'")}
    assert "audit-checkpoint-200" in queued
    blob = json.loads(v.ctx.blobs.get("audit-checkpoint-200"))
    from vault.audit.checkpoints import Checkpoint
    from vault.audit.signing import parse_public_key_text, verify_signature

    cp = Checkpoint.from_dict(blob)
    pub = parse_public_key_text(v.audit.public_key()["public_key"])
    assert verify_signature(pub, cp.signature, cp.signing_input())
    head = v.ctx.db.one("SELECT entry_hash FROM audit_events WHERE seq = 200")[0]
    assert cp.entry_hash == head


def test_on_demand_checkpoint_is_idempotent_and_signs_the_head(busy):
    _, v, _ = busy
    a = v.ctx.audit.checkpoint()
    b = v.ctx.audit.checkpoint()
    assert a == b
    assert a.seq == v.ctx.db.one("SELECT max(seq) FROM audit_events")[0]
    assert f"audit-checkpoint-{a.seq}" in set(v.ctx.blobs.list())


def test_live_verify_detects_a_modified_row(busy):
    _, v, c = busy
    with v.ctx.db.write() as conn:
        conn.execute("UPDATE audit_events SET actor = 'nobody' WHERE seq = 57")
    result = v.audit.verify(c.reviewer.principal())
    assert (result.ok, result.bad_seq) == (False, 57)


def test_live_verify_detects_a_deleted_row(busy):
    _, v, c = busy
    with v.ctx.db.write() as conn:
        conn.execute("DELETE FROM audit_events WHERE seq = 57")
    result = v.audit.verify(c.reviewer.principal())
    assert (result.ok, result.bad_seq) == (False, 57)
    assert "entry 57 missing" in result.problem


def test_live_truncation_with_checkpoint_rows_is_caught_by_the_backend_copy(busy):
    _, v, c = busy
    with v.ctx.db.write() as conn:
        conn.execute("DELETE FROM audit_events WHERE seq >= 150")
        conn.execute("DELETE FROM audit_checkpoints WHERE seq >= 150")
    result = v.audit.verify(c.reviewer.principal())  # appends 150 afresh, which cannot match
    assert not result.ok and result.bad_seq in (150, 151)


def test_doctor_reports_a_broken_audit_chain(busy):
    _, v, c = busy
    from vault.principal import Principal

    with v.ctx.db.write() as conn:
        conn.execute("UPDATE audit_events SET reason = 'edited' WHERE seq = 42")
    report = v.maintenance.doctor(Principal.system("doctor"))
    assert any("entry 42 was modified" in p for p in report.problems)
    assert not any("audit-checkpoint" in w for w in report.warnings)


def test_tampered_text_column_bytes_are_reported_not_crashing(busy):
    _, v, c = busy
    with v.ctx.db.write() as conn:
        conn.execute("UPDATE audit_events SET actor = CAST(x'ff00fe' AS TEXT) WHERE seq = 12")
    result = v.audit.verify(c.reviewer.principal())
    assert (result.ok, result.bad_seq) == (False, 12)


def test_verify_is_reviewer_only(busy):
    _, v, c = busy
    from vault.errors import AccessDenied

    with pytest.raises(AccessDenied):
        v.audit.verify(c.engineer.principal())
    row = v.ctx.db.one("SELECT actor, action, outcome FROM audit_events ORDER BY seq DESC LIMIT 1")
    assert row == ("eve", "audit.verify", "deny")


# --- prune ------------------------------------------------------------------------------------------


def test_prune_keeps_the_log_verifiable_from_a_signed_base(busy, tmp_path):
    vdir, v, c = busy
    clock = v.ctx.clock
    cutoff = clock.now()
    clock.advance(3600)
    for _ in range(30):
        v.secrets.get(c.engineer.principal(), "acme", "office/wifi")
    r = c.reviewer.principal()
    before_count = v.ctx.db.one("SELECT count(*) FROM audit_events")[0]
    v.ctx.settings["audit_min_retention_days"] = 0  # this vault keeps no minimum retention
    result = v.audit.prune(r, cutoff)
    assert result["pruned"] > 0 and result["base_seq"] % 100 == 0
    first = v.ctx.db.one("SELECT min(seq) FROM audit_events")[0]
    assert first == result["base_seq"] + 1
    assert v.ctx.db.one("SELECT count(*) FROM audit_events")[0] < before_count
    live = v.audit.verify(r)
    assert live.ok, live.problem
    assert live.base_seq == result["base_seq"]
    lines = export_lines(v, c, tmp_path, "after-prune.jsonl")
    offline = verify_export(lines)
    assert offline.ok, offline.problem
    # deleting the entry right after the signed base is still caught
    tampered = [line for i, line in enumerate(lines) if i != entry_index(lines, first)]
    bad = verify_export(tampered)
    assert (bad.ok, bad.bad_seq) == (False, first)
    # dropping the prune checkpoint makes the verifier expect the chain from entry 1
    no_prune = [line for line in lines if '"kind":"prune"' not in line]
    assert verify_export(no_prune).bad_seq == 1
    # old checkpoint copies stay in the blob store: independent evidence of the pruned past
    assert "audit-checkpoint-100" in set(v.ctx.blobs.list())


def test_prune_keeps_a_minimum_retention(busy):
    """A reviewer cannot erase recent history: by default nothing younger than 365 days goes."""
    from datetime import timedelta

    from vault.errors import InvalidInput

    _, v, c = busy
    r = c.reviewer.principal()
    for before in (v.ctx.now() + timedelta(days=1), v.ctx.now(), v.ctx.now() - timedelta(days=364)):
        with pytest.raises(InvalidInput, match="retention minimum"):
            v.audit.prune(r, before)
    assert v.ctx.db.one("SELECT min(seq) FROM audit_events")[0] == 1
    assert v.audit.prune(r, v.ctx.now() - timedelta(days=366))["pruned"] == 0  # nothing that old


def test_prune_refuses_a_log_that_does_not_verify(busy):
    _, v, c = busy
    from vault.errors import IntegrityFailure

    with v.ctx.db.write() as conn:
        conn.execute("UPDATE audit_events SET outcome = 'ok' WHERE seq = 30")
    v.ctx.settings["audit_min_retention_days"] = 0
    with pytest.raises(IntegrityFailure):
        v.audit.prune(c.reviewer.principal(), v.ctx.now())
    assert v.ctx.db.one("SELECT min(seq) FROM audit_events")[0] == 1


def test_entries_are_never_rewritten_by_sqlite(busy):
    """Guard: the table keeps the exact bytes the chain hashed (no type affinity surprises)."""
    _, v, _ = busy
    row = v.ctx.db.one(
        "SELECT typeof(prev_hash), typeof(entry_hash), typeof(seq) FROM audit_events WHERE seq = 2"
    )
    assert row == ("blob", "blob", "integer")
    with pytest.raises(sqlite3.IntegrityError), v.ctx.db.write() as conn:
        conn.execute(
            "INSERT INTO audit_events (seq, at, actor, action, outcome, origin,"
            " prev_hash, entry_hash) VALUES (2, 'x', 'x', 'x', 'ok', 'x', x'', x'')"
        )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(text, text, st.none() | text, st.none() | text, st.none() | st.binary(max_size=40)),
        min_size=1,
        max_size=30,
    )
)
def test_the_verifier_accepts_every_chain_the_writer_makes(entries):
    """The verifier's inlined canonical form agrees with the writer's json.dumps for any text."""
    from vault.audit.log import chain_hash, genesis_hash
    from vault.audit.verify import verify_chain

    vault_id = b"\x01" * 16
    prev, rows = genesis_hash(vault_id), []
    for seq, (actor, action, client, reason, sealed) in enumerate(entries, 1):
        e = AuditEntry(
            seq,
            "2026-01-01T00:00:00Z",
            actor,
            action,
            client,
            "ok",
            reason,
            "cli",
            sealed,
            "audit:x" if sealed else None,
            prev,
            b"",
        )
        digest = chain_hash(prev, e.fields())
        rows.append(
            (seq, e.at, actor, action, client, "ok", reason, "cli", sealed, e.detail_key, prev, digest)
        )
        prev = digest
    result = verify_chain(rows, [], vault_id=vault_id, public_key=b"\x00" * 32)
    assert result.ok, result.problem
    assert result.warnings  # no checkpoint: authenticity not proven, and it says so


def test_all_signatures_also_checks_checkpoints_the_chain_matched(busy, tmp_path):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    out = []
    for line in lines:
        d = json.loads(line)
        if d.get("type") == "checkpoint" and d["seq"] == 100:
            d["signature"] = base64_of(b"\x00" * 64)
        out.append(json.dumps(d, indent=None))  # re-serialized: still the same content
    assert verify_export(out).ok  # the chain and the covering checkpoint are intact
    strict = verify_export(out, all_signatures=True)
    assert (strict.ok, strict.bad_seq) == (False, 100) and "invalid signature" in strict.problem


def base64_of(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


def test_a_forged_covering_checkpoint_is_named_first_invalid(busy, tmp_path):
    """Rewrite the tail and forge the checkpoints after it: the earliest forged one is named."""
    import hashlib

    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    out, prev, hashes = [], None, {}
    for line in lines:
        d = json.loads(line)
        if d.get("type") == "entry":
            if d["seq"] == 150:
                d["reason"] = "rewritten"
            if prev is not None and d["seq"] > 150:
                d["prev_hash"] = prev
            d["entry_hash"] = hashlib.sha256(
                bytes.fromhex(d["prev_hash"]) + entry_bytes(*[d[k] for k in ENTRY_FIELDS[:10]])
            ).hexdigest()
            prev = d["entry_hash"]
            hashes[d["seq"]] = prev
        out.append(d)
    for d in out:
        if d.get("type") == "checkpoint" and d["seq"] >= 150:
            d["entry_hash"] = hashes[d["seq"]]
    result = verify_export([json.dumps(d) for d in out])
    assert (result.ok, result.bad_seq) == (False, 200) and "invalid signature" in result.problem


def test_header_and_trailer_are_signed(busy, tmp_path):
    _, v, c = busy
    lines = export_lines(v, c, tmp_path)
    header = json.loads(lines[0])
    header["exported_by"] = "someone else"
    result = verify_export([json.dumps(header)] + lines[1:])
    assert not result.ok and "header" in result.problem
    last = json.loads(lines[-2])["seq"]
    cut = verify_export(lines[:-1])  # the trailer line removed
    assert (cut.ok, cut.bad_seq) == (False, last + 1) and "trailer" in cut.problem


def test_a_swapped_public_key_is_caught_by_live_verify(busy):
    """Rewriting the log and re-signing it with a key of one's own needs the stored public key
    swapped too; the unsealed vault checks it against its sealed private key."""
    import base64

    from vault import crypto

    _, v, c = busy
    _, other_public = crypto.ed25519_generate()
    with v.ctx.db.write() as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_public_key'", (other_public,))
    result = v.audit.verify(c.reviewer.principal())
    assert not result.ok and "stored audit public key is not the vault's audit key" in result.problem
    # verified with the key derived from the sealed private key, never the swapped one
    assert (
        result.public_key
        == v.audit.public_key()["public_key"]
        != "ed25519:" + base64.b64encode(other_public).decode()
    )
