"""The OneDrive replica of packed record blobs (docs/format.md section 9), against the fake Graph
over HTTPS: one outbox row and one upload per pack, a pack lost locally is restored on read and
by ``sync pull`` (each of its versions verified), and a forged remote pack is never pulled."""

import json
import shutil

import pytest

from tests.helpers import add_client, operator
from vault.audit.checkpoints import is_checkpoint_blob
from vault.errors import IntegrityFailure
from vault.records.service import IMPORT_BATCH

N = IMPORT_BATCH + 3


@pytest.fixture
def vault(vdir, remote_config, recording_sleep):
    v = vdir.open(service_options={"sync": {"graph_options": {"sleep": recording_sleep}}})
    v.sync.configure(operator(), remote_config)
    add_client(v, "acme")
    v.secrets.import_records(
        operator(),
        "acme",
        (
            json.dumps({"path": f"bulk/{i}", "kind": "access", "fields": {"password": f"pw-{i}"}})
            for i in range(N)
        ),
    )
    yield v
    v.close()


def _packs(v) -> set[str]:
    return {r[0] for r in v.ctx.db.all("SELECT blob_name FROM record_versions WHERE pack_offset IS NOT NULL")}


def _remote(fake_graph) -> dict[str, bytes]:
    return {path.rsplit("/", 1)[-1]: data for path, data in fake_graph.files().items()}


def test_push_uploads_one_file_per_pack(vault, fake_graph):
    packs = _packs(vault)
    assert len(packs) == 2
    puts = [r[0] for r in vault.ctx.db.all("SELECT blob_name FROM outbox WHERE op = 'put'")]
    assert sorted(p for p in puts if not is_checkpoint_blob(p)) == sorted(packs)
    result = vault.sync.push(operator())
    assert result["failed"] == 0
    remote = _remote(fake_graph)
    assert {n for n in remote if not is_checkpoint_blob(n)} == packs
    for name in packs:
        assert remote[name] == vault.ctx.blobs.get(name) and b"pw-" not in remote[name]
    assert vault.sync.verify(operator())["ok"]


def test_a_lost_pack_is_restored_on_read_and_by_pull(vault, vdir):
    vault.sync.push(operator())
    packs = sorted(_packs(vault))
    before = {n: vault.ctx.blobs.get(n) for n in packs}
    (vdir.home / "blobs" / packs[0][:2] / packs[0]).unlink()
    # whichever pack it was, a record in it reads (the pack is fetched and put back)
    assert vault.secrets.get(operator(), "acme", "bulk/0").fields["password"] == "pw-0"
    assert vault.secrets.get(operator(), "acme", f"bulk/{N - 1}").fields["password"] == f"pw-{N - 1}"
    assert {n: vault.ctx.blobs.get(n) for n in packs} == before
    shutil.rmtree(vdir.home / "blobs")
    (vdir.home / "blobs").mkdir(mode=0o700)
    result = vault.sync.pull(operator())
    assert not result["errors"] and set(packs) <= {n for n in before} and result["restored"] >= 2
    assert {n: vault.ctx.blobs.get(n) for n in packs} == before
    assert vault.secrets.get(operator(), "acme", "bulk/5").fields["password"] == "pw-5"


def _pack_of(v, path: str) -> str:
    """The pack holding ``path``'s first version (pack names are keyed: the sorted order of a
    vault's packs is another one in each run, their records are not)."""
    [(name,)] = v.ctx.db.all(
        "SELECT v.blob_name FROM record_versions v JOIN records r ON r.id = v.record_id"
        " WHERE v.pack_offset IS NOT NULL AND r.id = (SELECT min(id) FROM records) + ?",
        (int(path.rsplit("/", 1)[1]),),
    )
    return name


def test_a_forged_remote_pack_is_never_pulled(vault, vdir, fake_graph):
    vault.sync.push(operator())
    name = _pack_of(vault, "bulk/0")  # the first batch's pack: bulk/0 to bulk/IMPORT_BATCH-1
    assert _pack_of(vault, f"bulk/{IMPORT_BATCH - 1}") == name != _pack_of(vault, f"bulk/{IMPORT_BATCH}")
    path = next(p for p in fake_graph.files() if p.endswith(name))
    data = bytearray(fake_graph.files()[path])
    data[-1] ^= 1  # the last version's tag
    fake_graph.put_file(path, bytes(data))
    local = vdir.home / "blobs" / name[:2] / name
    local.unlink()
    result = vault.sync.pull(operator())
    assert any(e.startswith(f"{name}: ") for e in result["errors"]), result
    assert not local.exists()
    assert vault.secrets.blob_is_authentic(name, bytes(data)) is False
    good = bytearray(data)
    good[-1] ^= 1
    assert vault.secrets.blob_is_authentic(name, bytes(good)) is True
    # read: the forged copy is fetched (never stored), and only the version whose bytes changed fails
    for i in (0, 1, IMPORT_BATCH - 2):
        assert vault.secrets.get(operator(), "acme", f"bulk/{i}").fields["password"] == f"pw-{i}"
    with pytest.raises(IntegrityFailure):
        vault.secrets.get(operator(), "acme", f"bulk/{IMPORT_BATCH - 1}")
    assert not local.exists()
