"""The OneDrive replica end to end: real msal against the fake authority, the fake Graph over HTTPS."""

import json
import shutil

import pytest

from tests.fakes.fixtures import CLIENT_ID, SECRET
from tests.helpers import add_client, operator
from vault.audit.checkpoints import is_checkpoint_blob
from vault.errors import IntegrityFailure


@pytest.fixture
def vault(vdir, remote_config, recording_sleep):
    v = vdir.open(service_options={"sync": {"graph_options": {"sleep": recording_sleep}}})
    v.sync.configure(operator(), remote_config)
    add_client(v, "acme")
    for i in range(12):
        v.secrets.put(operator(), "acme", f"site/{i}", "access", {"password": f"pw-{i}"})
    yield v
    v.close()


def remote_blob_names(fake_graph):
    return {path.rsplit("/", 1)[-1] for path in fake_graph.files()}


def record_blobs(names) -> set[str]:
    """The record blobs among ``names``: the blob store also holds the audit checkpoint copies,
    which are queued for the replica as well (docs/audit.md section 3)."""
    return {n for n in names if not is_checkpoint_blob(n)}


def queued(v) -> list[str]:
    return [r[0] for r in v.ctx.db.all("SELECT blob_name FROM outbox WHERE op = 'put'")]


def test_push_uploads_every_queued_blob_and_empties_the_outbox(vault, fake_graph):
    # every blob is queued: the 12 record blobs and the checkpoint copies written so far
    local = set(vault.ctx.blobs.list())
    assert len(record_blobs(local)) == 12 and local - record_blobs(local)
    assert set(queued(vault)) == local and vault.sync.pending()["put"] == len(local)
    result = vault.sync.push(operator())
    assert result["uploaded"] == len(local) and result["failed"] == 0
    assert vault.sync.pending() == {"put": 0, "delete": 0, "failing": 0, "needs_attention": 0, "oldest": None}
    assert remote_blob_names(fake_graph) == set(vault.ctx.blobs.list())
    assert vault.sync.verify(operator())["ok"]
    # the remote copies are byte for byte the local ones, and ciphertext only
    for path, data in fake_graph.files().items():
        assert data == vault.ctx.blobs.get(path.rsplit("/", 1)[-1])
        assert b"pw-" not in data


def test_no_token_or_secret_in_the_vault_folder_or_audit(vault, vdir, fake_graph, token_registry):
    vault.sync.push(operator())
    for path in vdir.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data
            for token in token_registry.issued:
                assert token.encode() not in data
    cache = vdir.home / "graph-token-cache.sealed"
    assert cache.exists() and (cache.stat().st_mode & 0o077) == 0


def test_deletes_wait_in_the_outbox_while_the_remote_is_down(vault, fake_graph):
    vault.sync.push(operator())
    vault.secrets.rm(operator(), "acme", "site/3", purge=True)
    assert vault.sync.pending()["delete"] == 1
    fake_graph.down = "refuse"
    result = vault.sync.push(operator())
    assert result["failed"] == 1 and vault.sync.pending()["delete"] == 1
    assert vault.sync.pending()["failing"] == 1
    fake_graph.down = None
    result = vault.sync.push(operator(), force=True)
    assert result["deleted"] == 1 and vault.sync.pending()["delete"] == 0
    assert remote_blob_names(fake_graph) == set(vault.ctx.blobs.list())
    assert any("permanentDelete" in r.path for r in fake_graph.log)


def test_pull_restores_a_wiped_local_store(vault, vdir):
    vault.sync.push(operator())
    before = {n: vault.ctx.blobs.get(n) for n in vault.ctx.blobs.list()}
    shutil.rmtree(vdir.home / "blobs")
    (vdir.home / "blobs").mkdir(mode=0o700)
    result = vault.sync.pull(operator())
    # the 12 record blobs and the checkpoint copies
    assert len(record_blobs(before)) == 12 and result["restored"] == len(before) and not result["errors"]
    assert {n: vault.ctx.blobs.get(n) for n in vault.ctx.blobs.list()} == before
    assert vault.secrets.get(operator(), "acme", "site/7").fields["password"] == "pw-7"


def test_a_lost_local_blob_is_restored_on_read(vault, vdir):
    vault.sync.push(operator())
    victim = next(p for p in (vdir.home / "blobs").rglob("*") if p.is_file())
    victim.unlink()
    for i in range(12):
        assert vault.secrets.get(operator(), "acme", f"site/{i}").fields["password"] == f"pw-{i}"
    assert victim.exists()


