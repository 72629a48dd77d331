"""``secret import`` streams its input (issue 20 item 5): records are validated, encrypted and
written a batch at a time inside the one transaction, so a large import never holds its input in
memory; a bad line anywhere still imports nothing and leaves no blob behind; every record version
keeps its own key and nonces, fresh from the OS CSPRNG, though they are read once per batch."""

from __future__ import annotations

import json

import pytest

from tests.helpers import add_client, clock_at, files_under, grep_tree, make_vault, operator
from vault import blob as blobfmt
from vault import crypto
from vault.audit.checkpoints import BLOB_PREFIX as CHECKPOINT_BLOB_PREFIX
from vault.errors import InvalidInput
from vault.records.service import IMPORT_BATCH

N = IMPORT_BATCH + 37  # more than one batch


def _line(i: int, **extra) -> str:
    fields = {"host": f"10.0.{i // 250}.{i % 250}", "password": f"pw-{i}-bulk", **extra}
    return json.dumps({"path": f"site/{i // 100}/dev-{i}", "kind": "access", "fields": fields})


@pytest.fixture
def vault(tmp_path):
    vd = make_vault(tmp_path, clock=clock_at())
    v = vd.open(clock=clock_at())
    add_client(v, "acme")
    yield v
    v.close()


def _record_blobs(v) -> set[str]:
    return {n for n in v.ctx.blobs.list() if not n.startswith(CHECKPOINT_BLOB_PREFIX)}


def test_the_input_is_consumed_as_a_stream_one_batch_at_a_time(vault):
    """When the importer asks for line IMPORT_BATCH * 2 + 1, the first two batches are already
    encrypted and written (one pack each): the input was never read whole."""
    queued_when: dict[int, int] = {}

    def lines():
        for i in range(N + IMPORT_BATCH):
            if i == 2 * IMPORT_BATCH:
                queued_when[i] = len(vault.ctx.blobs._dirty_files)
            yield _line(i)

    got = vault.secrets.import_records(operator(), "acme", lines())
    assert got["imported"] == N + IMPORT_BATCH
    assert queued_when[2 * IMPORT_BATCH] == 2
    assert vault.secrets.get(operator(), "acme", "site/0/dev-7").fields["password"] == "pw-7-bulk"
    last = N + IMPORT_BATCH - 1
    assert vault.secrets.get(operator(), "acme", f"site/{last // 100}/dev-{last}").version == 1


@pytest.mark.parametrize(
    "bad", ["not json", json.dumps({"path": "x", "kind": "access", "fields": {"port": 0}})]
)
def test_a_bad_line_after_the_first_batch_imports_nothing_and_leaves_no_blob(vault, bad):
    before = _record_blobs(vault)
    queued = vault.ctx.db.all("SELECT count(*) FROM outbox")[0][0]
    lines = [_line(i) for i in range(N)] + [bad]
    with pytest.raises(InvalidInput, match=f"line {N + 1}"):
        vault.secrets.import_records(operator(), "acme", iter(lines))
    assert vault.secrets.list(operator(), "acme") == []
    assert vault.ctx.db.all("SELECT count(*) FROM records")[0][0] == 0
    assert vault.ctx.db.all("SELECT count(*) FROM outbox")[0][0] == queued
    assert _record_blobs(vault) == before  # the blobs of the batches written are deleted again


def test_a_duplicate_path_in_a_later_batch_is_refused(vault):
    lines = [_line(i) for i in range(N)] + [_line(3)]
    with pytest.raises(InvalidInput, match=f"line {N + 1}: duplicate path site/0/dev-3"):
        vault.secrets.import_records(operator(), "acme", iter(lines))
    assert vault.secrets.list(operator(), "acme") == []


def test_each_record_version_has_its_own_key_and_nonces(vault):
    vault.secrets.import_records(operator(), "acme", (_line(i) for i in range(N)))
    rows = vault.ctx.db.all(
        "SELECT r.meta_sealed, v.wrapped_dek, v.blob_name, v.pack_offset, v.size FROM records r"
        " JOIN record_versions v ON v.record_id = r.id"
    )
    assert len(rows) == N
    meta_nonces = {bytes(m[: crypto.NONCE_LEN]) for m, *_ in rows}
    wrap_nonces = {bytes(w[: crypto.NONCE_LEN]) for _, w, *_ in rows}
    blob_nonces = {
        blobfmt.parse_header(vault.ctx.blobs.get_range(name, offset, size)).nonce
        for _, _, name, offset, size in rows
    }
    assert len(meta_nonces) == len(wrap_nonces) == len(blob_nonces) == N
    assert not (meta_nonces & wrap_nonces or meta_nonces & blob_nonces or wrap_nonces & blob_nonces)
    client = vault.ctx.client("acme")
    keys = vault.ctx.client_keys(client)
    deks = set()
    for (record_id,) in vault.ctx.db.all("SELECT id FROM records"):
        wrapped = vault.ctx.db.all(
            "SELECT wrapped_dek FROM record_versions WHERE record_id = ?", (record_id,)
        )
        deks.add(keys.unwrap_dek(bytes(wrapped[0][0]), record_id, 1))
    assert len(deks) == N and all(len(k) == crypto.KEY_LEN for k in deks)


def test_fresh_keys_are_slices_of_distinct_random_bytes():
    batch = list(crypto.fresh_keys(500, nonces=3))
    assert len(batch) == 500
    assert all(len(k) == 32 and all(len(n) == 12 for n in ns) for k, *ns in batch)
    keys = [k for k, *_ in batch]
    nonces = [n for _, *ns in batch for n in ns]
    assert len(set(keys)) == 500 and len(set(nonces)) == 1500
    assert len(set(crypto.fresh_keys(1, nonces=1)) | set(crypto.fresh_keys(1, nonces=1))) == 2


def test_a_streamed_import_is_audited_with_its_count(vault):
    vault.secrets.import_records(operator(), "acme", (_line(i) for i in range(N)))
    rows = vault.ctx.db.all("SELECT outcome FROM audit_events WHERE action = 'secret.import' ORDER BY seq")
    assert [r[0] for r in rows] == ["allow", "ok"]


def test_cli_import_of_more_than_a_batch_from_a_file_and_from_stdin(tmp_path):
    vd = make_vault(tmp_path / "v")
    v = vd.open()
    add_client(v, "acme")
    add_client(v, "globex")
    v.close()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(_line(i) + "\r\n" for i in range(N)))  # CRLF lines are fine
    got = vd.cli("secret", "import", "acme", str(src), "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"client": "acme", "imported": N}
    got = vd.cli("secret", "import", "globex", "-", input=src.read_text())
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == f"imported {N} records into globex"
    assert "pw-" not in got.stdout + got.stderr
    assert grep_tree(vd.home, b"pw-5-bulk") == []  # no plaintext in the vault folder


def test_cli_bad_utf8_in_a_later_batch_is_one_line_and_imports_nothing(tmp_path):
    vd = make_vault(tmp_path / "v")
    v = vd.open()
    add_client(v, "acme")
    blobs_before = len(files_under(vd.home))
    v.close()
    src = tmp_path / "in.jsonl"
    src.write_bytes("".join(_line(i) + "\n" for i in range(N)).encode() + b'{"path": "\xff"}\n')
    got = vd.cli("secret", "import", "acme", str(src))
    assert got.returncode == 2, got.stderr
    assert got.stderr.strip().splitlines() == [
        f"cvault: import from file {src} is not UTF-8 text: store binary values base64-encoded"
        ' (docs/cli.md, "Exact bytes")'
    ]
    listed = vd.cli("secret", "list", "acme", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert len(files_under(vd.home)) <= blobs_before + 2  # the audit's own files at most