def test_verify_reports_a_corrupted_remote_blob_and_pull_repairs_local(vault, fake_graph):
    vault.sync.push(operator())
    path = sorted(fake_graph.files())[0]
    data = bytearray(fake_graph.files()[path])
    data[-1] ^= 1
    fake_graph.put_file(path, bytes(data))
    report = vault.sync.verify(operator())
    assert not report["ok"] and report["mismatched"] == [path.rsplit("/", 1)[-1]]
    # a corrupted remote copy is never pulled over a good local one
    assert vault.sync.pull(operator())["restored"] == 0


def test_a_corrupted_remote_copy_restored_on_read_is_an_integrity_failure(vault, vdir, fake_graph):
    vault.sync.push(operator())
    path = sorted(fake_graph.files())[0]
    name = path.rsplit("/", 1)[-1]
    fake_graph.put_file(path, b"garbage" * 20)
    local = next(p for p in (vdir.home / "blobs").rglob(name))
    local.unlink()
    failures = 0
    for i in range(12):
        try:
            vault.secrets.get(operator(), "acme", f"site/{i}")
        except IntegrityFailure:
            failures += 1
    assert failures == 1


def test_sync_cli_status_push_verify(vdir, remote_config, fake_graph, test_ca):
    v = vdir.open()
    v.sync.configure(operator(), {**remote_config, "max_attempts": 2})  # bounded real back-off
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "x", "note", {"text": "hello"})
    waiting = queued(v)  # the record blob and the checkpoint copies written so far
    assert len(record_blobs(waiting)) == 1
    v.close()
    env = vdir.env(REQUESTS_CA_BUNDLE=str(test_ca.ca_path))
    status = json.loads(vdir.cli("sync", "status", "--json", env=env).stdout)
    assert status["pending"]["put"] == len(waiting) and status["remote"]["drive_id"] == fake_graph.drive_id
    proc = vdir.cli("sync", "push", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"uploaded {len(waiting)}" in proc.stdout
    assert set(waiting) <= remote_blob_names(fake_graph)
    proc = vdir.cli("sync", "verify", "--json", env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"]
    fake_graph.down = "refuse"
    proc = vdir.cli("sync", "push", env=env)
    assert proc.returncode == 0  # nothing queued: nothing to do
    v = vdir.open()
    v.secrets.put(operator(), "acme", "y", "note", {"text": "again"})
    v.close()
    proc = vdir.cli("sync", "push", env=env)
    assert proc.returncode == 9 and "Traceback" not in proc.stderr


def test_shred_deletes_remote_blobs_permanently_and_waits_while_the_remote_is_down(
    vdir, remote_config, fake_graph, recording_sleep
):
    from tests.helpers import clock_at

    clock = clock_at()
    v = vdir.open(clock=clock, service_options={"sync": {"graph_options": {"sleep": recording_sleep}}})
    v.sync.configure(operator(), {**remote_config, "max_attempts": 2})
    add_client(v, "acme", grace_days=0)
    add_client(v, "globex")
    for i in range(5):
        v.secrets.put(operator(), "acme", f"a/{i}", "note", {"text": f"acme-{i}"})
        v.secrets.put(operator(), "globex", f"g/{i}", "note", {"text": f"globex-{i}"})
    v.sync.push(operator())
    acme_blobs = {
        r[0]
        for r in v.ctx.db.all(
            "SELECT v.blob_name FROM record_versions v JOIN records r ON r.id = v.record_id"
            " JOIN clients c ON c.id = r.client_id WHERE c.name = 'acme'"
        )
    }
    assert acme_blobs <= remote_blob_names(fake_graph)

    v.sla.expire(operator(), "acme", reason="contract ended")
    clock.advance(1)
    result = v.sla.sweep(operator())
    assert result["shredded"] == ["acme"]
    cert = v.sla.certificate(operator(), "acme")
    assert cert["certificate"]["destroyed"]["blobs"][1]["pending_at_issue"] == 5
    assert cert["live_status"]["remote_deletes_pending"] == 5

    fake_graph.down = "refuse"
    failed = v.sync.push(operator())
    assert sum(e.startswith("delete ") for e in failed["errors"]) == min(5, len(failed["errors"]))
    assert v.sync.pending()["delete"] == 5
    assert v.sla.certificate(operator(), "acme")["live_status"]["remote_deletes_pending"] == 5
    assert acme_blobs <= remote_blob_names(fake_graph)  # still there while the remote is down

    fake_graph.down = None
    result = v.sync.push(operator(), force=True)
    assert result["deleted"] == 5 and result["failed"] == 0, result
    assert not (acme_blobs & remote_blob_names(fake_graph))
    assert v.sla.certificate(operator(), "acme")["live_status"]["remote_deletes_pending"] == 0
    permanent = [r for r in fake_graph.log if r.method == "POST" and r.path.endswith("/permanentDelete")]
    assert len(permanent) >= 5
    assert not fake_graph.recycle_bin  # permanentDelete bypasses the recycle bin
    # the other client is untouched, locally and remotely
    assert v.secrets.get(operator(), "globex", "g/3").fields["text"] == "globex-3"
    assert v.sync.verify(operator())["ok"]
    v.close()


def test_device_code_sign_in_for_a_single_admin(vdir, authority, fake_graph, remote_config, recording_sleep):
    """Delegated device-code flow through real msal; the token cache is sealed at rest."""
    authority.register(CLIENT_ID, public=True)  # a public client: no secret
    sleep = {"sleep": recording_sleep}
    v = vdir.open(service_options={"sync": {"graph_options": sleep, "auth_options": sleep}})
    config = {k: v_ for k, v_ in remote_config.items() if k != "secret_file"}
    v.sync.configure(operator(), {**config, "credential": "device-code"})
    shown = []
    account = v.sync.sign_in(operator(), prompt=shown.append)
    assert account and shown and "code" in shown[0].lower()
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "x", "note", {"text": "hello"})
    waiting = queued(v)
    assert len(record_blobs(waiting)) == 1
    # the cached delegated token is used: the record blob and the queued checkpoint copies
    assert v.sync.push(operator())["uploaded"] == len(waiting)
    assert set(waiting) <= remote_blob_names(fake_graph)
    cache = (vdir.home / "graph-token-cache.sealed").read_bytes()
    assert b"access_token" not in cache and b"refresh_token" not in cache
    v.close()


def test_replica_configuration_is_host_only_and_never_points_at_vault_secrets(
    vdir, remote_config, monkeypatch
):
    """An API caller (even an admin) cannot set the replica: it names files the service reads
    and the endpoint it sends them to (a stolen key file would bypass every check)."""
    from vault.errors import AccessDenied, InvalidInput

    v = vdir.open()
    api_admin = operator()._replace(origin="api:203.0.113.7")
    with pytest.raises(AccessDenied, match="host only"):
        v.sync.configure(api_admin, remote_config)
    with pytest.raises(AccessDenied, match="host only"):
        v.sync.remove_config(api_admin)
    monkeypatch.setenv("CVAULT_KEY_FILE", str(vdir.key_file))
    for path in (str(vdir.key_file), str(vdir.home / "vault.db")):
        with pytest.raises(InvalidInput, match="must not be the vault's key"):
            v.sync.configure(operator(), {**remote_config, "secret_file": path})
    assert v.sync.config() is None
    v.sync.configure(operator(), remote_config)  # from the host, with a proper secret file
    assert v.sync.show_config(operator())["drive_id"] == remote_config["drive_id"]
    v.close()


def test_one_push_at_a_time(vault):
    """A second push while one runs does nothing (it could re-upload a blob the first deleted)."""
    from vault.locks import exclusive
    from vault.sync.service import PUSH_LOCK

    with exclusive(vault.ctx.home.locks, PUSH_LOCK) as held:
        assert held
        result = vault.sync.push(operator())
    assert result["skipped"] == "another push is running" and result["uploaded"] == 0
    waiting = queued(vault)  # the 12 record blobs and the checkpoint copies, all still queued
    assert len(record_blobs(waiting)) == 12 and vault.sync.pending()["put"] == len(waiting)
    assert vault.sync.push(operator())["uploaded"] == len(waiting)


def test_pull_restores_signed_checkpoint_copies_and_refuses_forged_ones(vault, vdir, fake_graph):
    cp = vault.ctx.audit.checkpoint()
    vault.sync.push(operator())
    genuine = vdir.home / "blobs" / cp.blob_name[:2] / cp.blob_name
    assert genuine.exists() and cp.blob_name in remote_blob_names(fake_graph)
    genuine.unlink()
    forged = cp._replace(seq=99999999)  # same signature, another head: does not verify
    fake_graph.put_file(f"cvault/{forged.blob_name[:2]}/{forged.blob_name}", forged.to_json().encode())
    result = vault.sync.pull(operator())
    assert genuine.exists()
    assert any(forged.blob_name in e and "failed verification" in e for e in result["errors"])
    assert not (vdir.home / "blobs" / forged.blob_name[:2] / forged.blob_name).exists()
    # audit verify reads the replica's newest copy too (docs/audit.md section 3): the forged one
    # left there is reported, never taken as the vault's newest signed checkpoint
    report = vault.audit.verify(operator())
    assert not report.ok and f"checkpoint {forged.seq} has an invalid signature" in report.problem
    # once it is gone, the log restored next to the genuine copy verifies against the replica
    vault.sync.remote().delete(forged.blob_name)
    assert forged.blob_name not in remote_blob_names(fake_graph)
    assert vault.audit.verify(operator()).ok


# --- failures: back-off, the store's Retry-After, and what needs attention (issue 15 item 3) -------


@pytest.fixture
def clocked(vdir, remote_config, recording_sleep):
    from tests.helpers import clock_at

    clock = clock_at()
    v = vdir.open(clock=clock, service_options={"sync": {"graph_options": {"sleep": recording_sleep}}})
    v.sync.configure(operator(), remote_config)
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "site/0", "note", {"text": "one blob"})
    yield v, clock
    v.close()


def _puts(fake_graph) -> int:
    return sum(1 for r in fake_graph.log if r.method == "PUT")


def test_a_retry_after_longer_than_the_back_off_is_honoured(clocked, fake_graph):
    """Graph says Retry-After: 301 (beyond what the client sleeps through): the outbox does not
    try again after its own 31 s back-off, only once the 301 s have passed."""
    v, clock = clocked
    (blob,) = record_blobs(queued(v))  # not the checkpoint copy queued with it
    fake_graph.inject("429", retry_after="301", method="PUT", path_contains=blob)
    first = v.sync.push(operator())
    assert first["failed"] == 1 and first["pending"]["needs_attention"] == 0
    puts = _puts(fake_graph)
    clock.advance(31)
    assert v.sync.push(operator())["failed"] == 0 and _puts(fake_graph) == puts  # not retried yet
    clock.advance(300 - 31)
    assert _puts(fake_graph) == puts and v.sync.push(operator())["uploaded"] == 0
    clock.advance(2)  # 302 s after the 429
    assert v.sync.push(operator())["uploaded"] == 1
    assert v.sync.pending()["put"] == 0


def test_a_short_retry_after_keeps_the_own_back_off(clocked, fake_graph):
    """A Retry-After shorter than the back-off does not shorten it (30 s first, then doubling)."""
    v, clock = clocked
    (blob,) = record_blobs(queued(v))  # not the checkpoint copy queued with it
    # exhausts the client's attempts
    fake_graph.inject("503", times=10, retry_after="0", method="PUT", path_contains=blob)
    assert v.sync.push(operator())["failed"] == 1
    clock.advance(29)
    assert v.sync.push(operator())["uploaded"] == 0
    clock.advance(2)
    assert v.sync.push(operator())["uploaded"] == 1


def test_a_permanent_error_stops_retrying_and_needs_attention(clocked, fake_graph, vdir, test_ca):
    v, clock = clocked
    fake_graph.inject("403", method="PUT")
    result = v.sync.push(operator())
    assert result["failed"] == 1 and result["pending"]["needs_attention"] == 1
    status = v.sync.status(operator())
    assert status["pending"]["needs_attention"] == 1 and "403" in status["last_error"]
    puts = _puts(fake_graph)
    for _ in range(3):  # a day, a week: never retried by itself
        clock.advance(7 * 86400)
        assert v.sync.push(operator())["failed"] == 0
    assert _puts(fake_graph) == puts
    shown = vdir.cli("sync", "status", env=vdir.env(REQUESTS_CA_BUNDLE=str(test_ca.ca_path)))
    assert shown.returncode == 0 and "needs attention: 1 blob(s)" in shown.stdout, shown.stdout
    # the operator fixed the cause: --now retries what needs attention too
    fixed = v.sync.push(operator(), force=True)
    assert fixed["uploaded"] == 1 and fixed["pending"]["needs_attention"] == 0


def test_outbox_next_attempt_table():
    """The retry policy as a table: (attempts so far, transient?, Retry-After) -> delay."""
    from vault.sync.outbox import NEEDS_ATTENTION, Failure, Task, next_attempt

    now = 1_000_000
    table = [
        (0, True, None, 30),
        (1, True, None, 60),
        (6, True, None, 1920),
        (7, True, None, 3600),  # capped at an hour
        (20, True, None, 3600),
        (0, True, 301, 301),  # the store's wait when it is longer
        (0, True, 0.2, 30),  # never shorter than the back-off
        (0, True, 30.4, 31),  # whole seconds, rounded up
        (3, True, 7200, 7200),
    ]
    for attempts, transient, retry_after, delay in table:
        task = Task("blob", "put", 1, attempts, 0)
        assert next_attempt(task, Failure("x", transient, retry_after), now) == now + delay, attempts
    assert next_attempt(Task("b", "put", 1, 0, 0), Failure("403", False), now) == NEEDS_ATTENTION
